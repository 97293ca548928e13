package bench

import (
	"testing"

	"github.com/wavecat/wavecat/compute/cuda"
)

// BenchmarkTrainStepCUDA times the reference training step on the GPU at
// the shape, batch 8 x 10240 (and batch 1), in fp32 and with TF32
// GEMMs. Compare with
// /usr/bin/python3 bench/pytorch/train_step.py --device cuda --batch 8.
// It skips with the loader's message where there is no GPU.
func BenchmarkTrainStepCUDA(b *testing.B) {
	for _, c := range []struct {
		name string
		B    int
		tf32 bool
	}{{"fp32/B=8", 8, false}, {"tf32/B=8", 8, true}, {"fp32/B=1", 1, false}} {
		b.Run(c.name, func(b *testing.B) {
			be, err := cuda.New(cuda.Options{TF32: c.tf32})
			if err != nil {
				b.Skipf("no CUDA backend: %v", err)
			}
			defer be.Close()
			benchTrainStepOn(b, be, referenceBenchConfig(), c.B, 10240)
		})
	}
}
