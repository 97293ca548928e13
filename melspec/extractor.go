package melspec

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/dsp/fourier"
)

// logFloor is the clamp applied before log10, as in the reference recipe.
const logFloor = 1e-10

// band is one mel filter restricted to its nonzero FFT bins, so applying the
// filterbank costs ~2 multiply-adds per bin instead of n_mels per bin.
type band struct {
	start int
	w     []float64 // float32-rounded weights held as float64
}

// Extractor computes log-mel spectrograms with a precomputed window,
// filterbank and FFT plan. It keeps scratch buffers, so one Extractor must
// not be used by two goroutines at once; give each worker its own (they are
// cheap: a few tens of KB).
//
// The FFT is gonum's dsp/fourier (FFTPACK real transform, float64): measured
// faster than mjibson/go-dsp and allocation free (REFERENCE.md §4), and
// float64 keeps log10 of quiet bins accurate.
type Extractor struct {
	cfg    Config
	window []float64 // periodic Hann of WinLength, zero-padded centred to NFFT
	fb     []float32 // dense filterbank, for callers that want the matrix
	bands  []band
	fft    *fourier.FFT
	frame  []float64
	coef   []complex128
	mag    []float64
}

// NewExtractor validates cfg and precomputes everything Compute needs.
func NewExtractor(cfg Config) (*Extractor, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nb := cfg.Bins()
	e := &Extractor{
		cfg:    cfg,
		window: make([]float64, cfg.NFFT),
		fb:     Filterbank(cfg),
		fft:    fourier.NewFFT(cfg.NFFT),
		frame:  make([]float64, cfg.NFFT),
		coef:   make([]complex128, nb),
		mag:    make([]float64, nb),
	}
	off := (cfg.NFFT - cfg.WinLength) / 2 // librosa.util.pad_center
	for k := 0; k < cfg.WinLength; k++ {
		// scipy get_window('hann', N, fftbins=True): periodic, period N.
		e.window[off+k] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(k)/float64(cfg.WinLength))
	}
	for m := 0; m < cfg.NMels; m++ {
		row := e.fb[m*nb : (m+1)*nb]
		first, last := -1, -1
		for k, v := range row {
			if v != 0 {
				if first < 0 {
					first = k
				}
				last = k
			}
		}
		b := band{start: 0}
		if first >= 0 {
			b.start = first
			b.w = make([]float64, last-first+1)
			for k := range b.w {
				b.w[k] = float64(row[first+k])
			}
		}
		e.bands = append(e.bands, b)
	}
	return e, nil
}

// Config returns the configuration the Extractor was built with.
func (e *Extractor) Config() Config { return e.cfg }

// Filterbank returns the extractor's n_mels x (1+n_fft/2) float32 matrix
// (shared; do not modify).
func (e *Extractor) Filterbank() []float32 { return e.fb }

// Compute returns log10(max(mel, 1e-10)) as frames x n_mels float32,
// row-major, with frames = 1 + len(y)/hop. An empty y gives (nil, 0).
func (e *Extractor) Compute(y []float32) (mel []float32, frames int) {
	frames = e.cfg.Frames(len(y))
	if frames == 0 {
		return nil, 0
	}
	mel = make([]float32, frames*e.cfg.NMels)
	e.ComputeInto(mel, y)
	return mel, frames
}

// ComputeInto is Compute without allocation: dst must hold at least
// Frames(len(y))*NMels values. It returns the number of frames written.
func (e *Extractor) ComputeInto(dst []float32, y []float32) int {
	c := e.cfg
	n := len(y)
	frames := c.Frames(n)
	if len(dst) < frames*c.NMels {
		panic(fmt.Sprintf("melspec: dst holds %d values, need %d frames x %d mels", len(dst), frames, c.NMels))
	}
	half := c.NFFT / 2
	for t := 0; t < frames; t++ {
		s := t*c.Hop - half
		if s >= 0 && s+c.NFFT <= n {
			seg := y[s : s+c.NFFT]
			for k, w := range e.window {
				e.frame[k] = w * float64(seg[k])
			}
		} else {
			for k, w := range e.window {
				e.frame[k] = w * float64(y[reflect(s+k, n)])
			}
		}
		e.fft.Coefficients(e.coef, e.frame)
		for k, v := range e.coef {
			re, im := real(v), imag(v)
			e.mag[k] = math.Sqrt(re*re + im*im)
		}
		out := dst[t*c.NMels : (t+1)*c.NMels]
		for m, b := range e.bands {
			var acc float64
			mag := e.mag[b.start : b.start+len(b.w)]
			for k, w := range b.w {
				acc += w * mag[k]
			}
			out[m] = float32(math.Log10(math.Max(acc, logFloor)))
		}
	}
	return frames
}

// reflect maps an index outside [0, n) the way numpy.pad(mode='reflect')
// does (mirror about the end samples, not repeating them), including
// repeated reflection when the padding exceeds the signal length.
func reflect(j, n int) int {
	if n == 1 {
		return 0
	}
	p := 2 * (n - 1)
	j %= p
	if j < 0 {
		j += p
	}
	if j >= n {
		j = p - j
	}
	return j
}
