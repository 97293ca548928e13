package evaluate

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// BitsOptions bound the memory of a teacher-forced pass.
type BitsOptions struct {
	// ChunkFrames is the number of mel frames scored per Forward (0: 32).
	// A whole utterance in one Forward would need the training workspace
	// for its full length (gigabytes for a long one), so it is scored in
	// chunks with enough context on each side that every scored sample sees
	// exactly what it would in one pass.
	ChunkFrames int
}

// marginFrames are extra frames of context each side of a chunk beyond the
// receptive field: the upsampler's zero-padded "same" convolutions see past a
// chunk edge by s_k samples at each stage's rate, 4*64+4*16+4*4+4 = 340
// samples (1.3 frames) for the reference scales; 2 frames cover that.
const marginFrames = 2

// TeacherForcedBits returns -log2 p(y[t]) for every sample of utt's waveform
// target under head's exact density, the network fed the true previous sample
// (input at t is y[t-1] encoded by head.EncodeInput, y[-1] = 0; the training
// convention) and conditioned on utt's mel (padded by cfg.CinPad, as
// Dump.LoadUtterance gives it).
func TeacherForcedBits(m *wavenet.Model, head outputs.Head, utt *ljspeech.Utterance, opt BitsOptions) ([]float64, error) {
	cfg := m.Config()
	hop := cfg.HopSize()
	if utt.Cin != cfg.CinChannels || utt.CinPad != cfg.CinPad {
		return nil, fmt.Errorf("utterance %s: mel has %d channels and %d padding frames, the model wants %d and %d", utt.ID, utt.Cin, utt.CinPad, cfg.CinChannels, cfg.CinPad)
	}
	if len(utt.Wave) != utt.Frames*hop {
		return nil, fmt.Errorf("utterance %s: %d samples for %d frames, want frames*hop = %d", utt.ID, len(utt.Wave), utt.Frames, utt.Frames*hop)
	}
	if head.InputChannels() != cfg.InputChannels || head.Channels() != cfg.OutChannels {
		return nil, fmt.Errorf("head %s (%d in, %d out channels) does not fit the model (%d, %d)", head.Spec(), head.InputChannels(), head.Channels(), cfg.InputChannels, cfg.OutChannels)
	}
	E := cfg.ExcitationChannels
	if len(utt.Excitation) != E*len(utt.Wave) {
		return nil, fmt.Errorf("utterance %s: excitation has %d values, the model takes %d channels x %d samples", utt.ID, len(utt.Excitation), E, len(utt.Wave))
	}
	if cfg.LagTaps > 0 && len(utt.Period) != len(utt.Wave) {
		return nil, fmt.Errorf("utterance %s: pitch period has %d values, the model's lag taps want %d", utt.ID, len(utt.Period), len(utt.Wave))
	}
	chunk := opt.ChunkFrames
	if chunk <= 0 {
		chunk = 32
	}
	left := (cfg.ReceptiveField()-1+hop-1)/hop + marginFrames
	F, P, C, Q := utt.Frames, cfg.CinPad, cfg.CinChannels, cfg.InputChannels
	padded := F + 2*P
	be := m.Backend()
	bits := make([]float64, len(utt.Wave))
	enc := make([]float32, Q)
	var ws *wavenet.Workspace
	defer func() {
		if ws != nil {
			ws.Free()
		}
	}()
	for f0 := 0; f0 < F; f0 += chunk {
		f1 := min(F, f0+chunk)
		s0, e1 := max(0, f0-left), min(F, f1+marginFrames)
		T := (e1 - s0) * hop
		if ws == nil || ws.T != T {
			if ws != nil {
				ws.Free()
			}
			var err error
			if ws, err = m.NewWorkspace(1, T); err != nil {
				return nil, fmt.Errorf("utterance %s: %w", utt.ID, err)
			}
		}
		In := cfg.FirstConvInputs()
		x := make([]float32, In*T)
		for t := 0; t < T; t++ {
			prev := float32(0)
			if g := s0*hop + t; g > 0 {
				prev = utt.Wave[g-1]
			}
			head.EncodeInput(prev, enc)
			for q, v := range enc {
				x[q*T+t] = v
			}
		}
		for e := 0; e < E; e++ {
			copy(x[(Q+e)*T:(Q+e+1)*T], utt.Excitation[e*len(utt.Wave)+s0*hop:])
		}
		if L := cfg.LagTaps; L > 0 {
			wavenet.LagInput(x[(Q+E)*T:], T, utt.Wave, utt.Period[s0*hop:], s0*hop, T, L)
		}
		nf := e1 - s0 + 2*P
		mel := make([]float32, C*nf)
		for c := 0; c < C; c++ {
			copy(mel[c*nf:(c+1)*nf], utt.Mel[c*padded+s0:c*padded+s0+nf])
		}
		be.Upload(ws.X(), x)
		be.Upload(ws.Mel(), mel)
		out := m.Forward(ws, ws.X(), ws.Mel())
		logits := make([]float32, cfg.OutChannels*T)
		be.Download(logits, out)
		b := make([]float64, T)
		head.Bits(logits, T, T, utt.Wave[s0*hop:e1*hop], b)
		copy(bits[f0*hop:f1*hop], b[(f0-s0)*hop:(f1-s0)*hop])
	}
	for t, v := range bits {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("utterance %s: bits/sample not finite (%g) at sample %d", utt.ID, v, t)
		}
	}
	return bits, nil
}

// MeanSE is the mean of xs and its standard error s/sqrt(n) (s with n-1 in
// the denominator; 0 for a single value).
func MeanSE(xs []float64) (mean, se float64) {
	n := float64(len(xs))
	if n == 0 {
		return math.NaN(), math.NaN()
	}
	for _, x := range xs {
		mean += x
	}
	mean /= n
	if n < 2 {
		return mean, 0
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss/(n-1)) / math.Sqrt(n)
}
