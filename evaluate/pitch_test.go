package evaluate

import (
	"math"
	"math/rand/v2"
	"testing"
)

const qsr = 22050

// qualityTone is a phase-continuous harmonic signal: f0(t) Hz, amplitude
// amp(t), harmonics up to 8 kHz with 1/h amplitudes (a buzz-like source).
func qualityTone(n int, f0, amp func(t float64) float64) []float32 {
	y := make([]float32, n)
	var ph float64
	for i := range y {
		t := float64(i) / qsr
		f := f0(t)
		var s float64
		for h := 1; float64(h)*f < 8000; h++ {
			s += math.Sin(float64(h)*ph) / float64(h)
		}
		y[i] = float32(amp(t) * s)
		ph += 2 * math.Pi * f / qsr
	}
	return y
}

func qualityConst(v float64) func(float64) float64 { return func(float64) float64 { return v } }

func TestPitchHarmonicTones(t *testing.T) {
	for _, hz := range []float64{65, 100, 150, 237.3, 390} {
		y := qualityTone(qsr, qualityConst(hz), qualityConst(0.3))
		f0, peak := Pitch(y, qsr)
		voiced := Voiced(peak, SpeechFrames(y))
		// Frames fully inside the signal; the edge frames are half padding.
		for f := 2; f < len(f0)-2; f++ {
			if math.Abs(f0[f]/hz-1) > 0.01 || !voiced[f] {
				t.Errorf("%g Hz tone, frame %d: f0 %.3f Hz, peak %.4f, voiced %v; want within 1%%, voiced", hz, f, f0[f], peak[f], voiced[f])
				break
			}
		}
		var worst float64
		for f := 2; f < len(f0)-2; f++ {
			worst = math.Max(worst, math.Abs(f0[f]/hz-1))
		}
		t.Logf("%g Hz tone: worst relative F0 error %.2g", hz, worst)
	}
}

// A steady tone correlates almost as well at twice its period as at the
// period (exactly as well when the period is a whole number of samples, as
// 22050/150 = 147), and with a fractional period the double period can win
// the strict arg-max by a hair: OctaveTolerance must keep every F0 from 60
// to 400 Hz off the octave below.
func TestPitchNoOctaveErrorsOnSteadyTones(t *testing.T) {
	step := 3.7
	if testing.Short() {
		step = 17.3
	}
	for hz := 60.0; hz <= 400; hz += step {
		for _, exact := range []bool{false, true} {
			f := hz
			if exact { // nearest whole-sample period
				f = qsr / math.Round(qsr/hz)
			}
			y := qualityTone(6*QualityHop, qualityConst(f), qualityConst(0.3))
			f0, _ := Pitch(y, qsr)
			for i := 2; i < len(f0)-2; i++ {
				if math.Abs(f0[i]/f-1) > 0.002 {
					t.Errorf("%.2f Hz tone, frame %d: f0 %.3f Hz", f, i, f0[i])
					break
				}
			}
		}
	}
}

func TestPitchNoiseUnvoiced(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	y := make([]float32, 2*qsr)
	for i := range y {
		y[i] = float32(0.1 * rng.NormFloat64())
	}
	_, peak := Pitch(y, qsr)
	voiced := Voiced(peak, SpeechFrames(y))
	var top float64
	for f, v := range voiced {
		top = math.Max(top, peak[f])
		if v {
			t.Errorf("white noise frame %d voiced (peak %.3f)", f, peak[f])
		}
	}
	t.Logf("white noise: highest autocorrelation peak %.3f", top)
}

func TestPitchSilenceAndVoicedNeedsSpeech(t *testing.T) {
	y := make([]float32, 4096)
	f0, peak := Pitch(y, qsr)
	for f := range f0 {
		if f0[f] != 0 || peak[f] != 0 {
			t.Fatalf("silent frame %d: f0 %g, peak %g; want 0, 0", f, f0[f], peak[f])
		}
	}
	v := Voiced([]float64{0.9, 0.9, 0.2, 0.45}, []bool{true, false, true, true})
	if !v[0] || v[1] || v[2] || v[3] {
		t.Errorf("Voiced = %v, want [true false false false] (peak must exceed 0.45 in a speech frame)", v)
	}
}

// A genuine longer period is kept: 200 Hz plus a strong 100 Hz subharmonic
// repeats only every 10 ms, and the 5 ms lag correlates far worse.
func TestPitchKeepsPeriodDoubling(t *testing.T) {
	y := make([]float32, qsr/2)
	for i := range y {
		ph := 2 * math.Pi * 100 * float64(i) / qsr
		y[i] = float32(0.3*math.Sin(2*ph) + 0.15*math.Sin(3*ph) + 0.2*math.Sin(ph+0.3))
	}
	f0, peak := Pitch(y, qsr)
	for f := 2; f < len(f0)-2; f++ {
		if math.Abs(f0[f]-100) > 0.5 || peak[f] < 0.99 {
			t.Fatalf("frame %d: f0 %.2f Hz (peak %.3f), want 100 Hz", f, f0[f], peak[f])
		}
	}
}
