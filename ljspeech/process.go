package ljspeech

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/melspec"
)

// Processor runs the reference preprocessing chain on one recording. It
// holds scratch state (the mel extractor), so give each goroutine its own.
type Processor struct {
	p    Params
	trim melspec.TrimConfig
	fir  []float64 // nil when the high-pass is off
	ext  *melspec.Extractor
}

// NewProcessor validates p and precomputes the filter and mel extractor.
func NewProcessor(p Params) (*Processor, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	trim, _ := p.TrimConfig()
	ext, err := melspec.NewExtractor(p.MelConfig())
	if err != nil {
		return nil, err
	}
	pr := &Processor{p: p, trim: trim, ext: ext}
	if p.HighpassTaps > 0 {
		if pr.fir, err = melspec.HighPassFIR(p.HighpassTaps, p.HighpassCutoff, float64(p.SampleRate)); err != nil {
			return nil, err
		}
	}
	return pr, nil
}

// Result is one preprocessed utterance. Dropped is non-empty (the reason)
// when the recipe discards it; Wave and Mel are then nil.
type Result struct {
	Wave    []float32 // waveform target, len Frames*hop: gained and pre-emphasised
	Mel     []float32 // Frames x n_mels log10 mel, not normalised
	Frames  int
	MaxAbs  float64 // max |target| before padding (the drop test)
	Dropped string
}

// Process applies, in the reference order: trim silence; high-pass FIR; log
// mel (computed HERE, before the gain and pre-emphasis, so the features
// describe the recorded signal); gain; pre-emphasis; drop when the target
// exceeds [-1,1] (it could not be coded); pad PadRight zeros on the right
// and cut to frames*hop samples so every frame owns exactly hop samples. x
// is mono at p.SampleRate in [-1,1] and is not modified.
func (pr *Processor) Process(x []float32) (Result, error) {
	p := pr.p
	kept, _, _, err := melspec.Trim(x, pr.trim)
	if err != nil {
		return Result{}, err
	}
	if len(kept) == 0 {
		return Result{Dropped: "empty after silence trimming"}, nil
	}
	y := make([]float32, len(kept)+p.PadRight)
	if pr.fir != nil {
		melspec.FIRFilter(y, kept, pr.fir)
	} else {
		copy(y, kept)
	}
	sig := y[:len(kept)]
	mel, frames := pr.ext.Compute(sig)
	melspec.Scale(sig, sig, float32(p.Gain))
	melspec.PreEmphasis(sig, sig, p.Preemphasis)
	var peak float64
	for _, v := range sig {
		peak = math.Max(peak, math.Abs(float64(v)))
	}
	if peak > 1 {
		return Result{MaxAbs: peak, Dropped: fmt.Sprintf("max |target| %.4f > 1 after gain and pre-emphasis", peak)}, nil
	}
	n := frames * p.Mel.Hop
	if n > len(y) {
		return Result{}, fmt.Errorf("ljspeech: %d frames need %d samples, have %d (pad_right %d too small)", frames, n, len(y), p.PadRight)
	}
	// y[len(kept):] is still zero: the right padding.
	return Result{Wave: y[:n:n], Mel: mel, Frames: frames, MaxAbs: peak}, nil
}
