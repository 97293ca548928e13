package train

import (
	"math"
	"sort"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// The input at t is the previous sample (0 at t = 0), scalar or one-hot.
func TestEncodeInputs(t *testing.T) {
	wave := []float32{0.5, -0.25, 1, -1, 0.125, 0.75}
	const B, T = 2, 3
	g, _ := outputs.New("gaussian")
	x := make([]float32, B*T)
	encodeInputs(g, wave, B, T, x)
	want := []float32{0, 0.5, -0.25, 0, -1, 0.125}
	for i := range want {
		if x[i] != want[i] {
			t.Fatalf("scalar input %v, want %v", x, want)
		}
	}
	ml, err := outputs.NewMuLaw(8)
	if err != nil {
		t.Fatal(err)
	}
	x = make([]float32, B*8*T)
	encodeInputs(ml, wave, B, T, x)
	for b := 0; b < B; b++ {
		for tt := 0; tt < T; tt++ {
			prev := 0.0
			if tt > 0 {
				prev = float64(wave[b*T+tt-1])
			}
			for c := 0; c < 8; c++ {
				v := x[(b*8+c)*T+tt]
				if (c == ml.Class(prev)) != (v == 1) || (v != 0 && v != 1) {
					t.Fatalf("one-hot input b=%d t=%d class %d: channel %d = %v", b, tt, ml.Class(prev), c, v)
				}
			}
		}
	}
}

func TestMeanSE(t *testing.T) {
	// By hand: mean 2.5, sample variance 5/3, se = sqrt(5/3)/2.
	m, se := MeanSE([]float64{1, 2, 3, 4})
	if m != 2.5 || math.Abs(se-math.Sqrt(5.0/3)/2) > 1e-15 {
		t.Fatalf("MeanSE = %v, %v", m, se)
	}
	if m, se := MeanSE([]float64{-3}); m != -3 || se != 0 {
		t.Fatalf("one value: %v, %v", m, se)
	}
}

func TestCapUtterance(t *testing.T) {
	const hop, frames, cin, pad = 4, 5, 2, 2
	u := &ljspeech.Utterance{ID: "u", Frames: frames, Cin: cin, CinPad: pad, Wave: make([]float32, frames*hop), Mel: make([]float32, cin*(frames+2*pad))}
	for i := range u.Wave {
		u.Wave[i] = float32(i)
	}
	for i := range u.Mel {
		u.Mel[i] = float32(i)
	}
	if CapUtterance(u, 0, hop) != u || CapUtterance(u, 100, hop) != u {
		t.Fatal("no cap should return the utterance itself")
	}
	c := CapUtterance(u, 11, hop) // 2 whole frames
	if c.Frames != 2 || len(c.Wave) != 8 || c.Wave[7] != 7 || len(c.Mel) != cin*(2+2*pad) {
		t.Fatalf("capped: %+v", c)
	}
	// Channel 1 starts at column 0 of row 1 (width 9 in u, 6 in c).
	if c.Mel[0] != 0 || c.Mel[5] != 5 || c.Mel[6] != 9 || c.Mel[11] != 14 {
		t.Fatalf("capped mel %v", c.Mel)
	}
	if c := CapUtterance(u, 1, hop); c.Frames != 1 {
		t.Fatalf("cap below a frame keeps one frame, got %d", c.Frames)
	}
}

func TestUpsampleScales(t *testing.T) {
	for _, c := range []struct {
		hop  int
		want []int
	}{{256, []int{4, 4, 4, 4}}, {300, []int{4, 3, 5, 5}}, {200, []int{4, 2, 5, 5}}, {2, []int{2}}, {1, []int{1}}} {
		got, err := UpsampleScales(c.hop)
		if err != nil || len(got) != len(c.want) {
			t.Fatalf("hop %d: %v %v", c.hop, got, err)
		}
		p := 1
		for i := range got {
			p *= got[i]
			if got[i] != c.want[i] {
				t.Fatalf("hop %d: %v, want %v", c.hop, got, c.want)
			}
		}
		if p != c.hop {
			t.Fatalf("hop %d: product %d", c.hop, p)
		}
	}
	if _, err := UpsampleScales(2 * 17); err == nil {
		t.Fatal("a prime factor of 17 should be refused")
	}
}

// Every preset gives a valid model for its head on an 80-mel hop-256 dump,
// with the paper's/recipe's shapes.
func TestPresets(t *testing.T) {
	want := map[string]struct{ in, out, layers, stacks, res int }{
		"tiny": {1, 30, 6, 2, 16}, "mulaw256": {256, 256, 30, 3, 128}, "cat256": {256, 256, 24, 4, 128},
		"mol": {1, 30, 24, 4, 128}, "gaussian": {1, 2, 24, 4, 128},
		"adacat30": {1, 30, 24, 4, 128}, "adacat256": {1, 256, 24, 4, 128}, "adacat512": {1, 512, 24, 4, 128},
	}
	if len(PresetNames()) != len(want) {
		t.Fatalf("presets %v", PresetNames())
	}
	for _, name := range PresetNames() {
		p, err := LookupPreset(name)
		if err != nil {
			t.Fatal(err)
		}
		h, err := outputs.New(p.Head)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := ModelForHead(p.Model, h, 80, 256)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		w := want[name]
		if m.InputChannels != w.in || m.OutChannels != w.out || m.Layers != w.layers || m.Stacks != w.stacks || m.ResidualChannels != w.res ||
			m.HopSize() != 256 || m.CinChannels != 80 || m.CinPad != 2 || !m.WeightNorm {
			t.Errorf("%s: %+v", name, m)
		}
	}
	a, _ := LookupPreset("adacat512")
	if h, _ := outputs.New(a.Head); h.(*outputs.AdaCat).Lambda() != 1e-5 {
		t.Error("adacat512 lambda")
	}
	ref := wavenet.ReferenceConfig(1, 1)
	if ref.GateChannels != 256 || ref.SkipChannels != 128 || ref.KernelSize != 3 {
		t.Errorf("reference config %+v", ref)
	}
	if _, err := LookupPreset("nope"); err == nil {
		t.Error("unknown preset accepted")
	}
	// Another hop gets its own scales.
	tiny, _ := LookupPreset("tiny")
	g, _ := outputs.New("gaussian")
	if m, err := ModelForHead(tiny.Model, g, 40, 200); err != nil || m.HopSize() != 200 || m.CinChannels != 40 {
		t.Errorf("hop 200: %+v %v", m, err)
	}
}

// The loop's gradient is that of the mean per-sample loss (scale 1/(B*T))
// with respect to the parameters: central differences of forwardLoss on
// the largest-gradient parameters of the tiny model, for a scalar-input head
// and a one-hot one. float32 forward passes limit this to ~1e-3 relative.
func TestStepGradientIsMeanLossGradient(t *testing.T) {
	for _, head := range []string{"gaussian", "mulaw --bins 32"} {
		cfg := tinyRun(t, head, 1)
		cfg.EvalInterval = 0
		tr, err := newTrainer(cfg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := tr.stage(3)
		if err != nil {
			t.Fatal(err)
		}
		m, be := tr.model, tr.be
		n := m.NumParams()
		tr.forwardLoss(&p)
		m.ZeroGrads()
		m.Backward(tr.ws, tr.ws.DOut(), compute.View{})
		grad := make([]float32, n)
		be.Download(grad, m.Grads())
		params := make([]float32, n)
		be.Download(params, m.Params())
		idx := make([]int, n)
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return math.Abs(float64(grad[idx[a]])) > math.Abs(float64(grad[idx[b]])) })
		for _, i := range idx[:6] {
			const eps = 1e-2
			at := func(v float32) float64 {
				q := append([]float32(nil), params...)
				q[i] = v
				be.Upload(m.Params(), q)
				return tr.forwardLoss(&p)
			}
			fd := (at(params[i]+eps) - at(params[i]-eps)) / (2 * eps)
			if d := math.Abs(fd - float64(grad[i])); d > 0.02*math.Abs(fd)+1e-4 {
				t.Errorf("%s: parameter %d: backward %.6g, central difference %.6g", head, i, grad[i], fd)
			}
		}
		tr.free()
	}
}
