// Package melspec computes the log-mel spectrogram of the reference WaveNet
// vocoder (librosa semantics, see REFERENCE.md §3) and the preprocessing
// filters its dataset recipe applies before and after it: silence trimming,
// the 70 Hz high-pass FIR, gain, pre-emphasis and per-dimension mean/std
// normalisation.
//
// Everything numerically sensitive runs in float64 and is stored as float32,
// so results match a float64 numpy re-implementation of librosa to ~1e-6 even
// where log10 amplifies error (quiet frames near the 1e-10 clamp).
package melspec

import "fmt"

// Config holds every parameter of the mel analysis. The JSON names match
// testdata/reference/make_reference.py so a dataset can record its config.
type Config struct {
	SampleRate int     `json:"sample_rate"` // Hz
	NFFT       int     `json:"n_fft"`       // FFT size (frame length after zero-padding the window)
	Hop        int     `json:"hop"`         // samples between frames
	WinLength  int     `json:"win_length"`  // Hann window length, <= NFFT, centred in the frame
	NMels      int     `json:"n_mels"`      // number of mel bands
	FMin       float64 `json:"fmin"`        // lowest filterbank edge, Hz
	FMax       float64 `json:"fmax"`        // highest filterbank edge, Hz (<= SampleRate/2)
}

// DefaultConfig is the LJSpeech recipe of r9y9/wavenet_vocoder.
func DefaultConfig() Config {
	return Config{SampleRate: 22050, NFFT: 1024, Hop: 256, WinLength: 1024, NMels: 80, FMin: 125, FMax: 7600}
}

// Validate reports the first parameter that cannot work.
func (c Config) Validate() error {
	switch {
	case c.SampleRate <= 0:
		return fmt.Errorf("melspec: sample rate %d must be positive", c.SampleRate)
	case c.NFFT < 2:
		return fmt.Errorf("melspec: n_fft %d must be at least 2", c.NFFT)
	case c.Hop <= 0:
		return fmt.Errorf("melspec: hop %d must be positive", c.Hop)
	case c.WinLength <= 0 || c.WinLength > c.NFFT:
		return fmt.Errorf("melspec: win_length %d must be in [1, n_fft=%d]", c.WinLength, c.NFFT)
	case c.NMels <= 0:
		return fmt.Errorf("melspec: n_mels %d must be positive", c.NMels)
	case c.FMin < 0 || c.FMax <= c.FMin || c.FMax > float64(c.SampleRate)/2:
		return fmt.Errorf("melspec: need 0 <= fmin (%g) < fmax (%g) <= sr/2 (%g)", c.FMin, c.FMax, float64(c.SampleRate)/2)
	}
	return nil
}

// Frames is the number of frames librosa's centred STFT gives for n
// samples: 1 + n/hop (0 for an empty signal).
func (c Config) Frames(n int) int {
	if n <= 0 {
		return 0
	}
	return 1 + n/c.Hop
}

// Bins is the number of one-sided FFT bins, 1 + n_fft/2.
func (c Config) Bins() int { return 1 + c.NFFT/2 }
