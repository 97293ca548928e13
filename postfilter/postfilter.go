// Package postfilter cleans a vocoder's audio with what its mel says, as
// speech decoders do after synthesis: a pitch comb that keeps the
// harmonics of the mel's pitch and lowers the noise between them (the
// long-term postfilter of CELP codecs), then envelope matching, which
// rescales each mel band of the audio's STFT until its mel spectrogram is
// the one it was vocoded from, keeping the vocoder's fine structure and
// phase (the magnitude step of Griffin-Lim, with the vocoder's own
// magnitudes inside each band instead of a smooth inversion).
//
// Why: a small WaveNet trained on CPU fills voiced speech with noise
// between the harmonics and misses the envelope by several dB; measured on
// held-out speech (docs/evaluation.md), these two steps bring the built-in
// model's output within the speech gates, while the network alone is not.
package postfilter

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/melspec"
	"gonum.org/v1/gonum/dsp/fourier"
)

// Options select the steps; the zero value does nothing.
type Options struct {
	// CombGain g in (0, 1] weighs the samples one pitch period either side
	// (g v/2 each, v the voicing) against the sample itself; CombPasses
	// applies the comb that many times (two passes reach two periods).
	CombGain   float64
	CombPasses int
	// EnvelopePasses rescales the bands this many times (each pass sees
	// the overlap-add of the last); MaxGainDB bounds one pass's gain.
	EnvelopePasses int
	MaxGainDB      float64
}

// Default is what vocode applies unless told otherwise, chosen on 31
// klettres clips outside every evaluation set (docs/evaluation.md).
func Default() Options {
	return Options{CombGain: 1, CombPasses: 2, EnvelopePasses: 2, MaxGainDB: 20}
}

// Enabled says whether o changes anything.
func (o Options) Enabled() bool { return o.combs() || o.EnvelopePasses > 0 }

func (o Options) combs() bool { return o.CombGain > 0 && o.CombPasses > 0 }

// Validate reports the first option out of range.
func (o Options) Validate() error {
	switch {
	case !(o.CombGain >= 0 && o.CombGain <= 1):
		return fmt.Errorf("postfilter: comb gain %g must be in [0, 1]", o.CombGain)
	case o.CombPasses < 0 || o.CombPasses > 8:
		return fmt.Errorf("postfilter: %d comb passes must be in [0, 8]", o.CombPasses)
	case o.EnvelopePasses < 0 || o.EnvelopePasses > 8:
		return fmt.Errorf("postfilter: %d envelope passes must be in [0, 8]", o.EnvelopePasses)
	case o.EnvelopePasses > 0 && !(o.MaxGainDB > 0 && o.MaxGainDB <= 60):
		return fmt.Errorf("postfilter: maximum gain %g dB must be in (0, 60]", o.MaxGainDB)
	}
	return nil
}

// NeedsPitch says whether Apply reads the pitch.
func (o Options) NeedsPitch() bool { return o.combs() }

// Apply runs the steps o selects on audio y (not modified) vocoded from
// logmel (frames x n_mels, log10, not normalised, of analysis cfg), with
// period and voicing per sample of y for the comb (ignored without it).
func Apply(y, logmel, period, voicing []float32, cfg melspec.Config, o Options) ([]float32, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	out := append([]float32(nil), y...)
	if o.combs() {
		if len(period) != len(y) || len(voicing) != len(y) {
			return nil, fmt.Errorf("postfilter: %d samples, %d periods and %d voicings", len(y), len(period), len(voicing))
		}
		for range o.CombPasses {
			out = Comb(out, period, voicing, o.CombGain, cfg.Hop)
		}
	}
	if o.EnvelopePasses > 0 {
		var err error
		if out, err = MatchEnvelope(out, logmel, cfg, o.EnvelopePasses, o.MaxGainDB); err != nil {
			return nil, err
		}
	}
	for i, v := range out {
		out[i] = max(-1, min(1, v))
	}
	return out, nil
}

// combSearch is the relative range searched around the given period for
// the lag that best aligns the audio with itself (the mel's pitch is
// coarse; the comb must hit the harmonics it has), in steps of a quarter
// sample over combWindow samples.
const (
	combSearch = 0.03
	combWindow = 512
)

// Comb is one pass of the zero-phase pitch comb: out[n] = (y[n] + g v/2
// (y[n-L] + y[n+L])) / (1 + g v), its response 1 at the harmonics of 1/L
// and (1-gv)/(1+gv) midway between them. Each block of hop samples takes
// the lag L within ±3% of its middle sample's period that maximises the
// normalised correlation of y with itself L back; unvoiced blocks (period
// 0) pass unchanged. Fractional lags interpolate linearly.
func Comb(y, period, voicing []float32, g float64, hop int) []float32 {
	out := make([]float32, len(y))
	for b0 := 0; b0 < len(y); b0 += hop {
		b1 := min(len(y), b0+hop)
		c := (b0 + b1) / 2
		P := float64(period[c])
		if P <= 0 {
			copy(out[b0:b1], y[b0:b1])
			continue
		}
		L := bestLag(y, c, P)
		for n := b0; n < b1; n++ {
			gv := g * float64(voicing[n])
			s := float64(y[n]) + gv/2*(at(y, float64(n)-L)+at(y, float64(n)+L))
			out[n] = float32(s / (1 + gv))
		}
	}
	return out
}

// bestLag searches lags around P for the best self-alignment of y near c.
func bestLag(y []float32, c int, P float64) float64 {
	best, L := math.Inf(-1), P
	n0, n1 := max(0, c-combWindow/2), min(len(y), c+combWindow/2)
	for l := (1 - combSearch) * P; l <= (1+combSearch)*P; l += 0.25 {
		var xy, xx, yy float64
		for n := n0; n < n1; n++ {
			a, b := float64(y[n]), at(y, float64(n)-l)
			xy += a * b
			xx += a * a
			yy += b * b
		}
		if r := xy / math.Sqrt(xx*yy+1e-30); r > best {
			best, L = r, l
		}
	}
	return L
}

// at is y at fractional index x, linearly interpolated, 0 outside y.
func at(y []float32, x float64) float64 {
	i := int(math.Floor(x))
	if i < 0 || i+1 >= len(y) {
		return 0
	}
	f := x - float64(i)
	return float64(y[i])*(1-f) + float64(y[i+1])*f
}

// MatchEnvelope rescales y's STFT (cfg's centred Hann frames, as the mel
// is computed) so that each frame's mel bands take logmel's values (one
// frame fewer than y makes is allowed, as a vocoder's output has): band
// m's gain is target/actual (bounded by ±maxGainDB per pass), each bin's
// the filterbank-weighted mean of its bands' gains (held flat below the
// first band and above the last), and the frames overlap-add back with
// the window-square normalisation of librosa's istft. passes repeats it.
func MatchEnvelope(y, logmel []float32, cfg melspec.Config, passes int, maxGainDB float64) ([]float32, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nm, nb, N, hop := cfg.NMels, cfg.Bins(), cfg.NFFT, cfg.Hop
	// A vocoder writes frames*hop samples for frames mel frames; the mel of
	// those samples has one frame more, which is left as it is.
	frames := len(logmel) / nm
	if f := cfg.Frames(len(y)); len(logmel)%nm != 0 || frames < f-1 || frames > f {
		return nil, fmt.Errorf("postfilter: %d samples make %d frames of %d mels, the mel has %d values", len(y), f, nm, len(logmel))
	}
	if len(y) < 2 {
		return append([]float32(nil), y...), nil
	}
	fb := melspec.Filterbank(cfg)
	win := make([]float64, N)
	off := (N - cfg.WinLength) / 2
	for k := 0; k < cfg.WinLength; k++ {
		win[off+k] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(k)/float64(cfg.WinLength))
	}
	cover := make([]float64, nb)
	for m := 0; m < nm; m++ {
		for k := 0; k < nb; k++ {
			cover[k] += float64(fb[m*nb+k])
		}
	}
	first, last := -1, -1
	for k, c := range cover {
		if c > 0 {
			if first < 0 {
				first = k
			}
			last = k
		}
	}
	fft := fourier.NewFFT(N)
	lim := math.Pow(10, maxGainDB/20)
	buf := make([]float64, N)
	coef := make([]complex128, nb)
	mag := make([]float64, nb)
	gm := make([]float64, nm)
	gk := make([]float64, nb)
	n := len(y)
	cur := append([]float32(nil), y...)
	for range passes {
		acc := make([]float64, n)
		wsum := make([]float64, n)
		for t := 0; t < frames; t++ {
			s := t*hop - N/2
			for k := range buf {
				buf[k] = win[k] * float64(cur[reflect(s+k, n)])
			}
			fft.Coefficients(coef, buf)
			for k, c := range coef {
				mag[k] = math.Hypot(real(c), imag(c))
			}
			for m := 0; m < nm; m++ {
				var a float64
				for k, w := range fb[m*nb : (m+1)*nb] {
					a += float64(w) * mag[k]
				}
				g := math.Pow(10, float64(logmel[t*nm+m])) / math.Max(a, 1e-10)
				gm[m] = max(1/lim, min(lim, g))
			}
			for k := range gk {
				kk := min(max(k, first), last)
				var a float64
				for m := 0; m < nm; m++ {
					a += float64(fb[m*nb+kk]) * gm[m]
				}
				gk[k] = a / cover[kk]
			}
			for k := range coef {
				coef[k] *= complex(gk[k], 0)
			}
			fft.Sequence(buf, coef)
			for k, w := range win {
				if j := s + k; j >= 0 && j < n && w != 0 {
					acc[j] += w * buf[k] / float64(N)
					wsum[j] += w * w
				}
			}
		}
		for i := range cur {
			if wsum[i] > 1e-8 {
				cur[i] = float32(acc[i] / wsum[i])
			}
		}
	}
	return cur, nil
}

// reflect maps an index outside [0, n) as numpy.pad(mode='reflect') does
// (the mel's own frame padding).
func reflect(j, n int) int {
	for j < 0 || j >= n {
		if j < 0 {
			j = -j
		}
		if j >= n {
			j = 2*(n-1) - j
		}
	}
	return j
}
