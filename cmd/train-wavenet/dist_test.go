package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wavecat/wavecat/dist"
)

func TestDistMode(t *testing.T) {
	torchrun := map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1"}
	child := map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", childVar: "1"}
	for _, c := range []struct {
		name           string
		gpus           int
		bucket         float64
		device         string
		env            map[string]string
		launch, ranked bool
		err            string
	}{
		{name: "alone", device: "cpu"},
		{name: "--gpus launches", gpus: 2, device: "cuda", launch: true},
		{name: "--gpus 1 launches too", gpus: 1, device: "cuda", launch: true},
		{name: "--gpus on the cpu", gpus: 2, device: "cpu", err: "--gpus 2 needs --device cuda"},
		{name: "--gpus under torchrun", gpus: 2, device: "cuda", env: torchrun, err: "started by torchrun as rank 1 of 2: leave --gpus out"},
		{name: "a --gpus child is a rank", gpus: 2, device: "cuda", env: child, ranked: true},
		{name: "torchrun rank", device: "cuda", env: torchrun, ranked: true},
		{name: "torchrun rank on the cpu", device: "cpu", env: torchrun, err: "data-parallel training needs --device cuda"},
		{name: "bad launcher environment", device: "cuda", env: map[string]string{"RANK": "x", "WORLD_SIZE": "2"}, err: `RANK="x"`},
		{name: "negative", gpus: -1, device: "cuda", err: "--gpus -1 must not be negative"},
		{name: "negative bucket", device: "cuda", bucket: -1, err: "--grad-bucket-mib -1 must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := defaultTrainOpts()
			o.gpus, o.device = c.gpus, c.device
			if c.bucket != 0 {
				o.bucketMiB = c.bucket
			}
			launch, env, ranked, err := distMode(&o, func(k string) string { return c.env[k] })
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || launch != c.launch || ranked != c.ranked {
				t.Fatalf("launch %v ranked %v err %v (env %+v)", launch, ranked, err, env)
			}
		})
	}
}

func TestGPUOrdinal(t *testing.T) {
	env := dist.Env{LocalRank: 3}
	for vis, want := range map[string]int{"": 3, "0,1,2,3": 3, "5": 0} {
		if got := gpuOrdinal(env, func(k string) string {
			if k == "CUDA_VISIBLE_DEVICES" {
				return vis
			}
			return ""
		}); got != want {
			t.Errorf("CUDA_VISIBLE_DEVICES=%q: GPU %d, want %d", vis, got, want)
		}
	}
}

func TestRankEnv(t *testing.T) {
	got := rankEnv([]string{"PATH=/bin", "RANK=9", "MASTER_PORT=1", "HOME=/h", dist.RendezvousPortVar + "=7", "TORCHELASTIC_USE_AGENT_STORE=True"}, 1, 4, 29999)
	want := []string{"PATH=/bin", "HOME=/h", "RANK=1", "WORLD_SIZE=4", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=4", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29999", childVar + "=1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	// What a rank started this way reads back.
	m := map[string]string{}
	for _, kv := range got {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	e, ok, err := dist.FromEnv(func(k string) string { return m[k] })
	if err != nil || !ok || e.Rank != 1 || e.WorldSize != 4 || e.LocalRank != 1 || e.Addr() != "127.0.0.1:29999" {
		t.Errorf("rank reads %+v %v %v", e, ok, err)
	}
}

// TestSuperviseRanksStopsOthers: when one rank fails, the launcher stops
// the others at once and names the failed rank.
func TestSuperviseRanksStopsOthers(t *testing.T) {
	start := time.Now()
	var log strings.Builder
	err := superviseRanks(context.Background(), 3, func(r int) *exec.Cmd {
		if r == 1 {
			return exec.Command("sh", "-c", "sleep 0.2; exit 3")
		}
		return exec.Command("sleep", "60")
	}, &log)
	if err == nil || !strings.Contains(err.Error(), "rank 1 of 3 failed (exit status 3)") {
		t.Fatalf("err %v", err)
	}
	if c := exitStatus(err); c != 3 {
		t.Errorf("launcher exit status %d, want the failed rank's 3", c)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v: the other ranks were not stopped", d)
	}
	if !strings.Contains(log.String(), "rank 1 exited") {
		t.Errorf("log: %s", log.String())
	}
}

func TestSuperviseRanksAllSucceed(t *testing.T) {
	if err := superviseRanks(context.Background(), 2, func(int) *exec.Cmd { return exec.Command("true") }, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
}

// TestSuperviseRanksExitStatus: the launcher exits with the first failed
// rank's status, 128+N for a rank killed by signal N (srun's convention),
// whatever the ranks it then stopped exit with.
func TestSuperviseRanksExitStatus(t *testing.T) {
	for script, want := range map[string]int{"exit 7": 7, "kill -KILL $$": 128 + 9, "kill -SEGV $$": 128 + 11} {
		err := superviseRanks(context.Background(), 2, func(r int) *exec.Cmd {
			if r == 1 {
				return exec.Command("sh", "-c", "sleep 0.1; "+script)
			}
			return exec.Command("sh", "-c", "trap 'exit 5' TERM; sleep 60 & wait")
		}, &strings.Builder{})
		if c := exitStatus(err); c != want {
			t.Errorf("rank 1 ran %q: launcher exit status %d (%v), want %d", script, c, err, want)
		}
	}
	// Rank 0 exits first, having heard of rank 2's failure (status 75);
	// rank 2, which failed on its own, is blamed, not rank 1, which the
	// launcher's SIGTERM killed.
	var log strings.Builder
	err := superviseRanks(context.Background(), 3, func(r int) *exec.Cmd {
		return exec.Command("sh", "-c", [...]string{"sleep 0.1; exit 75", "exec sleep 60", "trap '' TERM; sleep 0.4; exit 4"}[r])
	}, &log)
	if c := exitStatus(err); c != 4 || !strings.Contains(err.Error(), "rank 2 of 3 failed (exit status 4)") {
		t.Errorf("a rank that heard of another's failure exited first: status %d, %v\n%s", c, err, log.String())
	}
	for err, want := range map[error]int{nil: 0, errors.New("bad flag"): 1,
		fmt.Errorf("train: rank 1: reducing the gradients: %w", &dist.RankError{Rank: 2, Msg: "disk error"}): peerFailedStatus} {
		if c := exitStatus(err); c != want {
			t.Errorf("exitStatus(%v) = %d, want %d", err, c, want)
		}
	}
}

// TestSuperviseRanksIdlesAfterCancel: once ctx is done and the ranks have
// been asked to stop, the launcher waits for them without spinning. Rank 0
// ignores SIGTERM for a second; the launcher's CPU time over that second
// (not the wall clock) must stay small.
func TestSuperviseRanksIdlesAfterCancel(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close() // after superviseRanks, whose Start reads it
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- superviseRanks(ctx, 1, func(int) *exec.Cmd {
			c := exec.Command("sh", "-c", `trap "" TERM; echo ready; sleep 1`)
			c.Stdout = w
			return c
		}, &strings.Builder{})
	}()
	if _, err := bufio.NewReader(r).ReadString('\n'); err != nil { // the trap is set
		t.Fatal(err)
	}
	before := cpuTime(t)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if used := cpuTime(t) - before; used > 300*time.Millisecond {
		t.Errorf("the launcher used %v of CPU waiting one second for a rank to stop", used)
	}
}

// cpuTime is this process's user and system CPU time.
func cpuTime(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestTrainCommandRefusesCPUDataParallel: the command line says clearly
// that data parallelism needs CUDA, before doing anything.
func TestTrainCommandRefusesCPUDataParallel(t *testing.T) {
	dir := t.TempDir()
	_, _, err := runT(t, "--data", dir, "--out", dir+"/run", "--preset", "tiny", "--gpus", "2")
	if err == nil || !strings.Contains(err.Error(), "--gpus 2 needs --device cuda") {
		t.Fatalf("--gpus on the cpu: %v", err)
	}
	t.Setenv("RANK", "0")
	t.Setenv("WORLD_SIZE", "2")
	t.Setenv("LOCAL_RANK", "0")
	t.Setenv("MASTER_ADDR", "127.0.0.1")
	_, _, err = runT(t, "--data", dir, "--out", dir+"/run", "--preset", "tiny")
	if err == nil || !strings.Contains(err.Error(), "started by torchrun as rank 0 of 2, but --device is cpu") {
		t.Fatalf("torchrun rank on the cpu: %v", err)
	}
}

// fakeCUDASource is a stand-in libcuda.so.1: every symbol the loader
// requires, cuInit succeeding, $WC_FAKE_GPUS devices counted, and every
// other call failing with CUDA_ERROR_UNKNOWN, so a rank's cuda.New fails
// after the launcher's device count passed.
const fakeCUDASource = `
#include <stdlib.h>
typedef int CUresult;
CUresult cuInit(unsigned flags) { return 0; }
CUresult cuDeviceGetCount(int *n) { const char *v = getenv("WC_FAKE_GPUS"); *n = v ? atoi(v) : 0; return 0; }
CUresult cuGetErrorName(CUresult r, const char **s) { *s = "CUDA_ERROR_UNKNOWN"; return 0; }
#define FAIL(name) CUresult name() { return 999; }
FAIL(cuDriverGetVersion) FAIL(cuDeviceGet) FAIL(cuDeviceGetName) FAIL(cuDeviceGetAttribute)
FAIL(cuDeviceTotalMem_v2) FAIL(cuDevicePrimaryCtxRetain) FAIL(cuDevicePrimaryCtxRelease_v2)
FAIL(cuCtxSetCurrent) FAIL(cuStreamCreate) FAIL(cuStreamDestroy_v2) FAIL(cuStreamSynchronize)
FAIL(cuMemAlloc_v2) FAIL(cuMemFree_v2) FAIL(cuMemHostAlloc) FAIL(cuMemFreeHost)
FAIL(cuMemcpyHtoDAsync_v2) FAIL(cuMemcpyDtoHAsync_v2) FAIL(cuMemcpyDtoDAsync_v2)
FAIL(cuMemsetD32Async) FAIL(cuModuleLoadData) FAIL(cuModuleUnload) FAIL(cuModuleGetFunction)
FAIL(cuLaunchKernel)
`

// TestGPUsLauncher runs the real binary's --gpus 2 path against a stand-in
// CUDA driver (built with cc; $WAVECAT_CUDA_LIBS puts it first, even on a
// GPU machine). With too few GPUs the launcher refuses before starting any
// rank. With two, it re-executes itself as two ranks with torchrun's
// variables; each rank opens the GPU of its own number, its CUDA error
// reaches the terminal naming the rank, the launcher names the failed rank
// and exits non-zero without hanging, and no checkpoint is written.
func TestGPUsLauncher(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the subprocess launcher test")
	}
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) to build the stand-in libcuda.so.1")
	}
	lib := t.TempDir()
	src := filepath.Join(lib, "fakecuda.c")
	if err := os.WriteFile(src, []byte(fakeCUDASource), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cc, "-shared", "-fPIC", "-O1", "-o", filepath.Join(lib, "libcuda.so.1"), src).CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in driver: %v\n%s", err, out)
	}
	dump := dumpForTraining(t)
	launch := func(t *testing.T, gpus string) string {
		out := filepath.Join(t.TempDir(), "run")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "WAVECAT_CUDA_LIBS="+lib, "WC_FAKE_GPUS="+gpus, "TRAIN_WAVENET_MAIN=1", "TRAIN_WAVENET_ARGS="+
			strings.Join(small(dump, out, "--device", "cuda", "--gpus", "2", "--steps", "2", "--dist-timeout", "20s"), " "))
		b, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("the launcher hung:\n%s", b)
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
			t.Fatalf("want a non-zero exit, got %v:\n%s", err, b)
		}
		if steps, _ := filepath.Glob(filepath.Join(out, "step-*")); len(steps) > 0 {
			t.Errorf("checkpoints written by a failed run: %v", steps)
		}
		return string(b)
	}

	t.Run("too few GPUs", func(t *testing.T) {
		s := launch(t, "1")
		if !strings.Contains(s, "--gpus 2: this process sees 1 CUDA GPU(s)") || !strings.Contains(s, "use --gpus 1 or fewer") {
			t.Errorf("output lacks the refusal:\n%s", s)
		}
		if strings.Contains(s, "starting 2 ranks") {
			t.Errorf("ranks started:\n%s", s)
		}
	})

	t.Run("ranks fail", func(t *testing.T) {
		s := launch(t, "2")
		for _, want := range []*regexp.Regexp{
			regexp.MustCompile(`starting 2 ranks \(one per GPU, rendezvous at 127\.0\.0\.1:\d+\)`),
			regexp.MustCompile(`rank [01] of 2 failed \(exit status \d+\): the other ranks were stopped`),
		} {
			if !want.MatchString(s) {
				t.Errorf("output lacks %q:\n%s", want, s)
			}
		}
		// Each rank that reported opened the GPU of its own number, and
		// its error is the driver's, passed on.
		opened := regexp.MustCompile(`rank ([01]): --device cuda \(GPU ([01])\): (.*)`).FindAllStringSubmatch(s, -1)
		if len(opened) == 0 {
			t.Errorf("no rank reported its CUDA error:\n%s", s)
		}
		for _, m := range opened {
			if m[1] != m[2] {
				t.Errorf("rank %s opened GPU %s", m[1], m[2])
			}
		}
	})
}

// closeRecorder is a communicator that records Abort and Close.
type closeRecorder struct {
	dist.Communicator
	aborted error
	closed  bool
}

func (c *closeRecorder) Abort(cause error) { c.aborted = cause }
func (c *closeRecorder) Close() error      { c.closed = true; return nil }

// TestEndRank: a rank that ends well closes its communicator (its
// goodbye); one that panics aborts it instead, so the other ranks hear
// of the failure, and the panic goes on.
func TestEndRank(t *testing.T) {
	ok := &closeRecorder{}
	endRank(ok, nil, nil)
	if !ok.closed || ok.aborted != nil {
		t.Errorf("clean end: closed %v, aborted %v", ok.closed, ok.aborted)
	}
	bad := &closeRecorder{}
	func() {
		defer func() {
			if p := recover(); p != "index out of range" {
				t.Errorf("the panic after endRank: %v", p)
			}
		}()
		endRank(bad, nil, "index out of range")
	}()
	if bad.closed || bad.aborted == nil || bad.aborted.Error() != "panic: index out of range" {
		t.Errorf("after a panic: closed %v, aborted %v", bad.closed, bad.aborted)
	}
}
