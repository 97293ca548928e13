package wavenet

import "github.com/wavecat/wavecat/mulaw"

// MaxLagTaps bounds lag_taps.
const MaxLagTaps = 7

// LagInput writes the pitch-lag inputs of samples [start, start+n) into
// dst, row k at dst[k*stride:]: the mu-law companded sample one pitch
// period before the one being predicted, at offsets -h..h (taps = 2h+1)
// around it, i.e. y[t-P(t)+k-h] with P(t) the period in samples rounded
// to the nearest integer. A row is 0 where the period is 0 (unvoiced) or
// the index falls outside [0, t): the lag only ever reads samples already
// generated.
//
// Why: a WaveNet trained by teacher forcing sees one period back in its
// receptive field but must learn where to look; a long-term predictor's
// tap (as in CELP codecs and LPCNet's pitch gain) hands it the sample that
// makes voiced speech periodic, and when it runs on its own output the
// same tap keeps the output periodic at the mel's pitch.
//
// y holds the samples [0, len(y)) of the utterance (or of a training crop,
// whose own start is 0); period[j] belongs to sample start+j.
func LagInput(dst []float32, stride int, y, period []float32, start, n, taps int) {
	h := taps / 2
	for j := 0; j < n; j++ {
		t := start + j
		p := period[j]
		for k := 0; k < taps; k++ {
			v := float32(0)
			if p > 0 {
				i := t - int(p+0.5) + k - h
				if i >= 0 && i < t && i < len(y) {
					v = float32(mulaw.Compand(float64(y[i]), 255))
				}
			}
			dst[k*stride+j] = v
		}
	}
}
