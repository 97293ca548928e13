package evaluate

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// Freqt warps the cepstrum c (c[0..len-1], coefficients of log H(z) in powers
// of z^-1) onto the frequency axis of the all-pass z~^-1 = (z^-1 - alpha) /
// (1 - alpha z^-1) and returns order+1 coefficients of log H in powers of
// z~^-1. alpha > 0 stretches low frequencies (0.41 approximates the mel scale
// at 22050 Hz); Freqt(Freqt(c, a, big), -a, n) returns c when big is large
// enough for the warped series to have decayed.
func Freqt(c []float64, order int, alpha float64) []float64 {
	g := make([]float64, order+1)
	d := make([]float64, order+1)
	b := 1 - alpha*alpha
	// Horner-like recursion over the input coefficients from the highest:
	// each step multiplies the accumulated series by z^-1 expressed in z~.
	for i := len(c) - 1; i >= 0; i-- {
		copy(d, g)
		g[0] = c[i] + alpha*d[0]
		if order >= 1 {
			g[1] = b*d[0] + alpha*d[1]
		}
		for j := 2; j <= order; j++ {
			g[j] = d[j-1] + alpha*(d[j]-g[j-1])
		}
	}
	return g
}

// MinPhaseCepstrum returns the first n coefficients of the minimum-phase
// cepstrum of a one-sided log-magnitude spectrum logMag (nfft/2+1 bins of
// log|H|): c[0] = r[0], c[m] = 2 r[m], where r is the real cepstrum. Then
// log|H(e^jw)| = c[0] + sum c[m] cos(m w), the convention of SPTK's mel-
// cepstra (log magnitude, not log power).
func MinPhaseCepstrum(logMag []float64, n int) []float64 {
	return minPhaseCepstrum(fourier.NewFFT(2*(len(logMag)-1)), logMag, n)
}

// minPhaseCepstrum is MinPhaseCepstrum with a caller's FFT plan of size
// 2*(len(logMag)-1) (building a plan per frame cost more than the transform).
func minPhaseCepstrum(fft *fourier.FFT, logMag []float64, n int) []float64 {
	nfft := 2 * (len(logMag) - 1)
	coef := make([]complex128, len(logMag))
	for i, v := range logMag {
		coef[i] = complex(v, 0)
	}
	r := fft.Sequence(nil, coef) // unnormalised inverse
	if n > nfft/2+1 {
		n = nfft/2 + 1
	}
	c := make([]float64, n)
	for m := range c {
		c[m] = r[m] / float64(nfft)
		if m > 0 && m < nfft/2 {
			c[m] *= 2
		}
	}
	return c
}

// MCepConfig is the frame analysis behind MelCepstra.
type MCepConfig struct {
	Order     int     // cepstral order: Order+1 coefficients, c0 included
	Alpha     float64 // all-pass warping constant
	FFTSize   int     // power of two >= FrameLen
	FrameLen  int     // Blackman-windowed frame length, samples
	Hop       int     // frame shift, samples
	PowerEps  float64 // floor on the power spectrum (log of silence stays finite)
	WarpTerms int     // cepstral terms fed to Freqt (0: FFTSize/2)
}

// DefaultMCepConfig is the paper's MCD setting at 22050 Hz: 25 coefficients
// (c0..c24; c1..c24 enter the MCD), alpha 0.41, 1024-sample Blackman frames
// every 256 samples (the mel frame grid).
func DefaultMCepConfig() MCepConfig {
	return MCepConfig{Order: 24, Alpha: 0.41, FFTSize: 1024, FrameLen: 1024, Hop: 256, PowerEps: 1e-10}
}

// Validate reports the first unusable setting.
func (c MCepConfig) Validate() error {
	switch {
	case c.Order < 1:
		return fmt.Errorf("mcep: order %d < 1", c.Order)
	case c.Alpha <= -1 || c.Alpha >= 1:
		return fmt.Errorf("mcep: alpha %g outside (-1, 1)", c.Alpha)
	case c.FFTSize < 2 || c.FFTSize&(c.FFTSize-1) != 0:
		return fmt.Errorf("mcep: FFT size %d is not a power of two", c.FFTSize)
	case c.FrameLen < 2 || c.FrameLen > c.FFTSize:
		return fmt.Errorf("mcep: frame length %d outside [2, FFT size %d]", c.FrameLen, c.FFTSize)
	case c.Hop < 1:
		return fmt.Errorf("mcep: hop %d < 1", c.Hop)
	case c.PowerEps <= 0:
		return fmt.Errorf("mcep: power floor %g must be > 0", c.PowerEps)
	}
	return nil
}

// MelCepstrumFromPower is the mel-cepstrum (order+1 coefficients) of one
// frame's one-sided power spectrum (nfft/2+1 bins), floored at eps;
// warpTerms cepstral coefficients enter the warping (0: all nfft/2).
func MelCepstrumFromPower(power []float64, order int, alpha, eps float64, warpTerms int) []float64 {
	return melCepstrumFromPower(fourier.NewFFT(2*(len(power)-1)), power, order, alpha, eps, warpTerms)
}

func melCepstrumFromPower(fft *fourier.FFT, power []float64, order int, alpha, eps float64, warpTerms int) []float64 {
	logMag := make([]float64, len(power))
	for i, p := range power {
		logMag[i] = 0.5 * math.Log(math.Max(p, eps))
	}
	if warpTerms <= 0 {
		warpTerms = len(power) - 1
	}
	return Freqt(minPhaseCepstrum(fft, logMag, warpTerms), order, alpha)
}

// MelCepstra analyses y frame by frame (frames centred every Hop samples,
// the signal zero-padded at both ends, like the mel grid) and returns
// [frames][Order+1] mel-cepstra.
func MelCepstra(y []float32, c MCepConfig) ([][]float64, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if len(y) == 0 {
		return nil, nil
	}
	win := make([]float64, c.FrameLen)
	for i := range win { // symmetric Blackman
		x := 2 * math.Pi * float64(i) / float64(c.FrameLen-1)
		win[i] = 0.42 - 0.5*math.Cos(x) + 0.08*math.Cos(2*x)
	}
	fft := fourier.NewFFT(c.FFTSize)
	frame := make([]float64, c.FFTSize)
	coef := make([]complex128, c.FFTSize/2+1)
	power := make([]float64, c.FFTSize/2+1)
	frames := 1 + len(y)/c.Hop
	out := make([][]float64, frames)
	for f := range out {
		start := f*c.Hop - c.FrameLen/2
		for i := range frame {
			frame[i] = 0
		}
		for i := 0; i < c.FrameLen; i++ {
			if j := start + i; j >= 0 && j < len(y) {
				frame[i] = float64(y[j]) * win[i]
			}
		}
		fft.Coefficients(coef, frame)
		for i, v := range coef {
			power[i] = real(v)*real(v) + imag(v)*imag(v)
		}
		out[f] = melCepstrumFromPower(fft, power, c.Order, c.Alpha, c.PowerEps, c.WarpTerms)
	}
	return out, nil
}
