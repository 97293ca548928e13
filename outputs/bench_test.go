package outputs

import (
	"math/rand/v2"
	"testing"
	"time"
)

// benchSpecs are the reference heads with their reference channel counts
// (adacat 256, mol 30, gaussian 2, mulaw 256, categorical 256).
var benchSpecs = []struct{ name, spec string }{
	{"adacat", "adacat --components 128 --lambda 1e-4"},
	{"adacat-nll", "adacat --components 128 --lambda 0"},
	{"mol", "mol --mixtures 10 --levels 65536 --log-scale-min -16"},
	{"gaussian", "gaussian --log-scale-min -16"},
	{"mulaw", "mulaw --bins 256"},
	{"categorical", "categorical --bins 256"},
}

const benchT = 10240

func benchData(h Head) (logits, targets, grad []float32) {
	rng := rand.New(rand.NewPCG(1, 2))
	C := h.Channels()
	logits = make([]float32, C*benchT)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	targets = make([]float32, benchT)
	for i := range targets {
		targets[i] = float32(clamp(0.3*rng.NormFloat64(), -1, 1))
	}
	return logits, targets, make([]float32, C*benchT)
}

// BenchmarkLoss reports timesteps/s of Loss (forward + gradient) for one
// 10240-sample training item.
func BenchmarkLoss(b *testing.B) {
	for _, s := range benchSpecs {
		b.Run(s.name, func(b *testing.B) {
			h, _ := New(s.spec)
			logits, targets, grad := benchData(h)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.Loss(logits, benchT, benchT, targets, nil, grad, 1)
			}
			b.ReportMetric(float64(benchT)*float64(b.N)/b.Elapsed().Seconds(), "timesteps/s")
		})
	}
}

// BenchmarkBits reports timesteps/s of the evaluation likelihood.
func BenchmarkBits(b *testing.B) {
	for _, s := range benchSpecs {
		b.Run(s.name, func(b *testing.B) {
			h, _ := New(s.spec)
			logits, targets, _ := benchData(h)
			out := make([]float64, benchT)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.Bits(logits, benchT, benchT, targets, out)
			}
			b.ReportMetric(float64(benchT)*float64(b.N)/b.Elapsed().Seconds(), "timesteps/s")
		})
	}
}

// BenchmarkSample is the per-sample cost during generation (stride 1).
func BenchmarkSample(b *testing.B) {
	for _, s := range benchSpecs {
		b.Run(s.name, func(b *testing.B) {
			h, _ := New(s.spec)
			rng := rand.New(rand.NewPCG(3, 4))
			logits := make([]float32, h.Channels())
			for i := range logits {
				logits[i] = float32(rng.NormFloat64())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				h.Sample(logits, 1, 1, rng)
			}
		})
	}
}

// BenchmarkAdaCatVsSoftmax alternates AdaCat k=128 (lambda 1e-4) Loss with
// 256-way softmax cross-entropy Loss on the same T and reports the ratio of
// their times, which is robust to load from other processes on a shared box.
func BenchmarkAdaCatVsSoftmax(b *testing.B) {
	ada, _ := New("adacat --components 128 --lambda 1e-4")
	ce, _ := New("categorical --bins 256")
	la, ta, ga := benchData(ada)
	lc, tc, gc := benchData(ce)
	var da, dc time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		ada.Loss(la, benchT, benchT, ta, nil, ga, 1)
		t1 := time.Now()
		ce.Loss(lc, benchT, benchT, tc, nil, gc, 1)
		da += t1.Sub(t0)
		dc += time.Since(t1)
	}
	b.ReportMetric(float64(da)/float64(dc), "adacat/softmax")
	b.ReportMetric(float64(benchT)*float64(b.N)/da.Seconds(), "adacat-timesteps/s")
	b.ReportMetric(float64(benchT)*float64(b.N)/dc.Seconds(), "softmax-timesteps/s")
}
