package evaluate

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/melspec"
)

// quality_ref.py is an independent numpy implementation of REFERENCE.md §5
// (see its docstring for where it takes different computational routes).
const (
	qualityRefScript = "testdata/quality_ref.py"
	qualityPython    = "/usr/bin/python3"
)

// qualityVoice describes a synthetic utterance as functions of time (s): F0 (Hz,
// <= 0 for no harmonic source), harmonic amplitude, spectral tilt (harmonic
// h has amplitude h^-tilt) and the level of white noise added.
type qualityVoice struct {
	f0, amp, tilt, noise func(t float64) float64
}

// render synthesises v for n samples with a phase-continuous harmonic
// source; rng drives the noise.
func (v qualityVoice) render(n int, rng *rand.Rand) []float32 {
	y := make([]float32, n)
	var ph float64
	for i := range y {
		t := float64(i) / qsr
		f, a := v.f0(t), v.amp(t)
		var s float64
		if f > 0 && a > 0 {
			tilt := v.tilt(t)
			for h := 1; float64(h)*f < 10000; h++ {
				s += math.Sin(float64(h)*ph) * math.Pow(float64(h), -tilt)
			}
			s *= a
			ph += 2 * math.Pi * f / qsr
		}
		y[i] = float32(s + v.noise(t)*rng.NormFloat64())
	}
	return y
}

// qualityIn reports whether t lies in [a, b).
func qualityIn(t, a, b float64) bool { return t >= a && t < b }

// qualityGate is 1 inside [a, b) with 20 ms raised-cosine edges, 0 outside.
func qualityGate(t, a, b float64) float64 {
	const e = 0.02
	switch {
	case t < a || t >= b:
		return 0
	case t < a+e:
		return 0.5 - 0.5*math.Cos(math.Pi*(t-a)/e)
	case t > b-e:
		return 0.5 - 0.5*math.Cos(math.Pi*(b-t)/e)
	}
	return 1
}

// qualityRefVoice: two voiced stretches with gliding, vibrato-modulated pitch and a
// moving tilt, an unvoiced noise burst between them, quiet edges.
var qualityRefVoice = qualityVoice{
	f0: func(t float64) float64 {
		vib := 1 + 0.015*math.Sin(2*math.Pi*5.5*t)
		if t < 1.25 {
			return (125 + 25*math.Sin(2*math.Pi*0.8*t)) * vib
		}
		return (190 - 60*(t-1.4)/1.2) * vib
	},
	amp: func(t float64) float64 {
		return 0.25*qualityGate(t, 0.1, 1.2)*(1+0.3*math.Sin(2*math.Pi*3*t)) + 0.3*qualityGate(t, 1.4, 2.6)
	},
	tilt:  func(t float64) float64 { return 1.3 + 0.4*math.Sin(2*math.Pi*1.1*t) },
	noise: func(t float64) float64 { return 1e-4 + 0.05*qualityGate(t, 1.22, 1.38) },
}

// qualityTestVoice is qualityRefVoice as a flawed vocoder might render it: +2% pitch
// early on, an octave jump, a silent gap, a noisy stretch, a brighter and
// louder second half that clips, and a DC offset (added by qualityPair).
var qualityTestVoice = qualityVoice{
	f0: func(t float64) float64 {
		f := qualityRefVoice.f0(t)
		switch {
		case qualityIn(t, 0.1, 0.6):
			return 1.02 * f
		case qualityIn(t, 0.7, 0.85):
			return 2 * f
		}
		return f
	},
	amp: func(t float64) float64 {
		a := qualityRefVoice.amp(t) * (1 - qualityGate(t, 0.9, 1.0))
		if t >= 1.4 {
			a *= 1.6
		}
		return a
	},
	tilt: func(t float64) float64 {
		if t >= 1.4 {
			return qualityRefVoice.tilt(t) - 0.3
		}
		return qualityRefVoice.tilt(t)
	},
	noise: func(t float64) float64 { return qualityRefVoice.noise(t) + 0.08*qualityGate(t, 1.6, 2.0) },
}

// qualityPair returns the designed reference and test signals (3 s).
func qualityPair() (ref, test []float32) {
	n := 3 * qsr
	ref = qualityRefVoice.render(n, rand.New(rand.NewPCG(11, 1)))
	test = qualityTestVoice.render(n, rand.New(rand.NewPCG(11, 2)))
	for i, v := range test {
		v += 0.003
		test[i] = max(-1, min(1, v)) // clip as a float pipeline would
	}
	return ref, test
}

type qualityRefOut struct {
	Measures map[string]*float64 `json:"measures"`
	Frames   struct {
		Speech     []bool    `json:"speech"`
		F0Ref      []float64 `json:"f0_ref"`
		F0Test     []float64 `json:"f0_test"`
		PeakRef    []float64 `json:"peak_ref"`
		PeakTest   []float64 `json:"peak_test"`
		VoicedRef  []bool    `json:"voiced_ref"`
		VoicedTest []bool    `json:"voiced_test"`
		BandMCD    []float64 `json:"band_mcd"`
		LogMelL1   []float64 `json:"log_mel_l1"`
	} `json:"frames"`
}

func runQualityRef(t *testing.T, ref, test []float32) qualityRefOut {
	t.Helper()
	dir := t.TempDir()
	rp, tp, op := filepath.Join(dir, "ref.npy"), filepath.Join(dir, "test.npy"), filepath.Join(dir, "out.json")
	if err := audio.WriteNPY(rp, ref, []int{len(ref)}); err != nil {
		t.Fatal(err)
	}
	if err := audio.WriteNPY(tp, test, []int{len(test)}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(qualityPython, qualityRefScript, "--ref", rp, "--test", tp, "--sr", fmt.Sprint(qsr), "--out", op).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", qualityRefScript, err, out)
	}
	data, err := os.ReadFile(op)
	if err != nil {
		t.Fatal(err)
	}
	var r qualityRefOut
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s output: %v", qualityRefScript, err)
	}
	return r
}

// TestQualityAgainstNumpy compares every measure, and the per-frame data
// behind them, with quality_ref.py. Tolerances: voicing agreement and gross
// pitch error 1e-4 (frame counts: every decision must agree), F0 RMSE 1e-6
// cents, periodicity 1e-9, level, clipped fraction and DC 1e-6 relative,
// band MCD 1e-6 dB, speech log-mel L1 1e-6; measured differences are
// ~1e-13 or below except log-mel (~1e-9, float32 mels).
func TestQualityAgainstNumpy(t *testing.T) {
	for _, mod := range []string{"numpy", "scipy"} {
		if out, err := exec.Command(qualityPython, "-c", "import "+mod).CombinedOutput(); err != nil {
			t.Skipf("%s cannot import %s (%v: %s): numpy reference check skipped", qualityPython, mod, err, strings.TrimSpace(string(out)))
		}
	}
	ex, err := melspec.NewExtractor(melspec.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	designedRef, designedTest := qualityPair()
	rng := rand.New(rand.NewPCG(5, 6))
	plain := speechLike(qsr, rng)
	noisy := make([]float32, len(plain)+777) // longer: Quality trims
	for i := range noisy {
		if i < len(plain) {
			noisy[i] = 0.7 * plain[i]
		}
		noisy[i] += float32(0.02 * rng.NormFloat64())
	}
	short := qualityTone(3000, func(t float64) float64 { return 210 + 400*t }, qualityConst(0.4))
	shortTest := qualityTone(3100, func(t float64) float64 { return 160 + 300*t }, qualityConst(0.45))

	cases := []struct {
		name      string
		ref, test []float32
	}{
		{"designed", designedRef, designedTest},
		{"noisy", plain, noisy},
		{"short", short, shortTest},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, d, err := QualityDetail(c.ref, c.test, qsr, ex)
			if err != nil {
				t.Fatal(err)
			}
			want := runQualityRef(t, c.ref, c.test)
			js, _ := json.Marshal(got)
			t.Logf("Go: %s", js)
			checkQualityFrames(t, d, want)

			w := want.Measures
			checkMeasure := func(name string, g float64, absTol, relTol float64) {
				t.Helper()
				wv := w[name]
				if wv == nil {
					if !math.IsNaN(g) {
						t.Errorf("%s: Go %g, numpy null", name, g)
					}
					return
				}
				diff := math.Abs(g - *wv)
				t.Logf("%-18s Go %-12.6g numpy %-12.6g |diff| %.2g", name, g, *wv, diff)
				if !(diff <= absTol || diff <= relTol*math.Abs(*wv)) {
					t.Errorf("%s: Go %.10g, numpy %.10g (diff %.3g; tolerance abs %g or rel %g)", name, g, *wv, diff, absTol, relTol)
				}
			}
			checkMeasure("voicing_agreement", got.VoicingAgreement, 1e-4, 0)
			checkMeasure("gross_pitch_error", got.GrossPitchError, 1e-4, 0)
			checkMeasure("f0_rmse_cents", got.F0RMSECents, 1e-6, 0)
			checkMeasure("periodicity", got.Periodicity, 1e-9, 0)
			checkMeasure("level_diff_db", got.LevelDiffDB, 0, 1e-6)
			checkMeasure("clipped_fraction", got.ClippedFraction, 0, 1e-6)
			checkMeasure("dc_offset", got.DCOffset, 1e-12, 1e-6)
			checkMeasure("band_mcd_db", got.BandMCD, 1e-6, 0)
			checkMeasure("log_mel_l1_speech", got.LogMelL1Speech, 1e-6, 0)
			for name, g := range map[string]int{"frames": got.Frames, "speech_frames": got.SpeechFrames,
				"voiced_ref": got.VoicedRef, "voiced_test": got.VoicedTest, "voiced_both": got.VoicedBoth} {
				if w[name] == nil || float64(g) != *w[name] {
					t.Errorf("%s: Go %d, numpy %v", name, g, w[name])
				}
			}
		})
	}
}

// checkQualityFrames compares the per-frame analysis and logs the largest
// differences (the measures' tolerances rest on these).
func checkQualityFrames(t *testing.T, d *QualityFrameData, w qualityRefOut) {
	t.Helper()
	f := w.Frames
	if len(f.Speech) != len(d.Speech) {
		t.Fatalf("numpy has %d frames, Go %d", len(f.Speech), len(d.Speech))
	}
	var decisions int
	var f0Rel, peakAbs, mcdAbs, melAbs float64
	for i := range d.Speech {
		if d.Speech[i] != f.Speech[i] || d.VoicedRef[i] != f.VoicedRef[i] || d.VoicedTest[i] != f.VoicedTest[i] {
			decisions++
			if decisions <= 5 {
				t.Errorf("frame %d: Go speech/voiced ref/voiced test %v/%v/%v (peaks %.6f %.6f), numpy %v/%v/%v",
					i, d.Speech[i], d.VoicedRef[i], d.VoicedTest[i], d.PeakRef[i], d.PeakTest[i], f.Speech[i], f.VoicedRef[i], f.VoicedTest[i])
			}
		}
		if d.VoicedRef[i] {
			f0Rel = math.Max(f0Rel, math.Abs(d.F0Ref[i]/f.F0Ref[i]-1))
		}
		if d.VoicedTest[i] {
			f0Rel = math.Max(f0Rel, math.Abs(d.F0Test[i]/f.F0Test[i]-1))
		}
		peakAbs = math.Max(peakAbs, math.Max(math.Abs(d.PeakRef[i]-f.PeakRef[i]), math.Abs(d.PeakTest[i]-f.PeakTest[i])))
		mcdAbs = math.Max(mcdAbs, math.Abs(d.BandMCD[i]-f.BandMCD[i]))
		melAbs = math.Max(melAbs, math.Abs(d.LogMelL1[i]-f.LogMelL1[i]))
	}
	t.Logf("per frame: %d decision mismatches; max |F0 ratio - 1| (voiced) %.2g, max |peak diff| %.2g, max |band MCD diff| %.2g dB, max |log-mel L1 diff| %.2g",
		decisions, f0Rel, peakAbs, mcdAbs, melAbs)
	// Measured: F0 and peaks agree to ~5e-15, band MCD to ~5e-13 dB, the
	// frame log-mel L1 to ~2e-8 (float32 mels).
	if f0Rel > 1e-9 || peakAbs > 1e-9 || mcdAbs > 1e-6 || melAbs > 1e-6 {
		t.Errorf("per-frame differences above tolerance (F0 1e-9 relative, peak 1e-9, band MCD 1e-6 dB, log-mel L1 1e-6)")
	}
}
