package train

import (
	"fmt"
	"sort"
	"strings"

	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// Preset is a named model shape plus its default output head: the configs of
// the AdaCat paper's WaveNet experiments and a tiny one for CPU smoke runs.
// The head decides the model's input/output channels (ModelForHead).
type Preset struct {
	Name        string
	Description string
	Head        string // outputs.New spec
	// Model is the network shape; its InputChannels/OutChannels are filled
	// by ModelForHead and its upsample scales by the dump's hop.
	Model wavenet.Config
}

// reference is REFERENCE.md §3: r9y9's LJSpeech recipe that AdaCat used.
func reference() wavenet.Config { return wavenet.ReferenceConfig(1, 1) }

// tinyModel keeps the reference's structure (cin 80, 2 context frames,
// x256 upsampling) with few layers and channels so a step takes milliseconds
// on one CPU core.
func tinyModel() wavenet.Config {
	c := wavenet.TinyConfig(1, 1, 80)
	c.Layers, c.Stacks = 6, 2
	c.UpsampleScales = []int{4, 4, 4, 4}
	return c
}

var presets = map[string]Preset{
	"tiny": {Name: "tiny", Description: "6 layers / 2 stacks, 16/32/16 channels: CPU smoke runs and tests (default head adacat k=15)",
		Head: "adacat --components 15 --lambda 0.0001", Model: tinyModel()},
	"mulaw256": {Name: "mulaw256", Description: "mu-law 256 classes, one-hot input, r9y9's mulaw256 recipe (30 layers / 3 stacks)",
		Head: "mulaw --bins 256", Model: func() wavenet.Config { c := reference(); c.Layers, c.Stacks = 30, 3; return c }()},
	"cat256": {Name: "cat256", Description: "uniform categorical 256 classes, one-hot input, reference model",
		Head: "categorical --bins 256", Model: reference()},
	"mol": {Name: "mol", Description: "10 discretized logistics over 65536 levels, log-scale-min -16, reference model",
		Head: "mol --mixtures 10 --levels 65536 --log-scale-min -16", Model: reference()},
	"gaussian": {Name: "gaussian", Description: "single Gaussian, log-scale-min -16, reference model",
		Head: "gaussian --log-scale-min -16", Model: reference()},
	"adacat30": {Name: "adacat30", Description: "AdaCat k=15 (30 channels), lambda 1e-4, reference model",
		Head: "adacat --components 15 --lambda 0.0001", Model: reference()},
	"adacat256": {Name: "adacat256", Description: "AdaCat k=128 (256 channels), lambda 1e-4, reference model",
		Head: "adacat --components 128 --lambda 0.0001", Model: reference()},
	"adacat512": {Name: "adacat512", Description: "AdaCat k=256 (512 channels), lambda 1e-5, reference model",
		Head: "adacat --components 256 --lambda 0.00001", Model: reference()},
}

// PresetNames lists the presets, sorted.
func PresetNames() []string {
	n := make([]string, 0, len(presets))
	for k := range presets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// LookupPreset returns the named preset (with a copy of its config).
func LookupPreset(name string) (Preset, error) {
	p, ok := presets[name]
	if !ok {
		return Preset{}, fmt.Errorf("unknown preset %q (valid: %s)", name, strings.Join(PresetNames(), ", "))
	}
	p.Model.UpsampleScales = append([]int(nil), p.Model.UpsampleScales...)
	return p, nil
}

// ReferenceModel is the reference shape (REFERENCE.md §3), the model used
// when no preset is named.
func ReferenceModel() wavenet.Config { return reference() }

// ModelForHead returns cfg with the input/output channels the head needs and
// upsample scales multiplying to hop (the dump's), so any preset trains on
// any dump whose hop factors into small scales.
func ModelForHead(cfg wavenet.Config, head outputs.Head, cin, hop int) (wavenet.Config, error) {
	cfg.InputChannels, cfg.OutChannels = head.InputChannels(), head.Channels()
	cfg.CinChannels = cin
	if cfg.HopSize() != hop {
		s, err := UpsampleScales(hop)
		if err != nil {
			return cfg, err
		}
		cfg.UpsampleScales = s
	}
	return cfg, cfg.Validate()
}

// UpsampleScales factors hop into upsampling scales, 4s first then the
// remaining prime factors (256 -> [4 4 4 4] as the reference). A scale above
// 16 would make the row convolution (width 2s+1) blur over many frames, so
// such hops are refused.
func UpsampleScales(hop int) ([]int, error) {
	if hop <= 0 {
		return nil, fmt.Errorf("hop %d must be positive", hop)
	}
	var s []int
	h := hop
	for h%4 == 0 {
		s = append(s, 4)
		h /= 4
	}
	for p := 2; h > 1; p++ {
		for h%p == 0 {
			if p > 16 {
				return nil, fmt.Errorf("hop %d has a prime factor %d > 16: no sensible upsampling scales", hop, p)
			}
			s = append(s, p)
			h /= p
		}
	}
	if len(s) == 0 {
		s = []int{1}
	}
	return s, nil
}
