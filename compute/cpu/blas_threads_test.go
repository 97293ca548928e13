package cpu

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/wavecat/wavecat/compute"
)

// TestOpenBLASThreadCountHoldsPerCall: OpenBLAS's thread count is one
// setting for the whole process, and its sgemm rounds differently at 1
// and 2 threads (4096 x 128 x 64 differs in its last bits here). A 2-thread
// backend's product must keep its bits while a 1-thread backend in the same
// process multiplies at the same time, as the in-process data-parallel
// ranks do. Without the thread-count gate this fails within a few calls.
func TestOpenBLASThreadCountHoldsPerCall(t *testing.T) {
	two := newOrSkip(t, "openblas", 2)
	one := newOrSkip(t, "openblas", 1)
	if setThreadsFn == 0 {
		t.Skip("this OpenBLAS has no openblas_set_num_threads: its thread count never changes")
	}
	const m, n, k = 4096, 128, 64
	a, b, c := two.Alloc(m*k), two.Alloc(k*n), two.Alloc(m*n)
	fill(two, a)
	fill(two, b)
	// CPU buffers serve any CPU backend.
	mul := func(be *Backend) []float32 {
		be.Gemm(false, false, m, n, k, 1, compute.V(a), k, compute.V(b), n, 0, compute.V(c), n)
		return slices.Clone(be.Host(compute.V(c), m*n))
	}
	want := mul(two)
	// The premise: the two counts round differently, else the check below
	// could not fail.
	if slices.Equal(mul(one), want) {
		t.Skip("1 and 2 OpenBLAS threads give the same bits for this product here: nothing to check")
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	small := one.Alloc(3 * 64 * 64)
	wg.Add(1)
	go func() { // the other backend: small products at one thread
		defer wg.Done()
		v := compute.V(small)
		for !stop.Load() {
			one.Gemm(false, false, 64, 64, 64, 1, v, 64, v.At(64*64), 64, 0, v.At(2*64*64), 64)
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	for i := range 40 {
		if !slices.Equal(mul(two), want) {
			t.Fatalf("call %d: a 2-thread product changed while a 1-thread backend ran: OpenBLAS's process-wide thread count was switched under it", i)
		}
	}
}
