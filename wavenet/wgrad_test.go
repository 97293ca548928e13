package wavenet

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/compute"
)

// TestBatchedWeightGrads: the batched weight-gradient path (one batched GEMM
// into per-item slices, then their sum; the GPU default) gives the gradients
// of the per-item path (the CPU default) for every parameter, to float32
// rounding, on the CPU backend.
func TestBatchedWeightGrads(t *testing.T) {
	be := newCPU(t)
	cfg := TinyConfig(6, 1, 8)
	m, err := New(cfg, be, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	const B, T = 3, 64
	ws, err := m.NewWorkspace(B, T)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Free()
	rng := rand.New(rand.NewPCG(4, 5))
	fill := func(v compute.View, n int) {
		h := make([]float32, n)
		for i := range h {
			h[i] = float32(rng.NormFloat64())
		}
		be.Upload(v, h)
	}
	fill(ws.X(), B*cfg.InputChannels*T)
	fill(ws.Mel(), B*cfg.CinChannels*cfg.MelFrames(T))
	fill(ws.DOut(), B*cfg.OutChannels*T)
	grads := func(batched bool) []float64 {
		m.SetBatchedWeightGrads(batched)
		m.ZeroGrads()
		m.Forward(ws, ws.X(), ws.Mel())
		m.Backward(ws, ws.DOut(), compute.View{})
		h := make([]float32, m.NumParams())
		be.Download(h, m.Grads())
		out := make([]float64, len(h))
		for i, v := range h {
			out[i] = float64(v)
		}
		return out
	}
	per, bat := grads(false), grads(true)
	scale, worst := 0.0, 0.0
	for i := range per {
		scale = max(scale, math.Abs(per[i]))
		worst = max(worst, math.Abs(per[i]-bat[i]))
	}
	if scale == 0 {
		t.Fatal("all gradients are zero")
	}
	if worst > 1e-5*scale {
		t.Errorf("batched vs per-item weight gradients: max difference %.3g (gradient scale %.3g)", worst, scale)
	}
	if ws.wg == nil {
		t.Error("the batched path did not run (no scratch allocated)")
	}
}
