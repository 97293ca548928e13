package melspec

import (
	"encoding/json"
	"fmt"
	"math"
	"os"

	"github.com/wavecat/wavecat/internal/atomicfile"
)

// DefaultMinStd is the standard deviation below which a dimension is treated
// as constant.
const DefaultMinStd = 1e-8

// Stats accumulates per-dimension mean and variance over many frames x dim
// arrays in float64 (Chan et al.'s pairwise merge of per-array mean and sum
// of squared deviations), so tens of millions of frames lose no precision.
type Stats struct {
	Dim   int
	Count int64
	mean  []float64
	m2    []float64 // sum of squared deviations from mean
}

// NewStats returns an empty accumulator for dim-dimensional frames.
func NewStats(dim int) *Stats {
	return &Stats{Dim: dim, mean: make([]float64, dim), m2: make([]float64, dim)}
}

// Add folds in a row-major frames x Dim array.
func (s *Stats) Add(x []float32) error {
	if s.Dim <= 0 || len(x)%s.Dim != 0 {
		return fmt.Errorf("melspec: stats: %d values are not a whole number of %d-dim frames", len(x), s.Dim)
	}
	frames := len(x) / s.Dim
	if frames == 0 {
		return nil
	}
	bm := make([]float64, s.Dim)
	bm2 := make([]float64, s.Dim)
	for t := 0; t < frames; t++ {
		for d, v := range x[t*s.Dim : (t+1)*s.Dim] {
			bm[d] += float64(v)
		}
	}
	for d := range bm {
		bm[d] /= float64(frames)
	}
	for t := 0; t < frames; t++ {
		for d, v := range x[t*s.Dim : (t+1)*s.Dim] {
			dv := float64(v) - bm[d]
			bm2[d] += dv * dv
		}
	}
	s.merge(int64(frames), bm, bm2)
	return nil
}

// Merge folds another accumulator in (for per-worker accumulation).
func (s *Stats) Merge(o *Stats) error {
	if o.Dim != s.Dim {
		return fmt.Errorf("melspec: stats: cannot merge dim %d into dim %d", o.Dim, s.Dim)
	}
	if o.Count > 0 {
		s.merge(o.Count, o.mean, o.m2)
	}
	return nil
}

func (s *Stats) merge(nb int64, bm, bm2 []float64) {
	na := s.Count
	n := na + nb
	for d := range s.mean {
		delta := bm[d] - s.mean[d]
		s.mean[d] += delta * float64(nb) / float64(n)
		s.m2[d] += bm2[d] + delta*delta*float64(na)*float64(nb)/float64(n)
	}
	s.Count = n
}

// Mean returns a copy of the per-dimension mean.
func (s *Stats) Mean() []float64 { return append([]float64(nil), s.mean...) }

// Std returns the per-dimension population standard deviation (ddof 0, as
// sklearn/nnmnkwii's incremental mean-and-variance).
func (s *Stats) Std() []float64 {
	out := make([]float64, s.Dim)
	if s.Count == 0 {
		return out
	}
	for d, v := range s.m2 {
		out[d] = math.Sqrt(v / float64(s.Count))
	}
	return out
}

// Normalizer returns the mean/std pair to apply. A dimension whose std is
// below minStd gets std 1 (sklearn's handling of constant features): it is
// centred but not blown up by a near-zero divisor.
func (s *Stats) Normalizer(minStd float64) (*Normalizer, error) {
	if s.Count == 0 {
		return nil, fmt.Errorf("melspec: stats: no frames accumulated")
	}
	std := s.Std()
	for d, v := range std {
		if v < minStd {
			std[d] = 1
		}
	}
	return &Normalizer{Count: s.Count, Mean: s.Mean(), Std: std}, nil
}

// Normalizer maps features to zero mean and unit variance per dimension and
// back. It is what gets saved next to a dataset and a model.
type Normalizer struct {
	Count int64     `json:"count"`
	Mean  []float64 `json:"mean"`
	Std   []float64 `json:"std"`
}

// Dim is the feature dimension.
func (n *Normalizer) Dim() int { return len(n.Mean) }

// Apply replaces each value of a frames x Dim array by (x-mean)/std.
func (n *Normalizer) Apply(x []float32) error {
	if err := n.check(x); err != nil {
		return err
	}
	d := n.Dim()
	for i := range x {
		k := i % d
		x[i] = float32((float64(x[i]) - n.Mean[k]) / n.Std[k])
	}
	return nil
}

// Invert undoes Apply: x*std + mean.
func (n *Normalizer) Invert(x []float32) error {
	if err := n.check(x); err != nil {
		return err
	}
	d := n.Dim()
	for i := range x {
		k := i % d
		x[i] = float32(float64(x[i])*n.Std[k] + n.Mean[k])
	}
	return nil
}

func (n *Normalizer) check(x []float32) error {
	if n.Dim() == 0 || len(n.Std) != n.Dim() {
		return fmt.Errorf("melspec: normalizer has %d means and %d stds", len(n.Mean), len(n.Std))
	}
	if len(x)%n.Dim() != 0 {
		return fmt.Errorf("melspec: %d values are not a whole number of %d-dim frames", len(x), n.Dim())
	}
	return nil
}

// Save writes the normalizer as JSON atomically.
func (n *Normalizer) Save(path string) error {
	data, err := json.MarshalIndent(n, "", " ")
	if err != nil {
		return fmt.Errorf("melspec: encoding normalizer for %s: %w", path, err)
	}
	return atomicfile.WriteBytes(path, append(data, '\n'), 0o644)
}

// LoadNormalizer reads a normalizer written by Save and checks it.
func LoadNormalizer(path string) (*Normalizer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("melspec: reading normalizer: %w", err)
	}
	var n Normalizer
	if err := json.Unmarshal(data, &n); err != nil {
		return nil, fmt.Errorf("melspec: %s: not a normalizer JSON: %w", path, err)
	}
	if len(n.Mean) == 0 || len(n.Mean) != len(n.Std) {
		return nil, fmt.Errorf("melspec: %s: %d means and %d stds", path, len(n.Mean), len(n.Std))
	}
	for d, s := range n.Std {
		if !(s > 0) || math.IsInf(s, 0) || math.IsNaN(n.Mean[d]) || math.IsInf(n.Mean[d], 0) {
			return nil, fmt.Errorf("melspec: %s: dimension %d has mean %g and std %g", path, d, n.Mean[d], s)
		}
	}
	return &n, nil
}
