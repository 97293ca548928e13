package wavenet

import (
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/compute"
)

// benchTrainStep times Forward+Backward (no optimiser) on the CPU backend
// and reports samples/s and GFLOP/s from TrainFLOPs.
func benchTrainStep(b *testing.B, cfg Config, B, T int) {
	be := newCPU(b)
	m, err := New(cfg, be, 1)
	if err != nil {
		b.Fatal(err)
	}
	ws, err := m.NewWorkspace(B, T)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Free()
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(v compute.View, n int) {
		h := make([]float32, n)
		for i := range h {
			h[i] = float32(rng.NormFloat64() * 0.3)
		}
		be.Upload(v, h)
	}
	fill(ws.X(), B*cfg.InputChannels*T)
	fill(ws.Mel(), B*cfg.CinChannels*(T/cfg.HopSize()+2*cfg.CinPad))
	fill(ws.DOut(), B*cfg.OutChannels*T)
	b.Logf("%s; activations %.2f GB", be.Describe(), float64(m.ActivationBytes(B, T))/1e9)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m.Forward(ws, ws.X(), ws.Mel())
		m.Backward(ws, ws.DOut(), compute.View{})
	}
	be.Sync()
	sec := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(float64(B*T)/sec, "samples/s")
	b.ReportMetric(m.TrainFLOPs(B, T)/sec/1e9, "GFLOP/s")
}

// BenchmarkTrainStepReference: the reference config (24 layers, 128/256/128,
// k=3) at batch 1 x 10240, the anchor PyTorch 1.13 CPU number in
// REFERENCE.md is ~1.7 s per step (~6,000 samples/s) on this machine.
func BenchmarkTrainStepReference(b *testing.B) {
	if testing.Short() {
		b.Skip("reference-size training step skipped in -short")
	}
	benchTrainStep(b, ReferenceConfig(30, 1), 1, 10240)
}

func BenchmarkTrainStepTiny(b *testing.B) {
	benchTrainStep(b, TinyConfig(30, 1, 8), 2, 1024)
}
