package train

import (
	"fmt"
	"math"
	"strings"

	"github.com/wavecat/wavecat/compute"
)

// AdamConfig holds Adam's constant hyperparameters (the learning rate comes
// from the Schedule at every step).
type AdamConfig struct {
	Beta1 float32 `json:"beta1"`
	Beta2 float32 `json:"beta2"`
	Eps   float32 `json:"eps"`
}

// DefaultAdam is r9y9's (and PyTorch's default) setting.
func DefaultAdam() AdamConfig { return AdamConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8} }

func (c AdamConfig) validate() error {
	if !(c.Beta1 >= 0 && c.Beta1 < 1) || !(c.Beta2 >= 0 && c.Beta2 < 1) {
		return fmt.Errorf("adam: betas (%g, %g) must be in [0, 1)", c.Beta1, c.Beta2)
	}
	if !(c.Eps > 0) {
		return fmt.Errorf("adam: eps %g must be positive", c.Eps)
	}
	return nil
}

// Adam is PyTorch's Adam (no weight decay, no amsgrad) over one flat
// parameter buffer of n elements. It owns m, v (on the backend) and the step
// counter; the update itself is the backend's Adam kernel:
//
//	m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//	p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
type Adam struct {
	be   compute.Backend
	cfg  AdamConfig
	n    int
	m, v compute.Buffer
	step int
}

// NewAdam allocates zeroed moments for n parameters.
func NewAdam(be compute.Backend, n int, cfg AdamConfig) (*Adam, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if n <= 0 {
		return nil, fmt.Errorf("adam: %d parameters, want > 0", n)
	}
	return &Adam{be: be, cfg: cfg, n: n, m: be.Alloc(n), v: be.Alloc(n)}, nil
}

// N is the number of parameters.
func (a *Adam) N() int { return a.n }

// Config returns the hyperparameters.
func (a *Adam) Config() AdamConfig { return a.cfg }

// Steps is the number of updates applied so far.
func (a *Adam) Steps() int { return a.step }

// Step applies one update with learning rate lr. n must equal N(): the
// moments cover the whole parameter buffer, so a partial update would
// silently desynchronise them.
func (a *Adam) Step(params, grads compute.View, n int, lr float32) {
	if n != a.n {
		panic(fmt.Sprintf("train: Adam.Step with n=%d, optimizer has %d parameters", n, a.n))
	}
	a.step++
	a.be.Adam(params, grads, compute.V(a.m), compute.V(a.v), n, compute.AdamParams{
		LR: lr, Beta1: a.cfg.Beta1, Beta2: a.cfg.Beta2, Eps: a.cfg.Eps, Step: a.step,
	})
}

// State downloads m and v and returns them with the step count.
func (a *Adam) State() (m, v []float32, step int) {
	m = make([]float32, a.n)
	v = make([]float32, a.n)
	a.be.Download(m, compute.V(a.m))
	a.be.Download(v, compute.V(a.v))
	return m, v, a.step
}

// SetState uploads m and v and sets the step count (resume).
func (a *Adam) SetState(m, v []float32, step int) error {
	if len(m) != a.n || len(v) != a.n {
		return fmt.Errorf("adam: state has %d/%d moments, optimizer has %d parameters", len(m), len(v), a.n)
	}
	if step < 0 {
		return fmt.Errorf("adam: negative step %d", step)
	}
	a.be.Upload(compute.V(a.m), m)
	a.be.Upload(compute.V(a.v), v)
	a.step = step
	return nil
}

// Free releases the moment buffers.
func (a *Adam) Free() {
	a.be.Free(a.m)
	a.be.Free(a.v)
	a.m, a.v = nil, nil
}

// Moments returns m and v on the backend, e.g. for a model's own exporter
// (wavenet stores conv weights tap-major: its Model.ExportBuffer turns these
// buffers into PyTorch-layout tensors; then use AdamTensors).
func (a *Adam) Moments() (m, v compute.View) { return compute.V(a.m), compute.V(a.v) }

// SetSteps sets the step counter (resume after filling Moments directly).
func (a *Adam) SetSteps(step int) error {
	if step < 0 {
		return fmt.Errorf("adam: negative step %d", step)
	}
	a.step = step
	return nil
}

// Export returns the state as checkpoint tensors via Split: use it when the
// flat buffer holds each tensor in its own row-major order (else Moments plus
// the model's exporter plus AdamTensors).
func (a *Adam) Export(layout []Spec) ([]Tensor, AdamState, error) {
	m, v, step := a.State()
	ms, err := Split(m, layout)
	if err != nil {
		return nil, AdamState{}, fmt.Errorf("adam: %w", err)
	}
	vs, err := Split(v, layout)
	if err != nil {
		return nil, AdamState{}, fmt.Errorf("adam: %w", err)
	}
	return AdamTensors(ms, vs), AdamState{AdamConfig: a.cfg, Step: int64(step)}, nil
}

// Import restores the state written by Export; every tensor must be present
// with its layout shape, and the hyperparameters must match.
func (a *Adam) Import(ts []Tensor, st AdamState, layout []Spec) error {
	if st.AdamConfig != a.cfg {
		return fmt.Errorf("adam: checkpoint hyperparameters %+v differ from the optimizer's %+v", st.AdamConfig, a.cfg)
	}
	if st.Step < 0 || st.Step > math.MaxInt32 {
		return fmt.Errorf("adam: step %d out of range", st.Step)
	}
	ms, vs, err := SplitAdamTensors(ts)
	if err != nil {
		return err
	}
	m := make([]float32, a.n)
	v := make([]float32, a.n)
	if err := Join(m, ms, layout); err != nil {
		return fmt.Errorf("adam: exp_avg: %w", err)
	}
	if err := Join(v, vs, layout); err != nil {
		return fmt.Errorf("adam: exp_avg_sq: %w", err)
	}
	return a.SetState(m, v, int(st.Step))
}

// Suffixes of the optimizer tensors (PyTorch's names for Adam's m and v).
const (
	ExpAvgSuffix   = ".exp_avg"
	ExpAvgSqSuffix = ".exp_avg_sq"
)

// AdamTensors names moment tensors for optimizer.safetensors: m[i] becomes
// "<name>.exp_avg" and v[i] "<name>.exp_avg_sq", interleaved.
func AdamTensors(m, v []Tensor) []Tensor {
	out := make([]Tensor, 0, len(m)+len(v))
	for _, t := range m {
		t.Name += ExpAvgSuffix
		out = append(out, t)
	}
	for _, t := range v {
		t.Name += ExpAvgSqSuffix
		out = append(out, t)
	}
	return out
}

// SplitAdamTensors undoes AdamTensors: it returns m and v under the parameter
// names (same order), refusing other names and any m without its v.
func SplitAdamTensors(ts []Tensor) (m, v []Tensor, err error) {
	for _, t := range ts {
		switch {
		case strings.HasSuffix(t.Name, ExpAvgSqSuffix):
			t.Name = strings.TrimSuffix(t.Name, ExpAvgSqSuffix)
			v = append(v, t)
		case strings.HasSuffix(t.Name, ExpAvgSuffix):
			t.Name = strings.TrimSuffix(t.Name, ExpAvgSuffix)
			m = append(m, t)
		default:
			return nil, nil, fmt.Errorf("adam: optimizer tensor %q is neither *%s nor *%s", t.Name, ExpAvgSuffix, ExpAvgSqSuffix)
		}
	}
	if err := CheckTensors(v, Shapes(m)); err != nil {
		return nil, nil, fmt.Errorf("adam: exp_avg_sq does not match exp_avg: %w", err)
	}
	return m, v, nil
}

// adamShapes is the optimizer tensor table implied by a weights table.
func adamShapes(weights []Tensor) map[string][]int {
	want := make(map[string][]int, 2*len(weights))
	for _, t := range weights {
		want[t.Name+ExpAvgSuffix] = t.Shape
		want[t.Name+ExpAvgSqSuffix] = t.Shape
	}
	return want
}

// ClipGradNorm scales the n gradients in place so their L2 norm is at most
// maxNorm, like torch.nn.utils.clip_grad_norm_ (factor maxNorm/(norm+1e-6),
// applied only when below 1). It returns the norm before clipping. A
// non-finite norm leaves the gradients untouched so the caller can skip the
// step. r9y9's default is no clipping; call this only when configured.
func ClipGradNorm(be compute.Backend, grads compute.View, n int, maxNorm float64) float64 {
	norm := math.Sqrt(be.SumSquares(grads, n))
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		return norm
	}
	if c := maxNorm / (norm + 1e-6); c < 1 {
		be.Scale(grads, n, float32(c))
	}
	return norm
}
