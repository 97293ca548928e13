package outputs

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/wavecat/wavecat/mulaw"
)

// categoricalLoss is softmax cross-entropy for class q over logits z; it
// writes softmax(z) - onehot(q) into g. Pure: the CUDA kernel mirrors it.
func categoricalLoss(z []float64, q int, g []float64) float64 {
	ls := softmax(z, g)
	g[q]--
	return ls - z[q]
}

// logSoftmaxAt is log softmax(z)_q.
func logSoftmaxAt(z []float64, q int) float64 { return z[q] - logSumExp(z) }

func oneHot(q int, dst []float32) {
	for i := range dst {
		dst[i] = 0
	}
	dst[q] = 1
}

// Categorical is Q equal-width bins on [-1,1] (width 2/Q), trained with
// softmax cross-entropy. Channels: Q logits. Input: one-hot of the previous
// sample's bin. Class of y: floor((y+1)/2*Q), clamped to [0,Q-1].
// Bits: the class mass spread uniformly over its bin, -log2(P(q)*Q/2).
// Sampling: a class from the softmax, then y uniform within its bin (the
// sampler matches the evaluation density; the bin centre would put all mass
// on Q points).
type Categorical struct{ q int }

// NewCategorical returns a uniform categorical head with bins classes.
func NewCategorical(bins int) (*Categorical, error) {
	if bins < 2 {
		return nil, fmt.Errorf("outputs: categorical: --bins must be >= 2, got %d", bins)
	}
	if bins > MaxChannels {
		return nil, fmt.Errorf("outputs: categorical: --bins %d exceeds the limit %d", bins, MaxChannels)
	}
	return &Categorical{q: bins}, nil
}

func (c *Categorical) Name() string       { return "categorical" }
func (c *Categorical) Spec() string       { return fmt.Sprintf("categorical --bins %d", c.q) }
func (c *Categorical) Channels() int      { return c.q }
func (c *Categorical) InputChannels() int { return c.q }

// Bins is the number of classes Q.
func (c *Categorical) Bins() int { return c.q }

// Class is the bin of amplitude y.
func (c *Categorical) Class(y float64) int {
	return int(clamp(math.Floor((y+1)/2*float64(c.q)), 0, float64(c.q-1)))
}

func (c *Categorical) EncodeInput(y float32, dst []float32) { oneHot(c.Class(float64(y)), dst) }

func (c *Categorical) Loss(logits []float32, stride, T int, targets, mask []float32, grad []float32, gradScale float32) float64 {
	return runLoss(c, "categorical", logits, stride, T, targets, mask, grad, gradScale)
}

func (c *Categorical) Bits(logits []float32, stride, T int, targets []float32, out []float64) {
	runBits(c, "categorical", logits, stride, T, targets, out)
}

func (c *Categorical) channels() int   { return c.q }
func (c *Categorical) scratchLen() int { return 0 }
func (c *Categorical) lossStep(z []float64, y float64, g, _ []float64) float64 {
	return categoricalLoss(z, c.Class(y), g)
}
func (c *Categorical) logDensity(z []float64, y float64, _ []float64) float64 {
	return logSoftmaxAt(z, c.Class(y)) + math.Log(float64(c.q)/2)
}

func (c *Categorical) Sample(logits []float32, stride int, t float64, rng *rand.Rand) float32 {
	checkOneStep("categorical", logits, c.q, stride, t)
	q := sampleSoftmax(logits, 0, c.q, stride, t, rng)
	y := -1 + (float64(q)+rng.Float64())*2/float64(c.q)
	return float32(clamp(y, -1, 1))
}

// MuLaw is the mu-law categorical head of the reference vocoder: Q classes,
// mu = Q-1, class q = floor((compand(y)+1)/2*mu) (nnmnkwii's quantizer: class
// q < mu covers companded values [2q/mu-1, 2(q+1)/mu-1); class mu is the
// single point y = 1). Channels: Q logits, softmax cross-entropy. Input:
// one-hot of the previous sample's class.
//
// Bits: each class mass is spread uniformly over its mu-law bin of width
// 2/mu and mapped to amplitude with the Jacobian J(y) = (mu/ln(1+mu)) /
// (1+mu|y|): p(y) = P(q) * mu/2 * J(y). y = 1 is scored in bin mu-1 (the
// last bin of positive width); class mu's mass is a point at y = 1 that the
// continuous density does not carry.
//
// Sampling: a class q from the softmax, y = mulaw.Centre(q): the centre of
// its mu-law bin, whose class is q again, so the one-hot fed back is the one
// training used. (The reference's inv_mulaw_quantize gives the bin's lower
// edge, which in float re-encodes to q-1 for about half the classes.)
// Samples sit on Q points.
type MuLaw struct{ q, mu int }

// NewMuLaw returns a mu-law categorical head with bins classes (mu = bins-1).
func NewMuLaw(bins int) (*MuLaw, error) {
	if bins < 3 {
		return nil, fmt.Errorf("outputs: mulaw: --bins must be >= 3, got %d", bins)
	}
	if bins > MaxChannels {
		return nil, fmt.Errorf("outputs: mulaw: --bins %d exceeds the limit %d", bins, MaxChannels)
	}
	return &MuLaw{q: bins, mu: bins - 1}, nil
}

func (m *MuLaw) Name() string       { return "mulaw" }
func (m *MuLaw) Spec() string       { return fmt.Sprintf("mulaw --bins %d", m.q) }
func (m *MuLaw) Channels() int      { return m.q }
func (m *MuLaw) InputChannels() int { return m.q }

// Bins is the number of classes Q; Mu is Q-1.
func (m *MuLaw) Bins() int { return m.q }
func (m *MuLaw) Mu() int   { return m.mu }

// Class is the quantized mu-law class of amplitude y.
func (m *MuLaw) Class(y float64) int { return mulaw.Quantize(y, m.mu) }

func (m *MuLaw) EncodeInput(y float32, dst []float32) { oneHot(m.Class(float64(y)), dst) }

func (m *MuLaw) Loss(logits []float32, stride, T int, targets, mask []float32, grad []float32, gradScale float32) float64 {
	return runLoss(m, "mulaw", logits, stride, T, targets, mask, grad, gradScale)
}

func (m *MuLaw) Bits(logits []float32, stride, T int, targets []float32, out []float64) {
	runBits(m, "mulaw", logits, stride, T, targets, out)
}

func (m *MuLaw) channels() int   { return m.q }
func (m *MuLaw) scratchLen() int { return 0 }
func (m *MuLaw) lossStep(z []float64, y float64, g, _ []float64) float64 {
	return categoricalLoss(z, m.Class(y), g)
}
func (m *MuLaw) logDensity(z []float64, y float64, _ []float64) float64 {
	q := min(m.Class(y), m.q-2)
	return logSoftmaxAt(z, q) + math.Log(float64(m.mu)/2) + mulaw.LogJacobian(clamp(y, -1, 1), float64(m.mu))
}

func (m *MuLaw) Sample(logits []float32, stride int, t float64, rng *rand.Rand) float32 {
	checkOneStep("mulaw", logits, m.q, stride, t)
	q := sampleSoftmax(logits, 0, m.q, stride, t, rng)
	return m.Representative(q)
}

// Representative is the amplitude Sample returns for class q: float32 of
// mulaw.Centre(q, mu); Class gives q back for every class.
func (m *MuLaw) Representative(q int) float32 {
	return float32(mulaw.Centre(q, m.mu))
}
