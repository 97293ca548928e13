package dist

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// meet runs rank 0 on ln and ranks 1..N-1 with the given settings, each
// after its delay (rank 0 included: others may arrive before it listens,
// which join must survive by redialling).
func meet(t *testing.T, world int, ranks []Rendezvous, delays []time.Duration) (hostErr error, ids [][]byte, errs []error) {
	t.Helper()
	ln := listen(t)
	addr := ln.Addr().String()
	ids, errs = make([][]byte, len(ranks)), make([]error, len(ranks))
	var wg sync.WaitGroup
	for i, r := range ranks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(delays[i])
			if r.Rank == 0 {
				hostErr = hostClosing(context.Background(), ln, r)
				return
			}
			ids[i], errs[i] = joinClosing(context.Background(), addr, r)
		}()
	}
	wg.Wait()
	return hostErr, ids, errs
}

// TestRendezvousAnyOrder: ranks arriving in random orders, rank 0 among
// the last, all get rank 0's ID.
func TestRendezvousAnyOrder(t *testing.T) {
	const N = 5
	id := bytes.Repeat([]byte{0xab, 0, 0xff}, 43)[:128]
	for trial := range 4 {
		rng := rand.New(rand.NewPCG(uint64(trial), 1))
		var ranks []Rendezvous
		var delays []time.Duration
		for r := range N {
			rv := Rendezvous{Rank: r, WorldSize: N, Fingerprint: "run A", Timeout: 20 * time.Second}
			if r == 0 {
				rv.ID = id
			}
			ranks = append(ranks, rv)
			delays = append(delays, time.Duration(rng.IntN(300))*time.Millisecond)
		}
		hostErr, ids, errs := meet(t, N, ranks, delays)
		if hostErr != nil {
			t.Fatalf("trial %d (delays %v): rank 0: %v", trial, delays, hostErr)
		}
		for r := 1; r < N; r++ {
			if errs[r] != nil || !bytes.Equal(ids[r], id) {
				t.Fatalf("trial %d (delays %v): rank %d got %x, %v", trial, delays, r, ids[r], errs[r])
			}
		}
	}
}

// TestRendezvousMissingRank: rank 2 of 4 never comes: rank 0 fails at the
// timeout naming it, and the ranks that came are told the same.
func TestRendezvousMissingRank(t *testing.T) {
	var ranks []Rendezvous
	for _, r := range []int{0, 1, 3} {
		ranks = append(ranks, Rendezvous{Rank: r, WorldSize: 4, Timeout: 500 * time.Millisecond, ID: []byte{1}})
	}
	hostErr, _, errs := meet(t, 4, ranks, make([]time.Duration, 3))
	if hostErr == nil || !strings.Contains(hostErr.Error(), "rank(s) 2 of 4 did not arrive within 500ms") {
		t.Fatalf("rank 0: %v, want a timeout naming rank 2", hostErr)
	}
	for i := 1; i < 3; i++ {
		if errs[i] == nil || !strings.Contains(errs[i].Error(), "rank(s) 2 of 4") {
			t.Errorf("rank %d: %v, want rank 0's refusal naming rank 2", ranks[i].Rank, errs[i])
		}
	}
}

// TestRendezvousNoRankZero: with nobody listening, a joining rank gives up
// at its timeout, naming the address it tried.
func TestRendezvousNoRankZero(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	_, err := joinClosing(context.Background(), addr, Rendezvous{Rank: 1, WorldSize: 2, Timeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "rank 0 at "+addr) || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Fatalf("got %v", err)
	}
}

// TestRendezvousRefusals: a wrong world size, a duplicate rank or another
// run's fingerprint fails the rendezvous on every side with the reason.
func TestRendezvousRefusals(t *testing.T) {
	base := func(r int) Rendezvous {
		return Rendezvous{Rank: r, WorldSize: 3, Fingerprint: "run A", Timeout: 20 * time.Second, ID: []byte{9}}
	}
	for _, c := range []struct {
		name string
		bad  Rendezvous
		want string
	}{
		{"world size", Rendezvous{Rank: 2, WorldSize: 4, Fingerprint: "run A", Timeout: 20 * time.Second}, "rank 2 was started with world size 4, rank 0 with 3"},
		{"duplicate rank", base(1), "two processes claim rank 1"},
		{"fingerprint", Rendezvous{Rank: 2, WorldSize: 3, Fingerprint: "run B", Timeout: 20 * time.Second}, `rank 2 runs "run B", rank 0 runs "run A"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			// rank 1 arrives first, then the bad one, then rank 0 listens
			ranks := []Rendezvous{base(0), base(1), c.bad}
			hostErr, _, errs := meet(t, 3, ranks, []time.Duration{300 * time.Millisecond, 0, 100 * time.Millisecond})
			if hostErr == nil || !strings.Contains(hostErr.Error(), c.want) {
				t.Fatalf("rank 0: %v, want %q", hostErr, c.want)
			}
			for i := 1; i < 3; i++ {
				if errs[i] == nil || !strings.Contains(errs[i].Error(), c.want) {
					t.Errorf("joiner %d: %v, want %q", i, errs[i], c.want)
				}
			}
		})
	}
}

// TestMeet: Meet's rank 0 listens on the port of MASTER_ADDR and a rank
// reaches it at that address.
func TestMeet(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // free the port for Meet
	var wg sync.WaitGroup
	var got []byte
	var jerr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		got, jerr = Meet(context.Background(), addr, Rendezvous{Rank: 1, WorldSize: 2, Timeout: 10 * time.Second})
	}()
	id, err := Meet(context.Background(), addr, Rendezvous{Rank: 0, WorldSize: 2, ID: []byte("nccl id"), Timeout: 10 * time.Second})
	wg.Wait()
	if err != nil || jerr != nil || string(id) != "nccl id" || string(got) != "nccl id" {
		t.Fatalf("rank 0: %q %v; rank 1: %q %v", id, err, got, jerr)
	}
}

// TestBindAddr: rank 0 listens on every interface for a multi-node job
// (MASTER_ADDR is how the others see it), but only on loopback when
// MASTER_ADDR is a loopback address, so a single-node job's NCCL id is not
// handed to anyone on the network.
func TestBindAddr(t *testing.T) {
	for _, c := range []struct{ addr, bind string }{
		{"127.0.0.1:29500", "127.0.0.1:29500"},
		{"[::1]:29500", "[::1]:29500"},
		{"gpu01:29500", ":29500"},
		{"10.0.0.7:1234", ":1234"},
	} {
		if bind, _, err := bindAddr(c.addr); err != nil || bind != c.bind {
			t.Errorf("bindAddr(%q) = %q, %v; want %q", c.addr, bind, err, c.bind)
		}
	}
	if _, _, err := bindAddr("gpu01"); err == nil || !strings.Contains(err.Error(), `rendezvous address "gpu01"`) {
		t.Errorf("bindAddr without a port: %v", err)
	}
}

// rawHello connects to addr and sends line as a rank's first message.
func rawHello(t *testing.T, addr, line string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte(line)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRendezvousStrangersIgnored: connections that are not ranks (JSON
// that is no hello, a line longer than any message, a closed probe) are
// dropped without failing the rendezvous.
func TestRendezvousStrangersIgnored(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	errc := make(chan error, 1)
	go func() {
		errc <- hostClosing(context.Background(), ln, Rendezvous{Rank: 0, WorldSize: 2, ID: []byte{5}, Timeout: 20 * time.Second})
	}()
	for _, line := range []string{"null\n", "{}\n", `{"rank":1}` + "\n", strings.Repeat("x", 3*maxLine)} {
		c := rawHello(t, addr, line)
		defer c.Close()
	}
	id, err := joinClosing(context.Background(), addr, Rendezvous{Rank: 1, WorldSize: 2, Timeout: 20 * time.Second})
	if err != nil || !bytes.Equal(id, []byte{5}) {
		t.Fatalf("rank 1 after the strangers: %x, %v", id, err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("rank 0: %v", err)
	}
}

// TestRendezvousRankRestarts: a rank that said hello and then exited is
// not handed the id (NCCL would wait for it forever): rank 0 waits for it
// again, and its restart (same rank) completes the rendezvous.
func TestRendezvousRankRestarts(t *testing.T) {
	ln := listen(t)
	addr := ln.Addr().String()
	r := func(rank int) Rendezvous {
		return Rendezvous{Rank: rank, WorldSize: 3, Fingerprint: "f", ID: []byte("id"), Timeout: 20 * time.Second}
	}
	errc := make(chan error, 1)
	go func() { errc <- hostClosing(context.Background(), ln, r(0)) }()
	dead := rawHello(t, addr, `{"rank":2,"world_size":3,"fingerprint":"f"}`+"\n")
	time.Sleep(100 * time.Millisecond) // rank 0 has its hello
	dead.Close()
	var wg sync.WaitGroup
	ids := make([][]byte, 3)
	errs := make([]error, 3)
	for _, k := range []int{1, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[k], errs[k] = joinClosing(context.Background(), addr, r(k))
		}()
	}
	wg.Wait()
	if err := <-errc; err != nil {
		t.Fatalf("rank 0: %v", err)
	}
	for _, k := range []int{1, 2} {
		if errs[k] != nil || string(ids[k]) != "id" {
			t.Errorf("rank %d: %q, %v", k, ids[k], errs[k])
		}
	}
}

// TestRendezvousSaysWhoItWaitsFor: while waiting, rank 0 names the ranks
// still missing and a joining rank says it is still dialling rank 0.
func TestRendezvousSaysWhoItWaitsFor(t *testing.T) {
	old := WaitNotice
	WaitNotice = 50 * time.Millisecond
	defer func() { WaitNotice = old }()
	var mu sync.Mutex
	var said []string
	logf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		said = append(said, fmt.Sprintf(format, a...))
	}
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	_, err := joinClosing(context.Background(), addr, Rendezvous{Rank: 1, WorldSize: 2, Timeout: 300 * time.Millisecond, Logf: logf})
	if err == nil {
		t.Fatal("joined nobody")
	}
	ln = listen(t)
	err = hostClosing(context.Background(), ln, Rendezvous{Rank: 0, WorldSize: 3, Timeout: 300 * time.Millisecond, Logf: logf})
	if err == nil {
		t.Fatal("rank 0 met nobody")
	}
	all := strings.Join(said, "\n")
	if !strings.Contains(all, "rank 1: waiting for rank 0 at "+addr) || !strings.Contains(all, "rank 0: rendezvous at "+ln.Addr().String()+": waiting for rank(s) 1, 2 of 3") {
		t.Errorf("notices:\n%s", all)
	}
}

// TestThisHost: rank 0 recognises its own addresses and names a
// MASTER_ADDR that is not one of them (192.0.2.1 is TEST-NET-1, never a
// host's) or does not resolve.
func TestThisHost(t *testing.T) {
	for _, name := range []string{"127.0.0.1", "localhost"} {
		if err := thisHost(context.Background(), name); err != nil {
			t.Errorf("thisHost(%q): %v", name, err)
		}
	}
	if err := thisHost(context.Background(), "192.0.2.1"); err == nil || !strings.Contains(err.Error(), "MASTER_ADDR=192.0.2.1 (192.0.2.1) is none of this host's addresses") {
		t.Errorf("thisHost(192.0.2.1): %v", err)
	}
	if err := thisHost(context.Background(), "no-such-host.invalid"); err == nil || !strings.Contains(err.Error(), "MASTER_ADDR=no-such-host.invalid does not resolve here") {
		t.Errorf("thisHost(no-such-host.invalid): %v", err)
	}
}

// TestRendezvousRankZeroStartsLate: rank 0 starts long after rank 1 (more
// than the timeout's slack), and rank 2 arrives after rank 1's own
// timeout but within rank 0's: rank 1 keeps waiting for rank 0's answer,
// which runs on rank 0's clock, and all three meet.
func TestRendezvousRankZeroStartsLate(t *testing.T) {
	old := answerSlack
	answerSlack = 100 * time.Millisecond
	defer func() { answerSlack = old }()
	const timeout = 2 * time.Second
	r := func(rank int) Rendezvous {
		return Rendezvous{Rank: rank, WorldSize: 3, ID: []byte("id"), Timeout: timeout}
	}
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close() // rank 0 listens when it starts, as Meet does
	ids, errs := make([][]byte, 3), make([]error, 3)
	var wg sync.WaitGroup
	for k, delay := range []time.Duration{1600 * time.Millisecond, 0, 2600 * time.Millisecond} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(delay)
			ids[k], errs[k] = Meet(context.Background(), addr, r(k))
		}()
	}
	wg.Wait()
	for k := range 3 {
		if errs[k] != nil || string(ids[k]) != "id" {
			t.Errorf("rank %d: %q, %v", k, ids[k], errs[k])
		}
	}
}

// hostClosing is rank 0's side of the rendezvous on ln, its connections closed
// after.
func hostClosing(ctx context.Context, ln net.Listener, r Rendezvous) error {
	peers, err := host(ctx, ln, r)
	for _, p := range peers {
		p.conn.Close()
	}
	return err
}

// joinClosing is rank r's side of the rendezvous at addr, its connection closed
// after.
func joinClosing(ctx context.Context, addr string, r Rendezvous) ([]byte, error) {
	conn, _, id, err := join(ctx, addr, r)
	if err != nil {
		return nil, err
	}
	conn.Close()
	return id, nil
}
