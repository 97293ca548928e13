package cpu

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkMulVecsStep times the synthesis step's products alone (24
// layers of a 256x384 dilated-conv product and a 256x128 residual+skip
// product, 12.6 MB of weights) for n columns: MulVecs with each kernel
// family, and OpenBLAS single-threaded as the generator used it before
// (one sgemv per column, bit-identical) and as one sgemm over the columns
// (the batch-dependent rounding of --wide). Sub-benchmarks alternate within
// one run so the machine's load hits them alike; columns/s is steps times
// columns per second, GFLOP/s counts 2 per weight per column. n=256 (no
// per-column sgemv there) shows the kernels at GEMM widths, as a training
// step's products would use them.
func BenchmarkMulVecsStep(b *testing.B) {
	const L, R, G, H, S = 24, 128, 256, 128, 128
	rng := rand.New(rand.NewPCG(1, 1))
	be, err := New(Options{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer New(Options{})
	type layer struct {
		conv, rs []float32
		pc, pr   *PackedMatrix
	}
	layers := make([]layer, L)
	for l := range layers {
		c, r := randVec(rng, G*3*R), randVec(rng, (R+S)*H)
		layers[l] = layer{c, r, PackMatrix(c, G, 3*R, 3*R), PackMatrix(r, R+S, H, H)}
	}
	for _, n := range []int{1, 16, 256} {
		x, y := randVec(rng, n*3*R), make([]float32, n*G)
		xt, yt := make([]float32, n*3*R), make([]float32, n*G)
		for _, path := range []string{"mulvecs", "mulvecs-avx2", "openblas-gemv", "openblas-gemm"} {
			b.Run(fmt.Sprintf("n%d/%s", n, path), func(b *testing.B) {
				isa := mvISA
				if path == "mulvecs-avx2" {
					if !useAVX2 {
						b.Skip("no AVX2")
					}
					isa = 1
				}
				if path == "openblas-gemv" && n > 16 {
					b.Skip("one sgemv per column: too slow to matter at this width")
				}
				saved := mvISA
				mvISA = isa
				defer func() { mvISA = saved }()
				for b.Loop() {
					for _, ly := range layers {
						switch path {
						case "mulvecs", "mulvecs-avx2":
							ly.pc.MulVecs(x, 3*R, y, G, n, true)
							ly.pr.MulVecs(x, 3*R, y, G, n, false)
						case "openblas-gemv":
							for c := 0; c < n; c++ {
								be.gemmSlices(false, false, G, 1, 3*R, 1, ly.conv, 3*R, x[c*3*R:], 1, 1, y[c*G:], 1)
								be.gemmSlices(false, false, R+S, 1, H, 1, ly.rs, H, x[c*3*R:], 1, 0, y[c*G:], 1)
							}
						case "openblas-gemm":
							// Columns as rows: Y (n x G) = X (n x 3R) W^T, as --wide does.
							be.gemmSlices(false, true, n, G, 3*R, 1, xt, 3*R, ly.conv, 3*R, 1, yt, G)
							be.gemmSlices(false, true, n, R+S, H, 1, xt, 3*R, ly.rs, H, 0, yt, G)
						}
					}
				}
				cols := float64(b.N*n) / b.Elapsed().Seconds()
				b.ReportMetric(cols, "columns/s")
				b.ReportMetric(cols*2*L*(G*3*R+(R+S)*H)/1e9, "GFLOP/s")
			})
		}
	}
}

// BenchmarkMulVecsTrainShapes measures how far the same kernels would take
// a training step's forward products (issue 19, item 4), alternating with
// OpenBLAS in one run: the gate conv tap (256 x 128) and a 1x1 conv
// (128 x 128) over 10,240 time steps. MulVecs needs time-major activations
// ([T][C], each step's channels contiguous); OpenBLAS runs them as training
// does, channel-major ([C][T]). GFLOP/s = 2*m*k*n per op.
func BenchmarkMulVecsTrainShapes(b *testing.B) {
	rng := rand.New(rand.NewPCG(2, 2))
	be, err := New(Options{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer New(Options{})
	const n = 10240
	for _, sh := range []struct {
		name string
		m, k int
	}{{"gate_256x128x10240", 256, 128}, {"1x1_128x128x10240", 128, 128}} {
		w := randVec(rng, sh.m*sh.k)
		pm := PackMatrix(w, sh.m, sh.k, sh.k)
		x, y := randVec(rng, sh.k*n), make([]float32, sh.m*n)
		for _, path := range []string{"mulvecs", "mulvecs-avx2", "openblas"} {
			b.Run(sh.name+"/"+path, func(b *testing.B) {
				saved := mvISA
				defer func() { mvISA = saved }()
				if path == "mulvecs-avx2" {
					if !useAVX2 {
						b.Skip("no AVX2")
					}
					mvISA = 1
				}
				for b.Loop() {
					if path == "openblas" {
						be.gemmSlices(false, false, sh.m, n, sh.k, 1, w, sh.k, x, n, 0, y, n)
					} else {
						pm.MulVecs(x, sh.k, y, sh.m, n, false)
					}
				}
				b.ReportMetric(float64(b.N)*2*float64(sh.m*sh.k*n)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
