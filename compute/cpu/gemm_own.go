//go:build amd64

package cpu

import (
	"sync"

	"github.com/wavecat/wavecat/compute"

	"golang.org/x/sys/cpu"
)

// ownGEMM runs the GEMMs of a training step on wavecat's own AVX-512
// kernels (gen_gemm.py) and hands every other product to inner (OpenBLAS
// or gonum). Why our own: training's products are long and thin (a
// 256x128 weight times 128 x 10240 activations, or the weight gradient
// summed over 10240 samples), OpenBLAS is often built or pinned for AVX2
// (this project's machine pins it to its Haswell kernels), and without
// OpenBLAS the pure-Go fallback is ten times slower. The NN and TN
// products broadcast op(A) straight from A against a copied 64-column
// panel of B; the NT product (weight gradients) runs lanes along the
// shared time axis against a copied block of B rows. Each element of C is
// computed by one goroutine in a fixed order, so results do not depend on
// timing.
type ownGEMM struct {
	inner   sgemmer
	threads int
	pool    *workerPool // the backend's
}

// ownGEMMSupported: the kernels use AVX-512F with 128/256-bit EVEX forms (VL).
var ownGEMMSupported = cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL

const (
	gpMR, gpCols = 6, 64 // panel tile: rows x columns (4 vectors)
	gdMR, gdNR   = 4, 6  // dot tile
	// gdKC is the k block of the dot kernel: a 4-row A block of all m rows
	// (m*gdKC floats, 1 MB at m = 256) stays in a 2 MB L2 while every
	// 6-row B block passes over it.
	gdKC = 1024
	// ownMinWork is the multiply-adds below which a product goes to inner
	// (a synthesis step's GEMVs, tiny test shapes).
	ownMinWork = 1 << 16
)

func (g *ownGEMM) name() string { return "wavecat" }
func (g *ownGEMM) describe() string {
	return "wavecat AVX-512 kernels for training's GEMMs, " + g.inner.describe() + " for the rest"
}

// batchParallel is false: a batch item on a pool worker would call
// runChunks on the same pool, which can deadlock, and each product
// already uses every thread.
func (g *ownGEMM) batchParallel() bool { return false }

func (g *ownGEMM) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if alpha != 1 || (transA && transB) || m*n*k < ownMinWork || (!transB && n < 16) || (transB && k < 16) {
		g.inner.sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if beta == 0 && !transB {
		g.panels(transA, m, n, k, a, lda, b, ldb, c, ldc, false)
		return
	}
	scaleRows(c, m, n, ldc, beta)
	if !transB {
		g.panels(transA, m, n, k, a, lda, b, ldb, c, ldc, true)
	} else {
		g.dots(m, n, k, a, lda, b, ldb, c, ldc)
	}
}

// panels computes C += op(A) B (C = op(A) B when acc is false) for
// row-major B (NN, TN): the columns of C are split over the threads in
// 64-wide tiles; each tile's B panel (k x 64) is copied once and then read
// from cache for every 6-row tile of C.
func (g *ownGEMM) panels(transA bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, acc bool) {
	t := getTask(ownPanelTask)
	t.own = ownArgs{transA: transA, acc: acc, m: m, n: n, k: k, lda: lda, ldb: ldb, ldc: ldc, a: a, b: b, c: c}
	tiles := (n + gpCols - 1) / gpCols
	g.pool.runChunks(t, tiles, min(g.threads, tiles))
	putTask(t)
}

// ownPanelTask runs column tiles [lo, hi) of a panels product.
func ownPanelTask(t *task, lo, hi int) {
	o := &t.own
	m, n, k, a, b, c, ldb, ldc := o.m, o.n, o.k, o.a, o.b, o.c, o.ldb, o.ldc
	ars, aps := o.lda, 1
	if o.transA {
		ars, aps = 1, o.lda
	}
	pp, p := panelBuf(k * gpCols)
	for t := lo; t < hi; t++ {
		j0 := t * gpCols
		w := min(gpCols, n-j0)
		nv := (w + 15) / 16
		mask := 1<<(w-16*(nv-1)) - 1
		// B's rows are ldb apart, often a multiple of 4 KiB (10240
		// floats): read in place, the panel's k rows fall into a few
		// cache sets and evict each other (measured 2.5-3x slower).
		if o.terms == nil {
			for r := 0; r < k; r++ {
				copy(p[r*gpCols:r*gpCols+w], b[r*ldb+j0:r*ldb+j0+w])
			}
		} else {
			stackTerms(p, o.terms, n, j0, w)
		}
		for i0 := 0; i0 < m; i0 += gpMR {
			mr := min(gpMR, m-i0)
			mode, bias := 0, (*float32)(nil)
			if o.acc {
				mode = 1
			} else if o.bias != nil {
				mode, bias = 2, &o.bias[i0]
			}
			gpKernels[mr-1][nv-1](&a[i0*ars], ars, aps, &p[0], gpCols, &c[i0*ldc+j0], ldc, k, mask, mode, bias)
		}
		if o.acc && o.bias != nil {
			for i := 0; i < m; i++ {
				addConst(c[i*ldc+j0:i*ldc+j0+w], o.bias[i])
			}
		}
	}
	panelPool.Put(pp)
}

// stackTerms fills panel p (64 floats a row) with columns [j0, j0+w) of
// every term's B, shifted, one term's rows after another's: column j takes
// B column j - shift, zero outside [0, n).
func stackTerms(p []float32, terms []ownTerm, n, j0, w int) {
	r0 := 0
	for _, t := range terms {
		for r := 0; r < t.k; r++ {
			shiftedCopy(p[(r0+r)*gpCols:(r0+r)*gpCols+w], t.b[r*t.ldb:r*t.ldb+n], j0-t.shift)
		}
		r0 += t.k
	}
}

// shiftedCopy fills dst with src[start : start+len(dst)], zero where the
// index falls outside src.
func shiftedCopy(dst, src []float32, start int) {
	lo, hi := max(start, 0), min(start+len(dst), len(src))
	if hi <= lo {
		clear(dst)
		return
	}
	d0 := lo - start
	clear(dst[:d0])
	copy(dst[d0:], src[lo:hi])
	clear(dst[d0+hi-lo:])
}

// panelPool holds the threads' copies of a B panel or block.
var panelPool = sync.Pool{New: func() any { return new([]float32) }}

// panelBuf returns a pooled buffer of n floats (give pp back to
// panelPool when done).
func panelBuf(n int) (pp *[]float32, p []float32) {
	pp = panelPool.Get().(*[]float32)
	if cap(*pp) < n {
		*pp = make([]float32, n)
	}
	return pp, (*pp)[:n]
}

// dots computes C += A B^T (NT) with lanes along k: a GemmTermsGrad
// product of one unshifted term (ownGradTask), the threads splitting C's
// columns (B's rows) in 6-row groups, or its rows when there are more of
// those.
func (g *ownGEMM) dots(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	t := getTask(ownGradTask)
	t.own.terms = append(t.own.termBuf[:0], ownTerm{b: b, ldb: ldb, k: n, c: c, ldc: ldc})
	g.runGrad(t, m, k, a, lda)
}

// runGrad runs the dot task t (its terms set) over A (m x k): the threads
// split the terms' 6-row groups of B, or A's 4-row groups when there are
// more of those than groups and too few groups to go round.
func (g *ownGEMM) runGrad(t *task, m, k int, a []float32, lda int) {
	o := &t.own
	gp, groups := termGroups(o.terms)
	ig := (m + gdMR - 1) / gdMR
	o.rows = len(groups) < ig && len(groups) < 2*g.threads
	o.m, o.k, o.a, o.lda, o.groups = m, k, a, lda, groups
	units := len(groups)
	if o.rows {
		units = ig
	}
	g.pool.runChunks(t, units, min(g.threads, units))
	putTask(t)
	*gp = groups
	groupPool.Put(gp)
}

// newOwnGEMM wraps inner with the own kernels, or says why it cannot.
func newOwnGEMM(inner sgemmer, threads int, pool *workerPool) (sgemmer, error) {
	if !ownGEMMSupported {
		return nil, errNoOwnGEMM
	}
	return &ownGEMM{inner: inner, threads: threads, pool: pool}, nil
}

// ownTerms runs GemmTerms on the own kernels when they are in use and the
// product is large enough; it reports whether it did.
func (be *Backend) ownTerms(m, n int, terms []compute.GemmTerm, ktot int, bias []float32, beta float32, c []float32, ldc int) bool {
	g, ok := be.gemm.(*ownGEMM)
	if !ok || n < 16 || m*n*ktot < ownMinWork || len(terms) > len(ownArgs{}.termBuf) {
		return false
	}
	// op(A) of every term side by side: m x ktot, row-major.
	ap, a := panelBuf(m * ktot)
	t := getTask(ownPanelTask)
	o := &t.own
	o.terms = o.termBuf[:0]
	koff := 0
	for _, tm := range terms {
		ar, ac := stored(tm.TransA, m, tm.K)
		as := matrix(tm.A, ar, ac, tm.LDA, "GemmTerms", "A")
		for i := 0; i < m; i++ {
			row := a[i*ktot+koff : i*ktot+koff+tm.K]
			if tm.TransA {
				for p := range row {
					row[p] = as[p*tm.LDA+i]
				}
			} else {
				copy(row, as[i*tm.LDA:i*tm.LDA+tm.K])
			}
		}
		o.terms = append(o.terms, ownTerm{b: matrix(tm.B, tm.K, n, tm.LDB, "GemmTerms", "B"), ldb: tm.LDB, k: tm.K, shift: tm.Shift})
		koff += tm.K
	}
	o.acc, o.m, o.n, o.k, o.lda, o.ldc, o.a, o.c, o.bias = beta != 0, m, n, ktot, ktot, ldc, a, c, bias
	tiles := (n + gpCols - 1) / gpCols
	g.pool.runChunks(t, tiles, min(g.threads, tiles))
	putTask(t)
	panelPool.Put(ap)
	return true
}

// ownTermsGrad runs GemmTermsGrad on the own dot kernel when it is in use:
// the threads split the work (runGrad); for each k block a
// thread copies a group's shifted rows together and runs every 4-row group
// of A against it, so A's block stays in L2 for all the terms.
func (be *Backend) ownTermsGrad(m, k int, a []float32, lda int, terms []compute.GradTerm) bool {
	g, ok := be.gemm.(*ownGEMM)
	n := 0
	for _, t := range terms {
		n += t.N
	}
	if !ok || k < 16 || m*n*k < ownMinWork || len(terms) > len(ownArgs{}.termBuf) {
		return false
	}
	t := getTask(ownGradTask)
	o := &t.own
	o.terms = o.termBuf[:0]
	for _, tm := range terms {
		o.terms = append(o.terms, ownTerm{b: matrix(tm.B, tm.N, k, tm.LDB, "GemmTermsGrad", "B"), ldb: tm.LDB, k: tm.N, shift: tm.Shift,
			c: matrix(tm.C, m, tm.N, tm.LDC, "GemmTermsGrad", "C"), ldc: tm.LDC})
	}
	g.runGrad(t, m, k, a, lda)
	return true
}

var groupPool = sync.Pool{New: func() any { return new([]ownGroup) }}

// termGroups cuts the terms' B rows into groups of at most 6 (a pooled
// slice: give gp back to groupPool when done).
func termGroups(terms []ownTerm) (gp *[]ownGroup, groups []ownGroup) {
	gp = groupPool.Get().(*[]ownGroup)
	groups = (*gp)[:0]
	for i, tm := range terms {
		for j := 0; j < tm.k; j += gdNR {
			groups = append(groups, ownGroup{t: i, j: j, nr: min(gdNR, tm.k-j)})
		}
	}
	return gp, groups
}

// ownGradTask runs B row groups [lo, hi) of a GemmTermsGrad product, or,
// when o.rows, every group against A's 4-row groups [lo, hi).
func ownGradTask(t *task, lo, hi int) {
	o := &t.own
	m, k, a, lda := o.m, o.k, o.a, o.lda
	groups, i0, i1 := o.groups, lo*gdMR, min(hi*gdMR, m)
	if !o.rows {
		groups, i0, i1 = o.groups[lo:hi], 0, m
	}
	pp, p := panelBuf(gdNR * gdKC)
	for k0 := 0; k0 < k; k0 += gdKC {
		kl := min(gdKC, k-k0)
		chunks, mask := kl/16, 1<<(kl%16)-1
		for _, gr := range groups {
			tm := &o.terms[gr.t]
			// Columns [k0, k0+kl) of the group's rows, B read shift to
			// the left, zero outside [0, k).
			for r := 0; r < gr.nr; r++ {
				b0 := (gr.j + r) * tm.ldb
				shiftedCopy(p[r*gdKC:r*gdKC+kl], tm.b[b0:b0+k], k0-tm.shift)
			}
			for i := i0; i < i1; i += gdMR {
				mr := min(gdMR, m-i)
				gdKernels[mr-1][gr.nr-1](&a[i*lda+k0], lda, &p[0], gdKC, &tm.c[i*tm.ldc+gr.j], tm.ldc, chunks, mask)
			}
		}
	}
	panelPool.Put(pp)
}
