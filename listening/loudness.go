package listening

import (
	"fmt"
	"math"
)

// Biquad is a second-order IIR section, a0 normalised to 1:
// y[n] = b0 x[n] + b1 x[n-1] + b2 x[n-2] - a1 y[n-1] - a2 y[n-2].
type Biquad struct{ B0, B1, B2, A1, A2 float64 }

// Filter runs the section over x (direct form I, float64 state).
func (q Biquad) Filter(x []float64) []float64 {
	y := make([]float64, len(x))
	var x1, x2, y1, y2 float64
	for i, v := range x {
		o := q.B0*v + q.B1*x1 + q.B2*x2 - q.A1*y1 - q.A2*y2
		x2, x1 = x1, v
		y2, y1 = y1, o
		y[i] = o
	}
	return y
}

// Analog prototypes of the two BS.1770 K-weighting stages. The standard only
// tabulates 48 kHz coefficients; these centre frequencies, gains and Qs are
// the analog filters those coefficients come from (their bilinear transform
// with prewarping at 48 kHz reproduces the table to ~1e-8, which the tests
// check), so the same design gives the filters at any sample rate.
const (
	shelfF0   = 1681.974450955533  // Hz, high-shelf centre
	shelfGain = 3.999843853973347  // dB, high-frequency gain
	shelfQ    = 0.7071752369554196 // shelf quality factor
	hpF0      = 38.13547087602444  // Hz, RLB high-pass corner
	hpQ       = 0.5003270373238773 // RLB high-pass quality factor
)

// KWeighting returns the two biquads of the BS.1770-4 K-weighting at fs Hz:
// the head-related high shelf (stage 1) and the RLB high-pass (stage 2),
// designed from the analog prototypes with the prewarped bilinear transform
// (K = tan(pi f0 / fs)).
func KWeighting(fs float64) (shelf, highpass Biquad) {
	k := math.Tan(math.Pi * shelfF0 / fs)
	vh := math.Pow(10, shelfGain/20)
	vb := math.Pow(vh, 0.4996667741545416) // band gain that places the shelf midpoint
	a0 := 1 + k/shelfQ + k*k
	shelf = Biquad{
		B0: (vh + vb*k/shelfQ + k*k) / a0,
		B1: 2 * (k*k - vh) / a0,
		B2: (vh - vb*k/shelfQ + k*k) / a0,
		A1: 2 * (k*k - 1) / a0,
		A2: (1 - k/shelfQ + k*k) / a0,
	}
	k = math.Tan(math.Pi * hpF0 / fs)
	a0 = 1 + k/hpQ + k*k
	highpass = Biquad{B0: 1, B1: -2, B2: 1, A1: 2 * (k*k - 1) / a0, A2: (1 - k/hpQ + k*k) / a0}
	return shelf, highpass
}

// Gating constants of BS.1770-4 §2.
const (
	blockSeconds  = 0.4   // gating block length
	stepSeconds   = 0.1   // 75% overlap
	absoluteGate  = -70.0 // LUFS
	relativeGate  = -10.0 // LU below the absolute-gated loudness
	loudnessShift = -0.691
)

// Loudness is the integrated loudness of mono y at fs Hz in LUFS (ITU-R
// BS.1770-4): K-weighting, mean square over 400 ms blocks every 100 ms,
// blocks below -70 LUFS dropped, then blocks more than 10 LU below the
// loudness of the remaining ones dropped. It fails on signals shorter than one
// block and returns -Inf when every block is gated out (silence).
func Loudness(y []float32, fs float64) (float64, error) {
	block := int(math.Round(blockSeconds * fs))
	step := int(math.Round(stepSeconds * fs))
	if len(y) < block {
		return 0, fmt.Errorf("loudness: %d samples is shorter than one %g s gating block (%d samples at %g Hz)", len(y), blockSeconds, block, fs)
	}
	x := make([]float64, len(y))
	for i, v := range y {
		x[i] = float64(v)
	}
	shelf, hp := KWeighting(fs)
	z := hp.Filter(shelf.Filter(x))
	// Prefix sums of z^2 make every block's mean square O(1).
	cum := make([]float64, len(z)+1)
	for i, v := range z {
		cum[i+1] = cum[i] + v*v
	}
	n := (len(z)-block)/step + 1
	ms := make([]float64, 0, n)
	for j := 0; j < n; j++ {
		m := (cum[j*step+block] - cum[j*step]) / float64(block)
		if loudnessShift+10*math.Log10(m) > absoluteGate {
			ms = append(ms, m)
		}
	}
	if len(ms) == 0 {
		return math.Inf(-1), nil
	}
	mean := func(xs []float64, above float64) float64 {
		var s float64
		var c int
		for _, m := range xs {
			if loudnessShift+10*math.Log10(m) > above {
				s += m
				c++
			}
		}
		return s / float64(c)
	}
	gate := loudnessShift + 10*math.Log10(mean(ms, math.Inf(-1))) + relativeGate
	return loudnessShift + 10*math.Log10(mean(ms, gate)), nil
}

// Normalize scales y so that its integrated loudness is target LUFS and
// returns the scaled copy and the gain applied. It fails (rather than clip,
// which would change the stimulus) when a sample would exceed full scale, and
// on silence.
func Normalize(y []float32, fs, target float64) ([]float32, float64, error) {
	l, err := Loudness(y, fs)
	if err != nil {
		return nil, 0, err
	}
	if math.IsInf(l, -1) {
		return nil, 0, fmt.Errorf("loudness: silent signal (every block below %g LUFS) cannot be normalised", absoluteGate)
	}
	g := math.Pow(10, (target-l)/20)
	out := make([]float32, len(y))
	var peak float64
	for i, v := range y {
		s := float64(v) * g
		peak = math.Max(peak, math.Abs(s))
		out[i] = float32(s)
	}
	if peak > 1 {
		return nil, g, fmt.Errorf("loudness: at %g LUFS the peak would be %+.1f dBFS and clip; choose a lower target", target, 20*math.Log10(peak))
	}
	return out, g, nil
}
