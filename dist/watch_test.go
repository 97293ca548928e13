package dist

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// watchGroup runs MeetWatch for n ranks on a free loopback port.
func watchGroup(t *testing.T, n int) []*Watch {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	ws := make([]*Watch, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ws[r], errs[r] = MeetWatch(context.Background(), addr, Rendezvous{Rank: r, WorldSize: n, ID: []byte{1}, Timeout: 20 * time.Second})
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return ws
}

// heardOf waits (at most 10 s) for w to report a failure.
func heardOf(t *testing.T, w *Watch, who string) error {
	t.Helper()
	select {
	case <-w.Failed():
		return w.Err()
	case <-time.After(10 * time.Second):
		t.Fatalf("%s heard of no failure within 10 s", who)
		return nil
	}
}

// TestWatchFailReachesEveryRank: a rank that fails (rank 0 or not) is
// named, with its error, on every other rank; the failing rank itself
// hears nothing.
func TestWatchFailReachesEveryRank(t *testing.T) {
	for _, failing := range []int{2, 0} {
		t.Run(fmt.Sprintf("rank %d fails", failing), func(t *testing.T) {
			ws := watchGroup(t, 4)
			ws[failing].Fail(errors.New("train: reading LJ001-0001.npy: disk error"))
			for r, w := range ws {
				if r == failing {
					continue
				}
				err := heardOf(t, w, fmt.Sprintf("rank %d", r))
				var re *RankError
				if !errors.As(err, &re) || re.Rank != failing || err.Error() != fmt.Sprintf("rank %d failed: train: reading LJ001-0001.npy: disk error", failing) {
					t.Errorf("rank %d heard %v", r, err)
				}
			}
			for _, w := range ws {
				w.Close()
			}
			if err := ws[failing].Err(); err != nil {
				t.Errorf("the failing rank heard %v", err)
			}
		})
	}
}

// TestWatchLostRank: a rank whose connection ends without a goodbye (its
// process was killed) is reported by rank 0 to every rank.
func TestWatchLostRank(t *testing.T) {
	ws := watchGroup(t, 3)
	ws[1].peers[0].conn.(*net.TCPConn).SetLinger(0)
	ws[1].peers[0].conn.Close() // as the kernel does for a killed process
	for _, r := range []int{0, 2} {
		err := heardOf(t, ws[r], fmt.Sprintf("rank %d", r))
		var re *RankError
		if !errors.As(err, &re) || re.Rank != 1 || !strings.Contains(err.Error(), "rank 1 failed: its connection to rank 0 closed without a goodbye") {
			t.Errorf("rank %d heard %v", r, err)
		}
	}
	for _, w := range ws {
		w.Close()
	}
}

// TestWatchCleanEnd: ranks that end well, in any order, report nothing,
// and Fail after Close does nothing.
func TestWatchCleanEnd(t *testing.T) {
	for _, order := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 0, 2}} {
		ws := watchGroup(t, 3)
		for _, r := range order {
			ws[r].Close()
		}
		ws[1].Fail(errors.New("late"))
		for r, w := range ws {
			if err := w.Err(); err != nil {
				t.Errorf("order %v: rank %d heard %v", order, r, err)
			}
		}
	}
}

// abortRecorder is a Communicator that records Abort and Close.
type abortRecorder struct {
	Communicator
	aborted error
	closed  bool
}

func (a *abortRecorder) Abort(cause error) { a.aborted = cause }
func (a *abortRecorder) Close() error      { a.closed = true; return nil }

// TestWatched: Abort on a watched communicator names this rank and its
// cause on the others and aborts the communicator, except when the cause
// is another rank's failure (an echo: not sent); Close closes both.
func TestWatched(t *testing.T) {
	ws := watchGroup(t, 3)
	inner := &abortRecorder{}
	c := Watched(inner, ws[1])
	echo := fmt.Errorf("train: rank 1: reducing the gradients: %w", &RankError{Rank: 2, Msg: "disk error"})
	c.Abort(echo)
	if inner.aborted != echo {
		t.Errorf("inner Abort got %v", inner.aborted)
	}
	// Sent after the echo would have been: the first the others hear.
	cause := errors.New("eval: out of memory")
	c.Abort(cause)
	if inner.aborted != cause {
		t.Errorf("inner Abort got %v", inner.aborted)
	}
	for _, r := range []int{0, 2} {
		if err := heardOf(t, ws[r], fmt.Sprintf("rank %d", r)); err == nil || err.Error() != "rank 1 failed: eval: out of memory" {
			t.Errorf("rank %d heard %v", r, err)
		}
	}
	if err := c.Close(); err != nil || !inner.closed || !ws[1].closed {
		t.Errorf("Close: %v, inner closed %v, watch closed %v", err, inner.closed, ws[1].closed)
	}
	ws[0].Close()
	ws[2].Close()
}

// rankVar makes TestWatchRankProcess join the watch group at its value's
// address as rank 2 of 3 and then exit without a goodbye.
const rankVar = "WC_WATCH_RANK_ADDR"

// TestWatchProcessDies: rank 2 is a real process that joins and then
// exits abruptly (os.Exit, no Close: a crash); ranks 0 and 1 hear that
// rank 2 died, by name.
func TestWatchProcessDies(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	child := exec.Command(os.Args[0], "-test.run=^TestWatchRankProcess$", "-test.count=1")
	child.Env = append(os.Environ(), rankVar+"="+addr)
	var out strings.Builder
	child.Stdout, child.Stderr = &out, &out
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	ws := make([]*Watch, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, ws[r], errs[r] = MeetWatch(context.Background(), addr, Rendezvous{Rank: r, WorldSize: 3, ID: []byte{1}, Timeout: 20 * time.Second})
		}()
	}
	wg.Wait()
	err := child.Wait()
	for r := range 2 {
		if errs[r] != nil {
			t.Fatalf("rank %d: %v (rank 2's process: %v\n%s)", r, errs[r], err, out.String())
		}
		defer ws[r].Close()
	}
	if st := child.ProcessState.ExitCode(); st != 3 {
		t.Fatalf("rank 2's process exited %d, want 3:\n%s", st, out.String())
	}
	for r, w := range ws {
		err := heardOf(t, w, fmt.Sprintf("rank %d", r))
		var re *RankError
		if !errors.As(err, &re) || re.Rank != 2 || !strings.Contains(err.Error(), "closed without a goodbye: the process died") {
			t.Errorf("rank %d heard %v", r, err)
		}
	}
}

// TestWatchRankProcess is rank 2 of TestWatchProcessDies; run directly it
// does nothing.
func TestWatchRankProcess(t *testing.T) {
	addr := os.Getenv(rankVar)
	if addr == "" {
		return // rank 2 of TestWatchProcessDies only
	}
	if _, _, err := MeetWatch(context.Background(), addr, Rendezvous{Rank: 2, WorldSize: 3, Timeout: 20 * time.Second}); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	os.Exit(3)
}
