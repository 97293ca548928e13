package train

import (
	"path/filepath"
	"testing"
)

// benchCheckpoint is the size of the reference model (~3.2M parameters,
// 12.6 MB) with EMA and Adam state: ~50 MB on disk.
func benchCheckpoint() *Checkpoint {
	const n = 3_200_000
	w := []Tensor{{Name: "w", Shape: []int{n}, Data: make([]float32, n)}}
	for i := range w[0].Data {
		w[0].Data[i] = float32(i) * 1e-6
	}
	return &Checkpoint{Config: Meta{Step: 1}, Weights: w, EMA: w, Optimizer: AdamTensors(w, w)}
}

func BenchmarkSave(b *testing.B) {
	ck := benchCheckpoint()
	dir := filepath.Join(b.TempDir(), "ck")
	b.SetBytes(4 * 4 * 3_200_000)
	for b.Loop() {
		if err := Save(dir, ck); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "ck")
	if err := Save(dir, benchCheckpoint()); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(4 * 4 * 3_200_000)
	for b.Loop() {
		if _, err := Load(dir); err != nil {
			b.Fatal(err)
		}
	}
}
