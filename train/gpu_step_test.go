package train

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/compute/cuda"
	"github.com/wavecat/wavecat/compute/cudasim"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// TestGPUTrainStepMatchesCPU runs one whole training step as the loop does
// it (encode the inputs, forward, the head's loss and gradient, backward,
// Adam) on the GPU, with the head on the device (outputs.Device), and on
// the CPU from the same parameters and batch, for every head: the loss and
// every parameter tensor's gradient agree to 1e-4 (relative to the tensor's
// largest value), and so do the parameters after the GPU's Adam update and
// the float64 reference Adam applied to the GPU's gradients. It needs a CUDA GPU and
// skips without one (scripts/gpu-check.sh runs it).
func TestGPUTrainStepMatchesCPU(t *testing.T) {
	gbe, err := cuda.New(cuda.Options{})
	if err != nil {
		t.Skipf("no CUDA GPU here, GPU test skipped: %s", strings.SplitN(err.Error(), "\n", 2)[0])
	}
	defer gbe.Close()
	checkTrainStepMatchesCPU(t, gbe)
}

// TestCPUSimTrainStepMatchesCPU is the same step with the heads' kernels
// run by the CPU simulator (compute/cudasim; the network's maths is then
// the CPU backend's): it checks the device-head path of the step, and this
// test itself, on machines without a GPU.
func TestCPUSimTrainStepMatchesCPU(t *testing.T) {
	sbe, err := cudasim.New(cudasim.Options{})
	if errors.Is(err, cudasim.ErrNoCompiler) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	checkTrainStepMatchesCPU(t, sbe)
}

// checkTrainStepMatchesCPU runs the step on gbe with the head on the
// device and on a CPU backend with the head's Go maths.
func checkTrainStepMatchesCPU(t *testing.T, gbe compute.Backend) {
	cbe, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"adacat --components 15", "mol --mixtures 3 --levels 65536", "gaussian", "mulaw --bins 16", "categorical --bins 16"} {
		t.Run(strings.Fields(spec)[0], func(t *testing.T) {
			h, err := outputs.New(spec)
			if err != nil {
				t.Fatal(err)
			}
			cfg := wavenet.TinyConfig(h.Channels(), h.InputChannels(), 8)
			cm, err := wavenet.New(cfg, cbe, 7)
			if err != nil {
				t.Fatal(err)
			}
			defer cm.Free()
			gm, err := wavenet.New(cfg, gbe, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer gm.Free()
			if err := gm.ImportTensors(cm.ExportTensors()); err != nil {
				t.Fatal(err)
			}
			dev, err := outputs.NewDevice(h, gbe)
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Free()

			const B, T = 3, 512
			rng := rand.New(rand.NewPCG(3, uint64(len(spec))))
			wave := make([]float32, B*T)
			for i := range wave {
				wave[i] = float32(0.7*math.Sin(float64(i%T)*0.07*float64(1+i/T)) + 0.1*rng.NormFloat64())
				wave[i] = max(-0.99, min(0.99, wave[i]))
			}
			mel := make([]float32, B*cfg.CinChannels*cfg.MelFrames(T))
			for i := range mel {
				mel[i] = float32(rng.NormFloat64())
			}
			x := make([]float32, B*cfg.InputChannels*T)
			encodeInputs(h, wave, B, T, x)
			scale := float32(1 / float64(B*T))

			type result struct {
				loss  float64
				grads []float32
			}
			run := func(be compute.Backend, m *wavenet.Model, device bool) result {
				ws, err := m.NewWorkspace(B, T)
				if err != nil {
					t.Fatal(err)
				}
				defer ws.Free()
				be.Upload(ws.X(), x)
				be.Upload(ws.Mel(), mel)
				out := m.Forward(ws, ws.X(), ws.Mel())
				var loss float64
				C := cfg.OutChannels
				if device {
					tg := be.Alloc(B * T)
					defer be.Free(tg)
					be.Upload(compute.V(tg), wave)
					loss = dev.Loss(out, B, T, compute.V(tg), compute.View{}, ws.DOut(), scale)
				} else {
					ha := be.(compute.HostAccessor)
					logits, grad := ha.Host(out, B*C*T), ha.Host(ws.DOut(), B*C*T)
					for b := 0; b < B; b++ {
						o := b * C * T
						loss += h.Loss(logits[o:o+C*T], T, T, wave[b*T:(b+1)*T], nil, grad[o:o+C*T], scale)
					}
				}
				m.ZeroGrads()
				m.Backward(ws, ws.DOut(), compute.View{})
				r := result{loss: loss, grads: make([]float32, m.NumParams())}
				be.Download(r.grads, m.Grads())
				return r
			}
			np := gm.NumParams()
			p0 := make([]float32, np)
			gbe.Download(p0, gm.Params())
			want, got := run(cbe, cm, false), run(gbe, gm, true)
			adam, err := NewAdam(gbe, np, DefaultAdam())
			if err != nil {
				t.Fatal(err)
			}
			defer adam.Free()
			adam.Step(gm.Params(), gm.Grads(), np, 1e-3)
			gotParams := make([]float32, np)
			gbe.Download(gotParams, gm.Params())
			// Adam's first step moves a weight by about lr*sign(g), so a
			// gradient within rounding of zero could flip sign between the
			// backends and move its weight by 2*lr: the GPU's update is
			// checked against the float64 reference Adam on the GPU's own
			// gradients.
			ac := DefaultAdam()
			adamWant := adamRef(f64(p0), [][]float64{f64(got.grads)}, []float64{1e-3}, float64(ac.Beta1), float64(ac.Beta2), float64(ac.Eps))
			if d := math.Abs(got.loss - want.loss); d > 1e-5*(1+math.Abs(want.loss)) {
				t.Errorf("loss: GPU %.9g, CPU %.9g", got.loss, want.loss)
			}
			// A scalar-input first conv's weight_v gradient is zero by
			// construction (weight norm over rows of one element), so both
			// sides hold rounding noise there: gradients are compared with
			// a floor of 1e-6 of the largest gradient.
			gmax := 0.0
			for _, v := range want.grads {
				gmax = max(gmax, math.Abs(float64(v)))
			}
			checks := []struct {
				what      string
				got, want []float64
			}{{"gradient", f64(got.grads), f64(want.grads)}, {"parameters after Adam", f64(gotParams), adamWant}}
			for _, ti := range cm.Tensors() {
				for _, c := range checks {
					g, w := c.got[ti.Offset:ti.Offset+ti.Size], c.want[ti.Offset:ti.Offset+ti.Size]
					floor := 0.0
					if c.what == "gradient" {
						floor = 1e-6 * gmax
					}
					worst, scale := 0.0, 0.0
					for i := range w {
						scale = max(scale, math.Abs(w[i]))
						worst = max(worst, math.Abs(g[i]-w[i]))
					}
					if worst > 1e-4*scale+floor {
						t.Errorf("%s %s: max |GPU - reference| = %.3g, largest value %.3g", ti.Name, c.what, worst, scale)
					}
				}
			}
		})
	}
}
