package wavenet

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/outputs"
)

// BenchmarkGenerate times incremental synthesis of the reference config
// (24 layers, 128/256/128, k=3, 80 mels, hop 256) with a MoL head (10
// logistics, 30 channels); each utterance is 4 frames = 1024 samples,
// conditioning included; batch 16 is aggregate samples/s. Variants: the
// OpenBLAS thread count (vocode always uses 1, so output does not depend on
// it), Workers (slot groups on goroutines), Wide (one GEMM per layer over
// the batch, not bit-identical to batch 1) and, as "-gemv", the OpenBLAS
// paths MulVecs replaced where it runs in assembly (matrix-vector products
// per slot; with Wide the batch GEMMs, which Wide otherwise no longer uses
// there), next to their MulVecs twins so both see the same load. weightGB/s is samples/s times
// the step's weight bytes (12.6 MB, what a batch-1 step streams) and GFLOP/s
// uses StepFLOPs (6.3 MFLOP/sample); compare with BenchmarkRoofline and with
// bench/pytorch/generate.py run in the same session.
func BenchmarkGenerate(b *testing.B) {
	if testing.Short() {
		b.Skip("reference-size generation skipped in -short")
	}
	be := newCPU(b)
	h, err := outputs.New("mol --mixtures 10 --levels 65536")
	if err != nil {
		b.Fatal(err)
	}
	m, err := New(ReferenceConfig(h.Channels(), h.InputChannels()), be, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	g, err := NewGenerator(m, h)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Free()
	b.Logf("%s; step weights %.2f MB, %.2f MFLOP/sample", be.Describe(), float64(g.StepWeightBytes())/1e6, g.StepFLOPs()/1e6)
	rng := rand.New(rand.NewPCG(1, 1))
	runs := []struct {
		name           string
		batch, threads int
		opts           GenerateOptions
		gemv           bool
	}{
		{"batch1", 1, 2, GenerateOptions{}, false},
		{"batch1-1thread", 1, 1, GenerateOptions{}, false},
		{"batch1-1thread-gemv", 1, 1, GenerateOptions{}, true},
		{"batch16", 16, 2, GenerateOptions{}, false},
		{"batch16-1thread", 16, 1, GenerateOptions{}, false},
		{"batch16-1thread-gemv", 16, 1, GenerateOptions{}, true},
		{"batch16-2workers", 16, 1, GenerateOptions{Workers: 2}, false},
		{"batch16-wide", 16, 2, GenerateOptions{Wide: true}, false},
		{"batch16-wide-1thread", 16, 1, GenerateOptions{Wide: true}, false},
		{"batch16-wide-1thread-gemv", 16, 1, GenerateOptions{Wide: true}, true},
		{"batch16-wide-2workers", 16, 1, GenerateOptions{Wide: true, Workers: 2}, false},
	}
	for _, r := range runs {
		b.Run("ref-mol/"+r.name, func(b *testing.B) {
			// OpenBLAS's thread count is process-wide: a new backend sets it.
			if _, err := cpu.New(cpu.Options{Threads: r.threads}); err != nil {
				b.Fatal(err)
			}
			defer cpu.New(cpu.Options{})
			if r.gemv && g.mv == nil {
				b.Skip("MulVecs has no assembly here: the default mode is already per-slot gemv")
			}
			g.blasStep = r.gemv
			defer func() { g.blasStep = false }()
			utts := make([]Utterance, r.batch)
			for i := range utts {
				utts[i] = Utterance{Mel: randMel(rng, 4, 80), Seed: uint64(i)}
			}
			opts := r.opts
			opts.Batch = r.batch
			b.ReportAllocs()
			sps := loopGenerate(b, func() ([][]float32, error) { return g.Generate(utts, opts) })
			b.ReportMetric(sps, "samples/s")
			b.ReportMetric(sps*float64(g.StepWeightBytes())/1e9, "weightGB/s")
			b.ReportMetric(sps*g.StepFLOPs()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkRoofline measures this machine's ceilings for the step, in the
// same run as BenchmarkGenerate: DRAM bandwidth (copy of 256 MB, read+write
// bytes counted), the sgemv bandwidth over the step's 12.6 MB of weights as
// 24 back-to-back layer-shaped products with nothing else (what the
// generator could reach if the products were all it did: the L3-resident
// ceiling), and sgemm FLOP/s at n=1024 (compute peak), each with 1 and 2
// OpenBLAS threads.
func BenchmarkRoofline(b *testing.B) {
	if testing.Short() {
		b.Skip("roofline skipped in -short")
	}
	be := newCPU(b)
	b.Run("dram-copy-256MB", func(b *testing.B) {
		const n = 64 << 20
		src, dst := make([]float32, n), make([]float32, n)
		for i := range src {
			src[i] = float32(i)
		}
		b.SetBytes(8 * n)
		for b.Loop() {
			copy(dst, src)
		}
	})
	for _, threads := range []int{1, 2} {
		// OpenBLAS's thread count is process-wide: a new backend sets it.
		if _, err := cpu.New(cpu.Options{Threads: threads}); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("step-gemvs-24layers/threads%d", threads), func(b *testing.B) {
			const L, R, G, H, S = 24, 128, 256, 128, 128
			w := be.Alloc(L * (G*3*R + (R+S)*H))
			x, y := be.Alloc(3*R), be.Alloc(G)
			wv := compute.V(w)
			per := G*3*R + (R+S)*H
			b.SetBytes(4 * int64(L*per))
			for b.Loop() {
				for l := 0; l < L; l++ {
					be.Gemm(false, false, G, 1, 3*R, 1, wv.At(l*per), 3*R, compute.V(x), 1, 0, compute.V(y), 1)
					be.Gemm(false, false, R+S, 1, H, 1, wv.At(l*per+G*3*R), H, compute.V(x), 1, 0, compute.V(y), 1)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "steps/s")
			b.ReportMetric(float64(b.N)*float64(L*per)*2/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("sgemm-1024/threads%d", threads), func(b *testing.B) {
			const n = 1024
			a, bb, c := be.Alloc(n*n), be.Alloc(n*n), be.Alloc(n*n)
			for b.Loop() {
				be.Gemm(false, false, n, n, n, 1, compute.V(a), n, compute.V(bb), n, 0, compute.V(c), n)
			}
			b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
	cpu.New(cpu.Options{})
}

// loopGenerate runs gen in b.Loop and returns the samples per second of
// everything it generated (all utterances together).
func loopGenerate(b *testing.B, gen func() ([][]float32, error)) float64 {
	samples := 0
	for b.Loop() {
		outs, err := gen()
		if err != nil {
			b.Fatal(err)
		}
		for _, o := range outs {
			samples += len(o)
		}
	}
	return float64(samples) / b.Elapsed().Seconds()
}
