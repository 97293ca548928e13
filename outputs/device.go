package outputs

import (
	_ "embed"
	"fmt"
	"math"

	"github.com/wavecat/wavecat/compute"
)

// The heads on a GPU. Each head's .cu file beside its .go file mirrors the
// head's float64 stepper (adacat.cu: adacatLoss/adacatLogF, mol.cu:
// molComponent, gaussian.cu: gaussianLoss, categorical.cu: categoricalLoss
// for mulaw and categorical) and its sampler; heads_common.cu holds the
// shared helpers (random numbers, reductions, the warp softmax sampler) and
// is put in front of each head's source. A backend that compiles kernels
// (compute.KernelCompiler: compute/cuda, through NVRTC) runs them through a
// Device; on other backends the Head's Go maths runs on host memory.
//
// Kernel layout: Loss and Bits run one thread per (b, t) timestep looping
// over its channels in float64; the loss sum is reduced on the device in a
// fixed order (per-block partials, then one block), so it is deterministic,
// and read back as one float64. Sample runs one warp per utterance for the
// softmax heads (categorical, mulaw, adacat) and one thread per utterance
// for mol and gaussian.
//
// Random numbers: each utterance has a 64-bit splitmix64 state in two float
// slots (its bits, low word first); draw i of a call is mix(s + (i+1)*gamma)
// with gamma the golden-ratio increment, uniforms are 53-bit doubles in [0,1)
// like rand.Float64, and the kernel advances s by gamma per draw used.
// Sampling draws from the same distributions as Head.Sample; the values
// differ (a different generator). Mu-law samples and every one-hot encoding
// are bit-identical to the CPU's: the class of a float32 amplitude comes
// from a threshold table built with MuLaw.Class (see categorical.cu).

//go:embed heads_common.cu
var headsCommonSource string

//go:embed adacat.cu
var adacatSource string

//go:embed categorical.cu
var categoricalSource string

//go:embed mol.cu
var molSource string

//go:embed gaussian.cu
var gaussianSource string

// deviceSource is one .cu file of this package and every kernel it defines
// (a module is compiled once per source, so each compile names all of them).
type deviceSource struct {
	file    string
	src     *string
	kernels []string
}

var deviceSources = map[string]deviceSource{
	"adacat":      {"adacat.cu", &adacatSource, []string{"wc_adacat_loss", "wc_adacat_bits", "wc_adacat_sample", "wc_heads_sum"}},
	"categorical": {"categorical.cu", &categoricalSource, []string{"wc_categorical_loss", "wc_categorical_bits", "wc_categorical_sample", "wc_mulaw_loss", "wc_mulaw_bits", "wc_mulaw_sample", "wc_heads_sum"}},
	"mol":         {"mol.cu", &molSource, []string{"wc_mol_loss", "wc_mol_bits", "wc_mol_sample", "wc_heads_sum"}},
	"gaussian":    {"gaussian.cu", &gaussianSource, []string{"wc_gaussian_loss", "wc_gaussian_bits", "wc_gaussian_sample", "wc_heads_sum"}},
}

// DeviceSources returns each .cu file of the package as compiled (with
// heads_common.cu in front), keyed by file name, for compile checks.
func DeviceSources() map[string]string {
	m := map[string]string{}
	for _, s := range deviceSources {
		m[s.file] = headsCommonSource + "\n" + *s.src
	}
	return m
}

const (
	deviceBlock = 256 // HB_BLOCK in heads_common.cu: threads per block of Loss and Bits
	sampleBlock = 128 // threads per block of Sample (4 warps on the warp-per-utterance heads)
)

// Device runs one head's maths on a GPU backend (compute.KernelCompiler):
// training loss and gradient, evaluation bits and sampling, on device
// buffers. A Device keeps scratch buffers, so it is not safe for concurrent
// use; Free releases them.
type Device struct {
	head Head
	be   compute.Backend
	mod  compute.Module

	loss, bits, sample string        // kernel names
	lossArgs, bitsArgs []compute.Arg // head options after the common arguments
	sampleArgs         []compute.Arg
	sampleWarp         bool // one warp per utterance (else one thread)

	table    compute.Buffer // mu-law: thresholds [mu], sampler values [Q], classes [Q]
	partials compute.Buffer // Loss: one float64 per block, then the total
	sum      [2]float32
}

// NewDevice compiles the head's kernels on be; it returns an error when be
// cannot compile kernels (e.g. the CPU backend) -- callers then use the
// Head's Go maths.
func NewDevice(h Head, be compute.Backend) (*Device, error) {
	kc, ok := be.(compute.KernelCompiler)
	if !ok {
		return nil, fmt.Errorf("outputs: the %s backend cannot compile kernels; use the %s head's Go maths", be.Name(), h.Name())
	}
	d := &Device{head: h, be: be}
	var file string
	switch h := h.(type) {
	case *AdaCat:
		file = "adacat"
		d.lossArgs = []compute.Arg{compute.Int(h.k), f64Arg(h.lambda)}
		d.bitsArgs = []compute.Arg{compute.Int(h.k)}
		d.sampleArgs = d.bitsArgs
		d.sampleWarp = true
	case *MoL:
		file = "mol"
		opts := []compute.Arg{compute.Int(h.m), compute.Int(h.q), f64Arg(h.logScaleMin), f64Arg(math.Log(float64(h.q-1) / 2))}
		d.lossArgs, d.bitsArgs = opts, opts
		d.sampleArgs = []compute.Arg{compute.Int(h.m), f64Arg(h.logScaleMin)}
	case *Gaussian:
		file = "gaussian"
		opts := []compute.Arg{f64Arg(h.logScaleMin)}
		d.lossArgs, d.bitsArgs, d.sampleArgs = opts, opts, opts
	case *Categorical:
		file = "categorical"
		d.lossArgs = []compute.Arg{compute.Int(h.q)}
		d.bitsArgs = []compute.Arg{compute.Int(h.q), f64Arg(math.Log(float64(h.q) / 2))}
		d.sampleArgs = d.lossArgs
		d.sampleWarp = true
	case *MuLaw:
		file = "categorical"
		tab := h.deviceTable()
		d.table = be.Alloc(len(tab))
		be.Upload(compute.V(d.table), tab)
		mu := float64(h.mu)
		thr := compute.Ptr(compute.V(d.table), h.mu)
		d.lossArgs = []compute.Arg{compute.Int(h.q), thr}
		d.bitsArgs = []compute.Arg{compute.Int(h.q), thr, f64Arg(math.Log(mu / 2)), f64Arg(math.Log(mu) - math.Log(math.Log1p(mu)))}
		d.sampleArgs = []compute.Arg{compute.Int(h.q), compute.Ptr(compute.V(d.table).At(h.mu), h.q), compute.Ptr(compute.V(d.table).At(h.mu+h.q), h.q)}
		d.sampleWarp = true
	default:
		return nil, fmt.Errorf("outputs: no device kernels for head %T (%s)", h, h.Name())
	}
	name := h.Name()
	d.loss, d.bits, d.sample = "wc_"+name+"_loss", "wc_"+name+"_bits", "wc_"+name+"_sample"
	s := deviceSources[file]
	mod, err := kc.Compile("outputs/"+s.file, headsCommonSource+"\n"+*s.src, s.kernels...)
	if err != nil {
		d.Free()
		return nil, fmt.Errorf("outputs: %s head kernels: %w", name, err)
	}
	d.mod = mod
	return d, nil
}

// Head is the head whose maths the Device runs.
func (d *Device) Head() Head { return d.head }

// Free releases the Device's buffers (the compiled module stays with the
// backend). The Device must not be used afterwards.
func (d *Device) Free() {
	for _, b := range []*compute.Buffer{&d.table, &d.partials} {
		if *b != nil {
			d.be.Free(*b)
			*b = nil
		}
	}
}

// f64Arg passes a float64 to a kernel as its bits (kernel parameters here
// are pointers and 64-bit integers; hb_f64 turns them back).
func f64Arg(x float64) compute.Arg { return compute.Int(int(int64(math.Float64bits(x)))) }

func blocks(n, per int) int { return (n + per - 1) / per }

// Loss: logits and grad are [B][C][T] contiguous; targets [B][T] amplitudes
// in [-1,1]; mask [B][T] weights or compute.View{} (Buf == nil) for all
// ones. Overwrites grad with d(sum of masked losses)*gradScale/d logits (0
// where mask == 0) and returns the sum of masked losses in nats, accumulated
// in float64 -- the only host read-back (one small download). Same
// semantics as Head.Loss applied per batch item.
func (d *Device) Loss(logits compute.View, B, T int, targets, mask, grad compute.View, gradScale float32) float64 {
	if B < 0 || T < 0 {
		panic(fmt.Sprintf("outputs: %s: Device.Loss with B=%d, T=%d", d.head.Name(), B, T))
	}
	n := B * T
	if n == 0 {
		return 0
	}
	nc := n * d.head.Channels()
	nb := blocks(n, deviceBlock)
	if d.partials == nil || d.partials.Len() < 2*(nb+1) {
		if d.partials != nil {
			d.be.Free(d.partials)
		}
		d.partials = d.be.Alloc(2 * (nb + 1))
	}
	hasMask := 1
	if mask.Buf == nil {
		mask, hasMask = targets, 0
	}
	part := compute.V(d.partials)
	total := part.At(2 * nb)
	args := append([]compute.Arg{
		compute.Ptr(logits, nc), compute.Ptr(targets, n), compute.Ptr(mask, n), compute.Ptr(grad, nc), compute.Ptr(part, 2*nb),
		compute.Int(B), compute.Int(T), compute.Int(hasMask), compute.Float(gradScale),
	}, d.lossArgs...)
	d.mod.Launch(d.loss, nb, deviceBlock, 0, args...)
	d.mod.Launch("wc_heads_sum", 1, deviceBlock, 0, compute.Ptr(part, 2*nb), compute.Int(nb), compute.Ptr(total, 2))
	d.be.Download(d.sum[:], total)
	return math.Float64frombits(uint64(math.Float32bits(d.sum[0])) | uint64(math.Float32bits(d.sum[1]))<<32)
}

// Bits writes -log2 p(y) per (b,t) into out [B][T] (float32), as Head.Bits.
// No host read-back.
func (d *Device) Bits(logits compute.View, B, T int, targets, out compute.View) {
	n := B * T
	if n <= 0 {
		return
	}
	args := append([]compute.Arg{
		compute.Ptr(logits, n*d.head.Channels()), compute.Ptr(targets, n), compute.Ptr(out, n), compute.Int(B), compute.Int(T),
	}, d.bitsArgs...)
	d.mod.Launch(d.bits, blocks(n, deviceBlock), deviceBlock, 0, args...)
}

// Sample draws one amplitude per utterance from step logits [B][C]
// (contiguous, channel stride 1) at temperature t (as Head.Sample), writes
// y[b] and
// enc[b*InputChannels() : (b+1)*InputChannels()] = EncodeInput(y[b]). rng
// holds 2 float32 slots per utterance, the bits of its 64-bit generator
// state (see SeedRNG), advanced by the kernel. It only queues work (no host
// read-back, no allocation), so it can be captured in a CUDA graph.
func (d *Device) Sample(logits compute.View, B int, t float64, rng, y, enc compute.View) {
	if B <= 0 {
		return
	}
	if err := CheckTemperature(t); err != nil {
		panic(fmt.Sprintf("outputs: %s: %v", d.head.Name(), err))
	}
	threads := B
	if d.sampleWarp {
		threads = 32 * B
	}
	args := append([]compute.Arg{
		compute.Ptr(logits, B*d.head.Channels()), compute.Ptr(rng, 2*B), compute.Ptr(y, B),
		compute.Ptr(enc, B*d.head.InputChannels()), compute.Int(B), f64Arg(t),
	}, d.sampleArgs...)
	d.mod.Launch(d.sample, blocks(threads, sampleBlock), sampleBlock, 0, args...)
}

// SeedRNG uploads per-utterance RNG states derived from seed: utterance b
// of rng gets the (b+1)-th output of a splitmix64 sequence started at seed,
// so every utterance has its own stream and equal seeds give equal draws.
func (d *Device) SeedRNG(rng compute.View, B int, seed uint64) {
	if B <= 0 {
		return
	}
	d.be.Upload(rng, seedStates(B, seed))
}

// seedStates is the rng slots of SeedRNG: state b = mix(seed + (b+1)*gamma),
// low word first.
func seedStates(B int, seed uint64) []float32 {
	st := make([]float32, 2*B)
	for b := 0; b < B; b++ {
		s := splitmix(seed + uint64(b+1)*splitmixGamma)
		st[2*b] = math.Float32frombits(uint32(s))
		st[2*b+1] = math.Float32frombits(uint32(s >> 32))
	}
	return st
}

const splitmixGamma = 0x9E3779B97F4A7C15

// splitmix is splitmix64's output function (hb_mix in heads_common.cu).
func splitmix(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// deviceTable is the mu-law table of categorical.cu: thr[q-1] (q = 1..mu) is
// the smallest float32 amplitude whose class is >= q; then the sampler's
// values Representative(q) and their classes, Q each.
func (m *MuLaw) deviceTable() []float32 {
	tab := make([]float32, m.mu+2*m.q)
	lo, hi := orderedKey(-1), orderedKey(1)
	for q := 1; q <= m.mu; q++ {
		a, b := lo, hi // Class(key b) >= q; find the smallest such key
		for a < b {
			mid := a + (b-a)/2
			if m.Class(float64(fromOrderedKey(mid))) >= q {
				b = mid
			} else {
				a = mid + 1
			}
		}
		tab[q-1] = fromOrderedKey(b)
		lo = b // thresholds do not decrease
	}
	for q := 0; q < m.q; q++ {
		y := m.Representative(q) // as MuLaw.Sample
		tab[m.mu+q] = y
		tab[m.mu+m.q+q] = float32(m.Class(float64(y)))
	}
	return tab
}

// orderedKey maps a float32 to an integer that orders like the float (-0
// and +0 share a key); fromOrderedKey inverts it.
func orderedKey(x float32) int64 {
	b := math.Float32bits(x)
	if b&0x80000000 != 0 {
		return -int64(b & 0x7fffffff)
	}
	return int64(b)
}

func fromOrderedKey(k int64) float32 {
	if k < 0 {
		return math.Float32frombits(uint32(-k) | 0x80000000)
	}
	return math.Float32frombits(uint32(k))
}
