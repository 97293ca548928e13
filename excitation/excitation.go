// Package excitation turns a mel spectrogram into a periodic source signal:
// a sine at the mel's pitch where it is voiced, silence elsewhere. A WaveNet
// given it as extra input channels (wavenet.Config.ExcitationChannels) only
// has to shape a source it is handed, as in source-filter and neural
// source-filter vocoders, instead of discovering pitch from the mel by
// itself: that discovery is what small WaveNets trained for a few
// thousand CPU steps never make (docs/evaluation.md).
//
// The pitch comes from the mel alone, so the same signal exists at training
// and at synthesis: Griffin-Lim (melspec) inverts the mel, and the quality
// pitch tracker (evaluate.Pitch, with its voicing threshold) reads F0 from
// that waveform. Griffin-Lim keeps the harmonics of the magnitude, so its
// pitch agrees with the recording's (measured on the held-out sets: voicing
// agreement 0.95 and 1.2% gross pitch errors on espeak-ng, 0.91 and 7.4% on
// human speech) even though it sounds phasey.
package excitation

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/melspec"
)

// Channels is the number of excitation channels: v*sin(phi) and
// v*cos(phi), where phi is the running phase of F0 and v the voicing (0..1,
// ramped linearly between frames). Both phases let a linear layer place
// the fundamental at any phase shift.
const Channels = 2

// Iterations of Griffin-Lim before pitch tracking: the same baseline as the
// evaluation's Griffin-Lim row, whose pitch figures are quoted above.
const Iterations = 60

// Estimator derives Tracks from log-mel spectrograms of one mel Config. It
// holds no scratch state, so one value may serve many goroutines.
type Estimator struct {
	gl  *melspec.GriffinLim
	opt melspec.GriffinLimOptions
	sr  int
}

// NewEstimator prepares an Estimator for mels of cfg.
func NewEstimator(cfg melspec.Config) (*Estimator, error) {
	gl, err := melspec.NewGriffinLim(cfg)
	if err != nil {
		return nil, fmt.Errorf("excitation: %w", err)
	}
	opt := melspec.DefaultGriffinLimOptions()
	opt.Iterations = Iterations
	// One worker: callers parallelise over utterances, and the result does
	// not depend on it.
	opt.Workers = 1
	return &Estimator{gl: gl, opt: opt, sr: cfg.SampleRate}, nil
}

// Track is a pitch contour on the quality frame grid: frame i is centred on
// sample i*Hop of the utterance.
type Track struct {
	// F0 in Hz per frame, 0 where unvoiced.
	F0         []float64
	Hop        int
	SampleRate int
	// phase[i] is the running phase (radians, wrapped) at sample i*Hop, so
	// a signal can start anywhere without summing from the beginning.
	phase []float64
	// offset[i], when set (AlignTo), is added to the phase at frame i
	// (interpolated between frames along the shorter arc).
	offset []float64
}

// Track estimates the pitch of a log10 mel spectrogram (frames x n_mels,
// row-major, not normalised: as the dump stores it and Griffin-Lim takes
// it). Voiced frames are those whose normalised autocorrelation peak passes
// evaluate.VoicingThreshold and whose level is within
// evaluate.SpeechRangeDB of the loudest frame. Isolated single-frame F0
// outliers (octave slips) are replaced by the median of their neighbours.
func (e *Estimator) Track(logmel []float32, frames int) (Track, error) {
	y, err := e.gl.Synthesize(logmel, frames, e.opt)
	if err != nil {
		return Track{}, fmt.Errorf("excitation: %w", err)
	}
	return FromWave(y, e.sr), nil
}

// FromWave tracks the pitch of a waveform (the Griffin-Lim inversion of a
// mel, or any signal in tests) with the quality pitch tracker.
func FromWave(y []float32, sampleRate int) Track {
	f0, peak := evaluate.Pitch(y, sampleRate)
	voiced := evaluate.Voiced(peak, evaluate.SpeechFrames(y))
	n := len(f0)
	out := make([]float64, n)
	for i := range f0 {
		if voiced[i] && f0[i] > 0 {
			out[i] = f0[i]
		}
	}
	smoothed := make([]float64, n)
	copy(smoothed, out)
	for i := 1; i+1 < n; i++ {
		a, b, c := out[i-1], out[i], out[i+1]
		if a == 0 || b == 0 || c == 0 {
			continue
		}
		smoothed[i] = median3(a, b, c)
	}
	return newTrack(smoothed, evaluate.QualityHop, sampleRate)
}

// Version names how Track derives a contour (Griffin-Lim iterations, the
// pitch tracker and its voicing rules, the outlier smoothing): stored
// contours (FromF0) made under another version must be derived again.
// Change it with any of those.
const Version = "gl60-quality-pitch-median3-1"

// FromF0 rebuilds the Track whose F0 field is f0 (a contour stored from an
// earlier Track of the same Version).
func FromF0(f0 []float64, sampleRate int) Track {
	return newTrack(f0, evaluate.QualityHop, sampleRate)
}

// newTrack wraps a contour of f0 (Hz, 0 unvoiced) on frames hop samples
// apart, with its phase at every frame.
func newTrack(f0 []float64, hop, sampleRate int) Track {
	n := len(f0)
	t := Track{F0: f0, Hop: hop, SampleRate: sampleRate}
	t.phase = make([]float64, n+1)
	// Run the phase once over the whole contour; Fill restarts from the
	// nearest frame.
	ph := 0.0
	for i := 0; i < n; i++ {
		t.phase[i] = ph
		for s := 0; s < t.Hop; s++ {
			f, _ := t.at(i*t.Hop + s)
			ph = wrap(ph + 2*math.Pi*f/float64(sampleRate))
		}
	}
	t.phase[n] = ph
	return t
}

func median3(a, b, c float64) float64 {
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	if a > b {
		b = a
	}
	return b
}

func wrap(p float64) float64 {
	if p >= 2*math.Pi {
		p -= 2 * math.Pi * math.Floor(p/(2*math.Pi))
	}
	return p
}

// at is the instantaneous frequency and voicing at sample s: voicing ramps
// linearly between frame centres; the frequency is interpolated between two
// voiced frames and held from the voiced one next to an unvoiced one (so a
// voiced stretch starts at its own pitch, not at a glide up from 0).
func (t Track) at(s int) (f, v float64) {
	n := len(t.F0)
	if n == 0 || s < 0 {
		return 0, 0
	}
	i := s / t.Hop
	if i >= n-1 {
		f = t.F0[n-1]
		if f > 0 {
			return f, 1
		}
		return 0, 0
	}
	frac := float64(s-i*t.Hop) / float64(t.Hop)
	a, b := t.F0[i], t.F0[i+1]
	va, vb := 0.0, 0.0
	if a > 0 {
		va = 1
	}
	if b > 0 {
		vb = 1
	}
	v = va + (vb-va)*frac
	switch {
	case a > 0 && b > 0:
		f = a + (b-a)*frac
	case a > 0:
		f = a
	case b > 0:
		f = b
	}
	return f, v
}

// Fill writes the excitation of samples [start, start+n) into dst as
// Channels rows of n values each, row k at dst[k*stride:]: v*sin(phi) and
// v*cos(phi). Samples past the track's end continue its last frame.
func (t Track) Fill(dst []float32, stride, start, n int) {
	if n <= 0 {
		return
	}
	if stride < n || len(dst) < (Channels-1)*stride+n {
		panic(fmt.Sprintf("excitation: Fill: dst of %d values cannot hold %d rows of %d at stride %d", len(dst), Channels, n, stride))
	}
	nf := len(t.F0)
	if nf == 0 {
		for k := 0; k < Channels; k++ {
			clear(dst[k*stride : k*stride+n])
		}
		return
	}
	i := min(max(start, 0)/t.Hop, nf)
	s := i * t.Hop
	ph := t.phase[i]
	for ; s < start; s++ {
		f, _ := t.at(s)
		ph = wrap(ph + 2*math.Pi*f/float64(t.SampleRate))
	}
	for j := 0; j < n; j++ {
		f, v := t.at(s)
		if v > 0 {
			sn, cs := math.Sincos(ph + t.offsetAt(s))
			dst[j] = float32(v * sn)
			dst[stride+j] = float32(v * cs)
		} else {
			dst[j], dst[stride+j] = 0, 0
		}
		ph = wrap(ph + 2*math.Pi*f/float64(t.SampleRate))
		s++
	}
}

// FillPeriod writes the pitch period in samples of samples [start,
// start+n) into dst[:n] (sample rate / F0 where the voicing is above 0, 0
// elsewhere): what a model's lag taps (wavenet.LagInput) look back by.
func (t Track) FillPeriod(dst []float32, start, n int) {
	for j := 0; j < n; j++ {
		f, v := t.at(start + j)
		if v > 0 && f > 0 {
			dst[j] = float32(float64(t.SampleRate) / f)
		} else {
			dst[j] = 0
		}
	}
}

// Period is FillPeriod of samples [0, n).
func (t Track) Period(n int) []float32 {
	dst := make([]float32, n)
	t.FillPeriod(dst, 0, n)
	return dst
}

// Voicing is the voicing strength in [0, 1] of samples [0, n) (the
// amplitude of Signal's sine): what a pitch postfilter weighs its comb by.
func (t Track) Voicing(n int) []float32 {
	dst := make([]float32, n)
	for j := range dst {
		if f, v := t.at(j); f > 0 {
			dst[j] = float32(min(max(v, 0), 1))
		}
	}
	return dst
}

// Signal is the excitation of samples [0, n): Channels rows of n values.
func (t Track) Signal(n int) []float32 {
	dst := make([]float32, Channels*n)
	t.Fill(dst, n, 0, n)
	return dst
}

// Tracks estimates n tracks on every CPU at once: mel(i) returns the i-th
// log-mel (frames x n_mels, not normalised) and its frame count; progress,
// when set, is called after each track (from several goroutines). The
// first error stops the work and is returned.
func (e *Estimator) Tracks(n int, mel func(i int) ([]float32, int, error), progress func()) ([]Track, error) {
	out := make([]Track, n)
	var (
		mu   sync.Mutex
		next int
		errs []error
		wg   sync.WaitGroup
	)
	take := func() int {
		mu.Lock()
		defer mu.Unlock()
		if next >= n || len(errs) > 0 {
			return -1
		}
		next++
		return next - 1
	}
	for range min(runtime.GOMAXPROCS(0), n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := take(); i >= 0; i = take() {
				m, frames, err := mel(i)
				if err == nil {
					out[i], err = e.Track(m, frames)
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				if progress != nil {
					progress()
				}
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return out, nil
}

// Config is the mel configuration the estimator inverts.
func (e *Estimator) Config() melspec.Config { return e.gl.Config() }

// AlignTo returns a copy of t whose phase follows the fundamental of wave
// (the recording the mel was computed from): per frame, the offset that
// turns the running phase into the phase of wave's component at F0,
// measured by demodulating wave with the running phase over the frame's
// Hann window. Training on an aligned excitation makes it predict the
// waveform, so the network learns to follow it instead of the past
// samples alone; at synthesis nothing is aligned (there is no recording),
// and the network follows the sine it is given.
func (t Track) AlignTo(wave []float32) Track {
	a := t
	n := len(t.F0)
	a.offset = make([]float64, n)
	const half = 512 // the quality frame: 1024 samples centred on the frame
	for i := 0; i < n; i++ {
		if t.F0[i] <= 0 {
			continue
		}
		c := i * t.Hop
		lo, hi := max(0, c-half), min(len(wave), c+half)
		if lo >= hi {
			continue
		}
		// Running phase at lo, then advanced sample by sample.
		fi := min(lo/t.Hop, n)
		ph := t.phase[fi]
		for s := fi * t.Hop; s < lo; s++ {
			f, _ := t.at(s)
			ph += 2 * math.Pi * f / float64(t.SampleRate)
		}
		var re, im float64
		for s := lo; s < hi; s++ {
			w := 0.5 + 0.5*math.Cos(math.Pi*float64(s-c)/half)
			sn, cs := math.Sincos(ph)
			// wave ~ A sin(ph + off): its product with e^{-i ph} has the
			// low-frequency part (A/2) e^{i(off - pi/2)}.
			x := w * float64(wave[s])
			re += x * cs
			im -= x * sn
			f, _ := t.at(s)
			ph += 2 * math.Pi * f / float64(t.SampleRate)
		}
		a.offset[i] = math.Atan2(im, re) + math.Pi/2
	}
	return a
}

// offsetAt is the aligned phase offset at sample s (0 when not aligned).
func (t Track) offsetAt(s int) float64 {
	if t.offset == nil {
		return 0
	}
	n := len(t.offset)
	i := s / t.Hop
	if i >= n-1 {
		return t.offset[n-1]
	}
	a, b := t.offset[i], t.offset[i+1]
	// Unvoiced neighbours have no offset of their own: hold the voiced one.
	if t.F0[i] <= 0 {
		a = b
	} else if t.F0[i+1] <= 0 {
		b = a
	}
	d := math.Remainder(b-a, 2*math.Pi)
	return a + d*float64(s-i*t.Hop)/float64(t.Hop)
}
