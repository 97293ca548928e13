package wavenet

import (
	_ "embed"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/wavecat/wavecat/compute"
)

// generateSource is the GPU generator's per-sample step (generate.cu).
//
//go:embed generate.cu
var generateSource string

// GenerateSource is generate.cu, for compile checks (cuda.CheckCompile).
func GenerateSource() string { return generateSource }

var gpuKernels = []string{"wg_first", "wg_layer", "wg_head1", "wg_head2", "wg_advance", "wg_force", "wg_trace", "wf_step", "wcl_step"}

// DeviceSampler draws one sample per utterance on the device
// (outputs.Device satisfies it): from step logits [B][C] it writes y[b] and
// the encoded next input enc[b][InputChannels], advancing per-utterance RNG
// states (2 float slots each). Sample must only queue work: it is captured
// in a CUDA graph.
type DeviceSampler interface {
	Sample(logits compute.View, B int, t float64, rng, y, enc compute.View)
	SeedRNG(rng compute.View, B int, seed uint64)
}

// GPUGenerator is the Generator's algorithm on a GPU backend: the same
// folded weights and timing convention, with the per-sample step as L+5
// kernels (generate.cu), or for batches up to fusedMaxBatch the one-launch
// wf_step plus sampling and advance (generate_fused.go), replayed as a CUDA graph of
// gpuGraphSteps samples,
// sampling on the GPU (DeviceSampler), and utterances batched in lockstep
// (a group runs to its longest utterance; shorter ones' extra steps are
// discarded). Waveforms stay on the GPU until an utterance group is done.
//
// The conditioning network runs once per utterance over the whole mel; each
// chunk of gpuChunk samples gets its per-layer conditioning projections
// from one GEMM per utterance.
type GPUGenerator struct {
	plan *Generator
	be   compute.Backend
	mod  compute.Module
	gc   compute.GraphCapturer
	ds   DeviceSampler
	w    compute.Buffer
	tab  compute.Buffer
	nsl  int
	ring []int // ring offsets per layer (floats), then the total

	// fused is the one-launch step for batches up to fusedMaxBatch, built
	// by fusedStep on first use (nil where the backend cannot say how many
	// blocks run at once).
	fused      *fusedStep
	fusedTried bool
	// cluster is the cluster step (generate_cluster.go), built by
	// clusterStep on first use (nil where clusters cannot run).
	cluster      *clusterStep
	clusterTried bool
	// clusterProfile makes wcl_step add its phase times to the cluster
	// step's profile (benchmarks, tests).
	clusterProfile bool

	// Tests: force, when set, replaces sampling by teacher forcing with
	// these encoded inputs [T][B][Cin]; trace, when set, records the step
	// outputs [T][B][O].
	force, trace compute.View
}

const (
	gpuChunk      = 256 // samples per conditioning-projection chunk
	gpuGraphSteps = 64  // samples per captured graph (divides gpuChunk)
	gpuBlock      = 256 // threads per block of the small step kernels
	// The block size of wg_layer and wg_head1. Each of their blocks streams
	// its weight rows (64+ KB) from L2 one warp-row at a time, so a lone
	// utterance is latency-bound and 32 warps per block keep 4x more loads
	// in flight than 8; with many utterances the blocks fill the SMs anyway
	// and smaller ones pack better. Measured on an H100, reference config:
	// batch 1 at 340 us/step with 256 threads, 213 with 1024; batch 32 at
	// 79k samples/s with 256, 61k with 1024.
	layerBlockSmall  = 1024 // batches up to layerBlockSwitch
	layerBlockLarge  = 256
	layerBlockSwitch = 4
	tabHeader        = 24 // THDR in generate.cu
	tabPerLayer      = 8  // TPERLAYER
)

// ErrNoGPUExcitation: the GPU generator does not take excitation channels
// yet; callers fall back to the CPU Generator.
var ErrNoGPUExcitation = errors.New("wavenet: the GPU generator does not support models with excitation channels")

// NewGPUGenerator compiles generate.cu on the model's backend (which must
// compile kernels and capture graphs: compute/cuda) and uploads the folded
// weights. ds is the head's device sampler, s the head itself (channel
// counts and the first sample's input encoding).
func NewGPUGenerator(m *Model, s Sampler, ds DeviceSampler) (*GPUGenerator, error) {
	be := m.Backend()
	kc, ok := be.(compute.KernelCompiler)
	gc, ok2 := be.(compute.GraphCapturer)
	if !ok || !ok2 {
		return nil, fmt.Errorf("wavenet: GPU generation needs a backend that compiles kernels and captures graphs (cuda), not %s", be.Name())
	}
	if e := m.Config().ExcitationChannels; e > 0 {
		// The step kernels read only the encoded sample; feeding them the
		// excitation is not written yet (ErrNoGPUExcitation).
		return nil, fmt.Errorf("%w (the model has %d excitation channels)", ErrNoGPUExcitation, e)
	}
	plan, w, err := newPlan(m, s)
	if err != nil {
		return nil, err
	}
	mod, err := kc.Compile("wavenet/generate.cu", generateSource, gpuKernels...)
	if err != nil {
		return nil, err
	}
	g := &GPUGenerator{plan: plan, be: be, mod: mod, gc: gc, ds: ds}
	// The sum of every layer's skip bias, added once (as the CPU step does).
	skipB := len(w)
	w = append(w, plan.skipBias...)
	if len(w) >= 1<<31 {
		return nil, errors.New("wavenet: GPU generator: weights too large for 32-bit offsets")
	}
	g.nsl = min(16, plan.H, plan.S)
	g.ring = make([]int, plan.L+1)
	for l := 0; l < plan.L; l++ {
		span := (plan.K - 1) * plan.dil[l]
		n := 0
		if span > 0 {
			n = (span + 1) * plan.R
		}
		g.ring[l+1] = g.ring[l] + n
	}
	o := &plan.offs
	tab := make([]int, tabHeader+plan.L*tabPerLayer)
	copy(tab, []int{plan.R, plan.G, plan.H, plan.S, plan.K, plan.L, plan.O, plan.Cin, g.nsl, gpuChunk,
		max(g.ring[plan.L], 1), o.condB, o.first, o.firstB, o.last1, o.last1B, o.last2, o.last2B, skipB})
	for l := 0; l < plan.L; l++ {
		copy(tab[tabHeader+l*tabPerLayer:], []int{o.conv[l], o.rs[l], o.rsB[l], plan.dil[l], (plan.K - 1) * plan.dil[l], g.ring[l]})
	}
	tf := intTable(tab)
	g.w = be.Alloc(len(w))
	be.Upload(compute.V(g.w), w)
	plan.w = g.w // upsample reads the weights through the plan (device memory; plan.wh stays nil)
	g.tab = be.Alloc(len(tf))
	be.Upload(compute.V(g.tab), tf)
	return g, nil
}

// fusedStep returns the one-launch step, building it on first use from the
// device weights: its folded weights cost host time and device memory that
// the layered kernels do not need.
func (g *GPUGenerator) fusedStep() *fusedStep {
	if !g.fusedTried {
		g.fusedTried = true
		g.fused = newFusedStep(g.be, g.mod, g.plan, g.hostWeights(), g.ring, 0)
	}
	return g.fused
}

// hostWeights downloads the device weights, which the one-launch steps
// refold for their own layout.
func (g *GPUGenerator) hostWeights() []float32 {
	w := make([]float32, g.w.Len())
	g.be.Download(w, compute.V(g.w))
	return w
}

// whole is a kernel pointer argument covering all of b.
func whole(b compute.Buffer) compute.Arg { return compute.Ptr(compute.V(b), b.Len()) }

// intTable is tab as float slots holding the ints' bits (the kernels'
// tab_at reads them back), so one float buffer carries sizes and offsets.
func intTable(tab []int) []float32 {
	tf := make([]float32, len(tab))
	for i, v := range tab {
		tf[i] = math.Float32frombits(uint32(int32(v)))
	}
	return tf
}

// Free releases the generator's device buffers.
func (g *GPUGenerator) Free() {
	if g.w != nil {
		g.be.Free(g.w)
		g.be.Free(g.tab)
		g.w, g.tab = nil, nil
		if g.fused != nil {
			g.fused.free(g.be)
			g.fused = nil
		}
		if g.cluster != nil {
			g.cluster.free(g.be)
			g.cluster = nil
		}
	}
}

// StepWeightBytes and StepFLOPs are the CPU generator's (same algorithm).
func (g *GPUGenerator) StepWeightBytes() int64 { return g.plan.StepWeightBytes() }
func (g *GPUGenerator) StepFLOPs() float64     { return g.plan.StepFLOPs() }

// gpuState is the device memory of one batch of B utterance slots.
type gpuState struct {
	B                                     int
	mode                                  GPUStep // the step kernels it runs: GPUStepLayered, GPUStepFused or GPUStepCluster
	X, ring, Z, skip, A2, out, y, enc, rg compute.Buffer
	tbuf, proj                            compute.Buffer
	// The one-launch step's exchange words (two floats each, a buffer of
	// its own so they are 8-byte aligned) and stall flag; nil unless the
	// state runs that step (see fused).
	xch, status compute.Buffer
}

// fused says whether st runs the one-launch step.
func (st *gpuState) fused() bool { return st.mode == GPUStepFused }

func (g *GPUGenerator) newState(B int, mode GPUStep) *gpuState {
	p, be := g.plan, g.be
	st := &gpuState{B: B, mode: mode,
		X: be.Alloc(p.L * B * p.R), ring: be.Alloc(B * max(g.ring[p.L], 1)), Z: be.Alloc(2 * B * p.H),
		skip: be.Alloc(B * p.S), A2: be.Alloc(B * p.S), out: be.Alloc(B * p.O), y: be.Alloc(B),
		enc: be.Alloc(B * p.Cin), rg: be.Alloc(2 * B), tbuf: be.Alloc(1),
		proj: be.Alloc(B * gpuChunk * p.L * p.G)}
	if mode == GPUStepFused {
		st.xch, st.status = be.Alloc(2*B*g.fused.words), be.Alloc(1)
	}
	return st
}

func (st *gpuState) free(be compute.Backend) {
	for _, b := range []compute.Buffer{st.X, st.ring, st.Z, st.skip, st.A2, st.out, st.y, st.enc, st.rg, st.tbuf, st.proj, st.xch, st.status} {
		if b != nil {
			be.Free(b)
		}
	}
}

// fusedByDefault makes GPUStepAuto pick the one-launch step where it
// applies: on an H200 (scripts/gpu-check.sh, 2026-11-26) it passed the
// conformance suite, the reference config included, and took 62–64 us
// per sample at batch 1 against the layered kernels' 211. (A variable so the
// tests can cover auto both ways.)
var fusedByDefault = true

// stepFor resolves step for a group of B slots and Tmax samples to the
// kernels that run it: GPUStepCluster where asked (an error where it
// cannot run) or, for GPUStepAuto, with clusterByDefault where it can;
// else GPUStepFused or GPUStepLayered as useFused says.
func (g *GPUGenerator) stepFor(step GPUStep, B, Tmax int) (GPUStep, error) {
	if step == GPUStepCluster || step == GPUStepAuto && clusterByDefault {
		if c := g.clusterStep(); c != nil && c.clusters(B) > 0 {
			return GPUStepCluster, nil
		}
		if step == GPUStepCluster {
			return 0, errNoCluster
		}
	}
	fused, err := g.useFused(step, B, Tmax)
	if fused {
		return GPUStepFused, err
	}
	return GPUStepLayered, err
}

// useFused says whether a group of B slots and Tmax samples runs the
// one-launch step: where it is built, B is small (there the launches
// dominate; larger batches fill the GPU with the layered kernels' blocks)
// and its tags (t*(L+2)+round+1, 32 bits) cannot wrap; GPUStepAuto only
// with fusedByDefault.
func (g *GPUGenerator) useFused(step GPUStep, B, Tmax int) (bool, error) {
	if step == GPUStepLayered || step == GPUStepAuto && !fusedByDefault {
		return false, nil
	}
	f := g.fusedStep()
	// The batch's shared memory must be within what the grid was sized
	// for (fusedGrid checked that many blocks of it run at once).
	ok := f != nil && B <= fusedMaxBatch && 4*f.shared*B <= fusedGridShared(g.plan, f.nb) && int64(Tmax+1)*int64(g.plan.L+2) < 1<<32
	if step == GPUStepFused && !ok {
		return false, errors.New("wavenet: GPU generator: the one-launch step is not available for this backend, batch or length")
	}
	return ok && (step == GPUStepFused || B <= fusedAutoMaxBatch), nil
}

// graphSteps is the number of samples per graph replay: gpuGraphSteps, or
// the largest power of two dividing the hop when that is smaller (every
// utterance is a whole number of frames, so replays never overrun it).
func (g *GPUGenerator) graphSteps() int {
	n := gpuGraphSteps
	for g.plan.hop%n != 0 {
		n /= 2
	}
	return n
}

// step queues one sample step for st's B slots writing into wave [B][Tmax].
func (g *GPUGenerator) step(st *gpuState, wave compute.View, Tmax int, temp float64) {
	p, m := g.plan, g.mod
	B := st.B
	W, tab := compute.Ptr(compute.V(g.w), g.w.Len()), compute.Ptr(compute.V(g.tab), g.tab.Len())
	layerBlock := layerBlockLarge
	if B <= layerBlockSwitch {
		layerBlock = layerBlockSmall
	}
	if g.force.Buf != nil {
		m.Launch("wg_force", 1, gpuBlock, 0, whole(st.enc), compute.Ptr(g.force, g.force.Buf.Len()-g.force.Off), whole(st.tbuf), compute.Int(B*p.Cin))
	}
	switch st.mode {
	case GPUStepFused:
		g.fusedLaunch(st)
	case GPUStepCluster:
		g.clusterLaunch(st)
	default:
		m.Launch("wg_first", B, gpuBlock, 0, W, tab, whole(st.enc), whole(st.X), whole(st.skip), compute.Int(B))
		for l := 0; l < p.L; l++ {
			m.Launch("wg_layer", B*g.nsl, layerBlock, 4*(p.K*p.R+p.H), W, tab, whole(st.X), whole(st.ring), whole(st.Z), whole(st.skip),
				whole(st.proj), whole(st.tbuf), compute.Int(l), compute.Int(B), compute.Float(p.resScale))
		}
		m.Launch("wg_head1", B*g.nsl, layerBlock, 4*(p.H+p.S), W, tab, whole(st.Z), whole(st.skip), whole(st.A2), compute.Int(B), compute.Float(p.skipNorm))
		m.Launch("wg_head2", B, gpuBlock, 4*p.S, W, tab, whole(st.A2), whole(st.out), compute.Int(B))
	}
	if g.trace.Buf != nil {
		m.Launch("wg_trace", 1, gpuBlock, 0, compute.Ptr(g.trace, g.trace.Buf.Len()-g.trace.Off), whole(st.out), whole(st.tbuf), compute.Int(B*p.O))
	}
	if g.force.Buf == nil {
		g.ds.Sample(compute.V(st.out), B, temp, compute.V(st.rg), compute.V(st.y), compute.V(st.enc))
	}
	m.Launch("wg_advance", 1, gpuBlock, 0, compute.Ptr(wave, B*Tmax), whole(st.y), whole(st.tbuf), compute.Int(B), compute.Int(Tmax))
}

// Generate vocodes every utterance (see Generator.Generate for the output
// convention). opts.Batch utterances run in lockstep per group, longest
// first; Wide and Workers do not apply. An utterance's samples depend only
// on its seed and mel, not on its batch-mates (each has its own RNG stream
// and every product is per utterance), though they are not bit-identical to
// the CPU generator's (different summation order and RNG).
func (g *GPUGenerator) Generate(utts []Utterance, opts GenerateOptions) ([][]float32, error) {
	if g.w == nil {
		return nil, errors.New("wavenet: GPU generator used after Free")
	}
	p := g.plan
	if err := checkUtterances(utts, p.C, p.Cin-p.Qin, 0, p.hop); err != nil {
		return nil, err
	}
	temp, err := opts.temperature()
	if err != nil {
		return nil, err
	}
	outs := make([][]float32, len(utts))
	if len(utts) == 0 {
		return outs, nil
	}
	B := min(max(opts.Batch, 1), len(utts))
	order := make([]int, len(utts))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return len(utts[order[a]].Mel) > len(utts[order[b]].Mel) })
	mode, err := g.stepFor(opts.GPUStep, B, len(utts[order[0]].Mel)/p.C*p.hop)
	if err != nil {
		return nil, err
	}
	st := g.newState(B, mode)
	defer func() { st.free(g.be) }()
	gs := g.graphSteps()
	enc0 := make([]float32, p.Cin)
	p.s.EncodeInput(0, enc0)
	for g0 := 0; g0 < len(order); g0 += B {
		group := order[g0:min(g0+B, len(order))]
		err := g.runGroup(st, utts, group, enc0, gs, temp, opts, outs)
		if errors.Is(err, errNotCoResident) && opts.GPUStep != GPUStepFused {
			// Some SMs are busy elsewhere: the layered kernels from here on.
			st.free(g.be)
			st = g.newState(B, GPUStepLayered)
			err = g.runGroup(st, utts, group, enc0, gs, temp, opts, outs)
		}
		if err != nil {
			return nil, err
		}
	}
	return outs, nil
}

// runGroup generates one lockstep group into outs.
func (g *GPUGenerator) runGroup(st *gpuState, utts []Utterance, group []int, enc0 []float32, gs int, temp float64, opts GenerateOptions, outs [][]float32) error {
	p, be := g.plan, g.be
	C, pad, hop, LG := p.C, p.cfg.CinPad, p.hop, p.L*p.G
	B := st.B
	Ts := make([]int, B)
	Tmax := 0
	for i, u := range group {
		Ts[i] = len(utts[u].Mel) / C * hop
		Tmax = max(Tmax, Ts[i])
	}
	// Conditioning of each utterance, [C][T] (upsampled mel), on the GPU.
	conds := make([]compute.Buffer, len(group))
	defer func() {
		for _, c := range conds {
			if c != nil {
				be.Free(c)
			}
		}
	}()
	for i, u := range group {
		conds[i] = g.condition(utts[u].Mel, pad)
	}
	// Fresh state: zero rings, t = 0, the first input encodes y = 0, and
	// each slot's RNG from its utterance's seed.
	be.Fill(compute.V(st.ring), st.ring.Len(), 0)
	be.Fill(compute.V(st.y), B, 0)
	be.Upload(compute.V(st.tbuf), []float32{0}) // int 0 has the bits of float 0
	if st.fused() {
		be.Fill(compute.V(st.xch), st.xch.Len(), 0) // no word carries a tag yet
		be.Fill(compute.V(st.status), 1, 0)
	}
	enc := make([]float32, B*p.Cin)
	for b := 0; b < B; b++ {
		copy(enc[b*p.Cin:], enc0)
	}
	be.Upload(compute.V(st.enc), enc)
	for i, u := range group {
		g.ds.SeedRNG(compute.V(st.rg).At(2*i), 1, utts[u].Seed)
	}
	wave := be.Alloc(B * Tmax)
	defer be.Free(wave)
	graph, err := g.gc.Capture(func() {
		for range gs {
			g.step(st, compute.V(wave), Tmax, temp)
		}
	})
	if err != nil {
		return fmt.Errorf("wavenet: GPU generator: %w", err)
	}
	defer graph.Free()
	for c0 := 0; c0 < Tmax; c0 += gpuChunk {
		for i := range group {
			rows := min(gpuChunk, Ts[i]-c0)
			if rows <= 0 {
				continue
			}
			// proj (rows x L*G) = cond[:, c0:c0+rows]^T * Wc^T.
			be.Gemm(true, true, rows, LG, C, 1, compute.V(conds[i]).At(c0), Ts[i], compute.V(g.w).At(p.offs.cond), C,
				0, compute.V(st.proj).At(i*gpuChunk*LG), LG)
		}
		n := min(gpuChunk, Tmax-c0)
		for j := 0; j < n; j += gs {
			graph.Launch()
		}
		if opts.Progress != nil {
			be.Sync()
			active := 0
			for _, T := range Ts[:len(group)] {
				active += max(0, min(n, T-c0))
			}
			opts.Progress(active)
		}
	}
	host := make([]float32, B*Tmax)
	be.Download(host, compute.V(wave))
	if st.fused() {
		var status [1]float32
		be.Download(status[:], compute.V(st.status))
		if status[0] != 0 {
			return errNotCoResident
		}
	}
	for i, u := range group {
		y := make([]float32, Ts[i])
		copy(y, host[i*Tmax:i*Tmax+Ts[i]])
		outs[u] = y
		if opts.OnDone != nil {
			opts.OnDone(u, y)
		}
	}
	return nil
}

// condition runs the conditioning network over a whole utterance: mel
// [frames][C] padded with CinPad replicated edge frames each side, then
// conv_in and the upsampler on the GPU, returning [C][frames*hop].
func (g *GPUGenerator) condition(mel []float32, pad int) compute.Buffer {
	p, be := g.plan, g.be
	C := p.C
	F := len(mel) / C
	Fp := F + 2*pad
	melP := padMel(mel, C, pad)
	T := F * p.hop
	melC, convOut, upA := be.Alloc(C*Fp), be.Alloc(C*F), be.Alloc(C*T)
	defer be.Free(melC)
	defer be.Free(convOut)
	defer be.Free(upA)
	cond := be.Alloc(C * T)
	be.Upload(compute.V(melC), melP)
	sl := &slot{melC: compute.V(melC), convOut: compute.V(convOut), upA: compute.V(upA), cond: compute.V(cond)}
	p.upsample(sl, F, Fp)
	return cond
}
