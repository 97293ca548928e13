package evaluate

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/melspec"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// Synthesize generates waveforms for a batch of utterances: each mel is
// [cin][frames+2*cin_pad] channel-major and normalised (as
// Dump.LoadUtterance gives it), and each result is frames*hop samples in the
// network's target domain (pre-emphasised and gained, like the dump's
// waveform), so that ground truth and synthesis go through the same
// Postprocess. It is a function value so any generator (CPU, GPU, batched)
// plugs in; a batch lets a generator keep several utterances in flight.
type Synthesize func(mels [][]float32, frames []int) ([][]float32, error)

// Postprocess turns a target-domain waveform back into audio as synthesis
// does (REFERENCE.md §3): invert pre-emphasis, undo the gain, clip to [-1,1].
func Postprocess(y []float32, p ljspeech.Params) []float32 {
	out := append([]float32(nil), y...)
	p.Restore(out)
	return out
}

// Utt is one utterance's numbers; MCD, LogMelL1 and Quality are nil
// without synthesis, Bits is 0 for a baseline (no model).
type Utt struct {
	ID       string         `json:"id"`
	Samples  int            `json:"samples"`
	Bits     float64        `json:"bits_per_sample,omitempty"`
	MCD      *float64       `json:"mcd_db,omitempty"`
	LogMelL1 *float64       `json:"log_mel_l1,omitempty"`
	Quality  *QualityReport `json:"quality,omitempty"`
}

// Stat is a mean and its standard error over utterances (NaN, written as
// null, when no utterance had the measure: e.g. pitch error with no frame
// voiced in both signals).
type Stat struct {
	Mean float64 `json:"mean"`
	SE   float64 `json:"se"`
}

// MarshalJSON writes NaN and infinities as null (JSON has neither).
func (s Stat) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Mean *float64 `json:"mean"`
		SE   *float64 `json:"se"`
	}{finiteOrNil(s.Mean), finiteOrNil(s.SE)})
}

// UnmarshalJSON reads null back as NaN.
func (s *Stat) UnmarshalJSON(b []byte) error {
	var v struct {
		Mean *float64 `json:"mean"`
		SE   *float64 `json:"se"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	s.Mean, s.SE = nilToNaN(v.Mean), nilToNaN(v.SE)
	return nil
}

func finiteOrNil(x float64) *float64 {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return nil
	}
	return &x
}

func nilToNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}

// QualityStats are the Quality measures of a row, each a mean over the
// utterances that have it.
type QualityStats struct {
	VoicingAgreement Stat `json:"voicing_agreement"`
	GrossPitchError  Stat `json:"gross_pitch_error"`
	F0RMSECents      Stat `json:"f0_rmse_cents"`
	Periodicity      Stat `json:"periodicity"`
	LevelDiffDB      Stat `json:"level_diff_db"`
	ClippedFraction  Stat `json:"clipped_fraction"`
	DCOffset         Stat `json:"dc_offset"`
	BandMCD          Stat `json:"band_mcd_db"`
	LogMelL1Speech   Stat `json:"log_mel_l1_speech"`
}

// qualityStats averages the per-utterance reports field by field.
func qualityStats(us []Utt) *QualityStats {
	var q QualityStats
	col := func(dst *Stat, get func(r *QualityReport) float64) {
		var xs []float64
		for _, u := range us {
			if u.Quality != nil {
				if v := get(u.Quality); !math.IsNaN(v) && !math.IsInf(v, 0) {
					xs = append(xs, v)
				}
			}
		}
		dst.Mean, dst.SE = MeanSE(xs)
	}
	col(&q.VoicingAgreement, func(r *QualityReport) float64 { return r.VoicingAgreement })
	col(&q.GrossPitchError, func(r *QualityReport) float64 { return r.GrossPitchError })
	col(&q.F0RMSECents, func(r *QualityReport) float64 { return r.F0RMSECents })
	col(&q.Periodicity, func(r *QualityReport) float64 { return r.Periodicity })
	col(&q.LevelDiffDB, func(r *QualityReport) float64 { return r.LevelDiffDB })
	col(&q.ClippedFraction, func(r *QualityReport) float64 { return r.ClippedFraction })
	col(&q.DCOffset, func(r *QualityReport) float64 { return r.DCOffset })
	col(&q.BandMCD, func(r *QualityReport) float64 { return r.BandMCD })
	col(&q.LogMelL1Speech, func(r *QualityReport) float64 { return r.LogMelL1Speech })
	return &q
}

// Row is one line of the comparison table: a checkpoint (at a sampling
// temperature) or a baseline (the original, Griffin-Lim), which has no
// model and so no bits.
type Row struct {
	Checkpoint  string  `json:"checkpoint"`
	Step        int64   `json:"step,omitempty"`
	Head        string  `json:"head,omitempty"`
	HeadSpec    string  `json:"head_spec,omitempty"`
	Params      int     `json:"params,omitempty"`
	Temperature float64 `json:"temperature,omitempty"`
	// VoicedTemperature is the sampling temperature where the mel is
	// voiced (wavenet.GenerateOptions.VoicedTemperature), 0 if none.
	VoicedTemperature float64 `json:"voiced_temperature,omitempty"`
	// Postfilter names the steps applied after synthesis (package
	// postfilter), "" if none.
	Postfilter string        `json:"postfilter,omitempty"`
	Utterances int           `json:"utterances"`
	Bits       *Stat         `json:"bits_per_sample,omitempty"`
	MCD        *Stat         `json:"mcd_db,omitempty"`
	LogMelL1   *Stat         `json:"log_mel_l1,omitempty"`
	Quality    *QualityStats `json:"quality,omitempty"`
	// Gates are SpeechGates against the table's Griffin-Lim row, for a
	// model's row with synthesis.
	Gates  []Gate `json:"speech_gates,omitempty"`
	PerUtt []Utt  `json:"per_utterance"`
}

// Options configure Model and Baseline.
type Options struct {
	Bits BitsOptions
	// Synthesize, when set, adds the measures of free-running synthesis:
	// MCD (DTW), log-mel L1 and the Quality measures.
	Synthesize Synthesize
	// SynthBatch is the number of utterances per Synthesize call (0: 16).
	// The utterances of a batch are held in memory until it is scored.
	SynthBatch int
	MCep       MCepConfig
	// Preprocess says how the targets were made (Postprocess inverts it) and
	// gives the mel analysis for log-mel L1.
	Preprocess ljspeech.Params
	// Progress, when set, is called after each utterance is scored, once for
	// its bits and (with synthesis) once more after its synthesis.
	Progress func()
	// SkipBits leaves the teacher-forced pass out (Row.Bits nil): another
	// row of the same model already has them.
	SkipBits bool
}

// scorer compares synthesised audio with the original. qex is the mel
// analysis of the speech-frame log-mel L1, nil (no such number) when the
// mel's hop is not the quality grid's.
type scorer struct {
	opt     Options
	ex, qex *melspec.Extractor
}

func newScorer(opt Options) (*scorer, error) {
	ex, err := melspec.NewExtractor(opt.Preprocess.MelConfig())
	if err != nil {
		return nil, err
	}
	if err := opt.MCep.Validate(); err != nil {
		return nil, err
	}
	sc := &scorer{opt: opt, ex: ex}
	if ex.Config().Hop == QualityHop {
		sc.qex = ex
	}
	return sc, nil
}

// score fills u's synthesis measures from the original ref and the
// synthesis gen, both audio (postprocessed).
func (s *scorer) score(u *Utt, ref, gen []float32) error {
	mcd, err := MCD(ref, gen, s.opt.MCep)
	if err != nil {
		return fmt.Errorf("utterance %s: %w", u.ID, err)
	}
	l1, err := LogMelL1(ref, gen, s.ex)
	if err != nil {
		return fmt.Errorf("utterance %s: %w", u.ID, err)
	}
	q, err := Quality(ref, gen, s.opt.Preprocess.SampleRate, s.qex)
	if err != nil {
		return fmt.Errorf("utterance %s: %w", u.ID, err)
	}
	u.MCD, u.LogMelL1, u.Quality = &mcd, &l1, &q
	return nil
}

// finish fills the row's synthesis statistics from its utterances.
func finishSynthesis(row *Row) {
	var mcds, l1s []float64
	for _, u := range row.PerUtt {
		mcds, l1s = append(mcds, *u.MCD), append(l1s, *u.LogMelL1)
	}
	var m, l Stat
	m.Mean, m.SE = MeanSE(mcds)
	l.Mean, l.SE = MeanSE(l1s)
	row.MCD, row.LogMelL1, row.Quality = &m, &l, qualityStats(row.PerUtt)
}

// Model evaluates one loaded model over ids, loading each utterance with
// load. Utterances are scored one at a time, so memory stays that of one.
func Model(m *wavenet.Model, head outputs.Head, ids []string, load func(id string) (*ljspeech.Utterance, error), opt Options) (Row, error) {
	row := Row{Head: head.Name(), HeadSpec: head.Spec(), Params: m.NumParams(), Utterances: len(ids)}
	if len(ids) == 0 {
		return row, fmt.Errorf("no utterances to evaluate")
	}
	var sc *scorer
	if opt.Synthesize != nil {
		var err error
		if sc, err = newScorer(opt); err != nil {
			return row, err
		}
	}
	var bits []float64
	batch := opt.SynthBatch
	if batch <= 0 {
		batch = 16
	}
	var pending []*ljspeech.Utterance // loaded, bits done, waiting for synthesis
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		mels := make([][]float32, len(pending))
		frames := make([]int, len(pending))
		for i, u := range pending {
			mels[i], frames[i] = u.Mel, u.Frames
		}
		ys, err := opt.Synthesize(mels, frames)
		if err != nil {
			return fmt.Errorf("synthesis of %s...: %w", pending[0].ID, err)
		}
		if len(ys) != len(pending) {
			return fmt.Errorf("synthesis returned %d waveforms for %d utterances", len(ys), len(pending))
		}
		for i, u := range pending {
			r := &row.PerUtt[len(row.PerUtt)-len(pending)+i]
			if err := sc.score(r, Postprocess(u.Wave, opt.Preprocess), Postprocess(ys[i], opt.Preprocess)); err != nil {
				return err
			}
			if opt.Progress != nil {
				opt.Progress()
			}
		}
		pending = pending[:0]
		return nil
	}
	for _, id := range ids {
		utt, err := load(id)
		if err != nil {
			return row, err
		}
		u := Utt{ID: id, Samples: len(utt.Wave)}
		if !opt.SkipBits {
			b, err := TeacherForcedBits(m, head, utt, opt.Bits)
			if err != nil {
				return row, err
			}
			var sum float64
			for _, v := range b {
				sum += v
			}
			u.Bits = sum / float64(len(b))
			bits = append(bits, u.Bits)
			if opt.Progress != nil {
				opt.Progress()
			}
		}
		row.PerUtt = append(row.PerUtt, u)
		if opt.Synthesize != nil {
			pending = append(pending, utt)
			if len(pending) == batch {
				if err := flush(); err != nil {
					return row, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return row, err
	}
	if !opt.SkipBits {
		row.Bits = &Stat{}
		row.Bits.Mean, row.Bits.SE = MeanSE(bits)
	}
	if opt.Synthesize != nil {
		finishSynthesis(&row)
	}
	return row, nil
}

// Baseline scores a waveform source that is not a model with the synthesis
// measures of Model: gen returns the audio (postprocessed, frames*hop
// samples) for an utterance, e.g. the original itself (the ceiling) or
// Griffin-Lim from its mel. opt.Synthesize and opt.Bits are not used.
func Baseline(name string, ids []string, load func(id string) (*ljspeech.Utterance, error), gen func(u *ljspeech.Utterance) ([]float32, error), opt Options) (Row, error) {
	row := Row{Checkpoint: name, Utterances: len(ids)}
	if len(ids) == 0 {
		return row, fmt.Errorf("no utterances to evaluate")
	}
	sc, err := newScorer(opt)
	if err != nil {
		return row, err
	}
	for _, id := range ids {
		u, err := load(id)
		if err != nil {
			return row, err
		}
		y, err := gen(u)
		if err != nil {
			return row, fmt.Errorf("%s: utterance %s: %w", name, id, err)
		}
		r := Utt{ID: id, Samples: len(u.Wave)}
		if err := sc.score(&r, Postprocess(u.Wave, opt.Preprocess), y); err != nil {
			return row, fmt.Errorf("%s: %w", name, err)
		}
		row.PerUtt = append(row.PerUtt, r)
		if opt.Progress != nil {
			opt.Progress()
		}
	}
	finishSynthesis(&row)
	return row, nil
}

// Markdown renders rows as one table: the likelihood (bits/sample, teacher
// forced) and the measures of free-running synthesis, each mean ± standard
// error over the evaluation utterances; "-" where a row has no such number.
func Markdown(rows []Row) string {
	var b strings.Builder
	b.WriteString("| system | step | head | params | utts | bits/sample | MCD (dB) | band MCD (dB) | log-mel L1 | voicing agr. | GPE (%) | F0 RMSE (cents) | periodicity | level (dB) | clipped (%) | DC |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	pm := func(s *Stat, prec int, scale float64) string {
		if s == nil || math.IsNaN(s.Mean) {
			return "-"
		}
		return fmt.Sprintf("%.*f ± %.*f", prec, s.Mean*scale, prec, s.SE*scale)
	}
	for _, r := range rows {
		name := strings.ReplaceAll(r.Label(), "|", `\|`)
		step, params, spec := "-", "-", "-"
		if r.HeadSpec != "" {
			step, params, spec = fmt.Sprint(r.Step), humanCount(r.Params), r.HeadSpec
		}
		q := func(get func(q *QualityStats) *Stat, prec int, scale float64) string {
			if r.Quality == nil {
				return "-"
			}
			return pm(get(r.Quality), prec, scale)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			name, step, spec, params, r.Utterances, pm(r.Bits, 3, 1), pm(r.MCD, 2, 1),
			q(func(q *QualityStats) *Stat { return &q.BandMCD }, 2, 1),
			q(func(q *QualityStats) *Stat { return &q.LogMelL1Speech }, 3, 1),
			q(func(q *QualityStats) *Stat { return &q.VoicingAgreement }, 3, 1),
			q(func(q *QualityStats) *Stat { return &q.GrossPitchError }, 1, 100),
			q(func(q *QualityStats) *Stat { return &q.F0RMSECents }, 0, 1),
			q(func(q *QualityStats) *Stat { return &q.Periodicity }, 3, 1),
			q(func(q *QualityStats) *Stat { return &q.LevelDiffDB }, 1, 1),
			q(func(q *QualityStats) *Stat { return &q.ClippedFraction }, 2, 100),
			q(func(q *QualityStats) *Stat { return &q.DCOffset }, 3, 1))
	}
	return b.String()
}

// humanCount prints a parameter count the way papers do (4.38M).
func humanCount(n int) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// Label is the row's name in tables and gate lists: the checkpoint, with
// "(t=...)" for a temperature other than 1, "(voiced t=...)" for a
// voiced temperature and "(postfilter ...)" for a postfilter.
func (r Row) Label() string {
	name := r.Checkpoint
	if r.Temperature != 0 && r.Temperature != 1 {
		name += fmt.Sprintf(" (t=%g)", r.Temperature)
	}
	if r.VoicedTemperature != 0 {
		name += fmt.Sprintf(" (voiced t=%g)", r.VoicedTemperature)
	}
	if r.Postfilter != "" {
		name += " (postfilter " + r.Postfilter + ")"
	}
	return name
}
