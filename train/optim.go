package train

import (
	"fmt"
	"math"

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

// Export returns the state as checkpoint tensors "<name>.exp_avg" and
// "<name>.exp_avg_sq" per tensor of layout (PyTorch's names for m and v).
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
	out := make([]Tensor, 0, 2*len(layout))
	for i := range layout {
		ms[i].Name += ".exp_avg"
		vs[i].Name += ".exp_avg_sq"
		out = append(out, ms[i], vs[i])
	}
	return out, AdamState{AdamConfig: a.cfg, Step: int64(step)}, nil
}

// Import restores the state written by Export; every tensor must be present
// with its layout shape, and the hyperparameters must match.
func (a *Adam) Import(ts []Tensor, st AdamState, layout []Spec) error {
	if st.AdamConfig != a.cfg {
		return fmt.Errorf("adam: checkpoint hyperparameters %+v differ from the optimizer's %+v", st.AdamConfig, a.cfg)
	}
	if st.Step > math.MaxInt32 {
		return fmt.Errorf("adam: step %d out of range", st.Step)
	}
	want := make(map[string][]int, 2*len(layout))
	for _, s := range layout {
		want[s.Name+".exp_avg"] = s.Shape
		want[s.Name+".exp_avg_sq"] = s.Shape
	}
	if err := CheckTensors(ts, want); err != nil {
		return fmt.Errorf("adam: %w", err)
	}
	by := make(map[string]Tensor, len(ts))
	for _, t := range ts {
		by[t.Name] = t
	}
	m := make([]float32, a.n)
	v := make([]float32, a.n)
	ml := make([]Tensor, len(layout))
	vl := make([]Tensor, len(layout))
	for i, s := range layout {
		ml[i], vl[i] = by[s.Name+".exp_avg"], by[s.Name+".exp_avg_sq"]
		ml[i].Name, vl[i].Name = s.Name, s.Name
	}
	if err := Join(m, ml, layout); err != nil {
		return fmt.Errorf("adam: %w", err)
	}
	if err := Join(v, vl, layout); err != nil {
		return fmt.Errorf("adam: %w", err)
	}
	return a.SetState(m, v, int(st.Step))
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
