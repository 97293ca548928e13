package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/train"
)

// TestMkDefault: --untrained writes a loadable placeholder; --run copies a
// run's newest checkpoint without its optimizer state and it loads with the
// same EMA weights.
// fakeRun writes the --untrained placeholder into dir/placeholder and, as
// if it had been trained to step, a run dir/run whose checkpoint carries
// optimizer state.
func fakeRun(t *testing.T, dir string, step int64) (ck *train.Checkpoint, placeholder, run, saved string) {
	t.Helper()
	placeholder = filepath.Join(dir, "placeholder")
	if err := mk("", placeholder, true); err != nil {
		t.Fatal(err)
	}
	ck, err := train.Load(placeholder)
	if err != nil {
		t.Fatal(err)
	}
	ck.Config.Step = step
	ck.Optimizer = train.AdamTensors(ck.Weights, ck.Weights)
	ck.Config.Adam.Step = step
	run = filepath.Join(dir, "run")
	if saved, err = train.SaveStep(run, ck); err != nil {
		t.Fatal(err)
	}
	return ck, placeholder, run, saved
}

func TestMkDefault(t *testing.T) {
	dir := t.TempDir()
	ck, _, run, saved := fakeRun(t, dir, 12)
	if _, err := os.Stat(filepath.Join(saved, train.OptimizerFile)); err != nil {
		t.Fatalf("the test run should carry optimizer state: %v", err)
	}
	out := filepath.Join(dir, "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mk(run, out, false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(out, train.OptimizerFile)); !os.IsNotExist(err) {
		t.Errorf("optimizer state copied: %v", err)
	}
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, _, _, meta, err := train.LoadModel(out, be, true)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if meta.Step != 12 {
		t.Errorf("step %d, want 12", meta.Step)
	}
	got, err := train.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if !train.Equal(got.EMA, ck.EMA) {
		t.Error("EMA weights changed")
	}
	if err := mk("", out, false); err == nil {
		t.Error("no --run and no --untrained accepted")
	}
}

// TestWriteQuality: QUALITY gets the failing gates of the first model row
// at temperature 1, and is emptied when they all pass.
func TestWriteQuality(t *testing.T) {
	dir := t.TempDir()
	gl := evaluate.Row{Checkpoint: "griffin-lim", Quality: &evaluate.QualityStats{Periodicity: evaluate.Stat{Mean: 0.7}}}
	model := evaluate.Row{Checkpoint: "run", HeadSpec: "mulaw --bins 256", Temperature: 1, Quality: &evaluate.QualityStats{
		LevelDiffDB: evaluate.Stat{Mean: 1}, VoicingAgreement: evaluate.Stat{Mean: 0.9}, GrossPitchError: evaluate.Stat{Mean: 0.05},
		BandMCD: evaluate.Stat{Mean: 9.5}, Periodicity: evaluate.Stat{Mean: 0.8}}}
	cold := model
	cold.Temperature = 0.8
	cold.Quality = &evaluate.QualityStats{}
	write := func(rows ...evaluate.Row) string {
		for i := range rows {
			if rows[i].HeadSpec != "" {
				rows[i].Gates = evaluate.SpeechGates(rows[i], &gl)
			}
		}
		b, err := json.Marshal(map[string]any{"rows": append([]evaluate.Row{gl}, rows...)})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "eval.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		q := filepath.Join(dir, "QUALITY")
		if err := writeQuality(p, q); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(q)
		return string(got)
	}
	if got := write(cold, model); got != "measured on held-out speech it fails 1 of 6 speech gates: band MCD 9.5 dB (docs/evaluation.md)\n" {
		t.Errorf("QUALITY %q", got)
	}
	model.Quality.BandMCD.Mean = 4
	if got := write(model); got != "" {
		t.Errorf("all gates pass, QUALITY %q", got)
	}
	if err := writeQuality(filepath.Join(dir, "missing.json"), filepath.Join(dir, "Q")); err == nil {
		t.Error("a missing eval file accepted")
	}
}

// TestSaveTrainState: the run's newest checkpoint, optimizer included,
// lands in the state directory as a step directory that --resume finds.
func TestSaveTrainState(t *testing.T) {
	dir := t.TempDir()
	ck, ph, run, _ := fakeRun(t, dir, 34)
	state := filepath.Join(dir, "state")
	if err := saveTrainState(run, state); err != nil {
		t.Fatal(err)
	}
	latest, err := train.Latest(state)
	if err != nil || filepath.Base(latest) != "step-000000034" {
		t.Fatalf("latest %q, %v", latest, err)
	}
	got, err := train.Load(latest)
	if err != nil || got.Optimizer == nil || !train.Equal(got.Weights, ck.Weights) {
		t.Fatalf("state %v (optimizer %v)", err, got != nil && got.Optimizer != nil)
	}
	if err := saveTrainState(ph, filepath.Join(dir, "s2")); err == nil {
		t.Error("a checkpoint without optimizer state accepted")
	}
}
