package wavenet

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/compute"
)

// Model holds the parameters of one WaveNet in a single flat buffer (and
// its gradients in another of the same layout) so the optimiser and EMA are
// one kernel call each.
type Model struct {
	cfg Config
	be  compute.Backend

	tensors []TensorInfo
	byName  map[string]int
	nParams int
	nEff    int

	params, grads compute.Buffer
	// eff holds the weight-normalised effective weights (recomputed every
	// Forward); effGrad their gradients, turned into g/v gradients at the
	// end of Backward.
	eff, effGrad compute.Buffer

	convs  []*conv
	first  *conv
	layers []resLayer
	last1  *conv
	last2  *conv
	convIn *conv
	up     []*conv
}

type resLayer struct {
	dil                   int
	conv, cond, out, skip *conv
}

// New builds a model with r9y9's initialisation from seed.
func New(cfg Config, be compute.Backend, seed int64) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.UpsampleScales = append([]int(nil), cfg.UpsampleScales...)
	m := &Model{cfg: cfg, be: be, byName: map[string]int{}}
	R, G, S := cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels
	wn := cfg.WeightNorm
	mk := func(prefix string, out, in, k int, bias bool, init convInit) *conv {
		c := &conv{prefix: prefix, out: out, in: in, k: k, wn: wn, bias: bias, init: init}
		m.addConv(c)
		return c
	}
	m.first = mk("first_conv", R, cfg.FirstConvInputs(), 1, true, initKaimingNormal)
	for l := 0; l < cfg.Layers; l++ {
		p := fmt.Sprintf("conv_layers.%d.", l)
		m.layers = append(m.layers, resLayer{
			dil:  cfg.Dilation(l),
			conv: mk(p+"conv", G, R, cfg.KernelSize, true, initKaimingNormal),
			cond: mk(p+"conv1x1c", G, cfg.CinChannels, 1, false, initKaimingNormal),
			out:  mk(p+"conv1x1_out", R, G/2, 1, true, initKaimingNormal),
			skip: mk(p+"conv1x1_skip", S, G/2, 1, true, initKaimingNormal),
		})
	}
	m.last1 = mk("last_conv_layers.1", S, S, 1, true, initKaimingNormal)
	m.last2 = mk("last_conv_layers.3", cfg.OutChannels, S, 1, true, initKaimingNormal)
	// conv_in is a plain nn.Conv1d in r9y9 (no weight norm, default init).
	m.convIn = &conv{prefix: "upsample_net.conv_in", out: cfg.CinChannels, in: cfg.CinChannels,
		k: 2*cfg.CinPad + 1, init: initTorchDefault}
	m.addConv(m.convIn)
	for i, s := range cfg.UpsampleScales {
		// Module list is [stretch, conv] per scale, so convs sit at odd indices.
		c := &conv{prefix: fmt.Sprintf("upsample_net.upsample.up_layers.%d", 2*i+1), out: 1, in: 1,
			k: 2*s + 1, row: true, wn: wn, init: initConstant}
		m.addConv(c)
		m.up = append(m.up, c)
	}
	for i, t := range m.tensors {
		m.byName[t.Name] = i
	}
	m.params = be.Alloc(m.nParams)
	m.grads = be.Alloc(m.nParams)
	if m.nEff > 0 {
		m.eff = be.Alloc(m.nEff)
		m.effGrad = be.Alloc(m.nEff)
	}
	be.Upload(compute.V(m.params), m.initParams(seed))
	return m, nil
}

// Config returns the model's configuration.
func (m *Model) Config() Config {
	c := m.cfg
	c.UpsampleScales = append([]int(nil), c.UpsampleScales...)
	return c
}

// Backend is the backend the model's buffers live on.
func (m *Model) Backend() compute.Backend { return m.be }

// NumParams is the number of scalar parameters (the length of Params).
func (m *Model) NumParams() int { return m.nParams }

// Params is the flat parameter buffer (layout: Tensors).
func (m *Model) Params() compute.View { return compute.V(m.params) }

// Grads is the flat gradient buffer, same layout as Params; Backward
// accumulates into it.
func (m *Model) Grads() compute.View { return compute.V(m.grads) }

// ZeroGrads clears the gradient buffer.
func (m *Model) ZeroGrads() { m.be.Fill(compute.V(m.grads), m.nParams, 0) }

// ParamBytes is the device memory the model itself holds: parameters,
// gradients and the effective-weight buffers (optimiser state not included).
func (m *Model) ParamBytes() int64 { return 4 * int64(2*m.nParams+2*m.nEff) }

// Free releases the model's device buffers.
func (m *Model) Free() {
	for _, b := range []compute.Buffer{m.params, m.grads, m.eff, m.effGrad} {
		if b != nil {
			m.be.Free(b)
		}
	}
	m.params, m.grads, m.eff, m.effGrad = nil, nil, nil, nil
}

// w is the weight the forward pass uses; dw where its gradient accumulates.
func (m *Model) w(c *conv) compute.View {
	if c.wn {
		return compute.V(m.eff).At(c.effOff)
	}
	return compute.V(m.params).At(c.wOff)
}

func (m *Model) dw(c *conv) compute.View {
	if c.wn {
		return compute.V(m.effGrad).At(c.effOff)
	}
	return compute.V(m.grads).At(c.wOff)
}

func (m *Model) bias(c *conv) compute.View  { return compute.V(m.params).At(c.bOff) }
func (m *Model) dbias(c *conv) compute.View { return compute.V(m.grads).At(c.bOff) }

// wnDims gives the (groups, out, inner) of a conv's weight for the
// WeightNorm kernels.
func (c *conv) wnDims() (int, int, int) {
	if c.row {
		return 1, 1, c.k
	}
	return c.k, c.out, c.in
}

// applyWeightNorm recomputes every effective weight from (g, v).
func (m *Model) applyWeightNorm() {
	p := compute.V(m.params)
	for _, c := range m.convs {
		if c.wn {
			g, o, in := c.wnDims()
			m.be.WeightNorm(m.w(c), p.At(c.gOff), p.At(c.wOff), g, o, in)
		}
	}
}

// finishConvs turns the effective-weight gradients of convs (whose
// backward is complete) into their g/v gradients and tells ready the
// parameter range they span. The convs of one call are contiguous in the
// flat layout (one layer, or the two output convs), so the range is theirs
// alone.
func (m *Model) finishConvs(ready func(off, n int), convs ...*conv) {
	p, d := compute.V(m.params), compute.V(m.grads)
	lo, hi := m.nParams, 0
	for _, c := range convs {
		if c.wn {
			g, o, in := c.wnDims()
			m.be.WeightNormBackward(d.At(c.gOff), d.At(c.wOff), m.dw(c), p.At(c.gOff), p.At(c.wOff), g, o, in)
		}
		a, b := c.paramRange()
		lo, hi = min(lo, a), max(hi, b)
	}
	if ready != nil && hi > lo {
		ready(lo, hi-lo)
	}
}

// wsSizes lists every buffer a Workspace allocates, in floats; it is the
// single source for both NewWorkspace and ActivationBytes.
type wsSizes struct {
	x, mel, out, dout int
	c0, up, upTmp, c  int // upsampler: conv_in output, stretched stage inputs (all), intermediate stage output, final
	h, pre, z         int // stored per layer: residual input, pre-gate activations, gate output
	skip, a1, a2      int
	skipB             int // every layer's skip bias summed (forward), their gradient (backward)
	dz, dpre, dh, da  int
	dc, dA, dB        int // conditioning gradient, upsampler backward ping-pong
}

func (s wsSizes) total() int64 {
	return int64(s.x + s.mel + s.out + s.dout + s.c0 + s.up + s.upTmp + s.c + s.h + s.pre +
		s.z + s.skip + s.skipB + s.a1 + s.a2 + s.dz + s.dpre + s.dh + s.da + s.dc + s.dA + s.dB)
}

func (cfg Config) sizes(B, T int, train bool) wsSizes {
	R, G, S, C := cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels, cfg.CinChannels
	F := T / cfg.HopSize()
	var s wsSizes
	s.skipB = S
	s.x = B * cfg.FirstConvInputs() * T
	s.mel = B * C * (F + 2*cfg.CinPad)
	s.out = B * cfg.OutChannels * T
	s.dout = s.out
	s.c0 = B * C * F
	n := F
	maxIn := F // largest input of any upsample stage (for the backward ping-pong)
	for i, sc := range cfg.UpsampleScales {
		if n > maxIn {
			maxIn = n
		}
		n *= sc
		s.up += B * C * n
		if i < len(cfg.UpsampleScales)-1 && B*C*n > s.upTmp {
			s.upTmp = B * C * n
		}
	}
	s.c = B * C * T
	if !train {
		// Forward only: ping-pong residual buffers, one pre/z, no gradients.
		s.dout = 0
		s.h = 2 * B * R * T
		s.pre = B * G * T
		s.z = B * G / 2 * T
		s.skip, s.a1, s.a2 = B*S*T, B*S*T, B*S*T
		return s
	}
	s.h = cfg.Layers * B * R * T
	s.pre = cfg.Layers * B * G * T
	s.z = cfg.Layers * B * G / 2 * T
	s.skip = B * S * T
	s.a1 = B * S * T
	s.a2 = B * S * T
	s.dz = B * G / 2 * T
	s.dpre = B * G * T
	s.dh = B * R * T
	s.da = B * S * T
	s.dc = B * C * T
	s.dA = B * C * T
	s.dB = B * C * maxIn
	return s
}

// ActivationBytes is the device memory a Workspace for (batch, T) holds:
// inputs, output and its gradient, the stored activations backward needs
// (per layer the residual input h, the pre-gate activations and the gate
// output z; the skip sum, residual outputs and gradients live in shared
// scratch) and the backward scratch. For the reference config at 8 x 10240
// this is about 4.6 GB, dominated by h, pre and z (24 layers x 512 channels
// x 81920 samples x 4 bytes = 4.0 GB). Storing z rather than recomputing it
// in backward costs 1 GB there and saves a tanh/sigmoid pass per layer.
func (cfg Config) ActivationBytes(batch, T int) int64 {
	return 4 * cfg.sizes(batch, T, true).total()
}

// InferenceBytes is the device memory of a forward-only workspace
// (NewInferenceWorkspace): activations of two layers at a time instead of
// all of them (reference config: 1.1 GB per 10 s of 22 kHz audio at batch
// 1, against 12 GB for a training workspace).
func (cfg Config) InferenceBytes(batch, T int) int64 {
	return 4 * cfg.sizes(batch, T, false).total()
}

// ActivationBytes is Config.ActivationBytes for the model's config.
func (m *Model) ActivationBytes(batch, T int) int64 { return m.cfg.ActivationBytes(batch, T) }

// Workspace holds every activation buffer for one (B, T), allocated once
// and reused by each Forward/Backward so training steps do not allocate.
type Workspace struct {
	B, T, F int
	be      compute.Backend
	train   bool // false: forward-only, per-layer buffers are reused
	bufs    []compute.Buffer

	xIn, melIn, out, dout compute.Buffer
	c0, up, upTmp, c      compute.Buffer
	h, pre                compute.Buffer
	z, skip, a1, a2       compute.Buffer
	skipB                 compute.Buffer
	dz, dpre, dh, da      compute.Buffer
	dc, dA, dB            compute.Buffer

	// Inputs of the last Forward, kept for Backward.
	x, mel compute.View
	ready  bool
	// Upsampler stage geometry: input length of stage i (upLen[nst] = T)
	// and offset of its stretched input in up.
	upLen, upOff []int
	// terms is the scratch list of a layer's GemmTerms (reused: a step
	// allocates nothing).
	terms []compute.GemmTerm
	grads []compute.GradTerm
}

// NewWorkspace allocates the buffers for training on batch B and T
// samples; T must be a multiple of the hop size (the mel then has
// T/hop + 2*cin_pad frames).
func (m *Model) NewWorkspace(B, T int) (*Workspace, error) { return m.newWorkspace(B, T, true) }

// NewInferenceWorkspace allocates a forward-only workspace (teacher-forced
// evaluation of long utterances): Backward panics on it, and it needs
// InferenceBytes instead of ActivationBytes. DOut is not allocated.
func (m *Model) NewInferenceWorkspace(B, T int) (*Workspace, error) {
	return m.newWorkspace(B, T, false)
}

func (m *Model) newWorkspace(B, T int, train bool) (*Workspace, error) {
	hop := m.cfg.HopSize()
	if B <= 0 || T <= 0 {
		return nil, fmt.Errorf("wavenet: workspace: batch (%d) and T (%d) must be positive", B, T)
	}
	if T%hop != 0 {
		return nil, fmt.Errorf("wavenet: workspace: T=%d is not a multiple of the hop size %d", T, hop)
	}
	s := m.cfg.sizes(B, T, train)
	ws := &Workspace{B: B, T: T, F: T / hop, be: m.be, train: train}
	alloc := func(n int) compute.Buffer {
		if n == 0 {
			return nil // unused in this mode (or a single upsample stage's upTmp)
		}
		b := m.be.Alloc(n)
		ws.bufs = append(ws.bufs, b)
		return b
	}
	ws.xIn, ws.melIn, ws.out, ws.dout = alloc(s.x), alloc(s.mel), alloc(s.out), alloc(s.dout)
	ws.c0, ws.up, ws.upTmp, ws.c = alloc(s.c0), alloc(s.up), alloc(s.upTmp), alloc(s.c)
	ws.h, ws.pre = alloc(s.h), alloc(s.pre)
	ws.z, ws.skip, ws.a1, ws.a2 = alloc(s.z), alloc(s.skip), alloc(s.a1), alloc(s.a2)
	ws.skipB = alloc(s.skipB)
	ws.dz, ws.dpre, ws.dh, ws.da = alloc(s.dz), alloc(s.dpre), alloc(s.dh), alloc(s.da)
	ws.dc, ws.dA, ws.dB = alloc(s.dc), alloc(s.dA), alloc(s.dB)
	nst := len(m.cfg.UpsampleScales)
	ws.upLen, ws.upOff = make([]int, nst+1), make([]int, nst)
	ws.upLen[0] = ws.F
	off := 0
	for i, sc := range m.cfg.UpsampleScales {
		ws.upLen[i+1] = ws.upLen[i] * sc
		ws.upOff[i] = off
		off += B * m.cfg.CinChannels * ws.upLen[i+1]
	}
	return ws, nil
}

// Free releases the workspace's buffers.
func (ws *Workspace) Free() {
	for _, b := range ws.bufs {
		ws.be.Free(b)
	}
	ws.bufs = nil
}

// X is a workspace-owned input buffer [B][FirstConvInputs][T] to upload the
// network input into (any other view of that size works too).
func (ws *Workspace) X() compute.View { return compute.V(ws.xIn) }

// Mel is a workspace-owned input buffer [B][CinChannels][T/hop + 2*CinPad].
func (ws *Workspace) Mel() compute.View { return compute.V(ws.melIn) }

// Out is the output of the last Forward, [B][OutChannels][T].
func (ws *Workspace) Out() compute.View { return compute.V(ws.out) }

// DOut is a workspace-owned buffer [B][OutChannels][T] for the loss
// gradient that Backward takes.
func (ws *Workspace) DOut() compute.View { return compute.V(ws.dout) }

// Forward runs the network on x [B][FirstConvInputs][T] (the waveform input,
// already shifted so out[t] predicts sample t+1 or t as the caller wants,
// then the excitation channels if the config has them) and
// mel [B][CinChannels][T/hop + 2*CinPad]. It returns the output view
// [B][OutChannels][T] (ws.Out()) and keeps what Backward needs; x and mel
// must stay unchanged until Backward.
func (m *Model) Forward(ws *Workspace, x, mel compute.View) compute.View {
	be, cfg := m.be, m.cfg
	B, T := ws.B, ws.T
	R, G, S, C := cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels, cfg.CinChannels
	H := G / 2
	In := cfg.FirstConvInputs()
	x.Check(B*In*T, "wavenet forward x")
	mel.Check(B*C*(ws.F+2*cfg.CinPad), "wavenet forward mel")
	ws.x, ws.mel, ws.ready = x, mel, true

	m.applyWeightNorm()
	m.upsampleForward(ws)
	c := compute.V(ws.c)

	h := compute.V(ws.h)
	pre := compute.V(ws.pre)
	hStride, preStride := B*R*T, B*G*T
	// First 1x1 conv: h0 = W x + b.
	be.GemmStridedBatched(false, false, R, T, In, 1, m.w(m.first), In, 0,
		x, T, In*T, 0, h, T, R*T, B)
	be.AddBias(h, m.bias(m.first), B, R, T)

	zAll, skip := compute.V(ws.z), compute.V(ws.skip)
	// Training keeps every layer's h, pre and z; forward-only reuses one
	// pre/z and alternates two h buffers.
	slot := func(l int) (hs, ps int) {
		if ws.train {
			return l, l
		}
		return l % 2, 0
	}
	for l, ly := range m.layers {
		hs, ps := slot(l)
		hl := h.At(hs * hStride)
		pl := pre.At(ps * preStride)
		z := zAll.At(ps * B * H * T)
		if gt, ok := be.(compute.GemmTermser); ok {
			// The taps, the conditioning and the bias in one pass over pre.
			for b := 0; b < B; b++ {
				ws.terms = m.convTerms(ws.terms[:0], ly.conv, ly.dil, false, hl.At(b*R*T), T)
				ws.terms = append(ws.terms, compute.GemmTerm{A: m.w(ly.cond), LDA: C, K: C, B: c.At(b * C * T), LDB: T})
				gt.GemmTerms(G, T, ws.terms, m.bias(ly.conv), 0, pl.At(b*G*T), T)
			}
		} else {
			m.causalConv(ws, ly.conv, ly.dil, hl, pl, B, T)
			be.AddBias(pl, m.bias(ly.conv), B, G, T)
			be.GemmStridedBatched(false, false, G, T, C, 1, m.w(ly.cond), C, 0, c, T, C*T, 1, pl, T, G*T, B)
		}
		be.GatedTanhSigmoid(z, pl, B, H*T)
		beta := float32(1)
		if l == 0 {
			beta = 0
		}
		be.GemmStridedBatched(false, false, S, T, H, 1, m.w(ly.skip), H, 0, z, T, H*T, beta, skip, T, S*T, B)
		// The last layer's residual output feeds nothing (r9y9 computes and
		// drops it), so it is skipped; its conv1x1_out gets zero gradient,
		// exactly as in the reference.
		if l < len(m.layers)-1 {
			hsNext, _ := slot(l + 1)
			hn := h.At(hsNext * hStride)
			be.GemmStridedBatched(false, false, R, T, H, 1, m.w(ly.out), H, 0, z, T, H*T, 0, hn, T, R*T, B)
			be.AddBias(hn, m.bias(ly.out), B, R, T)
			be.AddScaled(hn, hn, hl, B*R*T, float32(math.Sqrt(0.5)))
		}
	}
	// The skip biases, summed first and added once: one pass over the
	// B x S x T skip sum instead of one per layer.
	sb := compute.V(ws.skipB)
	be.Fill(sb, S, 0)
	for _, ly := range m.layers {
		be.AddScaled(sb, sb, m.bias(ly.skip), S, 1)
	}
	be.AddBias(skip, sb, B, S, T)
	// Head: ReLU(skip * sqrt(1/L)), 1x1, ReLU, 1x1.
	a1, a2, out := compute.V(ws.a1), compute.V(ws.a2), compute.V(ws.out)
	n := B * S * T
	be.ReLU(a1, skip, n)
	be.Scale(a1, n, float32(math.Sqrt(1/float64(cfg.Layers))))
	be.GemmStridedBatched(false, false, S, T, S, 1, m.w(m.last1), S, 0, a1, T, S*T, 0, a2, T, S*T, B)
	be.AddBias(a2, m.bias(m.last1), B, S, T)
	be.ReLU(a2, a2, n)
	O := cfg.OutChannels
	be.GemmStridedBatched(false, false, O, T, S, 1, m.w(m.last2), S, 0, a2, T, S*T, 0, out, T, O*T, B)
	be.AddBias(out, m.bias(m.last2), B, O, T)
	return out
}

// convTerms appends to terms a dilated conv's taps as GemmTerms over x
// (one batch item, rows T apart): W_k times x shifted right by (K-1-k)*d
// for the forward pass, W_k^T times x shifted left by as much for the
// input gradient (transpose). Taps entirely before the start are left
// out.
func (m *Model) convTerms(terms []compute.GemmTerm, c *conv, d int, transpose bool, x compute.View, T int) []compute.GemmTerm {
	w := m.w(c)
	K, O, I := c.k, c.out, c.in
	for k := K - 1; k >= 0; k-- {
		s := (K - 1 - k) * d
		if s >= T {
			continue
		}
		t := compute.GemmTerm{A: w.At(k * O * I), LDA: I, K: I, B: x, LDB: T, Shift: s}
		if transpose {
			t.TransA, t.K, t.Shift = true, O, -s
		}
		terms = append(terms, t)
	}
	return terms
}

// convGrads appends to grads a dilated conv's tap weight gradients over
// its input x (one batch item, rows T apart) as GradTerms: dW_k += dy x_s^T
// with x shifted right by (K-1-k)*d. Taps entirely before the start are
// left out.
func (m *Model) convGrads(grads []compute.GradTerm, c *conv, d int, x compute.View, T int) []compute.GradTerm {
	dw := m.dw(c)
	K, O, I := c.k, c.out, c.in
	for k := 0; k < K; k++ {
		if s := (K - 1 - k) * d; s < T {
			grads = append(grads, compute.GradTerm{B: x, LDB: T, N: I, Shift: s, C: dw.At(k * O * I), LDC: I})
		}
	}
	return grads
}

// causalConv writes y = sum_k W_k x shifted by (K-1-k)*d: y[:, t] uses
// x[:, t-(K-1-k)*d] (zero before the start), as a GEMM per tap (convTerms)
// on column-shifted views, batched over the B items. The unshifted tap
// comes first and overwrites y.
func (m *Model) causalConv(ws *Workspace, c *conv, d int, x, y compute.View, B, T int) {
	O, I := c.out, c.in
	ws.terms = m.convTerms(ws.terms[:0], c, d, false, x, T)
	for i, t := range ws.terms {
		beta := float32(1)
		if i == 0 {
			beta = 0
		}
		s := t.Shift
		m.be.GemmStridedBatched(false, false, O, T-s, I, 1, t.A, I, 0, x, T, I*T, beta, y.At(s), T, O*T, B)
	}
}

// upsampleForward computes the conditioning ws.c [B][cin][T] from ws.mel.
func (m *Model) upsampleForward(ws *Workspace) { m.upsampleInto(ws, compute.V(ws.c)) }

// upsampleInto runs the upsampler on ws.mel using ws.c0, ws.up and
// ws.upTmp as scratch, writing the result to out.
func (m *Model) upsampleInto(ws *Workspace, out compute.View) {
	be, cfg := m.be, m.cfg
	B, F, C := ws.B, ws.F, cfg.CinChannels
	Fp := F + 2*cfg.CinPad
	c0 := compute.V(ws.c0)
	// conv_in: valid cross-correlation, c0[:, t] = sum_k W_k mel[:, t+k].
	w := m.w(m.convIn)
	for k := 0; k < m.convIn.k; k++ {
		beta := float32(1)
		if k == 0 {
			beta = 0
		}
		be.GemmStridedBatched(false, false, C, F, C, 1, w.At(k*C*C), C, 0, ws.mel.At(k), Fp, C*Fp, beta, c0, F, C*F, B)
	}
	src, n, off := c0, F, 0
	for i, sc := range cfg.UpsampleScales {
		str := compute.V(ws.up).At(off)
		be.Stretch(str, src, B*C, n, sc)
		n *= sc
		off += B * C * n
		dst := compute.V(ws.upTmp)
		if i == len(cfg.UpsampleScales)-1 {
			dst = out
		}
		be.RowConvSame(dst, str, m.w(m.up[i]), B*C, n, m.up[i].k)
		src = dst
	}
}

// Backward accumulates into Grads the gradient of a loss whose gradient
// with respect to the last Forward's output is dout [B][OutChannels][T].
// When dmel.Buf is non-nil it also overwrites dmel [B][cin][frames+2*pad]
// with the loss gradient with respect to the mel input.
func (m *Model) Backward(ws *Workspace, dout, dmel compute.View) {
	m.BackwardReady(ws, dout, dmel, nil)
}

// BackwardReady is Backward that also calls ready(off, n) for each range
// of the gradient buffer as soon as the backward pass is done with it
// (nothing queued later writes it), last layers first: a data-parallel
// trainer starts summing those gradients over the ranks while the rest of
// the backward pass runs. The ranges are disjoint and together cover every
// parameter; ready runs on the calling goroutine, after the range's work is
// queued on the backend (not necessarily finished on a GPU).
func (m *Model) BackwardReady(ws *Workspace, dout, dmel compute.View, ready func(off, n int)) {
	if !ws.train {
		panic("wavenet: Backward called on a forward-only workspace (NewInferenceWorkspace)")
	}
	if !ws.ready {
		panic("wavenet: Backward called before Forward on this workspace")
	}
	be, cfg := m.be, m.cfg
	B, T := ws.B, ws.T
	R, G, S, C, O := cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels, cfg.CinChannels, cfg.OutChannels
	H := G / 2
	L := cfg.Layers
	dout.Check(B*O*T, "wavenet backward dout")
	if m.effGrad != nil {
		be.Fill(compute.V(m.effGrad), m.nEff, 0)
	}

	// Head.
	a1, a2, da := compute.V(ws.a1), compute.V(ws.a2), compute.V(ws.da)
	n := B * S * T
	m.weightGrad(m.last2, dout, a2, O, S, T, B)
	be.BiasGrad(m.dbias(m.last2), dout, B, O, T)
	be.GemmStridedBatched(true, false, S, T, O, 1, m.w(m.last2), S, 0, dout, T, O*T, 0, da, T, S*T, B)
	be.ReLUBackward(da, da, a2, n)
	m.weightGrad(m.last1, da, a1, S, S, T, B)
	be.BiasGrad(m.dbias(m.last1), da, B, S, T)
	dskip := compute.V(ws.skip) // the skip sum is not needed any more
	be.GemmStridedBatched(true, false, S, T, S, 1, m.w(m.last1), S, 0, da, T, S*T, 0, dskip, T, S*T, B)
	m.finishConvs(ready, m.last1, m.last2)
	be.ReLUBackward(dskip, dskip, a1, n)
	be.Scale(dskip, n, float32(math.Sqrt(1/float64(L))))
	// Every layer's skip bias gets the same gradient, the sum of dskip over
	// batch and time: reduced once, added to each.
	dsb := compute.V(ws.skipB)
	be.Fill(dsb, S, 0)
	be.BiasGrad(dsb, dskip, B, S, T)

	// Residual stack, last layer first. dh holds the gradient w.r.t. the
	// current layer's output and becomes the gradient w.r.t. its input.
	h, pre := compute.V(ws.h), compute.V(ws.pre)
	zAll, dz, dpre, dh, dc := compute.V(ws.z), compute.V(ws.dz), compute.V(ws.dpre), compute.V(ws.dh), compute.V(ws.dc)
	c := compute.V(ws.c)
	be.Fill(dh, B*R*T, 0)
	be.Fill(dc, B*C*T, 0)
	r := float32(math.Sqrt(0.5))
	for l := L - 1; l >= 0; l-- {
		ly := m.layers[l]
		hl := h.At(l * B * R * T)
		pl := pre.At(l * B * G * T)
		z := zAll.At(l * B * H * T)
		be.GemmStridedBatched(true, false, H, T, S, 1, m.w(ly.skip), H, 0, dskip, T, S*T, 0, dz, T, H*T, B)
		m.weightGrad(ly.skip, dskip, z, S, H, T, B)
		be.AddScaled(m.dbias(ly.skip), m.dbias(ly.skip), dsb, S, 1)
		if l < L-1 {
			// out = (W z + b + h) * r: the same r*dout flows to both.
			be.Scale(dh, B*R*T, r)
			be.GemmStridedBatched(true, false, H, T, R, 1, m.w(ly.out), H, 0, dh, T, R*T, 1, dz, T, H*T, B)
			m.weightGrad(ly.out, dh, z, R, H, T, B)
			be.BiasGrad(m.dbias(ly.out), dh, B, R, T)
		}
		be.GatedTanhSigmoidBackward(dpre, dz, pl, B, H*T)
		be.BiasGrad(m.dbias(ly.conv), dpre, B, G, T)
		be.GemmStridedBatched(true, false, C, T, G, 1, m.w(ly.cond), C, 0, dpre, T, G*T, 1, dc, T, C*T, B)
		// Dilated conv taps: dW_k += dpre[:, s:] x[:, :T-s]^T, dx[:, :T-s] += W_k^T dpre[:, s:].
		if gg, ok := be.(compute.GemmTermsGrader); ok {
			// The taps' and the conditioning's weight gradients in one
			// pass over dpre.
			for b := 0; b < B; b++ {
				ws.grads = m.convGrads(ws.grads[:0], ly.conv, ly.dil, hl.At(b*R*T), T)
				ws.grads = append(ws.grads, compute.GradTerm{B: c.At(b * C * T), LDB: T, N: C, C: m.dw(ly.cond), LDC: C})
				gg.GemmTermsGrad(G, T, dpre.At(b*G*T), T, ws.grads)
			}
		} else {
			m.weightGrad(ly.cond, dpre, c, G, C, T, B)
			ws.grads = m.convGrads(ws.grads[:0], ly.conv, ly.dil, hl, T)
			for _, t := range ws.grads {
				s := t.Shift
				m.wgrad(t.C, G, R, T-s, dpre.At(s), T, G*T, t.B, T, R*T, B)
			}
		}
		if gt, ok := be.(compute.GemmTermser); ok { // the taps' input gradients in one pass over dh
			for b := 0; b < B; b++ {
				ws.terms = m.convTerms(ws.terms[:0], ly.conv, ly.dil, true, dpre.At(b*G*T), T)
				gt.GemmTerms(R, T, ws.terms, compute.View{}, 1, dh.At(b*R*T), T)
			}
		} else {
			ws.terms = m.convTerms(ws.terms[:0], ly.conv, ly.dil, true, dpre, T)
			for _, t := range ws.terms {
				s := -t.Shift
				be.GemmStridedBatched(true, false, R, T-s, G, 1, t.A, R, 0, dpre.At(s), T, G*T, 1, dh, T, R*T, B)
			}
		}
		m.finishConvs(ready, ly.conv, ly.cond, ly.out, ly.skip)
	}
	// First conv (no gradient w.r.t. the network input).
	m.weightGrad(m.first, dh, ws.x, R, cfg.FirstConvInputs(), T, B)
	be.BiasGrad(m.dbias(m.first), dh, B, R, T)
	m.finishConvs(ready, m.first)

	m.upsampleBackward(ws, dmel)
	m.finishConvs(ready, m.convIn)
	for _, c := range m.up {
		m.finishConvs(ready, c)
	}
}

// weightGrad accumulates dW (out x in, row-major) += sum_b dy_b x_b^T over
// [B][out][T] and [B][in][T] activations.
func (m *Model) weightGrad(c *conv, dy, x compute.View, out, in, T, B int) {
	m.wgrad(m.dw(c), out, in, T, dy, T, out*T, x, T, in*T, B)
}

// wgrad accumulates dw (out x in) += sum_b dy_b (out x K, leading dimension
// ldy, item stride sy) times x_b^T (x_b is in x K, ldx, sx): one GemmSum,
// which the GPU backend splits along K (a single GEMM with a 256x128
// output and K = 10240 keeps only a few SMs busy).
func (m *Model) wgrad(dw compute.View, out, in, K int, dy compute.View, ldy, sy int, x compute.View, ldx, sx, B int) {
	m.be.GemmSum(false, true, out, in, K, 1, dy, ldy, sy, x, ldx, sx, 1, dw, in, B)
}

// upsampleBackward propagates ws.dc through the upsampler to its weights,
// conv_in and optionally dmel.
func (m *Model) upsampleBackward(ws *Workspace, dmel compute.View) {
	be, cfg := m.be, m.cfg
	B, F, C := ws.B, ws.F, cfg.CinChannels
	Fp := F + 2*cfg.CinPad
	nst := len(cfg.UpsampleScales)
	lens, offs := ws.upLen, ws.upOff
	dA, dB := compute.V(ws.dA), compute.V(ws.dB)
	dy := compute.V(ws.dc)
	for i := nst - 1; i >= 0; i-- {
		str := compute.V(ws.up).At(offs[i])
		be.RowConvSameBackward(dA, m.dw(m.up[i]), dy, str, m.w(m.up[i]), B*C, lens[i+1], m.up[i].k)
		be.StretchBackward(dB, dA, B*C, lens[i], cfg.UpsampleScales[i])
		dy = dB
	}
	// conv_in: dW_k += dc0 mel[:, k:k+F]^T; dmel[:, k:k+F] += W_k^T dc0.
	dw, w := m.dw(m.convIn), m.w(m.convIn)
	for k := 0; k < m.convIn.k; k++ {
		m.wgrad(dw.At(k*C*C), C, C, F, dy, F, C*F, ws.mel.At(k), Fp, C*Fp, B)
	}
	if dmel.Buf != nil {
		dmel.Check(B*C*Fp, "wavenet backward dmel")
		be.Fill(dmel, B*C*Fp, 0)
		for k := 0; k < m.convIn.k; k++ {
			be.GemmStridedBatched(true, false, C, F, C, 1, w.At(k*C*C), C, 0, dy, F, C*F, 1, dmel.At(k), Fp, C*Fp, B)
		}
	}
}

// TrainFLOPs estimates the floating-point operations of one training step
// (Forward + Backward) on batch x T samples: GEMM multiply-adds count 2,
// backward GEMMs are twice the forward ones (input and weight gradients);
// elementwise work and the upsampler's row convolutions are small and
// counted roughly.
func (cfg Config) TrainFLOPs(batch, T int) float64 {
	R, G, S, C := float64(cfg.ResidualChannels), float64(cfg.GateChannels), float64(cfg.SkipChannels), float64(cfg.CinChannels)
	H := G / 2
	L := float64(cfg.Layers)
	perSample := 2 * R * float64(cfg.FirstConvInputs())
	perSample += L * 2 * (G*R*float64(cfg.KernelSize) + G*C + S*H)
	perSample += (L - 1) * 2 * R * H
	perSample += 2*S*S + 2*float64(cfg.OutChannels)*S
	// conv_in runs once per frame.
	perSample += 2 * C * C * float64(2*cfg.CinPad+1) / float64(cfg.HopSize())
	fwd := perSample * float64(batch) * float64(T)
	up := 0.0
	n := float64(batch) * C * float64(T) / float64(cfg.HopSize())
	for _, s := range cfg.UpsampleScales {
		n *= float64(s)
		up += 2 * n * float64(2*s+1)
	}
	return 3 * (fwd + up)
}

// TrainFLOPs is Config.TrainFLOPs for the model's config.
func (m *Model) TrainFLOPs(batch, T int) float64 { return m.cfg.TrainFLOPs(batch, T) }

// ExportInference returns the parameters with weight norm folded in, in
// PyTorch layout and state_dict order: what r9y9's state_dict looks like
// after remove_weight_norm (one "<conv>.weight" per conv, biases as they
// are). Incremental synthesis uses these effective weights.
func (m *Model) ExportInference() []Tensor {
	m.applyWeightNorm()
	host := make([]float32, m.nParams)
	m.be.Download(host, compute.V(m.params))
	var eff []float32
	if m.nEff > 0 {
		eff = make([]float32, m.nEff)
		m.be.Download(eff, compute.V(m.eff))
	}
	var out []Tensor
	for _, c := range m.convs {
		shape := []int{c.out, c.in, c.k}
		if c.row {
			shape = []int{1, 1, 1, c.k}
		}
		info := TensorInfo{Name: c.prefix + ".weight", Shape: shape, Size: c.wLen(), TapMajor: !c.row && c.k > 1}
		src := host[c.wOff : c.wOff+c.wLen()]
		if c.wn {
			src = eff[c.effOff : c.effOff+c.wLen()]
		}
		if c.bias {
			out = append(out, Tensor{Name: c.prefix + ".bias", Shape: []int{c.out}, Data: append([]float32(nil), host[c.bOff:c.bOff+c.out]...)})
		}
		out = append(out, Tensor{Name: info.Name, Shape: shape, Data: toTorch(info, src)})
	}
	return out
}

// Conditioning runs only the upsampler: mel [B][cin][frames + 2*cin_pad]
// to dst [B][cin][frames*hop]. It allocates (and frees) its own scratch, so
// it suits synthesis, which conditions a whole utterance once.
func (m *Model) Conditioning(mel compute.View, B, frames int, dst compute.View) {
	cfg := m.cfg
	C := cfg.CinChannels
	T := frames * cfg.HopSize()
	mel.Check(B*C*(frames+2*cfg.CinPad), "wavenet conditioning mel")
	dst.Check(B*C*T, "wavenet conditioning dst")
	m.applyWeightNorm()
	s := cfg.sizes(B, T, false)
	ws := &Workspace{B: B, T: T, F: frames, mel: mel}
	ws.c0, ws.up, ws.upTmp = m.be.Alloc(max(s.c0, 1)), m.be.Alloc(max(s.up, 1)), m.be.Alloc(max(s.upTmp, 1))
	m.upsampleInto(ws, dst)
	m.be.Free(ws.c0)
	m.be.Free(ws.up)
	m.be.Free(ws.upTmp)
}
