// Command mkdefault writes vocode's embedded default checkpoint
// (cmd/vocode/model/default): the newest checkpoint of a training run with
// its optimizer state dropped (only the weights, EMA weights and config are
// needed to synthesise, and the binary should stay small), or with
// --untrained a freshly initialised model of the same shape, for bootstrapping
// a checkout that has no trained model yet.
//
//	go run ./cmd/vocode/model/mkdefault --run runs/default --out cmd/vocode/model/default
//
// --eval EVAL.json (vocode eval -o on held-out speech) rewrites the QUALITY
// verdict beside --out from the checkpoint's speech gates, and --train-state
// DIR keeps the run's newest checkpoint with its optimizer state in DIR, so
// a later CPU run resumes it (scripts/train-default.sh).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

func main() {
	run := flag.String("run", "", "training run (or checkpoint) directory to take the newest checkpoint from")
	out := flag.String("out", "cmd/vocode/model/default", "checkpoint directory to write (replaced)")
	untrained := flag.Bool("untrained", false, "write a randomly initialised model instead (placeholder)")
	evalJSON := flag.String("eval", "", "vocode eval JSON of the run on held-out speech: rewrite QUALITY (beside --out) from its speech gates")
	state := flag.String("train-state", "", "also keep the run's newest checkpoint, optimizer included, in this directory (replaced)")
	flag.Parse()
	err := mk(*run, *out, *untrained)
	if err == nil && *evalJSON != "" {
		err = writeQuality(*evalJSON, filepath.Join(filepath.Dir(*out), "QUALITY"))
	}
	if err == nil && *state != "" {
		err = saveTrainState(*run, *state)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdefault:", err)
		os.Exit(1)
	}
}

// writeQuality writes the one-line verdict vocode prints for the built-in
// model: the first model row at temperature 1 of a vocode eval JSON, empty
// when it passes every speech gate.
func writeQuality(evalJSON, path string) error {
	data, err := os.ReadFile(evalJSON)
	if err != nil {
		return err
	}
	var table struct {
		Rows []evaluate.Row `json:"rows"`
	}
	if err := json.Unmarshal(data, &table); err != nil {
		return fmt.Errorf("%s: %w", evalJSON, err)
	}
	for _, r := range table.Rows {
		if r.Gates == nil || (r.Temperature != 0 && r.Temperature != 1) {
			continue
		}
		var fail []string
		for _, g := range r.Gates {
			if !g.Pass {
				fail = append(fail, g.String())
			}
		}
		text := ""
		if len(fail) == 0 {
			fmt.Printf("mkdefault: %s: %s; QUALITY emptied\n", r.Checkpoint, evaluate.GatesLine(r.Gates))
		} else {
			text = fmt.Sprintf("measured on held-out speech it fails %d of %d speech gates: %s (docs/evaluation.md)\n",
				len(fail), len(r.Gates), strings.Join(fail, ", "))
			fmt.Printf("mkdefault: QUALITY: %s", text)
		}
		return atomicfile.WriteBytes(path, []byte(text), 0o644)
	}
	return fmt.Errorf("%s: no model row with speech gates at temperature 1 (run vocode eval with synthesis)", evalJSON)
}

// saveTrainState replaces dir with the run's newest checkpoint, optimizer
// state included, as a step directory that --resume picks up.
func saveTrainState(run, dir string) error {
	src, err := train.ResolveCheckpoint(run)
	if err != nil {
		return err
	}
	ck, err := train.Load(src)
	if err != nil {
		return err
	}
	if ck.Optimizer == nil {
		return fmt.Errorf("%s: no optimizer state to resume from", src)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	saved, err := train.SaveStep(dir, ck)
	if err != nil {
		return err
	}
	fmt.Printf("mkdefault: training state %s\n", saved)
	return nil
}

// DefaultModel is the shape of the default model: the tiny preset widened
// to 12 layers of 32/64/32 channels (about 0.2 M parameters, under 2 MB
// with its EMA copy), with the AdaCat k=15 head.
func DefaultModel(head outputs.Head) (wavenet.Config, error) {
	c := wavenet.TinyConfig(1, 1, 80)
	c.Layers, c.Stacks = 12, 2
	c.ResidualChannels, c.GateChannels, c.SkipChannels = 32, 64, 32
	return train.ModelForHead(c, head, 80, 256)
}

func mk(run, out string, untrained bool) error {
	var ck *train.Checkpoint
	switch {
	case untrained:
		spec := "adacat --components 15 --lambda 0.0001"
		head, err := outputs.New(spec)
		if err != nil {
			return err
		}
		cfg, err := DefaultModel(head)
		if err != nil {
			return err
		}
		be, err := cpu.New(cpu.Options{BLAS: "gonum"})
		if err != nil {
			return err
		}
		m, err := wavenet.New(cfg, be, 1)
		if err != nil {
			return err
		}
		ts := train.FromModelTensors(m.ExportTensors())
		ck = &train.Checkpoint{Weights: ts, EMA: ts}
		mi := train.ModelInfo{Model: cfg, Head: spec, Preprocess: ljspeech.DefaultParams()}
		if err := mi.SetMeta(&ck.Config); err != nil {
			return err
		}
		ck.Config.Format = train.FormatVersion
		ck.Config.Extra = []byte(`{"untrained":true}`)
	case run != "":
		dir, err := train.ResolveCheckpoint(run)
		if err != nil {
			return err
		}
		if ck, err = train.Load(dir); err != nil {
			return err
		}
		if ck.EMA == nil {
			return fmt.Errorf("%s: no EMA weights (vocode uses them by default)", dir)
		}
		ck.Optimizer = nil
		ck.Config.Adam = train.AdamState{}
		fmt.Printf("mkdefault: %s (step %d)\n", dir, ck.Config.Step)
	default:
		return errors.New("give --run RUN or --untrained")
	}
	if err := os.RemoveAll(out); err != nil {
		return err
	}
	return train.Save(out, ck)
}
