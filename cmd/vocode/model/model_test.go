package model

import (
	"testing"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/train"
)

// TestEmbeddedLoads: the embedded checkpoint extracts to a directory the
// ordinary loader accepts (checksums included), with EMA weights, a head
// matching the model, the reference mel front end, and under 5 MB.
func TestEmbeddedLoads(t *testing.T) {
	dir := t.TempDir()
	if err := Extract(dir); err != nil {
		t.Fatal(err)
	}
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, _, info, meta, err := train.LoadModel(dir, be, true)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	cfg := m.Config()
	if cfg.CinChannels != 80 || cfg.HopSize() != 256 || info.Preprocess.SampleRate != 22050 || info.Preprocess.Mel.Hop != 256 {
		t.Errorf("embedded model: %d mels, hop %d, %d Hz: want the reference front end (80, 256, 22050)", cfg.CinChannels, cfg.HopSize(), info.Preprocess.SampleRate)
	}
	if !Untrained() && (info.Stats == nil || meta.Step == 0) {
		t.Errorf("a trained default model must carry mel statistics and its step (stats %v, step %d)", info.Stats != nil, meta.Step)
	}
	entries, err := files.ReadDir(Dir)
	if err != nil {
		t.Fatal(err)
	}
	var size int64
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		size += fi.Size()
		if e.Name() == train.OptimizerFile {
			t.Errorf("the embedded checkpoint carries %s: mkdefault should drop it", e.Name())
		}
	}
	if size > 5<<20 {
		t.Errorf("embedded checkpoint is %d bytes, over the 5 MB budget", size)
	}
}
