package evaluate

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// The band a log-mel spectrogram of the reference recipe describes
// (melspec.DefaultConfig's fmin and fmax). Band MCD ignores the spectrum
// outside it: a vocoder conditioned on that mel has no information there.
const (
	BandLoHz = 125.0
	BandHiHz = 7600.0
)

// BandMelCepstra is MelCepstra (frames centred every c.Hop samples, zero
// padded, Blackman window, log magnitude, minimum-phase cepstrum warped by
// Freqt) with the log spectrum replaced by the floor value 0.5*ln(c.PowerEps)
// at every FFT bin whose frequency k*sampleRate/c.FFTSize lies outside
// [loHz, hiHz]. Because the mel-cepstrum is linear in the log spectrum, the
// difference of two such cepstra depends only on the in-band log spectra:
// the constant cancels, so the value chosen for it does not matter. (A gain
// on one signal does not cancel: it shifts the in-band part only, a step at
// the band edges that c1.. see.)
func BandMelCepstra(y []float32, sampleRate int, c MCepConfig, loHz, hiHz float64) ([][]float64, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if sampleRate <= 0 {
		return nil, fmt.Errorf("band mcep: sample rate %d must be positive", sampleRate)
	}
	if !(loHz >= 0 && hiHz > loHz) {
		return nil, fmt.Errorf("band mcep: band [%g, %g] Hz is empty", loHz, hiHz)
	}
	if len(y) == 0 {
		return nil, nil
	}
	win := make([]float64, c.FrameLen)
	for i := range win { // symmetric Blackman, as MelCepstra
		x := 2 * math.Pi * float64(i) / float64(c.FrameLen-1)
		win[i] = 0.42 - 0.5*math.Cos(x) + 0.08*math.Cos(2*x)
	}
	nb := c.FFTSize/2 + 1
	inBand := make([]bool, nb)
	for k := range inBand {
		hz := float64(k) * float64(sampleRate) / float64(c.FFTSize)
		inBand[k] = hz >= loHz && hz <= hiHz
	}
	fft := fourier.NewFFT(c.FFTSize)
	frame := make([]float64, c.FFTSize)
	coef := make([]complex128, nb)
	power := make([]float64, nb)
	frames := 1 + len(y)/c.Hop
	out := make([][]float64, frames)
	for f := range out {
		start := f*c.Hop - c.FrameLen/2
		clear(frame)
		for i := 0; i < c.FrameLen; i++ {
			if j := start + i; j >= 0 && j < len(y) {
				frame[i] = float64(y[j]) * win[i]
			}
		}
		fft.Coefficients(coef, frame)
		for k, v := range coef {
			if inBand[k] {
				power[k] = real(v)*real(v) + imag(v)*imag(v)
			} else {
				power[k] = c.PowerEps // floored to 0.5*ln(eps) like silence
			}
		}
		out[f] = melCepstrumFromPower(fft, power, c.Order, c.Alpha, c.PowerEps, c.WarpTerms)
	}
	return out, nil
}

// FrameMCD is the frame-aligned (no DTW) mel-cepstral distortion in dB of
// each pair of frames, 10/ln10 * sqrt(2 * sum_{d>=1} (c_d - c'_d)^2), over
// the frames both sequences have. Frame alignment is right when the
// synthesis is sample-aligned with the original (it was conditioned on the
// original's mel); DTW would forgive timing errors a vocoder should not make.
func FrameMCD(ref, test [][]float64) []float64 {
	n := min(len(ref), len(test))
	d := make([]float64, n)
	for i := range d {
		d[i] = mcdScale * CepDistance(ref[i], test[i])
	}
	return d
}
