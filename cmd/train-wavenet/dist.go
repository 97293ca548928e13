package main

// Data-parallel training from the command line: one process per GPU.
// Started by a cluster launcher (torchrun, srun, mpirun), a process reads
// its rank from the environment (dist.FromEnv), meets rank 0 at
// MASTER_ADDR:MASTER_PORT to receive NCCL's unique id, and trains its share
// of every batch on GPU LOCAL_RANK. --gpus N is the single-node shortcut:
// this process starts N copies of itself with torchrun's variables set and
// watches them; when one fails the others are stopped and the failure names
// the rank. CPU data parallelism exists only in tests (dist.Local): on a CPU
// one process with all cores is faster than N sharing them.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cuda"
	"github.com/wavecat/wavecat/dist"
	"github.com/wavecat/wavecat/train"
)

var _ dist.Communicator = (*cuda.NCCLComm)(nil)

// childVar marks the processes --gpus starts, so that they train instead
// of launching again.
const childVar = "WAVECAT_GPUS_CHILD"

func addDistFlags(f *pflag.FlagSet, o *trainOpts) {
	f.IntVar(&o.gpus, "gpus", 0, "cuda: train data-parallel on this many GPUs of this machine, one process each (--batch-size is per GPU); under torchrun, srun or mpirun leave it out: the launcher's environment is read")
	f.Float64Var(&o.bucketMiB, "grad-bucket-mib", train.DefaultGradBucketMiB, "data-parallel: the gradients are summed over the GPUs in buckets of this size, each as soon as the backward pass has finished it (PyTorch DDP's bucket_cap_mb)")
	f.DurationVar(&o.distTimeout, "dist-timeout", dist.DefaultTimeout, "data-parallel: how long a rank waits for the others at the rendezvous and at every gradient exchange before the job fails (a rank that fails or exits is named on the others at once; this catches one that hangs, so keep it above rank 0's longest work alone: validation, checkpoints)")
}

// distMode says how this process takes part: launcher (--gpus, start the
// ranks), rank (started by a launcher), or alone.
func distMode(o *trainOpts, getenv func(string) string) (launch bool, env dist.Env, ranked bool, err error) {
	env, ranked, err = dist.FromEnv(getenv)
	if err != nil {
		return false, env, false, err
	}
	child := getenv(childVar) != ""
	switch {
	case o.gpus < 0:
		return false, env, false, fmt.Errorf("--gpus %d must not be negative", o.gpus)
	case !(o.bucketMiB > 0):
		return false, env, false, fmt.Errorf("--grad-bucket-mib %g must be positive", o.bucketMiB)
	case o.gpus > 0 && !child && ranked:
		return false, env, false, fmt.Errorf("--gpus starts the processes itself, but this one was started by %s as rank %d of %d: leave --gpus out", env.Launcher, env.Rank, env.WorldSize)
	case o.gpus > 0 && !child:
		if o.device != "cuda" {
			return false, env, false, fmt.Errorf("--gpus %d needs --device cuda (data-parallel training runs over NCCL; on a CPU one process with all cores is faster)", o.gpus)
		}
		return true, env, false, nil
	}
	if ranked && o.device != "cuda" {
		return false, env, false, fmt.Errorf("started by %s as rank %d of %d, but --device is %s: data-parallel training needs --device cuda", env.Launcher, env.Rank, env.WorldSize, o.device)
	}
	return false, env, ranked, nil
}

// gpuOrdinal is the device a rank uses: LOCAL_RANK, or 0 when the launcher
// left this process a single visible GPU (Slurm's --gpus-per-task).
func gpuOrdinal(env dist.Env, getenv func(string) string) int {
	if v := strings.TrimSpace(getenv("CUDA_VISIBLE_DEVICES")); v != "" && !strings.Contains(v, ",") {
		return 0
	}
	return env.LocalRank
}

// joinRun opens this rank's GPU, meets the other ranks and returns the NCCL
// communicator, watched (dist.Watch) so that a rank that fails or dies is
// named on the others at once rather than at --dist-timeout.
func joinRun(ctx context.Context, o *trainOpts, env dist.Env, log io.Writer) (compute.Backend, dist.Communicator, error) {
	dev := gpuOrdinal(env, os.Getenv)
	be, err := cuda.New(cuda.Options{Device: dev, TF32: o.tf32})
	if err != nil {
		return nil, nil, fmt.Errorf("rank %d: --device cuda (GPU %d): %w", env.Rank, dev, err)
	}
	var id []byte
	if env.Rank == 0 {
		if id, err = cuda.NCCLUniqueID(); err != nil {
			be.Close()
			return nil, nil, fmt.Errorf("rank 0: %w", err)
		}
	} else if _, err := cuda.NCCLVersion(); err != nil {
		be.Close() // fail before the rendezvous, with the install advice
		return nil, nil, fmt.Errorf("rank %d: %w", env.Rank, err)
	}
	fp := fmt.Sprintf("data=%s out=%s steps=%d resume=%v", o.data, o.out, o.steps, o.resume)
	logf := func(format string, a ...any) { fmt.Fprintf(log, "train-wavenet: "+format+"\n", a...) }
	id, watch, err := dist.MeetWatch(ctx, env.Addr(), dist.Rendezvous{Rank: env.Rank, WorldSize: env.WorldSize, Fingerprint: fp, ID: id, Timeout: o.distTimeout, Logf: logf})
	if err != nil {
		be.Close()
		return nil, nil, err
	}
	comm, err := cuda.NewNCCLComm(be, id, env.Rank, env.WorldSize, o.distTimeout)
	if err != nil {
		watch.Fail(err)
		watch.Close()
		be.Close()
		return nil, nil, err
	}
	comm.WatchPeers(watch)
	return be, dist.Watched(comm, watch), nil
}

// freePort asks the kernel for a TCP port nobody uses now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// rankEnv is the environment of rank r of n started by --gpus: torchrun's
// variables on this machine.
func rankEnv(base []string, r, n, port int) []string {
	env := make([]string, 0, len(base)+8)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", childVar,
			// they would move the rendezvous off the free port picked
			dist.RendezvousPortVar, "TORCHELASTIC_USE_AGENT_STORE":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n), "LOCAL_RANK="+strconv.Itoa(r),
		"LOCAL_WORLD_SIZE="+strconv.Itoa(n), "MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), childVar+"=1")
}

// launchGPUs is --gpus N: start N copies of this command as ranks 0..N-1.
func launchGPUs(ctx context.Context, n int, stdout, stderr io.Writer) error {
	// Checked here once, rather than as n copies of one error from the
	// ranks, or a rank that finds no GPU of its number while the others
	// wait for it at the rendezvous.
	have, err := cuda.DeviceCount()
	if err != nil {
		return fmt.Errorf("--gpus %d: %w", n, err)
	}
	if have < n {
		return fmt.Errorf("--gpus %d: this process sees %d CUDA GPU(s) (CUDA_VISIBLE_DEVICES=%q): use --gpus %d or fewer", n, have, os.Getenv("CUDA_VISIBLE_DEVICES"), have)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("--gpus: cannot find this program to start its ranks: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("--gpus: no free TCP port for the rendezvous: %w", err)
	}
	fmt.Fprintf(stderr, "train-wavenet: starting %d ranks (one per GPU, rendezvous at 127.0.0.1:%d)\n", n, port)
	return superviseRanks(ctx, n, func(r int) *exec.Cmd {
		c := exec.Command(exe, os.Args[1:]...)
		c.Env = rankEnv(os.Environ(), r, n, port)
		c.SysProcAttr = rankProcAttr()
		c.Stderr = stderr
		if r == 0 {
			c.Stdout = stdout // the summary; the other ranks print none
		}
		return c
	}, stderr)
}

// superviseRanks starts the n commands mk makes and waits for them. SIGINT
// and SIGTERM are passed on (each rank saves as one run would). When a rank
// fails, the others get SIGTERM and, 30 s later, SIGKILL; the error names
// the first rank that failed and carries its exit status (see exitStatus).
func superviseRanks(ctx context.Context, n int, mk func(rank int) *exec.Cmd, log io.Writer) error {
	cmds := make([]*exec.Cmd, n)
	for r := range cmds {
		cmds[r] = mk(r)
		if err := cmds[r].Start(); err != nil {
			for _, c := range cmds[:r] {
				c.Process.Kill()
				c.Wait()
			}
			return fmt.Errorf("--gpus: starting rank %d: %w", r, err)
		}
	}
	type exit struct {
		rank int
		err  error
	}
	exits := make(chan exit, n)
	for r, c := range cmds {
		go func() { exits <- exit{r, c.Wait()} }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	var once sync.Once
	// exited is kept by this loop, which alone receives the exits: reading
	// cmd.ProcessState here would race with the goroutine inside Wait.
	exited := make([]bool, n)
	stopAll := func(s os.Signal) {
		for r, c := range cmds {
			if !exited[r] {
				c.Process.Signal(s) // ErrProcessDone if it ended meanwhile
			}
		}
	}
	var first *rankError
	var kill <-chan time.Time
	done := ctx.Done() // nil once handled: a done channel stays ready
	for left := n; left > 0; {
		select {
		case e := <-exits:
			left--
			exited[e.rank] = true
			if e.err == nil {
				break
			}
			if first == nil {
				fmt.Fprintf(log, "train-wavenet: rank %d exited: %v; stopping the other ranks\n", e.rank, e.err)
				once.Do(func() {
					stopAll(syscall.SIGTERM)
					kill = time.After(30 * time.Second)
				})
			}
			// The first failure is blamed, unless that rank only stopped
			// because another failed (it heard of it first) and the one
			// that failed exits after it (not a rank our signals killed).
			st := rankStatus(e.err)
			ours := st == 128+int(syscall.SIGTERM) || st == 128+int(syscall.SIGKILL)
			if first == nil || (first.status == peerFailedStatus && st != peerFailedStatus && !ours) {
				first = &rankError{fmt.Errorf("rank %d of %d failed (%v): the other ranks were stopped", e.rank, n, e.err), st}
			}
		case s := <-sig:
			stopAll(s)
		case <-done:
			done = nil
			once.Do(func() {
				stopAll(syscall.SIGTERM)
				kill = time.After(30 * time.Second)
			})
		case <-kill:
			fmt.Fprintf(log, "train-wavenet: ranks still running 30 s after SIGTERM: killing them\n")
			stopAll(syscall.SIGKILL)
			kill = nil
		}
	}
	switch {
	case first != nil:
		return first
	case ctx.Err() != nil && !errors.Is(ctx.Err(), context.Canceled):
		return ctx.Err()
	}
	return nil
}

// rankError is a failed rank, with the status the launcher exits with.
type rankError struct {
	error
	status int
}

// rankStatus is the exit status of a rank that ended with err: its own, or
// 128+N when signal N killed it.
func rankStatus(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		if c := ee.ExitCode(); c > 0 {
			return c
		}
	}
	return 1
}

// peerFailedStatus is the exit status of a rank that stopped because
// another rank failed (dist.RankError; sysexits' EX_TEMPFAIL: this rank
// was fine), so that the --gpus launcher blames the rank that failed.
const peerFailedStatus = 75

// exitStatus is what train-wavenet exits with after err. The --gpus
// launcher exits as one run would (0 when every rank finished, or saved
// after Ctrl-C/SIGTERM), else with the first failed rank's status, 128+N
// for a rank killed by signal N: srun's convention, so that a job script
// or scheduler sees the cause (torchrun exits 1 whatever happened). The
// ranks it stopped after that failure do not count.
func exitStatus(err error) int {
	var re *rankError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &re):
		return re.status
	case errors.As(err, new(*dist.RankError)):
		return peerFailedStatus
	}
	return 1
}
