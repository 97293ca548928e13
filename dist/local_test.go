package dist

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
)

func cpuBackend(t *testing.T) compute.Backend {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// hostOnly hides the CPU backend's HostAccessor, so Local takes the
// Download/Upload path a GPU backend would.
type hostOnly struct{ compute.Backend }

// runRanks runs f on every rank concurrently and returns their errors.
func runRanks(comms []*Local, f func(c *Local) error) []error {
	errs := make([]error, len(comms))
	var wg sync.WaitGroup
	for i, c := range comms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(c)
		}()
	}
	wg.Wait()
	return errs
}

// TestLocalCollectives: the sum is the float64 sum to float32 rounding and
// the same bits on every rank; the host sum is exact; broadcast copies the
// root's values; both with host-memory and copy-in/copy-out backends.
func TestLocalCollectives(t *testing.T) {
	for _, wrap := range []bool{false, true} {
		const N, n = 3, 1000
		bes := make([]compute.Backend, N)
		for i := range bes {
			bes[i] = cpuBackend(t)
			if wrap {
				bes[i] = hostOnly{bes[i]}
			}
		}
		comms, err := NewLocal(bes, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		in := make([][]float32, N)
		want, abs := make([]float64, n), make([]float64, n)
		for r := range in {
			rng := rand.New(rand.NewPCG(uint64(r), 7))
			in[r] = make([]float32, n)
			for i := range in[r] {
				in[r][i] = float32(rng.NormFloat64() * math.Pow(10, float64(i%7-3)))
				want[i] += float64(in[r][i])
				abs[i] += math.Abs(float64(in[r][i]))
			}
		}
		bufs := make([]compute.Buffer, N)
		out := make([][]float32, N)
		bcast := make([][]float32, N)
		host := make([][]float64, N)
		errs := runRanks(comms, func(c *Local) error {
			r := c.Rank()
			be := bes[r]
			bufs[r] = be.Alloc(n + 2)
			be.Upload(compute.V(bufs[r]).At(2), in[r])
			if err := c.AllReduceSum(compute.V(bufs[r]).At(2), n); err != nil {
				return err
			}
			out[r] = make([]float32, n)
			be.Download(out[r], compute.V(bufs[r]).At(2))
			be.Upload(compute.V(bufs[r]), in[r][:n])
			if err := c.Broadcast(compute.V(bufs[r]), n, 1); err != nil {
				return err
			}
			bcast[r] = make([]float32, n)
			be.Download(bcast[r], compute.V(bufs[r]))
			host[r] = []float64{float64(r), 1, 1e15 + float64(r)}
			return c.AllReduceHost(host[r])
		})
		for r, err := range errs {
			if err != nil {
				t.Fatalf("rank %d: %v", r, err)
			}
		}
		for i := range want {
			if d := math.Abs(float64(out[0][i]) - want[i]); d > 2*0x1p-24*abs[i] { // float32 rounding of N-1 additions
				t.Fatalf("element %d: sum %v, float64 sum %v", i, out[0][i], want[i])
			}
		}
		for r := 1; r < N; r++ {
			for i := range want {
				if math.Float32bits(out[r][i]) != math.Float32bits(out[0][i]) {
					t.Fatalf("rank %d element %d: %v, rank 0 has %v (ranks must agree bit for bit)", r, i, out[r][i], out[0][i])
				}
				if bcast[r][i] != in[1][i] {
					t.Fatalf("broadcast: rank %d element %d = %v, root has %v", r, i, bcast[r][i], in[1][i])
				}
			}
			if host[r][0] != 3 || host[r][1] != N || host[r][2] != 3e15+3 {
				t.Fatalf("host sum on rank %d = %v", r, host[r])
			}
		}
	}
}

// TestLocalAbortWakesOthers: a rank that fails aborts the group; the
// others, waiting in a collective, get an error naming it at once.
func TestLocalAbortWakesOthers(t *testing.T) {
	comms, _ := NewLocal([]compute.Backend{cpuBackend(t), cpuBackend(t), cpuBackend(t)}, time.Hour)
	start := time.Now()
	errs := runRanks(comms, func(c *Local) error {
		if c.Rank() == 2 {
			time.Sleep(50 * time.Millisecond)
			c.Abort(errors.New("disk full"))
			return nil
		}
		return c.AllReduceHost([]float64{1})
	})
	for r := 0; r < 2; r++ {
		if errs[r] == nil || !strings.Contains(errs[r].Error(), "rank 2 aborted: disk full") {
			t.Errorf("rank %d: %v, want rank 2's abort", r, errs[r])
		}
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("abort took %v to reach the waiting ranks", time.Since(start))
	}
	if err := comms[0].AllReduceHost([]float64{1}); err == nil {
		t.Error("a collective after the abort succeeded")
	}
}

// TestLocalTimeoutNamesMissingRank: a rank that never arrives fails the
// others after the timeout, naming it.
func TestLocalTimeoutNamesMissingRank(t *testing.T) {
	comms, _ := NewLocal([]compute.Backend{cpuBackend(t), cpuBackend(t), cpuBackend(t)}, 200*time.Millisecond)
	errs := runRanks(comms[:2], func(c *Local) error { return c.AllReduceHost([]float64{1}) })
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "rank(s) 2:") || !strings.Contains(err.Error(), "did not arrive") {
			t.Errorf("rank %d: %v, want a timeout naming rank 2", r, err)
		}
	}
}

// TestLocalMismatchedCollectives: ranks calling different collectives (a
// bug in the caller) fail instead of mixing their buffers.
func TestLocalMismatchedCollectives(t *testing.T) {
	comms, _ := NewLocal([]compute.Backend{cpuBackend(t), cpuBackend(t)}, time.Minute)
	errs := runRanks(comms, func(c *Local) error { return c.AllReduceHost(make([]float64, 1+c.Rank())) })
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "out of step") {
			t.Errorf("rank %d: %v, want an out-of-step error", r, err)
		}
	}
}

// TestLocalCloseWhileWaited: a rank that closes while another waits for it
// fails the waiting rank rather than leaving it until the timeout.
func TestLocalCloseWhileWaited(t *testing.T) {
	comms, _ := NewLocal([]compute.Backend{cpuBackend(t), cpuBackend(t)}, time.Hour)
	done := make(chan error)
	go func() { done <- comms[0].AllReduceHost([]float64{1}) }()
	time.Sleep(50 * time.Millisecond)
	comms[1].Close()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "rank 1 closed") {
			t.Errorf("got %v, want rank 1 closed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("rank 0 still waits for a closed rank")
	}
}

// TestLocalStartAllReduceSum: queued reductions return at once (rank 1
// does not queue its own until rank 0's StartAllReduceSum has returned, so
// a blocking one would deadlock and time out), run in order, and are in
// place after Wait; a later collective waits for them; ranks that queue
// different sequences get an error from Wait.
func TestLocalStartAllReduceSum(t *testing.T) {
	const N, n = 2, 900
	bes := []compute.Backend{cpuBackend(t), hostOnly{cpuBackend(t)}}
	comms, err := NewLocal(bes, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	bufs := make([]compute.View, N)
	for r := range bufs {
		bufs[r] = compute.V(bes[r].Alloc(n))
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r*n + i)
		}
		bes[r].Upload(bufs[r], x)
	}
	started := make(chan struct{})
	errs := runRanks(comms, func(c *Local) error {
		if c.Rank() == 1 {
			<-started
		}
		v := bufs[c.Rank()]
		for _, seg := range [][2]int{{600, 300}, {200, 400}, {0, 200}} {
			if err := c.StartAllReduceSum(v.At(seg[0]), seg[1]); err != nil {
				return err
			}
		}
		if c.Rank() == 0 {
			close(started)
		}
		// AllReduceHost waits for the queued sums before its own.
		h := []float64{1}
		if err := c.AllReduceHost(h); err != nil {
			return err
		}
		if h[0] != N {
			return errors.New("host sum wrong")
		}
		return c.Wait()
	})
	for r, e := range errs {
		if e != nil {
			t.Fatalf("rank %d: %v", r, e)
		}
	}
	for r := range bufs {
		got := make([]float32, n)
		bes[r].Download(got, bufs[r])
		for i, g := range got {
			if want := float32(i + (n + i)); g != want {
				t.Fatalf("rank %d element %d: %g, want %g", r, i, g, want)
			}
		}
	}

	// Mismatched queues: the error comes back from Wait on every rank.
	comms, err = NewLocal([]compute.Backend{bes[0], bes[0]}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	v := compute.V(bes[0].Alloc(2 * n))
	errs = runRanks(comms, func(c *Local) error {
		size := 100 + 50*c.Rank()
		if err := c.StartAllReduceSum(v.At(c.Rank()*n), size); err != nil {
			return err
		}
		return c.Wait()
	})
	for r, e := range errs {
		if e == nil || !strings.Contains(e.Error(), "out of step") {
			t.Errorf("rank %d: %v, want an out-of-step error", r, e)
		}
	}
	for _, c := range comms {
		c.Close()
	}
}
