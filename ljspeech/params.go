package ljspeech

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"github.com/wavecat/wavecat/melspec"
)

// Params is every preprocessing parameter; it is saved as preprocess.json in
// the dump so that training and synthesis use exactly what made the data.
type Params struct {
	SampleRate int        `json:"sample_rate"`
	Mel        MelParams  `json:"mel"`
	Trim       TrimParams `json:"trim"`
	// HighpassCutoff (Hz) and HighpassTaps describe the windowed-sinc FIR
	// applied causally (lfilter) after trimming; 0 taps disables it.
	HighpassCutoff float64 `json:"highpass_cutoff_hz"`
	HighpassTaps   int     `json:"highpass_taps"`
	// Gain multiplies the waveform target after the mel is computed.
	Gain float64 `json:"gain"`
	// Preemphasis is c in y[n] = x[n] - c x[n-1], applied after the gain;
	// synthesis inverts it, then divides by Gain.
	Preemphasis float64 `json:"preemphasis"`
	// PadRight zeros are appended before cutting the target to frames*hop.
	PadRight int `json:"pad_right"`
	// Features documents the stored mel: unnormalised log10, frames x n_mels.
	Features string `json:"features"`
}

// MelParams mirrors melspec.Config with stable JSON names.
type MelParams struct {
	NFFT      int     `json:"n_fft"`
	Hop       int     `json:"hop"`
	WinLength int     `json:"win_length"`
	NMels     int     `json:"n_mels"`
	FMin      float64 `json:"fmin"`
	FMax      float64 `json:"fmax"`
}

// TrimParams mirrors melspec.TrimConfig.
type TrimParams struct {
	TopDB       float64 `json:"top_db"`
	FrameLength int     `json:"frame_length"`
	HopLength   int     `json:"hop_length"`
	// Pad is "constant" (librosa >= 0.10) or "reflect" (older librosa).
	Pad string `json:"pad"`
}

const featuresDoc = "log10(max(mel magnitude, 1e-10)), float32, frames x n_mels, not normalised (see stats.json)"

// DefaultParams is the LJSpeech recipe of r9y9/wavenet_vocoder
// (REFERENCE.md §3).
func DefaultParams() Params {
	c := melspec.DefaultConfig()
	t := melspec.DefaultTrimConfig()
	return Params{
		SampleRate:     c.SampleRate,
		Mel:            MelParams{NFFT: c.NFFT, Hop: c.Hop, WinLength: c.WinLength, NMels: c.NMels, FMin: c.FMin, FMax: c.FMax},
		Trim:           TrimParams{TopDB: t.TopDB, FrameLength: t.FrameLength, HopLength: t.HopLength, Pad: padName(t.Pad)},
		HighpassCutoff: melspec.HighPassCutoff,
		HighpassTaps:   melspec.HighPassTaps,
		Gain:           melspec.Gain,
		Preemphasis:    melspec.PreEmphCoef,
		PadRight:       c.NFFT,
		Features:       featuresDoc,
	}
}

// MelConfig returns the melspec configuration of p.
func (p Params) MelConfig() melspec.Config {
	return melspec.Config{SampleRate: p.SampleRate, NFFT: p.Mel.NFFT, Hop: p.Mel.Hop, WinLength: p.Mel.WinLength,
		NMels: p.Mel.NMels, FMin: p.Mel.FMin, FMax: p.Mel.FMax}
}

// TrimConfig returns the melspec trim configuration of p.
func (p Params) TrimConfig() (melspec.TrimConfig, error) {
	t := melspec.TrimConfig{TopDB: p.Trim.TopDB, FrameLength: p.Trim.FrameLength, HopLength: p.Trim.HopLength}
	switch p.Trim.Pad {
	case "constant", "":
		t.Pad = melspec.PadConstant
	case "reflect":
		t.Pad = melspec.PadReflect
	default:
		return t, fmt.Errorf("ljspeech: trim pad %q, want constant or reflect", p.Trim.Pad)
	}
	return t, nil
}

// Validate reports the first parameter that cannot work.
func (p Params) Validate() error {
	if err := p.MelConfig().Validate(); err != nil {
		return err
	}
	if _, err := p.TrimConfig(); err != nil {
		return err
	}
	switch {
	case p.Trim.FrameLength <= 0 || p.Trim.HopLength <= 0:
		return fmt.Errorf("ljspeech: trim frame length %d and hop %d must be positive", p.Trim.FrameLength, p.Trim.HopLength)
	case p.HighpassTaps < 0 || (p.HighpassTaps > 0 && p.HighpassTaps%2 == 0):
		return fmt.Errorf("ljspeech: high-pass taps %d must be 0 (off) or odd", p.HighpassTaps)
	case p.Gain <= 0:
		return fmt.Errorf("ljspeech: gain %g must be positive", p.Gain)
	case p.Preemphasis < 0 || p.Preemphasis >= 1:
		return fmt.Errorf("ljspeech: pre-emphasis %g must be in [0, 1)", p.Preemphasis)
	case p.PadRight < p.Mel.Hop:
		// frames*hop can exceed the signal length by up to hop samples.
		return fmt.Errorf("ljspeech: right padding %d must be at least the hop %d", p.PadRight, p.Mel.Hop)
	}
	return nil
}

func padName(m melspec.PadMode) string {
	if m == melspec.PadReflect {
		return "reflect"
	}
	return "constant"
}

// Restore turns a waveform in the training-target domain (gain, then
// pre-emphasis) back into audio in place: inverse pre-emphasis, divide by the
// gain, clip to [-1, 1]. Synthesis, evaluation and listening tests all use
// it, so what is scored is exactly what is written.
func (p Params) Restore(y []float32) {
	if p.Preemphasis != 0 {
		melspec.DeEmphasis(y, y, p.Preemphasis)
	}
	gain := p.Gain
	if gain == 0 {
		gain = 1
	}
	for i, v := range y {
		y[i] = float32(min(max(float64(v)/gain, -1), 1))
	}
}

// key is a hash of the parameters, stored in each utterance's marker so that
// features made with other settings are never reused.
func (p Params) key() (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("ljspeech: encoding parameters: %w", err)
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8]), nil
}
