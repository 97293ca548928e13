package evaluate

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/melspec"
)

// mcdScale is 10/ln(10) * sqrt(2): dB per unit of cepstral Euclidean distance.
var mcdScale = 10 / math.Ln10 * math.Sqrt2

// MCDFrames is the mean mel-cepstral distortion in dB over the DTW alignment
// of two mel-cepstrum sequences: per aligned pair (10/ln10) *
// sqrt(2 * sum_{d>=1} (c_d - c'_d)^2), c0 excluded, averaged over the path.
func MCDFrames(ref, test [][]float64) (float64, error) {
	path, _, err := DTW(ref, test, CepDistance)
	if err != nil {
		return 0, err
	}
	var s float64
	for _, p := range path {
		s += CepDistance(ref[p[0]], test[p[1]])
	}
	return mcdScale * s / float64(len(path)), nil
}

// MCD analyses both waveforms with c and returns their DTW-aligned MCD in dB.
func MCD(ref, test []float32, c MCepConfig) (float64, error) {
	a, err := MelCepstra(ref, c)
	if err != nil {
		return 0, err
	}
	b, err := MelCepstra(test, c)
	if err != nil {
		return 0, err
	}
	if len(a) == 0 || len(b) == 0 {
		return 0, fmt.Errorf("mcd: empty waveform (%d and %d samples)", len(ref), len(test))
	}
	return MCDFrames(a, b)
}

// LogMelL1 is the mean absolute difference of the log10 mel spectrograms of
// ref and test (the reference's features, unnormalised) over the frames they
// share; synthesis is conditioned on ref's mel, so frames correspond without
// alignment.
func LogMelL1(ref, test []float32, ex *melspec.Extractor) (float64, error) {
	a, fa := ex.Compute(ref)
	b, fb := ex.Compute(test)
	f := min(fa, fb)
	if f == 0 {
		return 0, fmt.Errorf("log-mel L1: empty waveform (%d and %d samples)", len(ref), len(test))
	}
	n := f * ex.Config().NMels
	var s float64
	for i := 0; i < n; i++ {
		s += math.Abs(float64(a[i]) - float64(b[i]))
	}
	return s / float64(n), nil
}
