package dist

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wavecat/wavecat/compute"
)

// DefaultTimeout bounds how long a collective waits for the slowest rank.
// Generous on purpose: rank 0 alone validates and writes checkpoints while
// the others wait at the next collective.
const DefaultTimeout = 30 * time.Minute

// Local is an in-process Communicator: ranks are goroutines of one process,
// each with its own backend (or a shared one that is safe for concurrent
// use, as the CPU backend is). Reductions add the ranks' values in rank
// order 0..N-1 in float32 (float64 for AllReduceHost), so every rank gets
// the same bits and a run is reproducible; it is not NCCL's ring order.
type Local struct {
	g    *group
	rank int
	be   compute.Backend
	tmp  []float32

	// The queued reductions (StartAllReduceSum) run in order on a worker
	// goroutine of this rank, the way NCCL runs them on a stream.
	queue  chan func() error
	queued sync.WaitGroup
	qmu    sync.Mutex
	qerr   error // the first error of a queued reduction since the last Wait
}

var _ Communicator = (*Local)(nil)

// group is the state the ranks of one Local group share.
type group struct {
	n       int
	timeout time.Duration

	mu      sync.Mutex
	arrived []bool   // this phase
	ops     []string // what each arrived rank called, to catch mismatches
	release chan struct{}
	failed  chan struct{} // closed on the first failure
	err     error
	closed  []bool

	f32 [][]float32 // each rank's contribution of the current collective
	f64 [][]float64
}

// NewLocal returns one Communicator per backend (rank i uses backends[i]).
// timeout bounds each wait for the other ranks (0: DefaultTimeout).
func NewLocal(backends []compute.Backend, timeout time.Duration) ([]*Local, error) {
	n := len(backends)
	if n == 0 {
		return nil, fmt.Errorf("dist: NewLocal: no ranks")
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	g := &group{n: n, timeout: timeout, arrived: make([]bool, n), ops: make([]string, n),
		release: make(chan struct{}), failed: make(chan struct{}), closed: make([]bool, n),
		f32: make([][]float32, n), f64: make([][]float64, n)}
	out := make([]*Local, n)
	for r, be := range backends {
		if be == nil {
			return nil, fmt.Errorf("dist: NewLocal: rank %d has no backend", r)
		}
		out[r] = &Local{g: g, rank: r, be: be}
	}
	return out, nil
}

// Rank implements Communicator.
func (c *Local) Rank() int { return c.rank }

// Size implements Communicator.
func (c *Local) Size() int { return c.g.n }

// fail records the group's first failure and wakes every waiting rank.
func (g *group) fail(err error) {
	if g.err == nil {
		g.err = err
		close(g.failed)
	}
}

// wait is a barrier: it returns when every rank has called it with the same
// op, or an error when a rank aborted, left, called another collective, or
// did not arrive within the timeout.
func (g *group) wait(rank int, op string) error {
	g.mu.Lock()
	if g.err != nil {
		g.mu.Unlock()
		return g.err
	}
	for r, c := range g.closed {
		if c {
			g.fail(fmt.Errorf("dist: rank %d called %s after rank %d closed the communicator", rank, op, r))
			g.mu.Unlock()
			return g.err
		}
	}
	g.arrived[rank], g.ops[rank] = true, op
	ch := g.release
	all := !slices.Contains(g.arrived, false)
	if all {
		for r, o := range g.ops {
			if o != g.ops[0] {
				g.fail(fmt.Errorf("dist: collectives out of step: rank 0 called %s, rank %d called %s", g.ops[0], r, o))
				g.mu.Unlock()
				return g.err
			}
		}
		clear(g.arrived)
		g.release = make(chan struct{})
		close(ch)
		g.mu.Unlock()
		return nil
	}
	g.mu.Unlock()

	t := time.NewTimer(g.timeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case <-g.failed:
	case <-t.C:
		g.mu.Lock()
		var missing []string
		for r, a := range g.arrived {
			if !a {
				missing = append(missing, fmt.Sprint(r))
			}
		}
		g.fail(fmt.Errorf("dist: rank %d waited %v in %s for rank(s) %s: they did not arrive (dead or stuck)", rank, g.timeout, op, strings.Join(missing, ", ")))
		g.mu.Unlock()
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	// The phase may have completed in the same instant as the failure.
	select {
	case <-ch:
		return nil
	default:
	}
	return g.err
}

// host returns n elements at v as a host slice and whether it aliases the
// buffer (the CPU backend) or is a copy that must be uploaded back.
func (c *Local) host(v compute.View, n int) ([]float32, bool) {
	if ha, ok := c.be.(compute.HostAccessor); ok {
		return ha.Host(v, n), true
	}
	if cap(c.tmp) < n {
		c.tmp = make([]float32, n)
	}
	x := c.tmp[:n]
	c.be.Download(x, v)
	return x, false
}

// AllReduceSum implements Communicator.
func (c *Local) AllReduceSum(v compute.View, n int) error {
	v.Check(n, "dist: AllReduceSum")
	if err := c.Wait(); err != nil {
		return err
	}
	return c.allReduceSum(v, n)
}

// StartAllReduceSum implements Communicator. The backends Local runs on
// finish a call's work before it returns, so v is complete when queued.
func (c *Local) StartAllReduceSum(v compute.View, n int) error {
	v.Check(n, "dist: StartAllReduceSum")
	if c.queue == nil {
		c.queue = make(chan func() error, 256)
		go c.work(c.queue)
	}
	c.queued.Add(1)
	c.queue <- func() error { return c.allReduceSum(v, n) }
	return nil
}

func (c *Local) work(q chan func() error) {
	for f := range q {
		if err := f(); err != nil {
			c.qmu.Lock()
			if c.qerr == nil {
				c.qerr = err
			}
			c.qmu.Unlock()
		}
		c.queued.Done()
	}
}

// Wait implements Communicator.
func (c *Local) Wait() error {
	c.queued.Wait()
	c.qmu.Lock()
	defer c.qmu.Unlock()
	err := c.qerr
	c.qerr = nil
	return err
}

func (c *Local) allReduceSum(v compute.View, n int) error {
	op := fmt.Sprintf("AllReduceSum(%d)", n)
	x, alias := c.host(v, n)
	if err := sumInPlace(c.g, c.rank, op, c.g.f32, x); err != nil {
		return err
	}
	if !alias {
		c.be.Upload(v, x)
	}
	return nil
}

// AllReduceHost implements Communicator.
func (c *Local) AllReduceHost(x []float64) error {
	if err := c.Wait(); err != nil {
		return err
	}
	return sumInPlace(c.g, c.rank, fmt.Sprintf("AllReduceHost(%d)", len(x)), c.g.f64, x)
}

// sumInPlace publishes rank's x in slots, waits for every rank, and replaces
// x with the sum of all ranks' vectors added in rank order, so every rank
// gets the same bits.
func sumInPlace[T float32 | float64](g *group, rank int, op string, slots [][]T, x []T) error {
	g.mu.Lock()
	slots[rank] = x
	g.mu.Unlock()
	if err := g.wait(rank, op); err != nil {
		return err
	}
	sum := make([]T, len(x))
	for r := 0; r < g.n; r++ {
		for i, y := range slots[r] {
			sum[i] += y
		}
	}
	// Nobody writes its result before every rank has read every input.
	if err := g.wait(rank, op+" done"); err != nil {
		return err
	}
	copy(x, sum)
	return nil
}

// Broadcast implements Communicator.
func (c *Local) Broadcast(v compute.View, n int, root int) error {
	if root < 0 || root >= c.g.n {
		return fmt.Errorf("dist: Broadcast from rank %d of %d", root, c.g.n)
	}
	v.Check(n, "dist: Broadcast")
	if err := c.Wait(); err != nil {
		return err
	}
	op := fmt.Sprintf("Broadcast(%d from %d)", n, root)
	x, alias := c.host(v, n)
	g := c.g
	g.mu.Lock()
	g.f32[c.rank] = x
	g.mu.Unlock()
	if err := g.wait(c.rank, op); err != nil {
		return err
	}
	var src []float32
	if c.rank != root {
		src = slices.Clone(g.f32[root])
	}
	if err := g.wait(c.rank, op+" done"); err != nil {
		return err
	}
	if c.rank != root {
		copy(x, src)
		if !alias {
			c.be.Upload(v, x)
		}
	}
	return nil
}

// Abort implements Communicator.
func (c *Local) Abort(cause error) {
	c.g.mu.Lock()
	defer c.g.mu.Unlock()
	c.g.fail(fmt.Errorf("dist: rank %d aborted: %w", c.rank, cause))
}

// Close implements Communicator. A rank still waiting for this one fails.
func (c *Local) Close() error {
	werr := c.Wait()
	if c.queue != nil {
		close(c.queue)
		c.queue = nil
	}
	if werr != nil {
		return werr
	}
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed[c.rank] = true
	if slices.Contains(g.arrived, true) && !g.arrived[c.rank] {
		g.fail(fmt.Errorf("dist: rank %d closed the communicator while other ranks waited in %s", c.rank, g.ops[slices.Index(g.arrived, true)]))
	}
	return nil
}
