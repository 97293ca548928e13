package dist

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Watch keeps the rendezvous's connections (rank 0 to every other rank)
// open for the whole run, so that a rank's failure reaches every other
// rank at once, naming it, instead of as a collective that times out
// (NCCL's own error handling does not report a peer that stopped calling
// collectives: its ring just waits). A rank that fails says so (Fail); a
// rank whose connection drops without a goodbye (killed, crashed, its node
// gone) is reported by rank 0, which relays every report to the others.
// Communicators poll Err while they wait.
type Watch struct {
	rank  int
	mu    sync.Mutex // guards peers' writes and closed
	peers map[int]*peer
	// first is the first failure heard of (read without mu: Err is
	// polled by waits that must not queue behind a slow write).
	first atomic.Pointer[RankError]
	// failed is closed when first is set.
	failed chan struct{}
	closed bool
	wg     sync.WaitGroup
}

// peer is one connection of the watch: on rank 0 one per rank, on the
// others one to rank 0.
type peer struct {
	conn net.Conn
	rd   *bufio.Reader
}

// notice is what travels over a watch's connections.
type notice struct {
	Failed bool   `json:"failed,omitempty"` // Rank failed with Error
	Rank   int    `json:"rank"`
	Error  string `json:"error,omitempty"`
	Bye    bool   `json:"bye,omitempty"` // the sender ended well
}

// RankError is another rank's failure as a Watch reports it.
type RankError struct {
	Rank int
	Msg  string
}

func (e *RankError) Error() string { return fmt.Sprintf("rank %d failed: %s", e.Rank, e.Msg) }

// keepAlive probes an idle watch connection, so that a node that vanished
// (power, network) is noticed in about 40 s rather than Linux's default
// two hours or Go's 2.5 minutes.
var keepAlive = net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 5 * time.Second, Count: 6}

func newWatch(rank int, peers map[int]*peer) *Watch {
	w := &Watch{rank: rank, peers: peers, failed: make(chan struct{})}
	for k, p := range peers {
		if tc, ok := p.conn.(*net.TCPConn); ok {
			tc.SetKeepAliveConfig(keepAlive)
		}
		w.wg.Add(1)
		go w.listen(k, p)
	}
	return w
}

// listen reads peer k's notices until its goodbye, a failure, or the end
// of its connection.
func (w *Watch) listen(k int, p *peer) {
	defer w.wg.Done()
	for {
		line, err := readLine(p.rd)
		var n notice
		if err == nil {
			err = json.Unmarshal(line, &n)
		}
		switch {
		case err != nil:
			w.mu.Lock()
			closed := w.closed
			w.mu.Unlock()
			if !closed {
				w.heard(k, &RankError{Rank: k, Msg: fmt.Sprintf("its connection to rank %d closed without a goodbye: the process died or its node is unreachable (%v)", w.rank, err)})
			}
			return
		case n.Bye:
			return
		case n.Failed:
			w.heard(k, &RankError{Rank: n.Rank, Msg: n.Error})
		}
	}
}

// heard records a failure and, on rank 0, passes it on to every rank but
// the one it came from; only the first counts (the others are mostly
// ranks stopping because of it).
func (w *Watch) heard(from int, e *RankError) {
	if !w.first.CompareAndSwap(nil, e) {
		return // the ranks already know of a failure: not news
	}
	close(w.failed)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rank == 0 && !w.closed {
		for k, p := range w.peers {
			if k != from {
				send(p.conn, notice{Failed: true, Rank: e.Rank, Error: e.Msg})
			}
		}
	}
}

// Err is nil while no other rank has failed, then the first failure heard
// of (a *RankError naming the rank).
func (w *Watch) Err() error {
	if e := w.first.Load(); e != nil {
		return e
	}
	return nil
}

// Failed is closed once Err is not nil.
func (w *Watch) Failed() <-chan struct{} { return w.failed }

// Fail tells every other rank that this one failed with cause (through
// rank 0). Safe to call more than once and after Close (then it does
// nothing).
func (w *Watch) Fail(cause error) {
	if cause == nil {
		cause = errors.New("failed")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for _, p := range w.peers {
		send(p.conn, notice{Failed: true, Rank: w.rank, Error: cause.Error()})
	}
}

// Close says goodbye to the other ranks (this one ended well, or has
// said why it failed) and closes the connections.
func (w *Watch) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.closed = true
	for _, p := range w.peers {
		send(p.conn, notice{Bye: true, Rank: w.rank})
		p.conn.Close()
	}
	w.mu.Unlock()
	w.wg.Wait()
}

// Watched is c with w: Abort tells the other ranks why (w.Fail; not when
// the cause is another rank's failure, which they know of) before aborting
// c, and Close ends w after c. (c itself should poll w while it
// waits, as cuda.NCCLComm.WatchPeers does.)
func Watched(c Communicator, w *Watch) Communicator { return &watched{Communicator: c, w: w} }

type watched struct {
	Communicator
	w *Watch
}

func (c *watched) Abort(cause error) {
	var re *RankError
	if !errors.As(cause, &re) { // not an echo of another rank's failure
		c.w.Fail(cause)
	}
	c.Communicator.Abort(cause)
}

func (c *watched) Close() error {
	err := c.Communicator.Close()
	c.w.Close()
	return err
}
