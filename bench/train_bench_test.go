package bench

import (
	"bufio"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// benchThreads matches torch.set_num_threads(2) in pytorch/train_step.py:
// this machine has two cores.
const benchThreads = 2

// gemmPaths are the CPU backend's GEMM libraries ("wavecat": the own
// AVX-512 kernels for training's products, skipped without AVX-512).
var gemmPaths = []string{"openblas", "wavecat", "gonum"}

func newBackend(b *testing.B, blas string) *cpu.Backend {
	b.Helper()
	be, err := cpu.New(cpu.Options{Threads: benchThreads, BLAS: blas})
	if err != nil {
		b.Skipf("skipping the %s path: %v", blas, err)
	}
	return be
}

// referenceBenchConfig is the reference network (REFERENCE.md §3) with 30
// output channels, the size of a 10-component mixture-of-logistics head;
// train_step.py's REFERENCE is the same.
func referenceBenchConfig() wavenet.Config { return wavenet.ReferenceConfig(30, 1) }

// smallBenchConfig is half the reference in depth and width (12 layers in
// 2 stacks, 64/128/64), same conditioning and hop; train_step.py --config
// small builds the same.
func smallBenchConfig() wavenet.Config {
	cfg := wavenet.ReferenceConfig(30, 1)
	cfg.Layers, cfg.Stacks = 12, 2
	cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels = 64, 128, 64
	return cfg
}

// benchTrainStep times one training step as the training loop does it and
// as train_step.py does in PyTorch: zero the gradients, forward, backward of
// loss = sum(out * R) (dout = R, a fixed random tensor; no head), Adam.
// It reports samples/s, GFLOP/s (wavenet.Config.TrainFLOPs), the workspace's
// activation memory, the model and optimiser memory, and the process's peak
// resident set (VmHWM: everything, OpenBLAS buffers included; it is
// process-wide, so run one benchmark per process for a clean figure).
func benchTrainStep(b *testing.B, blas string, cfg wavenet.Config, B, T int) {
	benchTrainStepOn(b, newBackend(b, blas), cfg, B, T)
}

// benchTrainStepOn is benchTrainStep on any backend (the CUDA benchmark
// passes its GPU backend).
func benchTrainStepOn(b *testing.B, be compute.Backend, cfg wavenet.Config, B, T int, afterWarmup ...func()) {
	m, err := wavenet.New(cfg, be, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	ws, err := m.NewWorkspace(B, T)
	if err != nil {
		b.Fatal(err)
	}
	defer ws.Free()
	adam, err := train.NewAdam(be, m.NumParams(), train.DefaultAdam())
	if err != nil {
		b.Fatal(err)
	}
	defer adam.Free()
	rng := rand.New(rand.NewPCG(1, 2))
	fill := func(v compute.View, n int, scale float64) {
		h := make([]float32, n)
		for i := range h {
			h[i] = float32(scale * rng.NormFloat64())
		}
		be.Upload(v, h)
	}
	fill(ws.X(), B*cfg.InputChannels*T, 0.3)
	fill(ws.Mel(), B*cfg.CinChannels*cfg.MelFrames(T), 1)
	fill(ws.DOut(), B*cfg.OutChannels*T, 1)
	step := func() {
		m.ZeroGrads()
		m.Forward(ws, ws.X(), ws.Mel())
		m.Backward(ws, ws.DOut(), compute.View{})
		adam.Step(m.Params(), m.Grads(), m.NumParams(), 1e-3)
	}
	step() // warm-up, as train_step.py
	for _, f := range afterWarmup {
		f()
	}
	b.Logf("%s; %d parameters; batch %d x %d", be.Describe(), m.NumParams(), B, T)
	b.ReportAllocs()
	cpu0 := cpuSeconds()
	for b.Loop() {
		step()
	}
	be.Sync()
	sec := b.Elapsed().Seconds() / float64(b.N)
	// CPU time per step (all threads): on a shared machine it moves less
	// than wall time, though spinning BLAS threads inflate it.
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
	b.ReportMetric(float64(B*T)/sec, "samples/s")
	b.ReportMetric(m.TrainFLOPs(B, T)/sec/1e9, "GFLOP/s")
	b.ReportMetric(float64(m.ActivationBytes(B, T))/(1<<20), "act-MiB")
	b.ReportMetric(float64(m.ParamBytes()+8*int64(m.NumParams()))/(1<<20), "model+adam-MiB")
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.Sys)/(1<<20), "go-sys-MiB")
	if hwm := peakRSS(); hwm > 0 {
		b.ReportMetric(float64(hwm)/(1<<20), "peak-RSS-MiB")
	}
}

// BenchmarkTrainStepReference is the headline figure: a training
// step of the reference config at batch 1 x 10240 on both GEMM paths.
// Compare with /usr/bin/python3 bench/pytorch/train_step.py.
func BenchmarkTrainStepReference(b *testing.B) {
	if testing.Short() {
		b.Skip("reference-size training step skipped in -short")
	}
	for _, blas := range gemmPaths {
		b.Run(blas, func(b *testing.B) { benchTrainStep(b, blas, referenceBenchConfig(), 1, 10240) })
	}
}

// BenchmarkTrainStepSmall: the small config at batch 1 x 10240 (compare
// with train_step.py --config small).
func BenchmarkTrainStepSmall(b *testing.B) {
	for _, blas := range gemmPaths {
		b.Run(blas, func(b *testing.B) {
			if testing.Short() && blas == "gonum" {
				b.Skip("gonum path skipped in -short")
			}
			benchTrainStep(b, blas, smallBenchConfig(), 1, 10240)
		})
	}
}

// builtinModelDir is vocode's built-in model (an ordinary checkpoint
// directory); train_step.py --checkpoint reads the same shape from it.
const builtinModelDir = "../cmd/vocode/model/default"

// BenchmarkTrainStepBuiltin: a training step of the built-in model's shape
// at its training batch, 4 x 4096 (compare with train_step.py --checkpoint
// cmd/vocode/model/default --batch 4 --T 4096): small models are where a
// framework's per-operation overhead shows.
func BenchmarkTrainStepBuiltin(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(builtinModelDir, train.ConfigFile))
	if err != nil {
		b.Fatal(err)
	}
	meta, err := train.ParseMeta(data)
	if err != nil {
		b.Fatal(err)
	}
	mi, err := train.ParseModelInfo(meta)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("openblas", func(b *testing.B) { benchTrainStep(b, "openblas", mi.Model, 4, 4096) })
}

// BenchmarkSgemmPeak measures the backend's GEMM throughput on a large
// square product (2048^3, 2 threads), the ceiling the training step's
// GFLOP/s is measured against; run it in the same invocation as the
// training-step benchmarks so both see the same machine load.
func BenchmarkSgemmPeak(b *testing.B) {
	const n = 2048
	for _, blas := range gemmPaths {
		b.Run(blas, func(b *testing.B) {
			if testing.Short() && blas == "gonum" {
				b.Skip("gonum 2048^3 GEMM skipped in -short")
			}
			be := newBackend(b, blas)
			rng := rand.New(rand.NewPCG(3, 4))
			bufs := make([]compute.Buffer, 3)
			for i := range bufs {
				bufs[i] = be.Alloc(n * n)
				defer be.Free(bufs[i])
				h := make([]float32, n*n)
				for j := range h {
					h[j] = float32(rng.NormFloat64())
				}
				be.Upload(compute.V(bufs[i]), h)
			}
			a, bb, c := compute.V(bufs[0]), compute.V(bufs[1]), compute.V(bufs[2])
			be.Gemm(false, false, n, n, n, 1, a, n, bb, n, 0, c, n) // warm-up
			b.Logf("%s", be.Describe())
			for b.Loop() {
				be.Gemm(false, false, n, n, n, 1, a, n, bb, n, 0, c, n)
			}
			be.Sync()
			b.ReportMetric(2*float64(n)*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// cpuSeconds is the process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// peakRSS returns the process's peak resident set in bytes (VmHWM from
// /proc/self/status), or 0 where that file does not exist.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
