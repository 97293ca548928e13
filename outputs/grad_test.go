package outputs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// fdCheck compares a stepper's analytic gradient at (z, y) with float64
// central differences of its loss.
func fdCheck(t *testing.T, name string, k stepper, z []float64, y float64) {
	t.Helper()
	C := k.channels()
	g := make([]float64, C)
	s := make([]float64, k.scratchLen())
	loss := k.lossStep(z, y, g, s)
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		t.Fatalf("%s: loss %v", name, loss)
	}
	zz := append([]float64(nil), z...)
	gs := make([]float64, C)
	const eps = 1e-6
	for c := 0; c < C; c++ {
		zz[c] = z[c] + eps
		lp := k.lossStep(zz, y, gs, s)
		zz[c] = z[c] - eps
		lm := k.lossStep(zz, y, gs, s)
		zz[c] = z[c]
		num := (lp - lm) / (2 * eps)
		if d := math.Abs(num - g[c]); d > 2e-6+1e-5*math.Abs(num) {
			t.Errorf("%s: channel %d: analytic %.10g, finite difference %.10g (diff %.3g)", name, c, g[c], num, d)
		}
	}
}

func randLogits(rng *rand.Rand, n int, scale float64) []float64 {
	z := make([]float64, n)
	for i := range z {
		z[i] = scale * rng.NormFloat64()
	}
	return z
}

// edges returns the AdaCat bin edges of psi computed independently.
func refEdges(psi []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range psi {
		mx = math.Max(mx, v)
	}
	s := 0.0
	for _, v := range psi {
		s += math.Exp(v - mx)
	}
	c := []float64{0}
	acc := 0.0
	for _, v := range psi {
		acc += math.Exp(v-mx) / s
		c = append(c, acc)
	}
	return c
}

func TestAdaCatGradientFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const k = 8
	z := randLogits(rng, 2*k, 1.2)
	c := refEdges(z[:k])
	for _, lambda := range []float64{0, 1e-4, 0.05, 0.6} {
		h, _ := NewAdaCat(k, lambda)
		xs := map[string]float64{"x=0": 0, "x=1": 1, "x=0.37": 0.37, "x=0.8123": 0.8123}
		if lambda > 0 {
			// Edge movement is invisible to finite differences of the plain
			// NLL only away from edges; with smoothing edges are fine.
			xs["x=edge3"] = c[3]
			xs["x=edge1+lambda/2"] = c[1] + lambda/2
			xs["x=edge6-lambda/3"] = c[6] - lambda/3
		}
		for nm, x := range xs {
			fdCheck(t, fmt.Sprintf("adacat lambda=%g %s", lambda, nm), h, z, 2*x-1)
		}
	}
	// A kernel wider than several bins with many tiny bins.
	zn := randLogits(rng, 2*k, 3)
	h, _ := NewAdaCat(k, 0.6)
	fdCheck(t, "adacat lambda=0.6 spread", h, zn, 0.1)
}

// The plain NLL gradient on an edge uses the left bin and ignores edge
// movement, as autodiff of log_softmax(phi)_i - log_softmax(psi)_i would.
func TestAdaCatPlainGradientOnEdge(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const k = 5
	z := randLogits(rng, 2*k, 1)
	c := refEdges(z[:k])
	h, _ := NewAdaCat(k, 0)
	g := make([]float64, 2*k)
	s := make([]float64, h.scratchLen())
	h.lossStep(z, 2*c[2]-1, g, s)
	w := refEdges(z[:k])
	hh := refEdges(z[k:])
	for j := 0; j < k; j++ {
		wantPsi := -(w[j+1] - w[j])
		wantPhi := hh[j+1] - hh[j]
		if j == 1 { // x == c[2] is the right edge of bin 1
			wantPsi++
			wantPhi--
		}
		if math.Abs(g[j]-wantPsi) > 1e-12 || math.Abs(g[k+j]-wantPhi) > 1e-12 {
			t.Errorf("bin %d: grad psi %v phi %v, want %v %v", j, g[j], g[k+j], wantPsi, wantPhi)
		}
	}
}

func TestMoLGradientFiniteDifferences(t *testing.T) {
	type tc struct {
		name       string
		q          int
		logit, mu  []float64
		ls         []float64
		y          float64
		wantBranch string // of the first component, checked to keep FD off branch switches
	}
	cases := []tc{
		{"delta Q=256", 256, []float64{0.3, -0.5, 1}, []float64{0.1, -0.2, 0.35}, []float64{-2, -1.5, -3}, 0.3, "delta"},
		{"delta Q=65536", 65536, []float64{0.3, -0.5, 1}, []float64{0.2999, 0.2, 0.3003}, []float64{-8, -7, -9}, 0.3, "delta"},
		{"tiny mass", 65536, []float64{0.3, -0.5, 1}, []float64{-0.6, 0.9, 0.5}, []float64{-6, -5, -7}, 0.3, "tiny"},
		{"low edge", 65536, []float64{0.1, 0.2, -0.4}, []float64{-0.95, -0.99, 0.2}, []float64{-3, -4, -2}, -1, "low"},
		{"low edge -0.9995", 65536, []float64{0.1, 0.2, -0.4}, []float64{-0.95, -0.99, 0.2}, []float64{-3, -4, -2}, -0.9995, "low"},
		{"high edge", 65536, []float64{0.1, 0.2, -0.4}, []float64{0.97, 0.99, 0.2}, []float64{-3, -4, -2}, 1, "high"},
		{"clamped scale", 65536, []float64{0.1, 0.2, -0.4}, []float64{0.3, 0.301, 0.2}, []float64{-20, -17, -2}, 0.3, "delta"},
	}
	for _, c := range cases {
		h, _ := NewMoL(3, c.q, -16)
		z := append(append(append([]float64(nil), c.logit...), c.mu...), c.ls...)
		// Keep every component away from the 1e-5 branch threshold.
		for j := 0; j < 3; j++ {
			s := math.Max(c.ls[j], -16)
			d := 1 / float64(c.q-1)
			delta := sigmoid((c.y-c.mu[j]+d)*math.Exp(-s)) - sigmoid((c.y-c.mu[j]-d)*math.Exp(-s))
			if r := delta / 1e-5; r > 0.95 && r < 1.05 {
				t.Fatalf("%s: component %d bin mass %g too close to the 1e-5 switch for finite differences", c.name, j, delta)
			}
			if j == 0 && math.Abs(c.y) < 0.999 {
				if got := map[bool]string{true: "delta", false: "tiny"}[delta > 1e-5]; got != c.wantBranch {
					t.Fatalf("%s: first component in branch %s, want %s", c.name, got, c.wantBranch)
				}
			}
		}
		fdCheck(t, "mol "+c.name, h, z, c.y)
		if c.name == "clamped scale" {
			g := make([]float64, 9)
			h.lossStep(z, c.y, g, make([]float64, h.scratchLen()))
			if g[6] != 0 || g[7] != 0 {
				t.Errorf("clamped log-scales got gradient %v %v, want 0", g[6], g[7])
			}
		}
	}
}

func TestCategoricalGradientFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	mu, _ := NewMuLaw(16)
	cat, _ := NewCategorical(16)
	for _, y := range []float64{-1, -0.3, 0, 0.01, 0.77, 1} {
		fdCheck(t, fmt.Sprintf("mulaw y=%g", y), mu, randLogits(rng, 16, 2), y)
		fdCheck(t, fmt.Sprintf("categorical y=%g", y), cat, randLogits(rng, 16, 2), y)
	}
}
