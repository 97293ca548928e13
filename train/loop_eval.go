package train

import (
	"fmt"
	"math"
	"time"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// EvalRecord is one validation: bits per sample of the EMA weights on whole
// (or capped) utterances, teacher-forced, mean +- standard error over
// utterances (each utterance's mean over its samples counts once, as the
// paper reports).
type EvalRecord struct {
	Type       string    `json:"type"` // "eval"
	Step       int64     `json:"step"`
	Split      string    `json:"split"`
	Bits       float64   `json:"bits"`
	BitsSE     float64   `json:"bits_se"`
	Utterances int       `json:"utterances"`
	Samples    int       `json:"samples"`
	Seconds    float64   `json:"seconds"`
	Time       time.Time `json:"time"`
}

// EvalFunc scores utterances teacher-forced with model m and returns the mean
// over utterances of each one's mean bits/sample, its standard error and the
// number of samples scored (EvalBits is one).
type EvalFunc func(m *wavenet.Model, head outputs.Head, utts []*ljspeech.Utterance) (mean, se float64, samples int, err error)

// loadEvalSet loads the validation utterances once, capped to
// EvalMaxSamples (rounded down to whole frames).
func (tr *trainer) loadEvalSet() error {
	cfg := tr.cfg
	ids, err := tr.dump.Split.Subset(cfg.EvalSplit)
	if err != nil {
		return fmt.Errorf("train: validation: %w", err)
	}
	if len(ids) == 0 {
		return fmt.Errorf("train: validation: the %q split of %s is empty (use --eval-interval 0 to train without validation)", cfg.EvalSplit, cfg.Data)
	}
	if cfg.EvalMaxUtterances > 0 && len(ids) > cfg.EvalMaxUtterances {
		ids = ids[:cfg.EvalMaxUtterances]
	}
	for _, id := range ids {
		u, err := tr.dump.LoadUtterance(id, cfg.Model.CinPad)
		if err != nil {
			return fmt.Errorf("train: validation: %w", err)
		}
		tr.dev = append(tr.dev, CapUtterance(u, cfg.EvalMaxSamples, tr.dump.Params.Mel.Hop))
	}
	if err := AddExcitation(tr.dump, tr.dev, cfg.Model, tr.log, cfg.Quiet); err != nil {
		return fmt.Errorf("train: validation: %w", err)
	}
	return nil
}

// CapUtterance keeps the first maxSamples (rounded down to whole frames, at
// least one frame) of u; 0 keeps everything. The mel keeps CinPad context
// columns after the kept frames (real frames where they exist).
func CapUtterance(u *ljspeech.Utterance, maxSamples, hop int) *ljspeech.Utterance {
	f := u.Frames
	if maxSamples > 0 && maxSamples/hop < f {
		f = max(1, maxSamples/hop)
	}
	if f == u.Frames {
		return u
	}
	w := u.Frames + 2*u.CinPad
	nw := f + 2*u.CinPad
	c := &ljspeech.Utterance{ID: u.ID, Wave: u.Wave[:f*hop], Frames: f, Cin: u.Cin, CinPad: u.CinPad, Mel: make([]float32, u.Cin*nw)}
	for ch := 0; ch < u.Cin; ch++ {
		copy(c.Mel[ch*nw:(ch+1)*nw], u.Mel[ch*w:ch*w+nw])
	}
	if T := len(u.Wave); T > 0 && len(u.Excitation) > 0 {
		n := f * hop
		rows := len(u.Excitation) / T
		c.Excitation = make([]float32, rows*n)
		for e := 0; e < rows; e++ {
			copy(c.Excitation[e*n:(e+1)*n], u.Excitation[e*T:e*T+n])
		}
	}
	if len(u.Period) > 0 {
		c.Period = u.Period[:f*hop]
	}
	return c
}

// evaluate copies the EMA weights into the evaluation model, scores the
// validation set, records and plots it.
func (tr *trainer) evaluate() error {
	t0 := time.Now()
	tr.be.Copy(tr.evalM.Params(), tr.ema.View(), tr.model.NumParams())
	eval := tr.cfg.Eval
	if eval == nil {
		eval = EvalBits
	}
	mean, se, samples, err := eval(tr.evalM, tr.head, tr.dev)
	if err != nil {
		return fmt.Errorf("train: validation at step %d: %w", tr.step, err)
	}
	if !finite(mean) || !finite(se) {
		// JSON has no NaN/Inf, and a diverged EMA is not a reason to stop
		// training (the training loss is checked at every step).
		fmt.Fprintf(tr.log, "step %d: warning: %s bits/sample of the EMA weights is %v; not recorded\n", tr.step, tr.cfg.EvalSplit, mean)
		return nil
	}
	rec := EvalRecord{Type: "eval", Step: tr.step, Split: tr.cfg.EvalSplit, Bits: mean, BitsSE: se,
		Utterances: len(tr.dev), Samples: samples, Seconds: time.Since(t0).Seconds(), Time: time.Now().UTC()}
	tr.lastEval = &rec
	if err := tr.metrics.Eval(rec); err != nil {
		return err
	}
	if tr.bar != nil && !tr.cfg.Quiet {
		tr.bar.Clear()
	}
	fmt.Fprintf(tr.log, "step %d: %s bits/sample %.4f +- %.4f (%d utterances, EMA weights)\n", tr.step, tr.cfg.EvalSplit, mean, se, len(tr.dev))
	return tr.plot()
}

// EvalBits scores utterances teacher-forced with model m (whatever weights it
// holds) and returns the mean over utterances of each utterance's mean
// bits/sample, its standard error (sample standard deviation / sqrt(n); 0 for
// one utterance) and the number of samples scored. The input alignment is
// the training loop's (previous sample, 0 at t = 0). A density that
// underflows at some sample gives +Inf bits; that is returned, not an error.
func EvalBits(m *wavenet.Model, head outputs.Head, utts []*ljspeech.Utterance) (mean, se float64, samples int, err error) {
	be := m.Backend()
	cfg := m.Config()
	var ws *wavenet.Workspace
	defer func() {
		if ws != nil {
			ws.Free()
		}
	}()
	per := make([]float64, 0, len(utts))
	var logits []float32
	var bits []float64
	for _, u := range utts {
		T := len(u.Wave)
		if ws == nil || ws.T != T {
			if ws != nil {
				ws.Free()
			}
			if ws, err = m.NewWorkspace(1, T); err != nil {
				return 0, 0, 0, fmt.Errorf("utterance %s: %w", u.ID, err)
			}
		}
		x, err := modelInput(cfg, head, u)
		if err != nil {
			return 0, 0, 0, err
		}
		be.Upload(ws.X(), x)
		be.Upload(ws.Mel(), u.Mel)
		out := m.Forward(ws, ws.X(), ws.Mel())
		n := cfg.OutChannels * T
		if ha, ok := be.(compute.HostAccessor); ok {
			logits = ha.Host(out, n)
		} else {
			if cap(logits) < n {
				logits = make([]float32, n)
			}
			logits = logits[:n]
			be.Download(logits, out)
		}
		if cap(bits) < T {
			bits = make([]float64, T)
		}
		bits = bits[:T]
		head.Bits(logits, T, T, u.Wave, bits)
		var s float64
		for _, b := range bits {
			s += b
		}
		per = append(per, s/float64(T))
		samples += T
	}
	if len(per) == 0 {
		return 0, 0, 0, fmt.Errorf("no utterances to score")
	}
	mean, se = MeanSE(per)
	return mean, se, samples, nil
}

// MeanSE returns the mean of v and its standard error (sample standard
// deviation with n-1, over sqrt(n)); the error is 0 for fewer than two values.
func MeanSE(v []float64) (mean, se float64) {
	if len(v) == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range v {
		mean += x
	}
	mean /= float64(len(v))
	if len(v) > 1 {
		var ss float64
		for _, x := range v {
			ss += (x - mean) * (x - mean)
		}
		se = math.Sqrt(ss/float64(len(v)-1)) / math.Sqrt(float64(len(v)))
	}
	return mean, se
}
