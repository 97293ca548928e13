package evaluate

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/dsp/fourier"
)

// impulse returns n samples of the impulse response of b(z)/a(z), a[0] = 1.
func impulse(b, a []float64, n int) []float64 {
	x := make([]float64, n)
	y := make([]float64, n)
	x[0] = 1
	for t := range y {
		var s float64
		for k, bk := range b {
			if t-k >= 0 {
				s += bk * x[t-k]
			}
		}
		for k := 1; k < len(a); k++ {
			if t-k >= 0 {
				s -= a[k] * y[t-k]
			}
		}
		y[t] = s
	}
	return y
}

func powerSpectrum(h []float64) []float64 {
	fft := fourier.NewFFT(len(h))
	c := fft.Coefficients(nil, h)
	p := make([]float64, len(c))
	for i, v := range c {
		p[i] = real(v)*real(v) + imag(v)*imag(v)
	}
	return p
}

// An all-pole filter 1/(1 - a z^-1) has log H(z) = sum a^m/m z^-m: with
// alpha = 0 the mel-cepstrum is that plain cepstrum.
func TestMelCepstrumAllPoleAlpha0(t *testing.T) {
	a := 0.6
	p := powerSpectrum(impulse([]float64{1}, []float64{1, -a}, 2048))
	c := MelCepstrumFromPower(p, 24, 0, 1e-300, 0)
	if math.Abs(c[0]) > 1e-9 {
		t.Errorf("c0 = %g, want 0", c[0])
	}
	for m := 1; m <= 24; m++ {
		want := math.Pow(a, float64(m)) / float64(m)
		if math.Abs(c[m]-want) > 1e-9 {
			t.Errorf("c%d = %.12g, want a^m/m = %.12g", m, c[m], want)
		}
	}
}

// H(z) = 1/(1 - a z~^-1) with the all-pass z~^-1 = (z^-1-alpha)/(1-alpha z^-1)
// is the pole-zero filter (1 - alpha z^-1) / ((1 + a alpha) - (a + alpha)
// z^-1); by construction its mel-cepstrum at that alpha is exactly a^m/m, and
// a gain g adds log g to c0.
func TestMelCepstrumWarpedPoleZero(t *testing.T) {
	for _, tc := range []struct{ a, alpha, gain float64 }{{0.5, 0.41, 1}, {-0.7, 0.41, 3}, {0.3, 0.55, 0.2}} {
		d := 1 + tc.a*tc.alpha
		h := impulse([]float64{tc.gain / d, -tc.gain * tc.alpha / d}, []float64{1, -(tc.a + tc.alpha) / d}, 4096)
		c := MelCepstrumFromPower(powerSpectrum(h), 24, tc.alpha, 1e-300, 0)
		if want := math.Log(tc.gain); math.Abs(c[0]-want) > 1e-9 {
			t.Errorf("%+v: c0 = %g, want log gain %g", tc, c[0], want)
		}
		for m := 1; m <= 24; m++ {
			want := math.Pow(tc.a, float64(m)) / float64(m)
			if math.Abs(c[m]-want) > 1e-8 {
				t.Errorf("%+v: c%d = %.12g, want %.12g", tc, m, c[m], want)
			}
		}
	}
}

// Warping with alpha then with -alpha is the identity (the inverse all-pass).
func TestFreqtRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := make([]float64, 25)
	for i := range c {
		c[i] = rng.NormFloat64() / float64(1+i)
	}
	w := Freqt(c, 400, 0.41)
	back := Freqt(w, 24, -0.41)
	for i := range c {
		if math.Abs(back[i]-c[i]) > 1e-10 {
			t.Errorf("c%d: %g after warp/unwarp, want %g", i, back[i], c[i])
		}
	}
	// alpha = 0 is a truncating copy.
	id := Freqt(c, 10, 0)
	for i := range id {
		if id[i] != c[i] {
			t.Fatalf("alpha 0: c%d = %g, want %g", i, id[i], c[i])
		}
	}
}

// Independent check of the warping: the mel-cepstrum's cosine series must
// reproduce the log magnitude at the warped frequency
// w~ = w + 2 atan(alpha sin w / (1 - alpha cos w)).
func TestMelCepstrumMatchesWarpedLogSpectrum(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	frame := make([]float64, 1024)
	for i := range frame { // a smooth random spectrum: a short random FIR
		if i < 12 {
			frame[i] = rng.NormFloat64() * math.Exp(-float64(i)/3)
		}
	}
	frame[0] += 3 // keep it clear of zeros on the unit circle
	p := powerSpectrum(frame)
	alpha := 0.41
	c := MelCepstrumFromPower(p, 200, alpha, 1e-300, 0)
	for _, w := range []float64{0.1, 0.5, 1, 2, 3} {
		var re, im float64 // H(e^jw) summed directly
		for k, v := range frame {
			re += v * math.Cos(w*float64(k))
			im -= v * math.Sin(w*float64(k))
		}
		lm := 0.5 * math.Log(re*re+im*im)
		wt := w + 2*math.Atan(alpha*math.Sin(w)/(1-alpha*math.Cos(w)))
		s := c[0]
		for m := 1; m < len(c); m++ {
			s += c[m] * math.Cos(float64(m)*wt)
		}
		if math.Abs(s-lm) > 1e-6 {
			t.Errorf("w=%g: series at warped frequency %g gives %g, log|H| = %g", w, wt, s, lm)
		}
	}
}
