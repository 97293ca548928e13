package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/dist"
	"github.com/wavecat/wavecat/ljspeech"
)

// runRanks runs cfgs[r] as rank r of an in-process group, each on its own
// CPU backend, and returns every rank's result, error and final state (what
// the rank would checkpoint; only rank 0 writes it).
func runRanks(t *testing.T, cfgs []RunConfig) ([]*Result, []error, []*Checkpoint) {
	t.Helper()
	return runRanksWith(t, cfgs, nil)
}

// runRanksWith is runRanks with each rank's communicator wrapped by wrap
// (when not nil).
func runRanksWith(t *testing.T, cfgs []RunConfig, wrap func(dist.Communicator) dist.Communicator) ([]*Result, []error, []*Checkpoint) {
	t.Helper()
	n := len(cfgs)
	bes := make([]compute.Backend, n)
	for r := range cfgs {
		bes[r] = cfgs[r].Backend
	}
	comms, err := dist.NewLocal(bes, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	res, errs, cks := make([]*Result, n), make([]error, n), make([]*Checkpoint, n)
	var wg sync.WaitGroup
	for r := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := cfgs[r]
			cfg.Comm = comms[r]
			if wrap != nil {
				cfg.Comm = wrap(comms[r])
			}
			// Run, keeping the trainer to read its final state.
			tr, err := newTrainer(cfg)
			if err != nil {
				comms[r].Abort(err)
				errs[r] = err
				return
			}
			defer tr.free()
			if res[r], errs[r] = tr.run(context.Background()); errs[r] != nil {
				comms[r].Abort(errs[r])
				return
			}
			cks[r], errs[r] = tr.checkpoint()
		}()
	}
	wg.Wait()
	return res, errs, cks
}

// rankConfigs is n copies of base at per-rank batch b, each with its own
// backend; they share the run directory (rank 0 writes it).
func rankConfigs(t *testing.T, base RunConfig, n, b int) []RunConfig {
	cfgs := make([]RunConfig, n)
	for r := range cfgs {
		c := base
		c.Backend = tinyRun(t, base.Head, base.Steps).Backend
		c.BatchSize = b
		cfgs[r] = c
	}
	return cfgs
}

// maxDiff is the largest |a-b| over two checkpoints' tensors of one kind.
func maxDiff(t *testing.T, a, b []Tensor) float64 {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%d tensors vs %d", len(a), len(b))
	}
	var d float64
	for i := range a {
		x, y := a[i].Data, b[i].Data
		if a[i].Name != b[i].Name || len(x) != len(y) {
			t.Fatalf("tensor %d: %s[%d] vs %s[%d]", i, a[i].Name, len(x), b[i].Name, len(y))
		}
		for j := range x {
			d = max(d, math.Abs(float64(x[j])-float64(y[j])))
		}
	}
	return d
}

// TestDataParallelMatchesOneProcess: 2 ranks at batch 2 train what one
// process at batch 4 does (same crops with the same input noise, mean
// gradient over the 4), up to
// float32 rounding of the split gradient sums; every rank ends with the
// same state bit for bit; rank 0's checkpoint is that state; only rank 0
// wrote metrics, and they count the global batch.
func TestDataParallelMatchesOneProcess(t *testing.T) {
	const K = 5
	one := tinyRun(t, "mulaw --bins 64", K)
	one.BatchSize, one.EvalInterval, one.LogInterval, one.EMADecay = 4, 0, 1, 0.9
	one.InputNoise = 0.05
	one.CheckpointInterval, one.Keep = 1, 0 // step 1 too, and rank 0 saving every step
	if _, err := Run(context.Background(), one); err != nil {
		t.Fatal(err)
	}
	want := loadState(t, StepDir(one.Out, K))

	base := one
	base.Out = filepath.Join(t.TempDir(), "dp")
	res, errs, cks := runRanks(t, rankConfigs(t, base, 2, 2))
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	sameState(t, "rank 1 vs rank 0", cks[0], cks[1])
	got := loadState(t, StepDir(base.Out, K))
	sameState(t, "rank 0's checkpoint vs its live state", cks[0], got)
	if res[1].Checkpoint != StepDir(base.Out, K) || res[1].Step != K {
		t.Errorf("rank 1 result %+v", res[1])
	}
	// Adam moves each weight by about lr = 1e-3 per step; rounding of
	// the gradient sums changes the weights by orders of magnitude less.
	for _, c := range []struct {
		what string
		a, b []Tensor
		tol  float64
	}{{"weights", want.Weights, got.Weights, 1e-5}, {"EMA", want.EMA, got.EMA, 1e-5}, {"Adam moments", want.Optimizer, got.Optimizer, 1e-5}} {
		d := maxDiff(t, c.a, c.b)
		t.Logf("%s: max |1 process x 4 - 2 ranks x 2| = %.3g", c.what, d)
		if !(d <= c.tol) {
			t.Errorf("%s differ by %.3g, want <= %.0g", c.what, d, c.tol)
		}
	}
	if d := maxDiff(t, want.Weights, loadState(t, StepDir(one.Out, 1)).Weights); d < 1e-3 {
		t.Fatalf("training moved the weights by only %.3g: the comparison above says nothing", d)
	}
	rs, err := ReadRunState(got.Config)
	if err != nil || rs.BatchSize != 2 || rs.WorldSize != 2 || got.Config.Data.Index != int64(K*4)%26 {
		t.Errorf("checkpoint run state %+v (%v), data position %+v", rs, err, got.Config.Data)
	}
	trs, _, err := ReadMetrics(filepath.Join(base.Out, MetricsFile))
	wtrs, _, _ := ReadMetrics(filepath.Join(one.Out, MetricsFile))
	if err != nil || len(trs) != K {
		t.Fatalf("metrics: %d records, %v", len(trs), err)
	}
	for i := range trs {
		if d := math.Abs(trs[i].Loss - wtrs[i].Loss); d > 1e-5*math.Abs(wtrs[i].Loss) {
			t.Errorf("step %d: loss %v, one process %v", i+1, trs[i].Loss, wtrs[i].Loss)
		}
		if r := trs[i].SamplesPerSec / trs[i].StepsPerSec; math.Abs(r-4*1024) > 1e-6*r {
			t.Errorf("step %d: samples per step %v, want the global batch 4 x 1024", i+1, r)
		}
	}
}

// TestDataParallelResumeIsExact: 2 ranks stopped at K and resumed to N end
// bit-identical to 2 ranks run straight to N; the same checkpoint resumed
// by one process keeps the global batch (batch 4).
func TestDataParallelResumeIsExact(t *testing.T) {
	const K, N = 2, 4
	base := tinyRun(t, "gaussian", N)
	base.EvalInterval, base.LogInterval, base.EMADecay = 0, 1, 0.9

	straight := base
	straight.Out = filepath.Join(t.TempDir(), "straight")
	if _, errs, _ := runRanks(t, rankConfigs(t, straight, 2, 2)); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	a := base
	a.Out, a.Steps = filepath.Join(t.TempDir(), "resumed"), K
	if _, errs, _ := runRanks(t, rankConfigs(t, a, 2, 2)); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	a.Steps, a.Resume, a.Head = N, true, ""
	res, errs, cks := runRanks(t, rankConfigs(t, a, 2, 0))
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if res[0].StartStep != K || res[1].StartStep != K || res[1].Config.BatchSize != 2 {
		t.Errorf("resumed ranks: %+v / %+v", res[0], res[1])
	}
	sameState(t, "resumed rank 1 vs rank 0", cks[0], cks[1])
	sameState(t, "2 ranks stopped and resumed vs straight", loadState(t, StepDir(straight.Out, N)), loadState(t, StepDir(a.Out, N)))

	// One process continues the 2 x 2 run at batch 4.
	b := base
	b.Out, b.Resume, b.Head, b.Steps = filepath.Join(t.TempDir(), "single"), true, "", K+1
	c := base
	c.Out, c.Steps = b.Out, K
	if _, errs, _ := runRanks(t, rankConfigs(t, c, 2, 2)); errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	r1, err := Run(context.Background(), b)
	if err != nil || r1.Config.BatchSize != 4 || r1.Step != K+1 {
		t.Fatalf("single-process resume of a 2-rank run: %+v, %v", r1, err)
	}
	// Three ranks cannot split a global batch of 4.
	_, errs, _ = runRanks(t, rankConfigs(t, b, 3, 0))
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "does not split over 3 ranks") && !strings.Contains(err.Error(), "aborted") {
			t.Errorf("rank %d of 3: %v", r, err)
		}
	}
}

// TestDataParallelRankFailureStopsAll: a rank that fails (here it cannot
// read the data) aborts the group: the others stop with an error naming it
// instead of waiting for it.
func TestDataParallelRankFailureStopsAll(t *testing.T) {
	base := tinyRun(t, "mulaw --bins 64", 3)
	base.EvalInterval = 0
	cfgs := rankConfigs(t, base, 2, 2)
	cfgs[1].Data = filepath.Join(t.TempDir(), "missing")
	start := time.Now()
	_, errs, _ := runRanks(t, cfgs)
	if errs[1] == nil || errs[0] == nil || !strings.Contains(errs[0].Error(), "rank 1 aborted") {
		t.Fatalf("rank 0: %v; rank 1: %v", errs[0], errs[1])
	}
	if time.Since(start) > 30*time.Second {
		t.Errorf("took %v to stop", time.Since(start))
	}
}

// TestDataParallelRanksMustAgree: ranks started with other settings stop
// at the start instead of training different models together.
func TestDataParallelRanksMustAgree(t *testing.T) {
	base := tinyRun(t, "mulaw --bins 64", 2)
	base.EvalInterval = 0
	cfgs := rankConfigs(t, base, 2, 2)
	cfgs[1].Seed = 7
	_, errs, _ := runRanks(t, cfgs)
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "different run settings") {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// TestDataParallelRanksMustShareData: a rank whose dump at the same path
// holds other data (here one training utterance moved to dev, as a
// node-local dump made from another corpus would differ) stops the job at
// the start instead of training on batches the others do not see.
func TestDataParallelRanksMustShareData(t *testing.T) {
	other := filepath.Join(t.TempDir(), "dump")
	if err := os.CopyFS(other, os.DirFS(miniDump(t))); err != nil {
		t.Fatal(err)
	}
	d, err := ljspeech.OpenDump(other)
	if err != nil {
		t.Fatal(err)
	}
	sp := d.Split
	sp.Dev = append(sp.Dev, sp.Train[0])
	sp.Train = sp.Train[1:]
	b, _ := json.Marshal(sp)
	if err := os.WriteFile(filepath.Join(other, ljspeech.SplitFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	base := tinyRun(t, "mulaw --bins 64", 2)
	base.EvalInterval = 0
	cfgs := rankConfigs(t, base, 2, 2)
	cfgs[1].Data = other
	_, errs, _ := runRanks(t, cfgs)
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "different run settings, models or data") {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// TestDataParallelInterruptStopsAllAtOneStep: an interrupt reaching one
// rank only (signals arrive at different steps) stops every rank after the
// same step, and rank 0 saves that step.
func TestDataParallelInterruptStopsAllAtOneStep(t *testing.T) {
	base := tinyRun(t, "mulaw --bins 64", 10)
	base.EvalInterval = 0
	cfgs := rankConfigs(t, base, 2, 2)
	comms, err := dist.NewLocal([]compute.Backend{cfgs[0].Backend, cfgs[1].Backend}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	ctx0, cancel := context.WithCancel(context.Background())
	defer cancel()
	cfgs[0].OnStep = func(s int64) {
		if s == 2 {
			cancel()
		}
	}
	res := make([]*Result, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r, ctx := range []context.Context{ctx0, context.Background()} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := cfgs[r]
			cfg.Comm = comms[r]
			res[r], errs[r] = Run(ctx, cfg)
		}()
	}
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if !res[0].Interrupted || !res[1].Interrupted || res[0].Step != res[1].Step || res[0].Step >= 10 {
		t.Fatalf("rank 0 stopped at %d (interrupted %v), rank 1 at %d (interrupted %v)", res[0].Step, res[0].Interrupted, res[1].Step, res[1].Interrupted)
	}
	if latest, err := Latest(base.Out); err != nil || latest != StepDir(base.Out, res[0].Step) {
		t.Errorf("latest %q, %v; want step %d", latest, err, res[0].Step)
	}
}

// countingComm counts the reductions queued during backward passes.
type countingComm struct {
	dist.Communicator
	starts *atomic.Int64
}

func (c countingComm) StartAllReduceSum(v compute.View, n int) error {
	c.starts.Add(1)
	return c.Communicator.StartAllReduceSum(v, n)
}

// TestDataParallelBucketsDoNotChangeTheResult: 2 ranks reducing their
// gradients in many small buckets during the backward pass end bit for
// bit where 2 ranks with one bucket do (each element is the same sum over
// the ranks), and the buckets really are queued one by one, every step.
func TestDataParallelBucketsDoNotChangeTheResult(t *testing.T) {
	const K = 3
	base := tinyRun(t, "gaussian", K)
	base.EvalInterval, base.EMADecay = 0, 0.9
	var counts [2]atomic.Int64
	var cks [2]*Checkpoint
	var nparams int
	for i, mib := range []float64{64, 0.002} {
		c := base
		c.Out, c.GradBucketMiB = filepath.Join(t.TempDir(), "dp"), mib
		_, errs, ck := runRanksWith(t, rankConfigs(t, c, 2, 2), func(d dist.Communicator) dist.Communicator {
			return countingComm{d, &counts[i]}
		})
		if errs[0] != nil || errs[1] != nil {
			t.Fatal(errs)
		}
		sameState(t, "rank 1 vs rank 0", ck[0], ck[1])
		cks[i] = ck[0]
		nparams = 0
		for _, w := range ck[0].Weights {
			nparams += len(w.Data)
		}
	}
	sameState(t, "buckets of 2 KiB vs one bucket", cks[0], cks[1])
	per := (nparams + 523) / 524 // 0.002 MiB = 524 floats
	if got := counts[0].Load(); got != 2*K {
		t.Errorf("one bucket: %d reductions queued, want one per step and rank (%d)", got, 2*K)
	}
	if got := counts[1].Load(); got != int64(2*K*per) {
		t.Errorf("small buckets: %d reductions queued, want %d per step and rank (%d parameters)", got, per, nparams)
	}
}

// recordComm records the reductions gradBuckets queues.
type recordComm struct {
	dist.Communicator
	log []string
}

func (c *recordComm) StartAllReduceSum(v compute.View, n int) error {
	c.log = append(c.log, fmt.Sprintf("sum %d+%d", v.Off, n))
	return nil
}

func (c *recordComm) Wait() error {
	c.log = append(c.log, "wait")
	return nil
}

// TestGradBucketsQueueWhenComplete: a bucket is queued as soon as every
// gradient in it is final, whatever the ranges' order and alignment, and
// finish queues what the backward pass did not report, then waits.
func TestGradBucketsQueueWhenComplete(t *testing.T) {
	rc := &recordComm{}
	b := newGradBuckets(rc, compute.View{}, 10, 16.0/(1<<20)) // 4 floats a bucket: [0,4) [4,8) [8,10)
	for step := 0; step < 2; step++ {
		rc.log = nil
		b.begin()
		b.ready(7, 3) // completes [8,10)
		if want := "sum 8+2"; strings.Join(rc.log, ",") != want {
			t.Fatalf("after [7,10): %v, want %s", rc.log, want)
		}
		b.ready(3, 4) // completes [4,8)
		b.ready(1, 2)
		if err := b.finish(); err != nil { // [0,1) never reported
			t.Fatal(err)
		}
		if got, want := strings.Join(rc.log, ","), "sum 8+2,sum 4+4,sum 0+4,wait"; got != want {
			t.Errorf("step %d: %s, want %s", step, got, want)
		}
	}
	b.begin()
	b.ready(0, 4)
	defer func() {
		if recover() == nil {
			t.Error("a range reported twice did not panic")
		}
	}()
	b.ready(2, 1)
}
