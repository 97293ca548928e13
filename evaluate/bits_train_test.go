package evaluate_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// (An external test package: train imports excitation, which imports
// evaluate.)

// The training loop's own evaluation (train.EvalBits: one whole-utterance
// pass with its input encoder) agrees with the chunked pass.
func TestTeacherForcedBitsMatchesTrainEvalBits(t *testing.T) {
	for _, c := range [][2]int{{0, 0}, {2, 0}, {2, 3}} {
		t.Run(fmt.Sprintf("excitation%d-lag%d", c[0], c[1]), func(t *testing.T) { bitsMatch(t, c[0], c[1]) })
	}
}

// bitsMatch compares the two passes on a model with exc excitation
// channels and lag taps (the utterances carry an arbitrary excitation
// signal and pitch period: the chunked pass must read the lag across its
// chunk boundaries).
func bitsMatch(t *testing.T, exc, lag int) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	head, err := outputs.New("adacat --components 6 --lambda 0.0001")
	if err != nil {
		t.Fatal(err)
	}
	cfg := wavenet.TinyConfig(head.Channels(), head.InputChannels(), 5)
	cfg.ExcitationChannels, cfg.LagTaps = exc, lag
	m, err := wavenet.New(cfg, be, 11)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	rng := rand.New(rand.NewPCG(4, 4))
	utts := []*ljspeech.Utterance{evaluate.RandomUtterance(rng, 17, cfg.HopSize(), cfg.CinChannels, cfg.CinPad), evaluate.RandomUtterance(rng, 9, cfg.HopSize(), cfg.CinChannels, cfg.CinPad)}
	for _, u := range utts {
		u.Excitation = make([]float32, exc*len(u.Wave))
		for i := range u.Excitation {
			u.Excitation[i] = float32(math.Cos(0.05 * float64(i)))
		}
		if lag > 0 {
			u.Period = make([]float32, len(u.Wave))
			for i := range u.Period {
				u.Period[i] = float32(3 + i%11)
			}
		}
	}
	want, wantSE, _, err := train.EvalBits(m, head, utts)
	if err != nil {
		t.Fatal(err)
	}
	var per []float64
	for _, u := range utts {
		b, err := evaluate.TeacherForcedBits(m, head, u, evaluate.BitsOptions{ChunkFrames: 4})
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, v := range b {
			s += v
		}
		per = append(per, s/float64(len(b)))
	}
	got, se := evaluate.MeanSE(per)
	if math.Abs(got-want) > 1e-4 || math.Abs(se-wantSE) > 1e-4 {
		t.Errorf("chunked %g ± %g, train.EvalBits %g ± %g", got, se, want, wantSE)
	}
}
