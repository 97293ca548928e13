//go:build amd64

package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
)

func ownOrSkip(t testing.TB, threads int) *ownGEMM {
	t.Helper()
	if !ownGEMMSupported {
		t.Skip("this CPU has no AVX-512 (F and VL): the own GEMM kernels cannot run")
	}
	return &ownGEMM{inner: newGonum(threads), threads: threads, pool: newWorkerPool(threads)}
}

// TestOwnGEMMKernelsMatchFloat64 runs every panel and dot kernel (each
// tile shape, masked column and k tails, padded leading dimensions, both
// thread splits of the dot product) against a float64 reference.
func TestOwnGEMMKernelsMatchFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, threads := range []int{1, 3} {
		g := ownOrSkip(t, threads)
		for _, tc := range []struct {
			transA, transB bool
			ms, ns, ks     []int
		}{
			{false, false, []int{1, 2, 3, 4, 5, 6, 7, 13}, []int{16, 17, 33, 48, 64, 65, 150}, []int{1, 7, 40}},
			{true, false, []int{1, 6, 11}, []int{20, 64, 130}, []int{1, 9, 33}},
			{false, true, []int{1, 2, 3, 4, 5, 9}, []int{1, 2, 3, 4, 5, 6, 7, 13}, []int{16, 17, 31, 100, 2*gdKC + 37}},
			{false, true, []int{30}, []int{2}, []int{64}}, // more row groups than column groups
		} {
			for _, m := range tc.ms {
				for _, n := range tc.ns {
					for _, k := range tc.ks {
						ar, ac := stored(tc.transA, m, k)
						br, bc := stored(tc.transB, k, n)
						lda, ldb, ldc := ac+3, bc+1, n+2
						a, b := randVec(r, (ar-1)*lda+ac), randVec(r, (br-1)*ldb+bc)
						c := randVec(r, (m-1)*ldc+n)
						want := computetest.RefGemm(tc.transA, tc.transB, m, n, k, 1, a, lda, b, ldb, 1, c, ldc)
						if tc.transB {
							g.dots(m, n, k, a, lda, b, ldb, c, ldc)
						} else {
							g.panels(tc.transA, m, n, k, a, lda, b, ldb, c, ldc, true)
						}
						what := fmt.Sprintf("threads %d trans %v/%v m %d n %d k %d", threads, tc.transA, tc.transB, m, n, k)
						for i := 0; i < m; i++ {
							for j := 0; j < n; j++ {
								got, w := float64(c[i*ldc+j]), want[i*ldc+j]
								if math.Abs(got-w) > 1e-5*(math.Sqrt(float64(k))+math.Abs(w)) {
									t.Fatalf("%s: C[%d,%d] = %g, want %g", what, i, j, got, w)
								}
							}
						}
						// The padding between rows is not touched.
						for i := 0; i+1 < m; i++ {
							for j := n; j < ldc; j++ {
								if float64(c[i*ldc+j]) != want[i*ldc+j] {
									t.Fatalf("%s: padding C[%d,%d] written", what, i, j)
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestConformanceOwnGEMM: the backend with the own kernels passes the
// backend conformance suite, and its GEMMs at training's shapes (each
// product routed to the kernels) match a float64 reference with alpha 1
// and beta 0, 1 and 0.5.
func TestConformanceOwnGEMM(t *testing.T) {
	if !ownGEMMSupported {
		t.Skip("this CPU has no AVX-512 (F and VL)")
	}
	computetest.RunConformance(t, func() compute.Backend { return newOrSkip(t, "wavecat", 2) })
	be := newOrSkip(t, "wavecat", 2)
	if be.BLAS() != "wavecat" {
		t.Fatalf("BLAS() = %q", be.BLAS())
	}
	r := rand.New(rand.NewPCG(5, 6))
	for _, s := range []struct {
		ta, tb  bool
		m, n, k int
	}{{false, false, 256, 1000, 128}, {true, false, 128, 999, 256}, {false, true, 256, 128, 1000}} {
		for _, beta := range []float32{0, 1, 0.5} {
			ar, ac := stored(s.ta, s.m, s.k)
			br, bc := stored(s.tb, s.k, s.n)
			a, b, c := randVec(r, ar*ac), randVec(r, br*bc), randVec(r, s.m*s.n)
			want := computetest.RefGemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, ac, b, bc, float64(beta), c, s.n)
			cv := compute.V(computetest.BufferOf(be, c))
			be.Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, compute.V(computetest.BufferOf(be, a)), ac, compute.V(computetest.BufferOf(be, b)), bc, beta, cv, s.n)
			got := be.Host(cv, s.m*s.n)
			for i := range got {
				if math.Abs(float64(got[i])-want[i]) > 1e-5*(math.Sqrt(float64(s.k))+math.Abs(want[i])) {
					t.Fatalf("%+v beta %g: element %d = %g, want %g", s, beta, i, got[i], want[i])
				}
			}
		}
	}
}

// BenchmarkTrainingGEMMs times a training step's three product shapes
// (forward 256x128 times 128x10240, input gradient 128x256 transposed
// times 256x10240, weight gradient 256x10240 times 128x10240 transposed)
// on the own kernels and on OpenBLAS, 2 threads, in one run.
func BenchmarkTrainingGEMMs(b *testing.B) {
	const T = 10240
	shapes := []struct {
		name    string
		ta, tb  bool
		m, n, k int
	}{{"NN-256x10240x128", false, false, 256, T, 128}, {"TN-128x10240x256", true, false, 128, T, 256}, {"NT-256x128x10240", false, true, 256, 128, T}}
	for _, s := range shapes {
		for _, blas := range []string{"wavecat", "openblas"} {
			b.Run(s.name+"/"+blas, func(b *testing.B) {
				be, err := New(Options{BLAS: blas, Threads: 2})
				if err != nil {
					b.Skip(err)
				}
				ar, ac := stored(s.ta, s.m, s.k)
				br, bc := stored(s.tb, s.k, s.n)
				r := rand.New(rand.NewPCG(1, 2))
				buf := func(n int) compute.View { return compute.V(computetest.BufferOf(be, randVec(r, n))) }
				a, bb, c := buf(ar*ac), buf(br*bc), buf(s.m*s.n)
				for b.Loop() {
					be.Gemm(s.ta, s.tb, s.m, s.n, s.k, 1, a, ac, bb, bc, 1, c, s.n)
				}
				b.ReportMetric(2*float64(s.m*s.n*s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestAdamVectorMatchesScalar: the eight-lane Adam gives the scalar loop's
// bits (the same operations in the same order), tail included, on values
// spanning tiny to large gradients.
func TestAdamVectorMatchesScalar(t *testing.T) {
	if !useAVX2 {
		t.Skip("no AVX2 here")
	}
	r := rand.New(rand.NewPCG(8, 9))
	const n = 1003
	mk := func(scale float64) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(scale * r.NormFloat64() * math.Pow(10, float64(r.IntN(12)-8)))
		}
		return x
	}
	p, g, m, v := mk(1), mk(1), mk(0.1), mk(0.01)
	for i := range v {
		v[i] = float32(math.Abs(float64(v[i])))
	}
	k := adamConsts{b1: 0.9, b2: 0.999, c1: 0.1, c2: 0.001, step: 1.3e-3, isqb2: 1.7, eps: 1e-8}
	p2, m2, v2 := append([]float32(nil), p...), append([]float32(nil), m...), append([]float32(nil), v...)
	adam(p, g, m, v, &k)
	adamScalar(p2, g, m2, v2, &k)
	for i := range p {
		if math.Float32bits(p[i]) != math.Float32bits(p2[i]) || m[i] != m2[i] || v[i] != v2[i] {
			t.Fatalf("element %d: vector p %g m %g v %g, scalar p %g m %g v %g", i, p[i], m[i], v[i], p2[i], m2[i], v2[i])
		}
	}
}
