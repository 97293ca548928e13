package train

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/compute"
)

// DefaultEMADecay is r9y9's; the EMA weights are the ones evaluated and shipped.
const DefaultEMADecay = 0.9999

// EMA keeps an exponential moving average of a flat parameter buffer, bias
// corrected the way Adam corrects its moments: after step t it holds
// (1-d)/(1-d^t) * sum_{i<=t} d^(t-i) param_i, the average of the weights
// seen so far with weights d^(t-i) that sum to 1. Without the correction the
// initial weights would keep a share d^t (61% at step 500 with d = 0.999),
// and short runs would be vocoded mostly by their random initialisation.
// The correction needs only t, which checkpoints keep, so resume is exact.
// It is started as a copy of the weights (what it holds before step 1).
type EMA struct {
	be    compute.Backend
	buf   compute.Buffer
	n     int
	decay float32
}

// NewEMA allocates the average and copies the current n parameters into it.
func NewEMA(be compute.Backend, params compute.View, n int, decay float32) (*EMA, error) {
	if !(decay >= 0 && decay <= 1) {
		return nil, fmt.Errorf("ema: decay %g must be in [0, 1]", decay)
	}
	if n <= 0 {
		return nil, fmt.Errorf("ema: %d parameters, want > 0", n)
	}
	e := &EMA{be: be, buf: be.Alloc(n), n: n, decay: decay}
	be.Copy(compute.V(e.buf), params, n)
	return e, nil
}

// Decay returns the decay factor.
func (e *EMA) Decay() float32 { return e.decay }

// Update folds the parameters after optimizer step t (1-based; n of them,
// n == N()) into the average, with DecayAt(t).
func (e *EMA) Update(params compute.View, n int, t int64) {
	if n != e.n {
		panic(fmt.Sprintf("train: EMA.Update with n=%d, average has %d parameters", n, e.n))
	}
	if t < 1 {
		panic(fmt.Sprintf("train: EMA.Update at step %d, want >= 1", t))
	}
	e.be.EMA(compute.V(e.buf), params, n, float32(e.DecayAt(t)))
}

// DecayAt is the factor that keeps the stored average bias corrected from
// step t-1 to t: d(1-d^(t-1))/(1-d^t). It is 0 at step 1 (the average
// becomes the weights) and tends to d; d = 1 freezes the average.
func (e *EMA) DecayAt(t int64) float64 {
	d := float64(e.decay)
	if d >= 1 {
		return 1
	}
	// 1-d^t as -expm1(t ln d) keeps its digits when d is close to 1.
	corr := func(t int64) float64 { return -math.Expm1(float64(t) * math.Log(d)) }
	if d == 0 {
		return 0
	}
	return d * corr(t-1) / corr(t)
}

// N is the number of parameters.
func (e *EMA) N() int { return e.n }

// View is the average on the backend (e.g. to evaluate with EMA weights).
func (e *EMA) View() compute.View { return compute.V(e.buf) }

// Weights downloads the average.
func (e *EMA) Weights() []float32 {
	out := make([]float32, e.n)
	e.be.Download(out, compute.V(e.buf))
	return out
}

// SetWeights uploads a saved average (resume).
func (e *EMA) SetWeights(w []float32) error {
	if len(w) != e.n {
		return fmt.Errorf("ema: %d saved weights, average has %d parameters", len(w), e.n)
	}
	e.be.Upload(compute.V(e.buf), w)
	return nil
}

// Free releases the buffer.
func (e *EMA) Free() {
	e.be.Free(e.buf)
	e.buf = nil
}
