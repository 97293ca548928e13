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
	// Logf, when set, hears who is still awaited every WaitNotice while
	// the rendezvous waits (a cluster job that waits half an hour in
	// silence looks hung).
	Logf func(format string, a ...any)
}

// answerSlack is how much longer than the timeout a rank that reached
// rank 0 waits for its answer.
var answerSlack = 15 * time.Second

// WaitNotice is how often a waiting rendezvous says so through Logf.
var WaitNotice = 30 * time.Second

// maxLine bounds one message, so a stranger on the port cannot make rank
// 0 buffer without end.
const maxLine = 64 << 10

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
// rank 0's ID on every rank; see MeetWatch.
func Meet(ctx context.Context, addr string, r Rendezvous) ([]byte, error) {
	id, w, err := MeetWatch(ctx, addr, r)
	if err != nil {
		return nil, err
	}
	w.Close()
	return id, nil
}

// MeetWatch runs the rendezvous at addr and returns rank 0's ID on every
// rank, with a Watch over the rendezvous's connections for the rest of the
// run. Rank 0 listens on addr's port on all interfaces (MASTER_ADDR names
// it for the others; it may not be an address of this host's own
// choosing), or on addr itself when that is a loopback address (a
// single-node job shows nobody else the id); the others dial it until it
// answers.
func MeetWatch(ctx context.Context, addr string, r Rendezvous) ([]byte, *Watch, error) {
	if r.Rank != 0 {
		conn, rd, id, err := join(ctx, addr, r)
		if err != nil {
			return nil, nil, err
		}
		return id, newWatch(r.Rank, map[int]*peer{0: {conn: conn, rd: rd}}), nil
	}
	bind, port, err := bindAddr(addr)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, nil, fmt.Errorf("dist: rank 0 cannot listen for the rendezvous on port %s (another job's? give this one a free MASTER_PORT or %s): %w", port, RendezvousPortVar, err)
	}
	defer ln.Close()
	if r.Logf != nil {
		name, _, _ := net.SplitHostPort(addr)
		if err := thisHost(ctx, name); err != nil {
			r.Logf("rank 0: warning: %v", err)
		}
	}
	peers, err := host(ctx, ln, r)
	if err != nil {
		return nil, nil, err
	}
	return r.ID, newWatch(0, peers), nil
}

// thisHost checks that name (MASTER_ADDR) is an address of this host: if
// it is not, the other ranks dial another machine and wait there until
// the timeout, which rank 0 can say at once. (A warning, not an error: a
// NAT or container can map an outside address to this host.)
func thisHost(ctx context.Context, name string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIPAddr(ctx, name)
	if err != nil {
		return fmt.Errorf("MASTER_ADDR=%s does not resolve here: %v", name, err)
	}
	local, err := net.InterfaceAddrs()
	if err != nil {
		return nil // cannot tell
	}
	for _, ip := range ips {
		for _, a := range local {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip.IP) {
				return nil
			}
		}
	}
	var list []string
	for _, ip := range ips {
		list = append(list, ip.String())
	}
	return fmt.Errorf("MASTER_ADDR=%s (%s) is none of this host's addresses, but rank 0 runs here: the other ranks will look for it there", name, strings.Join(list, ", "))
}

// bindAddr is where rank 0 listens for a rendezvous at addr: addr's port
// on all interfaces, or addr itself when it is a loopback address.
func bindAddr(addr string) (bind, port string, err error) {
	name, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("dist: rendezvous address %q: %w", addr, err)
	}
	if ip := net.ParseIP(name); ip != nil && ip.IsLoopback() {
		return addr, port, nil
	}
	return net.JoinHostPort("", port), port, nil
}

// host is rank 0's side: it accepts the other WorldSize-1 ranks on ln,
// checks each one's world size, rank and fingerprint, and when all have
// arrived sends every one the ID and returns their connections (with their
// readers). A bad rank fails the whole rendezvous (every connected rank is
// told why); so does a rank missing at the timeout, named in the error.
func host(ctx context.Context, ln net.Listener, r Rendezvous) (map[int]*peer, error) {
	if r.Rank != 0 {
		return nil, fmt.Errorf("dist: rendezvous hosted on rank %d: only rank 0 hosts it", r.Rank)
	}
	if r.WorldSize < 1 {
		return nil, fmt.Errorf("dist: world size %d", r.WorldSize)
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
		h   hello
		p   *peer
		err error
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
				rd := bufio.NewReader(c)
				line, err := readLine(rd)
				if err == nil {
					err = json.Unmarshal(line, &h)
				}
				if err == nil && h.WorldSize < 1 {
					err = errors.New("not a rank's hello")
				}
				// Before the connection leaves this goroutine: the
				// rendezvous's end must not touch it once it is a peer
				// (stop is false when the end already has).
				if stop() {
					c.SetReadDeadline(time.Time{})
					select {
					case arrivals <- arrival{h: h, p: &peer{conn: c, rd: rd}, err: err}:
						return
					case <-ctx.Done():
					}
				}
				// Arrived while the rendezvous failed: say why.
				if msg := failure.Load(); msg != nil {
					send(c, reply{Error: *msg})
				}
				c.Close()
			}()
		}
	}()

	peers := map[int]*peer{}
	answered := false
	defer func() {
		if !answered {
			for _, p := range peers {
				p.conn.Close()
			}
		}
	}()
	answerAll := func(rep reply) {
		for _, p := range peers {
			send(p.conn, rep)
		}
	}
	fail := func(err error) error {
		msg := err.Error()
		failure.Store(&msg)
		answerAll(reply{Error: msg})
		return err
	}
	missing := func() string {
		var m []string
		for k := 1; k < r.WorldSize; k++ {
			if peers[k] == nil {
				m = append(m, strconv.Itoa(k))
			}
		}
		return strings.Join(m, ", ")
	}
	notice := time.NewTicker(WaitNotice)
	defer notice.Stop()
	for {
		if len(peers) == r.WorldSize-1 {
			// A rank that exited after its hello (its connection reads
			// EOF) is dropped and awaited again, so a restarted rank can
			// take its place; NCCL would otherwise wait for it forever.
			for k, p := range peers {
				if !alive(p.conn) {
					p.conn.Close()
					delete(peers, k)
				}
			}
			if len(peers) == r.WorldSize-1 {
				break
			}
		}
		select {
		case a := <-arrivals:
			h := a.h
			switch {
			case a.err != nil:
				a.p.conn.Close()
				continue // a stray connection (a port scanner): not a rank
			case h.WorldSize != r.WorldSize:
				peers[-1-len(peers)] = a.p // tell it too
				return nil, fail(fmt.Errorf("dist: rendezvous: rank %d was started with world size %d, rank 0 with %d", h.Rank, h.WorldSize, r.WorldSize))
			case h.Rank <= 0 || h.Rank >= r.WorldSize:
				peers[-1-len(peers)] = a.p
				return nil, fail(fmt.Errorf("dist: rendezvous: a process claims rank %d in a world of %d (ranks 1..%d join rank 0)", h.Rank, r.WorldSize, r.WorldSize-1))
			case peers[h.Rank] != nil && alive(peers[h.Rank].conn):
				peers[-1-len(peers)] = a.p
				return nil, fail(fmt.Errorf("dist: rendezvous: two processes claim rank %d (a second job on the same MASTER_PORT?)", h.Rank))
			case h.Fingerprint != r.Fingerprint:
				peers[-1-len(peers)] = a.p
				return nil, fail(fmt.Errorf("dist: rendezvous: rank %d runs %q, rank 0 runs %q: every rank must be started with the same settings", h.Rank, h.Fingerprint, r.Fingerprint))
			}
			if old := peers[h.Rank]; old != nil {
				old.conn.Close() // its process exited; this is its restart
			}
			peers[h.Rank] = a.p
		case <-notice.C:
			if r.Logf != nil {
				r.Logf("rank 0: rendezvous at %s: waiting for rank(s) %s of %d", ln.Addr(), missing(), r.WorldSize)
			}
		case <-ctx.Done():
			why := fmt.Sprintf("did not arrive within %v", r.timeout())
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				why = "had not arrived when the rendezvous was cancelled"
			}
			return nil, fail(fmt.Errorf("dist: rendezvous at %s: rank(s) %s of %d %s", ln.Addr(), missing(), r.WorldSize, why))
		}
	}
	answerAll(reply{ID: slices.Clone(r.ID)})
	answered = true
	return peers, nil
}

// alive tells whether c's far end is still there: a closed peer reads EOF
// at once, a live one sends nothing before the rendezvous's answer.
func alive(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Millisecond))
	defer c.SetReadDeadline(time.Time{})
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readLine reads one newline-ended message of at most maxLine bytes.
func readLine(rd *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		part, err := rd.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > maxLine {
			return nil, fmt.Errorf("dist: a message longer than %d bytes", maxLine)
		}
		if err != bufio.ErrBufferFull {
			return line, err
		}
	}
}

// send writes v as one JSON line, giving up on a peer that does not read
// within 10 seconds.
func send(c net.Conn, v any) error {
	b, _ := json.Marshal(v)
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(append(b, '\n'))
	return err
}

// join is the side of ranks 1..N-1: dial rank 0 at addr until it answers
// (it may start later than us), say who we are, and wait for the ID; it
// returns the connection to rank 0 and its reader.
func join(ctx context.Context, addr string, r Rendezvous) (net.Conn, *bufio.Reader, []byte, error) {
	if r.Rank <= 0 || r.Rank >= r.WorldSize {
		return nil, nil, nil, fmt.Errorf("dist: rendezvous joined as rank %d of %d: ranks 1..%d join rank 0", r.Rank, r.WorldSize, r.WorldSize-1)
	}
	start := time.Now()
	deadline := start.Add(r.timeout())
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var d net.Dialer
	var conn net.Conn
	var lastErr error
	lastNotice := start
	for conn == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn = c
			break
		}
		lastErr = err
		if r.Logf != nil && time.Since(lastNotice) >= WaitNotice {
			lastNotice = time.Now()
			r.Logf("rank %d: waiting for rank 0 at %s (MASTER_ADDR:MASTER_PORT) for %v: %v", r.Rank, addr, time.Since(start).Round(time.Second), err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, nil, fmt.Errorf("dist: rank %d: rank 0 at %s (MASTER_ADDR:MASTER_PORT) did not answer within %v: %v", r.Rank, addr, r.timeout(), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
	ok := false
	defer func() {
		if !ok {
			conn.Close()
		}
	}()
	// Rank 0 reports missing ranks at its own timeout, which runs from
	// its own start, before now (it is listening) but possibly long after
	// ours: wait for its answer until then, and a little longer, rather
	// than giving up first and leaving it a dead rank.
	conn.SetDeadline(time.Now().Add(r.timeout() + answerSlack))
	if err := send(conn, hello{Rank: r.Rank, WorldSize: r.WorldSize, Fingerprint: r.Fingerprint}); err != nil {
		return nil, nil, nil, fmt.Errorf("dist: rank %d: rendezvous at %s: %w", r.Rank, addr, err)
	}
	rd := bufio.NewReader(conn)
	line, err := readLine(rd)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil, nil, fmt.Errorf("dist: rank %d: rank 0 at %s accepted but the other ranks did not all arrive within %v", r.Rank, addr, r.timeout())
		}
		return nil, nil, nil, fmt.Errorf("dist: rank %d: rendezvous at %s: connection lost before rank 0 answered: %w", r.Rank, addr, err)
	}
	var rep reply
	if err := json.Unmarshal(line, &rep); err != nil {
		return nil, nil, nil, fmt.Errorf("dist: rank %d: rendezvous at %s: bad answer: %w", r.Rank, addr, err)
	}
	if rep.Error != "" {
		return nil, nil, nil, fmt.Errorf("dist: rank %d: rank 0 refused the rendezvous: %s", r.Rank, rep.Error)
	}
	conn.SetDeadline(time.Time{})
	ok = true
	return conn, rd, rep.ID, nil
}
