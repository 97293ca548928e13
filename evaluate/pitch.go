package evaluate

import (
	"fmt"
	"math"
)

// Pitch-tracker settings (REFERENCE.md §5). They are fixed rather than
// configurable so that numbers from different runs and papers' tables stay
// comparable.
const (
	// PitchMinHz and PitchMaxHz bound the F0 search: the autocorrelation
	// lags searched run from floor(sr/PitchMaxHz) to ceil(sr/PitchMinHz),
	// so the whole range is covered at integer lags.
	PitchMinHz = 60.0
	PitchMaxHz = 400.0
	// VoicingThreshold is the normalised autocorrelation peak above which a
	// speech frame counts as voiced.
	VoicingThreshold = 0.45
	// OctaveTolerance: the F0 lag is the shortest local peak of the
	// normalised autocorrelation whose height (the vertex of the parabola
	// through it and its neighbours) is within this of the highest peak's.
	// A period's multiples correlate almost as well as the period itself,
	// and when the period is not a whole number of samples a multiple can
	// land nearer an integer lag and win by a hair (measured: up to 0.02 of
	// raw correlation for a 1/h harmonic tone, 0.009 after the parabolic
	// correction), which a strict arg-max turns into an octave error. A
	// multiple that beats the period by more than this is a genuine longer
	// period (period doubling) and is kept.
	OctaveTolerance = 0.02
)

// pitchLags is the searched lag range [lo, hi] for a sample rate.
func pitchLags(sampleRate int) (lo, hi int) {
	return int(math.Floor(float64(sampleRate) / PitchMaxHz)), int(math.Ceil(float64(sampleRate) / PitchMinHz))
}

// checkPitchRate reports a sample rate for which the 60-400 Hz lags do not
// fit the quality frame (lags must be >= 2 and leave at least a quarter of
// the frame overlapping).
func checkPitchRate(sampleRate int) error {
	if sampleRate <= 0 {
		return fmt.Errorf("pitch: sample rate %d must be positive", sampleRate)
	}
	lo, hi := pitchLags(sampleRate)
	if lo < 2 || hi+1 > QualityFrameLen*3/4 {
		return fmt.Errorf("pitch: sample rate %d gives lags %d..%d, outside what a %d-sample frame supports", sampleRate, lo, hi, QualityFrameLen)
	}
	return nil
}

// Pitch tracks F0 on the quality frame grid (QualityHop, QualityFrameLen,
// centred, zero-padded): per frame, the mean is removed and each lag's
// product sum is normalised by sqrt(energy of the first overlapping part *
// energy of the second), so a periodic frame scores ~1 at its period
// whatever its envelope. peak is the maximum over the 60-400 Hz lags (0 for
// an all-constant frame); f0 = sampleRate / lag with the peak lag refined by
// a parabola through it and its neighbours (f0 is 0 where peak <= 0). The
// peak lag is the shortest local peak within OctaveTolerance of the best
// (see there), not the strict arg-max. Voicing is not decided here: see
// Voiced. It panics on an unusable sample rate (Quality checks it first).
func Pitch(y []float32, sampleRate int) (f0, peak []float64) {
	if err := checkPitchRate(sampleRate); err != nil {
		panic(err)
	}
	frames := qualityFrames(len(y))
	f0 = make([]float64, frames)
	peak = make([]float64, frames)
	lo, hi := pitchLags(sampleRate)
	n := QualityFrameLen
	x := make([]float64, n)
	pre := make([]float64, n+1) // pre[i] = sum x[:i]^2
	suf := make([]float64, n+1) // suf[i] = sum x[i:]^2 (separate sums: no cancellation)
	r := make([]float64, hi-lo+1)
	h := make([]float64, len(r))
	for f := 0; f < frames; f++ {
		qualityFrame(x, y, f)
		var mean float64
		for _, v := range x {
			mean += v
		}
		mean /= float64(n)
		for i := range x {
			x[i] -= mean
		}
		for i, v := range x {
			pre[i+1] = pre[i] + v*v
		}
		suf[n] = 0
		for i := n - 1; i >= 0; i-- {
			suf[i] = suf[i+1] + x[i]*x[i]
		}
		best := math.Inf(-1)
		for lag := lo; lag <= hi; lag++ {
			m := n - lag
			a, b := x[:m], x[lag:lag+m]
			var s0, s1, s2, s3 float64
			i := 0
			for ; i+4 <= m; i += 4 {
				s0 += a[i] * b[i]
				s1 += a[i+1] * b[i+1]
				s2 += a[i+2] * b[i+2]
				s3 += a[i+3] * b[i+3]
			}
			for ; i < m; i++ {
				s0 += a[i] * b[i]
			}
			v := 0.0
			if den := math.Sqrt(pre[m] * suf[lag]); den > 0 {
				v = (s0 + s1 + s2 + s3) / den
			}
			r[lag-lo] = v
			best = math.Max(best, v)
		}
		peak[f] = best
		if best <= 0 {
			continue
		}
		f0[f] = float64(sampleRate) / (float64(lo) + pickLag(r, h))
	}
	return f0, peak
}

// pickLag returns the chosen peak position in r (fractional index): the
// shortest local maximum whose parabolic vertex height is within
// OctaveTolerance of the highest one. h is scratch of len(r).
func pickLag(r, h []float64) float64 {
	last := len(r) - 1
	top := math.Inf(-1)
	for k, v := range r {
		h[k] = math.Inf(-1) // not a local maximum
		if (k > 0 && r[k-1] > v) || (k < last && r[k+1] > v) {
			continue
		}
		h[k] = v
		if k > 0 && k < last {
			if d := r[k-1] - 2*v + r[k+1]; d < 0 {
				h[k] = v - (r[k-1]-r[k+1])*(r[k-1]-r[k+1])/(8*d)
			}
		}
		top = math.Max(top, h[k])
	}
	for k := range r {
		if h[k] < top-OctaveTolerance {
			continue
		}
		pos := float64(k)
		if k > 0 && k < last {
			a, b, c := r[k-1], r[k], r[k+1]
			if d := a - 2*b + c; d < 0 {
				pos += 0.5 * (a - c) / d
			}
		}
		return pos
	}
	panic("pitch: no local maximum") // unreachable: the global maximum is one
}

// Voiced marks the frames whose autocorrelation peak exceeds
// VoicingThreshold and that are speech frames. speech should come from the
// reference for both signals, so silence in the original never counts as a
// voicing decision either way.
func Voiced(peak []float64, speech []bool) []bool {
	v := make([]bool, len(peak))
	for i, p := range peak {
		v[i] = i < len(speech) && speech[i] && p > VoicingThreshold
	}
	return v
}
