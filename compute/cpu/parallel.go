package cpu

import (
	"runtime"
	"sync"
)

// grain is the smallest chunk of elementwise work handed to another
// goroutine: below ~32k float32s the hand-off costs more than it saves.
const grain = 32 << 10

// task carries one parallel kernel's arguments to the workers. Kernels are
// top-level functions of (task, lo, hi) over a range of work units, and
// tasks are pooled, so a parallel kernel allocates nothing (a closure per
// call would).
type task struct {
	run  func(t *task, lo, hi int)
	x    [6][]float32
	f    [2]float32
	n    [4]int
	adam adamConsts
	g    gemmArgs
	own  ownArgs
	part []float64 // per-chunk partial sums of reductions
	step int       // chunk size, so a chunk finds its index as lo/step
	wg   sync.WaitGroup
}

var taskPool = sync.Pool{New: func() any { return new(task) }}

func getTask(run func(t *task, lo, hi int)) *task {
	t := taskPool.Get().(*task)
	t.run = run
	return t
}

func putTask(t *task) {
	t.x = [6][]float32{} // drop references to the buffers
	t.g = gemmArgs{}
	t.own = ownArgs{}
	t.run = nil
	taskPool.Put(t)
}

// job is one chunk of a task.
type job struct {
	t      *task
	lo, hi int
}

// workerPool keeps threads-1 goroutines alive so that a parallel kernel
// costs a channel send per chunk instead of a goroutine start.
type workerPool struct {
	workers int
	jobs    chan job
}

func newWorkerPool(threads int) *workerPool {
	p := &workerPool{workers: threads - 1, jobs: make(chan job, 4*threads)}
	for i := 0; i < p.workers; i++ {
		go worker(p.jobs)
	}
	return p
}

func worker(jobs <-chan job) {
	for j := range jobs {
		j.t.run(j.t, j.lo, j.hi)
		j.t.wg.Done()
	}
}

// stopWorkers closes the job channel once the Backend is unreachable, so
// its workers exit.
func stopWorkers(be *Backend) {
	runtime.AddCleanup(be, func(jobs chan job) { close(jobs) }, be.pool.jobs)
}

// chunks returns how many pieces n units of work of grain g split into, at
// most the number of threads.
func (be *Backend) chunks(n, g int) int {
	c := n / max(g, 1)
	return max(1, min(c, be.threads))
}

// do runs t over [0, n) units in at most threads contiguous chunks of at
// least g units each, then recycles t.
func (be *Backend) do(t *task, n, g int) {
	be.runChunks(t, n, be.chunks(n, g))
	putTask(t)
}

// runChunks runs t over [0, n) in c chunks of t.step units (the caller's
// goroutine does the first) and waits for them.
func (be *Backend) runChunks(t *task, n, c int) { be.pool.runChunks(t, n, c) }

func (p *workerPool) runChunks(t *task, n, c int) {
	if c <= 1 || p.workers == 0 {
		t.step = max(n, 1)
		t.run(t, 0, n)
		return
	}
	t.step = (n + c - 1) / c
	for lo := t.step; lo < n; lo += t.step {
		t.wg.Add(1)
		p.jobs <- job{t: t, lo: lo, hi: min(lo+t.step, n)}
	}
	t.run(t, 0, min(t.step, n))
	t.wg.Wait()
}

// reduce runs a float64 reduction task: each chunk stores its sum in
// t.part[lo/t.step]; the chunk sums are added in order.
func (be *Backend) reduce(t *task, n int) float64 {
	c := be.chunks(n, grain)
	if cap(t.part) < c {
		t.part = make([]float64, c, max(c, 16))
	}
	t.part = t.part[:c]
	clear(t.part)
	be.runChunks(t, n, c)
	s := 0.0
	for _, p := range t.part {
		s += p
	}
	putTask(t)
	return s
}
