package train

import (
	"testing"
)

// BenchmarkTrainStep times one full training step as the loop runs it:
// upload, forward, head loss (host), backward, gradient norm, Adam and EMA
// (the batch is staged beforehand; in the loop a goroutine reads and encodes
// the next batch during the step). Reports steps/s and samples/s.
func BenchmarkTrainStep(b *testing.B) {
	for _, c := range []struct {
		name, preset, head string
		batch, T           int
		short              bool
	}{
		{"tiny-adacat30/8x10240", "tiny", "adacat --components 15 --lambda 1e-4", 8, 10240, true},
		{"tiny-mulaw256/8x10240", "tiny", "mulaw --bins 256", 8, 10240, true},
		{"reference-adacat256/1x10240", "adacat256", "adacat --components 128 --lambda 1e-4", 1, 10240, false},
		{"reference-mol/1x10240", "mol", "mol --mixtures 10 --levels 65536 --log-scale-min -16", 1, 10240, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			if testing.Short() && !c.short {
				b.Skip("-short: reference-size model skipped")
			}
			cfg := tinyRun(b, c.head, 1)
			p, _ := LookupPreset(c.preset)
			cfg.Model, cfg.BatchSize, cfg.MaxTimeSteps, cfg.EvalInterval = p.Model, c.batch, c.T, 0
			tr, err := newTrainer(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.free()
			st, err := tr.stage(0)
			if err != nil {
				b.Fatal(err)
			}
			if _, _, err := tr.stepOnce(&st); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := tr.stepOnce(&st); err != nil {
					b.Fatal(err)
				}
			}
			sec := b.Elapsed().Seconds() / float64(b.N)
			b.ReportMetric(1/sec, "steps/s")
			b.ReportMetric(float64(c.batch*c.T)/sec, "samples/s")
		})
	}
}
