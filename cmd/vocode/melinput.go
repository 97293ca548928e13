package main

import (
	"fmt"
	"io"

	"github.com/wavecat/wavecat/audio"
)

// Bounds of what an input mel can hold. The extractor clamps magnitudes at
// 1e-10 before log10, and a waveform in [-1, 1] gives mel magnitudes well
// below 10^3, so raw values outside [-10.5, 6] are another kind of
// spectrogram (natural log, dB, linear power, integers); normalised ones are
// z-scores, for which 50 is already absurd. Such input gives clipped noise,
// so it is refused instead of synthesised.
const (
	rawMelMin, rawMelMax = -10.5, 6.0
	normMelAbsMax        = 50.0
)

// readMelInput reads one mel file with the layout --mel-layout gives, says so
// on one line when it read a (mels, frames) array, and refuses values no
// log10 mel holds.
func readMelInput(p string, nMels int, normalised bool, stderr io.Writer) ([]float32, int, error) {
	layout, err := audio.ParseMelLayout(synthOpts.melLayout)
	if err != nil {
		return nil, 0, fmt.Errorf("--mel-layout: %w", err)
	}
	mel, frames, transposed, err := audio.ReadMel(p, nMels, layout)
	if err != nil {
		return nil, 0, err
	}
	if transposed && layout == audio.MelLayoutAuto {
		fmt.Fprintf(stderr, "vocode: %s: read as (%d mels, %d frames), librosa's layout, and transposed (--mel-layout mels-frames says so)\n", p, nMels, frames)
	}
	lo, hi := mel[0], mel[0]
	for _, v := range mel {
		lo, hi = min(lo, v), max(hi, v)
	}
	switch {
	case normalised && (lo < -normMelAbsMax || hi > normMelAbsMax):
		return nil, 0, fmt.Errorf("%s: values from %.4g to %.4g, far outside normalised mels (z-scores, |x| < %g): were they normalised with this checkpoint's statistics (--mel-normalized)?", p, lo, hi, normMelAbsMax)
	case !normalised && (lo < rawMelMin || hi > rawMelMax):
		return nil, 0, fmt.Errorf("%s: values from %.4g to %.4g, outside a log10 magnitude mel (%g to %g): wavecat reads log10(max(mel, 1e-10)) as `vocode mel` writes it; convert natural-log, dB or power spectrograms first", p, lo, hi, rawMelMin, rawMelMax)
	}
	return mel, frames, nil
}
