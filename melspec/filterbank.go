package melspec

import "math"

// Slaney mel scale (librosa htk=False): linear below 1 kHz with 200/3 Hz per
// mel, logarithmic above with 27 mels per factor 6.4.
const (
	slaneyFSp       = 200.0 / 3
	slaneyMinLogHz  = 1000.0
	slaneyMinLogMel = slaneyMinLogHz / slaneyFSp // 15
)

var slaneyLogStep = math.Log(6.4) / 27

// HzToMel converts frequency to the Slaney mel scale.
func HzToMel(hz float64) float64 {
	if hz >= slaneyMinLogHz {
		return slaneyMinLogMel + math.Log(hz/slaneyMinLogHz)/slaneyLogStep
	}
	return hz / slaneyFSp
}

// MelToHz is the inverse of HzToMel.
func MelToHz(mel float64) float64 {
	if mel >= slaneyMinLogMel {
		return slaneyMinLogHz * math.Exp(slaneyLogStep*(mel-slaneyMinLogMel))
	}
	return slaneyFSp * mel
}

// Filterbank returns librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax,
// htk=False, norm='slaney') as an n_mels x (1+n_fft/2) row-major matrix:
// triangles between n_mels+2 points equally spaced in mel, each scaled by
// 2/(upper-lower edge in Hz) so every band has the same area. Computed in
// float64 and rounded to float32, as librosa stores it.
func Filterbank(c Config) []float32 {
	nb := c.Bins()
	fft := make([]float64, nb)
	for k := range fft {
		// librosa's fft_frequencies: linspace(0, sr/2, 1+n_fft/2)
		fft[k] = float64(k) * float64(c.SampleRate) / float64(c.NFFT)
	}
	pts := make([]float64, c.NMels+2)
	lo, hi := HzToMel(c.FMin), HzToMel(c.FMax)
	for i := range pts {
		pts[i] = MelToHz(lo + (hi-lo)*float64(i)/float64(c.NMels+1))
	}
	w := make([]float32, c.NMels*nb)
	for m := 0; m < c.NMels; m++ {
		dl := pts[m+1] - pts[m]
		du := pts[m+2] - pts[m+1]
		enorm := 2 / (pts[m+2] - pts[m])
		for k, f := range fft {
			lower := (f - pts[m]) / dl
			upper := (pts[m+2] - f) / du
			v := math.Max(0, math.Min(lower, upper))
			w[m*nb+k] = float32(v * enorm)
		}
	}
	return w
}
