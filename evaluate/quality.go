package evaluate

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"

	"github.com/wavecat/wavecat/melspec"
)

// The quality frame grid is the mel grid (REFERENCE.md §5): frames centred
// at f*QualityHop, 1 + len/QualityHop of them, QualityFrameLen samples each,
// the signal zero-padded at both ends. Measures on this grid line up with the
// mel frames the vocoder was conditioned on.
const (
	QualityHop      = 256
	QualityFrameLen = 1024
	// SpeechRangeDB: a frame of the original is speech when its RMS is
	// within this many dB of the loudest frame's. Silence carries no pitch
	// and its spectrum is noise floor, so it is left out of the averages.
	SpeechRangeDB = 40.0
	// GrossErrorRatio: an F0 further than this fraction from the
	// original's is a gross (octave-like) error, counted by GrossPitchError
	// and kept out of F0RMSECents so a few octave jumps do not swamp it.
	GrossErrorRatio = 0.2
	// clipHi, clipLo: a sample v is at 16-bit full scale when the WAV writer's
	// rounding (round half away from zero of v*32768, audio.floatToInt16)
	// saturates, i.e. v*32768 >= 32766.5 (encodes as 32767) or
	// v*32768 <= -32767.5 (encodes as -32768).
	clipHi = 32766.5 / 32768
	clipLo = -32767.5 / 32768
	// levelFloor keeps the dBFS of an all-zero clip finite (-200 dBFS).
	levelFloor = 1e-10
)

// qualityFrames is the number of frames on the quality grid for n samples.
func qualityFrames(n int) int {
	if n <= 0 {
		return 0
	}
	return 1 + n/QualityHop
}

// qualityFrame copies frame f of y (QualityFrameLen samples centred at
// f*QualityHop, zeros outside y) into dst as float64.
func qualityFrame(dst []float64, y []float32, f int) {
	start := f*QualityHop - QualityFrameLen/2
	for i := range dst {
		if j := start + i; j >= 0 && j < len(y) {
			dst[i] = float64(y[j])
		} else {
			dst[i] = 0
		}
	}
}

// FrameRMS is the RMS of each quality frame (zero padding included in the
// mean, as librosa's centred rms).
func FrameRMS(y []float32) []float64 {
	out := make([]float64, qualityFrames(len(y)))
	x := make([]float64, QualityFrameLen)
	for f := range out {
		qualityFrame(x, y, f)
		var s float64
		for _, v := range x {
			s += v * v
		}
		out[f] = math.Sqrt(s / QualityFrameLen)
	}
	return out
}

// SpeechFrames marks the quality frames of ref whose RMS is within
// SpeechRangeDB of its loudest frame (none if ref is all zeros).
func SpeechFrames(ref []float32) []bool {
	rms := FrameRMS(ref)
	var top float64
	for _, v := range rms {
		top = math.Max(top, v)
	}
	thr := top * math.Pow(10, -SpeechRangeDB/20)
	sp := make([]bool, len(rms))
	for i, v := range rms {
		sp[i] = top > 0 && v >= thr
	}
	return sp
}

// QualityReport holds the audio-quality measures of a synthesis against its
// original (REFERENCE.md §5). Fractions are in [0, 1]; a measure whose set of
// frames is empty (say, no frame voiced in both) is NaN, written as JSON null.
type QualityReport struct {
	// VoicingAgreement: fraction of speech frames where both signals make
	// the same voiced/unvoiced decision.
	VoicingAgreement float64 `json:"voicing_agreement"`
	// GrossPitchError: fraction of frames voiced in both whose F0 differs
	// from the original's by more than GrossErrorRatio of it.
	GrossPitchError float64 `json:"gross_pitch_error"`
	// F0RMSECents: RMS of 1200*log2(f0 test / f0 ref) over the frames voiced
	// in both without a gross error.
	F0RMSECents float64 `json:"f0_rmse_cents"`
	// Periodicity: mean autocorrelation peak of the synthesis over frames
	// voiced in the original (espeak-ng originals score ~0.86): how periodic
	// the synthesis is where it should be.
	Periodicity float64 `json:"periodicity"`
	// LevelDiffDB: RMS level in dBFS of the whole synthesis minus that of
	// the original.
	LevelDiffDB float64 `json:"level_diff_db"`
	// ClippedFraction: fraction of synthesis samples at 16-bit full scale
	// (the WAV encoding saturates: v >= 32766.5/32768 or v <= -32767.5/32768).
	ClippedFraction float64 `json:"clipped_fraction"`
	// DCOffset: mean sample value of the synthesis.
	DCOffset float64 `json:"dc_offset"`
	// BandMCD: frame-aligned 24th-order mel-cepstral distortion in dB over
	// speech frames, counting only the spectrum in BandLoHz..BandHiHz. Unlike
	// the full-band MCD it is not blind to gain: a gain moves the in-band log
	// spectrum against the shared out-of-band constant (x0.5 gives 2.17 dB
	// on any signal; see LevelDiffDB for the level itself).
	BandMCD float64 `json:"band_mcd_db"`
	// LogMelL1Speech: mean |log10 mel(ref) - log10 mel(test)| over speech
	// frames (NaN when Quality was given no extractor).
	LogMelL1Speech float64 `json:"log_mel_l1_speech"`

	// Frame counts behind the fractions.
	Frames       int `json:"frames"`
	SpeechFrames int `json:"speech_frames"`
	VoicedRef    int `json:"voiced_ref"`
	VoicedTest   int `json:"voiced_test"`
	VoicedBoth   int `json:"voiced_both"`
}

// MarshalJSON writes NaN and infinite measures as null (encoding/json
// refuses them).
func (r QualityReport) MarshalJSON() ([]byte, error) {
	v := reflect.ValueOf(r)
	t := v.Type()
	out := []byte{'{'} // field order, so reports diff cleanly
	for i := 0; i < t.NumField(); i++ {
		fv := v.Field(i).Interface()
		if x, ok := fv.(float64); ok && (math.IsNaN(x) || math.IsInf(x, 0)) {
			fv = nil
		}
		k, err := json.Marshal(t.Field(i).Tag.Get("json"))
		if err != nil {
			return nil, err
		}
		val, err := json.Marshal(fv)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(append(append(out, k...), ':'), val...)
	}
	return append(out, '}'), nil
}

// UnmarshalJSON reads null measures back as NaN.
func (r *QualityReport) UnmarshalJSON(b []byte) error {
	type plain QualityReport
	p := plain{
		VoicingAgreement: math.NaN(), GrossPitchError: math.NaN(), F0RMSECents: math.NaN(),
		Periodicity: math.NaN(), LevelDiffDB: math.NaN(), ClippedFraction: math.NaN(),
		DCOffset: math.NaN(), BandMCD: math.NaN(), LogMelL1Speech: math.NaN(),
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*r = QualityReport(p)
	return nil
}

// QualityFrameData is the per-frame analysis behind a QualityReport, on the
// quality frame grid.
type QualityFrameData struct {
	Speech                []bool    // speech frames of ref
	F0Ref, F0Test         []float64 // Hz (0 where no positive peak)
	PeakRef, PeakTest     []float64 // normalised autocorrelation peak
	VoicedRef, VoicedTest []bool    // voiced decisions (speech decided on ref for both)
	BandMCD               []float64 // dB, every frame
	LogMelL1              []float64 // mean over mels, every frame (nil without an extractor)
}

// Quality compares a synthesis (test) with its original (ref), both
// waveforms in [-1, 1] at sampleRate and sample-aligned, after trimming both
// to the shorter length. ex (may be nil: LogMelL1Speech is then NaN) must
// use sampleRate and QualityHop so its frames are the quality frames.
func Quality(ref, test []float32, sampleRate int, ex *melspec.Extractor) (QualityReport, error) {
	r, _, err := QualityDetail(ref, test, sampleRate, ex)
	return r, err
}

// QualityDetail is Quality with the per-frame data.
func QualityDetail(ref, test []float32, sampleRate int, ex *melspec.Extractor) (QualityReport, *QualityFrameData, error) {
	var rep QualityReport
	n := min(len(ref), len(test))
	if n == 0 {
		return rep, nil, fmt.Errorf("quality: empty waveform (ref %d, test %d samples)", len(ref), len(test))
	}
	if err := checkPitchRate(sampleRate); err != nil {
		return rep, nil, fmt.Errorf("quality: %w", err)
	}
	if ex != nil {
		c := ex.Config()
		if c.SampleRate != sampleRate {
			return rep, nil, fmt.Errorf("quality: mel extractor is for %d Hz, audio is %d Hz", c.SampleRate, sampleRate)
		}
		if c.Hop != QualityHop {
			return rep, nil, fmt.Errorf("quality: mel extractor hop %d, the quality frame grid needs %d", c.Hop, QualityHop)
		}
	}
	ref, test = ref[:n], test[:n]
	frames := qualityFrames(n)
	d := &QualityFrameData{Speech: SpeechFrames(ref)}
	d.F0Ref, d.PeakRef = Pitch(ref, sampleRate)
	d.F0Test, d.PeakTest = Pitch(test, sampleRate)
	d.VoicedRef = Voiced(d.PeakRef, d.Speech)
	d.VoicedTest = Voiced(d.PeakTest, d.Speech)

	mc := DefaultMCepConfig()
	cr, err := BandMelCepstra(ref, sampleRate, mc, BandLoHz, BandHiHz)
	if err != nil {
		return rep, nil, err
	}
	ct, err := BandMelCepstra(test, sampleRate, mc, BandLoHz, BandHiHz)
	if err != nil {
		return rep, nil, err
	}
	d.BandMCD = FrameMCD(cr, ct)
	if len(d.BandMCD) != frames {
		return rep, nil, errors.New("quality: internal error: mel-cepstrum frame grid differs from the quality grid")
	}
	if ex != nil {
		a, fa := ex.Compute(ref)
		b, fb := ex.Compute(test)
		if fa != frames || fb != frames {
			return rep, nil, fmt.Errorf("quality: mel extractor gives %d frames for %d samples, the quality grid %d", fa, n, frames)
		}
		nm := ex.Config().NMels
		d.LogMelL1 = make([]float64, frames)
		for f := range d.LogMelL1 {
			var s float64
			for i := f * nm; i < (f+1)*nm; i++ {
				s += math.Abs(float64(a[i]) - float64(b[i]))
			}
			d.LogMelL1[f] = s / float64(nm)
		}
	}

	rep.Frames = frames
	var agree, gross, fine int
	var cents2, period, mcd, mel float64
	for f := 0; f < frames; f++ {
		vr, vt := d.VoicedRef[f], d.VoicedTest[f]
		if vr {
			rep.VoicedRef++
			period += d.PeakTest[f]
		}
		if vt {
			rep.VoicedTest++
		}
		if vr && vt {
			rep.VoicedBoth++
			fr, ft := d.F0Ref[f], d.F0Test[f]
			if math.Abs(ft-fr) > GrossErrorRatio*fr {
				gross++
			} else {
				c := 1200 * math.Log2(ft/fr)
				cents2 += c * c
				fine++
			}
		}
		if !d.Speech[f] {
			continue
		}
		rep.SpeechFrames++
		if vr == vt {
			agree++
		}
		mcd += d.BandMCD[f]
		if d.LogMelL1 != nil {
			mel += d.LogMelL1[f]
		}
	}
	ratio := func(a float64, b int) float64 {
		if b == 0 {
			return math.NaN()
		}
		return a / float64(b)
	}
	rep.VoicingAgreement = ratio(float64(agree), rep.SpeechFrames)
	rep.GrossPitchError = ratio(float64(gross), rep.VoicedBoth)
	rep.F0RMSECents = math.Sqrt(ratio(cents2, fine))
	rep.Periodicity = ratio(period, rep.VoicedRef)
	rep.BandMCD = ratio(mcd, rep.SpeechFrames)
	rep.LogMelL1Speech = math.NaN()
	if d.LogMelL1 != nil {
		rep.LogMelL1Speech = ratio(mel, rep.SpeechFrames)
	}

	var sr, st, sum float64
	var clipped int
	for i := range n {
		a, b := float64(ref[i]), float64(test[i])
		sr += a * a
		st += b * b
		sum += b
		if b >= clipHi || b <= clipLo {
			clipped++
		}
	}
	dbfs := func(s float64) float64 { return 20 * math.Log10(math.Max(math.Sqrt(s/float64(n)), levelFloor)) }
	rep.LevelDiffDB = dbfs(st) - dbfs(sr)
	rep.ClippedFraction = float64(clipped) / float64(n)
	rep.DCOffset = sum / float64(n)
	return rep, d, nil
}
