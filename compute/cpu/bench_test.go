package cpu

import (
	"fmt"
	"testing"

	"github.com/wavecat/wavecat/compute"
)

// BenchmarkSgemm reports GFLOP/s (2*m*n*k per op) for both GEMM paths on
// square sizes and on the WaveNet's shapes: the gate conv tap
// (256x128)*(128x10240), the 1x1 convs (128x128)*(128x10240) and the weight
// gradient (256x10240)*(10240x128)^T.
func BenchmarkSgemm(b *testing.B) {
	type shape struct {
		name           string
		tA, tB         bool
		m, n, k        int
		short, squared bool
	}
	shapes := []shape{
		{name: "n=512", m: 512, n: 512, k: 512},
		{name: "n=1024", m: 1024, n: 1024, k: 1024},
		{name: "n=2048", m: 2048, n: 2048, k: 2048},
		{name: "gate_256x128x10240", m: 256, n: 10240, k: 128},
		{name: "1x1_128x128x10240", m: 128, n: 10240, k: 128},
		{name: "wgrad_256x10240x128T", tB: true, m: 256, n: 128, k: 10240},
		{name: "gemv_256x128x1", m: 256, n: 1, k: 128},
	}
	for _, path := range []string{"openblas", "gonum"} {
		be, err := New(Options{BLAS: path})
		if err != nil {
			b.Logf("skipping %s: %v", path, err)
			continue
		}
		for _, s := range shapes {
			b.Run(fmt.Sprintf("%s/%s", path, s.name), func(b *testing.B) {
				ar, ac := s.m, s.k
				if s.tA {
					ar, ac = ac, ar
				}
				br, bc := s.k, s.n
				if s.tB {
					br, bc = bc, br
				}
				a, bb, c := be.Alloc(ar*ac), be.Alloc(br*bc), be.Alloc(s.m*s.n)
				fill(be, a)
				fill(be, bb)
				b.ResetTimer()
				for b.Loop() {
					be.Gemm(s.tA, s.tB, s.m, s.n, s.k, 1, compute.V(a), ac, compute.V(bb), bc, 0, compute.V(c), s.n)
				}
				b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

func fill(be *Backend, buf compute.Buffer) {
	h := be.Host(compute.V(buf), buf.Len())
	for i := range h {
		h[i] = float32(i%17)/17 - 0.5
	}
}

// BenchmarkKernels times the elementwise kernels on one training layer's
// activations (batch 1 x 256 gate channels x 10240 samples).
func BenchmarkKernels(b *testing.B) {
	be, err := New(Options{})
	if err != nil {
		b.Fatal(err)
	}
	const n = 128 * 10240
	pre, z, dz, dpre := be.Alloc(2*n), be.Alloc(n), be.Alloc(n), be.Alloc(2*n)
	fill(be, pre)
	fill(be, dz)
	p, g, m, v := be.Alloc(n), be.Alloc(n), be.Alloc(n), be.Alloc(n)
	fill(be, g)
	bench := func(name string, bytes int, f func()) {
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(bytes))
			b.ReportAllocs()
			for b.Loop() {
				f()
			}
		})
	}
	bench("GatedTanhSigmoid", 12*n, func() { be.GatedTanhSigmoid(compute.V(z), compute.V(pre), 1, n) })
	bench("GatedTanhSigmoidBackward", 20*n, func() { be.GatedTanhSigmoidBackward(compute.V(dpre), compute.V(dz), compute.V(pre), 1, n) })
	bench("AddScaled", 12*n, func() { be.AddScaled(compute.V(z), compute.V(dz), compute.V(z), n, 0.7) })
	bench("Adam", 28*n, func() {
		be.Adam(compute.V(p), compute.V(g), compute.V(m), compute.V(v), n, compute.AdamParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 10})
	})
	bench("SumSquares", 4*n, func() { be.SumSquares(compute.V(g), n) })
	bench("RowConvSame_80x2560x9", 8*80*2560, func() { be.RowConvSame(compute.V(z), compute.V(pre), compute.V(g), 80, 2560, 9) })
	bench("Scale_small_1000", 8*1000, func() { be.Scale(compute.V(z), 1000, 0.5) })
}
