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
// Loss: Normal NLL. Bits: -log2 of the Normal density at y on [-1,1] (mass
// outside [-1,1] is not renormalised). Sampling: mean + std*N(0,1), clamped to
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

// gaussianLoss is the Normal NLL of y with mean mu and log-std max(s, smin),
// writing d/dmu and d/ds into g. Pure: the CUDA kernel mirrors it.
func gaussianLoss(mu, s, smin, y float64, g []float64) float64 {
	clamped := s < smin
	if clamped {
		s = smin
	}
	r := (y - mu) * math.Exp(-s) // standardised residual
	g[0] = -r * math.Exp(-s)
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
