package cpu

import (
	"fmt"

	"github.com/wavecat/wavecat/compute"
)

var _ compute.GemmTermser = (*Backend)(nil)

// GemmTerms implements compute.GemmTermser. On the own kernels it is one
// pass over C: each 64-column panel of B stacks every term's shifted rows,
// and op(A) of all terms sits side by side; otherwise it is a GEMM per
// term on shifted views and AddBias.
func (be *Backend) GemmTerms(m, n int, terms []compute.GemmTerm, bias compute.View, beta float32, c compute.View, ldc int) {
	if beta != 0 && beta != 1 {
		panic(fmt.Sprintf("cpu: GemmTerms: beta %g, want 0 or 1", beta))
	}
	cs := matrix(c, m, n, ldc, "GemmTerms", "C")
	var bs []float32
	if bias.Buf != nil {
		bs = sl(bias, m, "GemmTerms bias")
	}
	ktot := 0
	for i, t := range terms {
		if t.K <= 0 || t.Shift <= -n || t.Shift >= n {
			panic(fmt.Sprintf("cpu: GemmTerms: term %d has K %d and shift %d for %d columns", i, t.K, t.Shift, n))
		}
		ar, ac := stored(t.TransA, m, t.K)
		matrix(t.A, ar, ac, t.LDA, "GemmTerms", "A")
		matrix(t.B, t.K, n, t.LDB, "GemmTerms", "B")
		ktot += t.K
	}
	if m == 0 || n == 0 {
		return
	}
	if be.ownTerms(m, n, terms, ktot, bs, beta, cs, ldc) {
		return
	}
	for i, t := range terms {
		// Column j of the product reads B column j - shift: C columns
		// [max(s,0), n + min(s,0)) against B columns from max(-s, 0).
		s := t.Shift
		c0, b0, w := max(s, 0), max(-s, 0), n-abs(s)
		tb := beta
		if i > 0 {
			tb = 1
		}
		if tb == 0 && s != 0 {
			for r := 0; r < m; r++ { // the columns this term leaves
				clear(cs[r*ldc : r*ldc+n])
			}
			tb = 1
		}
		be.Gemm(t.TransA, false, m, w, t.K, 1, t.A, t.LDA, t.B.At(b0), t.LDB, tb, c.At(c0), ldc)
	}
	if bs != nil {
		for r := 0; r < m; r++ {
			addConst(cs[r*ldc:r*ldc+n], bs[r])
		}
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

var _ compute.GemmTermsGrader = (*Backend)(nil)

// GemmTermsGrad implements compute.GemmTermsGrader. On the own kernels A
// is read once per k block for every term's rows; otherwise it is a GEMM
// per term on shifted views.
func (be *Backend) GemmTermsGrad(m, k int, a compute.View, lda int, terms []compute.GradTerm) {
	as := matrix(a, m, k, lda, "GemmTermsGrad", "A")
	for i, t := range terms {
		if t.N <= 0 || t.Shift <= -k || t.Shift >= k {
			panic(fmt.Sprintf("cpu: GemmTermsGrad: term %d has N %d and shift %d for k %d", i, t.N, t.Shift, k))
		}
		matrix(t.B, t.N, k, t.LDB, "GemmTermsGrad", "B")
		matrix(t.C, m, t.N, t.LDC, "GemmTermsGrad", "C")
	}
	if m == 0 {
		return
	}
	if be.ownTermsGrad(m, k, as, lda, terms) {
		return
	}
	for _, t := range terms {
		// A column p meets B column p - shift, p in [max(s,0), k+min(s,0)).
		s := t.Shift
		a0, b0 := max(s, 0), max(-s, 0)
		be.Gemm(false, true, m, t.N, k-abs(s), 1, a.At(a0), lda, t.B.At(b0), t.LDB, 1, t.C, t.LDC)
	}
}
