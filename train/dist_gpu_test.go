package train

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wavecat/wavecat/compute/cuda"
)

// TestGPUDataParallelOneRank: a real NCCL communicator of one rank (its
// own rendezvous skipped: one rank needs no id exchange) drives the loop
// on the GPU and ends bit-identical to the same run without a
// communicator (a sum over one rank is the identity), with its gradients
// reduced in small buckets on NCCL's side stream during the backward pass.
// It needs a CUDA GPU
// and NCCL 2.23+, and skips without them.
func TestGPUDataParallelOneRank(t *testing.T) {
	be, err := cuda.New(cuda.Options{})
	if err != nil {
		t.Skipf("no CUDA GPU here: %s", strings.SplitN(err.Error(), "\n", 2)[0])
	}
	defer be.Close()
	id, err := cuda.NCCLUniqueID()
	if err != nil {
		t.Skipf("no NCCL here: %s", strings.SplitN(err.Error(), "\n", 2)[0])
	}
	comm, err := cuda.NewNCCLComm(be, id, 0, 1, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer comm.Close()
	const K = 4
	plain := tinyRun(t, "mulaw --bins 64", K)
	plain.Backend, plain.EvalInterval, plain.EMADecay = be, 0, 0.9
	if _, err := Run(context.Background(), plain); err != nil {
		t.Fatal(err)
	}
	ranked := plain
	ranked.Out, ranked.Comm = filepath.Join(t.TempDir(), "nccl"), comm
	ranked.GradBucketMiB = 0.01 // several reductions overlapped with each backward pass
	if _, err := Run(context.Background(), ranked); err != nil {
		t.Fatal(err)
	}
	sameState(t, "1 NCCL rank vs no communicator", loadState(t, StepDir(plain.Out, K)), loadState(t, StepDir(ranked.Out, K)))
}
