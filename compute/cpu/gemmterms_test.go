package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
)

// TestGemmTermsMatchesFloat64: a sum of shifted products (positive,
// negative and no shift, A plain and transposed, with and without a bias,
// beta 0 and 1) against a float64 reference, on the own kernels (when the
// CPU has them) and on the per-term fallback; padding between C's rows is
// left alone.
func TestGemmTermsMatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 3))
	for _, blas := range []string{"auto", "gonum"} {
		be := newOrSkip(t, blas, 2)
		for _, s := range []struct {
			m, n   int
			shifts []int
			bias   bool
			beta   float32
		}{
			{13, 300, []int{0, 4, 8}, true, 0},    // a causal conv, dilation 4
			{13, 300, []int{0, -4, -8}, false, 1}, // its input gradient
			{7, 70, []int{0, 69, -69, 1}, true, 1},
			{30, 1000, []int{0}, true, 0},
			{5, 17, []int{2}, false, 0},
		} {
			name := fmt.Sprintf("%s/m%d_n%d_%v_bias%v_beta%g", blas, s.m, s.n, s.shifts, s.bias, s.beta)
			ldc := s.n + 3
			c := randVec(r, (s.m-1)*ldc+s.n)
			want := make([]float64, len(c))
			for i, v := range c {
				want[i] = float64(v) * float64(s.beta)
				if i%ldc >= s.n {
					want[i] = float64(v) // padding
				}
			}
			var terms []compute.GemmTerm
			for ti, sh := range s.shifts {
				k := 3 + 5*ti
				trans := ti%2 == 1
				lda := k + 1
				if trans {
					lda = s.m + 2
				}
				ar := s.m
				if trans {
					ar = k
				}
				a := randVec(r, ar*lda)
				ldb := s.n + 5
				b := randVec(r, (k-1)*ldb+s.n)
				terms = append(terms, compute.GemmTerm{TransA: trans, A: compute.V(computetest.BufferOf(be, a)), LDA: lda, K: k, B: compute.V(computetest.BufferOf(be, b)), LDB: ldb, Shift: sh})
				for i := 0; i < s.m; i++ {
					for j := 0; j < s.n; j++ {
						src := j - sh
						if src < 0 || src >= s.n {
							continue
						}
						for p := 0; p < k; p++ {
							var av float32
							if trans {
								av = a[p*lda+i]
							} else {
								av = a[i*lda+p]
							}
							want[i*ldc+j] += float64(av) * float64(b[p*ldb+src])
						}
					}
				}
			}
			var bias compute.View
			if s.bias {
				bv := randVec(r, s.m)
				bias = compute.V(computetest.BufferOf(be, bv))
				for i := 0; i < s.m; i++ {
					for j := 0; j < s.n; j++ {
						want[i*ldc+j] += float64(bv[i])
					}
				}
			}
			cv := compute.V(computetest.BufferOf(be, c))
			be.GemmTerms(s.m, s.n, terms, bias, s.beta, cv, ldc)
			got := be.Host(cv, len(c))
			for i := range got {
				if math.Abs(float64(got[i])-want[i]) > 1e-5*(10+math.Abs(want[i])) {
					t.Fatalf("%s: C[%d,%d] = %g, want %g", name, i/ldc, i%ldc, got[i], want[i])
				}
			}
		}
	}
}

// TestGemmTermsGradMatchesFloat64: weight gradients of shifted terms
// sharing one A (a conv's taps and its conditioning), accumulated into
// their own C, against a float64 reference, on the own kernels and on the
// per-term fallback.
func TestGemmTermsGradMatchesFloat64(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	for _, blas := range []string{"auto", "gonum"} {
		be := newOrSkip(t, blas, 2)
		for _, s := range []struct {
			m, k   int
			ns     []int
			shifts []int
		}{
			{14, 3000, []int{9, 9, 9, 5}, []int{0, 64, 128, 0}},
			{9, 1100, []int{7, 13}, []int{-3, 1099}},
			{3, 40, []int{2}, []int{5}},
		} {
			lda := s.k + 2
			a := randVec(r, (s.m-1)*lda+s.k)
			var terms []compute.GradTerm
			var wants [][]float64
			var cs []compute.View
			for ti, n := range s.ns {
				sh := s.shifts[ti]
				ldb, ldc := s.k+1, n+2
				b, c := randVec(r, (n-1)*ldb+s.k), randVec(r, (s.m-1)*ldc+n)
				want := make([]float64, len(c))
				for i := range c {
					want[i] = float64(c[i])
				}
				for i := 0; i < s.m; i++ {
					for j := 0; j < n; j++ {
						for p := 0; p < s.k; p++ {
							if q := p - sh; q >= 0 && q < s.k {
								want[i*ldc+j] += float64(a[i*lda+p]) * float64(b[j*ldb+q])
							}
						}
					}
				}
				cv := compute.V(computetest.BufferOf(be, c))
				terms = append(terms, compute.GradTerm{B: compute.V(computetest.BufferOf(be, b)), LDB: ldb, N: n, Shift: sh, C: cv, LDC: ldc})
				wants, cs = append(wants, want), append(cs, cv)
			}
			be.GemmTermsGrad(s.m, s.k, compute.V(computetest.BufferOf(be, a)), lda, terms)
			for ti, want := range wants {
				got := be.Host(cs[ti], len(want))
				for i := range got {
					if math.Abs(float64(got[i])-want[i]) > 1e-5*(math.Sqrt(float64(s.k))+math.Abs(want[i])) {
						t.Fatalf("%s m %d k %d term %d: C[%d] = %g, want %g", blas, s.m, s.k, ti, i, got[i], want[i])
					}
				}
			}
		}
	}
}
