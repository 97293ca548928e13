package bench

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cuda"
)

// profBackend wraps a backend, waits for every kernel it queues and charges
// the wall time to the kernel (GEMMs by shape), so one profiled training
// step says where a GPU step's time goes. The waits add a launch round trip
// per call, so the total exceeds an unprofiled step; the split is what
// counts.
type profBackend struct {
	compute.Backend
	t     map[string]time.Duration
	n     map[string]int
	flops map[string]float64 // GEMMs: floating-point operations charged to the key
	total time.Duration
}

func newProfBackend(be compute.Backend) *profBackend {
	return &profBackend{Backend: be, t: map[string]time.Duration{}, n: map[string]int{}, flops: map[string]float64{}}
}

func (p *profBackend) time(key string, fn func()) {
	p.Backend.Sync()
	t0 := time.Now()
	fn()
	p.Backend.Sync()
	d := time.Since(t0)
	p.t[key] += d
	p.n[key]++
	p.total += d
}

func tr(b bool) string {
	if b {
		return "T"
	}
	return "N"
}

func (p *profBackend) Gemm(ta, tb bool, m, n, k int, alpha float32, a compute.View, lda int, b compute.View, ldb int, beta float32, c compute.View, ldc int) {
	key := fmt.Sprintf("gemm %s%s %dx%dx%d", tr(ta), tr(tb), m, n, k)
	p.flops[key] += 2 * float64(m) * float64(n) * float64(k)
	p.time(key, func() { p.Backend.Gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) })
}
func (p *profBackend) GemmStridedBatched(ta, tb bool, m, n, k int, alpha float32, a compute.View, lda, sa int, b compute.View, ldb, sb int, beta float32, c compute.View, ldc, sc int, batch int) {
	key := fmt.Sprintf("gemmBatched %s%s %dx%dx%d x%d", tr(ta), tr(tb), m, n, k, batch)
	p.flops[key] += 2 * float64(m) * float64(n) * float64(k) * float64(batch)
	p.time(key, func() {
		p.Backend.GemmStridedBatched(ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, sc, batch)
	})
}
func (p *profBackend) GemmSum(ta, tb bool, m, n, k int, alpha float32, a compute.View, lda, sa int, b compute.View, ldb, sb int, beta float32, c compute.View, ldc int, batch int) {
	key := fmt.Sprintf("gemmSum %s%s %dx%dx%d x%d", tr(ta), tr(tb), m, n, k, batch)
	p.flops[key] += 2 * float64(m) * float64(n) * float64(k) * float64(batch)
	p.time(key, func() {
		p.Backend.GemmSum(ta, tb, m, n, k, alpha, a, lda, sa, b, ldb, sb, beta, c, ldc, batch)
	})
}
func (p *profBackend) Scale(x compute.View, n int, a float32) {
	p.time("Scale", func() { p.Backend.Scale(x, n, a) })
}
func (p *profBackend) Axpy(y, x compute.View, n int, a float32) {
	p.time("Axpy", func() { p.Backend.Axpy(y, x, n, a) })
}
func (p *profBackend) AddScaled(d, a, b compute.View, n int, al float32) {
	p.time("AddScaled", func() { p.Backend.AddScaled(d, a, b, n, al) })
}
func (p *profBackend) ReLU(d, s compute.View, n int) {
	p.time("ReLU", func() { p.Backend.ReLU(d, s, n) })
}
func (p *profBackend) ReLUBackward(dx, dy, y compute.View, n int) {
	p.time("ReLUBackward", func() { p.Backend.ReLUBackward(dx, dy, y, n) })
}
func (p *profBackend) AddBias(x, b compute.View, B, C, T int) {
	p.time("AddBias", func() { p.Backend.AddBias(x, b, B, C, T) })
}
func (p *profBackend) BiasGrad(d, dy compute.View, B, C, T int) {
	p.time("BiasGrad", func() { p.Backend.BiasGrad(d, dy, B, C, T) })
}
func (p *profBackend) GatedTanhSigmoid(z, pre compute.View, B, n int) {
	p.time("Gated", func() { p.Backend.GatedTanhSigmoid(z, pre, B, n) })
}
func (p *profBackend) GatedTanhSigmoidBackward(dp, dz, pre compute.View, B, n int) {
	p.time("GatedBackward", func() { p.Backend.GatedTanhSigmoidBackward(dp, dz, pre, B, n) })
}
func (p *profBackend) Stretch(d, s compute.View, r, t, sc int) {
	p.time("Stretch", func() { p.Backend.Stretch(d, s, r, t, sc) })
}
func (p *profBackend) StretchBackward(d, s compute.View, r, t, sc int) {
	p.time("StretchBackward", func() { p.Backend.StretchBackward(d, s, r, t, sc) })
}
func (p *profBackend) RowConvSame(d, s, w compute.View, r, t, wd int) {
	p.time("RowConv", func() { p.Backend.RowConvSame(d, s, w, r, t, wd) })
}
func (p *profBackend) RowConvSameBackward(ds, dw, dy, s, w compute.View, r, t, wd int) {
	p.time("RowConvBackward", func() { p.Backend.RowConvSameBackward(ds, dw, dy, s, w, r, t, wd) })
}
func (p *profBackend) WeightNorm(w, g, v compute.View, gr, o, in int) {
	p.time("WeightNorm", func() { p.Backend.WeightNorm(w, g, v, gr, o, in) })
}
func (p *profBackend) WeightNormBackward(dg, dv, dw, g, v compute.View, gr, o, in int) {
	p.time("WeightNormBackward", func() { p.Backend.WeightNormBackward(dg, dv, dw, g, v, gr, o, in) })
}
func (p *profBackend) Adam(pa, g, m, v compute.View, n int, ap compute.AdamParams) {
	p.time("Adam", func() { p.Backend.Adam(pa, g, m, v, n, ap) })
}
func (p *profBackend) Fill(d compute.View, n int, v float32) {
	p.time("Fill", func() { p.Backend.Fill(d, n, v) })
}
func (p *profBackend) Copy(d, s compute.View, n int) {
	p.time("Copy", func() { p.Backend.Copy(d, s, n) })
}

// BenchmarkTrainStepCUDAProfile profiles one reference training step at
// batch 8 x 10240 on the GPU (fp32) by kernel and GEMM shape, and logs the
// table (run with -test.v to see it).
func BenchmarkTrainStepCUDAProfile(b *testing.B) {
	be, err := cuda.New(cuda.Options{})
	if err != nil {
		b.Skipf("no CUDA backend: %v", err)
	}
	defer be.Close()
	profileTrainStep(b, be, 8)
}

// BenchmarkTrainStepCPUProfile is the same table for the CPU backend's
// GEMM paths at batch 1 x 10240, with each GEMM shape's GFLOP/s.
func BenchmarkTrainStepCPUProfile(b *testing.B) {
	for _, blas := range []string{"wavecat", "openblas"} {
		b.Run(blas, func(b *testing.B) { profileTrainStep(b, newBackend(b, blas), 1) })
	}
}

// profTerms is a profBackend that also passes GemmTerms and GemmTermsGrad
// on, for backends that have them (the model takes other paths without).
type profTerms struct{ *profBackend }

func (p profTerms) GemmTerms(m, n int, terms []compute.GemmTerm, bias compute.View, beta float32, c compute.View, ldc int) {
	key := fmt.Sprintf("gemmTerms %dx%d", m, n)
	k := 0
	for _, t := range terms {
		k += t.K
	}
	key += fmt.Sprintf("x%d (%d terms)", k, len(terms))
	p.flops[key] += 2 * float64(m) * float64(n) * float64(k)
	p.time(key, func() { p.Backend.(compute.GemmTermser).GemmTerms(m, n, terms, bias, beta, c, ldc) })
}

func (p profTerms) GemmTermsGrad(m, k int, a compute.View, lda int, terms []compute.GradTerm) {
	n := 0
	for _, t := range terms {
		n += t.N
	}
	key := fmt.Sprintf("gemmTermsGrad %dx%dx%d (%d terms)", m, n, k, len(terms))
	p.flops[key] += 2 * float64(m) * float64(n) * float64(k)
	p.time(key, func() { p.Backend.(compute.GemmTermsGrader).GemmTermsGrad(m, k, a, lda, terms) })
}

func profileTrainStep(b *testing.B, be compute.Backend, batch int) {
	p := newProfBackend(be)
	var run compute.Backend = p
	_, terms := be.(compute.GemmTermser)
	_, grads := be.(compute.GemmTermsGrader)
	if terms && grads {
		run = profTerms{p}
	}
	benchTrainStepOn(b, run, referenceBenchConfig(), batch, 10240, func() {
		// Leave out the warm-up step (cuBLAS and module loading).
		clear(p.t)
		clear(p.n)
		clear(p.flops)
		p.total = 0
	})
	keys := make([]string, 0, len(p.t))
	for k := range p.t {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return p.t[keys[i]] > p.t[keys[j]] })
	var sb strings.Builder
	fmt.Fprintf(&sb, "profile over %d step(s), total %.1f ms/step synced:\n", b.N, p.total.Seconds()*1e3/float64(b.N))
	for _, k := range keys {
		rate := ""
		if f := p.flops[k]; f > 0 {
			rate = fmt.Sprintf(" %6.0f GFLOP/s", f/p.t[k].Seconds()/1e9)
		}
		fmt.Fprintf(&sb, "  %-44s %6d calls %8.2f ms/step %5.1f%%%s\n", k, p.n[k]/b.N, p.t[k].Seconds()*1e3/float64(b.N), 100*p.t[k].Seconds()/p.total.Seconds(), rate)
	}
	b.Log(sb.String())
}
