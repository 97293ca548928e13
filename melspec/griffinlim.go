package melspec

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/dsp/fourier"
	"gonum.org/v1/gonum/mat"
)

// PhaseInit selects the phases Griffin-Lim starts from.
type PhaseInit int

const (
	// PhaseRandom draws uniform phases from a PCG seeded with
	// GriffinLimOptions.Seed: librosa's init='random', but reproducible.
	PhaseRandom PhaseInit = iota
	// PhaseZero starts every bin at phase 0 (librosa's init=None).
	PhaseZero
)

// GriffinLimOptions are used as given: the zero value is a valid request
// (one inverse STFT with seed-0 random phases, i.e. the random-phase
// baseline), so start from DefaultGriffinLimOptions for the usual vocoder.
type GriffinLimOptions struct {
	Iterations int       // fast Griffin-Lim iterations; 0 = invert the initial phases once
	Momentum   float64   // librosa's momentum m (step m/(1+m)); 0 = classic Griffin-Lim
	Init       PhaseInit // starting phases
	Seed       uint64    // PCG seed for PhaseRandom
	Workers    int       // goroutines; <= 0 means GOMAXPROCS. The output does not depend on it.
}

// DefaultGriffinLimOptions is the REFERENCE.md §5 baseline: 60 iterations
// (librosa defaults to 32), momentum 0.99, random phases from a fixed seed so
// runs are reproducible.
func DefaultGriffinLimOptions() GriffinLimOptions {
	return GriffinLimOptions{Iterations: 60, Momentum: 0.99, Init: PhaseRandom, Seed: 0}
}

// glTiny keeps the phase normalisation finite for all-zero bins, as
// librosa's util.tiny (smallest normal float64).
const glTiny = 0x1p-1022

// pcgStream is the fixed second PCG word; only Seed is user-visible.
const pcgStream = 0x6a09e667f3bcc909

// GriffinLim inverts log-mel spectrograms of one Config: the mel
// filterbank's pseudo-inverse is computed once (an SVD) and kept. It holds
// no scratch state, so one value may serve many goroutines at once.
type GriffinLim struct {
	cfg    Config
	nb     int
	window []float64 // periodic Hann centred in NFFT, as Extractor
	pinv   []float64 // bins x n_mels, row-major
	rank   int
}

// NewGriffinLim validates cfg and computes pinv(filterbank) in float64,
// discarding singular values <= max(n_mels, bins)*eps*largest (rank-deficient
// filterbanks, e.g. many mels on a short FFT, then still invert stably).
func NewGriffinLim(cfg Config) (*GriffinLim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	nb, nm := cfg.Bins(), cfg.NMels
	g := &GriffinLim{cfg: cfg, nb: nb, window: make([]float64, cfg.NFFT), pinv: make([]float64, nb*nm)}
	off := (cfg.NFFT - cfg.WinLength) / 2
	for k := 0; k < cfg.WinLength; k++ {
		g.window[off+k] = 0.5 - 0.5*math.Cos(2*math.Pi*float64(k)/float64(cfg.WinLength))
	}

	fb32 := Filterbank(cfg)
	fb := make([]float64, len(fb32))
	for i, v := range fb32 {
		fb[i] = float64(v)
	}
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(nm, nb, fb), mat.SVDThin) {
		return nil, errors.New("melspec: SVD of the mel filterbank did not converge")
	}
	var u, v mat.Dense
	svd.UTo(&u) // nm x r
	svd.VTo(&v) // nb x r
	s := svd.Values(nil)
	cut := float64(max(nm, nb)) * 0x1p-52 * s[0]
	for i, si := range s {
		if si <= cut {
			continue
		}
		g.rank++
		inv := 1 / si
		for k := 0; k < nb; k++ {
			vk := v.At(k, i) * inv
			row := g.pinv[k*nm : (k+1)*nm]
			for m := range row {
				row[m] += vk * u.At(m, i)
			}
		}
	}
	return g, nil
}

// Config returns the configuration g inverts.
func (g *GriffinLim) Config() Config { return g.cfg }

// Synthesize turns a log10 mel spectrogram (frames x n_mels, row-major, as
// Extractor.Compute returns it; not normalised) into frames*hop samples:
// magnitude max(pinv(fb) @ 10^logmel, 0), then opt.Iterations of fast
// Griffin-Lim on the mel's own centred STFT, then one inverse STFT.
//
// Lengths: iterations run on the (frames-1)*hop samples librosa's istft
// gives without a length (so the re-analysis has exactly frames frames);
// the final inverse STFT keeps hop more samples of the overlap-add tail,
// as librosa's istft(length=frames*hop) does, to match the vocoder's
// frames*hop samples per utterance.
func (g *GriffinLim) Synthesize(logmel []float32, frames int, opt GriffinLimOptions) ([]float32, error) {
	if err := g.check(logmel, frames); err != nil {
		return nil, err
	}
	switch {
	case opt.Iterations < 0:
		return nil, fmt.Errorf("melspec: Griffin-Lim iterations %d must be >= 0", opt.Iterations)
	case !(opt.Momentum >= 0) || math.IsInf(opt.Momentum, 0):
		return nil, fmt.Errorf("melspec: Griffin-Lim momentum %g must be finite and >= 0", opt.Momentum)
	case opt.Init != PhaseRandom && opt.Init != PhaseZero:
		return nil, fmt.Errorf("melspec: unknown Griffin-Lim phase init %d", opt.Init)
	}
	r := g.newRun(frames, opt.Workers)
	r.magnitude(logmel)
	r.initPhase(opt.Init, opt.Seed)
	r.iterate(opt.Iterations, opt.Momentum)
	return r.output(), nil
}

// RandomPhase is the weaker baseline of REFERENCE.md §5: one inverse STFT
// of the pseudo-inverse magnitude with seeded random phases.
func (g *GriffinLim) RandomPhase(logmel []float32, frames int, seed uint64) ([]float32, error) {
	return g.Synthesize(logmel, frames, GriffinLimOptions{Init: PhaseRandom, Seed: seed})
}

func (g *GriffinLim) check(logmel []float32, frames int) error {
	nm := g.cfg.NMels
	if frames < 2 {
		return fmt.Errorf("melspec: Griffin-Lim needs at least 2 frames, got %d", frames)
	}
	if len(logmel) != frames*nm {
		return fmt.Errorf("melspec: log-mel has %d values, want %d frames x %d mels = %d", len(logmel), frames, nm, frames*nm)
	}
	for i, v := range logmel {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("melspec: log-mel value %g at frame %d mel %d is not finite", v, i/nm, i%nm)
		}
	}
	return nil
}

// glRun is the state of one Synthesize call. Work is split into fixed frame
// ranges, one per worker, and every frame is computed the same way
// whichever worker does it, so the result does not depend on Workers.
type glRun struct {
	g       *GriffinLim
	frames  int
	mag     []float64    // frames x bins
	angles  []complex128 // frames x bins, unit (or zero) phase factors
	tprev   []complex128 // previous re-analysis, for the momentum term
	framed  []float64    // frames x NFFT windowed inverse FFTs
	ypad    []float64    // overlap-add in padded coordinates
	wss     []float64    // summed squared window, same coordinates
	workers []*glWorker
}

type glWorker struct {
	fft  *fourier.FFT
	coef []complex128
	buf  []float64
}

func (g *GriffinLim) newRun(frames, workers int) *glRun {
	c := g.cfg
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = max(1, min(workers, frames/4))
	n := c.NFFT + c.Hop*(frames-1)
	r := &glRun{
		g:      g,
		frames: frames,
		mag:    make([]float64, frames*g.nb),
		angles: make([]complex128, frames*g.nb),
		tprev:  make([]complex128, frames*g.nb),
		framed: make([]float64, frames*c.NFFT),
		ypad:   make([]float64, n),
		wss:    make([]float64, n),
	}
	for t := 0; t < frames; t++ {
		s := r.wss[t*c.Hop : t*c.Hop+c.NFFT]
		for k, w := range g.window {
			s[k] += w * w
		}
	}
	for range workers {
		r.workers = append(r.workers, &glWorker{
			fft:  fourier.NewFFT(c.NFFT),
			coef: make([]complex128, g.nb),
			buf:  make([]float64, c.NFFT),
		})
	}
	return r
}

// parallel runs fn on contiguous frame ranges, one goroutine per worker.
func (r *glRun) parallel(fn func(w *glWorker, t0, t1 int)) {
	n := len(r.workers)
	if n == 1 {
		fn(r.workers[0], 0, r.frames)
		return
	}
	var wg sync.WaitGroup
	for i, w := range r.workers {
		t0, t1 := i*r.frames/n, (i+1)*r.frames/n
		wg.Go(func() { fn(w, t0, t1) })
	}
	wg.Wait()
}

func (r *glRun) magnitude(logmel []float32) {
	g, nm, nb := r.g, r.g.cfg.NMels, r.g.nb
	r.parallel(func(w *glWorker, t0, t1 int) {
		lin := make([]float64, nm)
		for t := t0; t < t1; t++ {
			for m, v := range logmel[t*nm : (t+1)*nm] {
				lin[m] = math.Pow(10, float64(v))
			}
			out := r.mag[t*nb : (t+1)*nb]
			for k := range out {
				var acc float64
				for m, p := range g.pinv[k*nm : (k+1)*nm] {
					acc += p * lin[m]
				}
				out[k] = max(acc, 0)
			}
		}
	})
}

// initPhase fills angles frame by frame, bin by bin, from one PCG stream,
// so the draw does not depend on Workers.
func (r *glRun) initPhase(init PhaseInit, seed uint64) {
	if init == PhaseZero {
		for i := range r.angles {
			r.angles[i] = 1
		}
		return
	}
	rng := rand.New(rand.NewPCG(seed, pcgStream))
	for i := range r.angles {
		s, c := math.Sincos(2 * math.Pi * rng.Float64())
		r.angles[i] = complex(c, s)
	}
}

// istft overlap-adds the windowed inverse FFTs of mag*angles and divides by
// the summed squared window where it is not ~0 (librosa's istft).
func (r *glRun) istft() {
	c := r.g.cfg
	nb := r.g.nb
	scale := 1 / float64(c.NFFT) // gonum's Sequence is unnormalised
	r.parallel(func(w *glWorker, t0, t1 int) {
		for t := t0; t < t1; t++ {
			mag, ang := r.mag[t*nb:(t+1)*nb], r.angles[t*nb:(t+1)*nb]
			for k, a := range ang {
				w.coef[k] = complex(mag[k]*real(a), mag[k]*imag(a))
			}
			w.fft.Sequence(w.buf, w.coef)
			out := r.framed[t*c.NFFT : (t+1)*c.NFFT]
			for k, win := range r.g.window {
				out[k] = w.buf[k] * scale * win
			}
		}
	})
	clear(r.ypad)
	for t := 0; t < r.frames; t++ {
		dst := r.ypad[t*c.Hop : t*c.Hop+c.NFFT]
		for k, v := range r.framed[t*c.NFFT : (t+1)*c.NFFT] {
			dst[k] += v
		}
	}
	for i, s := range r.wss {
		if s > glTiny {
			r.ypad[i] /= s
		}
	}
}

// iterate runs fast Griffin-Lim: rebuilt = STFT(ISTFT(mag*angles));
// angles = phase(rebuilt - momentum/(1+momentum)*previous rebuilt).
func (r *glRun) iterate(n int, momentum float64) {
	c := r.g.cfg
	nb := r.g.nb
	half := c.NFFT / 2
	length := c.Hop * (r.frames - 1)
	y := func() []float64 { return r.ypad[half : half+length] }
	alpha := complex(momentum/(1+momentum), 0)
	for range n {
		r.istft()
		sig := y()
		r.parallel(func(w *glWorker, t0, t1 int) {
			for t := t0; t < t1; t++ {
				s := t*c.Hop - half
				if s >= 0 && s+c.NFFT <= length {
					for k, win := range r.g.window {
						w.buf[k] = win * sig[s+k]
					}
				} else {
					for k, win := range r.g.window {
						w.buf[k] = win * sig[reflect(s+k, length)]
					}
				}
				w.fft.Coefficients(w.coef, w.buf)
				ang, prev := r.angles[t*nb:(t+1)*nb], r.tprev[t*nb:(t+1)*nb]
				for k, rb := range w.coef {
					a := rb - alpha*prev[k]
					prev[k] = rb
					d := math.Hypot(real(a), imag(a)) + glTiny
					ang[k] = complex(real(a)/d, imag(a)/d)
				}
			}
		})
	}
}

// output is the final inverse STFT cut to frames*hop samples after the
// centre padding (zeros beyond the overlap-add, only when hop > NFFT/2).
func (r *glRun) output() []float32 {
	c := r.g.cfg
	r.istft()
	out := make([]float32, r.frames*c.Hop)
	tail := r.ypad[c.NFFT/2:]
	for i := range out {
		if i < len(tail) {
			out[i] = float32(tail[i])
		}
	}
	return out
}
