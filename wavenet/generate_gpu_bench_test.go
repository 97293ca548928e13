package wavenet

import (
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/outputs"
)

// BenchmarkGenerateCUDA times GPU synthesis of the reference config (24
// layers, 128/256/128, k=3, 80 mels, hop 256) with a MoL head (10
// logistics, 30 channels) and with AdaCat (k=128, 256 channels), at batch 1,
// 4 and 32 (utterances of 1 s; aggregate samples/s), conditioning included,
// at each batch with the cluster step (wcl_step, sm_90; at batch 1 with
// clusters of 16 and of 8 blocks), the one-launch
// wf_step and, as the anchor, the layered kernels (batch 32 fused says
// whether auto should take the one-launch step above 4, fusedAutoMaxBatch;
// the cluster rows whether auto should take the cluster step,
// clusterByDefault, and where its time goes: kernel, prologue and barrier
// waits per step, from a second, profiled run). xRT is samples/s over
// 22050 (real time).
func BenchmarkGenerateCUDA(b *testing.B) {
	be := gpuOrSkip(b)
	for _, spec := range []string{"mol --mixtures 10 --levels 65536", "adacat --components 128"} {
		h, err := outputs.New(spec)
		if err != nil {
			b.Fatal(err)
		}
		m, err := New(ReferenceConfig(h.Channels(), h.InputChannels()), be, 1)
		if err != nil {
			b.Fatal(err)
		}
		dev, err := outputs.NewDevice(h, be)
		if err != nil {
			b.Fatal(err)
		}
		g, err := NewGPUGenerator(m, h, dev)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range []struct {
			name  string
			batch int
			path  GPUStep
			sizes []int // cluster sizes to try (nil: clusterSizes)
		}{{"batch1-cluster16", 1, GPUStepCluster, []int{16}}, {"batch1-cluster8", 1, GPUStepCluster, []int{8}},
			{"batch1-fused", 1, GPUStepFused, nil}, {"batch1-layered", 1, GPUStepLayered, nil},
			{"batch4-cluster", 4, GPUStepCluster, nil}, {"batch4-fused", 4, GPUStepFused, nil}, {"batch4-layered", 4, GPUStepLayered, nil},
			{"batch32-cluster", 32, GPUStepCluster, nil}, {"batch32-fused", 32, GPUStepFused, nil}, {"batch32-layered", 32, GPUStepLayered, nil}} {
			b.Run(h.Name()+"/"+r.name, func(b *testing.B) {
				if r.path == GPUStepCluster {
					// A cluster step for these sizes, so one run compares them.
					old := clusterSizes
					if r.sizes != nil {
						clusterSizes = r.sizes
					}
					defer func() { clusterSizes = old }()
					if g.cluster != nil {
						g.cluster.free(be)
					}
					g.cluster, g.clusterTried = nil, false
				}
				rng := rand.New(rand.NewPCG(1, 1))
				utts := make([]Utterance, r.batch)
				for i := range utts {
					utts[i] = Utterance{Mel: randMel(rng, 86, 80), Seed: uint64(i)}
				}
				switch mode, err := g.stepFor(r.path, r.batch, 86*256); {
				case err != nil:
					b.Skip(err)
				case mode == GPUStepFused:
					b.Logf("one-launch step: %d blocks of %d threads", g.fused.nb, g.fused.block)
				case mode == GPUStepCluster:
					b.Logf("cluster step: %d clusters of %d blocks of %d threads (%d run at once)", g.cluster.clusters(r.batch), g.cluster.nb, g.cluster.block, g.cluster.nq)
				}
				b.Logf("%s", be.Describe())
				sps := loopGenerate(b, func() ([][]float32, error) {
					return g.Generate(utts, GenerateOptions{Batch: r.batch, GPUStep: r.path})
				})
				b.ReportMetric(sps, "samples/s")
				b.ReportMetric(sps/22050, "xRT")
				b.ReportMetric(1e6*float64(r.batch)/sps, "us/step") // every utterance is 86 frames: steps = samples / batch
				if g.cluster != nil && r.path == GPUStepCluster {
					// Where the cluster step's time goes (profiled on a
					// separate run, so the figures above are unprofiled).
					g.cluster.resetProfile(be)
					g.clusterProfile = true
					_, err := g.Generate(utts, GenerateOptions{Batch: r.batch, GPUStep: r.path})
					g.clusterProfile = false
					if err != nil {
						b.Fatal(err)
					}
					p := g.cluster.readProfile(be)
					b.ReportMetric(p.KernelUs, "kernel-us/step")
					b.ReportMetric(p.PrologueUs, "prologue-us/step")
					b.ReportMetric(p.WaitUs, "barrier-wait-us/step")
				}
			})
		}
		g.Free()
		dev.Free()
		m.Free()
	}
}
