package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/compute/cuda"
	"github.com/wavecat/wavecat/dist"
	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// The root command itself trains (train-wavenet --data DUMP --head adacat
// --out runs/NAME); "train" is the same command under a name, for scripts
// that prefer a verb.
func init() {
	attachTrain(rootCmd)
}

// attachTrain makes root run training and adds the "train" subcommand. Tests
// call it on a fresh newRootCmd().
func attachTrain(root *cobra.Command) {
	ro := defaultTrainOpts()
	addTrainFlags(root.Flags(), &ro)
	root.Args = cobra.NoArgs
	root.RunE = func(cmd *cobra.Command, _ []string) error { return runTrain(cmd, &ro) }
	root.Example = trainExamples
	root.Long += "\n\n" + presetHelp()

	so := defaultTrainOpts()
	sub := &cobra.Command{
		Use:     "train --data DUMP --out RUN (--preset NAME | --head NAME) [flags]",
		Short:   "Train a WaveNet vocoder (the same as running train-wavenet with these flags)",
		Long:    trainLong + "\n\n" + presetHelp(),
		Example: trainExamples,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return runTrain(cmd, &so) },
	}
	addTrainFlags(sub.Flags(), &so)
	root.AddCommand(sub)
}

const trainLong = `Trains a WaveNet vocoder on a preprocessed dump: random crops of
--max-time-steps samples with their mel context, the chosen output head's loss,
Adam with r9y9's step-decay schedule, and an EMA of the weights (the EMA
weights are validated and shipped). Every --eval-interval steps the dev split's
bits/sample (teacher-forced, EMA weights, mean +- standard error over
utterances) is measured; every --checkpoint-interval steps, on Ctrl-C/SIGTERM
and at the end a checkpoint is written to RUN/step-NNNNNNNNN (RUN/latest points
at the newest; the last --keep are kept). RUN/metrics.jsonl logs loss, lr,
steps/s, samples/s, gradient norm and validations; RUN/loss.png plots them.

--resume continues RUN's newest checkpoint bit for bit (same batches, Adam
state and EMA); the run's model, head, optimisation and run settings
(--keep, intervals) come from the checkpoint, a flag given again with a new
value changes it and is printed, --steps may be raised. A newest checkpoint
that does not verify (damaged, or without checksums.json) is moved to
step-N.bad with the reason printed, and the run continues from the newest
one that does.

A run directory (and a preprocessing dump) is locked while a process
writes it: a second train-wavenet on the same --out stops at once and names
the process that holds it. Temporary files a killed run left are removed
when the next run takes the directory.`

const trainExamples = `  train-wavenet --data dump --preset adacat256 --out runs/adacat256
  train-wavenet --data dump --head adacat --components 128 --lambda 1e-4 --out runs/ac128
  train-wavenet --data dump --preset tiny --head mol --steps 2000 --max-time-steps 2048 --out runs/tiny-mol
  train-wavenet --data dump --out runs/ac128 --resume --steps 2000000`

// trainOpts are the flag values of one command.
type trainOpts struct {
	data, out, preset, head, device, blas, evalSplit    string
	initFrom                                            string
	bins, mixtures, levels, components                  int
	logScaleMin, lambda                                 float64
	layers, stacks, resCh, gateCh, skipCh, kernel       int
	lagTaps                                             int
	batch, maxT, threads, keep, evalMax, evalUtts       int
	evalChunk                                           int
	steps, lrDecaySteps, evalEvery, ckptEvery, logEvery int64
	lr, lrGamma, emaDecay, clip, inputNoise             float64
	seed                                                uint64
	resume, tf32, excitation, alignExc                  bool
	timeLimit                                           time.Duration
	gpus                                                int           // --gpus (dist.go)
	distTimeout                                         time.Duration // --dist-timeout
	bucketMiB                                           float64       // --grad-bucket-mib
}

func defaultTrainOpts() trainOpts {
	d := train.DefaultRunConfig()
	return trainOpts{device: "cpu", blas: "auto", evalSplit: d.EvalSplit,
		batch: d.BatchSize, maxT: d.MaxTimeSteps, steps: d.Steps, lr: d.Schedule.Init, lrGamma: d.Schedule.Gamma,
		lrDecaySteps: d.Schedule.StepSize, emaDecay: d.EMADecay, seed: 1, keep: d.Keep,
		evalEvery: d.EvalInterval, ckptEvery: d.CheckpointInterval, logEvery: d.LogInterval, evalMax: 0, evalChunk: 32,
		bucketMiB: train.DefaultGradBucketMiB}
}

// headOptions are the flags that become outputs.New options.
var headOptions = []string{"bins", "mixtures", "levels", "log-scale-min", "components", "lambda"}

// runDefining are the flags fixed by a run's first checkpoint.
var runDefining = append([]string{"preset", "head", "layers", "stacks", "residual-channels", "gate-channels",
	"skip-channels", "kernel-size", "batch-size", "max-time-steps", "lr", "lr-decay-steps", "lr-gamma",
	"ema-decay", "clip-norm", "seed", "excitation", "input-noise", "excitation-align", "lag-taps"}, headOptions...)

func addTrainFlags(f *pflag.FlagSet, o *trainOpts) {
	f.StringVar(&o.data, "data", "", "preprocessed dump (train-wavenet preprocess --out)")
	f.StringVar(&o.out, "out", "", "run directory (checkpoints, metrics.jsonl, loss.png)")
	f.StringVar(&o.preset, "preset", "", "model and head preset: "+presetList()+" (each described above)")
	f.StringVar(&o.head, "head", "", "output head: "+strings.Join(outputs.Names(), ", ")+" (overrides the preset's)")
	f.IntVar(&o.bins, "bins", 256, "mulaw/categorical: classes")
	f.IntVar(&o.mixtures, "mixtures", 10, "mol: logistic components")
	f.IntVar(&o.levels, "levels", 65536, "mol: quantisation levels Q")
	f.Float64Var(&o.logScaleMin, "log-scale-min", -16, "mol/gaussian: floor of the log-scale")
	f.IntVar(&o.components, "components", 128, "adacat: components k (2k output channels)")
	f.Float64Var(&o.lambda, "lambda", 1e-4, "adacat: smoothing half-width (0: plain NLL)")
	f.IntVar(&o.layers, "layers", 0, "model: residual layers (default: the preset's; reference 24)")
	f.IntVar(&o.stacks, "stacks", 0, "model: dilation cycles (default: the preset's; reference 4)")
	f.IntVar(&o.resCh, "residual-channels", 0, "model: residual channels (default: the preset's; reference 128)")
	f.IntVar(&o.gateCh, "gate-channels", 0, "model: gate channels (default: the preset's; reference 256)")
	f.IntVar(&o.skipCh, "skip-channels", 0, "model: skip channels (default: the preset's; reference 128)")
	f.IntVar(&o.kernel, "kernel-size", 0, "model: dilated conv kernel size (default: the preset's; reference 3)")
	f.StringVar(&o.initFrom, "init-from", "", "new run: start from this checkpoint's EMA weights (same shape; first_conv may gain the --excitation inputs, which start at zero)")
	f.BoolVar(&o.alignExc, "excitation-align", false, "with --excitation: train on an excitation whose phase follows each recording's fundamental, so the network learns to follow it (synthesis uses the plain one)")
	f.IntVar(&o.lagTaps, "lag-taps", 0, "model: with --excitation, also feed it the companded samples one pitch period back (the mel's pitch), at this many offsets centred on the period (odd, e.g. 3): a long-term predictor's taps, which keep voiced output periodic (docs/evaluation.md)")
	f.BoolVar(&o.excitation, "excitation", false, "model: also feed it a sine at the mel's pitch (read from the mel's Griffin-Lim inversion) as 2 input channels, a source for it to shape; vocode derives it from each mel too (docs/evaluation.md)")
	f.IntVar(&o.batch, "batch-size", o.batch, "crops per step")
	f.IntVar(&o.maxT, "max-time-steps", o.maxT, "samples per crop (a multiple of the hop)")
	f.Int64Var(&o.steps, "steps", o.steps, "total optimizer steps of the run")
	f.Float64Var(&o.lr, "lr", o.lr, "initial learning rate")
	f.Int64Var(&o.lrDecaySteps, "lr-decay-steps", o.lrDecaySteps, "multiply the learning rate by --lr-gamma every this many steps")
	f.Float64Var(&o.lrGamma, "lr-gamma", o.lrGamma, "learning-rate decay factor")
	f.Float64Var(&o.emaDecay, "ema-decay", o.emaDecay, "EMA decay of the weights (short runs want e.g. 0.999)")
	f.Float64Var(&o.clip, "clip-norm", 0, "clip the gradient norm to this (0: off, as r9y9)")
	f.Float64Var(&o.inputNoise, "input-noise", 0, "std of Gaussian noise added to the network's previous-sample input (not the target), in the mu-law companded domain [-1,1] (LPCNet's remedy for drift when it runs on its own output; 0: off)")
	f.Uint64Var(&o.seed, "seed", o.seed, "seed of the initialisation and the batch order")
	f.StringVar(&o.device, "device", o.device, "compute device: cpu or cuda")
	f.IntVar(&o.threads, "threads", 0, "cpu: threads (0: all cores)")
	f.StringVar(&o.blas, "blas", o.blas, "cpu: GEMM library: auto (wavecat where the CPU has AVX-512, else openblas or gonum), wavecat, openblas or gonum")
	f.BoolVar(&o.tf32, "tf32", false, "cuda: TF32 tensor-core GEMMs (about 2x faster steps, ~1e-3 relative GEMM error instead of fp32's ~1e-6)")
	f.Int64Var(&o.evalEvery, "eval-interval", o.evalEvery, "steps between validations (0: none)")
	f.StringVar(&o.evalSplit, "eval-split", o.evalSplit, "split validated on: dev or eval")
	f.IntVar(&o.evalMax, "eval-max-samples", o.evalMax, "validate on at most this many samples of each utterance (0: whole, the paper's protocol)")
	f.IntVar(&o.evalChunk, "eval-chunk-frames", o.evalChunk, "mel frames per validation pass (bounds its memory; the result does not depend on it)")
	f.IntVar(&o.evalUtts, "eval-utterances", 0, "validate on at most this many utterances (0: all)")
	f.Int64Var(&o.ckptEvery, "checkpoint-interval", o.ckptEvery, "steps between checkpoints (0: only at the end)")
	f.IntVar(&o.keep, "keep", o.keep, "step checkpoints to keep (0: all)")
	f.Int64Var(&o.logEvery, "log-interval", o.logEvery, "steps per metrics.jsonl record")
	f.BoolVar(&o.resume, "resume", false, "continue the newest checkpoint in --out that verifies (see above)")
	f.DurationVar(&o.timeLimit, "time-limit", 0, "stop after this much training (e.g. 9m30s), saving a checkpoint that --resume continues (0: none)")
	addDistFlags(f, o)
}

func presetList() string { return strings.Join(train.PresetNames(), ", ") }

// presetHelp lists every preset with what it is, for --help: a name alone
// does not say that "tiny" is for smoke tests or which paper row a preset is.
func presetHelp() string {
	var b strings.Builder
	b.WriteString("Presets (--preset NAME; model flags and --head override parts of one):")
	for _, n := range train.PresetNames() {
		p, _ := train.LookupPreset(n)
		fmt.Fprintf(&b, "\n  %-10s %s", n, p.Description)
	}
	return b.String()
}

// headSpec builds the outputs.New spec from the preset's head, --head and the
// head option flags that were given.
func headSpec(f *pflag.FlagSet, o *trainOpts, presetHead string) (string, error) {
	base := presetHead
	if o.head != "" && (base == "" || strings.Fields(base)[0] != o.head) {
		base = o.head
	}
	if base == "" {
		return "", fmt.Errorf("choose an output head with --head (%s) or a --preset (%s)", strings.Join(outputs.Names(), ", "), presetList())
	}
	fields := strings.Fields(base)
	name, opts := fields[0], map[string]string{}
	var order []string
	for i := 1; i+1 < len(fields); i += 2 {
		k := strings.TrimPrefix(fields[i], "--")
		opts[k] = fields[i+1]
		order = append(order, k)
	}
	for _, k := range headOptions {
		if !f.Changed(k) {
			continue
		}
		if _, ok := opts[k]; !ok {
			order = append(order, k)
		}
		opts[k] = f.Lookup(k).Value.String()
	}
	spec := name
	for _, k := range order {
		spec += " --" + k + " " + opts[k]
	}
	if _, err := outputs.New(spec); err != nil {
		return "", fmt.Errorf("head %q: %w", spec, err)
	}
	return spec, nil
}

func newBackend(o *trainOpts) (compute.Backend, error) {
	switch o.device {
	case "cpu":
		be, err := cpu.New(cpu.Options{Threads: o.threads, BLAS: o.blas})
		if err != nil {
			return nil, fmt.Errorf("--device cpu: %w", err)
		}
		return be, nil
	case "cuda":
		be, err := cuda.New(cuda.Options{TF32: o.tf32})
		if err != nil {
			return nil, fmt.Errorf("--device cuda: %w", err)
		}
		return be, nil
	}
	return nil, fmt.Errorf("--device %q: want cpu or cuda", o.device)
}

// runConfig turns the flags into a train.RunConfig for one of world ranks
// (see resumeFlags for world and readOnly).
func runConfig(cmd *cobra.Command, o *trainOpts, world int, readOnly bool) (train.RunConfig, error) {
	f := cmd.Flags()
	cfg := train.DefaultRunConfig()
	if o.data == "" || o.out == "" {
		return cfg, fmt.Errorf("--data and --out are required")
	}
	cfg.Data, cfg.Out, cfg.Resume = o.data, o.out, o.resume
	if o.resume {
		if err := resumeFlags(f, o, cmd.ErrOrStderr(), world, readOnly); err != nil {
			return cfg, err
		}
	} else {
		presetHead := ""
		if o.preset != "" {
			p, err := train.LookupPreset(o.preset)
			if err != nil {
				return cfg, fmt.Errorf("--preset: %w", err)
			}
			cfg.Model, presetHead = p.Model, p.Head
		}
		spec, err := headSpec(f, o, presetHead)
		if err != nil {
			return cfg, err
		}
		cfg.Head = spec
		m := &cfg.Model
		for _, ov := range []struct {
			flag string
			dst  *int
			val  int
		}{{"layers", &m.Layers, o.layers}, {"stacks", &m.Stacks, o.stacks}, {"residual-channels", &m.ResidualChannels, o.resCh},
			{"gate-channels", &m.GateChannels, o.gateCh}, {"skip-channels", &m.SkipChannels, o.skipCh}, {"kernel-size", &m.KernelSize, o.kernel}} {
			if f.Changed(ov.flag) {
				*ov.dst = ov.val
			}
		}
		if o.excitation {
			m.ExcitationChannels = excitation.Channels
		}
		m.LagTaps = o.lagTaps
		cfg.BatchSize, cfg.MaxTimeSteps, cfg.Seed = o.batch, o.maxT, o.seed
		cfg.Schedule = train.StepDecay(o.lr, o.lrGamma, o.lrDecaySteps)
		cfg.EMADecay, cfg.ClipNorm, cfg.InputNoise = o.emaDecay, o.clip, o.inputNoise
		cfg.AlignExcitation = o.alignExc
	}
	cfg.Steps, cfg.EvalInterval, cfg.CheckpointInterval, cfg.LogInterval = o.steps, o.evalEvery, o.ckptEvery, o.logEvery
	cfg.InitFrom = o.initFrom
	cfg.Keep, cfg.EvalSplit, cfg.EvalMaxSamples, cfg.EvalMaxUtterances = o.keep, o.evalSplit, o.evalMax, o.evalUtts
	cfg.Eval = chunkedEval(o.evalChunk)
	return cfg, nil
}

func runTrain(cmd *cobra.Command, o *trainOpts) error {
	launch, env, ranked, err := distMode(o, os.Getenv)
	if err != nil {
		return err
	}
	world := 1
	switch {
	case launch:
		world = o.gpus
	case ranked:
		world = env.WorldSize
	}
	cfg, err := runConfig(cmd, o, world, ranked && env.Rank > 0)
	if err != nil {
		return err
	}
	if launch {
		return launchGPUs(cmd.Context(), o.gpus, cmd.OutOrStdout(), cmd.ErrOrStderr())
	}
	if o.timeLimit < 0 {
		return fmt.Errorf("--time-limit %v: must not be negative", o.timeLimit)
	}
	// Ctrl-C / SIGTERM: the loop finishes its step and saves. A second
	// Ctrl-C, stopGrace or more after the first, kills at once. Caught
	// from before the rendezvous (Ctrl-C ends the wait for the other
	// ranks) until after the communicator and backend are closed (the
	// same stop request arriving twice must not kill a rank that is still
	// saying goodbye).
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	defer handleStopSignals(stopGrace, func(s os.Signal) {
		fmt.Fprintf(cmd.ErrOrStderr(), "\ntrain-wavenet: %v: finishing the current step and saving a checkpoint (press Ctrl-C again, %v or more from now, to abort without saving)\n", s, stopGrace)
		cancel()
	})()

	var be compute.Backend
	var comm dist.Communicator
	if ranked {
		if be, comm, err = joinRun(ctx, o, env, cmd.ErrOrStderr()); err != nil {
			return err
		}
		cfg.Comm, cfg.GradBucketMiB = comm, o.bucketMiB
	} else if be, err = newBackend(o); err != nil {
		return err
	}
	cfg.Backend, cfg.Quiet, cfg.Log = be, quiet || env.Rank > 0, cmd.ErrOrStderr()
	defer func() { endRank(comm, be, recover()) }()

	if o.timeLimit > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, o.timeLimit)
		defer stop()
	}

	res, err := train.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if env.Rank > 0 {
		return nil // rank 0 reports
	}
	w := cmd.OutOrStdout()
	if res.Interrupted {
		why := "interrupted"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			why = fmt.Sprintf("time limit (%v) reached", o.timeLimit)
		}
		fmt.Fprintf(w, "%s at step %d: saved checkpoint %s\ncontinue with: train-wavenet --data %s --out %s --resume --steps %d\n",
			why, res.Step, res.Checkpoint, cfg.Data, cfg.Out, res.Config.Steps)
		return nil
	}
	fmt.Fprintf(w, "finished step %d of %s (head %s, %d parameters)\n", res.Step, cfg.Out, res.Config.Head, res.Params)
	if res.LastEval != nil {
		fmt.Fprintf(w, "%s bits/sample (EMA weights): %.4f +- %.4f over %d utterances\n", res.LastEval.Split, res.LastEval.Bits, res.LastEval.BitsSE, res.LastEval.Utterances)
	}
	fmt.Fprintf(w, "checkpoint: %s\nmetrics:    %s\nplot:       %s\n", res.Checkpoint,
		filepath.Join(cfg.Out, train.MetricsFile), filepath.Join(cfg.Out, train.PlotFile))
	return nil
}

// stopGrace is how long after the first SIGINT/SIGTERM a repeat is taken
// for the same request: Slurm (time limit, scancel), systemd and the --gpus
// launcher each signal every rank, so one request often arrives twice
// within milliseconds, and must not kill a rank that is saving.
const stopGrace = 2 * time.Second

// handleStopSignals catches SIGINT and SIGTERM for stopSignals until the
// returned release is called.
func handleStopSignals(grace time.Duration, stop func(os.Signal)) (release func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go stopSignals(sig, done, grace, stop, func(s os.Signal) {
		signal.Stop(sig) // the signal's default action again: this process dies of it
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			p.Signal(s)
		}
	})
	return func() { signal.Stop(sig); close(done) }
}

// stopSignals calls stop on the first signal, ignores repeats within grace
// of it (the same request delivered again) and calls abort on a later one
// (a user's second Ctrl-C: quit without saving). It returns after abort or
// when done is closed.
func stopSignals(sig <-chan os.Signal, done <-chan struct{}, grace time.Duration, stop, abort func(os.Signal)) {
	var first time.Time
	for {
		select {
		case s := <-sig:
			switch {
			case first.IsZero():
				first = time.Now()
				stop(s)
			case time.Since(first) >= grace:
				abort(s)
				return
			}
		case <-done:
			return
		}
	}
}

// endRank closes comm (when this process is a rank) and then be. After a
// panic (p, from recover) it aborts comm instead, so the other ranks hear
// that this one failed rather than its goodbye, and panics again.
func endRank(comm dist.Communicator, be compute.Backend, p any) {
	if comm != nil {
		if p != nil {
			comm.Abort(fmt.Errorf("panic: %v", p))
		} else {
			comm.Close() // before its backend
		}
	}
	freeBackend(be)
	if p != nil {
		panic(p)
	}
}

// freeBackend releases a backend that holds device resources (cuda).
func freeBackend(be compute.Backend) {
	if c, ok := be.(interface{ Close() error }); ok {
		c.Close()
	}
}

// chunkedEval scores each utterance with evaluate.TeacherForcedBits, which
// runs chunks of frames with enough context that every sample is scored as
// in one pass, so whole utterances validate in bounded memory (one pass over
// a 10 s utterance of the reference model would need ~19 GB of activations).
// It lives here rather than in train because evaluate's tests import train.
func chunkedEval(chunkFrames int) train.EvalFunc {
	return func(m *wavenet.Model, head outputs.Head, utts []*ljspeech.Utterance) (float64, float64, int, error) {
		per := make([]float64, 0, len(utts))
		samples := 0
		for _, u := range utts {
			b, err := evaluate.TeacherForcedBits(m, head, u, evaluate.BitsOptions{ChunkFrames: chunkFrames})
			if err != nil {
				return 0, 0, 0, err
			}
			var s float64
			for _, v := range b {
				s += v
			}
			per = append(per, s/float64(len(b)))
			samples += len(b)
		}
		mean, se := train.MeanSE(per)
		return mean, se, samples, nil
	}
}
