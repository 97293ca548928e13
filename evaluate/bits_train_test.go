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
	for _, exc := range []int{0, 2} {
		t.Run(fmt.Sprintf("excitation%d", exc), func(t *testing.T) { bitsMatch(t, exc) })
	}
}

// bitsMatch compares the two passes on a model with exc excitation
// channels (the utterances carry an arbitrary excitation signal).
func bitsMatch(t *testing.T, exc int) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	head, err := outputs.New("adacat --components 6 --lambda 0.0001")
	if err != nil {
		t.Fatal(err)
	}
	cfg := wavenet.TinyConfig(head.Channels(), head.InputChannels(), 5)
	cfg.ExcitationChannels = exc
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
