// Package wavenet is the WaveNet vocoder network of r9y9/wavenet_vocoder
// (current LJSpeech recipe) written against compute.Backend: a conditioning
// upsampler, a stack of gated residual blocks with dilated causal
// convolutions, and a ReLU/1x1 output head, with explicit per-layer forward
// and backward passes over one flat parameter buffer.
package wavenet

import (
	"errors"
	"fmt"
	"strings"
)

// Config is the network shape. JSON names follow r9y9's hparams so a
// checkpoint's config reads naturally next to the reference's.
type Config struct {
	Layers           int `json:"layers"`
	Stacks           int `json:"stacks"`
	ResidualChannels int `json:"residual_channels"`
	GateChannels     int `json:"gate_channels"`
	SkipChannels     int `json:"skip_out_channels"`
	KernelSize       int `json:"kernel_size"`
	// CinChannels is the number of mel bins; CinPad the context frames on
	// each side that conv_in consumes (kernel 2*CinPad+1, no padding).
	CinChannels    int   `json:"cin_channels"`
	CinPad         int   `json:"cin_pad"`
	UpsampleScales []int `json:"upsample_scales"`
	// InputChannels is 1 for a scalar waveform input, Q for one-hot input.
	InputChannels int `json:"in_channels"`
	// ExcitationChannels are extra input channels after the waveform's: a
	// source signal derived from the mel (package excitation), known for
	// every sample before synthesis starts. 0 (the reference) means none.
	ExcitationChannels int `json:"excitation_channels,omitempty"`
	// LagTaps are input channels after the excitation's: the companded
	// sample one pitch period back (LagInput), the period read from the
	// same mel as the excitation, so they need excitation channels. 0 (the
	// reference) means none.
	LagTaps     int `json:"lag_taps,omitempty"`
	OutChannels int `json:"out_channels"`
	// Dropout must be 0: dropout is not implemented (the reference recipe
	// trains without it).
	Dropout    float64 `json:"dropout"`
	WeightNorm bool    `json:"weight_normalization"`
}

// ReferenceConfig is the r9y9 LJSpeech recipe used by the AdaCat paper:
// 24 layers in 4 stacks, 128/256/128 channels, kernel 3, 80 mels with 2
// frames of context, x256 upsampling, weight norm everywhere.
func ReferenceConfig(outChannels, inputChannels int) Config {
	return Config{
		Layers: 24, Stacks: 4,
		ResidualChannels: 128, GateChannels: 256, SkipChannels: 128,
		KernelSize:  3,
		CinChannels: 80, CinPad: 2,
		UpsampleScales: []int{4, 4, 4, 4},
		InputChannels:  inputChannels, OutChannels: outChannels,
		WeightNorm: true,
	}
}

// TinyConfig is a small network of the same structure for fast tests and
// smoke runs: 4 layers in 2 stacks, 16/32/16 channels, hop 4.
func TinyConfig(outChannels, inputChannels, cinChannels int) Config {
	return Config{
		Layers: 4, Stacks: 2,
		ResidualChannels: 16, GateChannels: 32, SkipChannels: 16,
		KernelSize:  3,
		CinChannels: cinChannels, CinPad: 2,
		UpsampleScales: []int{2, 2},
		InputChannels:  inputChannels, OutChannels: outChannels,
		WeightNorm: true,
	}
}

// Limits on a Config. A config may come from an untrusted checkpoint, and
// New, workspaces and generators allocate in proportion to it, so every
// field is bounded before anything else is derived from it (without bounds
// residual_channels 1e9 or cin_pad 1e8 end in a fatal out-of-memory and
// layers 2e9 in a hang). The bounds are generous for real models: the
// reference is 24 layers, 128/256/128 channels, kernel 3, 80 mels, hop 256,
// a 505-sample receptive field and 4.7 M parameters. A loader must still
// compare Tensors() with the tensors actually present in the file: the
// limits only keep that comparison (and any error path) cheap.
const (
	MaxLayers = 1024
	// MaxChannels bounds residual, skip and mel (cin) channels; gate
	// channels, split into tanh and sigmoid halves, may be twice as many.
	MaxChannels = 4096
	// MaxIOChannels bounds in/out channels, which the output head decides
	// (a 16-bit categorical needs 65536).
	MaxIOChannels     = 1 << 16
	MaxKernelSize     = 64
	MaxCinPad         = 32 // conv_in kernel 2*cin_pad+1 <= 65
	MaxUpsampleScales = 16
	MaxHopSize        = 1 << 14
	// MaxLayersPerStack keeps dilations (2^(layer in stack)) within
	// MaxReceptiveField; the reference has 6, r9y9's mu-law recipe 10.
	MaxLayersPerStack = 21
	// MaxReceptiveField bounds the samples one output depends on; the
	// generator keeps about that many past activations per channel.
	MaxReceptiveField = 1 << 20
	// MaxParams bounds the parameter count (4 GiB of float32).
	MaxParams = 1 << 30
	// MaxExcitationChannels bounds excitation_channels (excitation uses 2).
	MaxExcitationChannels = 16
)

// FirstConvInputs is the number of input channels first_conv reads: the
// encoded previous sample's, then the excitation's, then the pitch lag's.
// A network input x is [B][FirstConvInputs][T].
func (c Config) FirstConvInputs() int { return c.InputChannels + c.ExcitationChannels + c.LagTaps }

// Validate reports every problem with the configuration at once, on one
// line (a config is often read from a file and the error names that file).
func (c Config) Validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	limit := func(name string, v, lo, hi int) {
		switch {
		case v < lo:
			bad("%s must be >= %d, got %d", name, lo, v)
		case v > hi:
			bad("%s %d exceeds the limit %d", name, v, hi)
		}
	}
	limit("layers", c.Layers, 1, MaxLayers)
	if c.Stacks <= 0 {
		bad("stacks must be > 0, got %d", c.Stacks)
	} else if c.Layers > 0 && c.Layers%c.Stacks != 0 {
		bad("layers (%d) must be a multiple of stacks (%d)", c.Layers, c.Stacks)
	}
	limit("residual_channels", c.ResidualChannels, 1, MaxChannels)
	if c.GateChannels <= 0 || c.GateChannels%2 != 0 {
		bad("gate_channels must be positive and even (split into tanh/sigmoid halves), got %d", c.GateChannels)
	} else {
		limit("gate_channels", c.GateChannels, 2, 2*MaxChannels)
	}
	limit("skip_out_channels", c.SkipChannels, 1, MaxChannels)
	limit("kernel_size", c.KernelSize, 1, MaxKernelSize)
	if c.CinChannels <= 0 {
		bad("cin_channels must be > 0 (an unconditioned WaveNet is not supported), got %d", c.CinChannels)
	} else {
		limit("cin_channels", c.CinChannels, 1, MaxChannels)
	}
	limit("cin_pad", c.CinPad, 0, MaxCinPad)
	if len(c.UpsampleScales) == 0 {
		bad("upsample_scales must not be empty")
	} else if len(c.UpsampleScales) > MaxUpsampleScales {
		bad("upsample_scales has %d entries, the limit is %d", len(c.UpsampleScales), MaxUpsampleScales)
	} else {
		hop, ok := 1, true
		for i, s := range c.UpsampleScales {
			if s < 1 {
				bad("upsample_scales[%d] must be >= 1, got %d", i, s)
				ok = false
			} else if s > MaxHopSize {
				bad("upsample_scales[%d] %d exceeds the limit %d", i, s, MaxHopSize)
				ok = false
			} else if ok {
				hop *= s // both <= MaxHopSize: no overflow
				if hop > MaxHopSize {
					bad("upsample_scales %v multiply to a hop size over the limit %d", c.UpsampleScales, MaxHopSize)
					ok = false
				}
			}
		}
	}
	if c.InputChannels <= 0 {
		bad("in_channels must be > 0 (1 = scalar input, Q = one-hot), got %d", c.InputChannels)
	} else {
		limit("in_channels", c.InputChannels, 1, MaxIOChannels)
	}
	limit("excitation_channels", c.ExcitationChannels, 0, MaxExcitationChannels)
	limit("lag_taps", c.LagTaps, 0, MaxLagTaps)
	if c.LagTaps > 0 && c.LagTaps%2 == 0 {
		bad("lag_taps must be odd (taps centred on the period), got %d", c.LagTaps)
	}
	if c.LagTaps > 0 && c.ExcitationChannels == 0 {
		bad("lag_taps needs excitation channels (the period comes from the excitation's pitch track)")
	}
	limit("out_channels", c.OutChannels, 1, MaxIOChannels)
	if c.Dropout != 0 {
		bad("dropout %g is not supported: dropout is not implemented, set it to 0", c.Dropout)
	}
	// Derived quantities only once every field is in range, so computing
	// them can neither overflow nor loop for long.
	if len(errs) == 0 {
		if perStack := c.Layers / c.Stacks; perStack > MaxLayersPerStack {
			bad("%d layers in %d stacks make %d layers per stack (dilations up to 2^%d), the limit is %d",
				c.Layers, c.Stacks, perStack, perStack-1, MaxLayersPerStack)
		} else if rf := c.ReceptiveField(); rf > MaxReceptiveField {
			bad("the receptive field of %d layers in %d stacks with kernel_size %d is %d samples, the limit is %d",
				c.Layers, c.Stacks, c.KernelSize, rf, MaxReceptiveField)
		}
		if n := c.NumParams(); n > MaxParams {
			bad("%d parameters exceed the limit %d", n, MaxParams)
		}
	}
	if len(errs) > 0 {
		return errors.New("wavenet config: " + strings.Join(errs, "; "))
	}
	return nil
}

// Tensors is the parameter table New builds for c (names, PyTorch shapes,
// offsets and layouts, in state_dict order), computed without allocating any
// parameters so that a loader can compare a checkpoint's tensors with its
// config before building anything. c must be valid (Validate).
func (c Config) Tensors() []TensorInfo {
	var ts []TensorInfo
	n := 0
	add := func(name string, shape []int, tap bool) {
		size := 1
		for _, d := range shape {
			size *= d
		}
		ts = append(ts, TensorInfo{Name: name, Shape: shape, Offset: n, Size: size, TapMajor: tap})
		n += size
	}
	// conv mirrors Model.addConv: bias, weight_g, weight_v under weight
	// norm; weight, bias otherwise.
	conv := func(prefix string, out, in, k int, row, wn, bias bool) {
		w, g := []int{out, in, k}, []int{out, 1, 1}
		if row {
			w, g = []int{1, 1, 1, k}, []int{1, 1, 1, 1}
		}
		tap := !row && k > 1
		if wn {
			if bias {
				add(prefix+".bias", []int{out}, false)
			}
			add(prefix+".weight_g", g, false)
			add(prefix+".weight_v", w, tap)
			return
		}
		add(prefix+".weight", w, tap)
		if bias {
			add(prefix+".bias", []int{out}, false)
		}
	}
	R, G, S, wn := c.ResidualChannels, c.GateChannels, c.SkipChannels, c.WeightNorm
	conv("first_conv", R, c.FirstConvInputs(), 1, false, wn, true)
	for l := 0; l < c.Layers; l++ {
		p := fmt.Sprintf("conv_layers.%d.", l)
		conv(p+"conv", G, R, c.KernelSize, false, wn, true)
		conv(p+"conv1x1c", G, c.CinChannels, 1, false, wn, false)
		conv(p+"conv1x1_out", R, G/2, 1, false, wn, true)
		conv(p+"conv1x1_skip", S, G/2, 1, false, wn, true)
	}
	conv("last_conv_layers.1", S, S, 1, false, wn, true)
	conv("last_conv_layers.3", c.OutChannels, S, 1, false, wn, true)
	conv("upsample_net.conv_in", c.CinChannels, c.CinChannels, 2*c.CinPad+1, false, false, false)
	for i, s := range c.UpsampleScales {
		conv(fmt.Sprintf("upsample_net.upsample.up_layers.%d", 2*i+1), 1, 1, 2*s+1, true, wn, false)
	}
	return ts
}

// NumParams is the number of float32 parameters New allocates for c (c
// must be valid).
func (c Config) NumParams() int {
	n := 0
	for _, t := range c.Tensors() {
		n += t.Size
	}
	return n
}

// Dilation of layer l: 2^(l mod layers-per-stack).
func (c Config) Dilation(l int) int {
	return 1 << (l % (c.Layers / c.Stacks))
}

// ReceptiveField is the number of input samples (the current one included)
// that one output sample depends on.
func (c Config) ReceptiveField() int {
	rf := 1
	for l := 0; l < c.Layers; l++ {
		rf += (c.KernelSize - 1) * c.Dilation(l)
	}
	return rf
}

// HopSize is the number of samples per mel frame: the product of the
// upsampling scales.
func (c Config) HopSize() int {
	h := 1
	for _, s := range c.UpsampleScales {
		h *= s
	}
	return h
}

// MelFrames is the number of mel frames the network input for T samples
// needs: T/hop frames plus CinPad context frames on each side (T must be a
// multiple of the hop size).
func (c Config) MelFrames(T int) int {
	return T/c.HopSize() + 2*c.CinPad
}
