package train

// Data parallelism (RunConfig.Comm): every rank runs this loop on its own
// device with its share of each global batch (ljspeech.Batcher.Shard), and
// after the backward pass the gradients are summed over the ranks and
// scaled by 1/N. Each rank's loss is the mean over its B*T samples, so the
// mean of the ranks' gradients is the gradient of the mean over the N*B*T
// samples: the same step a single process at batch N*B takes (to float32
// rounding). Everything after (norm, clipping, the non-finite stop, Adam,
// EMA) then runs on identical inputs and stays identical on every rank.
// Rank 0 alone writes the run directory (checkpoints, metrics, plot) and
// validates; the others read it only to resume.
//
// The gradients are summed in buckets, as PyTorch DDP does: the flat
// gradient buffer is cut into contiguous buckets of GradBucketMiB, and a
// bucket's reduction is queued (Communicator.StartAllReduceSum) as soon as
// the backward pass has finished every gradient in it
// (wavenet.Model.BackwardReady reports them last layers first), so NCCL
// sums the last layers while the earlier ones are still being
// differentiated. Each element is still one sum over the ranks, so the
// result does not depend on the bucket size.

import (
	"encoding/json"
	"fmt"
	"hash/fnv"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/dist"
)

func (tr *trainer) rank() int {
	if tr.cfg.Comm == nil {
		return 0
	}
	return tr.cfg.Comm.Rank()
}

func (tr *trainer) world() int {
	if tr.cfg.Comm == nil {
		return 1
	}
	return tr.cfg.Comm.Size()
}

// lead is true on the rank that writes the run directory and validates.
func (tr *trainer) lead() bool { return tr.rank() == 0 }

// checkpointWorld is the world size a checkpoint records: 0 (omitted) for
// a single process, so its checkpoints stay as they were.
func (tr *trainer) checkpointWorld() int {
	if w := tr.world(); w > 1 {
		return w
	}
	return 0
}

// PerRankBatch is the batch size of each of world ranks resuming the run
// of rs: it keeps the run's global batch (a checkpoint of W ranks at batch
// B resumed on N ranks gives each B*W/N), so the batches (and the data
// order) are the same ones.
func PerRankBatch(rs RunState, world int) (int, error) {
	w := max(rs.WorldSize, 1)
	global := rs.BatchSize * w
	if global%world != 0 {
		return 0, fmt.Errorf("the run's global batch is %d (%d rank(s) x %d): it does not split over %d ranks", global, w, rs.BatchSize, world)
	}
	return global / world, nil
}

// fingerprint identifies what every rank must agree on: the run's
// definition and length, the model's size, and the data (the dump's
// parameters and statistics and the utterances batches are drawn from: a
// node-local dump at the same path may hold another corpus).
func (tr *trainer) fingerprint() uint32 {
	c := tr.cfg
	b, _ := json.Marshal([]any{c.Model, c.Head, c.BatchSize, c.MaxTimeSteps, c.Steps, c.Schedule, c.Adam, c.EMADecay, c.ClipNorm, c.InputNoise, c.AlignExcitation, c.Seed, tr.model.NumParams(),
		tr.dump.Params, tr.dump.Stats, tr.bt.IDs()})
	h := fnv.New32a()
	h.Write(b)
	return h.Sum32() & (1<<20 - 1) // squares stay exact in float64 sums
}

// syncStart checks that every rank starts at the same step with the same
// run settings (a rank that resumed another checkpoint, or was started
// with other flags, stops the job here), then copies rank 0's weights, EMA
// and Adam moments to all, so the ranks start bit-identical.
func (tr *trainer) syncStart() error {
	c := tr.cfg.Comm
	if c == nil {
		return nil
	}
	s, f := float64(tr.step), float64(tr.fingerprint())
	x := []float64{s, s * s, f, f * f}
	if err := c.AllReduceHost(x); err != nil {
		return fmt.Errorf("train: rank %d: checking the ranks agree: %w", c.Rank(), err)
	}
	n := float64(c.Size())
	// All equal iff N*sum(v^2) == (sum v)^2 (Cauchy-Schwarz).
	if n*x[1] != x[0]*x[0] {
		return fmt.Errorf("train: rank %d: the ranks start at different steps (this one at %d, the mean is %.1f): every rank must resume the same checkpoint", c.Rank(), tr.step, x[0]/n)
	}
	if n*x[3] != x[2]*x[2] {
		return fmt.Errorf("train: rank %d: the ranks were started with different run settings, models or data: every rank must run the same command on the same dump", c.Rank())
	}
	np := tr.model.NumParams()
	m, v := tr.adam.Moments()
	for _, b := range []struct {
		what string
		v    compute.View
	}{{"weights", tr.model.Params()}, {"EMA", tr.ema.View()}, {"Adam m", m}, {"Adam v", v}} {
		if err := c.Broadcast(b.v, np, 0); err != nil {
			return fmt.Errorf("train: rank %d: receiving rank 0's %s: %w", c.Rank(), b.what, err)
		}
	}
	return nil
}

// meanLoss is the mean of the ranks' losses: the loss of the global batch.
// A non-finite loss on any rank makes it non-finite on all, so every rank
// stops at the same step.
func (tr *trainer) meanLoss(loss float64) (float64, error) {
	c := tr.cfg.Comm
	if c == nil {
		return loss, nil
	}
	x := []float64{loss}
	if err := c.AllReduceHost(x); err != nil {
		return 0, fmt.Errorf("train: rank %d: reducing the loss: %w", c.Rank(), err)
	}
	return x[0] / float64(c.Size()), nil
}

// DefaultGradBucketMiB is the gradient bucket size when RunConfig leaves
// it 0. Smaller than DDP's 25 MB: the reference model's gradients are 15
// MB, which one such bucket would hold whole, leaving nothing to overlap.
const DefaultGradBucketMiB = 4

// gradBuckets tracks which buckets of the gradient buffer the backward
// pass has finished and queues each one's reduction when it is complete.
type gradBuckets struct {
	comm  dist.Communicator
	grads compute.View
	n     int   // gradient floats
	size  int   // floats per bucket (the last may be shorter)
	left  []int // floats of bucket i not yet final; -1 once queued
	err   error
}

func newGradBuckets(comm dist.Communicator, grads compute.View, n int, mib float64) *gradBuckets {
	if mib <= 0 {
		mib = DefaultGradBucketMiB
	}
	size := max(int(mib*(1<<20)/4), 1)
	return &gradBuckets{comm: comm, grads: grads, n: n, size: size, left: make([]int, (n+size-1)/size)}
}

func (b *gradBuckets) bounds(i int) (lo, hi int) { return i * b.size, min((i+1)*b.size, b.n) }

// begin readies the buckets for a backward pass.
func (b *gradBuckets) begin() {
	for i := range b.left {
		lo, hi := b.bounds(i)
		b.left[i] = hi - lo
	}
	b.err = nil
}

// ready is BackwardReady's callback: [off, off+n) is final.
func (b *gradBuckets) ready(off, n int) {
	for i := off / b.size; i < len(b.left); i++ {
		lo, hi := b.bounds(i)
		if lo >= off+n {
			break
		}
		b.left[i] -= min(hi, off+n) - max(lo, off)
		if b.left[i] == 0 {
			b.start(i)
		} else if b.left[i] < 0 {
			panic(fmt.Sprintf("train: gradient range [%d, %d) reported final twice", off, off+n))
		}
	}
}

func (b *gradBuckets) start(i int) {
	b.left[i] = -1
	if b.err == nil {
		lo, hi := b.bounds(i)
		b.err = b.comm.StartAllReduceSum(b.grads.At(lo), hi-lo)
	}
}

// finish queues any bucket the backward pass did not report (none, with
// a complete BackwardReady) and waits for all of them.
func (b *gradBuckets) finish() error {
	for i := len(b.left) - 1; i >= 0; i-- {
		if b.left[i] >= 0 {
			b.start(i)
		}
	}
	if err := b.comm.Wait(); b.err == nil {
		b.err = err
	}
	return b.err
}

// backward runs the model's backward pass, with the gradients' buckets
// reduced over the ranks as they complete in a data-parallel run.
func (tr *trainer) backward() {
	if tr.buckets == nil {
		tr.model.Backward(tr.ws, tr.ws.DOut(), compute.View{})
		return
	}
	tr.buckets.begin()
	tr.model.BackwardReady(tr.ws, tr.ws.DOut(), compute.View{}, tr.buckets.ready)
}

// reduceGrads waits for the gradient buckets' sums and replaces each
// rank's gradient by the mean over the ranks.
func (tr *trainer) reduceGrads() error {
	c := tr.cfg.Comm
	if c == nil {
		return nil
	}
	if err := tr.buckets.finish(); err != nil {
		return fmt.Errorf("train: rank %d: reducing the gradients: %w", c.Rank(), err)
	}
	if n := c.Size(); n > 1 {
		tr.be.Scale(tr.model.Grads(), tr.model.NumParams(), float32(1/float64(n)))
	}
	return nil
}

// anyRank is true on every rank when it is true on one: an interrupt (Ctrl-C
// reaches the ranks at different steps) stops them all after the same step.
func (tr *trainer) anyRank(b bool) (bool, error) {
	c := tr.cfg.Comm
	if c == nil {
		return b, nil
	}
	x := []float64{0}
	if b {
		x[0] = 1
	}
	if err := c.AllReduceHost(x); err != nil {
		return false, fmt.Errorf("train: rank %d: %w", c.Rank(), err)
	}
	return x[0] > 0, nil
}

// evaluateLead validates on rank 0 only (the others wait at the next
// collective).
func (tr *trainer) evaluateLead() error {
	if !tr.lead() {
		return nil
	}
	return tr.evaluate()
}

// saveLead writes the checkpoint on rank 0; the others record the step as
// saved, as rank 0 did.
func (tr *trainer) saveLead() error {
	if !tr.lead() {
		tr.lastCkpt, tr.lastSave = StepDir(tr.cfg.Out, tr.step), tr.step
		return nil
	}
	return tr.save()
}
