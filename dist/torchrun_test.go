package dist

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// probeVar makes TestTorchrunHelperProcess act as a rank started by torchrun.
const probeVar = "WC_TORCHRUN_PROBE"

// python is the interpreter with torch (Debian's python3-torch).
const python = "/usr/bin/python3"

// TestTorchrun runs two ranks under the real torchrun (static rendezvous,
// --master_port): its agent serves its own store on MASTER_PORT, so the
// ranks must meet elsewhere.
func TestTorchrun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts torchrun")
	}
	if out, err := exec.Command(python, "-c", "import torch.distributed.run").CombinedOutput(); err != nil {
		t.Skipf("torch is not installed (%s -c 'import torch.distributed.run': %v %s): apt-get install python3-torch to run this test",
			python, err, strings.TrimSpace(lastLine(string(out))))
	}
	port := freePortPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "-m", "torch.distributed.run",
		"--nproc_per_node=2", fmt.Sprintf("--master_port=%d", port), "--monitor_interval=0.2",
		// The default (and "3") trip torch 1.13 on Python 3.11: its Std
		// flag enum no longer lists 0 and 3. Lines come back prefixed.
		"--redirects=1", "--tee=1",
		"--no_python", os.Args[0], "-test.run=^TestTorchrunHelperProcess$", "-test.count=1", "-test.v")
	// SIGTERM lets torchrun stop its workers; SIGKILL would orphan them.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(cleanEnv(os.Environ()), probeVar+"=1", "OMP_NUM_THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil || ctx.Err() != nil {
		t.Fatalf("torchrun --master_port=%d: %v (context: %v)\n%s", port, err, ctx.Err(), out)
	}
	for r := range 2 {
		if want := fmt.Sprintf("rank %d got id-from-rank-0", r); !strings.Contains(string(out), want) {
			t.Errorf("no %q in torchrun's output:\n%s", want, out)
		}
	}
}

// TestTorchrunHelperProcess is one rank of TestTorchrun; run directly it
// does nothing.
func TestTorchrunHelperProcess(t *testing.T) {
	if os.Getenv(probeVar) == "" {
		return // a rank of TestTorchrun only
	}
	env, ok, err := FromEnv(os.Getenv)
	if err != nil || !ok {
		t.Fatalf("FromEnv: ok=%v %v", ok, err)
	}
	var id []byte
	if env.Rank == 0 {
		id = []byte("id-from-rank-0")
	}
	got, err := Meet(context.Background(), env.Addr(), Rendezvous{Rank: env.Rank, WorldSize: env.WorldSize, Fingerprint: "t", ID: id, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("rank %d (MASTER_PORT=%s, meeting at %s): %v", env.Rank, os.Getenv("MASTER_PORT"), env.Addr(), err)
	}
	fmt.Printf("rank %d got %s\n", env.Rank, got)
}

// freePortPair is a port p with p and p+1 free now: torchrun's agent takes
// p, the ranks meet at p+1.
func freePortPair(t *testing.T) int {
	for range 20 {
		a, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		p := a.Addr().(*net.TCPAddr).Port
		b, err := net.Listen("tcp", fmt.Sprintf(":%d", p+1))
		a.Close()
		if err == nil {
			b.Close()
			return p
		}
	}
	t.Fatal("no two adjacent free TCP ports")
	return 0
}

// cleanEnv drops the launcher variables this process may have inherited.
func cleanEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == "RANK" || k == "WORLD_SIZE" || k == "LOCAL_RANK" || k == "LOCAL_WORLD_SIZE" || k == "MASTER_ADDR" ||
			k == "MASTER_PORT" || k == "WAVECAT_RENDEZVOUS_PORT" || k == probeVar || strings.HasPrefix(k, "TORCHELASTIC_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
