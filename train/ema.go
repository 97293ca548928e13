package train

import (
	"fmt"

	"github.com/wavecat/wavecat/compute"
)

// DefaultEMADecay is r9y9's; the EMA weights are the ones evaluated and shipped.
const DefaultEMADecay = 0.9999

// EMA keeps an exponential moving average of a flat parameter buffer,
// ema = decay*ema + (1-decay)*param (no bias correction), started as a copy
// of the weights so early averages are not pulled towards zero.
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

// Update folds the current parameters (n of them, n == N()) into the average.
func (e *EMA) Update(params compute.View, n int) {
	if n != e.n {
		panic(fmt.Sprintf("train: EMA.Update with n=%d, average has %d parameters", n, e.n))
	}
	e.be.EMA(compute.V(e.buf), params, n, e.decay)
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
