package cpu

import "sync"

// grain is the smallest chunk of elementwise work handed to another
// goroutine: below ~32k float32s the hand-off costs more than it saves.
const grain = 32 << 10

// workerPool keeps threads-1 goroutines alive so that a parallel kernel
// costs two channel operations per chunk instead of a goroutine start.
type workerPool struct {
	workers int
	jobs    chan job
}

type job struct {
	f      func(lo, hi int)
	lo, hi int
	wg     *sync.WaitGroup
}

func newWorkerPool(threads int) *workerPool {
	p := &workerPool{workers: threads - 1, jobs: make(chan job, 4*threads)}
	for i := 0; i < p.workers; i++ {
		go func() {
			for j := range p.jobs {
				j.f(j.lo, j.hi)
				j.wg.Done()
			}
		}()
	}
	return p
}

var wgPool = sync.Pool{New: func() any { return new(sync.WaitGroup) }}

// chunks returns how many pieces n units of work of the given grain split
// into, at most the number of threads.
func (be *Backend) chunks(n, g int) int {
	c := n / g
	if c > be.threads {
		c = be.threads
	}
	if c < 1 {
		c = 1
	}
	return c
}

// parFor runs f over [0, n) in at most threads contiguous pieces of at least
// g units each; the calling goroutine does the first piece.
func (be *Backend) parFor(n, g int, f func(lo, hi int)) {
	c := be.chunks(n, g)
	if c == 1 || be.pool.workers == 0 {
		f(0, n)
		return
	}
	step := (n + c - 1) / c
	wg := wgPool.Get().(*sync.WaitGroup)
	for lo := step; lo < n; lo += step {
		wg.Add(1)
		be.pool.jobs <- job{f: f, lo: lo, hi: min(lo+step, n), wg: wg}
	}
	f(0, min(step, n))
	wg.Wait()
	wgPool.Put(wg)
}
