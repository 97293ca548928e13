package wavenet

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
)

// Sampler is what incremental generation needs from an output head
// (outputs.Head satisfies it): the channel counts, how a sample is fed back
// as network input, and how one is drawn from one timestep's outputs.
type Sampler interface {
	Channels() int
	InputChannels() int
	EncodeInput(y float32, dst []float32)
	Sample(logits []float32, stride int, t float64, rng *rand.Rand) float32
}

// Utterance is one mel spectrogram to vocode: Mel is frames x CinChannels,
// row-major, already normalised the way the model was trained. Seed drives
// the utterance's own sampling RNG, so its waveform does not depend on
// which other utterances share its batch.
type Utterance struct {
	Mel  []float32
	Seed uint64
	// Excitation is [ExcitationChannels][frames*hop], the source signal
	// the model takes beside the waveform (package excitation derives it
	// from the same mel); nil for a model without excitation channels.
	Excitation []float32
	// Period is the pitch period in samples of each of the frames*hop
	// samples (0 where unvoiced), from the same pitch track as Excitation;
	// nil for a model without lag taps.
	Period []float32
}

// GenerateOptions tune Generate.
type GenerateOptions struct {
	// Batch is how many utterances are in flight at once (default 1); a
	// finished utterance's slot takes the next one.
	Batch int
	// ChunkFrames is how many mel frames are conditioned and projected per
	// GEMM (default: about 512 samples' worth, 2 frames at hop 256). Memory
	// per slot is ChunkFrames*hop*Layers*GateChannels floats (12.6 MB for
	// the reference model at the default).
	ChunkFrames int
	// Wide computes each product as one OpenBLAS GEMM over all slots
	// instead of one matrix-vector product per slot: an utterance's samples
	// then depend on the batch (OpenBLAS sums a column differently at
	// different widths), so it is off by default. Where MulVecs runs in
	// assembly (AVX2+FMA) Wide changes nothing: the default products
	// already cover the whole batch, faster than the GEMMs (measured), and
	// stay bit-identical to batch 1.
	Wide bool
	// Workers splits the slots over this many goroutines, each driving its
	// own group through the whole network (default 1). Use it with a
	// single-threaded BLAS (cpu.Options{Threads: 1}); results do not
	// change.
	Workers int
	// Progress, when set, is called after every step with the number of
	// samples that step produced (the active utterances). With Workers > 1
	// it is called from several goroutines.
	Progress func(samples int)
	// OnDone, when set, receives each waveform as soon as its utterance is
	// finished (index into the Generate call's utterances), e.g. to write
	// it while the others continue. With Workers > 1 it is called from
	// several goroutines.
	OnDone func(utt int, y []float32)
	// GPUStep selects the GPU generator's step kernels (default auto); the
	// CPU generator ignores it.
	GPUStep GPUStep
	// Temperature is the sampling temperature (0 means 1, the model's own
	// distribution; below 1 sharpens it: see the outputs package doc for
	// what it scales in each head).
	Temperature float64
	// VoicedTemperature, when > 0, is the temperature where the excitation
	// says the mel is voiced, blended with Temperature by the voicing
	// (the excitation's amplitude, 0..1): LPCNet's remedy for noisy voiced
	// output from a small model, whose one-step distributions are wider
	// than speech needs there. Only models with excitation channels have
	// a voicing to read (0 means Temperature everywhere).
	VoicedTemperature float64
}

// temperature is opts.Temperature with 0 read as 1, checked.
func (o GenerateOptions) temperature() (float64, error) {
	t := o.Temperature
	if t == 0 {
		return 1, nil
	}
	if !(t > 0) || math.IsInf(t, 0) {
		return 0, fmt.Errorf("wavenet: sampling temperature %g: must be a finite number > 0", t)
	}
	return t, nil
}

// MaxGenerateFrames bounds one utterance (about an hour at the reference
// hop and rate): longer inputs are almost certainly a mistake.
const MaxGenerateFrames = 320000

// Generator synthesises waveforms sample by sample with the standard
// WaveNet fast-generation scheme: every layer keeps a ring of its last
// (K-1)*d inputs, so a new sample costs one pass over the weights instead of
// one over the receptive field.
//
// Per sample and layer the work is two matrix-vector products: the K dilated
// taps fused into one [G x K*R] product over the stacked tap inputs, and the
// residual and skip 1x1 convs fused into one [(R+S) x G/2] product. The
// conditioning (upsampler) and every layer's conditioning projection (plus
// the dilated conv's bias) are computed per chunk of frames with one stacked
// [Layers*G x cin] GEMM, so the step only adds a precomputed vector.
//
// Timing convention (the trainer's and r9y9's): sample t is drawn from the
// output at time t, whose input is the previous sample y[t-1] (0 at t = 0)
// and whose conditioning is column t of the upsampled mel, so the step
// outputs equal Forward over the shifted generated sequence (tested).
//
// Batching and exactness: OpenBLAS picks different kernels (and summation
// orders) for different GEMM widths: measured here, a column of sgemm with
// n=1 (gemv), n=2..7, 8..15 and >=16 differ in the last bits, and a
// multi-threaded sgemv differs from a single-threaded one. A batched
// utterance must produce exactly the samples it produces alone, and
// sampling amplifies any last-bit difference into a different waveform.
// So where the CPU has AVX2+FMA the step's products run on
// cpu.PackedMatrix.MulVecs, whose per-column summation order does not
// depend on the number of columns: each run of active slots is one
// multi-column product that loads every weight once for all of them, as a
// GEMM does, and still gives each utterance the bits it gets alone.
// Elsewhere each utterance gets OpenBLAS matrix-vector products of its own
// (the BLAS thread count must then be fixed; vocode uses 1). Workers adds
// goroutines, each with its own slots; layer-major order keeps a layer's
// 0.5 MB of weights in cache across a group's slots. Wide mode trades the
// exactness for one OpenBLAS GEMM per layer over all slots.
//
// The step's elementwise work runs on host slices, so the generator needs a
// host-memory backend (compute.HostAccessor, i.e. the CPU backend); a
// per-sample step of ~100 tiny kernels would be launch-bound on a GPU anyway.
type Generator struct {
	be      compute.Backend
	host    compute.HostAccessor
	s       Sampler
	cfg     Config
	R, G, H int
	S, O, K int
	C, Cin  int
	// Qin is the encoded sample's share of the Cin first_conv inputs, E
	// the excitation's; the other Cin-Qin-E are lag taps.
	Qin, E int
	L, hop int
	dil    []int

	w    compute.Buffer // all effective weights, see the offsets below
	wh   []float32
	offs genOffsets

	// mv holds the step's products packed for MulVecs (nil: OpenBLAS
	// matrix-vector products per slot, where MulVecs has no assembly).
	mv *stepMats
	// blasStep makes the default mode use OpenBLAS per slot even where
	// MulVecs is available (benchmarks compare the two).
	blasStep bool

	skipBias []float32 // sum of every layer's skip bias, added once
	// stageK, stageM bound the inner and output sizes of the products
	// (wide mode's per-slot staging rows).
	stageK, stageM int
	resScale       float32 // sqrt(0.5)
	skipNorm       float32 // sqrt(1/L)

	// trace, when set (tests), sees every step's head outputs.
	trace func(utt, t int, logits []float32)
}

// stepMats are the per-sample products in MulVecs layout: first conv,
// per layer the dilated conv and the residual+skip rows (only the skip rows
// for the last layer, whose residual output feeds nothing), and the head.
type stepMats struct {
	first, last1, last2 *cpu.PackedMatrix
	conv, rs            []*cpu.PackedMatrix
	// cond is the stacked conditioning projection [L*G x C], which
	// condChunk applies to each sample's conditioning vector.
	cond *cpu.PackedMatrix
}

type genOffsets struct {
	first, firstB int
	conv          []int // [G][K*R], tap-major inside a row
	cond          int   // [L*G][C] stacked conditioning projections
	condB         int   // [L*G] dilated conv biases (added to the projection)
	rs, rsB       []int // [(R+S)][H] residual rows then skip rows; biases
	last1, last1B int
	last2, last2B int
	convIn        int   // conv_in, tap-major [2*pad+1][C][C]
	up            []int // upsampler row kernels [2s+1]
}

// NewGenerator folds the model's weight norm once (ExportInference) and lays
// the weights out for the per-sample step (its own copy, conditioning
// network included: the model may be freed afterwards).
func NewGenerator(m *Model, s Sampler) (*Generator, error) {
	host, ok := m.Backend().(compute.HostAccessor)
	if !ok {
		return nil, fmt.Errorf("wavenet: incremental generation needs a host-memory backend (cpu), not %s (use NewGPUGenerator)", m.Backend().Name())
	}
	g, w, err := newPlan(m, s)
	if err != nil {
		return nil, err
	}
	g.host = host
	if cpu.MulVecsAccelerated() {
		g.mv = g.packStep(w)
	}
	g.w = g.be.Alloc(len(w))
	g.be.Upload(compute.V(g.w), w)
	g.wh = host.Host(compute.V(g.w), len(w))
	return g, nil
}

// newPlan checks the head against the model and folds the weights into the
// step layout (genOffsets), returning the host copy; the CPU and GPU
// generators share it.
func newPlan(m *Model, s Sampler) (*Generator, []float32, error) {
	cfg := m.Config()
	if s.Channels() != cfg.OutChannels || s.InputChannels() != cfg.InputChannels {
		return nil, nil, fmt.Errorf("wavenet: generator: head needs %d output / %d input channels, model has %d / %d",
			s.Channels(), s.InputChannels(), cfg.OutChannels, cfg.InputChannels)
	}
	g := &Generator{be: m.Backend(), s: s, cfg: cfg,
		R: cfg.ResidualChannels, G: cfg.GateChannels, H: cfg.GateChannels / 2,
		S: cfg.SkipChannels, O: cfg.OutChannels, K: cfg.KernelSize,
		C: cfg.CinChannels, Cin: cfg.FirstConvInputs(), Qin: cfg.InputChannels, E: cfg.ExcitationChannels, L: cfg.Layers, hop: cfg.HopSize(),
		resScale: float32(math.Sqrt(0.5)), skipNorm: float32(math.Sqrt(1 / float64(cfg.Layers)))}
	for l := 0; l < g.L; l++ {
		g.dil = append(g.dil, cfg.Dilation(l))
	}
	byName := map[string]Tensor{}
	for _, t := range m.ExportInference() {
		byName[t.Name] = t
	}
	get := func(name string, size int) ([]float32, error) {
		t, ok := byName[name]
		if !ok {
			return nil, fmt.Errorf("wavenet: generator: model has no %s", name)
		}
		if len(t.Data) != size {
			return nil, fmt.Errorf("wavenet: generator: %s has %d values, want %d", name, len(t.Data), size)
		}
		return t.Data, nil
	}
	R, G, H, S, O, K, C, L := g.R, g.G, g.H, g.S, g.O, g.K, g.C, g.L
	var w []float32
	place := func(n int) int { off := len(w); w = append(w, make([]float32, n)...); return off }
	var errs []error
	copyIn := func(off int, name string, size int) {
		d, err := get(name, size)
		if err != nil {
			errs = append(errs, err)
			return
		}
		copy(w[off:off+size], d)
	}
	o := &g.offs
	o.first = place(R * g.Cin)
	copyIn(o.first, "first_conv.weight", R*g.Cin)
	o.firstB = place(R)
	copyIn(o.firstB, "first_conv.bias", R)
	o.cond = place(L * G * C)
	o.condB = place(L * G)
	for l := 0; l < L; l++ {
		p := fmt.Sprintf("conv_layers.%d.", l)
		off := place(G * K * R)
		o.conv = append(o.conv, off)
		if d, err := get(p+"conv.weight", G*R*K); err != nil {
			errs = append(errs, err)
		} else {
			// PyTorch [G][R][K] -> row g = [tap 0 | tap 1 | ... ] of R each,
			// matching the stacked input [x(t-(K-1)d) ... x(t)].
			for gi := 0; gi < G; gi++ {
				for k := 0; k < K; k++ {
					for r := 0; r < R; r++ {
						w[off+gi*K*R+k*R+r] = d[(gi*R+r)*K+k]
					}
				}
			}
		}
		copyIn(o.condB+l*G, p+"conv.bias", G)
		copyIn(o.cond+l*G*C, p+"conv1x1c.weight", G*C)
		rs := place((R + S) * H)
		o.rs = append(o.rs, rs)
		copyIn(rs, p+"conv1x1_out.weight", R*H)
		copyIn(rs+R*H, p+"conv1x1_skip.weight", S*H)
		rb := place(R + S)
		o.rsB = append(o.rsB, rb)
		copyIn(rb, p+"conv1x1_out.bias", R)
		copyIn(rb+R, p+"conv1x1_skip.bias", S)
	}
	o.last1 = place(S * S)
	copyIn(o.last1, "last_conv_layers.1.weight", S*S)
	o.last1B = place(S)
	copyIn(o.last1B, "last_conv_layers.1.bias", S)
	o.last2 = place(O * S)
	copyIn(o.last2, "last_conv_layers.3.weight", O*S)
	o.last2B = place(O)
	copyIn(o.last2B, "last_conv_layers.3.bias", O)
	kin := 2*cfg.CinPad + 1
	o.convIn = place(kin * C * C)
	if d, err := get("upsample_net.conv_in.weight", C*C*kin); err != nil {
		errs = append(errs, err)
	} else {
		for k := 0; k < kin; k++ {
			for co := 0; co < C; co++ {
				for ci := 0; ci < C; ci++ {
					w[o.convIn+(k*C+co)*C+ci] = d[(co*C+ci)*kin+k]
				}
			}
		}
	}
	for i, sc := range cfg.UpsampleScales {
		off := place(2*sc + 1)
		o.up = append(o.up, off)
		copyIn(off, fmt.Sprintf("upsample_net.upsample.up_layers.%d.weight", 2*i+1), 2*sc+1)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	g.stageK = max(K*R, H, S, g.Cin)
	g.stageM = max(G, R+S, S, O)
	g.skipBias = make([]float32, S)
	for l := 0; l < L; l++ {
		for s := 0; s < S; s++ {
			g.skipBias[s] += w[o.rsB[l]+R+s]
		}
	}
	return g, w, nil
}

// packStep lays the step's products out for MulVecs (another 12.6 MB for
// the reference model; the step reads only this copy).
func (g *Generator) packStep(w []float32) *stepMats {
	R, G, H, S, O, K, L, o := g.R, g.G, g.H, g.S, g.O, g.K, g.L, &g.offs
	sm := &stepMats{
		first: cpu.PackMatrix(w[o.first:], R, g.Cin, g.Cin),
		last1: cpu.PackMatrix(w[o.last1:], S, S, S),
		last2: cpu.PackMatrix(w[o.last2:], O, S, S),
		cond:  cpu.PackMatrix(w[o.cond:], L*G, g.C, g.C),
	}
	for l := 0; l < L; l++ {
		sm.conv = append(sm.conv, cpu.PackMatrix(w[o.conv[l]:], G, K*R, K*R))
		if l == L-1 {
			sm.rs = append(sm.rs, cpu.PackMatrix(w[o.rs[l]+R*H:], S, H, H))
		} else {
			sm.rs = append(sm.rs, cpu.PackMatrix(w[o.rs[l]:], R+S, H, H))
		}
	}
	return sm
}

// Free releases the generator's weight copy (the model is not touched).
func (g *Generator) Free() {
	if g.w != nil {
		g.be.Free(g.w)
		g.w, g.wh, g.mv = nil, nil, nil
	}
}

// StepWeightBytes is the float32 weight bytes one sample step reads (the
// roofline's memory term): dilated convs, residual/skip convs (the last
// layer's residual rows are skipped), first conv and head. The conditioning
// projections are precomputed and not counted here.
func (g *Generator) StepWeightBytes() int64 {
	n := g.R*g.Cin + g.L*g.G*g.K*g.R + g.L*(g.R+g.S)*g.H - g.R*g.H + g.S*g.S + g.O*g.S
	return 4 * int64(n)
}

// StepFLOPs is the multiply-add work (2 per weight) of one sample step,
// excluding the per-chunk conditioning GEMMs.
func (g *Generator) StepFLOPs() float64 { return float64(g.StepWeightBytes()) / 2 }

// slotLayout places one in-flight utterance's buffers: the step's small
// vectors in its region of per floats of a hot area, every slot with the
// same layout, so a product reads the slots' vectors as columns at stride
// per; the ring and the per-chunk conditioning in its region of cold
// floats after that. Kept apart, the hot vectors of a batch span a few
// hundred KB instead of 12.6 MB per slot (measured in back-to-back runs
// under load: batch 16 ran at 1,491 samples/s with columns 12.6 MB apart,
// 2,813 with this layout; columns a multiple of 4 KB apart share cache
// sets). per is an odd number of cache lines for the same reason.
type slotLayout struct {
	x      int // stacked inputs, L blocks of [K*R] (the last R: x(t))
	pre    int // [G]
	z      int // [H]
	rs     int // [R+S]
	skip   int // [S]
	a1     int // [S]
	a2     int // [S]
	out0   int // [O]
	xin    int // [Cin]
	per    int
	ring   int // cold: per layer (K-1)*d vectors of R, ringOf[l] into it
	proj   int // cold: [chunk samples][L*G]
	melC   int // cold: chunk mel [C][chunk frames + margins + 2*pad]
	cond   int // cold: chunk conditioning [C][(chunk frames + margins)*hop]
	c0     int // cold: conv_in output [C][chunk frames + margins]
	condT  int // cold: the chunk's conditioning vectors [chunk samples][C]
	upA    int // cold: upsampler scratch, the size of cond
	cold   int
	ringL  int
	ringOf []int
}

func (g *Generator) layout(chunkF int) *slotLayout {
	R, G, H, S, O, K, L, C := g.R, g.G, g.H, g.S, g.O, g.K, g.L, g.C
	lo := &slotLayout{ringOf: make([]int, L+1)}
	for l := 0; l < L; l++ {
		lo.ringOf[l+1] = lo.ringOf[l] + (K-1)*g.dil[l]*R
	}
	lo.ringL = max(lo.ringOf[L], 1)
	next := func(n int) int { off := lo.per; lo.per += n; return off }
	lo.x = next(L * K * R)
	lo.pre, lo.z, lo.rs, lo.skip = next(G), next(H), next(R+S), next(S)
	lo.a1, lo.a2, lo.out0, lo.xin = next(S), next(S), next(O), next(g.Cin)
	// An odd number of 64-byte lines between slots spreads their vectors
	// over every cache set.
	lo.per = (lo.per + 15) / 16 * 16
	if lo.per/16%2 == 0 {
		lo.per += 16
	}
	cold := func(n int) int { off := lo.cold; lo.cold += n; return off }
	lo.ring = cold(lo.ringL)
	lo.proj = cold(chunkF * g.hop * L * G)
	lo.melC = cold(C * (chunkF + 2*condMargin + 2*g.cfg.CinPad))
	lo.cond = cold(C * (chunkF + 2*condMargin) * g.hop)
	lo.c0 = cold(C * (chunkF + 2*condMargin))
	lo.condT = cold(chunkF * g.hop * C)
	lo.upA = cold(C * (chunkF + 2*condMargin) * g.hop)
	return lo
}

// slot is one in-flight utterance (utt < 0: idle).
type slot struct {
	base   compute.View
	utt    int
	T, t   int
	frames int
	melP   []float32 // padded mel, [C][frames+2*pad] (host)
	exc    []float32 // excitation [E][T] (host)
	period []float32 // pitch period per sample, for the lag taps
	rng    *rand.Rand
	out    []float32
	prev   float32
	// Samples [c0, c1) have their conditioning projections in proj.
	c0, c1 int

	x, ring, pre, z, rs, skip, a1, a2, out0, xin, proj, melC, cond compute.View
	convOut, upA, condT                                            compute.View
	ringOf                                                         []int
}

// condMargin is the number of extra frames conditioned on each side of a
// chunk: the upsampler's row convolutions reach less than 1.34 frames
// (s_i samples at stage i's resolution, summed over the stages), so with two
// frames the chunk's interior is what the whole utterance gives, up to
// float32 rounding (conv_in's GEMM is narrower per chunk). Chunk boundaries
// depend only on the utterance, so batching does not change them.
const condMargin = 2

// Generate vocodes every utterance and returns their waveforms (network
// output amplitudes in [-1,1], frames*hop samples each, before any
// de-emphasis or gain). Utterances are generated opts.Batch at a time; each
// one's samples are identical whatever the batch.
func (g *Generator) Generate(utts []Utterance, opts GenerateOptions) ([][]float32, error) {
	if g.w == nil {
		return nil, errors.New("wavenet: generator used after Free")
	}
	C, pad := g.C, g.cfg.CinPad
	if err := checkUtterances(utts, C, g.E, g.Cin-g.Qin-g.E, g.hop); err != nil {
		return nil, err
	}
	temp, err := opts.temperature()
	if err != nil {
		return nil, err
	}
	if tv := opts.VoicedTemperature; tv != 0 {
		if !(tv > 0) || math.IsInf(tv, 0) {
			return nil, fmt.Errorf("wavenet: voiced sampling temperature %g: must be a finite number > 0", tv)
		}
		if g.E < 2 {
			return nil, errors.New("wavenet: a voiced sampling temperature needs a model with excitation channels (the voicing comes from them)")
		}
	}
	B := opts.Batch
	if B <= 0 {
		B = 1
	}
	B = min(B, len(utts))
	W := min(max(opts.Workers, 1), max(B, 1))
	chunkF := opts.ChunkFrames
	if chunkF <= 0 {
		chunkF = max(1, 512/g.hop)
	}
	outs := make([][]float32, len(utts))
	if len(utts) == 0 {
		return outs, nil
	}
	lo := g.layout(chunkF)
	buf := g.be.Alloc(B * (lo.per + lo.cold))
	defer g.be.Free(buf)
	slots := make([]*slot, B)
	for b := range slots {
		v := compute.V(buf).At(b * lo.per)
		c := compute.V(buf).At(B*lo.per + b*lo.cold)
		slots[b] = &slot{base: v, utt: -1, ringOf: lo.ringOf,
			x: v.At(lo.x), ring: c.At(lo.ring), pre: v.At(lo.pre), z: v.At(lo.z), rs: v.At(lo.rs),
			skip: v.At(lo.skip), a1: v.At(lo.a1), a2: v.At(lo.a2), out0: v.At(lo.out0), xin: v.At(lo.xin),
			proj: c.At(lo.proj), melC: c.At(lo.melC), cond: c.At(lo.cond), convOut: c.At(lo.c0), upA: c.At(lo.upA),
			condT: c.At(lo.condT)}
	}

	// A shared queue: a slot that finishes takes the next utterance.
	var mu sync.Mutex
	queue := 0
	next := func() int {
		mu.Lock()
		defer mu.Unlock()
		if queue >= len(utts) {
			return -1
		}
		queue++
		return queue - 1
	}
	start := func(sl *slot) bool {
		i := next()
		sl.utt = i
		if i < 0 {
			return false
		}
		u := utts[i]
		sl.frames = len(u.Mel) / C
		sl.T = sl.frames * g.hop
		sl.t, sl.c0, sl.c1, sl.prev = 0, 0, 0, 0
		sl.out = make([]float32, sl.T)
		sl.rng = rand.New(rand.NewPCG(u.Seed, 0x5eed5eed5eed5eed))
		sl.melP = padMel(u.Mel, C, pad)
		sl.exc, sl.period = u.Excitation, u.Period
		g.be.Fill(sl.ring, lo.ringL, 0)
		return true
	}
	// run drives a group of slots until the queue is empty.
	run := func(group []*slot) {
		var stage compute.View
		if opts.Wide && (g.mv == nil || g.blasStep) {
			buf := g.be.Alloc(len(group) * (g.stageK + g.stageM))
			defer g.be.Free(buf)
			stage = compute.V(buf)
		}
		active := 0
		for _, sl := range group {
			if start(sl) {
				active++
			}
		}
		for active > 0 {
			for _, sl := range group {
				if sl.utt >= 0 && sl.t == sl.c1 {
					g.condChunk(sl, chunkF)
				}
			}
			g.step(group, lo, stage, temp, opts.VoicedTemperature)
			done := 0
			for _, sl := range group {
				if sl.utt < 0 {
					continue
				}
				done++
				sl.t++
				if sl.t == sl.T {
					outs[sl.utt] = sl.out // distinct index per utterance
					if opts.OnDone != nil {
						opts.OnDone(sl.utt, sl.out)
					}
					sl.out, sl.melP, sl.exc, sl.period = nil, nil, nil, nil
					if !start(sl) {
						active--
					}
				}
			}
			if opts.Progress != nil {
				opts.Progress(done)
			}
		}
	}
	if W == 1 {
		run(slots)
		return outs, nil
	}
	var wg sync.WaitGroup
	for w := 0; w < W; w++ {
		group := slots[w*B/W : (w+1)*B/W]
		wg.Add(1)
		go func() { defer wg.Done(); run(group) }()
	}
	wg.Wait()
	return outs, nil
}

// checkUtterances refuses an empty or ragged mel, one over
// MaxGenerateFrames, or one holding NaN or Inf, and an excitation that does
// not cover E channels of frames*hop samples (or a period that does not
// cover them when the model has lag taps), naming the utterance.
func checkUtterances(utts []Utterance, C, E, lag, hop int) error {
	for i, u := range utts {
		if len(u.Mel) == 0 || len(u.Mel)%C != 0 {
			return fmt.Errorf("wavenet: generate: utterance %d: mel has %d values, not a positive multiple of %d channels", i, len(u.Mel), C)
		}
		if f := len(u.Mel) / C; f > MaxGenerateFrames {
			return fmt.Errorf("wavenet: generate: utterance %d: %d frames is more than the %d allowed", i, f, MaxGenerateFrames)
		}
		for j, v := range u.Mel {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("wavenet: generate: utterance %d: mel value %d (frame %d, channel %d) is %v", i, j, j/C, j%C, v)
			}
		}
		if n := len(u.Mel) / C * hop * E; len(u.Excitation) != n {
			if E == 0 {
				return fmt.Errorf("wavenet: generate: utterance %d has an excitation, but the model takes none", i)
			}
			return fmt.Errorf("wavenet: generate: utterance %d: excitation has %d values, the model wants %d channels x %d samples", i, len(u.Excitation), E, n/E)
		}
		if n := len(u.Mel) / C * hop; lag > 0 && len(u.Period) != n {
			return fmt.Errorf("wavenet: generate: utterance %d: pitch period has %d values, the model's lag taps want %d (one per sample)", i, len(u.Period), n)
		}
	}
	return nil
}

// padMel pads a mel [frames][C] with pad replicated edge frames each side
// (the reference's inference padding) and transposes it to
// [C][frames+2*pad], the conditioning network's input.
func padMel(mel []float32, C, pad int) []float32 {
	F := len(mel) / C
	Fp := F + 2*pad
	out := make([]float32, C*Fp)
	for f := 0; f < Fp; f++ {
		src := min(max(f-pad, 0), F-1)
		for c := 0; c < C; c++ {
			out[c*Fp+f] = mel[src*C+c]
		}
	}
	return out
}

// condChunk conditions the next chunk of sl's frames (with condMargin
// frames of context each side) and projects it through every layer's
// conditioning conv in one GEMM: proj[j][l*G+g] for sample c0+j, bias
// included.
func (g *Generator) condChunk(sl *slot, chunkF int) {
	C, pad, hop, LG := g.C, g.cfg.CinPad, g.hop, g.L*g.G
	f0 := sl.c1 / hop
	f1 := min(f0+chunkF, sl.frames)
	a, e := max(f0-condMargin, 0), min(f1+condMargin, sl.frames)
	Fp, w := sl.frames+2*pad, e-a+2*pad
	// Frames [a, e) of conv_in's output read padded frames [a, e+2*pad).
	mh := g.host.Host(sl.melC, C*w)
	for c := 0; c < C; c++ {
		copy(mh[c*w:(c+1)*w], sl.melP[c*Fp+a:c*Fp+a+w])
	}
	g.upsample(sl, e-a, w)
	cw := (e - a) * hop
	rows := (f1 - f0) * hop
	ph := g.host.Host(sl.proj, rows*LG)
	if g.mv != nil && !g.blasStep {
		// One MulVecs over the chunk's samples: transposed, each sample's
		// conditioning vector is a column (measured on this product,
		// 512 x 6144 x 80: 216-227 GFLOP/s, OpenBLAS sgemm 108-110).
		ct := g.host.Host(sl.condT, rows*C)
		ch := g.host.Host(sl.cond.At((f0-a)*hop), (C-1)*cw+rows)
		for c := 0; c < C; c++ {
			row := ch[c*cw : c*cw+rows]
			for j, v := range row {
				ct[j*C+c] = v
			}
		}
		g.mv.cond.MulVecs(ct, C, ph, LG, rows, false)
	} else {
		// proj (rows x L*G) = cond[:, chunk]^T (rows x C) * Wc^T (C x L*G).
		g.be.Gemm(true, true, rows, LG, C, 1, sl.cond.At((f0-a)*hop), cw, compute.V(g.w).At(g.offs.cond), C, 0, sl.proj, LG)
	}
	bias := g.wh[g.offs.condB : g.offs.condB+LG]
	for j := 0; j < rows; j++ {
		row := ph[j*LG : (j+1)*LG]
		for i := range row {
			row[i] += bias[i]
		}
	}
	sl.c0, sl.c1 = f0*hop, f1*hop
}

// upsample runs the conditioning network on sl.melC ([C][F+2*pad], row
// stride w) into sl.cond ([C][F*hop]): the operations of Model.Conditioning
// (conv_in as one GEMM per tap, then stretch and row convolution per
// scale) on the generator's own folded weights and per-slot scratch, so
// workers run it concurrently and nothing is allocated per chunk.
func (g *Generator) upsample(sl *slot, F, w int) {
	be, wv, C := g.be, compute.V(g.w), g.C
	for k := 0; k < 2*g.cfg.CinPad+1; k++ {
		beta := float32(1)
		if k == 0 {
			beta = 0
		}
		be.Gemm(false, false, C, F, C, 1, wv.At(g.offs.convIn+k*C*C), C, sl.melC.At(k), w, beta, sl.convOut, F)
	}
	src, n := sl.convOut, F
	for i, sc := range g.cfg.UpsampleScales {
		be.Stretch(sl.upA, src, C, n, sc)
		n *= sc
		be.RowConvSame(sl.cond, sl.upA, wv.At(g.offs.up[i]), C, n, 2*sc+1)
		src = sl.cond
	}
}

// step advances every active slot by one sample, layer-major so each
// layer's weights serve all slots while cached. With wide set, each
// product is one GEMM over all slots (rows at the slot stride ld, idle
// slots computed and ignored); otherwise one MulVecs per run of adjacent
// active slots (their vectors are columns at the slot stride), or without
// it one matrix-vector product per slot.
func (g *Generator) step(slots []*slot, lo *slotLayout, stage compute.View, temp, voicedTemp float64) {
	wide := stage.Buf != nil
	be, wv, wh := g.be, compute.V(g.w), g.wh
	R, G, H, S, O, K, L, Cin := g.R, g.G, g.H, g.S, g.O, g.K, g.L, g.Cin
	KR := K * R
	o := &g.offs
	B := len(slots)
	mv := g.mv
	if g.blasStep {
		mv = nil
	}
	per := lo.per
	// prod computes dst = W src (+ dst when acc) for every slot: W is m x k
	// at weight offset w (pm in MulVecs layout); src/dst are offsets in each
	// slot's region. Wide mode gathers the slots' vectors into contiguous
	// rows first (measured: OpenBLAS is several times slower on rows
	// megabytes apart).
	prod := func(pm *cpu.PackedMatrix, m, k, w, src, dst int, acc bool) {
		beta := float32(0)
		if acc {
			beta = 1
		}
		if wide {
			in, out := stage, stage.At(B*g.stageK)
			ih := g.host.Host(in, B*k)
			oh := g.host.Host(out, B*m)
			for b, sl := range slots {
				copy(ih[b*k:(b+1)*k], g.host.Host(sl.base.At(src), k))
				if acc {
					copy(oh[b*m:(b+1)*m], g.host.Host(sl.base.At(dst), m))
				}
			}
			be.Gemm(false, true, B, m, k, 1, in, k, wv.At(w), k, beta, out, m)
			for b, sl := range slots {
				copy(g.host.Host(sl.base.At(dst), m), oh[b*m:(b+1)*m])
			}
			return
		}
		if mv != nil {
			// The group's slots are adjacent at stride per.
			for b0 := 0; b0 < B; {
				if slots[b0].utt < 0 {
					b0++
					continue
				}
				b1 := b0 + 1
				for b1 < B && slots[b1].utt >= 0 {
					b1++
				}
				n := b1 - b0
				x := g.host.Host(slots[b0].base.At(src), (n-1)*per+k)
				y := g.host.Host(slots[b0].base.At(dst), (n-1)*per+m)
				pm.MulVecs(x, per, y, per, n, acc)
				b0 = b1
			}
			return
		}
		for _, sl := range slots {
			if sl.utt >= 0 {
				be.Gemm(false, false, m, 1, k, 1, wv.At(w), k, sl.base.At(src), 1, beta, sl.base.At(dst), 1)
			}
		}
	}
	// Input: encode the previous sample; first 1x1 conv into layer 0's
	// current-tap block.
	for _, sl := range slots {
		if sl.utt >= 0 {
			xin := g.host.Host(sl.xin, Cin)
			g.s.EncodeInput(sl.prev, xin[:g.Qin])
			for e := range g.E {
				xin[g.Qin+e] = sl.exc[e*sl.T+sl.t]
			}
			if lag := Cin - g.Qin - g.E; lag > 0 {
				LagInput(xin[g.Qin+g.E:], 1, sl.out[:sl.t], sl.period[sl.t:], sl.t, 1, lag)
			}
		}
	}
	var pFirst, pConv, pRS, pLast1, pLast2 *cpu.PackedMatrix
	if mv != nil {
		pFirst, pLast1, pLast2 = mv.first, mv.last1, mv.last2
	}
	prod(pFirst, R, Cin, o.first, lo.xin, lo.x+(K-1)*R, false)
	for _, sl := range slots {
		if sl.utt >= 0 {
			h := g.host.Host(sl.x.At((K-1)*R), R)
			for r, bv := range wh[o.firstB : o.firstB+R] {
				h[r] += bv
			}
		}
	}
	for l := 0; l < L; l++ {
		d := g.dil[l]
		span := (K - 1) * d
		last := l == L-1
		// Stack the taps (tap k reads x(t-(K-1-k)d) from ring slot
		// (t-(K-1-k)d) mod span, zero until written) and start pre from
		// the conditioning projection (bias included).
		for _, sl := range slots {
			if sl.utt < 0 {
				continue
			}
			t := sl.t
			xh := g.host.Host(sl.x.At(l*KR), KR)
			if span > 0 {
				ring := g.host.Host(sl.ring.At(sl.ringOf[l]), span*R)
				for k := 0; k < K-1; k++ {
					s := (t - (K-1-k)*d) % span
					if s < 0 {
						s += span
					}
					copy(xh[k*R:(k+1)*R], ring[s*R:(s+1)*R])
				}
			}
			copy(g.host.Host(sl.pre, G), g.host.Host(sl.proj.At((t-sl.c0)*L*G+l*G), G))
		}
		if mv != nil {
			pConv, pRS = mv.conv[l], mv.rs[l]
		}
		prod(pConv, G, KR, o.conv[l], lo.x+l*KR, lo.pre, true)
		for _, sl := range slots {
			if sl.utt < 0 {
				continue
			}
			if span > 0 {
				// The current input replaces the oldest (tap 0, already read).
				ring := g.host.Host(sl.ring.At(sl.ringOf[l]), span*R)
				s := sl.t % span
				copy(ring[s*R:(s+1)*R], g.host.Host(sl.x.At(l*KR+(K-1)*R), R))
			}
			be.GatedTanhSigmoid(sl.z, sl.pre, 1, H)
		}
		if last {
			// The last layer's residual output feeds nothing.
			prod(pRS, S, H, o.rs[l]+R*H, lo.z, lo.rs+R, false)
		} else {
			prod(pRS, R+S, H, o.rs[l], lo.z, lo.rs, false)
		}
		rsB := wh[o.rsB[l] : o.rsB[l]+R+S]
		for _, sl := range slots {
			if sl.utt < 0 {
				continue
			}
			rs := g.host.Host(sl.rs, R+S)
			if !last {
				hcur := g.host.Host(sl.x.At(l*KR+(K-1)*R), R)
				hn := g.host.Host(sl.x.At((l+1)*KR+(K-1)*R), R)
				for r := 0; r < R; r++ {
					hn[r] = (rs[r] + rsB[r] + hcur[r]) * g.resScale
				}
			}
			skip := g.host.Host(sl.skip, S)
			if l == 0 {
				copy(skip, rs[R:])
			} else {
				for s, v := range rs[R:] {
					skip[s] += v
				}
			}
		}
	}
	// Head: ReLU(skip*sqrt(1/L)), 1x1, ReLU, 1x1, then sample.
	for _, sl := range slots {
		if sl.utt < 0 {
			continue
		}
		skip := g.host.Host(sl.skip, S)
		a1 := g.host.Host(sl.a1, S)
		for s, v := range skip {
			a1[s] = max((v+g.skipBias[s])*g.skipNorm, 0)
		}
	}
	prod(pLast1, S, S, o.last1, lo.a1, lo.a2, false)
	for _, sl := range slots {
		if sl.utt < 0 {
			continue
		}
		a2 := g.host.Host(sl.a2, S)
		for s, bv := range wh[o.last1B : o.last1B+S] {
			a2[s] = max(a2[s]+bv, 0)
		}
	}
	prod(pLast2, O, S, o.last2, lo.a2, lo.out0, false)
	for _, sl := range slots {
		if sl.utt < 0 {
			continue
		}
		out := g.host.Host(sl.out0, O)
		for c, bv := range wh[o.last2B : o.last2B+O] {
			out[c] += bv
		}
		if g.trace != nil {
			g.trace(sl.utt, sl.t, out)
		}
		te := temp
		if voicedTemp > 0 {
			// The excitation's first two rows are v*sin and v*cos.
			a, b := float64(sl.exc[sl.t]), float64(sl.exc[sl.T+sl.t])
			v := min(math.Sqrt(a*a+b*b), 1)
			te += v * (voicedTemp - temp)
		}
		y := g.s.Sample(out, 1, te, sl.rng)
		sl.out[sl.t] = y
		sl.prev = y
	}
}
