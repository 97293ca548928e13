package listening

import (
	"fmt"
	"math"
)

// AnchorCutoff is MUSHRA's low anchor (ITU-R BS.1534-3): the reference
// low-passed at 3.5 kHz.
const AnchorCutoff = 3500.0

// anchorTaps is long enough for a transition band of ~150 Hz at 22050 Hz
// with a Blackman window (>70 dB stop-band), so the anchor is clearly
// band-limited rather than gently dulled.
const anchorTaps = 511

// LowPass filters y with a linear-phase windowed-sinc FIR (Blackman window)
// with its group delay removed, so the result lines up with y sample for
// sample (stimuli are compared in time in MUSHRA). The signal is treated as
// zero outside its ends.
func LowPass(y []float32, fs, cutoff float64) ([]float32, error) {
	if cutoff <= 0 || cutoff >= fs/2 {
		return nil, fmt.Errorf("low-pass: cutoff %g Hz outside (0, %g)", cutoff, fs/2)
	}
	n := anchorTaps
	h := make([]float64, n)
	mid := float64(n-1) / 2
	fc := cutoff / fs
	var sum float64
	for i := range h {
		x := float64(i) - mid
		s := 2 * fc
		if x != 0 {
			s = math.Sin(2*math.Pi*fc*x) / (math.Pi * x)
		}
		w := 0.42 - 0.5*math.Cos(2*math.Pi*float64(i)/float64(n-1)) + 0.08*math.Cos(4*math.Pi*float64(i)/float64(n-1))
		h[i] = s * w
		sum += h[i]
	}
	for i := range h { // unit gain at DC
		h[i] /= sum
	}
	half := n / 2
	out := make([]float32, len(y))
	for t := range out {
		var acc float64
		for k := 0; k < n; k++ {
			if j := t + half - k; j >= 0 && j < len(y) {
				acc += h[k] * float64(y[j])
			}
		}
		out[t] = float32(acc)
	}
	return out, nil
}
