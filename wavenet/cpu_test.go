package wavenet

import (
	"math"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
)

func newCPU(t testing.TB) *cpu.Backend {
	t.Helper()
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// maxRelDiff is max|a-b| / max(max|ref|, floor) over a tensor: float32
// results are compared relative to the tensor's scale, not element by
// element. The floor covers tensors whose true gradient is zero
// (first_conv.weight_v with one input channel: w = g*sign(v), so dv is pure
// cancellation noise of the size of float32 rounding of dw).
func maxRelDiff(got []float32, ref []float64, floor float64) float64 {
	var diff, scale float64
	for i, r := range ref {
		diff = math.Max(diff, math.Abs(float64(got[i])-r))
		scale = math.Max(scale, math.Abs(r))
	}
	return diff / math.Max(scale, floor)
}

// TestCPUMatchesReference runs the same network (weights, inputs, loss
// weighting) on the CPU backend in float32 and on the float64 reference
// backend whose gradients the finite-difference tests verify, and compares
// the output, every parameter gradient and the mel gradient.
func TestCPUMatchesReference(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		B, T int
	}{
		{"scalar_k3_wn", smallConfig(1, 3, true), 2, 48},
		{"onehot_k2_plain", smallConfig(5, 2, false), 3, 36},
		{"tiny_preset", TinyConfig(30, 1, 8), 2, 64},
		// Large enough for the CPU backend's one-pass GemmTerms kernels
		// (the conv taps, conditioning and bias; the taps' input gradient).
		{"tiny_preset_long", TinyConfig(30, 1, 8), 2, 1024},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ref := newGradFixture(t, tc.cfg, tc.B, tc.T, uint64(200+ci))
			ref.analytic()

			be := newCPU(t)
			m, err := New(tc.cfg, be, 1)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.ImportTensors(ref.m.ExportTensors()); err != nil {
				t.Fatal(err)
			}
			ws, err := m.NewWorkspace(tc.B, tc.T)
			if err != nil {
				t.Fatal(err)
			}
			up := func(dst compute.View, src []float64) {
				h := make([]float32, len(src))
				for i, v := range src {
					h[i] = float32(v)
				}
				be.Upload(dst, h)
			}
			nx := tc.B * tc.cfg.InputChannels * tc.T
			nm := tc.B * tc.cfg.CinChannels * (tc.T/tc.cfg.HopSize() + 2*tc.cfg.CinPad)
			no := tc.B * tc.cfg.OutChannels * tc.T
			up(ws.X(), f64(ref.x)[:nx])
			up(ws.Mel(), f64(ref.mel)[:nm])
			out := m.Forward(ws, ws.X(), ws.Mel())
			if e := maxRelDiff(be.Host(out, no), f64(ref.ws.Out())[:no], 1e-3); e > 1e-5 {
				t.Errorf("output: max rel diff %.3g vs float64 reference", e)
			}
			up(ws.DOut(), ref.r)
			dmel := compute.V(be.Alloc(nm))
			m.ZeroGrads()
			m.Backward(ws, ws.DOut(), dmel)
			got := m.ExportGradTensors()
			want := ref.m.ExportGradTensors()
			var gmax float64
			for _, w := range want {
				for _, v := range w.Data {
					gmax = math.Max(gmax, math.Abs(float64(v)))
				}
			}
			for i := range got {
				w64 := make([]float64, len(want[i].Data))
				for j, v := range want[i].Data {
					w64[j] = float64(v)
				}
				if e := maxRelDiff(got[i].Data, w64, 0.01*gmax); e > 1e-4 {
					t.Errorf("grad %s: max rel diff %.3g vs float64 reference", got[i].Name, e)
				}
			}
			if e := maxRelDiff(be.Host(dmel, nm), f64(ref.dmel)[:nm], 1e-3); e > 1e-4 {
				t.Errorf("dmel: max rel diff %.3g vs float64 reference", e)
			}
		})
	}
}

// TestNoAllocPerStep: once the workspace exists, a training step's
// Forward+Backward does not allocate on the Go heap.
func TestNoAllocPerStep(t *testing.T) {
	// The float64 reference backend does not allocate, so any allocation
	// counted here is the model's own.
	be := &refBackend{}
	m, err := New(TinyConfig(3, 1, 8), be, 1)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := m.NewWorkspace(2, 64)
	if err != nil {
		t.Fatal(err)
	}
	step := func() {
		m.Forward(ws, ws.X(), ws.Mel())
		m.Backward(ws, ws.DOut(), compute.View{})
	}
	step()
	if a := testing.AllocsPerRun(3, step); a > 0 {
		t.Errorf("Forward+Backward allocates %.0f times per step, want 0", a)
	}
}
