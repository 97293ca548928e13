package wavenet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/compute"
)

// smallConfig is a very small network for finite-difference checks: every
// tensor kind of the reference architecture, few enough values that each
// loss evaluation is microseconds.
func smallConfig(inputChannels, k int, wn bool) Config {
	return Config{
		Layers: 4, Stacks: 2,
		ResidualChannels: 6, GateChannels: 8, SkipChannels: 5,
		KernelSize:  k,
		CinChannels: 3, CinPad: 1,
		UpsampleScales: []int{2, 3},
		InputChannels:  inputChannels, OutChannels: 3,
		WeightNorm: wn,
	}
}

// f64 exposes a reference-backend buffer's storage.
func f64(v compute.View) []float64 { return v.Buf.(*f64buf).d[v.Off:] }

// gradFixture is a model on the float64 reference backend with random
// parameters (perturbed away from the init so biases are non-zero and
// weight-norm gains differ from ||v||), random inputs and a random output
// weighting R for the loss sum(out * R).
type gradFixture struct {
	m      *Model
	ws     *Workspace
	x, mel compute.View
	dmel   compute.View
	r      []float64
	B, T   int
}

func newGradFixture(t *testing.T, cfg Config, B, T int, seed uint64) *gradFixture {
	t.Helper()
	be := &refBackend{}
	m, err := New(cfg, be, int64(seed))
	if err != nil {
		t.Fatal(err)
	}
	ws, err := m.NewWorkspace(B, T)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	p := f64(m.Params())
	for _, ti := range m.tensors {
		for i := ti.Offset; i < ti.Offset+ti.Size; i++ {
			p[i] += 0.2 * rng.NormFloat64()
		}
	}
	x := f64(ws.X())
	if cfg.InputChannels == 1 {
		for i := range x {
			x[i] = 2*rng.Float64() - 1
		}
	} else {
		for b := 0; b < B; b++ {
			for tt := 0; tt < T; tt++ {
				x[(b*cfg.InputChannels+rng.IntN(cfg.InputChannels))*T+tt] = 1
			}
		}
	}
	mel := f64(ws.Mel())
	for i := range mel {
		mel[i] = rng.NormFloat64()
	}
	f := &gradFixture{m: m, ws: ws, x: ws.X(), mel: ws.Mel(), B: B, T: T}
	f.dmel = compute.V(be.Alloc(len(mel)))
	f.r = make([]float64, B*cfg.OutChannels*T)
	for i := range f.r {
		f.r[i] = rng.NormFloat64()
	}
	return f
}

func (f *gradFixture) loss() float64 {
	out := f64(f.m.Forward(f.ws, f.x, f.mel))
	var s float64
	for i, r := range f.r {
		s += out[i] * r
	}
	return s
}

// analytic runs Forward and Backward with dout = R.
func (f *gradFixture) analytic() {
	f.loss()
	copy(f64(f.ws.DOut()), f.r)
	f.m.ZeroGrads()
	f.m.Backward(f.ws, f.ws.DOut(), f.dmel)
}

// relErr tolerates tiny gradients (float64 FD rounding noise is ~1e-11, so a
// true zero must not count as a mismatch): |a-n| / max(|a|, |n|, 1e-4).
func relErr(a, n float64) float64 {
	return math.Abs(a-n) / math.Max(math.Max(math.Abs(a), math.Abs(n)), 1e-4)
}

const (
	fdStep = 1e-5 // float64 central differences: truncation ~h^2, rounding ~1e-16/h
	fdTol  = 1e-5
)

// checkCoords compares analytic gradients with central differences for the
// coordinates idx of the float64 storage p.
func (f *gradFixture) checkCoords(t *testing.T, what string, p []float64, grad []float64, idx []int) {
	t.Helper()
	for _, i := range idx {
		old := p[i]
		p[i] = old + fdStep
		lp := f.loss()
		p[i] = old - fdStep
		lm := f.loss()
		p[i] = old
		num := (lp - lm) / (2 * fdStep)
		if e := relErr(grad[i], num); e > fdTol {
			t.Errorf("%s[%d]: analytic %.9g, finite difference %.9g (rel err %.2g)", what, i, grad[i], num, e)
		}
	}
}

// sampleIdx picks up to n indices in [off, off+size): both ends and random
// ones in between.
func sampleIdx(rng *rand.Rand, off, size, n int) []int {
	if size <= n {
		idx := make([]int, size)
		for i := range idx {
			idx[i] = off + i
		}
		return idx
	}
	idx := []int{off, off + size - 1}
	for len(idx) < n {
		idx = append(idx, off+rng.IntN(size))
	}
	return idx
}

// TestGradientsWholeModel checks d loss / d (every parameter tensor, the
// mel input) against float64 central differences on small networks with
// scalar and one-hot input, kernel sizes 2 and 3, with and without weight
// norm, and a case where the dilation exceeds T (taps that fall off the
// start are skipped).
func TestGradientsWholeModel(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		B, T int
	}{
		{"scalar_k3_wn", smallConfig(1, 3, true), 2, 24},
		{"onehot_k2_wn", smallConfig(5, 2, true), 2, 18},
		{"scalar_k2_plain", smallConfig(1, 2, false), 1, 12},
		{"onehot_k3_plain", smallConfig(4, 3, false), 2, 12},
		{"deep_dilation_beyond_T", func() Config {
			c := smallConfig(1, 3, true)
			c.Layers, c.Stacks = 6, 1 // dilations up to 32 > T
			c.CinPad = 0
			return c
		}(), 1, 12},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newGradFixture(t, tc.cfg, tc.B, tc.T, uint64(100+ci))
			f.analytic()
			p, g := f64(f.m.Params()), f64(f.m.Grads())
			rng := rand.New(rand.NewPCG(uint64(ci), 3))
			var nonzero int
			for _, ti := range f.m.tensors {
				f.checkCoords(t, ti.Name, p, g, sampleIdx(rng, ti.Offset, ti.Size, 6))
				for i := ti.Offset; i < ti.Offset+ti.Size; i++ {
					if g[i] != 0 {
						nonzero++
						break
					}
				}
			}
			// Only the last layer's conv1x1_out (bias, g, v) may have a zero
			// gradient: its output feeds nothing, as in the reference.
			if want := len(f.m.tensors) - 3; nonzero < want && tc.cfg.WeightNorm {
				t.Errorf("only %d of %d tensors have a non-zero gradient, want >= %d", nonzero, len(f.m.tensors), want)
			}
			melSize := tc.B * tc.cfg.CinChannels * (tc.T/tc.cfg.HopSize() + 2*tc.cfg.CinPad)
			f.checkCoords(t, "mel", f64(f.mel), f64(f.dmel), sampleIdx(rng, 0, melSize, 12))
		})
	}
}

// TestGradientsPerComponentExhaustive checks every coordinate of every
// tensor (not a sample) on the smallest network, so each kernel composition
// (conv_in, stretch + row convs, each dilated tap, conditioning projection,
// gate, residual and skip 1x1s, head, weight norm) is verified in full.
func TestGradientsPerComponentExhaustive(t *testing.T) {
	if testing.Short() {
		t.Skip("exhaustive per-coordinate check skipped in -short")
	}
	cfg := smallConfig(1, 2, true)
	cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels = 3, 4, 3
	f := newGradFixture(t, cfg, 1, 12, 42)
	f.analytic()
	p, g := f64(f.m.Params()), f64(f.m.Grads())
	for _, ti := range f.m.tensors {
		idx := make([]int, ti.Size)
		for i := range idx {
			idx[i] = ti.Offset + i
		}
		f.checkCoords(t, ti.Name, p, g, idx)
	}
	melSize := cfg.CinChannels * (12/cfg.HopSize() + 2*cfg.CinPad)
	all := make([]int, melSize)
	for i := range all {
		all[i] = i
	}
	f.checkCoords(t, "mel", f64(f.mel), f64(f.dmel), all)
}

// TestBackwardAccumulates: two Backward calls without ZeroGrads give twice
// the gradient (the training loop may accumulate micro-batches).
func TestBackwardAccumulates(t *testing.T) {
	f := newGradFixture(t, smallConfig(1, 3, true), 1, 12, 9)
	f.analytic()
	g1 := append([]float64(nil), f64(f.m.Grads())[:f.m.NumParams()]...)
	f.m.Backward(f.ws, f.ws.DOut(), compute.View{})
	g2 := f64(f.m.Grads())
	for i := range g1 {
		if math.Abs(g2[i]-2*g1[i]) > 1e-9*math.Max(1, math.Abs(g1[i])) {
			t.Fatalf("grad[%d]: after two backward passes %g, want 2*%g", i, g2[i], g1[i])
		}
	}
}

// TestCausality perturbs the input at one time step and checks that the
// outputs before it are bit-identical, and that the measured dependency
// span equals ReceptiveField.
func TestCausality(t *testing.T) {
	for _, k := range []int{2, 3} {
		t.Run(fmt.Sprintf("k%d", k), func(t *testing.T) {
			cfg := smallConfig(1, k, true)
			f := newGradFixture(t, cfg, 1, 60, 5)
			rf := cfg.ReceptiveField()
			// Hand-derived: 1 + (k-1) * (1+2+1+2).
			if want := 1 + (k-1)*6; rf != want {
				t.Fatalf("ReceptiveField = %d, want %d", rf, want)
			}
			base := append([]float64(nil), f64(f.m.Forward(f.ws, f.x, f.mel))[:cfg.OutChannels*f.T]...)
			t0 := 20
			f64(f.x)[t0] += 0.5
			out := f64(f.m.Forward(f.ws, f.x, f.mel))
			first, last := -1, -1
			for tt := 0; tt < f.T; tt++ {
				changed := false
				for o := 0; o < cfg.OutChannels; o++ {
					if out[o*f.T+tt] != base[o*f.T+tt] {
						changed = true
					}
				}
				if changed {
					if first < 0 {
						first = tt
					}
					last = tt
				}
			}
			if first != t0 {
				t.Errorf("first output affected by x[%d] is t=%d, want %d (causal, current sample included)", t0, first, t0)
			}
			if span := last - t0 + 1; span != rf {
				t.Errorf("measured dependency span %d, ReceptiveField() %d", span, rf)
			}
		})
	}
}

// TestBackwardReadyRangesAreFinal checks the promise data-parallel training
// relies on: every range BackwardReady reports is already its final
// gradient (a snapshot taken in the callback equals the gradient after the
// whole pass), the ranges cover every parameter exactly once, and the
// last layers come first, so their reduction can start while the rest of
// the backward pass runs.
func TestBackwardReadyRangesAreFinal(t *testing.T) {
	for _, wn := range []bool{true, false} {
		t.Run(fmt.Sprintf("weightnorm=%v", wn), func(t *testing.T) {
			f := newGradFixture(t, smallConfig(1, 3, wn), 2, 24, 9)
			f.loss()
			copy(f64(f.ws.DOut()), f.r)
			f.m.ZeroGrads()
			g := f64(f.m.Grads())
			type snap struct {
				off int
				v   []float64
			}
			var snaps []snap
			seen := make([]int, f.m.NumParams())
			f.m.BackwardReady(f.ws, f.ws.DOut(), f.dmel, func(off, n int) {
				snaps = append(snaps, snap{off, append([]float64(nil), g[off:off+n]...)})
				for i := off; i < off+n; i++ {
					seen[i]++
				}
			})
			for i, c := range seen {
				if c != 1 {
					t.Fatalf("parameter %d reported %d times, want once", i, c)
				}
			}
			for _, s := range snaps {
				for i, v := range s.v {
					if g[s.off+i] != v {
						t.Fatalf("range at %d: gradient %d changed after it was reported ready (%g, then %g)", s.off, s.off+i, v, g[s.off+i])
					}
				}
			}
			// The output convs first, then the layers from the last.
			last, _ := f.m.last1.paramRange()
			if snaps[0].off != last {
				t.Errorf("first ready range starts at %d, want the output convs at %d", snaps[0].off, last)
			}
			l3, _ := f.m.layers[3].conv.paramRange()
			if len(snaps) < 2 || snaps[1].off != l3 {
				t.Errorf("second ready range should be the last layer's (at %d): %v", l3, snaps[1].off)
			}
			// Reporting the ranges changes no gradient: the same bits as
			// Backward, which passes no callback.
			want := append([]float64(nil), g...)
			f.analytic()
			for i := range want {
				if want[i] != g[i] {
					t.Fatalf("gradient %d: BackwardReady %g, Backward %g", i, want[i], g[i])
				}
			}
		})
	}
}
