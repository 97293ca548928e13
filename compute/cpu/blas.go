package cpu

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// sgemmer is one GEMM library. Arguments are already bounds-checked and
// non-degenerate (m, n, k > 0); slices start at element (0, 0) of each matrix.
type sgemmer interface {
	name() string
	describe() string
	sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	// batchParallel says whether GemmStridedBatched should spread batch items
	// over goroutines (the library does not thread well by itself).
	batchParallel() bool
}

// gonumBLAS is the pure-Go fallback: ~10x slower than OpenBLAS here
// (REFERENCE.md §4) but always available.
type gonumBLAS struct {
	threads int
	impl    gonum.Implementation
	why     string // why OpenBLAS is not in use, for Describe
}

func newGonum(threads int) *gonumBLAS { return &gonumBLAS{threads: threads} }

func (g *gonumBLAS) name() string { return "gonum" }
func (g *gonumBLAS) describe() string {
	if g.why != "" {
		return "gonum blas32 sgemm (pure Go; " + g.why + ")"
	}
	return "gonum blas32 sgemm (pure Go)"
}
func (g *gonumBLAS) batchParallel() bool { return g.threads > 1 }

func (g *gonumBLAS) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	switch {
	case n == 1:
		// One column: gonum's Sgemm takes ~100 us for a 256x128 layer
		// (it tiles and spawns goroutines), its Sgemv ~5 us (measured here).
		ar, ac := m, k
		if transA {
			ar, ac = k, m
		}
		incx := ldb
		if transB {
			incx = 1
		}
		g.impl.Sgemv(ta, ar, ac, alpha, a, lda, b, incx, beta, c, ldc)
	case m == 1:
		// One row: C[0, :]^T = op(B)^T op(A)[0, :]^T.
		br, bc := k, n
		tt := blas.Trans
		if transB {
			br, bc = n, k
			tt = blas.NoTrans
		}
		incx := 1
		if transA {
			incx = lda
		}
		g.impl.Sgemv(tt, br, bc, alpha, b, ldb, a, incx, beta, c, 1)
	default:
		g.impl.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	}
}

// openBLAS calls OpenBLAS's Fortran entry points sgemm_ / sgemv_ through
// purego.SyscallN. The Fortran interface passes every argument by pointer,
// so a call needs no float registers and skips purego's reflection-based
// RegisterLibFunc wrappers (~0.7 us and 13 allocations per call, measured
// here with cblas_sgemm: too much for the per-sample GEMVs of synthesis).
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T. Assumes
// the usual 32-bit integer (LP64) build.
type openBLAS struct {
	path    string
	config  string
	threads int
	sgemm_  uintptr
	sgemv_  uintptr
}

// fortranArgs is the by-reference argument block of one call; pooled so a
// call does not allocate (SyscallN's pointer arguments escape).
type fortranArgs struct {
	transA, transB byte
	m, n, k        int32
	lda, ldb, ldc  int32
	alpha, beta    float32
	// argv holds the call's arguments: passing SyscallN a slice of it
	// avoids allocating the variadic slice. Every pointer in it is to heap
	// memory (this pooled block, the buffers), which Go never moves, and
	// all of it is kept alive across the call.
	argv [15]uintptr
}

var fortranPool = sync.Pool{New: func() any { return new(fortranArgs) }}

func (o *openBLAS) name() string        { return "openblas" }
func (o *openBLAS) batchParallel() bool { return false }
func (o *openBLAS) describe() string {
	s := fmt.Sprintf("OpenBLAS sgemm (%s", filepath.Base(o.path))
	if o.config != "" {
		s += "; " + o.config
	}
	return s + ")"
}

func transChar(t bool) byte {
	if t {
		return 'T'
	}
	return 'N'
}

func (o *openBLAS) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m > math.MaxInt32 || n > math.MaxInt32 || k > math.MaxInt32 || lda > math.MaxInt32 || ldb > math.MaxInt32 || ldc > math.MaxInt32 {
		panic(fmt.Sprintf("cpu: Gemm: size m=%d n=%d k=%d lda=%d ldb=%d ldc=%d exceeds OpenBLAS's 32-bit integers", m, n, k, lda, ldb, ldc))
	}
	p := fortranPool.Get().(*fortranArgs)
	p.alpha, p.beta = alpha, beta
	switch {
	case n == 1 || m == 1:
		// A matrix-vector product: sgemm is slow for one row or column
		// (synthesis at batch 1 lives here). y = op(S) x for a stored
		// row-major matrix S is, on S's column-major view S^T,
		// sgemv('T') for S x and sgemv('N') for S^T x.
		var s, x, y []float32
		var rowTrans bool
		var rows, cols, lds, incx, incy int
		if n == 1 { // C[:, 0] = op(A) op(B)[:, 0]
			s, lds, rowTrans = a, lda, transA
			rows, cols = m, k
			if transA {
				rows, cols = k, m
			}
			x, incx = b, ldb // op(B) is k x 1: column 0 of a k x ldb matrix
			if transB {
				incx = 1 // B stored 1 x k
			}
			y, incy = c, ldc
		} else { // C[0, :]^T = op(B)^T op(A)[0, :]^T
			s, lds, rowTrans = b, ldb, !transB
			rows, cols = k, n
			if transB {
				rows, cols = n, k
			}
			x, incx = a, 1 // op(A) is 1 x k stored 1 x k
			if transA {
				incx = lda // A stored k x 1
			}
			y, incy = c, 1
		}
		threads := o.threads
		if rows*cols < gemvSerialLimit {
			threads = 1
		}
		enterThreads(threads)
		p.transA = transChar(!rowTrans)
		p.m, p.n, p.lda = int32(cols), int32(rows), int32(lds)
		p.ldb, p.ldc = int32(incx), int32(incy)
		p.argv = [15]uintptr{
			uintptr(unsafe.Pointer(&p.transA)), uintptr(unsafe.Pointer(&p.m)), uintptr(unsafe.Pointer(&p.n)),
			uintptr(unsafe.Pointer(&p.alpha)), uintptr(unsafe.Pointer(&s[0])), uintptr(unsafe.Pointer(&p.lda)),
			uintptr(unsafe.Pointer(&x[0])), uintptr(unsafe.Pointer(&p.ldb)),
			uintptr(unsafe.Pointer(&p.beta)), uintptr(unsafe.Pointer(&y[0])), uintptr(unsafe.Pointer(&p.ldc)),
			1, // hidden Fortran length of the trans string
		}
		purego.SyscallN(o.sgemv_, p.argv[:12]...)
		leaveThreads()
		runtime.KeepAlive(s)
		runtime.KeepAlive(x)
		runtime.KeepAlive(y)
	default:
		enterThreads(o.threads)
		p.transA, p.transB = transChar(transA), transChar(transB)
		p.m, p.n, p.k = int32(m), int32(n), int32(k)
		p.lda, p.ldb, p.ldc = int32(lda), int32(ldb), int32(ldc)
		p.argv = [15]uintptr{
			uintptr(unsafe.Pointer(&p.transB)), uintptr(unsafe.Pointer(&p.transA)),
			uintptr(unsafe.Pointer(&p.n)), uintptr(unsafe.Pointer(&p.m)), uintptr(unsafe.Pointer(&p.k)),
			uintptr(unsafe.Pointer(&p.alpha)),
			uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&p.ldb)),
			uintptr(unsafe.Pointer(&a[0])), uintptr(unsafe.Pointer(&p.lda)),
			uintptr(unsafe.Pointer(&p.beta)), uintptr(unsafe.Pointer(&c[0])), uintptr(unsafe.Pointer(&p.ldc)),
			1, 1, // hidden Fortran lengths of the two trans strings
		}
		purego.SyscallN(o.sgemm_, p.argv[:15]...)
		leaveThreads()
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
	runtime.KeepAlive(p)
	p.argv = [15]uintptr{}
	fortranPool.Put(p)
}

// selfTest multiplies two small matrices through both entry points and
// checks the exact result, so a library with another integer width or
// calling convention is rejected instead of silently used.
func (o *openBLAS) selfTest() error {
	a := []float32{1, 2, 3, 4, 5, 6}   // 2x3
	b := []float32{1, -1, 2, 0, -3, 1} // 3x2: a*b = [-4 2; -4 2]
	c := make([]float32, 4)
	o.sgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2)
	v := make([]float32, 2)
	o.sgemm(false, false, 2, 1, 3, 1, a, 3, b, 2, 0, v, 1) // column 0 of b
	want := []float32{-4, 2, -4, 2}
	for i := range want {
		if c[i] != want[i] {
			return fmt.Errorf("sgemm_ self-test gave %v, want %v", c, want)
		}
	}
	if v[0] != -4 || v[1] != -4 {
		return fmt.Errorf("sgemv_ self-test gave %v, want [-4 -4]", v)
	}
	return nil
}

// openBLASCandidates lists the libraries tried in order: $WAVECAT_BLAS_LIB,
// then the usual OpenBLAS sonames, then the reference-BLAS soname (on Debian
// an alternatives link that often points at OpenBLAS; used only if it
// exports cblas_sgemm).
func openBLASCandidates() []string {
	var c []string
	if p := os.Getenv("WAVECAT_BLAS_LIB"); p != "" {
		return []string{p}
	}
	c = append(c, "libopenblas.so.0", "libopenblas.so")
	for _, dir := range []string{"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib", "/opt/OpenBLAS/lib"} {
		m, _ := filepath.Glob(filepath.Join(dir, "libopenblas*-r*.so"))
		for _, p := range m {
			// libopenblas64* are ILP64 builds: 64-bit integers, which the
			// calls here do not pass.
			if !strings.Contains(filepath.Base(p), "openblas64") {
				c = append(c, p)
			}
		}
	}
	return append(c, "libblas.so.3")
}

var (
	loadOnce sync.Once
	loaded   *openBLAS
	loadErr  error
)

// loadOpenBLAS dlopens OpenBLAS once per process (its thread count is
// process-wide state: each call sets it through enterThreads).
func loadOpenBLAS(threads int) (*openBLAS, error) {
	loadOnce.Do(func() { loaded, loadErr = dlopenOpenBLAS() })
	if loadErr != nil {
		return nil, loadErr
	}
	o := *loaded
	o.threads = threads
	return &o, nil
}

// OpenBLAS's thread count is process-wide (openblas_set_num_threads), and
// its sgemm rounds differently at 1 and 2 threads. So no call may switch the
// count while another goroutine is inside OpenBLAS at the old count: two
// backends in one process (the in-process data-parallel ranks) or a backend
// dropping to one thread for a small GEMV would change that call's bits.
// Measured on CPU-2 (OpenBLAS 0.3.21, pthreads), 2026-12-05, with
// `go test -run TestDataParallelResumeIsExact -count=N ./train` on 2-thread
// OpenBLAS backends: bit equality lost in 1 of 30 runs without this gate,
// 0 of 180 with it. Calls wanting the count already set run concurrently;
// a call wanting another count waits until OpenBLAS is idle.
//
// blasGate holds the count now set (0 before the first call) and the
// number of calls inside OpenBLAS at it; a caller wanting another count
// sleeps on idle until inside drops to 0 (no spinning: the waiter's core
// is OpenBLAS's while it computes). setThreadsFn is
// openblas_set_num_threads, or 0 when the library lacks it (then the count
// is left alone).
var (
	setThreadsFn uintptr
	blasGate     struct {
		sync.Mutex
		idle        *sync.Cond
		cur, inside int
	}
)

func init() { blasGate.idle = sync.NewCond(&blasGate.Mutex) }

// enterThreads waits until OpenBLAS runs with n threads and counts the
// caller as inside it; leaveThreads ends the call.
func enterThreads(n int) {
	if setThreadsFn == 0 {
		return
	}
	blasGate.Lock()
	for blasGate.cur != n && blasGate.inside > 0 {
		blasGate.idle.Wait() // another count is in use
	}
	if blasGate.cur != n {
		purego.SyscallN(setThreadsFn, uintptr(n))
		blasGate.cur = n
	}
	blasGate.inside++
	blasGate.Unlock()
}

func leaveThreads() {
	if setThreadsFn == 0 {
		return
	}
	blasGate.Lock()
	if blasGate.inside--; blasGate.inside == 0 {
		blasGate.idle.Broadcast()
	}
	blasGate.Unlock()
}

// gemvSerialLimit is the matrix size (elements) below which GEMVs run on one
// OpenBLAS thread. OpenBLAS splits GEMVs from ~9k elements on, but waking
// the second thread for a 256x128 or 128x128 layer costs more than the
// product: measured here 1.7-3 us on one thread vs 5-11 us on two.
const gemvSerialLimit = 1 << 17

func dlopenOpenBLAS() (*openBLAS, error) {
	var errs []string
	for _, path := range openBLASCandidates() {
		h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			// dlerror's text usually names the file, but it came back empty
			// once under a loaded test run; the error must name it anyway.
			msg := err.Error()
			if !strings.Contains(msg, path) {
				msg = path + ": cannot load: " + msg
			}
			errs = append(errs, msg)
			continue
		}
		if _, err := purego.Dlsym(h, "cblas_sgemm"); err != nil {
			errs = append(errs, path+": no cblas_sgemm")
			purego.Dlclose(h)
			continue
		}
		o := &openBLAS{path: path}
		if o.sgemm_, err = purego.Dlsym(h, "sgemm_"); err != nil {
			errs = append(errs, path+": no sgemm_")
			continue
		}
		if o.sgemv_, err = purego.Dlsym(h, "sgemv_"); err != nil {
			errs = append(errs, path+": no sgemv_")
			continue
		}
		if _, err := purego.Dlsym(h, "openblas_get_config"); err == nil {
			var getConfig func() string
			purego.RegisterLibFunc(&getConfig, h, "openblas_get_config")
			o.config = strings.TrimSpace(getConfig())
		}
		if f, err := purego.Dlsym(h, "openblas_set_num_threads"); err == nil {
			setThreadsFn = f
		}
		if err := o.selfTest(); err != nil {
			errs = append(errs, path+": "+err.Error())
			continue
		}
		return o, nil
	}
	return nil, errors.New("cpu: OpenBLAS not found (set WAVECAT_BLAS_LIB to its path): " + strings.Join(errs, "; "))
}
