package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/cmd/vocode/model"
	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/compute/cuda"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/internal/outdir"
	"github.com/wavecat/wavecat/melspec"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// synthOpts are the root command's flags (vocode MEL.npy... -o OUT).
var synthOpts struct {
	out           string
	checkpoint    string
	noEMA         bool
	seed          uint64
	batch         int
	device        string
	threads       int
	melNormalized bool
	melLayout     string
	copySynthesis bool
	wide          bool
	downmix       bool
	gpuStep       string
	temperature   float64
	voicedTemp    float64
	postfilter    string
	griffinLim    bool
	glIterations  int
}

// checkpointEnv names the checkpoint used when --checkpoint is not given.
const checkpointEnv = "WAVECAT_CHECKPOINT"

// runsDir is searched for the newest run when neither --checkpoint nor the
// environment names one.
var runsDir = "runs"

func init() {
	rootCmd.Use = "vocode MEL.npy... -o OUT.wav|DIR"
	rootCmd.Long = `vocode synthesises waveforms from log-mel spectrograms (frames x n_mels .npy,
as 'vocode mel' or train-wavenet preprocess write them) with a trained WaveNet,
sample by sample, several utterances at a time with --batch.

The model is --checkpoint (a checkpoint or run directory), else
$` + checkpointEnv + `, else the newest run under ./runs, else the small default
model built into the binary; vocode always says which one it used. Mels are
normalised with the checkpoint's statistics unless --mel-normalized. The output
is inverse pre-emphasised, divided by the training gain, clipped and written
as 16-bit WAV at the checkpoint's sample rate, frames*hop samples long.

With --copy-synthesis the inputs are WAV files: they are high-passed and
their mel extracted with the checkpoint's parameters (as the training
features were, minus the silence trim, so the length is kept), then
resynthesised.

--temperature scales the sampling distribution: 1 (the default) samples the
model's own distribution; below 1 is more conservative (quieter, less
noise), above 1 noisier. What it scales per head: mulaw and categorical
divide the class logits by it; adacat divides the bin-height logits (widths
unchanged); mol divides the mixture logits and multiplies the logistic
scales; gaussian multiplies the standard deviation. For a model with an
excitation input (the built-in one) --voiced-temperature replaces it where
the mel is voiced, blended by the voicing: the default 0.7 makes voiced
speech less noisy and more periodic (measured in docs/evaluation.md).

--griffin-lim needs no model: the waveform is 60 iterations (--griffin-lim-iters)
of fast Griffin-Lim with momentum 0.99 from the mel's pseudo-inverse
magnitude, with the mel parameters (and statistics, for --mel-normalized)
of the model vocode would use. It is the baseline every neural vocoder
should beat (vocode eval prints it beside the checkpoints).`
	rootCmd.Example = `  vocode LJ001-0001-feats.npy -o out.wav --checkpoint runs/ac128
  vocode mels/*.npy -o wavs/ --batch 8 --seed 7
  vocode --copy-synthesis speech.wav -o resynth.wav
  vocode LJ001-0001-feats.npy -o out.wav --temperature 0.7
  vocode --griffin-lim LJ001-0001-feats.npy -o gl.wav`
	rootCmd.Args = cobra.ArbitraryArgs
	// Inputs are arguments of the root command, so cobra cannot tell a
	// mistyped subcommand from a file: runSynth asks for suggestions.
	rootCmd.SuggestionsMinimumDistance = 1
	rootCmd.RunE = runSynth
	f := rootCmd.Flags()
	f.StringVarP(&synthOpts.out, "out", "o", "", "output .wav file (one input) or directory (required)")
	f.StringVar(&synthOpts.checkpoint, "checkpoint", "", "checkpoint or run directory (default: $"+checkpointEnv+", the newest run under ./runs, the built-in model)")
	f.BoolVar(&synthOpts.noEMA, "raw-weights", false, "use the raw weights instead of the EMA weights")
	// The old spelling still works; one name (eval's) is documented.
	f.BoolVar(&synthOpts.noEMA, "no-ema", false, "use the raw weights instead of the EMA weights")
	f.MarkDeprecated("no-ema", "use --raw-weights, as vocode eval does")
	f.Uint64Var(&synthOpts.seed, "seed", 1, "sampling seed; input i uses seed+i, whatever the batch")
	f.IntVar(&synthOpts.batch, "batch", 0, "utterances generated at once (0: 8 per thread on the CPU, all inputs up to 32 on a GPU); results do not depend on it")
	f.StringVar(&synthOpts.device, "device", "cpu", "compute device: cpu or cuda (NVIDIA GPU: synthesis and sampling on the GPU)")
	f.IntVar(&synthOpts.threads, "threads", 0, "CPU threads: utterance groups generated in parallel with --batch (0: all cores); results do not depend on it")
	f.BoolVar(&synthOpts.melNormalized, "mel-normalized", false, "the input mels are already normalised with the checkpoint's statistics")
	f.StringVar(&synthOpts.melLayout, "mel-layout", "auto", "axes of the input .npy mels: auto (the axis of n_mels length is the mel axis; a square array needs one of the others), frames-mels or mels-frames")
	f.BoolVar(&synthOpts.copySynthesis, "copy-synthesis", false, "inputs are WAV files: extract their mel and resynthesise")
	f.BoolVar(&synthOpts.downmix, "downmix", false, "with --copy-synthesis: average the channels of a stereo (or wider) WAV")
	f.StringVar(&synthOpts.gpuStep, "gpu-step", "auto", "GPU step kernels: auto (fused where it applies, else layered), layered (L+5 launches per sample, any batch), fused (one launch per sample, up to 32 utterances; about 3.4x faster than layered at batch 1 on an H200; auto takes it up to 4, where it was measured) or cluster (one launch per sample on thread-block clusters that exchange results through shared memory; compute capability 9.0+, up to 8 utterances per cluster; not yet measured on a GPU, so auto does not take it)")
	f.StringVar(&synthOpts.postfilter, "postfilter", "comb+envelope", "after synthesis: comb+envelope (a pitch comb at the mel's pitch, then each mel band rescaled to the mel's level), envelope, comb or none (the network's raw output); docs/evaluation.md")
	f.Float64Var(&synthOpts.voicedTemp, "voiced-temperature", defaultVoicedTemperature, "sampling temperature where the mel is voiced, for models with an excitation input, such as the built-in one (0: --temperature everywhere)")
	f.Float64Var(&synthOpts.temperature, "temperature", 1, "sampling temperature > 0: 1 samples the model's distribution, lower is more conservative (see above for what it scales per head)")
	f.BoolVar(&synthOpts.griffinLim, "griffin-lim", false, "no neural model: Griffin-Lim from the mel (a baseline, or a waveform without a trained model)")
	f.IntVar(&synthOpts.glIterations, "griffin-lim-iters", melspec.DefaultGriffinLimOptions().Iterations, "Griffin-Lim iterations (with --griffin-lim)")
	f.BoolVar(&synthOpts.wide, "wide", false, "one GEMM per layer for the whole batch (default batch 16, one thread); results then depend on the batch. Only CPUs without AVX2+FMA gain from it: elsewhere the default step already loads each weight once per batch and stays bit-identical")
}

// resolveModel finds the checkpoint to use (see rootCmd.Long) and returns
// its path, a description of where it came from, and a cleanup for the
// temporary copy of the built-in model.
func resolveModel(flag string) (path, source string, cleanup func(), err error) {
	cleanup = func() {}
	if flag != "" {
		return flag, "--checkpoint", cleanup, nil
	}
	if env := os.Getenv(checkpointEnv); env != "" {
		return env, "$" + checkpointEnv, cleanup, nil
	}
	if p, ok := newestRun(runsDir); ok {
		return p, "newest run under ./" + runsDir, cleanup, nil
	}
	dir, cleanup, err := extractBuiltin()
	if err != nil {
		return "", "", cleanup, err
	}
	source = "built-in default model"
	if model.Untrained() {
		source += " (UNTRAINED placeholder: the output is noise; train one with train-wavenet and pass --checkpoint)"
	}
	return dir, source, cleanup, nil
}

// builtinName is how eval and listening-test name the built-in model
// (--checkpoint built-in).
const builtinName = "built-in"

// extractBuiltin writes the built-in model into a temporary checkpoint
// directory; cleanup removes it.
func extractBuiltin() (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", "vocode-default-model-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup = func() { os.RemoveAll(dir) }
	if err := model.Extract(dir); err != nil {
		cleanup()
		return "", func() {}, err
	}
	return dir, cleanup, nil
}

// newestRun returns the checkpoint of the run under dir whose newest
// checkpoint was written last.
func newestRun(dir string) (string, bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	var best string
	var bestT time.Time
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		ck, err := train.Latest(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		st, err := os.Stat(filepath.Join(ck, train.ConfigFile))
		if err != nil {
			continue
		}
		if best == "" || st.ModTime().After(bestT) {
			best, bestT = ck, st.ModTime()
		}
	}
	return best, best != ""
}

// newBackend opens the device: the CPU backend with blasThreads BLAS
// threads, or the CUDA GPU (the generator then runs its GPU step).
func newBackend(device string, blasThreads int) (compute.Backend, error) {
	switch device {
	case "cpu":
		return cpu.New(cpu.Options{Threads: blasThreads})
	case "cuda":
		be, err := cuda.New(cuda.Options{})
		if err != nil {
			return nil, fmt.Errorf("--device cuda: %w", err)
		}
		return be, nil
	default:
		return nil, fmt.Errorf("--device %q: want cpu or cuda", device)
	}
}

// closeBackend releases a GPU backend (the CPU one holds nothing).
func closeBackend(be compute.Backend) {
	if c, ok := be.(interface{ Close() error }); ok {
		c.Close()
	}
}

// generator is the CPU or the GPU generator.
type generator interface {
	Generate(utts []wavenet.Utterance, opts wavenet.GenerateOptions) ([][]float32, error)
	Free()
}

// newGenerator builds the generator for m's backend: on a GPU the head
// samples on the device too (outputs.Device).
func newGenerator(m *wavenet.Model, head outputs.Head) (generator, func(), error) {
	if _, host := m.Backend().(compute.HostAccessor); host {
		g, err := wavenet.NewGenerator(m, head)
		if err != nil {
			return nil, nil, err
		}
		return g, g.Free, nil
	}
	dev, err := outputs.NewDevice(head, m.Backend())
	if err != nil {
		return nil, nil, err
	}
	g, err := wavenet.NewGPUGenerator(m, head, dev)
	if err != nil {
		dev.Free()
		return nil, nil, err
	}
	return g, func() { g.Free(); dev.Free() }, nil
}

// prepareOutputs creates where the outputs go (-o as a directory, or the
// directory of -o FILE.wav) and checks it is writable, before any synthesis.
// The returned Dirs undo the creation when the command then fails.
func prepareOutputs(out string, inputs int) (*outdir.Dirs, error) {
	dir := filepath.Dir(out)
	if inputs > 1 || !strings.HasSuffix(strings.ToLower(out), ".wav") {
		dir = out
	}
	d, err := outdir.Prepare(dir)
	if err != nil {
		return nil, fmt.Errorf("-o: %w", err)
	}
	return d, nil
}

// withDownmixHint names --downmix in the error of a WAV with several
// channels.
func withDownmixHint(err error) error {
	if strings.Contains(err.Error(), "expected mono") {
		return fmt.Errorf("%w (add --downmix to average the channels)", err)
	}
	return err
}

// gpuDefaultBatch is --batch 0's group size on a GPU.
const gpuDefaultBatch = 32

// synthInput is one validated input.
type synthInput struct {
	path   string
	mel    []float32 // frames x cin, normalised
	frames int
}

// readInputs reads and validates every input before any synthesis, and
// reports every bad one. The mels come back normalised with info's
// statistics (for a model) or, with raw, as log10 mels (for Griffin-Lim).
func readInputs(paths []string, info train.ModelInfo, raw bool, stderr io.Writer) ([]synthInput, error) {
	pp := info.Preprocess
	cin, hop := pp.Mel.NMels, pp.Mel.Hop
	var ex *melspec.Extractor
	var fir []float64
	if synthOpts.copySynthesis {
		var err error
		if ex, err = melspec.NewExtractor(pp.MelConfig()); err != nil {
			return nil, fmt.Errorf("checkpoint mel parameters: %w", err)
		}
		if pp.HighpassTaps > 0 {
			if fir, err = melspec.HighPassFIR(pp.HighpassTaps, pp.HighpassCutoff, float64(pp.SampleRate)); err != nil {
				return nil, fmt.Errorf("checkpoint high-pass parameters: %w", err)
			}
		}
	}
	normalised := !synthOpts.copySynthesis && synthOpts.melNormalized
	if needStats := raw == normalised; needStats && info.Stats == nil {
		fmt.Fprintln(stderr, "vocode: warning: the checkpoint has no mel statistics; using the mels as given")
	}
	ins := make([]synthInput, len(paths))
	var errs []error
	for i, p := range paths {
		in := synthInput{path: p}
		var err error
		if synthOpts.copySynthesis {
			var a *audio.Audio
			if a, err = audio.ReadWAV(p, audio.ReadOptions{Downmix: synthOpts.downmix}); err != nil {
				err = withDownmixHint(err)
			} else {
				switch {
				case a.SampleRate != pp.SampleRate:
					err = fmt.Errorf("%s: sample rate %d Hz, the model was trained at %d Hz (resample it first)", p, a.SampleRate, pp.SampleRate)
				case len(a.Samples) == 0:
					err = fmt.Errorf("%s: no samples", p)
				case len(a.Samples) > wavenet.MaxGenerateFrames*hop:
					err = fmt.Errorf("%s: %.1f minutes is longer than the %.0f-minute limit", p,
						float64(len(a.Samples))/float64(a.SampleRate)/60, float64(wavenet.MaxGenerateFrames*hop)/float64(pp.SampleRate)/60)
				default:
					// The training features were computed after the
					// recipe's high-pass (and a silence trim, skipped here
					// so the output keeps the input's length).
					y := a.Samples
					if fir != nil {
						y = make([]float32, len(a.Samples))
						melspec.FIRFilter(y, a.Samples, fir)
					}
					in.mel, in.frames = ex.Compute(y)
				}
			}
		} else {
			in.mel, in.frames, err = readMelInput(p, cin, normalised, stderr)
			if err != nil && strings.HasSuffix(strings.ToLower(p), ".wav") {
				err = fmt.Errorf("%w (a WAV file: add --copy-synthesis to resynthesise it from its own mel)", err)
			}
			if err == nil && in.frames > wavenet.MaxGenerateFrames {
				err = fmt.Errorf("%s: %d frames (%.1f minutes of audio) is more than the %d-frame limit; is it really a mel spectrogram?",
					p, in.frames, float64(in.frames*hop)/float64(pp.SampleRate)/60, wavenet.MaxGenerateFrames)
			}
		}
		if err == nil && info.Stats != nil {
			switch {
			case !raw && !normalised:
				if e := info.Stats.Apply(in.mel); e != nil {
					err = fmt.Errorf("%s: normalising: %w", p, e)
				}
			case raw && normalised:
				if e := info.Stats.Invert(in.mel); e != nil {
					err = fmt.Errorf("%s: undoing the normalisation: %w", p, e)
				}
			}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ins[i] = in
	}
	if len(errs) > 1 {
		return nil, fmt.Errorf("%d of %d inputs are unusable (nothing was written):\n%w", len(errs), len(paths), errors.Join(errs...))
	}
	if len(errs) == 1 {
		return nil, fmt.Errorf("%w (nothing was written)", errs[0])
	}
	return ins, nil
}

// plan splits the threads. The per-sample products always run on one
// OpenBLAS thread: a multi-threaded sgemv sums in a different order, and
// sampling turns any last-bit difference into a different waveform, so
// output must not depend on --threads or --batch. With a batch, each thread
// drives its own group of utterances instead (measured here: small
// multi-threaded gemvs on 2 busy cores mostly wait on each other anyway).
//
// --wide runs one GEMM per layer over the whole batch on a single thread:
// measured here, two goroutines issuing single-threaded sgemms concurrently
// ran 3-4x slower than one (8.5-12 k vs 3 k samples/s at batch 16).
// perThreadBatch is how many utterances each CPU thread steps together by
// default.
const perThreadBatch = 8

func plan(threads, batch, inputs int, wide bool) (blasThreads, workers, b int) {
	if threads <= 0 {
		threads = runtime.GOMAXPROCS(0)
	}
	if batch == 0 {
		// Several utterances per thread: the step's matrix products then
		// load each weight once for all of them (cpu.PackedMatrix.MulVecs,
		// bit-identical to one by one), measured 2.85x the throughput (samples/s) of
		// one per thread at 16 on the 2-core development machine.
		batch = perThreadBatch * threads
		if wide {
			batch = 16
		}
	}
	batch = max(1, min(batch, inputs))
	if wide {
		return 1, 1, batch
	}
	return 1, max(1, min(threads, batch)), batch
}

func runSynth(cmd *cobra.Command, args []string) (err error) {
	stderr := cmd.ErrOrStderr()
	o := synthOpts
	if len(args) > 0 && !strings.Contains(args[0], ".") {
		if _, err := os.Stat(args[0]); err != nil {
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				return fmt.Errorf("unknown command %q for vocode; did you mean %s?", args[0], strings.Join(s, " or "))
			}
		}
	}
	switch {
	case len(args) == 0:
		return errors.New("no input: give one or more mel .npy files (or WAV files with --copy-synthesis); see vocode --help")
	case o.out == "":
		return errors.New("-o OUT.wav|DIR is required")
	case o.batch < 0:
		return fmt.Errorf("--batch %d: must be at least 1 (or 0 for one per thread)", o.batch)
	case o.threads < 0:
		return fmt.Errorf("--threads %d: must be >= 0", o.threads)
	case o.griffinLim && o.glIterations < 0:
		return fmt.Errorf("--griffin-lim-iters %d: must be >= 0", o.glIterations)
	}
	if err := outputs.CheckTemperature(o.temperature); err != nil {
		return fmt.Errorf("--temperature: %w", err)
	}
	gpuStep, err := wavenet.ParseGPUStep(o.gpuStep)
	if err != nil {
		return fmt.Errorf("--gpu-step: %w", err)
	}
	outs, err := outputPaths(args, o.out, ".wav", "-feats")
	if err != nil {
		return err
	}
	if o.griffinLim {
		return runGriffinLim(cmd, args, outs)
	}
	path, source, cleanup, err := resolveModel(o.checkpoint)
	if err != nil {
		return err
	}
	defer cleanup()
	if path, err = train.ResolveCheckpoint(path); err != nil {
		return fmt.Errorf("model from %s: %w", source, err)
	}
	if o.device == "cuda" {
		// The GPU step kernels do not read excitation channels yet
		// (wavenet.ErrNoGPUExcitation): such a model runs on the CPU.
		if mi, err := evalModelInfo(path); err == nil && mi.Model.ExcitationChannels > 0 {
			fmt.Fprintf(stderr, "vocode: %s takes an excitation input, which the GPU generator does not support yet; synthesising on the CPU\n", source)
			o.device = "cpu"
		}
	}
	blasThreads, workers, batch := plan(o.threads, o.batch, len(args), o.wide)
	if o.device == "cuda" {
		// Lockstep groups on the GPU of up to gpuDefaultBatch inputs (the
		// batch measured in docs/benchmarks.md; each input holds its
		// upsampled mel on the device, 70 MB per 10 s).
		workers, batch = 1, o.batch
		if batch == 0 {
			batch = min(len(args), gpuDefaultBatch)
		}
	}
	be, err := newBackend(o.device, blasThreads)
	if err != nil {
		return err
	}
	defer closeBackend(be)
	m, head, info, meta, err := train.LoadModel(path, be, !o.noEMA)
	if err != nil {
		return fmt.Errorf("model from %s: %w", source, err)
	}
	defer m.Free()
	cfg := m.Config()
	weights := "EMA"
	if o.noEMA {
		weights = "raw"
	}
	where := path
	if strings.HasPrefix(source, "built-in") {
		where = "embedded"
		if q := model.Quality(); q != "" && !model.Untrained() {
			where += " (" + q + ")"
		}
	}
	fmt.Fprintf(stderr, "vocode: model: %s: %s (step %d, head %q, %s weights, %d layers %d/%d/%d, hop %d, %d Hz)\n",
		source, where, meta.Step, info.Head, weights, cfg.Layers, cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels,
		cfg.HopSize(), info.Preprocess.SampleRate)
	pp := info.Preprocess
	if pp.Mel.Hop != cfg.HopSize() || pp.Mel.NMels != cfg.CinChannels {
		return fmt.Errorf("%s: inconsistent checkpoint: mel hop %d / %d mels, model hop %d / %d mel channels", path, pp.Mel.Hop, pp.Mel.NMels, cfg.HopSize(), cfg.CinChannels)
	}
	ins, err := readInputs(args, info, false, stderr)
	if err != nil {
		return err
	}
	dirs, err := prepareOutputs(o.out, len(ins))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			dirs.Undo()
		}
	}()
	gen, freeGen, err := newGenerator(m, head)
	if err != nil {
		return err
	}
	defer freeGen()

	utts := make([]wavenet.Utterance, len(ins))
	total := int64(0)
	for i, in := range ins {
		utts[i] = wavenet.Utterance{Mel: in.mel, Seed: o.seed + uint64(i)}
		total += int64(in.frames * cfg.HopSize())
	}
	post, err := postfilterOptions(o.postfilter)
	if err != nil {
		return err
	}
	exc, err := newExcitationSource(info, post)
	if err != nil {
		return fmt.Errorf("model from %s: %w", source, err)
	}
	if err := exc.add(utts, stderr); err != nil {
		return err
	}
	voicedTemp, err := exc.voicedTemperature(o.voicedTemp, cmd.Flags().Changed("voiced-temperature"))
	if err != nil {
		return fmt.Errorf("--voiced-temperature: model from %s: %w", source, err)
	}
	rate := pp.SampleRate
	bar := newSamplesBar(total, rate, stderr, quiet)
	var (
		mu      sync.Mutex
		werrs   []error
		elapsed = make([]time.Duration, len(ins))
	)
	began := time.Now()
	_, err = gen.Generate(utts, wavenet.GenerateOptions{
		Batch: batch, Workers: workers, Wide: o.wide, GPUStep: gpuStep, Temperature: o.temperature,
		VoicedTemperature: voicedTemp,
		Progress:          bar.add,
		OnDone: func(i int, y []float32) {
			pp.Restore(y)
			y, err := exc.postfilter(i, y)
			if err == nil {
				err = audio.WriteWAV16(outs[i], y, rate)
			}
			mu.Lock()
			defer mu.Unlock()
			elapsed[i] = time.Since(began)
			if err != nil {
				werrs = append(werrs, fmt.Errorf("%s: %w", outs[i], err))
			}
		},
	})
	bar.finish()
	if err != nil {
		return err
	}
	if !quiet {
		w := cmd.OutOrStdout()
		for i, in := range ins {
			sec := float64(in.frames*cfg.HopSize()) / float64(rate)
			fmt.Fprintf(w, "%s -> %s: %d frames, %.2f s of audio (done after %.1f s)\n", in.path, outs[i], in.frames, sec, elapsed[i].Seconds())
		}
		d := time.Since(began).Seconds()
		fmt.Fprintf(w, "%d samples in %.1f s: %.0f samples/s, %.3fx real time\n", total, d, float64(total)/d, float64(total)/d/float64(rate))
	}
	return errors.Join(werrs...)
}

// samplesBar is a progress bar over samples that shows samples/s and the
// real-time factor. Generate reports every step (one sample per active
// utterance), so counts are batched before touching the bar.
type samplesBar struct {
	bar     *cliutil.Bar
	rate    int
	pending atomic.Int64
	start   time.Time
	done    atomic.Int64
	mu      sync.Mutex
}

func newSamplesBar(total int64, rate int, w io.Writer, quiet bool) *samplesBar {
	b := &samplesBar{rate: rate, start: time.Now()}
	b.bar = cliutil.NewBarOptions(total, "vocode", w, quiet, cliutil.BarOptions{Unit: "samples"})
	return b
}

func (b *samplesBar) add(n int) {
	if b.pending.Add(int64(n)) < 2048 {
		return
	}
	b.flush()
}

func (b *samplesBar) flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := b.pending.Swap(0)
	if n == 0 {
		return
	}
	done := b.done.Add(n)
	if d := time.Since(b.start).Seconds(); d > 0 {
		rtf := float64(done) / d / float64(b.rate)
		b.bar.Describe(fmt.Sprintf("vocode x%.3f real time", rtf))
	}
	b.bar.Add64(n)
}

func (b *samplesBar) finish() {
	b.flush()
	b.bar.Finish()
}
