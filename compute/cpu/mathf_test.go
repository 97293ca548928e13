package cpu

import (
	"math"
	"testing"
)

// probes returns a dense grid over [-20, 20], a log grid of magnitudes from
// 1e-30 to 1e30, and the float32 extremes, all with both signs.
func probes() []float32 {
	var xs []float32
	for x := -20.0; x <= 20; x += 1.0 / 1024 {
		xs = append(xs, float32(x))
	}
	for e := -30.0; e <= 30; e += 0.01 {
		v := float32(math.Pow(10, e))
		xs = append(xs, v, -v)
	}
	extremes := []float32{0, float32(math.Copysign(0, -1)), math.SmallestNonzeroFloat32, 1e-40, math.MaxFloat32, 0.55, math.Nextafter32(0.55, 0), 88, 89, 104, 1e5}
	for _, v := range extremes {
		xs = append(xs, v, -v)
	}
	return append(xs, float32(math.Inf(1)), float32(math.Inf(-1)))
}

// within asserts got matches want to rel relative error, with an absolute
// floor at float32's smallest normal (denormal results carry fewer bits).
func within(t *testing.T, what string, x, got float32, want float64, rel float64) {
	t.Helper()
	if math.IsNaN(float64(got)) {
		t.Fatalf("%s(%g) = NaN, want %g", what, x, want)
	}
	w32 := float64(float32(want))
	if d := math.Abs(float64(got) - w32); d > rel*math.Abs(w32)+1.2e-38 {
		t.Fatalf("%s(%g) = %.9g, want %.9g (rel err %.3g)", what, x, got, w32, d/math.Abs(w32))
	}
}

// tanhf and sigmoidf isolate the two factors of fgated: sigmoid(+Inf) = 1
// and tanh(+Inf) = 1 exactly in its formulas.
func tanhf(x float32) float32    { return float32(fgated(float64(x), math.Inf(1))) }
func sigmoidf(x float32) float32 { return float32(fgated(math.Inf(1), float64(x))) }

func TestTanhSigmoidAccuracy(t *testing.T) {
	worstT, worstS := 0.0, 0.0
	for _, x := range probes() {
		wt := math.Tanh(float64(x))
		ws := 1 / (1 + math.Exp(-float64(x)))
		within(t, "tanhf", x, tanhf(x), wt, 3e-7)
		within(t, "sigmoidf", x, sigmoidf(x), ws, 3e-7)
		if wt != 0 {
			worstT = math.Max(worstT, math.Abs(float64(tanhf(x))-wt)/math.Abs(wt))
		}
		if ws > 1e-37 {
			worstS = math.Max(worstS, math.Abs(float64(sigmoidf(x))-ws)/ws)
		}
		// The gradient forms, in float64: 1-tanh^2 = 1/cosh^2 and
		// s(1-s) = 1/(4 cosh^2(x/2)), computed here without cancellation.
		tt, sech2, s, ds := fgatedGrad(float64(x), float64(x))
		c, ch := math.Cosh(float64(x)), math.Cosh(float64(x)/2)
		wantSech2, wantDs := 1/(c*c), 1/(4*ch*ch)
		for _, q := range []struct {
			name      string
			got, want float64
		}{{"tanh", tt, wt}, {"sech^2", sech2, wantSech2}, {"sigmoid", s, ws}, {"sigmoid'", ds, wantDs}} {
			if math.Abs(q.got-q.want) > 2e-8*math.Abs(q.want)+1e-300 && math.Abs(float64(x)) < 350 {
				t.Fatalf("fgatedGrad(%g): %s = %g, want %g", x, q.name, q.got, q.want)
			}
		}
		b := -x / 3
		z := float64(float32(fgated(float64(x), float64(b))))
		if wz := wt / (1 + math.Exp(-float64(b))); math.Abs(z-wz) > 3e-7*math.Abs(wz)+1e-38 {
			t.Fatalf("fgated(%g, %g) = %g, want %g", x, b, z, wz)
		}
	}
	t.Logf("worst relative error over the probes: tanh %.3g, sigmoid %.3g", worstT, worstS)
	if math.Signbit(float64(tanhf(float32(math.Copysign(0, -1))))) != true {
		t.Errorf("tanhf(-0) lost the sign of zero")
	}
	nan := float32(math.NaN())
	if !math.IsNaN(float64(tanhf(nan))) || !math.IsNaN(float64(sigmoidf(nan))) {
		t.Errorf("NaN input must give NaN: tanhf %g, sigmoidf %g", tanhf(nan), sigmoidf(nan))
	}
}

func TestFexp(t *testing.T) {
	for x := -708.0; x <= 708; x += 0.0137 {
		want := math.Exp(x)
		em, e := fexpm1(x)
		if math.Abs(e-want) > 1e-9*want {
			t.Fatalf("fexpm1(%g) e^x = %g, want %g", x, e, want)
		}
		if wm := math.Expm1(x); math.Abs(em-wm) > 1e-9*math.Abs(wm) {
			t.Fatalf("fexpm1(%g) = %g, want %g", x, em, wm)
		}
	}
	for _, x := range []float64{1e-300, 1e-12, -1e-9, 1e-5, -0.3} {
		if em, _ := fexpm1(x); math.Abs(em-math.Expm1(x)) > 1e-9*math.Abs(math.Expm1(x)) {
			t.Fatalf("fexpm1(%g) = %g, want %g (no cancellation near 0)", x, em, math.Expm1(x))
		}
	}
}

// TestGatedKernels runs the slice kernels (the AVX2 assembly where the CPU
// has it, then the scalar Go loop) over every pairing of probe values with
// a shifted copy, against float64 math: z = tanh(a) sigmoid(b),
// da = dz s (1-t^2), db = dz t s (1-s).
func TestGatedKernels(t *testing.T) {
	xs := probes()
	n := len(xs)
	a, b, dz := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range xs {
		a[i] = xs[i]
		b[i] = xs[(i*7919+13)%n]
		dz[i] = float32(math.Sin(float64(i))) // in [-1, 1]
	}
	paths := []bool{false}
	if useAVX2 {
		paths = append(paths, true)
	}
	defer func(v bool) { useAVX2 = v }(useAVX2)
	for _, avx := range paths {
		useAVX2 = avx
		z, da, db := make([]float32, n), make([]float32, n), make([]float32, n)
		gated(z, a, b)
		gatedBackward(da, db, dz, a, b)
		for i := range z {
			x, y, g := float64(a[i]), float64(b[i]), float64(dz[i])
			th := math.Tanh(x)
			s := 1 / (1 + math.Exp(-y))
			ds := math.Exp(-y) * s * s
			if math.IsInf(y, -1) {
				ds = 0
			}
			c := math.Cosh(x)
			want := [3]float64{th * s, g * s / (c * c), g * th * ds}
			got := [3]float32{z[i], da[i], db[i]}
			for k, name := range []string{"z", "da", "db"} {
				w := want[k]
				// 1e-6 relative; 1e-37 absolute covers the float32 clamps.
				if d := math.Abs(float64(got[k]) - w); math.IsNaN(float64(got[k])) || d > 1e-6*math.Abs(w)+1e-37 {
					t.Fatalf("avx2=%v: %s(a=%g, b=%g, dz=%g) = %g, want %g", avx, name, x, y, g, got[k], w)
				}
			}
		}
		// NaN in either input gives NaN, not a number.
		nan := float32(math.NaN())
		za := []float32{nan, 1, 0, 0, 0, 0, 0, 0, 0}
		zb := []float32{1, nan, 0, 0, 0, 0, 0, 0, 0}
		zz := make([]float32, 9)
		gated(zz, za, zb)
		if !math.IsNaN(float64(zz[0])) || !math.IsNaN(float64(zz[1])) {
			t.Errorf("avx2=%v: NaN inputs gave %v", avx, zz[:2])
		}
	}
}
