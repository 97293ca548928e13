//go:build amd64

package cpu

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestElementwiseVectorLoops: the eight-lane loops give the scalar loops'
// bits (scale, add a constant, (a+b)*alpha) and the sum agrees with a
// float64 sum to float32 rounding; lengths with and without a tail.
func TestElementwiseVectorLoops(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2 here")
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{8, 13, 256, 1001} {
		x, a, b := make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range x {
			x[i], a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64()), float32(r.NormFloat64())
		}
		check := func(what string, got []float32, want func(i int) float32) {
			t.Helper()
			for i, g := range got {
				if math.Float32bits(g) != math.Float32bits(want(i)) {
					t.Fatalf("n %d %s[%d] = %g, want %g", n, what, i, g, want(i))
				}
			}
		}
		y := append([]float32(nil), x...)
		scale(y, 0.3)
		check("scale", y, func(i int) float32 { return x[i] * 0.3 })
		y = append(y[:0], x...)
		addBias(y, []float32{1.7}, 0, 1, n)
		check("addBias", y, func(i int) float32 { return x[i] + 1.7 })
		addScaled(y, a, b, 0.7)
		check("addScaled", y, func(i int) float32 { return (a[i] + b[i]) * 0.7 })
		var want float64
		for _, v := range x {
			want += float64(v)
		}
		d := []float32{0.5}
		biasGrad(d, x, 0, 1, 1, n)
		if math.Abs(float64(d[0])-0.5-want) > 1e-6*float64(n) {
			t.Errorf("n %d: biasGrad sum %g, want %g", n, d[0]-0.5, want)
		}
	}
}
