package cpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

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
}

func newGonum(threads int) *gonumBLAS { return &gonumBLAS{threads: threads} }

func (g *gonumBLAS) name() string        { return "gonum" }
func (g *gonumBLAS) describe() string    { return "gonum blas32 sgemm (pure Go)" }
func (g *gonumBLAS) batchParallel() bool { return g.threads > 1 }

func (g *gonumBLAS) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	ta, tb := blas.NoTrans, blas.NoTrans
	if transA {
		ta = blas.Trans
	}
	if transB {
		tb = blas.Trans
	}
	g.impl.Sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// cblas enum values (cblas.h).
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
)

// openBLAS calls cblas_sgemm / cblas_sgemv from a dlopen'ed OpenBLAS
// (32-bit blasint, the Debian/Ubuntu default build).
type openBLAS struct {
	path    string
	config  string
	threads int

	cblasSgemm func(order, transA, transB, m, n, k int32, alpha float32, a *float32, lda int32, b *float32, ldb int32, beta float32, c *float32, ldc int32)
	cblasSgemv func(order, trans, m, n int32, alpha float32, a *float32, lda int32, x *float32, incx int32, beta float32, y *float32, incy int32)
}

func (o *openBLAS) name() string        { return "openblas" }
func (o *openBLAS) batchParallel() bool { return false }
func (o *openBLAS) describe() string {
	s := fmt.Sprintf("OpenBLAS sgemm (%s", filepath.Base(o.path))
	if o.config != "" {
		s += "; " + o.config
	}
	return s + ")"
}

func trans(t bool) int32 {
	if t {
		return cblasTrans
	}
	return cblasNoTrans
}

func (o *openBLAS) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	switch {
	case n == 1 && o.cblasSgemv != nil:
		// C[:, 0] = alpha*op(A)*op(B)[:, 0] + beta*C[:, 0]: a matrix-vector
		// product, which sgemm handles poorly for one column (synthesis at
		// batch 1 lives here).
		rows, cols := m, k
		if transA {
			rows, cols = k, m
		}
		incx := ldb // op(B) is k x 1: column 0 of a k x ldb matrix
		if transB {
			incx = 1 // B stored 1 x k
		}
		o.cblasSgemv(cblasRowMajor, trans(transA), int32(rows), int32(cols), alpha, &a[0], int32(lda), &b[0], int32(incx), beta, &c[0], int32(ldc))
	case m == 1 && o.cblasSgemv != nil:
		// C[0, :]^T = alpha*op(B)^T*op(A)[0, :]^T + beta*C[0, :]^T.
		rows, cols := k, n
		if transB {
			rows, cols = n, k
		}
		incx := 1 // op(A) is 1 x k, stored 1 x k
		if transA {
			incx = lda // A stored k x 1
		}
		o.cblasSgemv(cblasRowMajor, trans(!transB), int32(rows), int32(cols), alpha, &b[0], int32(ldb), &a[0], int32(incx), beta, &c[0], 1)
	default:
		o.cblasSgemm(cblasRowMajor, trans(transA), trans(transB), int32(m), int32(n), int32(k), alpha, &a[0], int32(lda), &b[0], int32(ldb), beta, &c[0], int32(ldc))
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
	runtime.KeepAlive(c)
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
		c = append(c, m...)
	}
	return append(c, "libblas.so.3")
}

var (
	loadOnce sync.Once
	loaded   *openBLAS
	loadErr  error
)

// loadOpenBLAS dlopens OpenBLAS once per process (its thread count is
// process-wide state) and sets its thread count.
func loadOpenBLAS(threads int) (*openBLAS, error) {
	loadOnce.Do(func() { loaded, loadErr = dlopenOpenBLAS() })
	if loadErr != nil {
		return nil, loadErr
	}
	o := *loaded
	o.threads = threads
	if setThreads != nil {
		setThreads(int32(threads))
	}
	return &o, nil
}

var setThreads func(int32)

func dlopenOpenBLAS() (*openBLAS, error) {
	var errs []string
	for _, path := range openBLASCandidates() {
		h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if _, err := purego.Dlsym(h, "cblas_sgemm"); err != nil {
			errs = append(errs, path+": no cblas_sgemm")
			purego.Dlclose(h)
			continue
		}
		o := &openBLAS{path: path}
		purego.RegisterLibFunc(&o.cblasSgemm, h, "cblas_sgemm")
		if _, err := purego.Dlsym(h, "cblas_sgemv"); err == nil {
			purego.RegisterLibFunc(&o.cblasSgemv, h, "cblas_sgemv")
		}
		if _, err := purego.Dlsym(h, "openblas_get_config"); err == nil {
			var getConfig func() string
			purego.RegisterLibFunc(&getConfig, h, "openblas_get_config")
			o.config = strings.TrimSpace(getConfig())
		}
		if _, err := purego.Dlsym(h, "openblas_set_num_threads"); err == nil {
			purego.RegisterLibFunc(&setThreads, h, "openblas_set_num_threads")
		}
		return o, nil
	}
	return nil, errors.New("cpu: OpenBLAS not found (set WAVECAT_BLAS_LIB to its path): " + strings.Join(errs, "; "))
}
