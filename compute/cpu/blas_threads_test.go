package cpu

import (
	"math/rand/v2"
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
// ranks do. Before the thread-count gate this failed within a few calls.
func TestOpenBLASThreadCountHoldsPerCall(t *testing.T) {
	two := newOrSkip(t, "openblas", 2)
	one := newOrSkip(t, "openblas", 1)
	if setThreadsFn == 0 {
		t.Skip("this OpenBLAS has no openblas_set_num_threads: its thread count never changes")
	}
	const m, n, k = 4096, 128, 64
	r := rand.New(rand.NewPCG(1, 2))
	fill := func(be *Backend, size int) compute.Buffer {
		x := make([]float32, size)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		buf := be.Alloc(size)
		be.Upload(compute.V(buf), x)
		return buf
	}
	a, b, c := fill(two, m*k), fill(two, k*n), two.Alloc(m*n)
	mul := func() []float32 {
		two.Gemm(false, false, m, n, k, 1, compute.V(a), k, compute.V(b), n, 0, compute.V(c), n)
		out := make([]float32, m*n)
		two.Download(out, compute.V(c))
		return out
	}
	want := mul()
	// The premise: the two counts round differently, else the check below
	// could not fail.
	oa, ob, oc := fill(one, m*k), fill(one, k*n), one.Alloc(m*n)
	one.Upload(compute.V(oa), downloaded(two, a))
	one.Upload(compute.V(ob), downloaded(two, b))
	one.Gemm(false, false, m, n, k, 1, compute.V(oa), k, compute.V(ob), n, 0, compute.V(oc), n)
	if equalBits(downloaded(one, oc), want) {
		t.Skip("1 and 2 OpenBLAS threads give the same bits for this product here: nothing to check")
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the other backend: small products at one thread
		defer wg.Done()
		for !stop.Load() {
			one.Gemm(false, false, 64, 64, 64, 1, compute.V(oa), 64, compute.V(ob), 64, 0, compute.V(oc), 64)
		}
	}()
	defer func() { stop.Store(true); wg.Wait() }()
	for i := range 40 {
		if !equalBits(mul(), want) {
			t.Fatalf("call %d: a 2-thread product changed while a 1-thread backend ran: OpenBLAS's process-wide thread count was switched under it", i)
		}
	}
}

func downloaded(be *Backend, buf compute.Buffer) []float32 {
	out := make([]float32, buf.Len())
	be.Download(out, compute.V(buf))
	return out
}

func equalBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
