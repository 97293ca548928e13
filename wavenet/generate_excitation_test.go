package wavenet

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/outputs"
)

// excModel is a tiny mu-law model with E excitation channels and lag lag
// taps.
func excModel(t *testing.T, E, lag int) (*Model, outputs.Head) {
	t.Helper()
	h, err := outputs.New("mulaw --bins 16")
	if err != nil {
		t.Fatal(err)
	}
	cfg := TinyConfig(h.Channels(), h.InputChannels(), 8)
	cfg.ExcitationChannels, cfg.LagTaps = E, lag
	m, err := New(cfg, newCPU(t), 5)
	if err != nil {
		t.Fatal(err)
	}
	return m, h
}

// excGenerator is excModel's model with a CPU Generator, both freed when
// the test ends.
func excGenerator(t *testing.T, E, lag int) (*Model, outputs.Head, *Generator) {
	t.Helper()
	m, h := excModel(t, E, lag)
	t.Cleanup(m.Free)
	g, err := NewGenerator(m, h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Free)
	return m, h, g
}

// TestGenerateExcitationMatchesForward: with excitation channels, the
// incremental step outputs equal the parallel Forward fed the generated
// sequence plus the same excitation rows, and the excitation changes what
// is generated (first_conv reads it).
func TestGenerateExcitationMatchesForward(t *testing.T) {
	const E = 2
	m, h := excModel(t, E, 0)
	defer m.Free()
	cfg := m.Config()
	g, err := NewGenerator(m, h)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	const frames = 13
	C, O, Q, hop := cfg.CinChannels, cfg.OutChannels, cfg.InputChannels, cfg.HopSize()
	T := frames * hop
	rng := rand.New(rand.NewPCG(8, 9))
	mel := randMel(rng, frames, C)
	exc := make([]float32, E*T)
	for i := range exc {
		exc[i] = float32(math.Sin(0.3 * float64(i)))
	}
	steps := make([]float32, T*O)
	g.trace = func(u, t int, logits []float32) { copy(steps[t*O:(t+1)*O], logits) }
	ys, err := g.Generate([]Utterance{{Mel: mel, Seed: 1, Excitation: exc}}, GenerateOptions{ChunkFrames: 3})
	if err != nil {
		t.Fatal(err)
	}
	y := ys[0]

	// Parallel reference: x = [enc(y[t-1]) rows | excitation rows].
	if In := cfg.FirstConvInputs(); In != Q+E {
		t.Fatalf("FirstConvInputs %d, want %d", In, Q+E)
	}
	out := forwardOutputsExc(t, m, h, mel, y, exc)
	worst, scale := stepsVsParallel(steps, out, T, O)
	if worst > 1e-4*max(1, scale) {
		t.Errorf("max |incremental - parallel| = %.3g (scale %.3g)", worst, scale)
	}

	// Another excitation, same seed and mel: another waveform.
	exc2 := make([]float32, E*T)
	ys2, err := g.Generate([]Utterance{{Mel: mel, Seed: 1, Excitation: exc2}}, GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(y, ys2[0]) {
		t.Error("a zero excitation generated the same waveform: the excitation is not read")
	}
}

// TestGenerateExcitationErrors: a missing or misshapen excitation, or one
// given to a model without excitation channels, is refused by name.
func TestGenerateExcitationErrors(t *testing.T) {
	m, _, g := excGenerator(t, 2, 0)
	cfg := m.Config()
	frames := 4
	mel := make([]float32, frames*cfg.CinChannels)
	T := frames * cfg.HopSize()
	for _, c := range []struct {
		exc  []float32
		want string
	}{
		{nil, "excitation has 0 values, the model wants 2 channels"},
		{make([]float32, T), "excitation has 16 values"},
	} {
		_, err := g.Generate([]Utterance{{Mel: mel, Excitation: c.exc}}, GenerateOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("excitation of %d values: error %v, want %q", len(c.exc), err, c.want)
		}
	}
	_, _, pg := excGenerator(t, 0, 0)
	_, err := pg.Generate([]Utterance{{Mel: mel, Excitation: make([]float32, 2*T)}}, GenerateOptions{})
	if err == nil || !strings.Contains(err.Error(), "the model takes none") {
		t.Errorf("excitation for a plain model: error %v", err)
	}
}

// TestConfigExcitationLimits: excitation_channels is bounded like every
// other field, and grows first_conv's input axis.
func TestConfigExcitationLimits(t *testing.T) {
	cfg := TinyConfig(16, 16, 8)
	for _, e := range []int{-1, MaxExcitationChannels + 1} {
		c := cfg
		c.ExcitationChannels = e
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "excitation_channels") {
			t.Errorf("excitation_channels %d: %v", e, err)
		}
	}
	c := cfg
	c.ExcitationChannels = 2
	for _, ti := range c.Tensors() {
		if ti.Name == "first_conv.weight_v" && ti.Shape[1] != 18 {
			t.Errorf("first_conv.weight_v shape %v, want 18 inputs", ti.Shape)
		}
	}
}
