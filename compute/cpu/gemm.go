package cpu

import (
	"errors"
	"fmt"

	"github.com/wavecat/wavecat/compute"
)

// matrix checks a rows x cols row-major matrix with leading dimension ld at v
// and returns the slice from its first to its last element. The operand
// name is joined to what only on failure, so the check does not allocate.
func matrix(v compute.View, rows, cols, ld int, what, operand string) []float32 {
	if ld < max(cols, 1) {
		panic(fmt.Sprintf("cpu: %s %s: leading dimension %d < %d columns", what, operand, ld, cols))
	}
	if rows == 0 || cols == 0 {
		return nil
	}
	n := (rows-1)*ld + cols
	if v.Buf == nil || v.Off < 0 || v.Off+n > v.Buf.Len() {
		v.Check(n, what+" "+operand) // panics with the range
	}
	return sl(v, n, what)
}

// stored is the shape (rows, columns) of an r x c operand as it is stored:
// transposed when trans.
func stored(trans bool, r, c int) (int, int) {
	if trans {
		return c, r
	}
	return r, c
}

// gemmChecked validates every operand and returns their slices.
func gemmChecked(transA, transB bool, m, n, k int, a compute.View, lda int, b compute.View, ldb int, c compute.View, ldc int, what string) (as, bs, cs []float32) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("cpu: %s: negative size m=%d n=%d k=%d", what, m, n, k))
	}
	ar, ac := stored(transA, m, k)
	br, bc := stored(transB, k, n)
	as = matrix(a, ar, ac, lda, what, "A")
	bs = matrix(b, br, bc, ldb, what, "B")
	cs = matrix(c, m, n, ldc, what, "C")
	return
}

// Gemm computes C = alpha*op(A)*op(B) + beta*C (row-major, see compute).
func (be *Backend) Gemm(transA, transB bool, m, n, k int, alpha float32, a compute.View, lda int, b compute.View, ldb int, beta float32, c compute.View, ldc int) {
	as, bs, cs := gemmChecked(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, "Gemm")
	be.gemmSlices(transA, transB, m, n, k, alpha, as, lda, bs, ldb, beta, cs, ldc)
}

func (be *Backend) gemmSlices(transA, transB bool, m, n, k int, alpha float32, as []float32, lda int, bs []float32, ldb int, beta float32, cs []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		// Nothing to multiply: C = beta*C.
		scaleRows(cs, m, n, ldc, beta)
		return
	}
	be.gemm.sgemm(transA, transB, m, n, k, alpha, as, lda, bs, ldb, beta, cs, ldc)
}

// scaleRows sets C (m x n, leading dimension ldc) to beta*C; beta 0
// overwrites, even NaNs, as BLAS does.
func scaleRows(c []float32, m, n, ldc int, beta float32) {
	if beta == 1 {
		return
	}
	for i := 0; i < m; i++ {
		row := c[i*ldc : i*ldc+n]
		if beta == 0 {
			clear(row)
		} else {
			scale(row, beta)
		}
	}
}

// GemmSum accumulates the batch's products into C one GEMM at a time (each
// GEMM already uses every thread).
func (be *Backend) GemmSum(transA, transB bool, m, n, k int, alpha float32, a compute.View, lda, strideA int, b compute.View, ldb, strideB int, beta float32, c compute.View, ldc int, batch int) {
	if batch < 0 {
		panic(fmt.Sprintf("cpu: GemmSum: negative batch %d", batch))
	}
	if batch == 0 {
		be.Gemm(transA, transB, m, n, 0, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	for i := 0; i < batch; i++ {
		be.Gemm(transA, transB, m, n, k, alpha, a.At(i*strideA), lda, b.At(i*strideB), ldb, beta, c, ldc)
		beta = 1
	}
}

// GemmStridedBatched runs batch GEMMs at strides strideA/B/C (0 shares the
// operand).
func (be *Backend) GemmStridedBatched(transA, transB bool, m, n, k int, alpha float32, a compute.View, lda, strideA int, b compute.View, ldb, strideB int, beta float32, c compute.View, ldc, strideC int, batch int) {
	if batch < 0 {
		panic(fmt.Sprintf("cpu: GemmStridedBatched: negative batch %d", batch))
	}
	if batch == 0 {
		return
	}
	// Check the first and last items before touching memory, so a bad
	// stride panics cleanly instead of half-way through; the offsets are
	// linear in the item index, so the items between are then in range too.
	gemmChecked(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, "GemmStridedBatched item 0")
	last := batch - 1
	gemmChecked(transA, transB, m, n, k, a.At(last*strideA), lda, b.At(last*strideB), ldb, c.At(last*strideC), ldc, "GemmStridedBatched last item")
	g := gemmArgs{be: be, transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, beta: beta,
		a: a, b: b, c: c, lda: lda, ldb: ldb, ldc: ldc, sa: strideA, sb: strideB, sc: strideC}
	// Items may run concurrently only if their C blocks are disjoint.
	disjoint := strideC >= (m-1)*ldc+n || -strideC >= (m-1)*ldc+n
	if batch > 1 && disjoint && be.gemm.batchParallel() {
		t := getTask(gemmTask)
		t.g = g
		be.do(t, batch, 1)
		return
	}
	g.items(0, batch)
}

// gemmArgs are one GemmStridedBatched call's arguments.
type gemmArgs struct {
	be             *Backend
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        compute.View
	lda, ldb, ldc  int
	sa, sb, sc     int
}

func gemmTask(t *task, lo, hi int) { t.g.items(lo, hi) }

// items runs batch items [lo, hi).
func (g *gemmArgs) items(lo, hi int) {
	for i := lo; i < hi; i++ {
		as, bs, cs := gemmChecked(g.transA, g.transB, g.m, g.n, g.k, g.a.At(i*g.sa), g.lda, g.b.At(i*g.sb), g.ldb, g.c.At(i*g.sc), g.ldc, "GemmStridedBatched")
		g.be.gemmSlices(g.transA, g.transB, g.m, g.n, g.k, g.alpha, as, g.lda, bs, g.ldb, g.beta, cs, g.ldc)
	}
}

var errNoOwnGEMM = errors.New("cpu: the wavecat GEMM kernels need an amd64 CPU with AVX-512 (F and VL)")

// ownArgs are one own-kernel GEMM's arguments on a task (gemm_own.go).
type ownArgs struct {
	transA, acc, rows bool
	m, n, k           int
	lda, ldb, ldc     int
	a, b, c           []float32
	// GemmTerms: B is stacked from the terms' shifted rows, a is op(A)
	// of all terms side by side (m x k), and tiles start from bias when
	// it is set.
	terms   []ownTerm
	termBuf [6]ownTerm // terms' backing array: a call allocates nothing
	bias    []float32
	groups  []ownGroup // GemmTermsGrad
}

// ownTerm is one GemmTerms term's B (k rows), or one GemmTermsGrad
// term's B (k = its N rows) and C.
type ownTerm struct {
	b             []float32
	ldb, k, shift int
	c             []float32
	ldc           int
}

// ownGroup is a GemmTermsGrad task's unit: rows [j, j+nr) of term t's B.
type ownGroup struct{ t, j, nr int }
