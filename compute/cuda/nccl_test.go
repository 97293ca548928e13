package cuda

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ebitengine/purego"

	"github.com/wavecat/wavecat/compute"
)

// TestNCCLMissingMessage: without NCCL, the error lists every folder tried
// and says what to install (NCCL 2.23+, the pip wheel, WAVECAT_CUDA_LIBS).
func TestNCCLMissingMessage(t *testing.T) {
	empty := t.TempDir()
	_, err := load(libNCCL, []string{empty}, false, func(string) (uintptr, error) { return 0, errors.New("not called") })
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want a *LoadError", err)
	}
	msg := err.Error()
	for _, want := range []string{"cannot load NCCL (libnccl.so.2, libnccl.so)", empty + ": none of the names present", "NCCL 2.23 or newer", "pip install nvidia-nccl-cu12", "WAVECAT_CUDA_LIBS"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

// TestNCCLOnThisMachine: NCCLVersion either finds an NCCL that binds or
// fails with the load error; never a panic. (No GPU is needed to bind.)
func TestNCCLOnThisMachine(t *testing.T) {
	t.Setenv("WAVECAT_CUDA_LIBS", t.TempDir()+":"+os.Getenv("WAVECAT_CUDA_LIBS"))
	v, err := NCCLVersion()
	if err != nil {
		msg := err.Error()
		if !strings.Contains(msg, "cannot load") {
			t.Fatalf("NCCLVersion: %v", err)
		}
		t.Logf("no NCCL here: %s", strings.SplitN(msg, "\n", 2)[0])
		return
	}
	t.Logf("NCCL %d", v)
}

// TestNCCLWheelSearched: pip's nvidia-nccl wheel folder is searched.
func TestNCCLWheelSearched(t *testing.T) {
	env := fakeEnv(map[string]string{"VIRTUAL_ENV": "/venv"}, map[string][]string{
		"/venv/lib/python3*/*-packages/nvidia/nccl/lib": {"/venv/lib/python3.12/site-packages/nvidia/nccl/lib"},
	})
	if !slices.Contains(searchDirs(env), "/venv/lib/python3.12/site-packages/nvidia/nccl/lib") {
		t.Errorf("nccl wheel folder not searched: %v", searchDirs(env))
	}
}

// TestNCCLOldLibraryRefused: a library without ncclCommInitRankScalable
// (NCCL before 2.23; here libc stands in) is refused saying what is needed.
func TestNCCLOldLibraryRefused(t *testing.T) {
	libc, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no libc.so.6: %v", err)
	}
	err = bindNCCL(&library{handle: libc, path: "libc.so.6"}, &ncclAPI{})
	if err == nil || !strings.Contains(err.Error(), "ncclCommInitRankScalable") || !strings.Contains(err.Error(), "needs NCCL 2.23 or newer") {
		t.Fatalf("got %v", err)
	}
}

// TestNCCLSignaturesRegister: purego accepts every NCCL signature (checked
// without calling), so a GPU machine does not panic on first use.
func TestNCCLSignaturesRegister(t *testing.T) {
	libc, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no libc.so.6: %v", err)
	}
	addr, _ := purego.Dlsym(libc, "abs")
	n := &ncclAPI{}
	syms := append(n.symbols(), n.driverSymbols()...)
	for _, s := range syms {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: purego rejects the Go signature: %v", s.name, r)
				}
			}()
			purego.RegisterFunc(s.fptr, addr)
		}()
	}
}

// TestNCCLOverlappedReductionsOrder runs NCCLComm's StartAllReduceSum and
// Wait against a fake driver and NCCL that log their calls: each
// reduction goes on a side stream behind an event recorded on the
// backend's stream at the call (so it follows the gradients queued
// before it and overlaps the kernels queued after), StartAllReduceSum
// never polls, Wait polls the side stream once, and a blocking collective
// drains the side stream before its own.
func TestNCCLOverlappedReductionsOrder(t *testing.T) {
	be, _ := newFakeBackend(t)
	var calls []string
	logf := func(format string, a ...any) { calls = append(calls, fmt.Sprintf(format, a...)) }
	const side, ev = 40, 50
	be.drv.cuStreamCreate = func(s *uintptr, flags uint32) cuResult {
		logf("cuStreamCreate(%d)", flags)
		*s = side
		return cuSuccess
	}
	n := &ncclAPI{}
	n.cuEventCreate = func(e *uintptr, flags uint32) cuResult {
		logf("cuEventCreate(%d)", flags)
		*e = ev
		return cuSuccess
	}
	n.cuEventRecord = func(e, s uintptr) cuResult { logf("record(%d on %d)", e, s); return cuSuccess }
	n.cuStreamWaitEvent = func(s, e uintptr, _ uint32) cuResult { logf("wait(%d for %d)", s, e); return cuSuccess }
	n.cuEventDestroy = func(uintptr) cuResult { logf("cuEventDestroy"); return cuSuccess }
	n.cuStreamQuery = func(s uintptr) cuResult { logf("query(%d)", s); return cuSuccess }
	n.ncclAllReduce = func(send, recv, count uint64, dtype, op int32, comm, stream uintptr) int32 {
		logf("allreduce(%d floats on %d)", count, stream)
		return ncclSuccess
	}
	n.ncclCommGetAsyncError = func(uintptr, *int32) int32 { return ncclSuccess }
	n.ncclCommDestroy = func(uintptr) int32 { logf("destroy"); return ncclSuccess }
	c := &NCCLComm{be: be, api: n, comm: 7, rank: 0, size: 2, timeout: time.Second}
	buf := be.Alloc(100)
	v := compute.V(buf)
	for _, off := range []int{60, 0} {
		if err := c.StartAllReduceSum(v.At(off), 40); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AllReduceSum(v, 10); err != nil {
		t.Fatal(err)
	}
	if err := c.Wait(); err != nil { // nothing left: no poll
		t.Fatal(err)
	}
	if err := c.StartAllReduceSum(v, 5); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"cuStreamCreate(1)", "cuEventCreate(2)",
		"record(50 on 2)", "wait(40 for 50)", "allreduce(40 floats on 40)",
		"record(50 on 2)", "wait(40 for 50)", "allreduce(40 floats on 40)",
		"query(40)", // AllReduceSum drains the side stream first
		"allreduce(10 floats on 2)", "query(2)",
		"record(50 on 2)", "wait(40 for 50)", "allreduce(5 floats on 40)",
		"query(40)", "destroy", "cuEventDestroy",
	}
	if !slices.Equal(calls, want) {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	be.Free(buf)
}

// peerReport is a dist.Watch stand-in: Err reports err from the nth call
// on.
type peerReport struct {
	calls, n int
	err      error
}

func (p *peerReport) Err() error {
	if p.calls++; p.calls >= p.n {
		return p.err
	}
	return nil
}

// TestNCCLWaitStopsOnPeerFailure: a collective that never completes (a
// peer stopped calling collectives) ends as soon as the watch reports the
// peer's failure, naming it, instead of at the timeout; the communicator
// is aborted and refuses further work.
func TestNCCLWaitStopsOnPeerFailure(t *testing.T) {
	be, _ := newFakeBackend(t)
	aborted := 0
	n := &ncclAPI{}
	n.cuStreamQuery = func(uintptr) cuResult { return cuErrNotReady }
	n.ncclAllReduce = func(send, recv, count uint64, dtype, op int32, comm, stream uintptr) int32 { return ncclSuccess }
	n.ncclCommGetAsyncError = func(uintptr, *int32) int32 { return ncclSuccess }
	n.ncclCommAbort = func(uintptr) int32 { aborted++; return ncclSuccess }
	c := &NCCLComm{be: be, api: n, comm: 7, rank: 0, size: 3, timeout: 5 * time.Second}
	c.WatchPeers(&peerReport{n: 5, err: errors.New("rank 2 failed: train: reading LJ001-0001.npy: disk error")})
	buf := be.Alloc(8)
	defer be.Free(buf)
	err := c.AllReduceSum(compute.V(buf), 8)
	if err == nil || !strings.Contains(err.Error(), "NCCL rank 0 of 3: ncclAllReduce stopped: rank 2 failed: train: reading LJ001-0001.npy: disk error") {
		t.Fatalf("AllReduceSum while rank 2 failed: %v", err)
	}
	if aborted != 1 {
		t.Errorf("ncclCommAbort called %d times, want 1", aborted)
	}
	if err := c.AllReduceSum(compute.V(buf), 8); err == nil || !strings.Contains(err.Error(), "aborted or closed communicator") {
		t.Errorf("AllReduceSum after the abort: %v", err)
	}
}
