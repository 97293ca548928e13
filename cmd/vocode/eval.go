package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/compute/cuda"
	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// evalSynthesizerFor builds the synthesis function of a checkpoint for eval
// and listening-test export: on the CPU the incremental generator
// (wavenet.Generator) on its own copy of the model on a single-threaded
// OpenBLAS backend (the per-sample products must not depend on the thread
// count, as in vocode synth), a batch's utterances spread over one worker
// per CPU; with device "cuda" the GPU generator, the batch in lockstep. The
// n-th utterance synthesised samples with seed+n. It is a variable so tests
// can stand in for the generator; free releases everything.
var evalSynthesizerFor = func(ck string, ema bool, seed uint64, device string) (syn evaluate.Synthesize, free func(), err error) {
	be, err := newBackend(device, 1)
	if err != nil {
		return nil, nil, err
	}
	m, head, _, _, err := train.LoadModel(ck, be, ema)
	if err != nil {
		closeBackend(be)
		return nil, nil, err
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
		workers := max(1, min(runtime.GOMAXPROCS(0), len(utts)))
		return g.Generate(utts, wavenet.GenerateOptions{Batch: len(utts), Workers: workers})
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

func (s *evalPathList) String() string     { return fmt.Sprint([]string(*s)) }
func (s *evalPathList) Set(v string) error { *s = append(*s, v); return nil }
func (s *evalPathList) Type() string       { return "path" }

var evalOpts struct {
	checkpoints evalPathList
	data        string
	split       string
	out         string
	noSynth     bool
	maxUtts     int
	chunk       int
	raw         bool
	seed        uint64
	device      string
}

var evalCmd = &cobra.Command{
	Use:   "eval --checkpoint RUN... --data DUMP [--split eval] [-o TABLE.json]",
	Short: "Compare checkpoints: teacher-forced bits/sample, MCD and log-mel L1 (the AdaCat paper's Table 3)",
	Long: `For every checkpoint (a run directory means its newest checkpoint), score the
utterances of a split of a preprocessed dump:
  - bits/sample: -log2 p(y) under the head's exact continuous density on
    [-1,1], teacher-forced (the true previous sample fed back), EMA weights,
    mean ± standard error over utterances;
  - after synthesis (skip with --no-synthesis): mel-cepstral distortion in dB
    (25 coefficients, alpha 0.41, c0 excluded, DTW-aligned) and the L1
    distance of log10 mel spectrograms, against the ground truth.
The table is printed as markdown; -o also writes it as JSON (per-utterance
numbers included). A .md output path writes the markdown instead.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		return runEval(cmd.OutOrStdout(), cmd.ErrOrStderr())
	},
}

func init() {
	f := evalCmd.Flags()
	f.Var(&evalOpts.checkpoints, "checkpoint", "checkpoint or run directory (repeat the flag for several)")
	f.StringVar(&evalOpts.data, "data", "", "preprocessed dump directory (required)")
	f.StringVar(&evalOpts.split, "split", "eval", "subset of the dump: train, dev or eval")
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

// evalCheckDump refuses a dump whose preprocessing differs from the one
// the model was trained on: its numbers would be meaningless.
func evalCheckDump(ck string, mi train.ModelInfo, d *ljspeech.Dump) error {
	a, _ := json.Marshal(mi.Preprocess)
	b, _ := json.Marshal(d.Params)
	if string(a) != string(b) {
		return fmt.Errorf("%s: trained on preprocessing %s, but dump %s has %s", ck, a, d.Dir, b)
	}
	a, _ = json.Marshal(mi.Stats)
	b, _ = json.Marshal(d.Stats)
	if string(a) != string(b) {
		return fmt.Errorf("%s: its mel normalisation statistics differ from dump %s's (a different training split?)", ck, d.Dir)
	}
	return nil
}

func runEval(stdout, stderr io.Writer) error {
	if evalOpts.maxUtts < 0 {
		return fmt.Errorf("--max-utterances %d < 0", evalOpts.maxUtts)
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
	for _, ck := range evalOpts.checkpoints {
		row, err := evalCheckpoint(ck, be, d, ids, stderr)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	md := evaluate.Markdown(rows)
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

func evalCheckpoint(ck string, be compute.Backend, d *ljspeech.Dump, ids []string, stderr io.Writer) (evaluate.Row, error) {
	m, head, mi, meta, err := train.LoadModel(ck, be, !evalOpts.raw)
	if err != nil {
		return evaluate.Row{}, err
	}
	defer m.Free()
	if err := evalCheckDump(ck, mi, d); err != nil {
		return evaluate.Row{}, err
	}
	opt := evaluate.Options{Bits: evaluate.BitsOptions{ChunkFrames: evalOpts.chunk}, MCep: evaluate.DefaultMCepConfig(), Preprocess: mi.Preprocess}
	if !evalOpts.noSynth {
		var free func()
		if opt.Synthesize, free, err = evalSynthesizerFor(ck, !evalOpts.raw, evalOpts.seed, evalOpts.device); err != nil {
			return evaluate.Row{}, err
		}
		defer free()
	}
	steps := len(ids)
	if opt.Synthesize != nil {
		steps *= 2 // bits, then synthesis and MCD
	}
	bar := cliutil.NewBar(int64(steps), "eval "+head.Name(), stderr, quiet)
	opt.Progress = func() { bar.Add(1) }
	cinPad := mi.Model.CinPad
	row, err := evaluate.Model(m, head, ids, func(id string) (*ljspeech.Utterance, error) { return d.LoadUtterance(id, cinPad) }, opt)
	bar.Finish()
	if err != nil {
		return row, fmt.Errorf("%s: %w", ck, err)
	}
	row.Checkpoint, row.Step = ck, meta.Step
	return row, nil
}
