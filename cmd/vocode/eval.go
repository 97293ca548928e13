package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/compute/cuda"
	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/melspec"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// evalSynthesizerFor builds the synthesis function of a checkpoint for eval
// and listening-test export: on the CPU the incremental generator
// (wavenet.Generator) on its own copy of the model on a single-threaded
// OpenBLAS backend (the per-sample products must not depend on the thread
// count, as in vocode synth), a batch's utterances spread over one worker
// per CPU; with device "cuda" the GPU generator, the batch in lockstep. The
// n-th utterance synthesised samples with seed+n, at sampling temperature
// temp. It is a variable so tests can stand in for the generator; free
// releases everything.
var evalSynthesizerFor = func(ck string, ema bool, seed uint64, temp float64, device string) (syn evaluate.Synthesize, free func(), err error) {
	if mi, err := evalModelInfo(ck); err == nil && mi.Model.ExcitationChannels > 0 {
		// The GPU generator does not take excitation channels yet
		// (wavenet.ErrNoGPUExcitation).
		device = "cpu"
	}
	be, err := newBackend(device, 1)
	if err != nil {
		return nil, nil, err
	}
	m, head, mi, _, err := train.LoadModel(ck, be, ema)
	if err != nil {
		closeBackend(be)
		return nil, nil, err
	}
	post, err := postfilterOptions(evalOpts.postfilter)
	if err != nil {
		m.Free()
		closeBackend(be)
		return nil, nil, err
	}
	exc, err := newExcitationSource(mi, post)
	if err != nil {
		m.Free()
		closeBackend(be)
		return nil, nil, fmt.Errorf("%s: %w", ck, err)
	}
	g, freeGen, err := newGenerator(m, head)
	if err != nil {
		m.Free()
		closeBackend(be)
		return nil, nil, fmt.Errorf("%s: %w", ck, err)
	}
	cfg := m.Config()
	next := seed
	syn = func(mels [][]float32, frames []int) ([][]float32, error) {
		C, P := cfg.CinChannels, cfg.CinPad
		utts := make([]wavenet.Utterance, len(mels))
		for i, mel := range mels {
			F := frames[i]
			Fp := F + 2*P
			if len(mel) != C*Fp {
				return nil, fmt.Errorf("mel of %d values, want %d channels x %d padded frames", len(mel), C, Fp)
			}
			// The generator takes the unpadded mel, frames x channels (it
			// pads itself); ours is channel-major with the padding.
			rows := make([]float32, F*C)
			for f := 0; f < F; f++ {
				for c := 0; c < C; c++ {
					rows[f*C+c] = mel[c*Fp+f+P]
				}
			}
			utts[i] = wavenet.Utterance{Mel: rows, Seed: next}
			next++
		}
		if err := exc.add(utts, io.Discard); err != nil {
			return nil, err
		}
		workers := max(1, min(runtime.GOMAXPROCS(0), len(utts)))
		vt := 0.0
		if mi.Model.ExcitationChannels > 0 {
			vt = evalOpts.voicedTemp
		}
		ys, err := g.Generate(utts, wavenet.GenerateOptions{Batch: len(utts), Workers: workers, Temperature: temp, VoicedTemperature: vt})
		if err != nil || !post.Enabled() {
			return ys, err
		}
		// The postfilter works on audio; the table wants the network's
		// domain back (evaluate.Postprocess undoes this exactly, but for
		// float rounding).
		pp := mi.Preprocess
		for i, y := range ys {
			pp.Restore(y)
			a, err := exc.postfilter(i, y)
			if err != nil {
				return nil, err
			}
			melspec.Scale(a, a, float32(pp.Gain))
			melspec.PreEmphasis(a, a, pp.Preemphasis)
			ys[i] = a
		}
		return ys, nil
	}
	return syn, func() { freeGen(); m.Free(); closeBackend(be) }, nil
}

// evalModelInfo reads a checkpoint's model description without its weights.
func evalModelInfo(ck string) (train.ModelInfo, error) {
	dir, err := train.ResolveCheckpoint(ck)
	if err != nil {
		return train.ModelInfo{}, err
	}
	path := filepath.Join(dir, train.ConfigFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return train.ModelInfo{}, err
	}
	meta, err := train.ParseMeta(data)
	if err != nil {
		return train.ModelInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	mi, err := train.ParseModelInfo(meta)
	if err != nil {
		return mi, fmt.Errorf("%s: %w", path, err)
	}
	return mi, nil
}

// newEvalBackend opens the device of the teacher-forced pass; free releases
// it. Synthesis always runs on the CPU (the generator's per-sample step needs
// host memory).
func newEvalBackend(device string) (be compute.Backend, free func(), err error) {
	switch device {
	case "cpu":
		c, err := cpu.New(cpu.Options{})
		if err != nil {
			return nil, nil, fmt.Errorf("--device cpu: %w", err)
		}
		return c, func() {}, nil
	case "cuda":
		g, err := cuda.New(cuda.Options{})
		if err != nil {
			return nil, nil, fmt.Errorf("--device cuda: %w", err)
		}
		return g, func() { g.Close() }, nil
	}
	return nil, nil, fmt.Errorf("--device %q: want cpu or cuda", device)
}

// evalPathList is a repeatable string flag. pflag's own string-array flag
// remembers across in-process runs that it was set, so a second run would
// append to the first run's list.
type evalPathList []string

// String is empty for an empty list, so help shows no "(default [])".
func (s *evalPathList) String() string {
	if len(*s) == 0 {
		return ""
	}
	return fmt.Sprint([]string(*s))
}
func (s *evalPathList) Set(v string) error { *s = append(*s, v); return nil }
func (s *evalPathList) Type() string       { return "path" }

// evalTemps is a repeatable, comma-separated list of sampling temperatures
// (a custom flag for the same reason as evalPathList). Empty means {1}.
type evalTemps []float64

func (s *evalTemps) String() string {
	if len(*s) == 0 {
		return ""
	}
	return fmt.Sprint([]float64(*s))
}
func (s *evalTemps) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		t, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", f)
		}
		if err := outputs.CheckTemperature(t); err != nil {
			return err
		}
		*s = append(*s, t)
	}
	return nil
}
func (s *evalTemps) Type() string { return "t[,t...]" }

var evalOpts struct {
	checkpoints evalPathList
	temps       evalTemps
	glIters     int
	data        string
	split       string
	out         string
	noSynth     bool
	maxUtts     int
	chunk       int
	raw         bool
	seed        uint64
	device      string
	voicedTemp  float64
	postfilter  string
}

var evalCmd = &cobra.Command{
	Use:   "eval --checkpoint RUN... --data DUMP [--split eval] [-o TABLE.json]",
	Short: "Compare checkpoints with the original and Griffin-Lim: bits/sample, MCD, pitch, voicing, level",
	Long: `For every checkpoint (a run directory means its newest checkpoint), score the
utterances of a split of a preprocessed dump (--split all: every utterance,
for a held-out corpus preprocessed on its own):
  - bits/sample: -log2 p(y) under the head's exact continuous density on
    [-1,1], teacher-forced (the true previous sample fed back), EMA weights;
  - after free-running synthesis (skip with --no-synthesis), against the
    original recording:
      MCD (dB): 25 coefficients, alpha 0.41, c0 excluded, DTW-aligned, full band;
      band MCD (dB): 24th order, frame-aligned, speech frames, the spectrum
        outside the mel's 125-7600 Hz counted for neither signal;
      log-mel L1: mean |log10 mel difference| over speech frames;
      voicing agr.: fraction of speech frames with the original's
        voiced/unvoiced decision (autocorrelation peak > 0.45, 60-400 Hz);
      GPE: frames voiced in both with F0 more than 20% off, in %;
      F0 RMSE: in cents, over the other frames voiced in both;
      periodicity: mean autocorrelation peak of the synthesis where the
        original is voiced (espeak-ng originals: about 0.86);
      level: RMS in dBFS, synthesis minus original; clipped: % of samples at
        16-bit full scale; DC: mean sample value.
Every number is a mean ± standard error over utterances. With synthesis the
table starts with two baselines on the same utterances: "original" (the
recording against itself: the ceiling) and "griffin-lim" (60 iterations of
fast Griffin-Lim from the mel, no model). Speech frames are those within
40 dB of the original's loudest.

--temperature 1,0.7 adds a row per checkpoint and temperature (bits do not
depend on it). A dump whose mel statistics differ from a checkpoint's (a
held-out corpus) is normalised with the checkpoint's statistics.
The table is printed as markdown; -o also writes it as JSON (per-utterance
numbers included). A .md output path writes the markdown instead.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		return runEval(cmd.OutOrStdout(), cmd.ErrOrStderr())
	},
}

func init() {
	f := evalCmd.Flags()
	f.Var(&evalOpts.checkpoints, "checkpoint", "checkpoint or run directory, or "+builtinName+" for vocode's built-in model (repeat the flag for several)")
	f.StringVar(&evalOpts.data, "data", "", "preprocessed dump directory (required)")
	f.StringVar(&evalOpts.split, "split", "eval", "subset of the dump: train, dev, eval or all")
	f.Var(&evalOpts.temps, "temperature", "sampling temperatures of the synthesis, comma-separated or repeated (default 1)")
	f.Float64Var(&evalOpts.voicedTemp, "voiced-temperature", defaultVoicedTemperature, "sampling temperature where the mel is voiced, for checkpoints with an excitation input, as vocode synthesises them (others ignore it; 0: --temperature everywhere)")
	f.StringVar(&evalOpts.postfilter, "postfilter", "comb+envelope", "after synthesis, as vocode: comb+envelope, envelope, comb or none (the network's raw output)")
	f.IntVar(&evalOpts.glIters, "griffin-lim-iters", melspec.DefaultGriffinLimOptions().Iterations, "iterations of the Griffin-Lim baseline row")
	f.StringVarP(&evalOpts.out, "out", "o", "", "also write the table here (JSON, or markdown when the name ends in .md)")
	f.BoolVar(&evalOpts.noSynth, "no-synthesis", false, "bits/sample only (no MCD or log-mel L1)")
	f.IntVar(&evalOpts.maxUtts, "max-utterances", 0, "score only the first N utterances of the split (0 = all)")
	f.IntVar(&evalOpts.chunk, "chunk-frames", 32, "mel frames per teacher-forced pass (memory bound)")
	f.BoolVar(&evalOpts.raw, "raw-weights", false, "evaluate the raw weights instead of the EMA weights")
	f.Uint64Var(&evalOpts.seed, "seed", 1, "sampling seed for synthesis (utterance n of a checkpoint uses seed+n)")
	f.StringVar(&evalOpts.device, "device", "cpu", "compute device of the teacher-forced pass and the synthesis: cpu or cuda")
	evalCmd.MarkFlagRequired("checkpoint")
	evalCmd.MarkFlagRequired("data")
	rootCmd.AddCommand(evalCmd)
}

// evalSplitIDs opens the dump and returns the first max ids of a split.
func evalSplitIDs(data, split string, max int) (*ljspeech.Dump, []string, error) {
	d, err := ljspeech.OpenDump(data)
	if err != nil {
		return nil, nil, err
	}
	ids, err := d.Split.Subset(split)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", data, err)
	}
	if len(ids) == 0 {
		return nil, nil, fmt.Errorf("%s: split %q is empty", data, split)
	}
	if max > 0 && max < len(ids) {
		ids = ids[:max]
	}
	return d, ids, nil
}

// evalLoader returns the utterance loader of checkpoint ck on dump d. It
// refuses a dump whose preprocessing differs from the one the model was
// trained on (its numbers would be meaningless); a dump with other mel
// statistics (a held-out corpus preprocessed on its own) is normalised with
// the checkpoint's statistics, as vocode normalises a mel, and says so.
func evalLoader(ck string, mi train.ModelInfo, d *ljspeech.Dump, stderr io.Writer) (func(id string) (*ljspeech.Utterance, error), error) {
	a, _ := json.Marshal(mi.Preprocess)
	b, _ := json.Marshal(d.Params)
	if string(a) != string(b) {
		return nil, fmt.Errorf("%s: trained on preprocessing %s, but dump %s has %s", ck, a, d.Dir, b)
	}
	st := d.Stats
	a, _ = json.Marshal(mi.Stats)
	b, _ = json.Marshal(d.Stats)
	if string(a) != string(b) {
		if mi.Stats == nil {
			return nil, fmt.Errorf("%s: has no mel statistics, and dump %s was normalised with other ones", ck, d.Dir)
		}
		st = mi.Stats
		if !quiet {
			fmt.Fprintf(stderr, "vocode: %s: dump %s has other mel statistics (not its training data); using the checkpoint's\n", ck, d.Dir)
		}
	}
	cinPad := mi.Model.CinPad
	// The teacher-forced pass needs the excitation a model takes (from the
	// dump's own mel; synthesis derives it from the normalised mel it is
	// given, as vocode does).
	addExc, err := train.ExcitationAdder(d, mi.Model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ck, err)
	}
	return func(id string) (*ljspeech.Utterance, error) {
		u, err := d.LoadUtteranceNormalized(id, cinPad, st)
		if err != nil {
			return nil, err
		}
		if addExc != nil {
			if err := addExc(u); err != nil {
				return nil, err
			}
		}
		return u, nil
	}, nil
}

func runEval(stdout, stderr io.Writer) error {
	if evalOpts.maxUtts < 0 {
		return fmt.Errorf("--max-utterances %d < 0", evalOpts.maxUtts)
	}
	if _, err := postfilterOptions(evalOpts.postfilter); err != nil {
		return err
	}
	d, ids, err := evalSplitIDs(evalOpts.data, evalOpts.split, evalOpts.maxUtts)
	if err != nil {
		return err
	}
	be, free, err := newEvalBackend(evalOpts.device)
	if err != nil {
		return err
	}
	defer free()
	var rows []evaluate.Row
	if !evalOpts.noSynth {
		if rows, err = evalBaselines(d, ids, stderr); err != nil {
			return err
		}
	}
	for _, ck := range evalOpts.checkpoints {
		path, cleanup := ck, func() {}
		if ck == builtinName {
			if path, cleanup, err = extractBuiltin(); err != nil {
				return err
			}
		}
		rs, err := evalCheckpoint(path, be, d, ids, stderr)
		cleanup()
		if err != nil {
			return err
		}
		for i := range rs {
			rs[i].Checkpoint = ck
		}
		rows = append(rows, rs...)
	}
	if !evalOpts.noSynth {
		gl := &rows[1] // evalBaselines: original, then Griffin-Lim
		for i := range rows {
			if rows[i].HeadSpec != "" {
				rows[i].Gates = evaluate.SpeechGates(rows[i], gl)
			}
		}
	}
	md := evaluate.Markdown(rows)
	if g := evaluate.GatesMarkdown(rows); g != "" {
		md += "\nSpeech gates (held-out speech; level ±3 dB, < 0.1% clipped, voicing >= 0.85, GPE <= 15%, band MCD <= 5 dB, periodicity above Griffin-Lim):\n\n" + g
	}
	fmt.Fprint(stdout, md)
	if evalOpts.out == "" {
		return nil
	}
	if len(evalOpts.out) > 3 && evalOpts.out[len(evalOpts.out)-3:] == ".md" {
		return atomicfile.WriteBytes(evalOpts.out, []byte(md), 0o644)
	}
	js, err := json.MarshalIndent(map[string]any{"data": evalOpts.data, "split": evalOpts.split, "rows": rows}, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteBytes(evalOpts.out, append(js, '\n'), 0o644)
}

// evalBaselines scores the original (against itself: the ceiling) and
// Griffin-Lim from the dump's mels on ids.
func evalBaselines(d *ljspeech.Dump, ids []string, stderr io.Writer) ([]evaluate.Row, error) {
	opt := evaluate.Options{MCep: evaluate.DefaultMCepConfig(), Preprocess: d.Params}
	load := func(id string) (*ljspeech.Utterance, error) { return d.LoadUtterance(id, 0) }
	bar := cliutil.NewBar(int64(2*len(ids)), "eval baselines", stderr, quiet)
	defer bar.Finish()
	opt.Progress = func() { bar.Add(1) }
	orig, err := evaluate.Baseline("original", ids, load, func(u *ljspeech.Utterance) ([]float32, error) {
		return evaluate.Postprocess(u.Wave, d.Params), nil
	}, opt)
	if err != nil {
		return nil, err
	}
	gl, err := melspec.NewGriffinLim(d.Params.MelConfig())
	if err != nil {
		return nil, err
	}
	glOpt := melspec.DefaultGriffinLimOptions()
	glOpt.Iterations = evalOpts.glIters
	name := fmt.Sprintf("griffin-lim (%d it.)", glOpt.Iterations)
	n := 0
	glRow, err := evaluate.Baseline(name, ids, load, func(u *ljspeech.Utterance) ([]float32, error) {
		mel, frames, err := d.LoadFeats(u.ID)
		if err != nil {
			return nil, err
		}
		glOpt.Seed = evalOpts.seed + uint64(n)
		n++
		return gl.Synthesize(mel, frames, glOpt)
	}, opt)
	if err != nil {
		return nil, err
	}
	return []evaluate.Row{orig, glRow}, nil
}

// evalCheckpoint scores one checkpoint: one row per sampling temperature,
// the teacher-forced bits computed once.
func evalCheckpoint(ck string, be compute.Backend, d *ljspeech.Dump, ids []string, stderr io.Writer) ([]evaluate.Row, error) {
	m, head, mi, meta, err := train.LoadModel(ck, be, !evalOpts.raw)
	if err != nil {
		return nil, err
	}
	defer m.Free()
	load, err := evalLoader(ck, mi, d, stderr)
	if err != nil {
		return nil, err
	}
	temps := []float64(evalOpts.temps)
	if len(temps) == 0 {
		temps = []float64{1}
	}
	var rows []evaluate.Row
	for i, temp := range temps {
		opt := evaluate.Options{Bits: evaluate.BitsOptions{ChunkFrames: evalOpts.chunk}, MCep: evaluate.DefaultMCepConfig(), Preprocess: mi.Preprocess, SkipBits: i > 0}
		var free func()
		if !evalOpts.noSynth {
			if opt.Synthesize, free, err = evalSynthesizerFor(ck, !evalOpts.raw, evalOpts.seed, temp, evalOpts.device); err != nil {
				return nil, err
			}
		}
		steps := 0
		if !opt.SkipBits {
			steps += len(ids)
		}
		if opt.Synthesize != nil {
			steps += len(ids)
		}
		label := "eval " + head.Name()
		if len(temps) > 1 {
			label += fmt.Sprintf(" t=%g", temp)
		}
		bar := cliutil.NewBar(int64(steps), label, stderr, quiet)
		opt.Progress = func() { bar.Add(1) }
		row, err := evaluate.Model(m, head, ids, load, opt)
		bar.Finish()
		if free != nil {
			free()
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ck, err)
		}
		row.Checkpoint, row.Step, row.Temperature = ck, meta.Step, temp
		if !evalOpts.noSynth {
			if mi.Model.ExcitationChannels > 0 {
				row.VoicedTemperature = evalOpts.voicedTemp
			}
			if evalOpts.postfilter != "none" {
				row.Postfilter = evalOpts.postfilter
			}
		}
		if i > 0 {
			row.Bits = rows[0].Bits
		}
		rows = append(rows, row)
		if evalOpts.noSynth {
			break // without synthesis the temperature changes nothing
		}
	}
	return rows, nil
}
