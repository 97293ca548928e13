// Package outputs holds the WaveNet output heads: the distribution a network
// output parameterises at each timestep, its training loss and gradient, its
// evaluation likelihood and its sampler.
//
// Heads (New builds one from a spec string; Spec gives it back):
//
//   - adacat: Adaptive Categorical (AdaCat), 2k channels: k width logits psi
//     then k height logits phi. Widths w = softmax(psi) and heights h =
//     softmax(phi) define a piecewise-constant density f(x) = h_i/w_i on
//     [0,1), x = (y+1)/2. Trained with the lambda-smoothed loss (the plain
//     NLL gradient is biased at bin edges); bits = -log2 f(x) + 1.
//   - mol: discretized mixture of M logistics over Q levels (r9y9's loss),
//     3M channels: mixture logits, means, log-scales. Bits use the bin mass P
//     as a density P*(Q-1)/2 (P over the bin width 2/(Q-1)).
//   - gaussian: Normal, 2 channels: mean, log-std. Bits are the Normal
//     log-density of y itself. Its training gradient with respect to the
//     mean is bounded per timestep (gaussMeanGradMax), not the NLL's.
//   - mulaw: mu-law categorical with Q classes (mu = Q-1), one-hot input.
//     Bits spread each class mass uniformly over its mu-law bin (width 2/mu)
//     and map it to amplitude with the mu-law Jacobian.
//   - categorical: Q equal-width bins on [-1,1], one-hot input; bits spread
//     each class mass uniformly over its bin: P*Q/2.
//
// Every head turns its output into a continuous density over the amplitude y
// in [-1,1] (Bits), so bits per sample are comparable across heads.
//
// Sampling temperature t (Sample's t; vocode --temperature): t = 1 draws
// from the model's distribution; t < 1 makes synthesis more conservative,
// t > 1 noisier. Per head:
//
//   - mulaw, categorical: the class from softmax(logits/t);
//   - adacat: the bin from softmax(phi/t) (heights sharpened), then uniform
//     within the bin (widths unchanged);
//   - mol: the component from softmax(logits/t), the logistic scale times t;
//   - gaussian: the standard deviation times t.
//
// Logits are laid out like the model output [B][C][T]: channel c of timestep
// t is logits[c*stride+t]. Loss and Bits split long sequences over
// goroutines; heads hold no mutable state, so concurrent calls on disjoint
// buffers are safe.
//
// CUDA seam: each head's per-timestep maths is a small pure float64 function
// over one timestep's channels (adacatLoss, molComponent, gaussianLoss,
// categoricalLoss, ...), driven by runLoss/runBits. A GPU backend mirrors
// those functions in a .cu file beside each .go file (one thread per
// timestep; Device in device.go runs them) and keeps this package's tests
// as its reference.
package outputs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Head is one output distribution. Channel c of timestep t sits at
// logits[c*stride+t]: the model emits [B][C][T], so for one batch item
// stride == T; for one-step generation stride == 1 and T == 1.
type Head interface {
	// Name is "mulaw", "categorical", "mol", "gaussian" or "adacat".
	Name() string
	// Spec gives the canonical options, e.g. "adacat --components 128
	// --lambda 0.0001"; New(Spec()) rebuilds an identical head.
	Spec() string
	// Channels is the number of network output channels per timestep.
	Channels() int
	// InputChannels is 1 when the previous sample is fed back as a scalar,
	// Q when it is fed back one-hot.
	InputChannels() int
	// EncodeInput writes the network input for the previous sample y in
	// [-1,1] into dst (len(dst) == InputChannels()).
	EncodeInput(y float32, dst []float32)
	// Loss writes d(sum of masked per-timestep losses)*gradScale with respect
	// to the logits (the training gradient: the gaussian head bounds its
	// mean's) into grad (same layout, overwritten, zero where
	// mask == 0) and returns the sum of masked per-timestep training losses
	// in nats. targets are amplitudes in [-1,1]; a nil mask means all ones
	// (a mask value is a weight on that timestep's loss).
	Loss(logits []float32, stride, T int, targets, mask []float32, grad []float32, gradScale float32) float64
	// Bits writes, per timestep, -log2 p(y) under the head's exact
	// (unsmoothed) continuous density on [-1,1].
	Bits(logits []float32, stride, T int, targets []float32, out []float64)
	// Sample draws one amplitude in [-1,1] for timestep 0 of logits at
	// sampling temperature t > 0; t = 1 draws from the head's own
	// distribution, t < 1 sharpens it (less noise, less variety). Each head
	// states what t scales (see the package doc).
	Sample(logits []float32, stride int, t float64, rng *rand.Rand) float32
}

// stepper is the per-timestep maths of a head on one timestep's channels in
// float64: the part a CUDA kernel mirrors.
type stepper interface {
	channels() int
	scratchLen() int
	// lossStep returns the training loss (nats) for channels z and target y
	// and writes dloss/dz into g; s is scratch of scratchLen().
	lossStep(z []float64, y float64, g, s []float64) float64
	// logDensity returns ln p(y) of the evaluation density on [-1,1].
	logDensity(z []float64, y float64, s []float64) float64
}

// MaxChannels bounds a head's output channels (and one-hot input
// channels): a head spec may come from an untrusted checkpoint, and the
// model, the logits and the device tables are sized by it. 65536 is a 16-bit
// categorical; the same bound is wavenet.MaxIOChannels.
const MaxChannels = 1 << 16

// maxIntOption bounds integer options before they are converted to int,
// so 1e300 is reported as itself rather than as a wrapped-around value.
const maxIntOption = 1 << 31

// option is one --name value of a spec, with its default.
type option struct {
	name    string
	def     float64
	integer bool
}

type headDef struct {
	opts  []option
	build func(v map[string]float64) (Head, error)
}

var registry = map[string]headDef{
	"adacat": {
		opts: []option{{"components", 128, true}, {"lambda", 1e-4, false}},
		build: func(v map[string]float64) (Head, error) {
			return NewAdaCat(int(v["components"]), v["lambda"])
		},
	},
	"mol": {
		opts: []option{{"mixtures", 10, true}, {"levels", 65536, true}, {"log-scale-min", -16, false}},
		build: func(v map[string]float64) (Head, error) {
			return NewMoL(int(v["mixtures"]), int(v["levels"]), v["log-scale-min"])
		},
	},
	"gaussian": {
		opts: []option{{"log-scale-min", -16, false}},
		build: func(v map[string]float64) (Head, error) {
			return NewGaussian(v["log-scale-min"])
		},
	},
	"mulaw": {
		opts: []option{{"bins", 256, true}},
		build: func(v map[string]float64) (Head, error) {
			return NewMuLaw(int(v["bins"]))
		},
	},
	"categorical": {
		opts: []option{{"bins", 256, true}},
		build: func(v map[string]float64) (Head, error) {
			return NewCategorical(int(v["bins"]))
		},
	},
}

// Names lists the head names New accepts, sorted.
func Names() []string {
	n := make([]string, 0, len(registry))
	for k := range registry {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// New builds a head from a spec: a name followed by "--option value" (or
// "--option=value") pairs; omitted options take their defaults, e.g.
// "adacat --components 128 --lambda 1e-4", "mol --mixtures 10 --levels 65536
// --log-scale-min -16", "gaussian --log-scale-min -16", "mulaw --bins 256",
// "categorical --bins 256".
func New(spec string) (Head, error) {
	f := strings.Fields(spec)
	if len(f) == 0 {
		return nil, fmt.Errorf("outputs: empty head spec (valid heads: %s)", strings.Join(Names(), ", "))
	}
	def, ok := registry[f[0]]
	if !ok {
		return nil, fmt.Errorf("outputs: unknown head %q in spec %q (valid heads: %s)", f[0], spec, strings.Join(Names(), ", "))
	}
	valid := make([]string, len(def.opts))
	vals := make(map[string]float64, len(def.opts))
	for i, o := range def.opts {
		valid[i] = "--" + o.name
		vals[o.name] = o.def
	}
	seen := map[string]bool{}
	for i := 1; i < len(f); i++ {
		tok := f[i]
		if !strings.HasPrefix(tok, "--") {
			return nil, fmt.Errorf("outputs: spec %q: expected an option like --name, got %q (valid options for %s: %s)", spec, tok, f[0], strings.Join(valid, " "))
		}
		key, val, hasEq := strings.Cut(tok[2:], "=")
		if !hasEq {
			if i+1 >= len(f) {
				return nil, fmt.Errorf("outputs: spec %q: option --%s has no value", spec, key)
			}
			i++
			val = f[i]
		}
		var opt *option
		for j := range def.opts {
			if def.opts[j].name == key {
				opt = &def.opts[j]
			}
		}
		if opt == nil {
			return nil, fmt.Errorf("outputs: spec %q: unknown option --%s for head %s (valid options: %s)", spec, key, f[0], strings.Join(valid, " "))
		}
		if seen[key] {
			return nil, fmt.Errorf("outputs: spec %q: option --%s given twice", spec, key)
		}
		seen[key] = true
		x, err := strconv.ParseFloat(val, 64)
		if err != nil || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("outputs: spec %q: option --%s: %q is not a finite number", spec, key, val)
		}
		if opt.integer && x != math.Trunc(x) {
			return nil, fmt.Errorf("outputs: spec %q: option --%s: %q is not an integer", spec, key, val)
		}
		if opt.integer && math.Abs(x) > maxIntOption {
			return nil, fmt.Errorf("outputs: spec %q: option --%s: %s is out of range", spec, key, val)
		}
		vals[key] = x
	}
	return def.build(vals)
}

func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// parallelMinT is the sequence length above which Loss/Bits split the work
// over goroutines; below it the goroutine start-up costs more than it saves.
const parallelMinT = 2048

// parallelSum runs fn over [0,T) in contiguous chunks, one goroutine each,
// and sums the chunk results in chunk order.
func parallelSum(T int, fn func(t0, t1 int) float64) float64 {
	n := runtime.GOMAXPROCS(0)
	if m := T / (parallelMinT / 2); m < n {
		n = m
	}
	if T < parallelMinT || n <= 1 {
		return fn(0, T)
	}
	parts := make([]float64, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		t0, t1 := i*T/n, (i+1)*T/n
		wg.Add(1)
		go func() {
			defer wg.Done()
			parts[i] = fn(t0, t1)
		}()
	}
	wg.Wait()
	s := 0.0
	for _, p := range parts {
		s += p
	}
	return s
}

func checkLayout(head, what string, n, C, stride, T int) {
	if T < 0 || stride < T || (T > 0 && n < (C-1)*stride+T) {
		panic(fmt.Sprintf("outputs: %s: %s has %d elements, need %d channels x stride %d with T=%d (stride >= T)", head, what, n, C, stride, T))
	}
}

// tileT is the number of timesteps gathered at once. Reading one timestep's
// channels directly would stride by T floats (40 KiB at T = 10240, a multiple
// of 4 KiB), so every channel lands in the same cache set and the loads
// thrash; copying a [C][tileT] tile row by row keeps the reads sequential.
const tileT = 16

// runLoss drives a stepper over T strided timesteps (see Head.Loss).
func runLoss(k stepper, head string, logits []float32, stride, T int, targets, mask, grad []float32, gradScale float32) float64 {
	C := k.channels()
	checkLayout(head, "logits", len(logits), C, stride, T)
	checkLayout(head, "grad", len(grad), C, stride, T)
	if len(targets) < T || (mask != nil && len(mask) < T) {
		panic(fmt.Sprintf("outputs: %s: Loss needs %d targets and mask values, got %d and %d", head, T, len(targets), len(mask)))
	}
	return parallelSum(T, func(t0, t1 int) float64 {
		buf := make([]float64, 2*C*tileT+k.scratchLen())
		zt, gt, s := buf[:C*tileT], buf[C*tileT:2*C*tileT], buf[2*C*tileT:]
		var wt [tileT]float64
		sum := 0.0
		for tb := t0; tb < t1; tb += tileT {
			n := min(tileT, t1-tb)
			for c := 0; c < C; c++ {
				row := logits[c*stride+tb : c*stride+tb+n]
				for j, v := range row {
					zt[j*C+c] = float64(v)
				}
			}
			for j := 0; j < n; j++ {
				m := 1.0
				if mask != nil {
					m = float64(mask[tb+j])
				}
				wt[j] = m * float64(gradScale)
				if m == 0 {
					continue
				}
				sum += m * k.lossStep(zt[j*C:(j+1)*C], float64(targets[tb+j]), gt[j*C:(j+1)*C], s)
			}
			for c := 0; c < C; c++ {
				row := grad[c*stride+tb : c*stride+tb+n]
				for j := range row {
					if wt[j] == 0 {
						row[j] = 0
					} else {
						row[j] = float32(gt[j*C+c] * wt[j])
					}
				}
			}
		}
		return sum
	})
}

// runBits drives a stepper's evaluation density over T strided timesteps.
func runBits(k stepper, head string, logits []float32, stride, T int, targets []float32, out []float64) {
	C := k.channels()
	checkLayout(head, "logits", len(logits), C, stride, T)
	if len(targets) < T || len(out) < T {
		panic(fmt.Sprintf("outputs: %s: Bits needs %d targets and outputs, got %d and %d", head, T, len(targets), len(out)))
	}
	parallelSum(T, func(t0, t1 int) float64 {
		buf := make([]float64, C*tileT+k.scratchLen())
		zt, s := buf[:C*tileT], buf[C*tileT:]
		for tb := t0; tb < t1; tb += tileT {
			n := min(tileT, t1-tb)
			for c := 0; c < C; c++ {
				row := logits[c*stride+tb : c*stride+tb+n]
				for j, v := range row {
					zt[j*C+c] = float64(v)
				}
			}
			for j := 0; j < n; j++ {
				out[tb+j] = -k.logDensity(zt[j*C:(j+1)*C], float64(targets[tb+j]), s) / math.Ln2
			}
		}
		return 0
	})
}

// softmax writes e = softmax(z) (one exp per element; max-shifted so +-1e4
// logits stay finite) and returns log sum exp(z).
func softmax(z, e []float64) float64 {
	mx := z[0]
	for _, v := range z[1:] {
		if v > mx {
			mx = v
		}
	}
	sum := 0.0
	for j, v := range z {
		x := math.Exp(v - mx)
		e[j] = x
		sum += x
	}
	inv := 1 / sum
	for j := range z {
		e[j] *= inv
	}
	return mx + math.Log(sum)
}

// logSoftmax writes lz = log softmax(z) and e = softmax(z).
func logSoftmax(z, lz, e []float64) {
	ls := softmax(z, e)
	for j, v := range z {
		lz[j] = v - ls
	}
}

// logSumExp of z, max-shifted.
func logSumExp(z []float64) float64 {
	mx := z[0]
	for _, v := range z[1:] {
		if v > mx {
			mx = v
		}
	}
	if math.IsInf(mx, -1) {
		return mx
	}
	s := 0.0
	for _, v := range z {
		s += math.Exp(v - mx)
	}
	return mx + math.Log(s)
}

// strided reads channel c of timestep 0.
func strided(logits []float32, c, stride int) float64 { return float64(logits[c*stride]) }

// sampleSoftmax draws a class from softmax(z/t) of channels [c0, c0+n) of
// timestep 0 without allocating (two passes: max/sum, then the walk). The
// shifted logit is multiplied by 1/t, which is exact at t = 1.
func sampleSoftmax(logits []float32, c0, n, stride int, t float64, rng *rand.Rand) int {
	invT := 1 / t
	mx := math.Inf(-1)
	for j := 0; j < n; j++ {
		if v := strided(logits, c0+j, stride); v > mx {
			mx = v
		}
	}
	sum := 0.0
	for j := 0; j < n; j++ {
		sum += math.Exp((strided(logits, c0+j, stride) - mx) * invT)
	}
	u := rng.Float64() * sum
	acc, last := 0.0, n-1
	for j := 0; j < n; j++ {
		p := math.Exp((strided(logits, c0+j, stride) - mx) * invT)
		if p > 0 {
			last = j
		}
		acc += p
		if u < acc {
			return j
		}
	}
	return last // u hit the rounding gap at the top: the last class with mass
}

// clamp x into [lo,hi] (NaN stays NaN); plain compares, as math.Max/Min's
// NaN and signed-zero handling is measurably slow in the per-timestep loops.
func clamp(x, lo, hi float64) float64 {
	if x < lo {
		return lo
	}
	if x > hi {
		return hi
	}
	return x
}

// softplus(x) = log(1+e^x) without overflow.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// sigmoid without overflow.
func sigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

func checkOneStep(head string, logits []float32, C, stride int, t float64) {
	if stride < 1 || len(logits) < (C-1)*stride+1 {
		panic(fmt.Sprintf("outputs: %s: Sample needs %d channels at stride %d, got %d logits", head, C, stride, len(logits)))
	}
	if err := CheckTemperature(t); err != nil {
		panic(fmt.Sprintf("outputs: %s: %v", head, err))
	}
}

// CheckTemperature accepts a sampling temperature: finite and > 0 (t = 0
// would be a mode search, which no head here defines).
func CheckTemperature(t float64) error {
	if !(t > 0) || math.IsInf(t, 0) {
		return fmt.Errorf("sampling temperature %g: must be a finite number > 0 (1 samples the model's own distribution)", t)
	}
	return nil
}
