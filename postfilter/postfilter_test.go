package postfilter

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/melspec"
)

const sr = 22050

// harmonic is n samples of a 10-harmonic tone at f0 Hz (amplitude 0.3).
func harmonic(n int, f0 float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		for h := 1; h <= 10; h++ {
			x[i] += 0.03 / math.Sqrt(float64(h)) * math.Sin(2*math.Pi*f0*float64(h)*float64(i)/sr+float64(h))
		}
	}
	return x
}

func snrDB(clean []float64, y []float32, from, to int) float64 {
	var s, e float64
	for i := from; i < to; i++ {
		s += clean[i] * clean[i]
		d := float64(y[i]) - clean[i]
		e += d * d
	}
	return 10 * math.Log10(s/e)
}

// TestCombRaisesHarmonicToNoise: on a voiced tone in white noise, given a
// period 2% off the true one, the comb finds the tone's period (bestLag
// within half a sample: a quarter-sample grid, and linear interpolation
// dulls the upper harmonics) and lifts the SNR against the clean tone by
// several dB per pass (theory for white noise and g=1: 10 log10(8/3) = 4.3
// dB, the tone passing at gain 1); where the period is 0 or the voicing 0
// it passes the audio unchanged.
func TestCombRaisesHarmonicToNoise(t *testing.T) {
	const n, f0 = 8192, 147.0
	clean := harmonic(n, f0)
	rng := rand.New(rand.NewPCG(1, 2))
	y := make([]float32, n)
	for i := range y {
		y[i] = float32(clean[i] + 0.01*rng.NormFloat64())
	}
	truth := sr / f0
	if got := bestLag(y, n/2, truth*1.02); math.Abs(got-truth) > 0.5 {
		t.Errorf("bestLag from a period 2%% long: %.2f, the tone's %.2f", got, truth)
	}
	period, voicing := make([]float32, n), make([]float32, n)
	for i := range period {
		period[i], voicing[i] = float32(truth*1.02), 1
	}
	before := snrDB(clean, y, 1024, n-1024)
	once := Comb(y, period, voicing, 1, 256)
	twice := Comb(once, period, voicing, 1, 256)
	s1, s2 := snrDB(clean, once, 1024, n-1024), snrDB(clean, twice, 1024, n-1024)
	t.Logf("SNR %.2f dB, one pass %.2f dB, two %.2f dB", before, s1, s2)
	if s1 < before+3.5 || s2 < s1+1.5 {
		t.Errorf("SNR %.2f dB -> %.2f -> %.2f: the comb does not lower the noise between the harmonics", before, s1, s2)
	}
	// Unvoiced: unchanged.
	if got := Comb(y, make([]float32, n), voicing, 1, 256); !slices.Equal(got, y) {
		t.Error("a zero period changed the audio")
	}
	if got := Comb(y, period, make([]float32, n), 1, 256); !slices.Equal(got, y) {
		t.Error("zero voicing changed the audio")
	}
}

// TestMatchEnvelope: white noise rescaled to the mel of a low-passed
// noise ends near that mel (mean |log10 difference| from above 0.3 to
// under 0.1 in two passes: overlap-add does not keep every frame's
// rescaling exactly), keeps its length, and audio whose mel already is the
// target comes back nearly unchanged.
func TestMatchEnvelope(t *testing.T) {
	cfg := melspec.DefaultConfig()
	ex, err := melspec.NewExtractor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	const frames = 40
	n := frames * cfg.Hop
	rng := rand.New(rand.NewPCG(3, 4))
	white, dark := make([]float32, n), make([]float32, n)
	var lp float64
	for i := range white {
		white[i] = float32(0.05 * rng.NormFloat64())
		lp = 0.9*lp + 0.1*0.3*rng.NormFloat64()
		dark[i] = float32(lp)
	}
	full, _ := ex.Compute(dark)
	target := full[:frames*cfg.NMels] // a vocoder's output has one frame fewer
	l1 := func(y []float32) float64 {
		m, _ := ex.Compute(y)
		var s float64
		for i, v := range target {
			s += math.Abs(float64(v - m[i]))
		}
		return s / float64(len(target))
	}
	before := l1(white)
	got, err := MatchEnvelope(white, target, cfg, 2, 20)
	if err != nil {
		t.Fatal(err)
	}
	after := l1(got)
	t.Logf("mean |log10 mel difference|: %.3f before, %.3f after", before, after)
	if len(got) != n || before < 0.3 || after > 0.1 {
		t.Errorf("%d samples; log-mel difference %.3f -> %.3f, want under 0.1", len(got), before, after)
	}
	same, err := MatchEnvelope(dark, target, cfg, 1, 20)
	if err != nil {
		t.Fatal(err)
	}
	var e, s float64
	for i := cfg.NFFT; i < n-cfg.NFFT; i++ {
		d := float64(same[i] - dark[i])
		e += d * d
		s += float64(dark[i] * dark[i])
	}
	if r := math.Sqrt(e / s); r > 0.05 {
		t.Errorf("audio already at its mel changed by %.3f of its RMS", r)
	}
	if _, err := MatchEnvelope(white, target[:len(target)-cfg.NMels*2], cfg, 1, 20); err == nil || !strings.Contains(err.Error(), "the mel has") {
		t.Errorf("a mel two frames short: %v", err)
	}
}

// TestApply: options are checked, none changes nothing, the comb needs a
// pitch per sample, and the output is clipped to [-1, 1].
func TestApply(t *testing.T) {
	cfg := melspec.DefaultConfig()
	n := 4 * cfg.Hop
	y := make([]float32, n)
	for i := range y {
		y[i] = float32(0.5 * math.Sin(float64(i)/7))
	}
	mel := make([]float32, 4*cfg.NMels)
	got, err := Apply(y, mel, nil, nil, cfg, Options{})
	if err != nil || !slices.Equal(got, y) || (Options{}).Enabled() {
		t.Errorf("no steps: changed %v, error %v", !slices.Equal(got, y), err)
	}
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{CombGain: 1.5, CombPasses: 1}, "comb gain"},
		{Options{CombGain: 1, CombPasses: 9}, "comb passes"},
		{Options{EnvelopePasses: 1}, "maximum gain"},
		{Options{CombGain: 1, CombPasses: 1}, "periods"},
	} {
		if _, err := Apply(y, mel, nil, nil, cfg, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.o, err, c.want)
		}
	}
	// A loud target mel: the envelope pass raises the audio past full scale.
	for i := range mel {
		mel[i] = 3
	}
	got, err = Apply(y, mel, nil, nil, cfg, Options{EnvelopePasses: 1, MaxGainDB: 40})
	if err != nil {
		t.Fatal(err)
	}
	clipped := 0
	for _, v := range got {
		if v > 1 || v < -1 {
			t.Fatalf("sample %v outside [-1, 1]", v)
		}
		if v == 1 || v == -1 {
			clipped++
		}
	}
	if clipped == 0 {
		t.Error("a 40 dB louder target clipped nothing: the gain was not applied")
	}
	if !Default().NeedsPitch() || !Default().Enabled() || Default().Validate() != nil {
		t.Errorf("Default() %+v", Default())
	}
}

// BenchmarkApply: the default postfilter on 3 s of a voiced tone in noise;
// reports seconds of audio per second of work (the anchor: real time).
func BenchmarkApply(b *testing.B) {
	cfg := melspec.DefaultConfig()
	ex, err := melspec.NewExtractor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const frames = 258 // 3.0 s at hop 256
	n := frames * cfg.Hop
	clean := harmonic(n, 140)
	rng := rand.New(rand.NewPCG(5, 6))
	y := make([]float32, n)
	period, voicing := make([]float32, n), make([]float32, n)
	for i := range y {
		y[i] = float32(clean[i] + 0.01*rng.NormFloat64())
		period[i], voicing[i] = sr/140, 1
	}
	full, _ := ex.Compute(y)
	mel := full[:frames*cfg.NMels]
	b.ResetTimer()
	for range b.N {
		if _, err := Apply(y, mel, period, voicing, cfg, Default()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)/sr*float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}
