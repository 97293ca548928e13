package melspec

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkMel10s measures single-goroutine log-mel extraction of 10 s of
// 22050 Hz noise and reports it as a multiple of real time.
func BenchmarkMel10s(b *testing.B) {
	cfg := DefaultConfig()
	e, err := NewExtractor(cfg)
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(7, 7))
	y := make([]float32, 10*cfg.SampleRate)
	for i := range y {
		y[i] = float32(r.NormFloat64() * 0.1)
	}
	dst := make([]float32, cfg.Frames(len(y))*cfg.NMels)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.ComputeInto(dst, y)
	}
	b.ReportMetric(10*float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}

func noise10s(sr int) []float32 {
	r := rand.New(rand.NewPCG(7, 7))
	y := make([]float32, 10*sr)
	for i := range y {
		y[i] = float32(r.NormFloat64() * 0.1)
	}
	return y
}

// BenchmarkHighPass10s times the 255-tap direct-form FIR on 10 s of audio.
func BenchmarkHighPass10s(b *testing.B) {
	y := noise10s(22050)
	taps, err := HighPassFIR(HighPassTaps, HighPassCutoff, 22050)
	if err != nil {
		b.Fatal(err)
	}
	dst := make([]float32, len(y))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		FIRFilter(dst, y, taps)
	}
	b.ReportMetric(10*float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}

// BenchmarkTrim10s times silence detection on 10 s of audio.
func BenchmarkTrim10s(b *testing.B) {
	y := noise10s(22050)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, _, err := Trim(y, DefaultTrimConfig()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(10*float64(b.N)/b.Elapsed().Seconds(), "x_realtime")
}
