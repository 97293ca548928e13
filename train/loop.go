package train

// The training loop.
//
// Alignment (documented because synthesis must match it): the network input
// at timestep t is the previous sample y[t-1] (0 at t = 0 of each crop),
// encoded by the head (scalar or one-hot), and the output at t, conditioned
// on the upsampled mel at t, predicts y[t]. That is exactly r9y9's
// incremental generation (sample t from the previous sample and c[t]). r9y9's
// train.py instead feeds y[t] and scores output t against y[t+1]
// (y_hat[:, :, :-1] vs target[:, 1:]), which pairs sample t+1 with the
// conditioning of t: off by one from its own generation. Ours trains what
// generation uses, and scores every sample of the crop (mask all ones).
//
// Exact resume: no random number is drawn while training (no dropout; the
// batch of step s is ljspeech.Batcher.Batch(s), a pure function of the seed
// and s), so a checkpoint's weights, EMA, Adam moments and step are the whole
// state and Meta.RNGState stays empty.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/dist"
	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/internal/dirlock"
	"github.com/wavecat/wavecat/internal/outdir"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// Files a run directory holds besides its step checkpoints.
const (
	MetricsFile = "metrics.jsonl"
	PlotFile    = "loss.png"
)

// RunConfig is one training run. On Resume the settings that define the run
// (Model, Head, Seed, BatchSize, MaxTimeSteps, Schedule, Adam, EMADecay,
// ClipNorm) come from the checkpoint; the others (Steps, intervals, Keep,
// evaluation, Backend) from here.
type RunConfig struct {
	Data string // preprocessed dump (ljspeech.Preprocess)
	Out  string // run directory: step-* checkpoints, latest, metrics.jsonl, loss.png

	Model wavenet.Config // channels and upsampling are set from Head and the dump (ModelForHead)
	Head  string         // outputs.New spec

	BatchSize    int
	MaxTimeSteps int   // samples per crop; a multiple of the dump's hop
	Steps        int64 // total optimizer steps of the run (not "more steps")
	Schedule     Schedule
	Adam         AdamConfig
	EMADecay     float64
	ClipNorm     float64 // 0: no clipping (r9y9's default)
	// InputNoise, when > 0, perturbs the previous sample the network is
	// fed (never the target) by Gaussian noise of this standard deviation
	// in the mu-law companded domain (mu 255, [-1,1]): LPCNet's remedy for
	// a network that only learned to continue a clean past and so drifts
	// when it runs on its own samples. 0: clean inputs (the reference).
	InputNoise float64
	// AlignExcitation trains on an excitation whose phase follows each
	// recording's fundamental (excitation.Track.AlignTo), so it predicts
	// the waveform and the network learns to follow it; evaluation and
	// synthesis use the plain one.
	AlignExcitation bool
	Seed            uint64 // model init and batch order

	LogInterval        int64 // steps per metrics record (and per NaN check of the grad norm)
	EvalInterval       int64 // 0: no validation
	CheckpointInterval int64 // 0: only at the end (and on interruption)
	Keep               int   // step checkpoints kept (0: all)
	EvalSplit          string
	EvalMaxSamples     int // cap per utterance, rounded down to the hop; 0: whole utterances
	EvalMaxUtterances  int // 0: all of the split
	// Eval scores the validation utterances with the EMA model; nil means
	// EvalBits (one Forward per utterance: memory grows with its length).
	// The CLI passes a chunked scorer so whole utterances fit in memory.
	Eval EvalFunc

	Resume bool
	// InitFrom, for a new run, starts the weights from another checkpoint
	// (its EMA weights) instead of the seed's initialisation: fine-tuning,
	// or growing a model (see initFrom). Ignored on resume.
	InitFrom string
	Backend  compute.Backend
	// Comm, when set, makes this process one rank of a data-parallel run
	// (see dist.go): BatchSize is per rank, rank 0 writes Out.
	Comm dist.Communicator
	// GradBucketMiB is the size of the gradient buckets a data-parallel
	// run reduces during the backward pass (0: DefaultGradBucketMiB).
	GradBucketMiB float64

	// Log receives the progress bar and notes (os.Stderr when nil); Quiet
	// drops the bar.
	Log   io.Writer
	Quiet bool
	// OnStep, when set, is called after every completed step (tests use it
	// to interrupt a run at a chosen step).
	OnStep func(step int64)
}

// DefaultRunConfig is r9y9's recipe (REFERENCE.md §3) on the reference model,
// without Data, Out, Head and Backend.
func DefaultRunConfig() RunConfig {
	return RunConfig{
		Model: ReferenceModel(), BatchSize: 8, MaxTimeSteps: 10240, Steps: 1000000,
		Schedule: DefaultSchedule(), Adam: DefaultAdam(), EMADecay: DefaultEMADecay,
		LogInterval: 100, EvalInterval: 10000, CheckpointInterval: 100000, Keep: 5,
		EvalSplit: "dev", EvalMaxSamples: 65536,
	}
}

// RunState is config.json's "extra" section: what the loop needs to resume
// a run as it was defined, and the run's settings, so that --resume keeps
// them unless they are given again.
type RunState struct {
	BatchSize    int          `json:"batch_size"`
	MaxTimeSteps int          `json:"max_time_steps"`
	ClipNorm     float64      `json:"clip_norm"`
	InputNoise   float64      `json:"input_noise,omitempty"`
	AlignExc     bool         `json:"align_excitation,omitempty"`
	WorldSize    int          `json:"world_size,omitempty"` // data-parallel ranks, each at BatchSize; absent: 1
	Settings     *RunSettings `json:"settings,omitempty"`   // absent in checkpoints written before it existed
}

// RunSettings are the settings of a run that do not define its model or
// optimisation: a resumed run keeps them.
type RunSettings struct {
	Steps              int64  `json:"steps"`
	LogInterval        int64  `json:"log_interval"`
	EvalInterval       int64  `json:"eval_interval"`
	CheckpointInterval int64  `json:"checkpoint_interval"`
	Keep               int    `json:"keep"`
	EvalSplit          string `json:"eval_split"`
	EvalMaxSamples     int    `json:"eval_max_samples"`
	EvalMaxUtterances  int    `json:"eval_max_utterances"`
}

// ReadRunState parses a checkpoint's "extra" section.
func ReadRunState(m Meta) (RunState, error) {
	var rs RunState
	if len(m.Extra) == 0 {
		return rs, fmt.Errorf("config.json has no training section (\"extra\"): not a checkpoint written by this trainer")
	}
	if err := json.Unmarshal(m.Extra, &rs); err != nil {
		return rs, fmt.Errorf("config.json: \"extra\" section: %w", err)
	}
	return rs, nil
}

// Result says how a run ended.
type Result struct {
	Config      RunConfig // the effective configuration (resumed settings included)
	StartStep   int64
	Step        int64  // completed steps
	Checkpoint  string // the last checkpoint written ("" if none)
	Interrupted bool   // the context was cancelled; the state was saved
	LastEval    *EvalRecord
	Params      int
}

// NonFiniteError is returned when the loss or the gradient is NaN or Inf.
// Nothing is saved for that step: the newest checkpoint is the last good one.
type NonFiniteError struct {
	Step       int64 // the 1-based step whose loss/gradient was bad
	What       string
	Value      float64
	Checkpoint string // the last good checkpoint ("" if none)
}

func (e *NonFiniteError) Error() string {
	last := "no checkpoint was written yet"
	if e.Checkpoint != "" {
		last = "the last good checkpoint is " + e.Checkpoint
	}
	return fmt.Sprintf("training diverged at step %d: %s is %v; stopped without saving this state (%s)", e.Step, e.What, e.Value, last)
}

// trainer holds the live state of a run.
type trainer struct {
	cfg   RunConfig
	be    compute.Backend
	dump  *ljspeech.Dump
	head  outputs.Head
	model *wavenet.Model
	evalM *wavenet.Model // holds the EMA weights during validation
	ws    *wavenet.Workspace
	adam  *Adam
	ema   *EMA
	bt    *ljspeech.Batcher
	info  ModelInfo
	step  int64
	log   io.Writer

	dev      []*ljspeech.Utterance
	metrics  *metricsLog
	lastCkpt string
	lastEval *EvalRecord
	lastSave int64
	bar      *cliutil.Bar
	// tracks are the training utterances' excitation pitch tracks, for a
	// model with excitation channels.
	tracks  map[string]excitation.Track
	lock    *dirlock.Lock // exclusive use of cfg.Out; nil if this run never took it
	outDirs *outdir.Dirs  // the directories this run created for cfg.Out

	// dhead runs the head's loss and gradient on a GPU backend, so a step
	// reads back only the loss; targets is its [B][T] waveform buffer.
	dhead   *outputs.Device
	targets compute.Buffer
	// host staging when the backend is neither host memory nor able to run
	// the head's kernels
	logits, grad []float32
	// spare input buffers handed back by the loop to the prefetcher (a
	// one-hot batch at 8 x 10240 x 256 is 84 MB; no need to allocate it at
	// every step)
	spare chan []float32
	// buckets reduce the gradients over the ranks (nil: one process).
	buckets *gradBuckets
}

// Run trains until cfg.Steps, the context is cancelled (then it saves a
// checkpoint and returns with Interrupted set and a nil error), or an error.
func Run(ctx context.Context, cfg RunConfig) (_ *Result, err error) {
	tr, err := newTrainer(cfg)
	if err != nil {
		if cfg.Comm != nil {
			cfg.Comm.Abort(err)
		}
		return nil, err
	}
	defer func() {
		tr.free()
		if err != nil {
			tr.removeIfUnused()
		}
	}()
	res, err := tr.run(ctx)
	if err != nil && cfg.Comm != nil {
		cfg.Comm.Abort(err) // the other ranks stop instead of waiting for this one
	}
	return res, err
}

// removeIfUnused deletes the run directory (and parents) this run created
// when a failure left nothing in it worth keeping, so a mistyped command
// leaves no empty run folders behind. Call it after free.
func (tr *trainer) removeIfUnused() {
	if !tr.outDirs.Created(tr.cfg.Out) || tr.lock == nil {
		return // not ours: an existing directory, or another run's
	}
	if _, err := Latest(tr.cfg.Out); err == nil {
		return
	}
	ents, err := os.ReadDir(tr.cfg.Out)
	if err != nil {
		return
	}
	for _, e := range ents {
		fi, ierr := e.Info()
		switch {
		case e.Name() == dirlock.File:
		case e.Name() == MetricsFile && ierr == nil && fi.Size() == 0:
		default:
			return // something else: keep it all
		}
	}
	for _, e := range ents {
		os.Remove(filepath.Join(tr.cfg.Out, e.Name()))
	}
	tr.outDirs.Undo()
}

func (c *RunConfig) check() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if c.Data == "" {
		bad("no data dump given")
	}
	if c.Out == "" {
		bad("no output run directory given")
	}
	if c.Backend == nil {
		bad("no compute backend")
	}
	if c.Steps < 0 {
		bad("steps %d must not be negative", c.Steps)
	}
	if c.LogInterval <= 0 {
		bad("log interval %d must be positive", c.LogInterval)
	}
	if c.EvalInterval < 0 || c.CheckpointInterval < 0 || c.Keep < 0 || c.EvalMaxSamples < 0 || c.EvalMaxUtterances < 0 {
		bad("eval interval, checkpoint interval, keep and eval caps must not be negative")
	}
	if c.EvalSplit == "" {
		c.EvalSplit = "dev"
	}
	if !c.Resume {
		if c.Head == "" {
			bad("no output head given")
		}
		if c.BatchSize <= 0 {
			bad("batch size %d must be positive", c.BatchSize)
		}
		if c.MaxTimeSteps <= 0 {
			bad("max time steps %d must be positive", c.MaxTimeSteps)
		}
		if err := c.Schedule.Validate(); err != nil {
			bad("lr schedule: %v", err)
		}
		if !(c.EMADecay >= 0 && c.EMADecay < 1) {
			bad("EMA decay %v must be in [0, 1)", c.EMADecay)
		}
		if c.ClipNorm < 0 || math.IsNaN(c.ClipNorm) {
			bad("clip norm %v must be >= 0", c.ClipNorm)
		}
		if !(c.InputNoise >= 0 && c.InputNoise <= 1) {
			bad("input noise %v must be in [0, 1]", c.InputNoise)
		}
		if c.AlignExcitation && c.Model.ExcitationChannels == 0 {
			bad("aligning the excitation needs a model with excitation channels (--excitation)")
		}
	}
	return errors.Join(errs...)
}

func newTrainer(cfg RunConfig) (_ *trainer, err error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	dump, err := ljspeech.OpenDump(cfg.Data)
	if err != nil {
		return nil, err
	}
	tr := &trainer{cfg: cfg, be: cfg.Backend, dump: dump, log: cfg.Log}
	if tr.log == nil {
		tr.log = os.Stderr
	}
	defer func() {
		if err != nil {
			tr.free()
			tr.removeIfUnused()
		}
	}()

	// The other ranks of a data-parallel run only read the directory.
	if tr.lead() {
		if tr.outDirs, err = outdir.Prepare(cfg.Out); err != nil {
			return nil, fmt.Errorf("train: run directory: %w", err)
		}
		// One writer per run directory, for the whole run; only then are the
		// temporaries a killed run left behind certainly nobody's.
		if tr.lock, err = dirlock.Acquire(cfg.Out, "training: "+strings.Join(os.Args, " ")); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		if removed, err := dirlock.CleanStale(cfg.Out); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		} else if len(removed) > 0 {
			fmt.Fprintf(tr.log, "removed %d temporary file(s) a killed run left in %s: %s\n", len(removed), cfg.Out, strings.Join(removed, " "))
		}
	}
	var ck *Checkpoint
	latest, lerr := Latest(cfg.Out)
	if cfg.Resume {
		if lerr != nil {
			return nil, fmt.Errorf("train: --resume: no checkpoint to resume in %s: %w", cfg.Out, lerr)
		}
		if ck, err = Load(latest); err != nil {
			return nil, fmt.Errorf("train: resume: %w", err)
		}
		if err := tr.adoptCheckpointConfig(ck); err != nil {
			return nil, fmt.Errorf("train: resume from %s: %w", latest, err)
		}
		tr.lastCkpt, tr.lastSave = latest, ck.Config.Step
	} else if lerr == nil {
		return nil, fmt.Errorf("train: %s already holds checkpoints (newest %s): resume it or choose another output directory", cfg.Out, latest)
	}
	cfg = tr.cfg

	if tr.head, err = outputs.New(cfg.Head); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	p := dump.Params
	mcfg, err := ModelForHead(cfg.Model, tr.head, p.Mel.NMels, p.Mel.Hop)
	if err != nil {
		return nil, fmt.Errorf("train: model for head %q on %s (hop %d, %d mels): %w", cfg.Head, cfg.Data, p.Mel.Hop, p.Mel.NMels, err)
	}
	tr.cfg.Model = mcfg
	cfg = tr.cfg
	if cfg.MaxTimeSteps%p.Mel.Hop != 0 {
		return nil, fmt.Errorf("train: max time steps %d must be a multiple of the dump's hop %d", cfg.MaxTimeSteps, p.Mel.Hop)
	}
	tr.info = ModelInfo{Model: mcfg, Head: tr.head.Spec(), Preprocess: p, Stats: dump.Stats}

	if tr.model, err = wavenet.New(mcfg, tr.be, int64(cfg.Seed)); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if ck == nil && cfg.InitFrom != "" {
		if err := initFrom(tr.model, cfg.InitFrom, tr.log); err != nil {
			return nil, fmt.Errorf("train: --init-from: %w", err)
		}
	}
	if tr.ws, err = tr.model.NewWorkspace(cfg.BatchSize, cfg.MaxTimeSteps); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	n := tr.model.NumParams()
	if tr.adam, err = NewAdam(tr.be, n, cfg.Adam); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if tr.ema, err = NewEMA(tr.be, tr.model.Params(), n, float32(cfg.EMADecay)); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if ck != nil {
		if err := tr.restore(ck); err != nil {
			return nil, fmt.Errorf("train: resume from %s: %w", latest, err)
		}
	}
	if tr.bt, err = dump.NewBatcher("train", cfg.BatchSize, cfg.MaxTimeSteps, mcfg.CinPad, p.Mel.Hop, cfg.Seed); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if err := tr.bt.Shard(tr.rank(), tr.world()); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	if mcfg.ExcitationChannels > 0 {
		if tr.tracks, err = excitationTracks(dump, tr.bt.IDs(), mcfg, tr.log, cfg.Quiet); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		if cfg.AlignExcitation {
			if err := alignTracks(dump, tr.tracks); err != nil {
				return nil, fmt.Errorf("train: %w", err)
			}
		}
	}
	if cfg.EvalInterval > 0 && tr.lead() {
		if tr.evalM, err = wavenet.New(mcfg, tr.be, 0); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		if err := tr.loadEvalSet(); err != nil {
			return nil, err
		}
	}
	if tr.lead() {
		if tr.metrics, err = openMetrics(filepath.Join(cfg.Out, MetricsFile), tr.step, cfg.Resume); err != nil {
			return nil, err
		}
	}
	nOut := cfg.BatchSize * mcfg.OutChannels * cfg.MaxTimeSteps
	if _, ok := tr.be.(compute.HostAccessor); !ok {
		if _, ok := tr.be.(compute.KernelCompiler); ok {
			if tr.dhead, err = outputs.NewDevice(tr.head, tr.be); err != nil {
				return nil, fmt.Errorf("train: head %q on %s: %w", tr.head.Spec(), tr.be.Name(), err)
			}
			tr.targets = tr.be.Alloc(cfg.BatchSize * cfg.MaxTimeSteps)
		} else {
			tr.logits, tr.grad = make([]float32, nOut), make([]float32, nOut)
		}
	}
	tr.spare = make(chan []float32, 2)
	if cfg.Comm != nil {
		tr.buckets = newGradBuckets(cfg.Comm, tr.model.Grads(), tr.model.NumParams(), cfg.GradBucketMiB)
	}
	if err := tr.syncStart(); err != nil {
		return nil, err
	}
	return tr, nil
}

// adoptCheckpointConfig takes the settings that define the run from a
// checkpoint being resumed and checks the dump is the one it was trained on.
func (tr *trainer) adoptCheckpointConfig(ck *Checkpoint) error {
	m := ck.Config
	mi, err := ParseModelInfo(m)
	if err != nil {
		return err
	}
	rs, err := ReadRunState(m)
	if err != nil {
		return err
	}
	a, _ := json.Marshal(mi.Preprocess)
	b, _ := json.Marshal(tr.dump.Params)
	if string(a) != string(b) {
		return fmt.Errorf("the run was trained on a dump preprocessed with other parameters than %s's", tr.cfg.Data)
	}
	c := &tr.cfg
	c.Model, c.Head, c.Seed = mi.Model, mi.Head, m.Seed
	if !(rs.InputNoise >= 0 && rs.InputNoise <= 1) {
		return fmt.Errorf("checkpoint input_noise %v is outside [0, 1]", rs.InputNoise)
	}
	c.MaxTimeSteps, c.ClipNorm, c.InputNoise, c.AlignExcitation = rs.MaxTimeSteps, rs.ClipNorm, rs.InputNoise, rs.AlignExc
	if c.BatchSize, err = PerRankBatch(rs, tr.world()); err != nil {
		return err
	}
	c.Schedule, c.Adam, c.EMADecay = m.Schedule, m.Adam.AdamConfig, m.EMADecay
	if c.Steps < m.Step {
		return fmt.Errorf("--steps %d is below the checkpoint's step %d", c.Steps, m.Step)
	}
	return nil
}

// restore loads weights, EMA and Adam state into the live buffers.
func (tr *trainer) restore(ck *Checkpoint) error {
	if err := tr.model.ImportTensors(ToModelTensors(ck.Weights)); err != nil {
		return err
	}
	if ck.EMA == nil || ck.Optimizer == nil {
		return fmt.Errorf("checkpoint lacks the EMA or optimizer state needed to resume exactly")
	}
	if err := tr.model.ImportBuffer(tr.ema.View(), ToModelTensors(ck.EMA)); err != nil {
		return fmt.Errorf("EMA: %w", err)
	}
	mt, vt, err := SplitAdamTensors(ck.Optimizer)
	if err != nil {
		return err
	}
	m, v := tr.adam.Moments()
	if err := tr.model.ImportBuffer(m, ToModelTensors(mt)); err != nil {
		return fmt.Errorf("optimizer: %w", err)
	}
	if err := tr.model.ImportBuffer(v, ToModelTensors(vt)); err != nil {
		return fmt.Errorf("optimizer: %w", err)
	}
	if ck.Config.Adam.Step != ck.Config.Step {
		return fmt.Errorf("optimizer step %d differs from the checkpoint step %d", ck.Config.Adam.Step, ck.Config.Step)
	}
	if err := tr.adam.SetSteps(int(ck.Config.Step)); err != nil {
		return err
	}
	tr.step = ck.Config.Step
	return nil
}

func (tr *trainer) free() {
	for _, f := range []interface{ Free() }{tr.ws, tr.adam, tr.ema} {
		if f != nil && !isNilFreer(f) {
			f.Free()
		}
	}
	if tr.model != nil {
		tr.model.Free()
	}
	if tr.evalM != nil {
		tr.evalM.Free()
	}
	if tr.dhead != nil {
		tr.dhead.Free()
		tr.be.Free(tr.targets)
	}
	if tr.metrics != nil {
		tr.metrics.Close()
	}
	tr.lock.Release()
}

// isNilFreer catches typed nil pointers stored in the interface slice.
func isNilFreer(f interface{ Free() }) bool {
	switch v := f.(type) {
	case *wavenet.Workspace:
		return v == nil
	case *Adam:
		return v == nil
	case *EMA:
		return v == nil
	}
	return false
}

// prepared is one batch staged on the host, ready to upload.
type prepared struct {
	step int64
	b    ljspeech.Batch
	x    []float32
	err  error
}

// prefetch reads and encodes batches in a goroutine one step ahead of the
// compute, so disk reads and one-hot encoding overlap the previous step.
func (tr *trainer) prefetch(ctx context.Context, from, to int64) <-chan prepared {
	ch := make(chan prepared, 1)
	go func() {
		defer close(ch)
		for s := from; s < to; s++ {
			p, err := tr.stage(s)
			p.err = err
			select {
			case ch <- p:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// encodeInputs writes x [B][InputChannels][T]: at t the encoded previous
// sample wave[t-1], 0 at t = 0 (see the alignment note at the top).
func encodeInputs(h outputs.Head, wave []float32, B, T int, x []float32) {
	encodeInputsStride(h, wave, B, T, h.InputChannels(), x)
}

// encodeInputsStride is encodeInputs into x [B][in][T] with in >= the
// head's input channels: the rows after the head's (a model's excitation
// channels) are left for the caller.
func encodeInputsStride(h outputs.Head, wave []float32, B, T, in int, x []float32) {
	c := h.InputChannels()
	enc := make([]float32, c)
	for b := 0; b < B; b++ {
		w := wave[b*T : (b+1)*T]
		xb := x[b*in*T : (b+1)*in*T]
		for t := 0; t < T; t++ {
			prev := float32(0)
			if t > 0 {
				prev = w[t-1]
			}
			h.EncodeInput(prev, enc)
			for k, v := range enc {
				xb[k*T+t] = v
			}
		}
	}
}

// forwardLoss runs the forward pass and the head loss on a staged batch,
// leaving d(mean loss)/d(logits) in the workspace's DOut. It returns the
// mean per-sample training loss in nats.
func (tr *trainer) forwardLoss(p *prepared) float64 {
	be, m, ws := tr.be, tr.model, tr.ws
	B, T, C := p.b.B, p.b.T, tr.cfg.Model.OutChannels
	be.Upload(ws.X(), p.x)
	be.Upload(ws.Mel(), p.b.Mel)
	out := m.Forward(ws, ws.X(), ws.Mel())
	// Mean over every sample of the batch: each item's summed loss and its
	// gradient are scaled by 1/(B*T).
	scale := float32(1 / float64(B*T))
	if tr.dhead != nil {
		be.Upload(compute.V(tr.targets), p.b.Wave[:B*T])
		return tr.dhead.Loss(out, B, T, compute.V(tr.targets), compute.View{}, ws.DOut(), scale) / float64(B*T)
	}
	n := B * C * T
	logits, grad := tr.logits, tr.grad
	ha, host := be.(compute.HostAccessor)
	if host {
		logits, grad = ha.Host(out, n), ha.Host(ws.DOut(), n)
	} else {
		be.Download(logits, out)
	}
	var sum float64
	for b := 0; b < B; b++ {
		o := b * C * T
		sum += tr.head.Loss(logits[o:o+C*T], T, T, p.b.Wave[b*T:(b+1)*T], nil, grad[o:o+C*T], scale)
	}
	if !host {
		be.Upload(ws.DOut(), grad)
	}
	return sum / float64(B*T)
}

// stepOnce runs forward, the head loss, backward, and (when all is finite)
// Adam and the EMA. It returns the mean per-sample training loss in nats and
// the gradient norm before clipping.
func (tr *trainer) stepOnce(p *prepared) (loss, gnorm float64, err error) {
	m, cfg := tr.model, tr.cfg
	loss = tr.forwardLoss(p)
	if loss, err = tr.meanLoss(loss); err != nil {
		return loss, 0, err
	}
	if math.IsNaN(loss) || math.IsInf(loss, 0) {
		return loss, 0, &NonFiniteError{Step: p.step + 1, What: "the training loss", Value: loss, Checkpoint: tr.lastCkpt}
	}
	m.ZeroGrads()
	tr.backward()
	if err := tr.reduceGrads(); err != nil {
		return loss, 0, err
	}
	np := m.NumParams()
	if cfg.ClipNorm > 0 {
		gnorm = ClipGradNorm(tr.be, m.Grads(), np, cfg.ClipNorm)
	} else {
		gnorm = math.Sqrt(tr.be.SumSquares(m.Grads(), np))
	}
	if math.IsNaN(gnorm) || math.IsInf(gnorm, 0) {
		return loss, gnorm, &NonFiniteError{Step: p.step + 1, What: "the gradient norm", Value: gnorm, Checkpoint: tr.lastCkpt}
	}
	tr.adam.Step(m.Params(), m.Grads(), np, cfg.Schedule.LR(p.step))
	tr.ema.Update(m.Params(), np, p.step+1)
	return loss, gnorm, nil
}

// stage reads and encodes the batch of step (what prefetch does).
func (tr *trainer) stage(step int64) (prepared, error) {
	b, err := tr.bt.Batch(int(step))
	if err != nil {
		return prepared{}, err
	}
	mc := tr.cfg.Model
	in := mc.FirstConvInputs()
	n := b.B * in * b.T
	var x []float32
	select {
	case x = <-tr.spare:
	default:
	}
	if len(x) != n {
		x = make([]float32, n)
	}
	p := prepared{step: step, b: b, x: x}
	inWave := b.Wave
	if tr.cfg.InputNoise > 0 {
		inWave = noisyInputs(b.Wave, b.T, b.Items, tr.cfg.InputNoise, tr.cfg.Seed)
	}
	encodeInputsStride(tr.head, inWave, b.B, b.T, in, p.x)
	if mc.ExcitationChannels > 0 {
		hop := tr.dump.Params.Mel.Hop
		for i, id := range b.IDs {
			tk, ok := tr.tracks[id]
			if !ok {
				return prepared{}, fmt.Errorf("train: no excitation track for utterance %s", id)
			}
			tk.Fill(p.x[(i*in+mc.InputChannels)*b.T:], b.T, b.Starts[i]*hop, b.T)
			if L := mc.LagTaps; L > 0 {
				// The lag reads the crop's own (possibly noisy) past, as
				// the one-hot input does: zero before the crop starts.
				period := make([]float32, b.T)
				tk.FillPeriod(period, b.Starts[i]*hop, b.T)
				wavenet.LagInput(p.x[(i*in+mc.InputChannels+mc.ExcitationChannels)*b.T:], b.T, inWave[i*b.T:(i+1)*b.T], period, 0, b.T, L)
			}
		}
	}
	return p, nil
}

func (tr *trainer) run(ctx context.Context) (*Result, error) {
	cfg := tr.cfg
	start := tr.step
	res := &Result{Config: cfg, StartStep: start, Params: tr.model.NumParams()}
	defer func() {
		res.Step, res.Checkpoint, res.LastEval = tr.step, tr.lastCkpt, tr.lastEval
	}()
	fmt.Fprintf(tr.log, "train: %s, head %s, %d parameters, batch %d x %d samples, steps %d..%d, %s\n",
		cfg.Out, tr.head.Spec(), tr.model.NumParams(), cfg.BatchSize, cfg.MaxTimeSteps, start, cfg.Steps, tr.be.Describe())
	if len(tr.bt.Skipped) > 0 {
		fmt.Fprintf(tr.log, "train: %d training utterances shorter than a crop are skipped\n", len(tr.bt.Skipped))
	}
	if cfg.EvalInterval > 0 && start == 0 {
		if err := tr.evaluateLead(); err != nil {
			return res, err
		}
	}

	// The count is the run's step (a resumed run starts at start); a log
	// file gets a plain line every so often, not a redrawn bar per step.
	bar := cliutil.NewBarOptions(cfg.Steps, "training", tr.log, cfg.Quiet, cliutil.BarOptions{Unit: "steps", Start: start})
	tr.bar = bar
	defer bar.Exit()
	// The prefetcher is not tied to ctx: an interrupt lets the current step
	// finish, and stopping the reader is our own business.
	pctx, stop := context.WithCancel(context.Background())
	defer stop()
	batches := tr.prefetch(pctx, start, cfg.Steps)

	var (
		lossSum   float64
		lossN     int64
		lastGnorm float64
		t0        = time.Now()
		s0        = start
		paused    time.Duration
	)
	for tr.step < cfg.Steps {
		p, ok := <-batches
		if !ok || p.err != nil {
			if p.err == nil {
				p.err = errors.New("batch reader stopped")
			}
			return res, fmt.Errorf("train: step %d: %w", tr.step+1, p.err)
		}
		loss, gnorm, err := tr.stepOnce(&p)
		select {
		case tr.spare <- p.x:
		default:
		}
		if err != nil {
			if tr.metrics != nil {
				tr.metrics.Flush()
			}
			return res, err
		}
		tr.step++
		lossSum += loss
		lossN++
		lastGnorm = gnorm
		bar.Describe(fmt.Sprintf("training, loss %.4f", loss))
		bar.Add(1)

		if tr.step%cfg.LogInterval == 0 || tr.step == cfg.Steps {
			// Speed of training alone: validation and checkpoint time
			// since the last record is left out.
			dt := time.Since(t0).Seconds() - paused.Seconds()
			sps := float64(tr.step-s0) / dt
			rec := TrainRecord{Type: "train", Step: tr.step, Loss: lossSum / float64(lossN),
				LR: lrValue(cfg.Schedule.LR(tr.step - 1)), StepsPerSec: sps,
				SamplesPerSec: sps * float64(tr.world()*cfg.BatchSize*cfg.MaxTimeSteps), GradNorm: lastGnorm, Time: time.Now().UTC()}
			if tr.metrics != nil {
				if err := tr.metrics.Train(rec); err != nil {
					return res, err
				}
			}
			lossSum, lossN, t0, s0, paused = 0, 0, time.Now(), tr.step, 0
		}
		interrupted, err := tr.anyRank(ctx.Err() != nil)
		if err != nil {
			return res, err
		}
		tp := time.Now()
		if cfg.EvalInterval > 0 && tr.step%cfg.EvalInterval == 0 && !interrupted {
			if err := tr.evaluateLead(); err != nil {
				return res, err
			}
		}
		if (cfg.CheckpointInterval > 0 && tr.step%cfg.CheckpointInterval == 0) || interrupted {
			if err := tr.saveLead(); err != nil {
				return res, err
			}
		}
		paused += time.Since(tp)
		if tr.cfg.OnStep != nil {
			tr.cfg.OnStep(tr.step)
		}
		// Ranks decide together (anyRank), at the next step.
		if interrupted || (tr.cfg.Comm == nil && ctx.Err() != nil) {
			if tr.lastSave != tr.step {
				if err := tr.saveLead(); err != nil {
					return res, err
				}
			}
			res.Interrupted = true
			return res, nil
		}
	}
	if cfg.EvalInterval > 0 && (tr.lastEval == nil || tr.lastEval.Step != tr.step) {
		if err := tr.evaluateLead(); err != nil {
			return res, err
		}
	}
	if tr.lastSave != tr.step || tr.lastCkpt == "" {
		if err := tr.saveLead(); err != nil {
			return res, err
		}
	}
	return res, nil
}

// checkpoint gathers the current state.
func (tr *trainer) checkpoint() (*Checkpoint, error) {
	cfg := tr.cfg
	meta := Meta{Step: tr.step, Seed: cfg.Seed, Schedule: cfg.Schedule, EMADecay: cfg.EMADecay,
		Adam: AdamState{AdamConfig: cfg.Adam, Step: int64(tr.adam.Steps())}}
	if err := tr.info.SetMeta(&meta); err != nil {
		return nil, err
	}
	items := tr.step * int64(cfg.BatchSize*tr.world())
	nUtt := int64(tr.bt.Len())
	meta.Data = DataPosition{Epoch: items / nUtt, Index: items % nUtt, ShuffleSeed: cfg.Seed}
	extra, err := json.Marshal(RunState{BatchSize: cfg.BatchSize, MaxTimeSteps: cfg.MaxTimeSteps, ClipNorm: cfg.ClipNorm, InputNoise: cfg.InputNoise, AlignExc: cfg.AlignExcitation, WorldSize: tr.checkpointWorld(),
		Settings: &RunSettings{Steps: cfg.Steps, LogInterval: cfg.LogInterval, EvalInterval: cfg.EvalInterval,
			CheckpointInterval: cfg.CheckpointInterval, Keep: cfg.Keep, EvalSplit: cfg.EvalSplit,
			EvalMaxSamples: cfg.EvalMaxSamples, EvalMaxUtterances: cfg.EvalMaxUtterances}})
	if err != nil {
		return nil, err
	}
	meta.Extra = extra
	m, v := tr.adam.Moments()
	return &Checkpoint{
		Config:    meta,
		Weights:   FromModelTensors(tr.model.ExportTensors()),
		EMA:       FromModelTensors(tr.model.ExportBuffer(tr.ema.View())),
		Optimizer: AdamTensors(FromModelTensors(tr.model.ExportBuffer(m)), FromModelTensors(tr.model.ExportBuffer(v))),
	}, nil
}

// save writes a step checkpoint, prunes old ones and refreshes the plot. A
// failure is returned as it is: Save never damages the previous checkpoint.
func (tr *trainer) save() error {
	ck, err := tr.checkpoint()
	if err != nil {
		return fmt.Errorf("train: checkpoint at step %d: %w", tr.step, err)
	}
	if err := tr.metrics.Flush(); err != nil {
		return err
	}
	dir, err := SaveStep(tr.cfg.Out, ck)
	if err != nil {
		prev := "none was written before"
		if tr.lastCkpt != "" {
			prev = "the previous one, " + tr.lastCkpt + ", is intact"
		}
		return fmt.Errorf("train: saving the checkpoint of step %d failed (%s): %w", tr.step, prev, err)
	}
	tr.lastCkpt, tr.lastSave = dir, tr.step
	if tr.cfg.Keep > 0 {
		if err := Prune(tr.cfg.Out, tr.cfg.Keep); err != nil {
			return fmt.Errorf("train: pruning old checkpoints: %w", err)
		}
	}
	return tr.plot()
}

func (tr *trainer) plot() error {
	if err := WritePlot(filepath.Join(tr.cfg.Out, PlotFile), tr.metrics.train, tr.metrics.eval, tr.head.Spec()); err != nil {
		return fmt.Errorf("train: plot: %w", err)
	}
	return nil
}

// lrValue is the float32 learning rate as the shortest decimal (0.001, not
// 0.0010000000474974513) for the metrics log.
func lrValue(lr float32) float64 {
	v, _ := strconv.ParseFloat(strconv.FormatFloat(float64(lr), 'g', -1, 32), 64)
	return v
}
