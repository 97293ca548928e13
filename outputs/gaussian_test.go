package outputs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
)

// gaussRef is the Normal NLL of y with mean mu and log-std s computed
// independently of gaussianLoss (no floor), and its exact gradient.
func gaussRef(mu, s, y float64) (loss, dmu, ds float64) {
	v := math.Exp(2 * s)
	d := y - mu
	return 0.5*math.Log(2*math.Pi*v) + d*d/(2*v), -d / v, 1 - d*d/v
}

// TestGaussianGradientFiniteDifferences checks the gradient against float64
// central differences of the loss where the mean's gradient is inside the
// bound (there it is the NLL's exact gradient), including a log-std below
// the floor (its gradient zero).
func TestGaussianGradientFiniteDifferences(t *testing.T) {
	h, _ := NewGaussian(-16)
	floor4, _ := NewGaussian(-4)
	for _, c := range []struct {
		h        *Gaussian
		mu, s, y float64
	}{
		{h, 0.1, -2, 0.3}, {h, -0.5, 0.4, 1}, {h, 0.9, -1, -1},
		{h, 0.01, -5, 0.012},    // d/dmu -44: speech-like std, inside the bound
		{h, -0.3, -3, -0.5},     // 4 std off: d/dmu 80.7
		{floor4, 0.2, -5, 0.21}, // log-std clamped to -4: d/dmu -29.8, d/ds 0
	} {
		name := fmt.Sprintf("gaussian(%g) mu=%g s=%g y=%g", c.h.logScaleMin, c.mu, c.s, c.y)
		var g [2]float64
		c.h.lossStep([]float64{c.mu, c.s}, c.y, g[:], nil)
		if !(math.Abs(g[0]) < gaussMeanGradMax) {
			t.Fatalf("%s: d/dmu %g is not inside the bound %g; the case checks nothing", name, g[0], float64(gaussMeanGradMax))
		}
		fdCheck(t, name, c.h, []float64{c.mu, c.s}, c.y)
	}
}

// TestGaussianMeanGradientBound checks, over random means, log-stds (down to
// below the floor) and targets, that the loss is the exact NLL, d/ds is exact,
// and d/dmu is the exact gradient clamped to the bound: equal to it inside,
// +-gaussMeanGradMax outside, never larger in magnitude; and that Loss
// writes the same, times the mask and gradScale, into its float32 gradient.
func TestGaussianMeanGradientBound(t *testing.T) {
	const smin = -16
	h, _ := NewGaussian(smin)
	rng := rand.New(rand.NewPCG(16, 3))
	inside, outside := 0, 0
	for i := 0; i < 20000; i++ {
		mu, s, y := 2*rng.Float64()-1, -17+17.5*rng.Float64(), 2*rng.Float64()-1
		if i%4 == 0 { // near the mean: many inside the bound
			y = clamp(mu+math.Exp(s)*3*rng.NormFloat64(), -1, 1)
		}
		var g [2]float64
		loss := h.lossStep([]float64{mu, s}, y, g[:], nil)
		wl, wmu, ws := gaussRef(mu, math.Max(s, smin), y)
		if s < smin {
			ws = 0
		}
		if d := math.Abs(loss - wl); d > 1e-12*math.Max(1, math.Abs(wl)) {
			t.Fatalf("mu=%g s=%g y=%g: loss %.17g, NLL %.17g", mu, s, y, loss, wl)
		}
		if d := math.Abs(g[1] - ws); d > 1e-12*math.Max(1, math.Abs(ws)) {
			t.Fatalf("mu=%g s=%g y=%g: d/ds %.17g, exact %.17g", mu, s, y, g[1], ws)
		}
		if math.Abs(g[0]) > gaussMeanGradMax {
			t.Fatalf("mu=%g s=%g y=%g: d/dmu %g beyond the bound %g", mu, s, y, g[0], float64(gaussMeanGradMax))
		}
		want := wmu
		if math.Abs(wmu) > gaussMeanGradMax {
			want = math.Copysign(gaussMeanGradMax, wmu)
			outside++
		} else {
			inside++
		}
		if d := math.Abs(g[0] - want); d > 1e-12*math.Max(1, math.Abs(want)) {
			t.Fatalf("mu=%g s=%g y=%g: d/dmu %.17g, want %.17g (exact %.17g)", mu, s, y, g[0], want, wmu)
		}
		if i < 200 { // the Head's float32 path: mask and gradScale scale the clamped gradient
			grad := make([]float32, 2)
			l := h.Loss([]float32{float32(mu), float32(s)}, 1, 1, []float32{float32(y)}, []float32{0.5}, grad, 0.25)
			var g32 [2]float64
			w := h.lossStep([]float64{float64(float32(mu)), float64(float32(s))}, float64(float32(y)), g32[:], nil)
			if l != 0.5*w || grad[0] != float32(g32[0]*0.125) || grad[1] != float32(g32[1]*0.125) {
				t.Fatalf("Loss: %v %v, want %v %v %v", l, grad, 0.5*w, float32(g32[0]*0.125), float32(g32[1]*0.125))
			}
		}
	}
	if inside < 1000 || outside < 1000 {
		t.Fatalf("%d draws inside the bound, %d outside: both branches need exercising", inside, outside)
	}
}

// TestGaussianDeviceBound checks that gaussian.cu bounds the mean's gradient
// at the same value as gaussian.go (the cudasim and device tests compare the
// two on targets far outside the bound too).
func TestGaussianDeviceBound(t *testing.T) {
	m := regexp.MustCompile(`(?m)^#define GAUSS_MEAN_GRAD_MAX (\S+)$`).FindStringSubmatch(gaussianSource)
	if m == nil {
		t.Fatal("gaussian.cu defines no GAUSS_MEAN_GRAD_MAX")
	}
	if v, err := strconv.ParseFloat(m[1], 64); err != nil || v != gaussMeanGradMax {
		t.Fatalf("gaussian.cu: GAUSS_MEAN_GRAD_MAX %s, gaussian.go: gaussMeanGradMax %g", m[1], float64(gaussMeanGradMax))
	}
}
