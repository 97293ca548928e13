package evaluate

import (
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

// Utt is one utterance's numbers; MCD and LogMelL1 are nil without synthesis.
type Utt struct {
	ID       string   `json:"id"`
	Samples  int      `json:"samples"`
	Bits     float64  `json:"bits_per_sample"`
	MCD      *float64 `json:"mcd_db,omitempty"`
	LogMelL1 *float64 `json:"log_mel_l1,omitempty"`
}

// Stat is a mean and its standard error over utterances.
type Stat struct {
	Mean float64 `json:"mean"`
	SE   float64 `json:"se"`
}

// Row is one checkpoint's line of the comparison table.
type Row struct {
	Checkpoint string `json:"checkpoint"`
	Step       int64  `json:"step"`
	Head       string `json:"head"`
	HeadSpec   string `json:"head_spec"`
	Params     int    `json:"params"`
	Utterances int    `json:"utterances"`
	Bits       Stat   `json:"bits_per_sample"`
	MCD        *Stat  `json:"mcd_db,omitempty"`
	LogMelL1   *Stat  `json:"log_mel_l1,omitempty"`
	PerUtt     []Utt  `json:"per_utterance"`
}

// Options configure Model.
type Options struct {
	Bits BitsOptions
	// Synthesize, when set, adds MCD and log-mel L1 after synthesis.
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
}

// Model evaluates one loaded model over ids, loading each utterance with
// load. Utterances are scored one at a time, so memory stays that of one.
func Model(m *wavenet.Model, head outputs.Head, ids []string, load func(id string) (*ljspeech.Utterance, error), opt Options) (Row, error) {
	row := Row{Head: head.Name(), HeadSpec: head.Spec(), Params: m.NumParams(), Utterances: len(ids)}
	if len(ids) == 0 {
		return row, fmt.Errorf("no utterances to evaluate")
	}
	var ex *melspec.Extractor
	if opt.Synthesize != nil {
		var err error
		if ex, err = melspec.NewExtractor(opt.Preprocess.MelConfig()); err != nil {
			return row, err
		}
		if err := opt.MCep.Validate(); err != nil {
			return row, err
		}
	}
	var bits, mcds, l1s []float64
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
			ref := Postprocess(u.Wave, opt.Preprocess)
			gen := Postprocess(ys[i], opt.Preprocess)
			mcd, err := MCD(ref, gen, opt.MCep)
			if err != nil {
				return fmt.Errorf("utterance %s: %w", u.ID, err)
			}
			l1, err := LogMelL1(ref, gen, ex)
			if err != nil {
				return fmt.Errorf("utterance %s: %w", u.ID, err)
			}
			r := &row.PerUtt[len(row.PerUtt)-len(pending)+i]
			r.MCD, r.LogMelL1 = &mcd, &l1
			mcds, l1s = append(mcds, mcd), append(l1s, l1)
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
		b, err := TeacherForcedBits(m, head, utt, opt.Bits)
		if err != nil {
			return row, err
		}
		var sum float64
		for _, v := range b {
			sum += v
		}
		u := Utt{ID: id, Samples: len(b), Bits: sum / float64(len(b))}
		bits = append(bits, u.Bits)
		row.PerUtt = append(row.PerUtt, u)
		if opt.Progress != nil {
			opt.Progress()
		}
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
	row.Bits.Mean, row.Bits.SE = MeanSE(bits)
	if opt.Synthesize != nil {
		var s, l Stat
		s.Mean, s.SE = MeanSE(mcds)
		l.Mean, l.SE = MeanSE(l1s)
		row.MCD, row.LogMelL1 = &s, &l
	}
	return row, nil
}

// Markdown renders rows as the paper's Table 3: one line per checkpoint,
// mean +- standard error over the evaluation utterances.
func Markdown(rows []Row) string {
	var b strings.Builder
	b.WriteString("| checkpoint | step | head | params | utts | bits/sample | MCD (dB) | log-mel L1 |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|---:|---:|\n")
	pm := func(s *Stat, prec int) string {
		if s == nil || math.IsNaN(s.Mean) {
			return "-"
		}
		return fmt.Sprintf("%.*f ± %.*f", prec, s.Mean, prec, s.SE)
	}
	for _, r := range rows {
		bits := r.Bits
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %d | %s | %s | %s |\n",
			strings.ReplaceAll(r.Checkpoint, "|", `\|`), r.Step, r.HeadSpec, humanCount(r.Params), r.Utterances,
			pm(&bits, 3), pm(r.MCD, 2), pm(r.LogMelL1, 3))
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
