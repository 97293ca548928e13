// Package wavenet is the WaveNet vocoder network of r9y9/wavenet_vocoder
// (current LJSpeech recipe) written against compute.Backend: a conditioning
// upsampler, a stack of gated residual blocks with dilated causal
// convolutions, and a ReLU/1x1 output head, with explicit per-layer forward
// and backward passes over one flat parameter buffer.
package wavenet

import (
	"errors"
	"fmt"
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
	OutChannels   int `json:"out_channels"`
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

// Validate reports every problem with the configuration at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Layers <= 0 {
		bad("layers must be > 0, got %d", c.Layers)
	}
	if c.Stacks <= 0 {
		bad("stacks must be > 0, got %d", c.Stacks)
	} else if c.Layers > 0 && c.Layers%c.Stacks != 0 {
		bad("layers (%d) must be a multiple of stacks (%d)", c.Layers, c.Stacks)
	}
	if c.ResidualChannels <= 0 {
		bad("residual_channels must be > 0, got %d", c.ResidualChannels)
	}
	if c.GateChannels <= 0 || c.GateChannels%2 != 0 {
		bad("gate_channels must be positive and even (split into tanh/sigmoid halves), got %d", c.GateChannels)
	}
	if c.SkipChannels <= 0 {
		bad("skip_out_channels must be > 0, got %d", c.SkipChannels)
	}
	if c.KernelSize < 1 {
		bad("kernel_size must be >= 1, got %d", c.KernelSize)
	}
	if c.CinChannels <= 0 {
		bad("cin_channels must be > 0 (an unconditioned WaveNet is not supported), got %d", c.CinChannels)
	}
	if c.CinPad < 0 {
		bad("cin_pad must be >= 0, got %d", c.CinPad)
	}
	if len(c.UpsampleScales) == 0 {
		bad("upsample_scales must not be empty")
	}
	for i, s := range c.UpsampleScales {
		if s < 1 {
			bad("upsample_scales[%d] must be >= 1, got %d", i, s)
		}
	}
	if c.InputChannels <= 0 {
		bad("in_channels must be > 0 (1 = scalar input, Q = one-hot), got %d", c.InputChannels)
	}
	if c.OutChannels <= 0 {
		bad("out_channels must be > 0, got %d", c.OutChannels)
	}
	if c.Dropout != 0 {
		bad("dropout %g is not supported: dropout is not implemented, set it to 0", c.Dropout)
	}
	if len(errs) > 0 {
		return fmt.Errorf("wavenet config: %w", errors.Join(errs...))
	}
	return nil
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
