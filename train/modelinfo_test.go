package train

import (
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/melspec"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

func tinyInfo(t *testing.T, head string) ModelInfo {
	h, err := outputs.New(head)
	if err != nil {
		t.Fatal(err)
	}
	cfg := wavenet.TinyConfig(h.Channels(), h.InputChannels(), 8)
	st := &melspec.Normalizer{Count: 3, Mean: make([]float64, 8), Std: make([]float64, 8)}
	for i := range st.Std {
		st.Mean[i], st.Std[i] = float64(i)*0.1, 1+float64(i)
	}
	return ModelInfo{Model: cfg, Head: h.Spec(), Preprocess: ljspeech.DefaultParams(), Stats: st}
}

// forwardOnce runs the model on fixed random inputs and returns its output.
func forwardOnce(t *testing.T, m *wavenet.Model) []float32 {
	cfg := m.Config()
	B, T := 2, 32
	ws, err := m.NewWorkspace(B, T)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Free()
	be := m.Backend()
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, B*cfg.InputChannels*T)
	for i := range x {
		x[i] = rng.Float32()*2 - 1
	}
	mel := make([]float32, B*cfg.CinChannels*(T/cfg.HopSize()+2*cfg.CinPad))
	for i := range mel {
		mel[i] = rng.Float32()
	}
	be.Upload(ws.X(), x)
	be.Upload(ws.Mel(), mel)
	out := m.Forward(ws, ws.X(), ws.Mel())
	got := make([]float32, B*cfg.OutChannels*T)
	be.Download(got, out)
	return got
}

func TestLoadModelRoundTripBitIdentical(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, head := range []string{"adacat --components 4 --lambda 0.001", "mulaw --bins 16"} {
		mi := tinyInfo(t, head)
		m, err := wavenet.New(mi.Model, be, 7)
		if err != nil {
			t.Fatal(err)
		}
		want := forwardOnce(t, m)
		var meta Meta
		meta.Format = FormatVersion
		if err := mi.SetMeta(&meta); err != nil {
			t.Fatal(err)
		}
		ts := FromModelTensors(m.ExportTensors())
		run := t.TempDir()
		dir, err := SaveStep(run, &Checkpoint{Config: meta, Weights: ts, EMA: ts})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{dir, run} {
			m2, h, got, _, err := LoadModel(path, be, true)
			if err != nil {
				t.Fatal(err)
			}
			if h.Spec() != mi.Head || got.Model.Layers != mi.Model.Layers || got.Stats.Std[3] != 4 || got.Preprocess.Preemphasis != mi.Preprocess.Preemphasis {
				t.Fatalf("info did not round-trip: %+v", got)
			}
			out := forwardOnce(t, m2)
			for i := range want {
				if out[i] != want[i] {
					t.Fatalf("%s: output %d = %g after reload, want %g", head, i, out[i], want[i])
				}
			}
			m2.Free()
		}
		m.Free()
	}
	var _ compute.Backend = be
}

func TestLoadModelRejectsMismatches(t *testing.T) {
	be, _ := cpu.New(cpu.Options{})
	mi := tinyInfo(t, "gaussian")
	m, _ := wavenet.New(mi.Model, be, 1)
	defer m.Free()
	ts := FromModelTensors(m.ExportTensors())
	save := func(mi ModelInfo) string {
		var meta Meta
		meta.Format = FormatVersion
		mi.SetMeta(&meta)
		dir := filepath.Join(t.TempDir(), "ck")
		if err := Save(dir, &Checkpoint{Config: meta, Weights: ts}); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	wrongHead := mi
	wrongHead.Head = "adacat --components 16"
	badStats := mi
	badStats.Stats = &melspec.Normalizer{Mean: []float64{0}, Std: []float64{1}}
	for _, c := range []struct {
		dir, want string
	}{
		{save(wrongHead), "needs 32 output"},
		{save(badStats), "stats have 1 dimensions"},
		{t.TempDir(), "no config.json"},
	} {
		_, _, _, _, err := LoadModel(c.dir, be, false)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("error %v, want %q", err, c.want)
		}
	}
}
