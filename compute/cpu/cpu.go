// Package cpu is the host-memory compute backend: training's GEMMs go to
// wavecat's own AVX-512 kernels where the CPU has AVX-512, the rest to
// OpenBLAS (loaded at run time with purego, so CGO_ENABLED=0 builds keep
// working) or to gonum's pure-Go blas32 when OpenBLAS is absent; the other kernels are
// Go loops (the gated activation in AVX2 assembly on amd64), split over
// goroutines when they are large enough to pay for it.
package cpu

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/wavecat/wavecat/compute"
)

// Options configure New.
type Options struct {
	// Threads bounds the parallelism of every kernel and of OpenBLAS
	// (gonum's Sgemm picks its own, up to GOMAXPROCS); 0 means GOMAXPROCS.
	Threads int
	// BLAS picks the GEMM library: "wavecat" runs training's GEMMs on the
	// own AVX-512 kernels (gemm_own.go) and the rest on OpenBLAS, or on
	// gonum when OpenBLAS cannot be loaded, and fails on a CPU without
	// AVX-512; "auto" (or "") is "wavecat" where the CPU has AVX-512 and
	// otherwise OpenBLAS or gonum; "openblas" fails when OpenBLAS cannot
	// be loaded; "gonum" never loads a shared library.
	BLAS string
}

// Backend is the CPU implementation of compute.Backend and
// compute.HostAccessor. Kernels run synchronously: the calling goroutine
// does the first chunk of a large kernel and a pool of threads-1 workers the
// rest, so every kernel has finished when it returns. Methods may be called
// from several goroutines at once (on disjoint buffers).
type Backend struct {
	threads int
	gemm    sgemmer
	pool    *workerPool
}

var (
	_ compute.Backend      = (*Backend)(nil)
	_ compute.HostAccessor = (*Backend)(nil)
)

// New builds a CPU backend.
func New(opts Options) (*Backend, error) {
	threads := opts.Threads
	if threads < 0 {
		return nil, fmt.Errorf("cpu: Threads = %d, want >= 0", threads)
	}
	if threads == 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	be := &Backend{threads: threads, pool: newWorkerPool(threads)}
	stopWorkers(be)
	// OpenBLAS when it loads, else gonum.
	library := func() sgemmer {
		ob, err := loadOpenBLAS(threads)
		if err == nil {
			return ob
		}
		g := newGonum(threads)
		g.why = err.Error()
		return g
	}
	switch strings.ToLower(opts.BLAS) {
	case "", "auto":
		// The own kernels where the CPU has AVX-512: a reference training
		// step ran 1.3x faster on them than on OpenBLAS's own AVX-512
		// (Cooperlake) kernels and 1.7x faster than on its AVX2 ones
		// (docs/benchmarks.md).
		be.gemm = library()
		if own, err := newOwnGEMM(be.gemm, threads, be.pool); err == nil {
			be.gemm = own
		}
	case "openblas":
		ob, err := loadOpenBLAS(threads)
		if err != nil {
			return nil, err
		}
		be.gemm = ob
	case "gonum":
		be.gemm = newGonum(threads)
	case "wavecat":
		own, err := newOwnGEMM(library(), threads, be.pool)
		if err != nil {
			return nil, err
		}
		be.gemm = own
	default:
		return nil, fmt.Errorf("cpu: unknown BLAS %q (want auto, openblas, gonum or wavecat)", opts.BLAS)
	}
	return be, nil
}

// Name implements compute.Backend.
func (be *Backend) Name() string { return "cpu" }

// Describe says which library does the GEMMs and with how many threads.
func (be *Backend) Describe() string {
	return fmt.Sprintf("cpu: %s, %d threads", be.gemm.describe(), be.threads)
}

// BLAS returns "openblas", "gonum" or "wavecat": the GEMM path in use.
func (be *Backend) BLAS() string { return be.gemm.name() }

// Threads returns the parallelism the backend uses.
func (be *Backend) Threads() int { return be.threads }

// buffer is host memory.
type buffer struct{ data []float32 }

func (b *buffer) Len() int { return len(b.data) }

// Alloc returns a zero-filled buffer of n float32s.
func (be *Backend) Alloc(n int) compute.Buffer {
	if n < 0 {
		panic(fmt.Sprintf("cpu: Alloc(%d): negative size", n))
	}
	return &buffer{data: make([]float32, n)}
}

// Free drops the memory; later use of the buffer panics in View.Check.
func (be *Backend) Free(b compute.Buffer) {
	if hb, ok := b.(*buffer); ok {
		hb.data = nil
	}
}

// sl checks a view for n elements and returns them as a slice (capacity
// clipped, so an append can never scribble past the window).
func sl(v compute.View, n int, what string) []float32 {
	v.Check(n, what)
	hb, ok := v.Buf.(*buffer)
	if !ok {
		panic(fmt.Sprintf("cpu: %s: buffer of type %T does not belong to the CPU backend", what, v.Buf))
	}
	return hb.data[v.Off : v.Off+n : v.Off+n]
}

// Host returns the n elements at v in place (compute.HostAccessor).
func (be *Backend) Host(v compute.View, n int) []float32 { return sl(v, n, "Host") }

// Upload copies src into dst.
func (be *Backend) Upload(dst compute.View, src []float32) {
	copy(sl(dst, len(src), "Upload dst"), src)
}

// Download copies len(dst) elements from src.
func (be *Backend) Download(dst []float32, src compute.View) {
	copy(dst, sl(src, len(dst), "Download src"))
}

// Copy copies n elements; overlapping views behave like memmove.
func (be *Backend) Copy(dst, src compute.View, n int) {
	copy(sl(dst, n, "Copy dst"), sl(src, n, "Copy src"))
}

// Fill sets n elements to value.
func (be *Backend) Fill(dst compute.View, n int, value float32) {
	d := sl(dst, n, "Fill dst")
	if value == 0 {
		clear(d)
		return
	}
	for i := range d {
		d[i] = value
	}
}

// Sync is a no-op: every CPU kernel has finished when it returns.
func (be *Backend) Sync() {}
