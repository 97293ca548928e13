package dist

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Rendezvous is what every rank brings to the meeting at rank 0.
type Rendezvous struct {
	Rank, WorldSize int
	// Fingerprint names the run (data, head, batch, seed...): ranks started
	// with different settings must not train together.
	Fingerprint string
	// ID is rank 0's payload (NCCL's 128-byte unique id); ignored on the
	// other ranks.
	ID      []byte
	Timeout time.Duration // 0: 5 minutes
}

// hello is a rank's first line; reply is rank 0's answer.
type hello struct {
	Rank        int    `json:"rank"`
	WorldSize   int    `json:"world_size"`
	Fingerprint string `json:"fingerprint"`
}

type reply struct {
	ID    []byte `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
}

const defaultRendezvousTimeout = 5 * time.Minute

func (r *Rendezvous) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return defaultRendezvousTimeout
}

// Meet runs the rendezvous at addr (MASTER_ADDR:MASTER_PORT) and returns
// rank 0's ID on every rank. Rank 0 listens on addr's port on all
// interfaces (MASTER_ADDR names it for the others; it may not be an address
// of this host's own choosing), the others dial it until it answers.
func Meet(ctx context.Context, addr string, r Rendezvous) ([]byte, error) {
	if r.Rank != 0 {
		return Join(ctx, addr, r)
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("dist: rendezvous address %q: %w", addr, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("", port))
	if err != nil {
		return nil, fmt.Errorf("dist: rank 0 cannot listen for the rendezvous on port %s (MASTER_PORT; another job's?): %w", port, err)
	}
	defer ln.Close()
	return r.ID, Host(ctx, ln, r)
}

// Host is rank 0's side: it accepts the other WorldSize-1 ranks on ln,
// checks each one's world size, rank and fingerprint, and when all have
// arrived sends every one the ID. A bad rank fails the whole rendezvous
// (every connected rank is told why); so does a rank missing at the
// timeout, named in the error.
func Host(ctx context.Context, ln net.Listener, r Rendezvous) error {
	if r.Rank != 0 {
		return fmt.Errorf("dist: Host on rank %d: only rank 0 hosts the rendezvous", r.Rank)
	}
	if r.WorldSize < 1 {
		return fmt.Errorf("dist: world size %d", r.WorldSize)
	}
	deadline := time.Now().Add(r.timeout())
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: every goroutine below ends on it
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close() // unblocks Accept
	}()

	type arrival struct {
		h    hello
		conn net.Conn
		err  error
	}
	arrivals := make(chan arrival)
	var failure atomic.Pointer[string]
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetReadDeadline(deadline)
				// The rendezvous ending unblocks a read still waiting.
				stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Now()) })
				defer stop()
				var h hello
				line, err := bufio.NewReader(c).ReadBytes('\n')
				if err == nil {
					err = json.Unmarshal(line, &h)
				}
				select {
				case arrivals <- arrival{h: h, conn: c, err: err}:
				case <-ctx.Done():
					// Arrived while the rendezvous failed: say why.
					if msg := failure.Load(); msg != nil {
						b, _ := json.Marshal(reply{Error: *msg})
						c.SetWriteDeadline(time.Now().Add(10 * time.Second))
						c.Write(append(b, '\n'))
					}
					c.Close()
				}
			}()
		}
	}()

	conns := map[int]net.Conn{}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	answerAll := func(rep reply) {
		b, _ := json.Marshal(rep)
		for _, c := range conns {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			c.Write(append(b, '\n'))
		}
	}
	fail := func(err error) error {
		msg := err.Error()
		failure.Store(&msg)
		answerAll(reply{Error: msg})
		return err
	}
	for len(conns) < r.WorldSize-1 {
		select {
		case a := <-arrivals:
			h := a.h
			switch {
			case a.err != nil:
				a.conn.Close()
				continue // a stray connection (a port scanner): not a rank
			case h.WorldSize != r.WorldSize:
				conns[-1-len(conns)] = a.conn // tell it too
				return fail(fmt.Errorf("dist: rendezvous: rank %d was started with world size %d, rank 0 with %d", h.Rank, h.WorldSize, r.WorldSize))
			case h.Rank <= 0 || h.Rank >= r.WorldSize:
				conns[-1-len(conns)] = a.conn
				return fail(fmt.Errorf("dist: rendezvous: a process claims rank %d in a world of %d (ranks 1..%d join rank 0)", h.Rank, r.WorldSize, r.WorldSize-1))
			case conns[h.Rank] != nil:
				conns[-1-len(conns)] = a.conn
				return fail(fmt.Errorf("dist: rendezvous: two processes claim rank %d (a second job on the same MASTER_PORT?)", h.Rank))
			case h.Fingerprint != r.Fingerprint:
				conns[-1-len(conns)] = a.conn
				return fail(fmt.Errorf("dist: rendezvous: rank %d runs %q, rank 0 runs %q: every rank must be started with the same settings", h.Rank, h.Fingerprint, r.Fingerprint))
			}
			conns[h.Rank] = a.conn
		case <-ctx.Done():
			var missing []string
			for k := 1; k < r.WorldSize; k++ {
				if conns[k] == nil {
					missing = append(missing, strconv.Itoa(k))
				}
			}
			why := fmt.Sprintf("did not arrive within %v", r.timeout())
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = "had not arrived when the rendezvous was cancelled"
			}
			return fail(fmt.Errorf("dist: rendezvous at %s: rank(s) %s of %d %s", ln.Addr(), strings.Join(missing, ", "), r.WorldSize, why))
		}
	}
	answerAll(reply{ID: slices.Clone(r.ID)})
	return nil
}

// Join is the side of ranks 1..N-1: dial rank 0 at addr until it answers
// (it may start later than us), say who we are, and wait for the ID.
func Join(ctx context.Context, addr string, r Rendezvous) ([]byte, error) {
	if r.Rank <= 0 || r.Rank >= r.WorldSize {
		return nil, fmt.Errorf("dist: Join as rank %d of %d: ranks 1..%d join rank 0", r.Rank, r.WorldSize, r.WorldSize-1)
	}
	deadline := time.Now().Add(r.timeout())
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	var conn net.Conn
	var lastErr error
	for conn == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn = c
			break
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dist: rank %d: rank 0 at %s (MASTER_ADDR:MASTER_PORT) did not answer within %v: %v", r.Rank, addr, r.timeout(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	defer conn.Close()
	// Rank 0 reports missing ranks at its own timeout: give its answer
	// time to come rather than failing at the same instant.
	conn.SetDeadline(deadline.Add(15 * time.Second))
	b, _ := json.Marshal(hello{Rank: r.Rank, WorldSize: r.WorldSize, Fingerprint: r.Fingerprint})
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("dist: rank %d: rendezvous at %s: %w", r.Rank, addr, err)
	}
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, fmt.Errorf("dist: rank %d: rank 0 at %s accepted but the other ranks did not all arrive within %v", r.Rank, addr, r.timeout())
		}
		return nil, fmt.Errorf("dist: rank %d: rendezvous at %s: connection lost before rank 0 answered: %w", r.Rank, addr, err)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil {
		return nil, fmt.Errorf("dist: rank %d: rendezvous at %s: bad answer: %w", r.Rank, addr, err)
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("dist: rank %d: rank 0 refused the rendezvous: %s", r.Rank, rep.Error)
	}
	return rep.ID, nil
}
