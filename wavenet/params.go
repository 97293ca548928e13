package wavenet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/wavecat/wavecat/compute"
)

// TensorInfo places one named parameter in the flat parameter (and
// gradient) buffer. Names and Shape follow the r9y9 PyTorch state_dict.
// Conv1d weights with kernel size K > 1 are stored tap-major [K][out][in]
// (TapMajor true) so each tap is a plain GEMM operand; everything else is
// stored in PyTorch order.
type TensorInfo struct {
	Name     string
	Shape    []int
	Offset   int
	Size     int
	TapMajor bool
}

// Tensor is a host copy of one parameter in PyTorch layout (row-major over
// Shape), the unit checkpoints are saved and loaded in.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// conv is one convolution's parameters and where its effective weight lives.
type conv struct {
	prefix  string
	out, in int
	k       int  // taps (row width for the upsampler's 2-D convs)
	row     bool // upsampler Conv2d(1,1,(1,k)): PyTorch shapes [1,1,1,k]
	wn      bool
	bias    bool
	init    convInit
	// Offsets in the parameter buffer (-1 when absent). wOff is weight_v
	// under weight norm, the plain weight otherwise.
	wOff, gOff, bOff int
	// effOff is the offset of the effective (normalised) weight in the
	// model's eff buffer when wn.
	effOff int
}

type convInit int

const (
	initKaimingNormal convInit = iota // r9y9 Conv1d: kaiming_normal_(relu), bias 0
	initTorchDefault                  // plain nn.Conv1d: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
	initConstant                      // upsampler: 1/(2s+1)
)

func (c *conv) wLen() int { return c.out * c.in * c.k }

// paramRange is the span [lo, hi) of the flat parameter buffer that holds
// this conv's tensors (bias, g, v or weight, laid out together by addConv).
func (c *conv) paramRange() (lo, hi int) {
	lo, hi = math.MaxInt, 0
	for _, r := range [][2]int{{c.bOff, c.out}, {c.gOff, c.out}, {c.wOff, c.wLen()}} {
		if r[0] >= 0 {
			lo, hi = min(lo, r[0]), max(hi, r[0]+r[1])
		}
	}
	return lo, hi
}

// addConv appends the conv's tensors to the table in state_dict order
// (bias, weight_g, weight_v under weight norm; weight, bias otherwise).
func (m *Model) addConv(c *conv) {
	wShape := []int{c.out, c.in, c.k}
	gShape := []int{c.out, 1, 1}
	if c.row {
		wShape = []int{1, 1, 1, c.k}
		gShape = []int{1, 1, 1, 1}
	}
	add := func(suffix string, shape []int, tap bool) int {
		n := 1
		for _, d := range shape {
			n *= d
		}
		off := m.nParams
		m.tensors = append(m.tensors, TensorInfo{Name: c.prefix + "." + suffix, Shape: shape, Offset: off, Size: n, TapMajor: tap})
		m.nParams += n
		return off
	}
	tap := !c.row && c.k > 1
	c.wOff, c.gOff, c.bOff, c.effOff = -1, -1, -1, -1
	if c.wn {
		if c.bias {
			c.bOff = add("bias", []int{c.out}, false)
		}
		c.gOff = add("weight_g", gShape, false)
		c.wOff = add("weight_v", wShape, tap)
		c.effOff = m.nEff
		m.nEff += c.wLen()
	} else {
		c.wOff = add("weight", wShape, tap)
		if c.bias {
			c.bOff = add("bias", []int{c.out}, false)
		}
	}
	m.convs = append(m.convs, c)
}

// initParams fills a host copy of the parameters the way r9y9 initialises
// them, from a seeded RNG so runs are reproducible.
func (m *Model) initParams(seed int64) []float32 {
	p := make([]float32, m.nParams)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
	for _, c := range m.convs {
		w := p[c.wOff : c.wOff+c.wLen()]
		fanIn := float64(c.in * c.k)
		switch c.init {
		case initKaimingNormal:
			std := math.Sqrt(2 / fanIn)
			for i := range w {
				w[i] = float32(rng.NormFloat64() * std)
			}
		case initTorchDefault:
			b := 1 / math.Sqrt(fanIn)
			for i := range w {
				w[i] = float32((2*rng.Float64() - 1) * b)
			}
		case initConstant:
			for i := range w {
				w[i] = float32(1 / float64(c.k))
			}
		}
		if c.wn {
			// weight_norm starts with g = ||v|| per output row, so the
			// effective weight equals the initialised one.
			for o := 0; o < c.out; o++ {
				var ss float64
				for t := 0; t < c.k; t++ {
					for i := 0; i < c.in; i++ {
						x := float64(w[c.tapIndex(t, o, i)])
						ss += x * x
					}
				}
				p[c.gOff+o] = float32(math.Sqrt(ss))
			}
		}
		// Biases start at 0 (r9y9 sets them to 0; p is zero-filled).
	}
	return p
}

// tapIndex is the internal offset of weight element (tap t, out o, in i).
func (c *conv) tapIndex(t, o, i int) int {
	if c.row {
		return t
	}
	return (t*c.out+o)*c.in + i
}

// Tensors returns the parameter table in r9y9 state_dict order.
func (m *Model) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(m.tensors))
	for i, t := range m.tensors {
		t.Shape = slices.Clone(t.Shape)
		out[i] = t
	}
	return out
}

// Tensor looks a parameter up by its state_dict name.
func (m *Model) Tensor(name string) (TensorInfo, bool) {
	i, ok := m.byName[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := m.tensors[i]
	t.Shape = slices.Clone(t.Shape)
	return t, true
}

// toTorch converts one stored tensor to PyTorch layout.
func toTorch(t TensorInfo, src []float32) []float32 {
	dst := make([]float32, t.Size)
	if !t.TapMajor {
		copy(dst, src)
		return dst
	}
	out, in, k := t.Shape[0], t.Shape[1], t.Shape[2]
	for tap := 0; tap < k; tap++ {
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				dst[(o*in+i)*k+tap] = src[(tap*out+o)*in+i]
			}
		}
	}
	return dst
}

// fromTorch converts a PyTorch-layout tensor to the stored layout.
func fromTorch(t TensorInfo, src []float32, dst []float32) {
	if !t.TapMajor {
		copy(dst, src)
		return
	}
	out, in, k := t.Shape[0], t.Shape[1], t.Shape[2]
	for tap := 0; tap < k; tap++ {
		for o := 0; o < out; o++ {
			for i := 0; i < in; i++ {
				dst[(tap*out+o)*in+i] = src[(o*in+i)*k+tap]
			}
		}
	}
}

// ExportTensors copies the parameters to the host in PyTorch layout, in
// state_dict order.
func (m *Model) ExportTensors() []Tensor {
	return m.exportFrom(m.params)
}

// ExportGradTensors is ExportTensors for the gradient buffer (debugging,
// reference comparisons).
func (m *Model) ExportGradTensors() []Tensor {
	return m.exportFrom(m.grads)
}

// ExportBuffer exports any buffer laid out like the parameters (an EMA or
// Adam moment copy) in PyTorch layout.
func (m *Model) ExportBuffer(v compute.View) []Tensor {
	return m.exportFromView(v)
}

func (m *Model) exportFrom(b compute.Buffer) []Tensor { return m.exportFromView(compute.V(b)) }

func (m *Model) exportFromView(v compute.View) []Tensor {
	host := make([]float32, m.nParams)
	m.be.Download(host, v)
	out := make([]Tensor, len(m.tensors))
	for i, t := range m.tensors {
		out[i] = Tensor{Name: t.Name, Shape: slices.Clone(t.Shape), Data: toTorch(t, host[t.Offset:t.Offset+t.Size])}
	}
	return out
}

// ImportTensors loads PyTorch-layout tensors into the parameters. Every
// parameter must be present with its exact shape; unknown names are errors
// too, so a checkpoint of a different architecture cannot half-load.
func (m *Model) ImportTensors(ts []Tensor) error {
	return m.ImportBuffer(compute.V(m.params), ts)
}

// ImportBuffer is ImportTensors into any buffer laid out like the
// parameters (EMA weights, optimiser moments).
func (m *Model) ImportBuffer(dst compute.View, ts []Tensor) error {
	host := make([]float32, m.nParams)
	seen := make([]bool, len(m.tensors))
	for _, t := range ts {
		i, ok := m.byName[t.Name]
		if !ok {
			return fmt.Errorf("wavenet: import: unknown tensor %q (not in this model's architecture)", t.Name)
		}
		info := m.tensors[i]
		if !slices.Equal(info.Shape, t.Shape) {
			return fmt.Errorf("wavenet: import: tensor %q has shape %v, model expects %v", t.Name, t.Shape, info.Shape)
		}
		if len(t.Data) != info.Size {
			return fmt.Errorf("wavenet: import: tensor %q has %d values, shape %v needs %d", t.Name, len(t.Data), t.Shape, info.Size)
		}
		if seen[i] {
			return fmt.Errorf("wavenet: import: tensor %q given twice", t.Name)
		}
		seen[i] = true
		fromTorch(info, t.Data, host[info.Offset:info.Offset+info.Size])
	}
	for i, s := range seen {
		if !s {
			return fmt.Errorf("wavenet: import: tensor %q missing", m.tensors[i].Name)
		}
	}
	m.be.Upload(dst, host)
	return nil
}
