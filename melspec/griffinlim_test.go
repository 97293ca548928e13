package melspec

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio"
	"gonum.org/v1/gonum/dsp/fourier"
	"gonum.org/v1/gonum/mat"
)

// glHarmonic is a voiced-like test tone: harmonics of f0 (optionally with a
// 5 Hz vibrato of vib Hz) up to 7 kHz with 1/h amplitudes.
func glHarmonic(sr int, seconds, f0, vib float64) []float32 {
	n := int(seconds * float64(sr))
	y := make([]float32, n)
	for h := 1; float64(h)*f0 < 7000; h++ {
		var ph float64
		for i := range y {
			f := float64(h) * (f0 + vib*math.Sin(2*math.Pi*5*float64(i)/float64(sr)))
			ph += 2 * math.Pi * f / float64(sr)
			y[i] += float32(0.3 / float64(h) * math.Sin(ph+float64(h)))
		}
	}
	return y
}

func glSine(sr int, seconds, f float64) []float32 {
	y := make([]float32, int(seconds*float64(sr)))
	for i := range y {
		y[i] = float32(0.5 * math.Sin(2*math.Pi*f*float64(i)/float64(sr)))
	}
	return y
}

func glNew(t testing.TB, cfg Config) (*GriffinLim, *Extractor) {
	t.Helper()
	g, err := NewGriffinLim(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e, err := NewExtractor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g, e
}

// stftMagnitude is |STFT(y)| with the Extractor's framing (centred, reflect
// padded), frames x bins.
func (g *GriffinLim) stftMagnitude(y []float32) ([]float64, int) {
	c := g.cfg
	frames := c.Frames(len(y))
	fft := fourier.NewFFT(c.NFFT)
	buf := make([]float64, c.NFFT)
	coef := make([]complex128, g.nb)
	out := make([]float64, frames*g.nb)
	for t := 0; t < frames; t++ {
		s := t*c.Hop - c.NFFT/2
		for k, win := range g.window {
			buf[k] = win * float64(y[reflect(s+k, len(y))])
		}
		fft.Coefficients(coef, buf)
		for k, v := range coef {
			out[t*g.nb+k] = math.Hypot(real(v), imag(v))
		}
	}
	return out, frames
}

// spectralConvergence is ||  |STFT(y)| - S || / ||S|| over the first
// frames frames (y has frames*hop samples, so its STFT has one more).
func spectralConvergence(g *GriffinLim, y []float32, logmel []float32, frames int) float64 {
	r := g.newRun(frames, 1)
	r.magnitude(logmel)
	got, _ := g.stftMagnitude(y)
	var num, den float64
	for i, s := range r.mag {
		d := got[i] - s
		num += d * d
		den += s * s
	}
	return math.Sqrt(num / den)
}

func TestGriffinLimSTFTMatchesExtractor(t *testing.T) {
	cfg := DefaultConfig()
	g, e := glNew(t, cfg)
	y := glHarmonic(cfg.SampleRate, 0.3, 180, 0)
	want, frames := e.Compute(y)
	mag, f2 := g.stftMagnitude(y)
	if f2 != frames {
		t.Fatalf("frames %d vs %d", f2, frames)
	}
	fb := Filterbank(cfg)
	nb := cfg.Bins()
	var worst float64
	for tt := 0; tt < frames; tt++ {
		for m := 0; m < cfg.NMels; m++ {
			var acc float64
			for k := 0; k < nb; k++ {
				acc += float64(fb[m*nb+k]) * mag[tt*nb+k]
			}
			worst = max(worst, math.Abs(math.Log10(max(acc, 1e-10))-float64(want[tt*cfg.NMels+m])))
		}
	}
	if worst > 1e-5 {
		t.Errorf("log-mel of the Griffin-Lim STFT differs from Extractor by %g", worst)
	}
}

func TestGriffinLimPinvProjection(t *testing.T) {
	for _, cfg := range []Config{
		DefaultConfig(),
		{SampleRate: 16000, NFFT: 512, Hop: 160, WinLength: 400, NMels: 40, FMin: 0, FMax: 8000},
		// 128 mels on 257 bins: two bands coincide, the filterbank is rank deficient.
		{SampleRate: 16000, NFFT: 512, Hop: 160, WinLength: 400, NMels: 128, FMin: 0, FMax: 8000},
	} {
		g, err := NewGriffinLim(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nm, nb := cfg.NMels, cfg.Bins()
		fb := mat.NewDense(nm, nb, nil)
		for i, v := range Filterbank(cfg) {
			fb.Set(i/nb, i%nb, float64(v))
		}
		p := mat.NewDense(nb, nm, g.pinv)
		var fp, fpf, pfp mat.Dense
		fp.Mul(fb, p)
		fpf.Mul(&fp, fb)
		pfp.Mul(p, &fp)
		fpf.Sub(&fpf, fb)
		pfp.Sub(&pfp, p)
		e1 := mat.Norm(&fpf, math.Inf(1)) / mat.Norm(fb, math.Inf(1))
		e2 := mat.Norm(&pfp, math.Inf(1)) / mat.Norm(p, math.Inf(1))
		t.Logf("%d mels x %d bins: rank %d, |fb pinv fb - fb|/|fb| = %.2g, |pinv fb pinv - pinv|/|pinv| = %.2g", nm, nb, g.rank, e1, e2)
		if e1 > 1e-12 || e2 > 1e-12 {
			t.Errorf("%d mels: pseudo-inverse identities off by %g, %g", nm, e1, e2)
		}
		if nm <= 80 && g.rank != nm {
			t.Errorf("%d mels: rank %d, want full", nm, g.rank)
		}
		if nm == 128 && g.rank >= nm {
			t.Errorf("128 mels on 257 bins: rank %d, want the duplicate band dropped", g.rank)
		}
	}
}

func TestGriffinLimConvergence(t *testing.T) {
	cfg := DefaultConfig()
	g, e := glNew(t, cfg)
	mel, frames := e.Compute(glHarmonic(cfg.SampleRate, 1, 150, 8))
	var prev float64 = math.Inf(1)
	for _, it := range []int{0, 10, 60} {
		opt := DefaultGriffinLimOptions()
		opt.Iterations = it
		y, err := g.Synthesize(mel, frames, opt)
		if err != nil {
			t.Fatal(err)
		}
		sc := spectralConvergence(g, y, mel, frames)
		t.Logf("%2d iterations: spectral convergence %.4f", it, sc)
		if !(sc < prev) {
			t.Errorf("%d iterations: spectral convergence %.4f did not decrease (was %.4f)", it, sc, prev)
		}
		prev = sc
	}
	// Not near 0: pinv(fb) @ mel is a smeared, inconsistent spectrogram
	// that no signal has exactly (0.156 measured).
	if prev > 0.2 {
		t.Errorf("spectral convergence after 60 iterations %.4f > 0.2", prev)
	}
}

// meanLogMelError compares the log-mel of y with the input over frames x
// mels, counting only cells within 60 dB (3 in log10) of the loudest input
// cell: quieter cells are sidelobe leakage whose level no inversion keeps.
func meanLogMelError(e *Extractor, y, want []float32, frames int) float64 {
	got, _ := e.Compute(y)
	top := float32(math.Inf(-1))
	for _, v := range want {
		top = max(top, v)
	}
	var sum float64
	var n int
	for i, w := range want[:frames*e.cfg.NMels] {
		if w >= top-3 {
			sum += math.Abs(float64(got[i] - w))
			n++
		}
	}
	return sum / float64(n)
}

func TestGriffinLimLogMelRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	g, e := glNew(t, cfg)
	mel, frames := e.Compute(glHarmonic(cfg.SampleRate, 1, 120, 5))
	y, err := g.Synthesize(mel, frames, DefaultGriffinLimOptions())
	if err != nil {
		t.Fatal(err)
	}
	rp, err := g.RandomPhase(mel, frames, 0)
	if err != nil {
		t.Fatal(err)
	}
	gl, base := meanLogMelError(e, y, mel, frames), meanLogMelError(e, rp, mel, frames)
	t.Logf("mean |log10 mel error|: Griffin-Lim %.4f, random phase %.4f", gl, base)
	// 0.049 measured (about 1 dB); random phase is ~0.33.
	if gl > 0.07 {
		t.Errorf("Griffin-Lim log-mel mean abs error %.4f > 0.07", gl)
	}
	if gl > base/2 {
		t.Errorf("Griffin-Lim (%.4f) not clearly better than random phase (%.4f)", gl, base)
	}
}

func TestGriffinLimTonePitch(t *testing.T) {
	cfg := DefaultConfig()
	g, e := glNew(t, cfg)
	mel, frames := e.Compute(glSine(cfg.SampleRate, 1, 200))
	y, err := g.Synthesize(mel, frames, DefaultGriffinLimOptions())
	if err != nil {
		t.Fatal(err)
	}
	// Hann-windowed middle 0.5 s, zero-padded to 2^16 (0.34 Hz bins),
	// parabolic refinement of the strongest bin.
	const n = 1 << 16
	seg := y[len(y)/4 : len(y)/4+cfg.SampleRate/2]
	buf := make([]float64, n)
	for i, v := range seg {
		buf[i] = float64(v) * (0.5 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(len(seg))))
	}
	coef := fourier.NewFFT(n).Coefficients(nil, buf)
	mag := make([]float64, len(coef))
	for i, c := range coef {
		mag[i] = math.Log(math.Hypot(real(c), imag(c)) + 1e-300)
	}
	k := 1
	for i := 2; i < len(mag)-1; i++ {
		if mag[i] > mag[k] {
			k = i
		}
	}
	d := 0.5 * (mag[k-1] - mag[k+1]) / (mag[k-1] - 2*mag[k] + mag[k+1])
	f := (float64(k) + d) * float64(cfg.SampleRate) / n
	t.Logf("200 Hz tone comes back with its FFT peak at %.2f Hz", f)
	// 2%: mel bands are ~35 Hz apart here and the pseudo-inverse magnitude
	// itself already peaks at ~197 Hz (log-parabolic fit over bins).
	if math.Abs(f-200) > 4 {
		t.Errorf("FFT peak at %.2f Hz, want 200 +- 4", f)
	}
}

func TestGriffinLimLengthDeterminismErrors(t *testing.T) {
	cfg := DefaultConfig()
	g, e := glNew(t, cfg)
	mel, frames := e.Compute(glHarmonic(cfg.SampleRate, 0.5, 170, 0))
	opt := DefaultGriffinLimOptions()
	opt.Iterations = 5
	for _, f := range []int{2, 3, 7, frames} {
		y, err := g.Synthesize(mel[:f*cfg.NMels], f, opt)
		if err != nil {
			t.Fatal(err)
		}
		if len(y) != f*cfg.Hop {
			t.Errorf("%d frames: %d samples, want %d", f, len(y), f*cfg.Hop)
		}
	}

	run := func(o GriffinLimOptions) []float32 {
		y, err := g.Synthesize(mel, frames, o)
		if err != nil {
			t.Fatal(err)
		}
		return y
	}
	a := run(opt)
	o1, o3 := opt, opt
	o1.Workers, o3.Workers = 1, 3
	if !slices.Equal(a, run(o1)) || !slices.Equal(a, run(o3)) {
		t.Error("output depends on Workers")
	}
	o2 := opt
	o2.Seed = 1
	if slices.Equal(a, run(o2)) {
		t.Error("seeds 0 and 1 give the same output")
	}
	rp, err := g.RandomPhase(mel, frames, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rp, run(GriffinLimOptions{Seed: 4})) {
		t.Error("RandomPhase differs from Synthesize with 0 iterations")
	}

	nan := slices.Clone(mel)
	nan[17] = float32(math.NaN())
	inf := slices.Clone(mel)
	inf[3] = float32(math.Inf(1))
	for _, tc := range []struct {
		name   string
		mel    []float32
		frames int
		opt    GriffinLimOptions
		want   string
	}{
		{"short mel", mel[:len(mel)-1], frames, opt, "want"},
		{"long mel", append(slices.Clone(mel), 0), frames, opt, "want"},
		{"wrong frames", mel, frames + 1, opt, "want"},
		{"one frame", mel[:cfg.NMels], 1, opt, "at least 2 frames"},
		{"NaN", nan, frames, opt, "frame 0 mel 17"},
		{"Inf", inf, frames, opt, "not finite"},
		{"negative iterations", mel, frames, GriffinLimOptions{Iterations: -1}, "iterations"},
		{"NaN momentum", mel, frames, GriffinLimOptions{Momentum: math.NaN()}, "momentum"},
		{"negative momentum", mel, frames, GriffinLimOptions{Momentum: -0.5}, "momentum"},
		{"bad init", mel, frames, GriffinLimOptions{Init: 7}, "init"},
	} {
		_, err := g.Synthesize(tc.mel, tc.frames, tc.opt)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := NewGriffinLim(Config{}); err == nil {
		t.Error("NewGriffinLim accepted an empty Config")
	}
}

func glWriteNpy(t *testing.T, path string, rows, cols int, data []float64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := npyio.Write(f, mat.NewDense(rows, cols, data)); err != nil {
		t.Fatal(err)
	}
}

// TestGriffinLimMatchesNumpy runs testdata/reference/griffinlim_ref.py, an
// independent numpy implementation, on the same log-mel and initial phases.
func TestGriffinLimMatchesNumpy(t *testing.T) {
	if out, err := exec.Command(pythonPath, "-c", "import numpy").CombinedOutput(); err != nil {
		t.Skipf("%s cannot import numpy (install python3-numpy): %v %s", pythonPath, err, out)
	}
	script := filepath.Join(refDir, "griffinlim_ref.py")
	cfg16 := Config{SampleRate: 16000, NFFT: 512, Hop: 160, WinLength: 400, NMels: 40, FMin: 0, FMax: 8000}
	for _, tc := range []struct {
		name string
		cfg  Config
		opt  GriffinLimOptions
	}{
		{"zero_phase_10it", DefaultConfig(), GriffinLimOptions{Iterations: 10, Momentum: 0.99, Init: PhaseZero}},
		{"random_phase_10it", DefaultConfig(), GriffinLimOptions{Iterations: 10, Momentum: 0.99, Init: PhaseRandom, Seed: 11}},
		{"zero_phase_60it", DefaultConfig(), GriffinLimOptions{Iterations: 60, Momentum: 0.99, Init: PhaseZero}},
		{"zero_phase_plain_gl", DefaultConfig(), GriffinLimOptions{Iterations: 10, Momentum: 0, Init: PhaseZero}},
		{"random_phase_0it", DefaultConfig(), GriffinLimOptions{Init: PhaseRandom, Seed: 5}},
		{"16k_win400_zero_phase_10it", cfg16, GriffinLimOptions{Iterations: 10, Momentum: 0.99, Init: PhaseZero}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			g, e := glNew(t, cfg)
			mel, frames := e.Compute(glHarmonic(cfg.SampleRate, 0.6, 140, 10))
			nm, nb := cfg.NMels, cfg.Bins()
			dir := t.TempDir()
			mel64 := make([]float64, len(mel))
			for i, v := range mel {
				mel64[i] = float64(v)
			}
			glWriteNpy(t, filepath.Join(dir, "logmel.npy"), frames, nm, mel64)
			if tc.opt.Init == PhaseRandom {
				// The same draw as glRun.initPhase, as angles in radians.
				rng := rand.New(rand.NewPCG(tc.opt.Seed, pcgStream))
				ph := make([]float64, frames*nb)
				for i := range ph {
					ph[i] = 2 * math.Pi * rng.Float64()
				}
				glWriteNpy(t, filepath.Join(dir, "phase.npy"), frames, nb, ph)
			}
			params, _ := json.Marshal(map[string]any{
				"config": cfg, "iterations": tc.opt.Iterations, "momentum": tc.opt.Momentum, "length": frames * cfg.Hop,
			})
			if err := os.WriteFile(filepath.Join(dir, "params.json"), params, 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(pythonPath, script, dir).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", script, err, out)
			}

			wantMag, shape := readNpy[float64](t, filepath.Join(dir, "magnitude.npy"))
			if fmt.Sprint(shape) != fmt.Sprint([]int{frames, nb}) {
				t.Fatalf("magnitude.npy shape %v, want [%d %d]", shape, frames, nb)
			}
			r := g.newRun(frames, 0)
			r.magnitude(mel)
			var magErr, magPeak float64
			for i, v := range r.mag {
				magErr = max(magErr, math.Abs(v-wantMag[i]))
				magPeak = max(magPeak, math.Abs(wantMag[i]))
			}

			got, err := g.Synthesize(mel, frames, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			want, shape := readNpy[float64](t, filepath.Join(dir, "audio.npy"))
			if len(shape) != 1 || len(want) != len(got) {
				t.Fatalf("audio.npy shape %v, Go gives %d samples", shape, len(got))
			}
			var yErr, yPeak float64
			for i, v := range got {
				yErr = max(yErr, math.Abs(float64(v)-want[i]))
				yPeak = max(yPeak, math.Abs(want[i]))
			}
			t.Logf("%d frames: magnitude max abs diff %.2g of peak %.3g; audio max abs diff %.2g of peak %.3g (%.2g relative)",
				frames, magErr, magPeak, yErr, yPeak, yErr/yPeak)
			if magErr > 1e-9*magPeak {
				t.Errorf("magnitude differs from numpy by %g (peak %g)", magErr, magPeak)
			}
			// float32 output rounding alone is ~6e-8 of the peak.
			if yErr > 1e-6*yPeak {
				t.Errorf("audio differs from numpy by %g, %.2g of the peak %g", yErr, yErr/yPeak, yPeak)
			}
		})
	}
}

// BenchmarkGriffinLim5s times the default 60-iteration synthesis of a 5 s
// clip (431 frames) with all GOMAXPROCS workers.
func BenchmarkGriffinLim5s(b *testing.B) {
	cfg := DefaultConfig()
	g, e := glNew(b, cfg)
	mel, frames := e.Compute(glHarmonic(cfg.SampleRate, 5, 130, 10))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := g.Synthesize(mel, frames, DefaultGriffinLimOptions()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/clip")
}
