// Package computetest holds backend-independent conformance tests for
// compute.Backend: every kernel against naive float64 reference loops, and
// every backward kernel against float64 central finite differences of the
// reference forward. The CPU backend runs them; a GPU backend can reuse them
// unchanged since they touch buffers only through Upload/Download.
package computetest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute"
)

// RunConformance runs every conformance test as a subtest. newBackend is
// called once per subtest.
func RunConformance(t *testing.T, newBackend func() compute.Backend) {
	tests := []struct {
		name string
		f    func(*testing.T, compute.Backend)
	}{
		{"Memory", testMemory},
		{"BoundsPanic", testBoundsPanic},
		{"Gemm", testGemm},
		{"GemmStridedBatched", testGemmStridedBatched},
		{"GemmSum", testGemmSum},
		{"Elementwise", testElementwise},
		{"Reductions", testReductions},
		{"Bias", testBias},
		{"Gated", testGated},
		{"ReLUGrad", testReLUGrad},
		{"Stretch", testStretch},
		{"RowConv", testRowConv},
		{"WeightNorm", testWeightNorm},
		{"Adam", testAdam},
		{"EMA", testEMA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newBackend()) })
	}
}

// Elementwise sizes: odd, tiny, and above the CPU backend's parallel grain.
var sizes = []int{1, 7, 1023, 100003}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

func randn(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func to64(s []float32) []float64 {
	d := make([]float64, len(s))
	for i, v := range s {
		d[i] = float64(v)
	}
	return d
}

// upload allocates a buffer of pad+len(data)+pad elements (pads filled with
// a sentinel so stray writes are seen) and returns the view of data.
func upload(be compute.Backend, data []float32, pad int) compute.View {
	buf := be.Alloc(len(data) + 2*pad)
	all := make([]float32, len(data)+2*pad)
	for i := range all {
		all[i] = sentinel
	}
	copy(all[pad:], data)
	be.Upload(compute.V(buf), all)
	return compute.V(buf).At(pad)
}

const sentinel = -12345.5

// BufferOf allocates a buffer on be holding x: the tests' set-up of kernel
// and head inputs.
func BufferOf(be compute.Backend, x []float32) compute.Buffer {
	b := be.Alloc(len(x))
	be.Upload(compute.V(b), x)
	return b
}

// Contents reads all of b back from be.
func Contents(be compute.Backend, b compute.Buffer) []float32 {
	x := make([]float32, b.Len())
	be.Download(x, compute.V(b))
	return x
}

func download(be compute.Backend, v compute.View, n int) []float32 {
	d := make([]float32, n)
	be.Download(d, v)
	return d
}

// checkPads asserts the pad elements around a view made by upload are intact.
func checkPads(t *testing.T, be compute.Backend, v compute.View, n, pad int, what string) {
	t.Helper()
	before := download(be, v.At(-pad), pad)
	after := download(be, v.At(n), pad)
	for i := 0; i < pad; i++ {
		if before[i] != sentinel || after[i] != sentinel {
			t.Fatalf("%s: write outside the %d-element window (pad %d: %v / %v)", what, n, i, before[i], after[i])
		}
	}
}

// closeTo asserts |got-want| <= tol*(1+|want|) element by element.
func closeTo(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: length %d, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol*(1+math.Abs(want[i]))) {
			t.Fatalf("%s: element %d = %g, want %g (diff %g, tol %g)", what, i, got[i], want[i], d, tol)
		}
	}
}

func testMemory(t *testing.T, be compute.Backend) {
	buf := be.Alloc(10)
	if buf.Len() != 10 {
		t.Fatalf("Alloc(10).Len() = %d", buf.Len())
	}
	for i, v := range download(be, compute.V(buf), 10) {
		if v != 0 {
			t.Fatalf("Alloc not zero-filled: [%d] = %g", i, v)
		}
	}
	be.Upload(compute.V(buf).At(2), []float32{1, 2, 3, 4})
	be.Fill(compute.V(buf).At(7), 3, 2.5)
	be.Copy(compute.V(buf).At(0), compute.V(buf).At(3), 2)
	// Overlapping copy forwards behaves like memmove.
	be.Copy(compute.V(buf).At(3), compute.V(buf).At(2), 3)
	be.Sync()
	got := download(be, compute.V(buf), 10)
	want := []float32{2, 3, 1, 1, 2, 3, 0, 2.5, 2.5, 2.5}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("memory ops: got %v, want %v", got, want)
		}
	}
	be.Free(buf)
	if be.Name() == "" || be.Describe() == "" {
		t.Fatalf("empty Name %q or Describe %q", be.Name(), be.Describe())
	}
}

func expectPanic(t *testing.T, what, substr string, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("%s: no panic", what)
		}
		if msg := fmt.Sprint(r); !strings.Contains(msg, substr) {
			t.Fatalf("%s: panic %q does not mention %q", what, msg, substr)
		}
	}()
	f()
}

func testBoundsPanic(t *testing.T, be compute.Backend) {
	a := compute.V(be.Alloc(10))
	b := compute.V(be.Alloc(10))
	expectPanic(t, "Scale past end", "outside buffer", func() { be.Scale(a.At(5), 6, 2) })
	expectPanic(t, "Axpy negative offset", "outside buffer", func() { be.Axpy(a, b.At(-1), 3, 1) })
	expectPanic(t, "Download past end", "outside buffer", func() { be.Download(make([]float32, 11), a) })
	// 3x3 with ldc 4 needs 2*4+3 = 11 elements.
	expectPanic(t, "Gemm C too small", "outside buffer", func() { be.Gemm(false, false, 3, 3, 2, 1, a, 2, b, 3, 0, a, 4) })
	expectPanic(t, "Gemm batched last item", "outside buffer", func() {
		be.GemmStridedBatched(false, false, 2, 2, 2, 1, a, 2, 0, b, 2, 4, 0, compute.V(be.Alloc(100)), 2, 4, 3)
	})
}

// RefGemm is the row-major GEMM every backend promises, C = alpha*op(A)*op(B) + beta*C,
// in float64 (beta == 0 ignores C, so NaN there is overwritten, as BLAS does).
func RefGemm(transA, transB bool, m, n, k int, alpha float64, a []float32, lda int, b []float32, ldb int, beta float64, c []float32, ldc int) []float64 {
	out := to64(c)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float32
				if transA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if transB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			cv := 0.0
			if beta != 0 {
				cv = beta * float64(c[i*ldc+j])
			}
			out[i*ldc+j] = alpha*s + cv
		}
	}
	return out
}

func dims(trans bool, r, c int) (int, int) {
	if trans {
		return c, r
	}
	return r, c
}

func testGemm(t *testing.T, be compute.Backend) {
	r := newRand(1)
	// Include matrix-vector shapes big enough for a BLAS to thread them.
	shapes := [][3]int{{7, 13, 5}, {1, 9, 4}, {6, 1, 3}, {1, 1, 5}, {33, 17, 19}, {70, 65, 129}, {4, 5, 0}, {520, 1, 260}, {1, 300, 450}}
	for _, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, beta := range []float32{0, 0.3, 1} {
					name := fmt.Sprintf("m%d n%d k%d tA=%v tB=%v beta=%g", m, n, k, tA, tB, beta)
					ar, ac := dims(tA, m, k)
					br, bc := dims(tB, k, n)
					lda, ldb, ldc := ac+3, bc+1, n+2
					a := randn(r, max(ar*lda, 1))
					b := randn(r, max(br*ldb, 1))
					c := randn(r, m*ldc)
					if beta == 0 {
						c[0] = float32(math.NaN()) // beta 0 must overwrite, not scale
					}
					want := RefGemm(tA, tB, m, n, k, 0.7, a, lda, b, ldb, float64(beta), c, ldc)
					av, bv, cv := upload(be, a, 5), upload(be, b, 3), upload(be, c, 4)
					be.Gemm(tA, tB, m, n, k, 0.7, av, lda, bv, ldb, beta, cv, ldc)
					got := download(be, cv, len(c))
					// Columns past n in each C row are padding and must be kept.
					for i := 0; i < m; i++ {
						for j := n; j < ldc; j++ {
							want[i*ldc+j] = float64(c[i*ldc+j])
						}
					}
					closeTo(t, name, got, want, 2e-5*math.Sqrt(float64(k+1)))
					checkPads(t, be, cv, len(c), 4, name)
				}
			}
		}
	}
}

func testGemmStridedBatched(t *testing.T, be compute.Backend) {
	r := newRand(2)
	m, n, k, batch := 5, 11, 7, 3
	for _, shareA := range []bool{true, false} {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				name := fmt.Sprintf("shareA=%v tA=%v tB=%v", shareA, tA, tB)
				ar, ac := dims(tA, m, k)
				br, bc := dims(tB, k, n)
				lda, ldb, ldc := ac+1, bc+2, n+1
				sa, sb, sc := ar*lda+3, br*ldb+1, m*ldc+2
				if shareA {
					sa = 0
				}
				a := randn(r, ar*lda+sa*(batch-1))
				b := randn(r, sb*batch)
				c := randn(r, sc*batch)
				want := to64(c)
				for i := 0; i < batch; i++ {
					w := RefGemm(tA, tB, m, n, k, 1.5, a[i*sa:], lda, b[i*sb:], ldb, 0.5, c[i*sc:], ldc)
					for p := 0; p < m; p++ {
						copy(want[i*sc+p*ldc:i*sc+p*ldc+n], w[p*ldc:p*ldc+n])
					}
				}
				av, bv, cv := upload(be, a, 2), upload(be, b, 2), upload(be, c, 2)
				be.GemmStridedBatched(tA, tB, m, n, k, 1.5, av, lda, sa, bv, ldb, sb, 0.5, cv, ldc, sc, batch)
				closeTo(t, name, download(be, cv, len(c)), want, 1e-5)
				checkPads(t, be, cv, len(c), 2, name)
			}
		}
	}
}

// testGemmSum: C = alpha*sum_i op(A_i) op(B_i) + beta*C against float64
// sums of RefGemm, with a long k that a GPU splits into pieces (and a
// remainder), a short one, a single item, and a C with padding rows
// (ldc > n).
func testGemmSum(t *testing.T, be compute.Backend) {
	r := newRand(12)
	for _, c := range []struct{ m, n, k, batch, ldcPad int }{
		{5, 7, 1101, 3, 0}, {3, 4, 4096, 2, 0}, {6, 5, 9, 4, 0}, {4, 3, 700, 1, 0}, {5, 7, 1101, 3, 2}, {5, 7, 0, 2, 0},
	} {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, al := range []bool{true, false} {
					// al: operands 16-byte aligned with strides a multiple of
					// 4 floats (what a GPU may split along k), else odd
					// offsets and strides.
					name := fmt.Sprintf("m=%d n=%d k=%d batch=%d ldc+%d tA=%v tB=%v aligned=%v", c.m, c.n, c.k, c.batch, c.ldcPad, tA, tB, al)
					ar, ac := dims(tA, c.m, c.k)
					br, bc := dims(tB, c.k, c.n)
					lda, ldb, ldc := ac+1, bc+2, c.n+c.ldcPad
					sa, sb := ar*lda+3, br*ldb+1
					pad := 2
					if al {
						sa, sb, pad = (sa+3)&^3, (sb+3)&^3, 4
					}
					a := randn(r, sa*c.batch)
					b := randn(r, sb*c.batch)
					cm := randn(r, c.m*ldc)
					want := make([]float64, len(cm))
					for i := range want {
						want[i] = 0.5 * float64(cm[i])
					}
					zero := make([]float32, len(cm))
					for i := 0; i < c.batch; i++ {
						w := RefGemm(tA, tB, c.m, c.n, c.k, 1.5, a[i*sa:], lda, b[i*sb:], ldb, 0, zero, ldc)
						for p := 0; p < c.m; p++ {
							for j := 0; j < c.n; j++ {
								want[p*ldc+j] += w[p*ldc+j]
							}
						}
					}
					av, bv, cv := upload(be, a, pad), upload(be, b, pad), upload(be, cm, 2)
					be.GemmSum(tA, tB, c.m, c.n, c.k, 1.5, av, lda, sa, bv, ldb, sb, 0.5, cv, ldc, c.batch)
					got := download(be, cv, len(cm))
					for p := 0; p < c.m; p++ {
						for j := c.n; j < ldc; j++ {
							want[p*ldc+j] = float64(cm[p*ldc+j]) // padding untouched
						}
					}
					closeTo(t, name, got, want, 1e-4)
					checkPads(t, be, cv, len(cm), 2, name)
				}
			}
		}
	}
}

func testElementwise(t *testing.T, be compute.Backend) {
	r := newRand(3)
	for _, n := range sizes {
		x, y := randn(r, n), randn(r, n)
		xv, yv, dv := upload(be, x, 1), upload(be, y, 1), upload(be, make([]float32, n), 1)

		want := make([]float64, n)
		be.Scale(xv, n, -1.75)
		for i := range want {
			want[i] = float64(x[i]) * -1.75
		}
		closeTo(t, fmt.Sprintf("Scale n=%d", n), download(be, xv, n), want, 1e-6)
		checkPads(t, be, xv, n, 1, "Scale")
		be.Upload(xv, x)

		be.Axpy(yv, xv, n, 0.3)
		for i := range want {
			want[i] = float64(y[i]) + 0.3*float64(x[i])
		}
		closeTo(t, fmt.Sprintf("Axpy n=%d", n), download(be, yv, n), want, 1e-6)
		be.Upload(yv, y)

		be.AddScaled(dv, xv, yv, n, float32(math.Sqrt(0.5)))
		for i := range want {
			want[i] = (float64(x[i]) + float64(y[i])) * float64(float32(math.Sqrt(0.5)))
		}
		closeTo(t, fmt.Sprintf("AddScaled n=%d", n), download(be, dv, n), want, 1e-6)
		checkPads(t, be, dv, n, 1, "AddScaled")

		be.ReLU(dv, xv, n)
		for i := range want {
			want[i] = math.Max(float64(x[i]), 0)
		}
		closeTo(t, fmt.Sprintf("ReLU n=%d", n), download(be, dv, n), want, 0)
		be.ReLU(xv, xv, n) // in place
		closeTo(t, fmt.Sprintf("ReLU in place n=%d", n), download(be, xv, n), want, 0)

		// ReLUBackward with y = relu(x) now in xv.
		be.ReLUBackward(dv, yv, xv, n)
		for i := range want {
			want[i] = 0
			if x[i] > 0 {
				want[i] = float64(y[i])
			}
		}
		closeTo(t, fmt.Sprintf("ReLUBackward n=%d", n), download(be, dv, n), want, 0)
		checkPads(t, be, dv, n, 1, "ReLUBackward")
	}
}

func testReductions(t *testing.T, be compute.Backend) {
	r := newRand(4)
	for _, n := range sizes {
		x, y := randn(r, n), randn(r, n)
		xv, yv := upload(be, x, 0), upload(be, y, 0)
		var dot, ss float64
		for i := range x {
			dot += float64(x[i]) * float64(y[i])
			ss += float64(x[i]) * float64(x[i])
		}
		// Accumulation is in float64, so only float32 products round.
		if got := be.Dot(xv, yv, n); math.Abs(got-dot) > 1e-9*(float64(n)+math.Abs(dot)) {
			t.Fatalf("Dot n=%d = %.12g, want %.12g", n, got, dot)
		}
		if got := be.SumSquares(xv, n); math.Abs(got-ss) > 1e-9*(float64(n)+ss) {
			t.Fatalf("SumSquares n=%d = %.12g, want %.12g", n, got, ss)
		}
	}
}

// gradCheck compares an analytic gradient with float64 central differences
// of loss at up to maxProbe coordinates of x (loss must be float64 maths).
func gradCheck(t *testing.T, what string, x []float64, analytic []float32, loss func([]float64) float64, maxProbe int, r *rand.Rand) {
	t.Helper()
	if len(analytic) != len(x) {
		t.Fatalf("%s: gradient length %d, want %d", what, len(analytic), len(x))
	}
	idx := make([]int, len(x))
	for i := range idx {
		idx[i] = i
	}
	if len(x) > maxProbe {
		r.Shuffle(len(idx), func(i, j int) { idx[i], idx[j] = idx[j], idx[i] })
		idx = idx[:maxProbe]
	}
	fd := make([]float64, len(idx))
	scale := 0.0
	for p, i := range idx {
		h := 1e-6 * math.Max(1, math.Abs(x[i]))
		old := x[i]
		x[i] = old + h
		lp := loss(x)
		x[i] = old - h
		lm := loss(x)
		x[i] = old
		fd[p] = (lp - lm) / (2 * h)
		scale = math.Max(scale, math.Abs(fd[p]))
	}
	for p, i := range idx {
		g := float64(analytic[i])
		// Relative 1e-3, with a floor for gradients that are zero in exact
		// arithmetic (float32 rounding leaves ~1e-8 there).
		if d := math.Abs(g - fd[p]); d > 1e-3*math.Abs(fd[p])+1e-5*scale+1e-6 {
			t.Fatalf("%s: d/dx[%d] = %g, finite difference %g (rel err %.2g)", what, i, g, fd[p], d/math.Abs(fd[p]))
		}
	}
}

func dot64(a []float32, b []float64) float64 {
	var s float64
	for i := range b {
		s += float64(a[i]) * b[i]
	}
	return s
}

func testBias(t *testing.T, be compute.Backend) {
	r := newRand(5)
	for _, d := range [][3]int{{3, 5, 7}, {2, 64, 1001}} {
		batch, ch, tt := d[0], d[1], d[2]
		n := batch * ch * tt
		x, bias := randn(r, n), randn(r, ch)
		xv, bv := upload(be, x, 1), upload(be, bias, 1)
		be.AddBias(xv, bv, batch, ch, tt)
		fwd := func(bias []float64) []float64 {
			out := to64(x)
			for i := range out {
				out[i] += bias[(i/tt)%ch]
			}
			return out
		}
		name := fmt.Sprintf("AddBias %v", d)
		closeTo(t, name, download(be, xv, n), fwd(to64(bias)), 1e-6)
		checkPads(t, be, xv, n, 1, name)

		// BiasGrad accumulates: start from a known dbias and subtract it.
		dy := randn(r, n)
		dyv := upload(be, dy, 0)
		init := randn(r, ch)
		dbv := upload(be, init, 1)
		be.BiasGrad(dbv, dyv, batch, ch, tt)
		got := download(be, dbv, ch)
		for i := range got {
			got[i] -= init[i]
		}
		b64 := to64(bias)
		gradCheck(t, "BiasGrad "+name, b64, got, func(b []float64) float64 { return dot64(dy, fwd(b)) }, 64, r)
		checkPads(t, be, dbv, ch, 1, "BiasGrad")
	}
}

func tanh64(x float64) float64    { return math.Tanh(x) }
func sigmoid64(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

func testGated(t *testing.T, be compute.Backend) {
	r := newRand(6)
	for _, d := range [][2]int{{3, 17}, {1, 40000}, {4, 9000}} {
		batch, n := d[0], d[1]
		pre := randn(r, 2*batch*n)
		for i := range pre {
			pre[i] *= 3 // reach the saturating tails
		}
		fwd := func(p []float64) []float64 {
			z := make([]float64, batch*n)
			for b := 0; b < batch; b++ {
				for i := 0; i < n; i++ {
					z[b*n+i] = tanh64(p[2*b*n+i]) * sigmoid64(p[(2*b+1)*n+i])
				}
			}
			return z
		}
		name := fmt.Sprintf("Gated batch=%d n=%d", batch, n)
		pv, zv := upload(be, pre, 1), upload(be, make([]float32, batch*n), 1)
		be.GatedTanhSigmoid(zv, pv, batch, n)
		closeTo(t, name, download(be, zv, batch*n), fwd(to64(pre)), 2e-6)
		checkPads(t, be, zv, batch*n, 1, name)

		dz := randn(r, batch*n)
		dzv, dpv := upload(be, dz, 0), upload(be, make([]float32, 2*batch*n), 1)
		be.GatedTanhSigmoidBackward(dpv, dzv, pv, batch, n)
		gradCheck(t, name+" backward", to64(pre), download(be, dpv, 2*batch*n), func(p []float64) float64 { return dot64(dz, fwd(p)) }, 200, r)
		checkPads(t, be, dpv, 2*batch*n, 1, name+" backward")
	}
}

func testReLUGrad(t *testing.T, be compute.Backend) {
	r := newRand(7)
	n := 301
	x := randn(r, n)
	for i := range x {
		if math.Abs(float64(x[i])) < 0.05 { // keep finite differences off the kink
			x[i] = 0.5
		}
	}
	fwd := func(x []float64) []float64 {
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = math.Max(v, 0)
		}
		return y
	}
	xv, yv := upload(be, x, 0), upload(be, make([]float32, n), 0)
	be.ReLU(yv, xv, n)
	dy := randn(r, n)
	dyv, dxv := upload(be, dy, 0), upload(be, make([]float32, n), 0)
	be.ReLUBackward(dxv, dyv, yv, n)
	gradCheck(t, "ReLUBackward", to64(x), download(be, dxv, n), func(x []float64) float64 { return dot64(dy, fwd(x)) }, n, r)
}

func testStretch(t *testing.T, be compute.Backend) {
	r := newRand(8)
	for _, d := range [][3]int{{3, 5, 4}, {80, 161, 4}, {2, 7, 1}} {
		rows, tt, s := d[0], d[1], d[2]
		src := randn(r, rows*tt)
		fwd := func(x []float64) []float64 {
			out := make([]float64, rows*tt*s)
			for i := range out {
				out[i] = x[(i/(tt*s))*tt+(i%(tt*s))/s]
			}
			return out
		}
		name := fmt.Sprintf("Stretch %v", d)
		sv, dv := upload(be, src, 1), upload(be, make([]float32, rows*tt*s), 1)
		be.Stretch(dv, sv, rows, tt, s)
		closeTo(t, name, download(be, dv, rows*tt*s), fwd(to64(src)), 0)
		checkPads(t, be, dv, rows*tt*s, 1, name)

		dy := randn(r, rows*tt*s)
		dyv := upload(be, dy, 0)
		gv := upload(be, randn(r, rows*tt), 1) // garbage: must be overwritten
		be.StretchBackward(gv, dyv, rows, tt, s)
		gradCheck(t, name+" backward", to64(src), download(be, gv, rows*tt), func(x []float64) float64 { return dot64(dy, fwd(x)) }, 100, r)
		checkPads(t, be, gv, rows*tt, 1, name+" backward")
	}
}

func refRowConv(src, w []float64, rows, tt int) []float64 {
	h := len(w) / 2
	out := make([]float64, rows*tt)
	for rr := 0; rr < rows; rr++ {
		for i := 0; i < tt; i++ {
			var s float64
			for j := range w {
				if u := i + j - h; u >= 0 && u < tt {
					s += w[j] * src[rr*tt+u]
				}
			}
			out[rr*tt+i] = s
		}
	}
	return out
}

func testRowConv(t *testing.T, be compute.Backend) {
	r := newRand(9)
	for _, d := range [][3]int{{3, 11, 3}, {2, 4, 9}, {80, 640, 9}, {1, 1, 1}} {
		rows, tt, width := d[0], d[1], d[2]
		src, w := randn(r, rows*tt), randn(r, width)
		name := fmt.Sprintf("RowConvSame %v", d)
		sv, wv, dv := upload(be, src, 1), upload(be, w, 1), upload(be, randn(r, rows*tt), 1)
		be.RowConvSame(dv, sv, wv, rows, tt, width)
		closeTo(t, name, download(be, dv, rows*tt), refRowConv(to64(src), to64(w), rows, tt), 1e-5)
		checkPads(t, be, dv, rows*tt, 1, name)

		dy := randn(r, rows*tt)
		dyv := upload(be, dy, 0)
		dsv := upload(be, randn(r, rows*tt), 1) // overwritten
		dw0 := randn(r, width)
		dwv := upload(be, dw0, 1) // accumulated
		be.RowConvSameBackward(dsv, dwv, dyv, sv, wv, rows, tt, width)
		w64 := to64(w)
		gradCheck(t, name+" dsrc", to64(src), download(be, dsv, rows*tt), func(x []float64) float64 { return dot64(dy, refRowConv(x, w64, rows, tt)) }, 60, r)
		dw := download(be, dwv, width)
		for i := range dw {
			dw[i] -= dw0[i]
		}
		s64 := to64(src)
		gradCheck(t, name+" dw", w64, dw, func(w []float64) float64 { return dot64(dy, refRowConv(s64, w, rows, tt)) }, width, r)
		checkPads(t, be, dsv, rows*tt, 1, name+" dsrc")
		checkPads(t, be, dwv, width, 1, name+" dw")
	}
}

func refWeightNorm(g, v []float64, groups, out, inner int) []float64 {
	w := make([]float64, len(v))
	for o := 0; o < out; o++ {
		var ss float64
		for k := 0; k < groups; k++ {
			for i := 0; i < inner; i++ {
				x := v[(k*out+o)*inner+i]
				ss += x * x
			}
		}
		for k := 0; k < groups; k++ {
			for i := 0; i < inner; i++ {
				j := (k*out+o)*inner + i
				w[j] = g[o] * v[j] / math.Sqrt(ss)
			}
		}
	}
	return w
}

func testWeightNorm(t *testing.T, be compute.Backend) {
	r := newRand(10)
	for _, d := range [][3]int{{3, 5, 7}, {1, 4, 1}, {3, 256, 128}} {
		groups, out, inner := d[0], d[1], d[2]
		n := groups * out * inner
		g, v := randn(r, out), randn(r, n)
		name := fmt.Sprintf("WeightNorm %v", d)
		gv, vv, wv := upload(be, g, 1), upload(be, v, 1), upload(be, randn(r, n), 1)
		be.WeightNorm(wv, gv, vv, groups, out, inner)
		closeTo(t, name, download(be, wv, n), refWeightNorm(to64(g), to64(v), groups, out, inner), 1e-5)
		checkPads(t, be, wv, n, 1, name)

		dw := randn(r, n)
		dg0, dv0 := randn(r, out), randn(r, n)
		dwv, dgv, dvv := upload(be, dw, 0), upload(be, dg0, 1), upload(be, dv0, 1)
		be.WeightNormBackward(dgv, dvv, dwv, gv, vv, groups, out, inner)
		dg, dvg := download(be, dgv, out), download(be, dvv, n)
		for i := range dg {
			dg[i] -= dg0[i]
		}
		for i := range dvg {
			dvg[i] -= dv0[i]
		}
		g64, v64 := to64(g), to64(v)
		gradCheck(t, name+" dg", g64, dg, func(g []float64) float64 { return dot64(dw, refWeightNorm(g, v64, groups, out, inner)) }, 40, r)
		gradCheck(t, name+" dv", v64, dvg, func(v []float64) float64 { return dot64(dw, refWeightNorm(g64, v, groups, out, inner)) }, 40, r)
		checkPads(t, be, dgv, out, 1, name+" dg")
		checkPads(t, be, dvv, n, 1, name+" dv")
	}
}

// testAdam checks three steps on two parameters against values worked out
// by hand from the PyTorch formula (lr 0.1, betas 0.9/0.999, eps 1e-8):
//
//	step 1, g = 0.5: m = 0.05, v = 0.00025, mhat = 0.5, vhat = 0.25,
//	  p = 1 - 0.1*0.5/0.5 = 0.9 (Adam's first step is lr*sign(g)).
//	step 2, g = -1: m = 0.045 - 0.1 = -0.055, v = 0.00024975 + 0.001 =
//	  0.00124975, mhat = -0.055/0.19 = -0.289473684, vhat = 0.00124975/0.001999
//	  = 0.625187594, p = 0.9 + 0.1*0.289473684/0.790688051 = 0.936610...
//
// plus the same for the second parameter with zero gradient (stays put), and
// a third step compared with a float64 re-derivation of the same formula.
func testAdam(t *testing.T, be compute.Backend) {
	p0 := []float32{1, -2}
	pv, gv := upload(be, p0, 1), upload(be, []float32{0, 0}, 1)
	mv, vv := upload(be, []float32{0, 0}, 1), upload(be, []float32{0, 0}, 1)
	hp := compute.AdamParams{LR: 0.1, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8}
	grads := [][]float32{{0.5, 0}, {-1, 0}, {2, 0}}
	want := [][]float64{{0.9, -2}, {0.936610, -2}}
	m, v, p := 0.0, 0.0, 1.0
	for step, g := range grads {
		be.Upload(gv, g)
		hp.Step = step + 1
		be.Adam(pv, gv, mv, vv, 2, hp)
		got := download(be, pv, 2)
		// float64 re-derivation, for the third step and the moments.
		b1, b2 := float64(float32(0.9)), float64(float32(0.999))
		gg := float64(g[0])
		m = b1*m + (1-b1)*gg
		v = b2*v + (1-b2)*gg*gg
		mh := m / (1 - math.Pow(b1, float64(step+1)))
		vh := v / (1 - math.Pow(b2, float64(step+1)))
		p -= float64(float32(0.1)) * mh / (math.Sqrt(vh) + 1e-8)
		w := []float64{p, -2}
		if step < len(want) {
			closeTo(t, fmt.Sprintf("Adam step %d hand value", step+1), got, want[step], 2e-6)
		}
		closeTo(t, fmt.Sprintf("Adam step %d", step+1), got, w, 2e-6)
		closeTo(t, fmt.Sprintf("Adam step %d m", step+1), download(be, mv, 2), []float64{m, 0}, 1e-6)
		closeTo(t, fmt.Sprintf("Adam step %d v", step+1), download(be, vv, 2), []float64{v, 0}, 1e-6)
	}
	checkPads(t, be, pv, 2, 1, "Adam param")

	// Large n exercises the parallel path; one step from zero moments moves
	// every parameter by -lr*sign(g).
	r := newRand(11)
	n := 100003
	ps, gs := randn(r, n), randn(r, n)
	pbv, gbv := upload(be, ps, 0), upload(be, gs, 0)
	mbv, vbv := upload(be, make([]float32, n), 0), upload(be, make([]float32, n), 0)
	be.Adam(pbv, gbv, mbv, vbv, n, compute.AdamParams{LR: 0.01, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1})
	wantBig := make([]float64, n)
	for i := range wantBig {
		wantBig[i] = float64(ps[i]) - 0.01*math.Copysign(1, float64(gs[i]))*math.Abs(float64(gs[i]))/(math.Abs(float64(gs[i]))+1e-8)
	}
	closeTo(t, "Adam n=100003 first step", download(be, pbv, n), wantBig, 1e-5)
}

// testEMA: decay 0.9, ema 1 and param 3 give 0.9+0.3 = 1.2, then
// 1.08+0.3 = 1.38, then 1.242+0.3 = 1.542.
func testEMA(t *testing.T, be compute.Backend) {
	ev, pv := upload(be, []float32{1, 0}, 1), upload(be, []float32{3, -1}, 1)
	want := [][]float64{{1.2, -0.1}, {1.38, -0.19}, {1.542, -0.271}}
	for step, w := range want {
		be.EMA(ev, pv, 2, 0.9)
		closeTo(t, fmt.Sprintf("EMA step %d", step+1), download(be, ev, 2), w, 1e-6)
	}
	checkPads(t, be, ev, 2, 1, "EMA")

	r := newRand(12)
	n := 100003
	e, p := randn(r, n), randn(r, n)
	ebv, pbv := upload(be, e, 0), upload(be, p, 0)
	be.EMA(ebv, pbv, n, 0.9999)
	wantBig := make([]float64, n)
	for i := range wantBig {
		d := float64(float32(0.9999))
		wantBig[i] = d*float64(e[i]) + (1-d)*float64(p[i])
	}
	closeTo(t, "EMA n=100003", download(be, ebv, n), wantBig, 1e-6)
}
