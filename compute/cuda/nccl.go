package cuda

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/wavecat/wavecat/compute"
)

// NCCL, dlopened like the rest of CUDA, for data-parallel training: an
// NCCLComm is one rank's communicator on this backend's device and stream
// (it satisfies dist.Communicator).
//
// ncclCommInitRank takes the 128-byte ncclUniqueId by value, which purego
// cannot pass (16 stack words, over its argument limit), so communicators
// are made with ncclCommInitRankScalable (one id, by pointer; NCCL 2.23+).

var libNCCL = libSpec{
	what:    "NCCL",
	names:   []string{"libnccl.so.2", "libnccl.so"},
	install: "install NCCL 2.23 or newer: `pip install nvidia-nccl-cu12` (or -cu13), or the libnccl2 package of NVIDIA's CUDA repository, or point WAVECAT_CUDA_LIBS at the folder holding libnccl.so.2",
}

// NCCL constants (nccl.h).
const (
	ncclSuccess    = 0
	ncclInProgress = 7
	ncclFloat32    = 7
	ncclFloat64    = 8
	ncclSum        = 0
	ncclIDBytes    = 128
	cuErrNotReady  = 600 // CUDA_ERROR_NOT_READY: cuStreamQuery while work is queued
)

type ncclAPI struct {
	lib *library

	ncclGetVersion           func(v *int32) int32
	ncclGetUniqueId          func(id *[ncclIDBytes]byte) int32
	ncclCommInitRankScalable func(comm *uintptr, nranks, rank, nID int32, ids *[ncclIDBytes]byte, config uintptr) int32
	ncclAllReduce            func(send, recv uint64, count uint64, dtype, op int32, comm, stream uintptr) int32
	ncclBroadcast            func(send, recv uint64, count uint64, dtype, root int32, comm, stream uintptr) int32
	ncclCommGetAsyncError    func(comm uintptr, r *int32) int32
	ncclCommAbort            func(comm uintptr) int32
	ncclCommDestroy          func(comm uintptr) int32
	ncclGetErrorString       func(r int32) string

	// From the driver: polling a stream, and the events that order the
	// side stream that overlapped reductions run on.
	cuStreamQuery     func(s uintptr) cuResult
	cuEventCreate     func(e *uintptr, flags uint32) cuResult
	cuEventRecord     func(e, s uintptr) cuResult
	cuStreamWaitEvent func(s, e uintptr, flags uint32) cuResult
	cuEventDestroy    func(e uintptr) cuResult
}

// driverSymbols are the driver entry points NCCLComm uses beyond the
// backend's.
func (n *ncclAPI) driverSymbols() []symbol {
	return []symbol{
		{"cuStreamQuery", &n.cuStreamQuery, false},
		{"cuEventCreate", &n.cuEventCreate, false},
		{"cuEventRecord", &n.cuEventRecord, false},
		{"cuStreamWaitEvent", &n.cuStreamWaitEvent, false},
		{"cuEventDestroy_v2", &n.cuEventDestroy, false},
	}
}

const cuEventDisableTiming = 2 // CU_EVENT_DISABLE_TIMING

func (n *ncclAPI) symbols() []symbol {
	return []symbol{
		{"ncclGetVersion", &n.ncclGetVersion, false},
		{"ncclGetUniqueId", &n.ncclGetUniqueId, false},
		{"ncclCommInitRankScalable", &n.ncclCommInitRankScalable, false},
		{"ncclAllReduce", &n.ncclAllReduce, false},
		{"ncclBroadcast", &n.ncclBroadcast, false},
		{"ncclCommGetAsyncError", &n.ncclCommGetAsyncError, false},
		{"ncclCommAbort", &n.ncclCommAbort, false},
		{"ncclCommDestroy", &n.ncclCommDestroy, false},
		{"ncclGetErrorString", &n.ncclGetErrorString, false},
	}
}

func (n *ncclAPI) check(call string, r int32) error {
	if r == ncclSuccess {
		return nil
	}
	return &Error{Call: call, Code: int(r), Name: n.ncclGetErrorString(r)}
}

var ncclLib *ncclAPI

// loadNCCL finds and binds NCCL (once; a failure is retried next time).
func loadNCCL() (*ncclAPI, error) {
	drv, err := loadDriver()
	if err != nil {
		return nil, err
	}
	loadMu.Lock()
	defer loadMu.Unlock()
	if ncclLib != nil {
		return ncclLib, nil
	}
	lib, err := load(libNCCL, searchDirs(osSearchEnv), true, systemDlopen)
	if err != nil {
		return nil, err
	}
	n := &ncclAPI{lib: lib}
	if err := bindNCCL(lib, n); err != nil {
		return nil, err
	}
	if err := bind(drv.lib, "the CUDA driver", n.driverSymbols()); err != nil {
		return nil, err
	}
	ncclLib = n
	return n, nil
}

// bindNCCL is bind with NCCL's own advice: the symbol that is missing in
// practice is ncclCommInitRankScalable (NCCL before 2.23).
func bindNCCL(lib *library, n *ncclAPI) error {
	if err := bind(lib, "NCCL", n.symbols()); err != nil {
		return fmt.Errorf("cuda: NCCL at %s is too old or not NCCL (%v); data-parallel training needs NCCL 2.23 or newer: %s", lib.path, strings.TrimPrefix(err.Error(), "cuda: "), libNCCL.install)
	}
	return nil
}

// NCCLVersion loads NCCL and returns its version code (e.g. 22703), or the
// error saying what is missing and how to install it.
func NCCLVersion() (int, error) {
	n, err := loadNCCL()
	if err != nil {
		return 0, err
	}
	var v int32
	if err := n.check("ncclGetVersion", n.ncclGetVersion(&v)); err != nil {
		return 0, err
	}
	return int(v), nil
}

// NCCLUniqueID returns a fresh NCCL unique id (rank 0 makes it and the
// rendezvous hands it to the others).
func NCCLUniqueID() ([]byte, error) {
	n, err := loadNCCL()
	if err != nil {
		return nil, err
	}
	var id [ncclIDBytes]byte
	if err := n.check("ncclGetUniqueId", n.ncclGetUniqueId(&id)); err != nil {
		return nil, err
	}
	return id[:], nil
}

// NCCLComm is one rank of an NCCL communicator on a Backend's device. Its
// collectives run on the backend's stream, after the work queued there,
// and wait for completion while polling NCCL's asynchronous error state, so
// a dead peer becomes an error (after the timeout at worst) instead of a
// hang. StartAllReduceSum queues its reductions on a side stream instead,
// behind an event recorded on the backend's stream, so they overlap the
// kernels queued after them; Wait polls the side stream.
type NCCLComm struct {
	be         *Backend
	api        *ncclAPI
	comm       uintptr
	rank, size int
	timeout    time.Duration

	mu      sync.Mutex
	scratch compute.Buffer // AllReduceHost's float64s
	side    uintptr        // the overlapped reductions' stream (0: not yet made)
	ready   uintptr        // event: the backend's stream reached a StartAllReduceSum
	pending int            // reductions queued on side since the last Wait
	// peers, when set (WatchPeers), reports another rank's failure.
	peers interface{ Err() error }
}

// WatchPeers makes every wait of c also end, naming the rank, as soon as
// p reports another rank's failure (dist.Watch): NCCL itself only notices a
// peer that stopped calling collectives when the timeout runs out. Call it
// before the first collective.
func (c *NCCLComm) WatchPeers(p interface{ Err() error }) { c.peers = p }

// NewNCCLComm joins the communicator of size ranks named by id as rank.
// It blocks until every rank has joined (NCCL's own bootstrap). timeout
// bounds every later collective's wait.
func NewNCCLComm(be *Backend, id []byte, rank, size int, timeout time.Duration) (*NCCLComm, error) {
	if len(id) != ncclIDBytes {
		return nil, fmt.Errorf("cuda: NCCL unique id of %d bytes, want %d", len(id), ncclIDBytes)
	}
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("cuda: NCCL rank %d of %d", rank, size)
	}
	n, err := loadNCCL()
	if err != nil {
		return nil, err
	}
	c := &NCCLComm{be: be, api: n, rank: rank, size: size, timeout: timeout}
	var ids [ncclIDBytes]byte
	copy(ids[:], id)
	defer be.enter()()
	// NCCL picks the device from the current context (cudaGetDevice),
	// which enter made the backend's.
	if err := n.check("ncclCommInitRankScalable", n.ncclCommInitRankScalable(&c.comm, int32(size), int32(rank), 1, &ids, 0)); err != nil {
		return nil, fmt.Errorf("cuda: joining the NCCL communicator as rank %d of %d on %s: %w", rank, size, be.devName, err)
	}
	return c, nil
}

// Rank implements dist.Communicator.
func (c *NCCLComm) Rank() int { return c.rank }

// Size implements dist.Communicator.
func (c *NCCLComm) Size() int { return c.size }

func devicePtr(v compute.View) uint64 {
	return v.Buf.(*buffer).ptr + 4*uint64(v.Off)
}

// wait polls the backend's stream until the queued collective is done; see
// waitOn.
func (c *NCCLComm) wait(what string) error { return c.waitOn(c.be.stream, what) }

// waitOn polls stream until the queued collectives are done, failing on an
// NCCL asynchronous error, another rank's reported failure (WatchPeers) or
// after the timeout (aborting the communicator, which also unblocks the
// stream). Call inside be.enter.
func (c *NCCLComm) waitOn(stream uintptr, what string) error {
	start := time.Now()
	for sleep := time.Microsecond; ; sleep = min(2*sleep, time.Millisecond) {
		r := c.api.cuStreamQuery(stream)
		if r == cuSuccess {
			return nil
		}
		if r != cuErrNotReady {
			return c.be.drv.check("cuStreamQuery after "+what, r)
		}
		var ar int32
		if e := c.api.ncclCommGetAsyncError(c.comm, &ar); e == ncclSuccess && ar != ncclSuccess && ar != ncclInProgress {
			c.api.ncclCommAbort(c.comm)
			c.comm = 0
			return fmt.Errorf("cuda: NCCL rank %d of %d: %s failed: %w (a peer rank died or the network failed)", c.rank, c.size, what, c.api.check("ncclCommGetAsyncError", ar))
		}
		if c.peers != nil {
			if err := c.peers.Err(); err != nil {
				c.api.ncclCommAbort(c.comm)
				c.comm = 0
				return fmt.Errorf("cuda: NCCL rank %d of %d: %s stopped: %w", c.rank, c.size, what, err)
			}
		}
		if c.timeout > 0 && time.Since(start) > c.timeout {
			c.api.ncclCommAbort(c.comm)
			c.comm = 0
			return fmt.Errorf("cuda: NCCL rank %d of %d: %s did not finish within %v: a peer rank died or hangs", c.rank, c.size, what, c.timeout)
		}
		time.Sleep(sleep)
	}
}

func (c *NCCLComm) live(what string) error {
	if c.comm == 0 {
		return fmt.Errorf("cuda: NCCL rank %d: %s on an aborted or closed communicator", c.rank, what)
	}
	return nil
}

// StartAllReduceSum implements dist.Communicator: the sum runs on the side
// stream once the backend's stream has reached this point.
func (c *NCCLComm) StartAllReduceSum(v compute.View, n int) error {
	v.Check(n, "cuda: StartAllReduceSum")
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.live("StartAllReduceSum"); err != nil {
		return err
	}
	defer c.be.enter()()
	if c.side == 0 {
		var s, e uintptr
		if err := c.be.drv.check("cuStreamCreate", c.be.drv.cuStreamCreate(&s, cuStreamNonBlocking)); err != nil {
			return err
		}
		if err := c.be.drv.check("cuEventCreate", c.api.cuEventCreate(&e, cuEventDisableTiming)); err != nil {
			c.be.drv.cuStreamDestroy(s)
			return err
		}
		c.side, c.ready = s, e
	}
	// A stream waits for the event's latest record at the time of the
	// call, so one event serves every reduction.
	if err := c.be.drv.check("cuEventRecord", c.api.cuEventRecord(c.ready, c.be.stream)); err != nil {
		return err
	}
	if err := c.be.drv.check("cuStreamWaitEvent", c.api.cuStreamWaitEvent(c.side, c.ready, 0)); err != nil {
		return err
	}
	p := devicePtr(v)
	if err := c.api.check("ncclAllReduce", c.api.ncclAllReduce(p, p, uint64(n), ncclFloat32, ncclSum, c.comm, c.side)); err != nil {
		return err
	}
	c.pending++
	return nil
}

// Wait implements dist.Communicator. Once the side stream is idle on the
// host's poll, everything queued on the backend afterwards follows it.
func (c *NCCLComm) Wait() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == 0 {
		return nil
	}
	if err := c.live("Wait"); err != nil {
		return err
	}
	defer c.be.enter()()
	return c.drain()
}

// drain waits for the reductions queued on the side stream. Call with mu
// held, inside be.enter.
func (c *NCCLComm) drain() error {
	if c.pending == 0 {
		return nil
	}
	n := c.pending
	c.pending = 0
	return c.waitOn(c.side, fmt.Sprintf("%d overlapped ncclAllReduce(s)", n))
}

// AllReduceSum implements dist.Communicator.
func (c *NCCLComm) AllReduceSum(v compute.View, n int) error {
	v.Check(n, "cuda: AllReduceSum")
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.live("AllReduceSum"); err != nil {
		return err
	}
	defer c.be.enter()()
	p := devicePtr(v)
	return c.blocking("ncclAllReduce", "ncclAllReduce", func() int32 {
		return c.api.ncclAllReduce(p, p, uint64(n), ncclFloat32, ncclSum, c.comm, c.be.stream)
	})
}

// blocking runs one collective on the backend's stream, after the
// reductions queued on the side stream, and waits for it. Call with mu
// held, inside be.enter.
func (c *NCCLComm) blocking(call, what string, queue func() int32) error {
	if err := c.drain(); err != nil {
		return err
	}
	if err := c.api.check(call, queue()); err != nil {
		return err
	}
	return c.wait(what)
}

// AllReduceHost implements dist.Communicator: the float64s go through a
// device buffer (NCCL reduces device memory), bit for bit.
func (c *NCCLComm) AllReduceHost(x []float64) error {
	if len(x) == 0 {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.live("AllReduceHost"); err != nil {
		return err
	}
	if c.scratch == nil || c.scratch.Len() < 2*len(x) {
		if c.scratch != nil {
			c.be.Free(c.scratch)
		}
		c.scratch = c.be.Alloc(2 * len(x))
	}
	bits := unsafe.Slice((*float32)(unsafe.Pointer(&x[0])), 2*len(x))
	v := compute.V(c.scratch)
	c.be.Upload(v, bits)
	err := func() error {
		defer c.be.enter()()
		p := devicePtr(v)
		return c.blocking("ncclAllReduce", "ncclAllReduce (host values)", func() int32 {
			return c.api.ncclAllReduce(p, p, uint64(len(x)), ncclFloat64, ncclSum, c.comm, c.be.stream)
		})
	}()
	if err != nil {
		return err
	}
	c.be.Download(bits, v)
	return nil
}

// Broadcast implements dist.Communicator.
func (c *NCCLComm) Broadcast(v compute.View, n int, root int) error {
	v.Check(n, "cuda: Broadcast")
	if root < 0 || root >= c.size {
		return fmt.Errorf("cuda: NCCL Broadcast from rank %d of %d", root, c.size)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.live("Broadcast"); err != nil {
		return err
	}
	defer c.be.enter()()
	p := devicePtr(v)
	return c.blocking("ncclBroadcast", "ncclBroadcast", func() int32 {
		return c.api.ncclBroadcast(p, p, uint64(n), ncclFloat32, int32(root), c.comm, c.be.stream)
	})
}

// Abort implements dist.Communicator: NCCL aborts this rank's side; the
// peers see it fail (or time out) and a launcher (--gpus, torchrun) that
// sees this process exit non-zero stops the others.
func (c *NCCLComm) Abort(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.comm != 0 {
		c.api.ncclCommAbort(c.comm)
		c.comm = 0
	}
}

// Close implements dist.Communicator.
func (c *NCCLComm) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var err error
	if c.comm != 0 {
		func() {
			defer c.be.enter()()
			err = c.drain()
			if e := c.api.check("ncclCommDestroy", c.api.ncclCommDestroy(c.comm)); err == nil {
				err = e
			}
		}()
		c.comm = 0
	}
	if c.scratch != nil {
		c.be.Free(c.scratch)
		c.scratch = nil
	}
	if c.side != 0 {
		func() {
			defer c.be.enter()()
			c.api.cuEventDestroy(c.ready)
			c.be.drv.cuStreamDestroy(c.side)
		}()
		c.side, c.ready = 0, 0
	}
	return err
}
