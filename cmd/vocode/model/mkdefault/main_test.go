package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/train"
)

// TestMkDefault: --untrained writes a loadable placeholder; --run copies a
// run's newest checkpoint without its optimizer state and it loads with the
// same EMA weights.
func TestMkDefault(t *testing.T) {
	dir := t.TempDir()
	ph := filepath.Join(dir, "placeholder")
	if err := mk("", ph, true); err != nil {
		t.Fatal(err)
	}
	ck, err := train.Load(ph)
	if err != nil {
		t.Fatal(err)
	}
	// Pretend it was trained: give it optimizer state and save it as a run.
	ck.Config.Step = 12
	ck.Optimizer = train.AdamTensors(ck.Weights, ck.Weights)
	ck.Config.Adam.Step = 12
	run := filepath.Join(dir, "run")
	saved, err := train.SaveStep(run, ck)
	if err != nil {
		t.Fatal(err)
	}
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
