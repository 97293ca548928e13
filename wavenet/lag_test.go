package wavenet

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/mulaw"
	"github.com/wavecat/wavecat/outputs"
)

// TestLagInput: each tap is the companded sample one rounded period back,
// offset -1, 0, +1; zero where unvoiced and wherever the index is not in
// the past [0, t).
func TestLagInput(t *testing.T) {
	y := []float32{0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7, -0.8}
	// Periods of samples 3..7 (start 3): 2.4 rounds to 2, 3.5 to 4.
	period := []float32{2.4, 0, 3.5, 2, 7}
	const taps = 3
	dst := make([]float32, taps*5)
	LagInput(dst, 5, y, period, 3, 5, taps)
	c := func(i int) float32 { return float32(mulaw.Compand(float64(y[i]), 255)) }
	// By hand: t=3 P=2, t=4 unvoiced, t=5 P=4, t=6 P=2, t=7 P=7; tap k
	// reads t-P+k-1 when that is in [0, t).
	want := [][]float32{
		{c(0), 0, c(0), c(3), 0},
		{c(1), 0, c(1), c(4), c(0)},
		{c(2), 0, c(2), c(5), c(1)},
	}
	for k := range taps {
		for j := range 5 {
			if got := dst[k*5+j]; got != want[k][j] {
				t.Errorf("tap %d, sample %d: %v, want %v", k, 3+j, got, want[k][j])
			}
		}
	}
	// A period of 1 with tap +1 would read sample t itself: refused (0).
	one := make([]float32, taps)
	LagInput(one, 1, y, []float32{1}, 4, 1, taps)
	if one[2] != 0 || one[1] != c(3) || one[0] != c(2) {
		t.Errorf("period 1 at t=4: taps %v, want [c(2) c(3) 0]", one)
	}
}

// TestGenerateLagMatchesForward: with lag taps, the incremental step reads
// its own generated past one period back, and its outputs equal the
// parallel Forward fed the generated sequence with lag rows built by an
// independent loop; the period changes what is generated.
func TestGenerateLagMatchesForward(t *testing.T) {
	m, h := excModel(t, 2, 3)
	defer m.Free()
	cfg := m.Config()
	// Make the lag weights large, so a wrong lag shows in the outputs.
	w := m.ExportTensors()
	for i, ti := range w {
		if ti.Name != "first_conv.weight_v" {
			continue
		}
		in := ti.Shape[1]
		for o := 0; o < ti.Shape[0]; o++ {
			for k := in - 3; k < in; k++ {
				w[i].Data[o*in+k] = float32(o%5) - 2
			}
		}
	}
	if err := m.ImportTensors(w); err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(m, h)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	const frames = 13
	C, O, hop := cfg.CinChannels, cfg.OutChannels, cfg.HopSize()
	T := frames * hop
	rng := rand.New(rand.NewPCG(8, 9))
	mel := randMel(rng, frames, C)
	exc := make([]float32, 2*T)
	period := make([]float32, T)
	for i := range T {
		exc[i] = float32(math.Sin(0.3 * float64(i)))
		exc[T+i] = float32(math.Cos(0.3 * float64(i)))
		if i%40 < 30 {
			period[i] = 5.3 + float32(i%7)
		}
	}
	steps := make([]float32, T*O)
	g.trace = func(u, t int, logits []float32) { copy(steps[t*O:(t+1)*O], logits) }
	ys, err := g.Generate([]Utterance{{Mel: mel, Seed: 1, Excitation: exc, Period: period}}, GenerateOptions{ChunkFrames: 3})
	if err != nil {
		t.Fatal(err)
	}
	y := ys[0]

	rows := make([]float32, (2+3)*T)
	copy(rows, exc)
	for tt := 0; tt < T; tt++ {
		if period[tt] == 0 {
			continue
		}
		p := int(math.Round(float64(period[tt])))
		for k := -1; k <= 1; k++ {
			if i := tt - p + k; i >= 0 {
				rows[(3+k)*T+tt] = float32(mulaw.Compand(float64(y[i]), 255))
			}
		}
	}
	out := forwardOutputsExc(t, m, h, mel, y, rows)
	worst, scale := stepsVsParallel(steps, out, T, O)
	if worst > 1e-4*max(1, scale) {
		t.Errorf("max |incremental - parallel| = %.3g (scale %.3g)", worst, scale)
	}

	ys2, err := g.Generate([]Utterance{{Mel: mel, Seed: 1, Excitation: exc, Period: make([]float32, T)}}, GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(y, ys2[0]) {
		t.Error("an unvoiced period generated the same waveform: the lag taps are not read")
	}
	_, err = g.Generate([]Utterance{{Mel: mel, Seed: 1, Excitation: exc}}, GenerateOptions{})
	if err == nil || !strings.Contains(err.Error(), "pitch period has 0 values") {
		t.Errorf("missing period: error %v", err)
	}
}

// TestConfigLagTaps: lag_taps is bounded, odd, needs excitation channels,
// and grows first_conv's input axis after the excitation's.
func TestConfigLagTaps(t *testing.T) {
	cfg := TinyConfig(16, 16, 8)
	cfg.ExcitationChannels = 2
	for _, c := range []struct {
		taps, exc int
		want      string
	}{
		{-1, 2, "lag_taps must be >= 0"},
		{MaxLagTaps + 2, 2, "exceeds the limit"},
		{2, 2, "must be odd"},
		{3, 0, "needs excitation channels"},
	} {
		k := cfg
		k.LagTaps, k.ExcitationChannels = c.taps, c.exc
		if err := k.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("lag_taps %d, excitation %d: %v, want %q", c.taps, c.exc, err, c.want)
		}
	}
	k := cfg
	k.LagTaps = 3
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, ti := range k.Tensors() {
		if ti.Name == "first_conv.weight_v" && ti.Shape[1] != 21 {
			t.Errorf("first_conv.weight_v shape %v, want 21 inputs", ti.Shape)
		}
	}
}

// TestVoicedTemperature: where the excitation is silent the voiced
// temperature changes nothing; where it is fully voiced a near-zero voiced
// temperature samples each step's most likely class; and it is refused for
// a model without excitation channels.
func TestVoicedTemperature(t *testing.T) {
	m, h, g := excGenerator(t, 2, 0)
	cfg := m.Config()
	const frames = 12
	C, O, hop := cfg.CinChannels, cfg.OutChannels, cfg.HopSize()
	T := frames * hop
	mel := randMel(rand.New(rand.NewPCG(3, 4)), frames, C)
	// Unvoiced for the first half, voiced (amplitude 1) after.
	exc := make([]float32, 2*T)
	for i := T / 2; i < T; i++ {
		exc[i], exc[T+i] = float32(math.Sin(0.2*float64(i))), float32(math.Cos(0.2*float64(i)))
	}
	gen := func(vt float64) ([]float32, []float32) {
		steps := make([]float32, T*O)
		g.trace = func(u, t int, logits []float32) { copy(steps[t*O:(t+1)*O], logits) }
		ys, err := g.Generate([]Utterance{{Mel: mel, Seed: 7, Excitation: exc}}, GenerateOptions{VoicedTemperature: vt})
		if err != nil {
			t.Fatal(err)
		}
		return ys[0], steps
	}
	plain, _ := gen(0)
	cold, steps := gen(1e-6)
	for i := 0; i < T/2; i++ {
		if plain[i] != cold[i] {
			t.Fatalf("sample %d (unvoiced): %v with a voiced temperature, %v without", i, cold[i], plain[i])
		}
	}
	mu := h.(*outputs.MuLaw)
	differ := 0
	for i := T / 2; i < T; i++ {
		best := 0
		for c := 1; c < O; c++ {
			if steps[i*O+c] > steps[i*O+best] {
				best = c
			}
		}
		if want := mu.Representative(best); cold[i] != want {
			t.Fatalf("sample %d (voiced, temperature 1e-6): %v, want the mode %v", i, cold[i], want)
		}
		if cold[i] != plain[i] {
			differ++
		}
	}
	if differ == 0 {
		t.Error("the voiced half is the same with and without the voiced temperature")
	}
	_, _, pg := excGenerator(t, 0, 0)
	_, err := pg.Generate([]Utterance{{Mel: mel}}, GenerateOptions{VoicedTemperature: 0.5})
	if err == nil || !strings.Contains(err.Error(), "needs a model with excitation") {
		t.Errorf("voiced temperature without excitation: %v", err)
	}
	if _, err := g.Generate([]Utterance{{Mel: mel, Excitation: exc}}, GenerateOptions{VoicedTemperature: -1}); err == nil {
		t.Error("a negative voiced temperature was accepted")
	}
}
