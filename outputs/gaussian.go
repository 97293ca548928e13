package outputs

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Gaussian is a Normal over y (r9y9's Gaussian head). Channels: 2, mean then
// log-std. The log-std is clamped below at log-scale-min (gradient zero where
// the clamp is active), in training, evaluation and sampling alike: the
// clamped Normal is the distribution the trained model defines and samples.
// Loss: the exact Normal NLL. Its gradient is exact with respect to the
// log-std but bounded with respect to the mean: each timestep's
// d/dmean = -(y-mean)/std^2 is clamped to +-gaussMeanGradMax (100; see
// there), so where |y-mean| > 100*std^2 the gradient Loss writes is not the
// NLL's. Bits: -log2 of the Normal density at y on [-1,1] (mass outside
// [-1,1] is not renormalised). Sampling: mean + std*N(0,1), clamped to
// [-1,1]. Input: the previous sample as one scalar.
type Gaussian struct{ logScaleMin float64 }

// NewGaussian returns a Gaussian head with the given log-std floor.
func NewGaussian(logScaleMin float64) (*Gaussian, error) {
	if math.IsNaN(logScaleMin) || math.IsInf(logScaleMin, 0) {
		return nil, fmt.Errorf("outputs: gaussian: --log-scale-min must be finite, got %v", logScaleMin)
	}
	return &Gaussian{logScaleMin: logScaleMin}, nil
}

func (g *Gaussian) Name() string { return "gaussian" }
func (g *Gaussian) Spec() string {
	return "gaussian --log-scale-min " + fmtFloat(g.logScaleMin)
}
func (g *Gaussian) Channels() int                        { return 2 }
func (g *Gaussian) InputChannels() int                   { return 1 }
func (g *Gaussian) EncodeInput(y float32, dst []float32) { dst[0] = y }

// LogScaleMin is the log-std floor.
func (g *Gaussian) LogScaleMin() float64 { return g.logScaleMin }

func (g *Gaussian) Loss(logits []float32, stride, T int, targets, mask []float32, grad []float32, gradScale float32) float64 {
	return runLoss(g, "gaussian", logits, stride, T, targets, mask, grad, gradScale)
}

func (g *Gaussian) Bits(logits []float32, stride, T int, targets []float32, out []float64) {
	runBits(g, "gaussian", logits, stride, T, targets, out)
}

func (g *Gaussian) channels() int   { return 2 }
func (g *Gaussian) scratchLen() int { return 0 }
func (g *Gaussian) lossStep(z []float64, y float64, grad, _ []float64) float64 {
	return gaussianLoss(z[0], z[1], g.logScaleMin, y, grad)
}
func (g *Gaussian) logDensity(z []float64, y float64, _ []float64) float64 {
	var d [2]float64
	return -gaussianLoss(z[0], z[1], g.logScaleMin, y, d[:])
}

// gaussMeanGradMax bounds the magnitude of each timestep's gradient of the
// Gaussian NLL with respect to the mean (gaussian.cu's GAUSS_MEAN_GRAD_MAX
// must equal it). The exact gradient, -(y-mean)/std^2, grows as 1/std^2:
// at a log-std of -7 (near silence at a -75 dBFS noise floor) a timestep one
// std off gives about 1,100, against about 20 at a speech-like log-std of -3,
// so the few most confident timesteps set the direction of the whole update,
// and training at lr 1e-3 ran into clusters of loss spikes from which it
// recovered slowly; clipping the global gradient norm, or clipping the
// standardised residual (which leaves the 1/std factor), did not remove them
// (docs/evaluation.md, "Gaussian head loss spikes"). The clamp makes the
// mean's gradient Huber-like: exact while |y-mean| <= 100*std^2 (about 5 std
// at a log-std of -3, 0.7 std at -5, 0.09 std at -7), 100 times the sign of
// the residual beyond. Its zero in a context is still the centre of a
// symmetric residual (otherwise the Huber estimate rather than the mean),
// and the log-std's gradient stays exact, so the std is still fitted to the
// residuals the mean leaves. The loss reported (and Bits) stays the exact
// NLL, which is what heads are compared by.
const gaussMeanGradMax = 100

// gaussianLoss is the Normal NLL of y with mean mu and log-std max(s, smin),
// writing into g d/ds and d/dmu, the latter clamped to
// [-gaussMeanGradMax, gaussMeanGradMax] (NaN passes through). Pure: the CUDA
// kernel mirrors it.
func gaussianLoss(mu, s, smin, y float64, g []float64) float64 {
	clamped := s < smin
	if clamped {
		s = smin
	}
	r := (y - mu) * math.Exp(-s) // standardised residual
	g[0] = clamp(-r*math.Exp(-s), -gaussMeanGradMax, gaussMeanGradMax)
	g[1] = 1 - r*r
	if clamped {
		g[1] = 0
	}
	return 0.5*math.Log(2*math.Pi) + s + 0.5*r*r
}

func (g *Gaussian) Sample(logits []float32, stride int, t float64, rng *rand.Rand) float32 {
	checkOneStep("gaussian", logits, 2, stride, t)
	mu, s := strided(logits, 0, stride), math.Max(strided(logits, 1, stride), g.logScaleMin)
	return float32(clamp(mu+math.Exp(s)*t*rng.NormFloat64(), -1, 1))
}
