// Command mkdefault writes vocode's embedded default checkpoint
// (cmd/vocode/model/default): the newest checkpoint of a training run with
// its optimizer state dropped (only the weights, EMA weights and config are
// needed to synthesise, and the binary should stay small), or with
// --untrained a freshly initialised model of the same shape, for bootstrapping
// a checkout that has no trained model yet.
//
//	go run ./cmd/vocode/model/mkdefault --run runs/default --out cmd/vocode/model/default
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

func main() {
	run := flag.String("run", "", "training run (or checkpoint) directory to take the newest checkpoint from")
	out := flag.String("out", "cmd/vocode/model/default", "checkpoint directory to write (replaced)")
	untrained := flag.Bool("untrained", false, "write a randomly initialised model instead (placeholder)")
	flag.Parse()
	if err := mk(*run, *out, *untrained); err != nil {
		fmt.Fprintln(os.Stderr, "mkdefault:", err)
		os.Exit(1)
	}
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
