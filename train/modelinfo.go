package train

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/melspec"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// ModelInfo is everything a checkpoint must say for its model to be used
// without the training data: the network shape, the output head, the
// preprocessing that made its targets (so synthesis can undo pre-emphasis and
// gain) and the mel normalisation statistics. It fills the opaque sections of
// Meta (config.json: "model", "head", "mel", "stats").
type ModelInfo struct {
	Model      wavenet.Config
	Head       string // outputs.New spec, e.g. "adacat --components 128 --lambda 0.0001"
	Preprocess ljspeech.Params
	Stats      *melspec.Normalizer
}

// SetMeta writes the info into m's model/head/mel/stats sections.
func (mi ModelInfo) SetMeta(m *Meta) error {
	var err error
	enc := func(v any) json.RawMessage {
		b, e := json.Marshal(v)
		if e != nil && err == nil {
			err = e
		}
		return b
	}
	m.Model, m.Head, m.Mel = enc(mi.Model), enc(mi.Head), enc(mi.Preprocess)
	if mi.Stats != nil {
		m.Stats = enc(mi.Stats)
	}
	return err
}

// ParseModelInfo reads the sections SetMeta wrote, strictly: a missing or
// malformed section is an error naming it.
func ParseModelInfo(m Meta) (ModelInfo, error) {
	var mi ModelInfo
	sections := []struct {
		name string
		raw  json.RawMessage
		dst  any
	}{{"model", m.Model, &mi.Model}, {"head", m.Head, &mi.Head}, {"mel", m.Mel, &mi.Preprocess}}
	for _, s := range sections {
		if len(s.raw) == 0 {
			return mi, fmt.Errorf("config.json: missing %q section", s.name)
		}
		if err := json.Unmarshal(s.raw, s.dst); err != nil {
			return mi, fmt.Errorf("config.json: %q section: %w", s.name, err)
		}
	}
	if len(m.Stats) > 0 && string(m.Stats) != "null" {
		mi.Stats = new(melspec.Normalizer)
		if err := json.Unmarshal(m.Stats, mi.Stats); err != nil {
			return mi, fmt.Errorf("config.json: \"stats\" section: %w", err)
		}
		if mi.Stats.Dim() != mi.Model.CinChannels {
			return mi, fmt.Errorf("config.json: stats have %d dimensions, model has %d mel channels", mi.Stats.Dim(), mi.Model.CinChannels)
		}
	}
	if err := mi.Model.Validate(); err != nil {
		return mi, fmt.Errorf("config.json: model: %w", err)
	}
	return mi, nil
}

// NewHead builds the output head the info names and checks that the model
// has the channels the head needs.
func (mi ModelInfo) NewHead() (outputs.Head, error) {
	h, err := outputs.New(mi.Head)
	if err != nil {
		return nil, fmt.Errorf("config.json: head: %w", err)
	}
	if h.Channels() != mi.Model.OutChannels || h.InputChannels() != mi.Model.InputChannels {
		return nil, fmt.Errorf("config.json: head %q needs %d output / %d input channels, model has %d / %d",
			mi.Head, h.Channels(), h.InputChannels(), mi.Model.OutChannels, mi.Model.InputChannels)
	}
	return h, nil
}

// ResolveCheckpoint accepts either a checkpoint directory (it has
// config.json) or a run directory (its newest checkpoint is used).
func ResolveCheckpoint(path string) (string, error) {
	if _, err := os.Stat(filepath.Join(path, ConfigFile)); err == nil {
		return path, nil
	}
	st, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("checkpoint %s: not a directory", path)
	}
	dir, err := Latest(path)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: neither a checkpoint (no %s) nor a run directory with checkpoints: %w", path, ConfigFile, err)
	}
	return dir, nil
}

// LoadModel loads a checkpoint (or a run's newest) for inference on be: the
// EMA weights when ema is true (what the reference ships), else the raw ones.
func LoadModel(path string, be compute.Backend, ema bool) (*wavenet.Model, outputs.Head, ModelInfo, Meta, error) {
	dir, err := ResolveCheckpoint(path)
	if err != nil {
		return nil, nil, ModelInfo{}, Meta{}, err
	}
	ts, meta, err := LoadWeightsOnly(dir, ema)
	if err != nil {
		return nil, nil, ModelInfo{}, meta, err
	}
	mi, err := ParseModelInfo(meta)
	if err != nil {
		return nil, nil, mi, meta, fmt.Errorf("%s: %w", dir, err)
	}
	head, err := mi.NewHead()
	if err != nil {
		return nil, nil, mi, meta, fmt.Errorf("%s: %w", dir, err)
	}
	model, err := wavenet.New(mi.Model, be, 0)
	if err != nil {
		return nil, nil, mi, meta, fmt.Errorf("%s: %w", dir, err)
	}
	if err := model.ImportTensors(ToModelTensors(ts)); err != nil {
		model.Free()
		return nil, nil, mi, meta, fmt.Errorf("%s: %w", dir, err)
	}
	return model, head, mi, meta, nil
}

// ToModelTensors and FromModelTensors convert between the checkpoint's and
// the model's tensor types (the same fields; separate types keep the
// packages independent).
func ToModelTensors(ts []Tensor) []wavenet.Tensor {
	out := make([]wavenet.Tensor, len(ts))
	for i, t := range ts {
		out[i] = wavenet.Tensor(t)
	}
	return out
}

// FromModelTensors is the inverse of ToModelTensors.
func FromModelTensors(ts []wavenet.Tensor) []Tensor {
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		out[i] = Tensor(t)
	}
	return out
}
