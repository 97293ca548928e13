package cpu

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// mvISAs lists the MulVecs kernels this machine can run (Go always).
func mvISAs() []int {
	isas := []int{0}
	if useAVX2 {
		isas = append(isas, 1)
	}
	if useAVX512 {
		isas = append(isas, 2)
	}
	return isas
}

// withISA runs f with MulVecs forced to one kernel family.
func withISA(t *testing.T, isa int, f func()) {
	t.Helper()
	saved := mvISA
	mvISA = isa
	defer func() { mvISA = saved }()
	f()
}

func randVec(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// mvShapes are the generator's product shapes plus odd ones that exercise
// the partial panel, the remainder k step and k = 0.
var mvShapes = [][2]int{{256, 384}, {256, 128}, {128, 128}, {30, 128}, {128, 1}, {1, 1}, {17, 3}, {48, 7}, {5, 0}, {200, 33}}

func TestMulVecsMatchesFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, isa := range mvISAs() {
		for _, sh := range mvShapes {
			m, k := sh[0], sh[1]
			for _, acc := range []bool{false, true} {
				const n, ldx, ldy = 5, 400, 300
				ld := k + 3
				w := randVec(rng, m*ld)
				x := randVec(rng, (n-1)*ldx+k)
				y := randVec(rng, (n-1)*ldy+m+7)
				y0 := append([]float32(nil), y...)
				pm := PackMatrix(w, m, k, ld)
				withISA(t, isa, func() { pm.MulVecs(x, ldx, y, ldy, n, acc) })
				for c := 0; c < n; c++ {
					for i := 0; i < m; i++ {
						var ref, mag float64
						if acc {
							ref, mag = float64(y0[c*ldy+i]), math.Abs(float64(y0[c*ldy+i]))
						}
						for j := 0; j < k; j++ {
							p := float64(w[i*ld+j]) * float64(x[c*ldx+j])
							ref += p
							mag += math.Abs(p)
						}
						got := float64(y[c*ldy+i])
						if d := math.Abs(got - ref); d > 1e-6*(mag+1)*float64(k+1) {
							t.Fatalf("isa %d, %dx%d acc=%v: y[%d][%d] = %g, float64 reference %g", isa, m, k, acc, c, i, got, ref)
						}
					}
					// Rows past M (the gap to the next column) are untouched.
					for i := m; i < ldy && c*ldy+i < len(y); i++ {
						if y[c*ldy+i] != y0[c*ldy+i] {
							t.Fatalf("isa %d, %dx%d: y[%d][%d] (past M) written", isa, m, k, c, i)
						}
					}
				}
			}
		}
	}
}

// TestMulVecsBatchInvariant is the property the synthesis step relies on:
// column c's bits do not depend on how many columns share the call (every
// n from 1 to 17 covers each kernel variant and tail), nor on the kernel
// family: Go, AVX2 and AVX-512 agree bit for bit.
func TestMulVecsBatchInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range mvShapes {
		m, k := sh[0], sh[1]
		const maxN = 17
		ldx, ldy := k+5, m+3
		pm := PackMatrix(randVec(rng, m*k), m, k, max(k, 1))
		x := randVec(rng, maxN*ldx)
		init := randVec(rng, maxN*ldy)
		for _, acc := range []bool{false, true} {
			// The reference: each column alone, Go kernel.
			ref := append([]float32(nil), init...)
			withISA(t, 0, func() {
				for c := 0; c < maxN; c++ {
					pm.MulVecs(x[c*ldx:], ldx, ref[c*ldy:], ldy, 1, acc)
				}
			})
			for _, isa := range mvISAs() {
				for n := 1; n <= maxN; n++ {
					y := append([]float32(nil), init...)
					withISA(t, isa, func() { pm.MulVecs(x, ldx, y, ldy, n, acc) })
					for c := 0; c < n; c++ {
						for i := 0; i < m; i++ {
							if g, r := y[c*ldy+i], ref[c*ldy+i]; math.Float32bits(g) != math.Float32bits(r) {
								t.Fatalf("%dx%d acc=%v isa %d n=%d: y[%d][%d] = %x, one column alone (Go) %x",
									m, k, acc, isa, n, c, i, math.Float32bits(g), math.Float32bits(r))
							}
						}
					}
				}
			}
		}
	}
}

// TestFMA32 checks the Go kernel's fused multiply-add against an exact
// sum rounded once (math/big), including cases where rounding the exact
// result to float64 first would land on a float32 halfway point.
func TestFMA32(t *testing.T) {
	exact := func(a, b, c float32) float32 {
		p := new(big.Float).SetPrec(0).SetFloat64(float64(a))
		p.SetPrec(200).Mul(p, new(big.Float).SetFloat64(float64(b)))
		s := new(big.Float).SetPrec(200).Add(p, new(big.Float).SetFloat64(float64(c)))
		f, _ := s.Float32()
		return f
	}
	rng := rand.New(rand.NewPCG(5, 6))
	cases := [][3]float32{
		{1, 1, 0}, {0, 5, -0}, {1 + 1.0/(1<<23), 1 - 1.0/(1<<24), -1},
		// (1+2^-12)^2 = 1 + 2^-11 + 2^-24 is a float32 halfway point; the
		// 2^-70 above it rounds up once, but to even (down) if the sum is
		// rounded to float64 first.
		{1 + 0x1p-12, 1 + 0x1p-12, 0x1p-70},
		{3, 1.0 / 3, -1}, {float32(math.MaxFloat32), 2, -float32(math.MaxFloat32)},
		{1e-30, 1e-30, 1e-45},
	}
	for i := 0; i < 200000; i++ {
		a := float32(rng.NormFloat64())
		b := float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(60)-30)))
		c := float32(rng.NormFloat64() * math.Exp2(float64(rng.IntN(60)-30)))
		cases = append(cases, [3]float32{a, b, c})
		// Products landing near c's halfway points.
		cases = append(cases, [3]float32{a, b, -float32(float64(a) * float64(b))})
	}
	for _, tc := range cases {
		a, b, c := tc[0], tc[1], tc[2]
		got, want := fma32(a, b, c), exact(a, b, c)
		if math.Float32bits(got) != math.Float32bits(want) && !(math.IsNaN(float64(got)) && math.IsNaN(float64(want))) {
			t.Fatalf("fma32(%g, %g, %g) = %g, exact rounding %g", a, b, c, got, want)
		}
	}
}

// TestMulVecsSingleRounding: every kernel rounds a*b+c once (the case
// double rounding gets wrong, see TestFMA32).
func TestMulVecsSingleRounding(t *testing.T) {
	a, c := float32(1+0x1p-12), float32(0x1p-70)
	want := float32(1 + 0x1p-11 + 0x1p-23)
	pm := PackMatrix([]float32{a}, 1, 1, 1)
	for _, isa := range mvISAs() {
		y := []float32{c}
		withISA(t, isa, func() { pm.MulVecs([]float32{a}, 1, y, 1, 1, true) })
		if y[0] != want {
			t.Errorf("isa %d: %g*%g + %g = %x, want %x (one rounding)", isa, a, a, c, math.Float32bits(y[0]), math.Float32bits(want))
		}
	}
}

func TestMulVecsBadShape(t *testing.T) {
	pm := PackMatrix(make([]float32, 12), 3, 4, 4)
	defer func() {
		if r := recover(); r == nil || fmt.Sprint(r) == "" {
			t.Fatal("MulVecs with a short y did not panic")
		}
	}()
	pm.MulVecs(make([]float32, 8), 4, make([]float32, 5), 3, 2, false)
}
