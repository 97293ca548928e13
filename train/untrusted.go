package train

// Checking a checkpoint's description of its model before trusting it.
//
// checksums.json proves a file is the one its writer meant, not that the
// writer meant well: anyone who edits config.json can rewrite the manifest.
// A config that claims a huge model (residual_channels 1e9, layers 2e9)
// would otherwise be allocated for before any tensor is compared with it,
// and preprocessing parameters such as gain 0 or pre-emphasis 1.5 would turn
// every synthesis into clipped noise without a word. So the loaders bound
// the config (wavenet.Config.Validate), compare every tensor shape it
// implies with the safetensors header before reading the data or building a
// model, and LoadWeightsOnly (the synthesis path) also validates the head,
// the preprocessing parameters and the normalisation statistics.

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"strings"

	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/melspec"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// header reads the safetensors header of name after checking the file's size
// against the manifest (the data itself is neither read nor verified yet).
func (v *verified) header(name string) ([]TensorHeader, error) {
	f, p, want, err := v.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hs, _, err := ReadSafetensorsHeader(f, want.Size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return hs, nil
}

// checkModel validates the "model" section of meta, when there is one, and
// compares the tensors it implies with the header of the safetensors file
// name: after it, building the model allocates no more than that file holds.
// A checkpoint without a model section (a bare tensor store) is left alone:
// nothing can build a model from it.
func (v *verified) checkModel(meta Meta, name string) error {
	if len(meta.Model) == 0 {
		return nil
	}
	cfgPath := filepath.Join(v.dir, ConfigFile)
	// Bound the config before reading the header, so that a config over the
	// limits is reported as such whatever the file holds.
	if _, err := modelAgainst(meta.Model, nil, name); err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	hs, err := v.header(name)
	if err == nil {
		if _, err = modelAgainst(meta.Model, hs, name); err != nil {
			err = fmt.Errorf("%s: %w", cfgPath, err)
		}
	}
	if err != nil {
		// A damaged file is the simpler explanation: say so if it is one
		// (reading it costs no more than the file's real size).
		if _, rerr := v.read(name); rerr != nil {
			return rerr
		}
		return err
	}
	return nil
}

// modelAgainst decodes and validates a model section and, when hs is not
// nil, checks that the header hs of file holds exactly the tensors it
// implies. It allocates the parameter table (a few entries per layer of a
// config within the limits), never the parameters.
func modelAgainst(raw json.RawMessage, hs []TensorHeader, file string) (wavenet.Config, error) {
	var cfg wavenet.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return cfg, fmt.Errorf("\"model\" section: %v", err)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if hs == nil {
		return cfg, nil
	}
	return cfg, compareShapes(cfg.Tensors(), hs, file)
}

// compareShapes checks that the file's tensors are exactly those the model
// section implies, each with its shape.
func compareShapes(want []wavenet.TensorInfo, got []TensorHeader, file string) error {
	have := make(map[string][]int, len(got))
	for _, h := range got {
		have[h.Name] = h.Shape
	}
	for _, w := range want {
		s, ok := have[w.Name]
		if !ok {
			return fmt.Errorf("the model section implies tensor %q of shape %v, %s has no such tensor", w.Name, w.Shape, file)
		}
		if !slices.Equal(s, w.Shape) {
			return fmt.Errorf("the model section implies tensor %q of shape %v, %s has %v", w.Name, w.Shape, file, s)
		}
		delete(have, w.Name)
	}
	if len(have) > 0 {
		extra := make([]string, 0, len(have))
		for n := range have {
			extra = append(extra, fmt.Sprintf("%q", n))
		}
		slices.Sort(extra)
		if len(extra) > 3 {
			extra = append(extra[:3], "...")
		}
		return fmt.Errorf("%s has %d tensor(s) the model section does not imply: %s", file, len(have), strings.Join(extra, " "))
	}
	return nil
}

// decodeInfo is ParseModelInfo without the "config.json: " prefix on its
// errors, for callers that name the file's full path themselves.
func decodeInfo(m Meta) (ModelInfo, error) {
	var mi ModelInfo
	for _, s := range []struct {
		name string
		raw  json.RawMessage
		dst  any
	}{{"model", m.Model, &mi.Model}, {"head", m.Head, &mi.Head}, {"mel", m.Mel, &mi.Preprocess}} {
		if len(s.raw) == 0 {
			return mi, fmt.Errorf("missing %q section", s.name)
		}
		if err := json.Unmarshal(s.raw, s.dst); err != nil {
			return mi, fmt.Errorf("%q section: %v", s.name, err)
		}
	}
	if len(m.Stats) > 0 && string(m.Stats) != "null" {
		mi.Stats = new(melspec.Normalizer)
		if err := json.Unmarshal(m.Stats, mi.Stats); err != nil {
			return mi, fmt.Errorf("\"stats\" section: %v", err)
		}
	}
	return mi, nil
}

// validateInfo decodes and validates the model description of meta.
func validateInfo(meta Meta) error {
	mi, err := decodeInfo(meta)
	if err != nil {
		return err
	}
	return mi.Validate()
}

// Validate checks everything a model description must get right for the
// model to be built and its output to mean something: the network shape
// within wavenet's limits, a head that parses and fits the model's
// channels, preprocessing parameters synthesis can invert (a gain of 0 or a
// pre-emphasis of 1.5 make full-scale clipped noise), and normalisation
// statistics of the model's mel dimension with finite means and positive
// finite deviations. It reports the first problem, on one line.
func (mi ModelInfo) Validate() error {
	if err := mi.Model.Validate(); err != nil {
		return err
	}
	h, err := outputs.New(mi.Head)
	if err != nil {
		return fmt.Errorf("head %q: %v", mi.Head, err)
	}
	if h.Channels() != mi.Model.OutChannels || h.InputChannels() != mi.Model.InputChannels {
		return fmt.Errorf("head %q needs %d output / %d input channels, model has %d / %d",
			mi.Head, h.Channels(), h.InputChannels(), mi.Model.OutChannels, mi.Model.InputChannels)
	}
	if err := validatePreprocess(mi.Preprocess); err != nil {
		return err
	}
	if st := mi.Stats; st != nil {
		if st.Dim() != mi.Model.CinChannels {
			return fmt.Errorf("stats have %d dimensions, model has %d mel channels", st.Dim(), mi.Model.CinChannels)
		}
		if len(st.Std) != len(st.Mean) {
			return fmt.Errorf("stats: %d means but %d standard deviations", len(st.Mean), len(st.Std))
		}
		for d, s := range st.Std {
			m := st.Mean[d]
			if !(s > 0) || math.IsInf(s, 0) || math.IsNaN(m) || math.IsInf(m, 0) {
				return fmt.Errorf("stats: dimension %d has mean %g and std %g (want a finite mean and a positive finite std)", d, m, s)
			}
		}
		if st.Count < 0 {
			return fmt.Errorf("stats: negative frame count %d", st.Count)
		}
	}
	return nil
}

// Bounds on preprocessing parameters read from a checkpoint: far beyond any
// real recipe (22.05 kHz, n_fft 1024, hop 256, 255 high-pass taps), small
// enough that nothing sized by them can exhaust memory.
const (
	maxSampleRate = 1 << 20 // Hz
	maxFFT        = 1 << 16 // n_fft, win_length, hop and the trim frame
	maxTaps       = 1 << 14
	maxPadRight   = 1 << 20
)

// validatePreprocess checks every field of p, naming each by its JSON key
// in config.json's "mel" section, and reports all problems on one line.
func validatePreprocess(p ljspeech.Params) error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	inRange := func(name string, v, lo, hi int) {
		if v < lo || v > hi {
			bad("%s %d must be in [%d, %d]", name, v, lo, hi)
		}
	}
	m := p.Mel
	inRange("sample_rate", p.SampleRate, 1, maxSampleRate)
	inRange("mel.n_fft", m.NFFT, 2, maxFFT)
	inRange("mel.hop", m.Hop, 1, maxFFT)
	if m.WinLength < 1 || m.WinLength > m.NFFT {
		bad("mel.win_length %d must be in [1, n_fft=%d]", m.WinLength, m.NFFT)
	}
	inRange("mel.n_mels", m.NMels, 1, wavenet.MaxChannels)
	nyq := float64(p.SampleRate) / 2
	if !(finite(m.FMin) && finite(m.FMax) && m.FMin >= 0 && m.FMin < m.FMax && m.FMax <= nyq) {
		bad("need 0 <= mel.fmin (%g) < mel.fmax (%g) <= sample_rate/2 (%g)", m.FMin, m.FMax, nyq)
	}
	if !(finite(p.Trim.TopDB) && p.Trim.TopDB > 0) {
		bad("trim.top_db %g must be positive and finite", p.Trim.TopDB)
	}
	inRange("trim.frame_length", p.Trim.FrameLength, 1, maxFFT)
	if p.Trim.HopLength < 1 || p.Trim.HopLength > max(p.Trim.FrameLength, 1) {
		bad("trim.hop_length %d must be in [1, frame_length=%d]", p.Trim.HopLength, p.Trim.FrameLength)
	}
	if _, err := p.TrimConfig(); err != nil {
		bad("trim.pad %q must be \"constant\" or \"reflect\"", p.Trim.Pad)
	}
	if p.HighpassTaps < 0 || p.HighpassTaps > maxTaps || (p.HighpassTaps > 0 && p.HighpassTaps%2 == 0) {
		bad("highpass_taps %d must be 0 (off) or odd and at most %d", p.HighpassTaps, maxTaps)
	}
	if p.HighpassTaps > 0 && !(finite(p.HighpassCutoff) && p.HighpassCutoff > 0 && p.HighpassCutoff < nyq) {
		bad("highpass_cutoff_hz %g must be in (0, sample_rate/2 = %g)", p.HighpassCutoff, nyq)
	}
	if !(finite(p.Gain) && p.Gain > 0) {
		bad("gain %g must be positive and finite (synthesis divides by it)", p.Gain)
	}
	if !(p.Preemphasis >= 0 && p.Preemphasis < 1) {
		bad("preemphasis %g must be in [0, 1) (synthesis inverts it with a recursive filter, unstable from 1 up)", p.Preemphasis)
	}
	if p.PadRight < m.Hop || p.PadRight > maxPadRight {
		bad("pad_right %d must be in [hop=%d, %d]", p.PadRight, m.Hop, maxPadRight)
	}
	if len(errs) > 0 {
		return fmt.Errorf("mel: %s", strings.Join(errs, "; "))
	}
	// The preprocessing package's own rules, should they grow beyond these.
	if err := p.Validate(); err != nil {
		return fmt.Errorf("mel: %v", err)
	}
	return nil
}
