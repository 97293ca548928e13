package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
	"github.com/wavecat/wavecat/compute/cpu"
)

// The tests and benchmarks in this file need a CUDA GPU; without one they
// skip, saying why. scripts/gpu-check.sh runs them on a GPU machine.

var (
	gpuOnce sync.Once
	gpuBe   *Backend
	gpuErr  error
)

// gpuOrSkip returns the shared fp32 backend on device 0, or skips.
func gpuOrSkip(tb testing.TB) *Backend {
	tb.Helper()
	gpuOnce.Do(func() { gpuBe, gpuErr = New(Options{}) })
	if gpuErr != nil {
		tb.Skipf("no CUDA GPU here, GPU test skipped: %s", strings.SplitN(gpuErr.Error(), "\n", 2)[0])
	}
	return gpuBe
}

// TestConformance runs the backend-independent conformance suite (float64
// references and finite differences) on the GPU.
func TestConformance(t *testing.T) {
	be := gpuOrSkip(t)
	t.Logf("%s", be.Describe())
	computetest.RunConformance(t, func() compute.Backend { return be })
}

// TestMatchesCPU runs every kernel on the GPU and on the CPU backend with the
// same inputs, at WaveNet-like sizes, and compares to 1e-4 relative (to the
// element and the output's RMS, so cancellation near zero does not flake).
func TestMatchesCPU(t *testing.T) {
	checkMatchesCPU(t, gpuOrSkip(t))
}

// TestSimMatchesCPU is TestMatchesCPU with kernels.cu run on the CPU
// (cpusim_test.go) instead of a GPU.
func TestSimMatchesCPU(t *testing.T) {
	if testing.Short() {
		t.Skip("CPU-simulated kernels at WaveNet sizes take seconds")
	}
	checkMatchesCPU(t, newSimBackend(t))
}

func checkMatchesCPU(t *testing.T, g compute.Backend) {
	c, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const B, C, T = 2, 64, 1000
	up := func(be compute.Backend, x []float32) compute.View {
		v := compute.V(be.Alloc(len(x)))
		be.Upload(v, x)
		return v
	}
	down := func(be compute.Backend, v compute.View, n int) []float32 {
		out := make([]float32, n)
		be.Download(out, v)
		return out
	}
	type op struct {
		name string
		run  func(be compute.Backend, r *rand.Rand) []float32
	}
	gemm := func(tA, tB bool) op {
		return op{fmt.Sprintf("Gemm tA=%v tB=%v", tA, tB), func(be compute.Backend, r *rand.Rand) []float32 {
			m, n, k := 96, 130, 80
			a, b, cc := up(be, randSlice(r, m*k)), up(be, randSlice(r, k*n)), up(be, randSlice(r, m*n))
			lda, ldb := k, n
			if tA {
				lda = m
			}
			if tB {
				ldb = k
			}
			be.Gemm(tA, tB, m, n, k, 0.5, a, lda, b, ldb, 1, cc, n)
			return down(be, cc, m*n)
		}}
	}
	ops := []op{
		gemm(false, false), gemm(true, false), gemm(false, true), gemm(true, true),
		{"GemmStridedBatched shared A", func(be compute.Backend, r *rand.Rand) []float32 {
			m, k := 128, 64
			a, x, y := up(be, randSlice(r, m*k)), up(be, randSlice(r, B*k*T)), up(be, randSlice(r, B*m*T))
			be.GemmStridedBatched(false, false, m, T-3, k, 1, a, k, 0, x, T, k*T, 1, y.At(3), T, m*T, B)
			return down(be, y, B*m*T)
		}},
		{"Elementwise", func(be compute.Backend, r *rand.Rand) []float32 {
			n := B * C * T
			x, y, z := up(be, randSlice(r, n)), up(be, randSlice(r, n)), up(be, randSlice(r, n))
			be.Scale(x, n, 0.7)
			be.Axpy(y, x, n, -1.3)
			be.AddScaled(z, x, y, n, float32(math.Sqrt(0.5)))
			be.ReLU(x, z, n)
			be.ReLUBackward(y, y, x, n)
			return append(down(be, x, n), down(be, y, n)...)
		}},
		{"Dot, SumSquares", func(be compute.Backend, r *rand.Rand) []float32 {
			n := B * C * T
			x, y := up(be, randSlice(r, n)), up(be, randSlice(r, n))
			return []float32{float32(be.Dot(x, y, n)), float32(be.SumSquares(x, n))}
		}},
		{"Bias", func(be compute.Backend, r *rand.Rand) []float32 {
			x, bias, db := up(be, randSlice(r, B*C*T)), up(be, randSlice(r, C)), up(be, randSlice(r, C))
			be.AddBias(x, bias, B, C, T)
			be.BiasGrad(db, x, B, C, T)
			return append(down(be, x, B*C*T), down(be, db, C)...)
		}},
		{"Gated", func(be compute.Backend, r *rand.Rand) []float32 {
			pre, z, dz, dpre := up(be, randSlice(r, 2*B*C*T)), up(be, make([]float32, B*C*T)), up(be, randSlice(r, B*C*T)), up(be, make([]float32, 2*B*C*T))
			be.GatedTanhSigmoid(z, pre, B, C*T)
			be.GatedTanhSigmoidBackward(dpre, dz, pre, B, C*T)
			return append(down(be, z, B*C*T), down(be, dpre, 2*B*C*T)...)
		}},
		{"Stretch", func(be compute.Backend, r *rand.Rand) []float32 {
			src, dst, back := up(be, randSlice(r, 80*40)), up(be, make([]float32, 80*40*4)), up(be, make([]float32, 80*40))
			be.Stretch(dst, src, 80, 40, 4)
			be.Scale(dst, 80*40*4, 1.5)
			be.StretchBackward(back, dst, 80, 40, 4)
			return append(down(be, dst, 80*40*4), down(be, back, 80*40)...)
		}},
		{"RowConv", func(be compute.Backend, r *rand.Rand) []float32 {
			rows, tt, width := 80, 640, 9
			src, w, dy := up(be, randSlice(r, rows*tt)), up(be, randSlice(r, width)), up(be, randSlice(r, rows*tt))
			dst, dsrc, dw := up(be, make([]float32, rows*tt)), up(be, make([]float32, rows*tt)), up(be, randSlice(r, width))
			be.RowConvSame(dst, src, w, rows, tt, width)
			be.RowConvSameBackward(dsrc, dw, dy, src, w, rows, tt, width)
			return append(append(down(be, dst, rows*tt), down(be, dsrc, rows*tt)...), down(be, dw, width)...)
		}},
		{"WeightNorm", func(be compute.Backend, r *rand.Rand) []float32 {
			groups, out, inner := 3, 256, 128
			n := groups * out * inner
			v, gg, w := up(be, randSlice(r, n)), up(be, randSlice(r, out)), up(be, make([]float32, n))
			dw, dg, dv := up(be, randSlice(r, n)), up(be, randSlice(r, out)), up(be, randSlice(r, n))
			be.WeightNorm(w, gg, v, groups, out, inner)
			be.WeightNormBackward(dg, dv, dw, gg, v, groups, out, inner)
			return append(append(down(be, w, n), down(be, dg, out)...), down(be, dv, n)...)
		}},
		{"Adam, EMA", func(be compute.Backend, r *rand.Rand) []float32 {
			n := 100003
			p, m, v, ema := up(be, randSlice(r, n)), up(be, make([]float32, n)), up(be, make([]float32, n)), up(be, randSlice(r, n))
			for step := 1; step <= 3; step++ {
				grad := up(be, randSlice(r, n))
				be.Adam(p, grad, m, v, n, compute.AdamParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: step})
				be.EMA(ema, p, n, 0.9999)
			}
			return append(append(down(be, p, n), down(be, m, n)...), append(down(be, v, n), down(be, ema, n)...)...)
		}},
	}
	for _, o := range ops {
		t.Run(o.name, func(t *testing.T) {
			want := o.run(c, rand.New(rand.NewPCG(7, 8)))
			got := o.run(g, rand.New(rand.NewPCG(7, 8)))
			rms := 0.0
			for _, w := range want {
				rms += float64(w) * float64(w)
			}
			rms = math.Sqrt(rms / float64(max(1, len(want))))
			for i := range want {
				d := math.Abs(float64(got[i]) - float64(want[i]))
				if !(d <= 1e-4*(math.Abs(float64(want[i]))+rms)) {
					t.Fatalf("element %d: cuda %g, cpu %g (diff %g, output rms %g)", i, got[i], want[i], d, rms)
				}
			}
		})
	}
}

// TestTF32 checks the opt-in TF32 GEMM is close to fp32 (~1e-3) and says so
// in Describe.
func TestTF32(t *testing.T) {
	gpuOrSkip(t)
	be, err := New(Options{TF32: true})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	if !strings.Contains(be.Describe(), "TF32") {
		t.Errorf("Describe does not mention TF32: %s", be.Describe())
	}
	r := rand.New(rand.NewPCG(9, 10))
	m, n, k := 64, 64, 256
	a, b := randSlice(r, m*k), randSlice(r, k*n)
	av, bv, cv := compute.V(be.Alloc(m*k)), compute.V(be.Alloc(k*n)), compute.V(be.Alloc(m*n))
	be.Upload(av, a)
	be.Upload(bv, b)
	be.Gemm(false, false, m, n, k, 1, av, k, bv, n, 0, cv, n)
	got := make([]float32, m*n)
	be.Download(got, cv)
	want := computetest.RefGemm(false, false, m, n, k, 1, a, k, b, n, 0, make([]float32, m*n), n)
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > 2e-2*math.Sqrt(float64(k)) {
			t.Fatalf("TF32 element %d = %g, want %g", i, got[i], want[i])
		}
	}
}

// TestGPUPlumbing: use from another OS thread (contexts are per thread),
// transfers larger than the staging buffer, and the on-disk PTX cache.
func TestGPUPlumbing(t *testing.T) {
	be := gpuOrSkip(t)
	n := stagingBytes/4 + 777
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(i % 1000)
	}
	v := compute.V(be.Alloc(n))
	defer be.Free(v.Buf)
	be.Upload(v, x)
	done := make(chan struct{})
	go func() {
		defer close(done)
		be.Scale(v, n, 2)
	}()
	<-done
	got := make([]float32, n)
	be.Download(got, v)
	for i := range got {
		if got[i] != 2*x[i] {
			t.Fatalf("[%d] = %g, want %g", i, got[i], 2*x[i])
		}
	}
	dir, err := ptxCacheDir()
	if err != nil {
		t.Skipf("no user cache dir: %v", err)
	}
	key := ptxCacheKey(kernelSource, be.arch, be.nv.version(), be.driverVersion)
	if _, err := os.Stat(filepath.Join(dir, key)); err != nil {
		t.Errorf("PTX not cached: %v", err)
	}
	start := time.Now()
	be2, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second New (PTX from cache) took %v", time.Since(start))
	be2.Close()
}

func benchGemm(b *testing.B, tf32 bool, m, n, k, batch int) {
	be := gpuOrSkip(b)
	if tf32 {
		var err error
		if be, err = New(Options{TF32: true}); err != nil {
			b.Fatal(err)
		}
		defer be.Close()
	}
	a, x, y := compute.V(be.Alloc(m*k)), compute.V(be.Alloc(batch*k*n)), compute.V(be.Alloc(batch*m*n))
	defer func() { be.Free(a.Buf); be.Free(x.Buf); be.Free(y.Buf) }()
	be.Fill(a, m*k, 0.01)
	be.Fill(x, batch*k*n, 0.01)
	run := func() {
		if batch == 1 {
			be.Gemm(false, false, m, n, k, 1, a, k, x, n, 0, y, n)
		} else {
			be.GemmStridedBatched(false, false, m, n, k, 1, a, k, 0, x, n, k*n, 1, y, n, m*n, batch)
		}
	}
	run()
	be.Sync()
	b.ResetTimer()
	for b.Loop() {
		run()
	}
	be.Sync()
	b.ReportMetric(2*float64(m*n*k*batch)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// BenchmarkGemm: square fp32 and TF32 GEMMs, and the WaveNet conv tap
// (gate 256 x residual 128 over 8 x 10240 samples, shared weights).
func BenchmarkGemm(b *testing.B) {
	for _, n := range []int{1024, 4096} {
		b.Run(fmt.Sprintf("fp32/n=%d", n), func(b *testing.B) { benchGemm(b, false, n, n, n, 1) })
		b.Run(fmt.Sprintf("tf32/n=%d", n), func(b *testing.B) { benchGemm(b, true, n, n, n, 1) })
	}
	b.Run("fp32/wavenet-tap-256x128x10240x8", func(b *testing.B) { benchGemm(b, false, 256, 10240, 128, 8) })
	b.Run("tf32/wavenet-tap-256x128x10240x8", func(b *testing.B) { benchGemm(b, true, 256, 10240, 128, 8) })
	b.Run("fp32/step-256x128x1x16", func(b *testing.B) { benchGemm(b, false, 256, 16, 128, 1) })
}

// BenchmarkKernels: bandwidth of elementwise kernels (GB/s of float traffic)
// and the per-call cost of a tiny launch (what per-sample synthesis pays).
func BenchmarkKernels(b *testing.B) {
	be := gpuOrSkip(b)
	const n = 1 << 24
	x, y, z := compute.V(be.Alloc(2*n)), compute.V(be.Alloc(2*n)), compute.V(be.Alloc(n))
	defer func() { be.Free(x.Buf); be.Free(y.Buf); be.Free(z.Buf) }()
	bw := func(name string, bytes float64, f func()) {
		b.Run(name, func(b *testing.B) {
			f()
			be.Sync()
			for b.Loop() {
				f()
			}
			be.Sync()
			b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
	bw("Axpy/n=16M", 12*n, func() { be.Axpy(y, x, n, 0.5) })
	bw("Gated/n=16M", 12*n, func() { be.GatedTanhSigmoid(z, x, 1, n) })
	bw("GatedBackward/n=16M", 20*n, func() { be.GatedTanhSigmoidBackward(y, z, x, 1, n) })
	bw("Adam/n=4M", 28*(n/4), func() {
		be.Adam(x, y, z, y.At(n), n/4, compute.AdamParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1})
	})
	bw("Dot/n=16M (sync)", 8*n, func() { be.Dot(x, y, n) })
	b.Run("Launch/n=1", func(b *testing.B) {
		for b.Loop() {
			be.Scale(x, 1, 1)
		}
		be.Sync()
		b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(b.N), "us/launch")
	})
}
