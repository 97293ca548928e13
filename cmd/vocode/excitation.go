package main

import (
	"fmt"
	"io"

	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/melspec"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/postfilter"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// excitationSource derives from the mels it is given (already normalised:
// the statistics are undone first, since the pitch is read from the
// Griffin-Lim inversion of the log-mel itself) the excitation a model
// takes, and what the postfilter reads: the raw mel and its pitch track.
type excitationSource struct {
	est   *excitation.Estimator // nil: neither the model nor the postfilter needs the pitch
	stats *melspec.Normalizer
	hop   int
	exc   bool // the model takes the excitation: fill each utterance's Excitation
	lag   bool // the model has lag taps: fill each utterance's Period too
	post  postfilter.Options
	mcfg  melspec.Config
	// The last add's utterances, by position: raw mels and pitch tracks.
	raw    [][]float32
	tracks []excitation.Track
}

// newExcitationSource is nil (and no error) for a model without excitation
// channels synthesised without a postfilter.
func newExcitationSource(info train.ModelInfo, post postfilter.Options) (*excitationSource, error) {
	if err := post.Validate(); err != nil {
		return nil, err
	}
	e := info.Model.ExcitationChannels
	switch e {
	case 0:
		if !post.Enabled() {
			return nil, nil
		}
	case excitation.Channels:
	default:
		return nil, fmt.Errorf("model has %d excitation channels; the excitation signal has %d", e, excitation.Channels)
	}
	s := &excitationSource{stats: info.Stats, hop: info.Preprocess.Mel.Hop, exc: e > 0, lag: info.Model.LagTaps > 0,
		post: post, mcfg: info.Preprocess.MelConfig()}
	if e > 0 || post.NeedsPitch() {
		var err error
		if s.est, err = excitation.NewEstimator(s.mcfg); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// defaultVoicedTemperature is --voiced-temperature's default for models
// with an excitation input. Measured on the built-in model (docs/evaluation.md,
// 12 held-out espeak-ng utterances): 0.7 raised voicing agreement from 0.62
// to 0.68 and periodicity from 0.49 to 0.52 and lowered the band MCD from
// 7.5 to 7.4 dB at the same gross pitch error; 0.5 raised periodicity more
// but the pitch errors too.
const defaultVoicedTemperature = 0.7

// voicedTemperature is the voiced sampling temperature to use with this
// source: t itself for a model with excitation; without one, 0, or an
// error when t != 0 was asked for explicitly (there is no voicing to read).
func (s *excitationSource) voicedTemperature(t float64, explicit bool) (float64, error) {
	if t == 0 {
		return 0, nil
	}
	if s == nil || !s.exc {
		if !explicit {
			return 0, nil
		}
		return 0, fmt.Errorf("the model takes no excitation input, so there is no voicing to read")
	}
	if err := outputs.CheckTemperature(t); err != nil {
		return 0, err
	}
	return t, nil
}

// add fills every utterance's Excitation (all CPUs, a progress bar when
// there are several) when the model takes it, and keeps each one's raw
// mel and pitch track for postfilter.
func (s *excitationSource) add(utts []wavenet.Utterance, stderr io.Writer) error {
	if s == nil || len(utts) == 0 {
		return nil
	}
	C := s.mcfg.NMels
	s.raw, s.tracks = make([][]float32, len(utts)), nil
	for i := range utts {
		s.raw[i] = append([]float32(nil), utts[i].Mel...)
		if s.stats != nil {
			if err := s.stats.Invert(s.raw[i]); err != nil {
				return err
			}
		}
	}
	if s.est == nil {
		return nil
	}
	var bar *cliutil.Bar
	if len(utts) > 1 {
		bar = cliutil.NewBarOptions(int64(len(utts)), "excitation", stderr, quiet, cliutil.BarOptions{Unit: "utts"})
		defer bar.Finish()
	}
	tracks, err := s.est.Tracks(len(utts), func(i int) ([]float32, int, error) {
		return s.raw[i], len(s.raw[i]) / C, nil
	}, func() {
		if bar != nil {
			bar.Add(1)
		}
	})
	if err != nil {
		return err
	}
	s.tracks = tracks
	if !s.exc {
		return nil
	}
	for i := range utts {
		n := len(utts[i].Mel) / C * s.hop
		utts[i].Excitation = tracks[i].Signal(n)
		if s.lag {
			utts[i].Period = tracks[i].Period(n)
		}
	}
	return nil
}

// postfilter applies the postfilter to audio y of the last add's i-th
// utterance (y itself when there is none).
func (s *excitationSource) postfilter(i int, y []float32) ([]float32, error) {
	if s == nil || !s.post.Enabled() {
		return y, nil
	}
	var period, voicing []float32
	if s.post.NeedsPitch() {
		period, voicing = s.tracks[i].Period(len(y)), s.tracks[i].Voicing(len(y))
	}
	return postfilter.Apply(y, s.raw[i], period, voicing, s.mcfg, s.post)
}

// postfilterNames are --postfilter's values (comb+envelope is the default).
var postfilterNames = map[string]func() postfilter.Options{
	"comb+envelope": postfilter.Default,
	"envelope": func() postfilter.Options {
		o := postfilter.Default()
		o.CombGain, o.CombPasses = 0, 0
		return o
	},
	"comb": func() postfilter.Options {
		o := postfilter.Default()
		o.EnvelopePasses = 0
		return o
	},
	"none": func() postfilter.Options { return postfilter.Options{} },
}

// postfilterOptions parses a --postfilter value.
func postfilterOptions(name string) (postfilter.Options, error) {
	f, ok := postfilterNames[name]
	if !ok {
		return postfilter.Options{}, fmt.Errorf("--postfilter %q: want comb+envelope, envelope, comb or none", name)
	}
	return f(), nil
}
