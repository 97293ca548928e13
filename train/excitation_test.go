package train

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/mulaw"
	"github.com/wavecat/wavecat/wavenet"
)

// TestExcitationRun trains a plain model, grows it with excitation
// channels (--init-from) and trains that too, with validation:
//   - at step 0 the grown model scores the dev set exactly as the plain one
//     did, whatever the excitation (its new inputs start at zero);
//   - its training reads the excitation (the new first_conv columns move);
//   - the dev utterances carry the excitation derived from their mels.
func TestExcitationRun(t *testing.T) {
	head := "mulaw --bins 64"
	plain := tinyRun(t, head, 3)
	plain.EvalInterval = 0
	if _, err := Run(context.Background(), plain); err != nil {
		t.Fatal(err)
	}

	// Step 0 of the grown model equals the plain model.
	pm, h, mi, _, err := LoadModel(plain.Out, plain.Backend, true)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Free()
	mc := mi.Model
	mc.ExcitationChannels = excitation.Channels
	gm, err := wavenet.New(mc, plain.Backend, 99)
	if err != nil {
		t.Fatal(err)
	}
	defer gm.Free()
	if err := initFrom(gm, plain.Out, ioDiscard{}); err != nil {
		t.Fatal(err)
	}
	d, err := ljspeech.OpenDump(plain.Data)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := d.Split.Subset("dev")
	if err != nil {
		t.Fatal(err)
	}
	var utts, grown []*ljspeech.Utterance
	for _, id := range ids {
		u, err := d.LoadUtterance(id, mc.CinPad)
		if err != nil {
			t.Fatal(err)
		}
		u = CapUtterance(u, 4096, d.Params.Mel.Hop)
		utts = append(utts, u)
		g := *u
		grown = append(grown, &g)
	}
	if err := AddExcitation(d, grown, mc, ioDiscard{}, true); err != nil {
		t.Fatal(err)
	}
	voiced := 0
	for _, u := range grown {
		if len(u.Excitation) != excitation.Channels*len(u.Wave) {
			t.Fatalf("%s: excitation of %d values for %d samples", u.ID, len(u.Excitation), len(u.Wave))
		}
		for _, v := range u.Excitation {
			if v != 0 {
				voiced++
			}
		}
	}
	if voiced == 0 {
		t.Fatal("the dev utterances' excitation is all zero: no voiced frame found in speech")
	}
	want, _, _, err := EvalBits(pm, h, utts)
	if err != nil {
		t.Fatal(err)
	}
	got, _, _, err := EvalBits(gm, h, grown)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-want) > 1e-5*math.Abs(want) {
		t.Errorf("grown model at step 0: %.7f bits/sample, the plain model %.7f", got, want)
	}
	if _, _, _, err := EvalBits(gm, h, utts); err == nil {
		t.Error("EvalBits of an excitation model without excitation: no error")
	}

	// Aligning needs excitation channels.
	bad := tinyRun(t, head, 1)
	bad.AlignExcitation = true
	if _, err := Run(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "excitation channels") {
		t.Errorf("aligned excitation without excitation channels: %v", err)
	}

	// Training the grown model (aligned excitation, noisy inputs) moves the
	// excitation weights.
	exc := tinyRun(t, head, 4)
	exc.Model.ExcitationChannels = excitation.Channels
	exc.Model.LagTaps = 3
	exc.InitFrom = plain.Out
	exc.EvalInterval = 2
	exc.AlignExcitation, exc.InputNoise = true, 0.03
	res, err := Run(context.Background(), exc)
	if err != nil {
		t.Fatal(err)
	}
	if res.LastEval == nil {
		t.Fatal("no validation ran")
	}
	ck := loadState(t, StepDir(exc.Out, 4))
	movedExc, movedLag := false, false
	for _, ts := range ck.Weights {
		if ts.Name != "first_conv.weight_v" {
			continue
		}
		out, in := ts.Shape[0], ts.Shape[1]
		if in != 64+excitation.Channels+3 {
			t.Fatalf("first_conv.weight_v shape %v", ts.Shape)
		}
		for o := 0; o < out; o++ {
			for i := 64; i < in; i++ {
				if ts.Data[o*in+i] != 0 {
					if i < 64+excitation.Channels {
						movedExc = true
					} else {
						movedLag = true
					}
				}
			}
		}
	}
	if !movedExc {
		t.Error("after 4 steps the excitation columns of first_conv are still zero")
	}
	if !movedLag {
		t.Error("after 4 steps the lag-tap columns of first_conv are still zero: training does not feed the lag")
	}
}

// TestNoisyInputs: the input noise has the asked spread in the companded
// domain, stays in [-1, 1], and each crop's noise is a function of (seed,
// the crop's global item number) alone: not of its place in the batch, so
// a crop read by any rank of a data-parallel run gets the same noise.
func TestNoisyInputs(t *testing.T) {
	const T = 10000
	wave := make([]float32, 2*T)
	for i := range wave {
		wave[i] = float32(0.2 * math.Sin(float64(i)*0.01))
	}
	a := noisyInputs(wave, T, []int{7, 8}, 0.05, 1)
	b := noisyInputs(wave[T:], T, []int{8}, 0.05, 1) // item 8 alone, as the second rank's first crop
	c := noisyInputs(wave, T, []int{9, 10}, 0.05, 1)
	for i := range b {
		if a[T+i] != b[i] {
			t.Fatalf("item 8, sample %d: %g second in a batch, %g first", i, a[T+i], b[i])
		}
	}
	var s2 float64
	same := 0
	for i := range wave {
		if a[i] == c[i] {
			same++
		}
		if a[i] < -1 || a[i] > 1 {
			t.Fatalf("sample %d = %g outside [-1, 1]", i, a[i])
		}
		d := mulaw.Compand(float64(a[i]), 255) - mulaw.Compand(float64(wave[i]), 255)
		s2 += d * d
	}
	if same > len(wave)/100 {
		t.Errorf("items 7, 8 and items 9, 10 share %d of %d noisy samples", same, len(wave))
	}
	// (At 0.2 the companded signal stays 5 std from the clamp at 1.)
	if sd := math.Sqrt(s2 / float64(len(wave))); sd < 0.045 || sd > 0.052 {
		t.Errorf("companded noise std %.4f, want about 0.05", sd)
	}
}

// TestExcitationAdder: the one-at-a-time adder gives what AddExcitation
// gives, and nothing to do for a model without excitation.
func TestExcitationAdder(t *testing.T) {
	d, err := ljspeech.OpenDump(miniDump(t))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := LookupPreset("tiny")
	if add, err := ExcitationAdder(d, p.Model); add != nil || err != nil {
		t.Fatalf("plain model: adder %v, error %v", add != nil, err)
	}
	mc := p.Model
	mc.ExcitationChannels = excitation.Channels
	add, err := ExcitationAdder(d, mc)
	if err != nil {
		t.Fatal(err)
	}
	id := d.Index.Utterances[0].ID
	a, err := d.LoadUtterance(id, mc.CinPad)
	if err != nil {
		t.Fatal(err)
	}
	b := *a
	if err := add(a); err != nil {
		t.Fatal(err)
	}
	if err := AddExcitation(d, []*ljspeech.Utterance{&b}, mc, ioDiscard{}, true); err != nil {
		t.Fatal(err)
	}
	if len(a.Excitation) != excitation.Channels*len(a.Wave) || !slices.Equal(a.Excitation, b.Excitation) {
		t.Errorf("adder gave %d values, AddExcitation %d, or they differ", len(a.Excitation), len(b.Excitation))
	}
	if a.Period != nil {
		t.Errorf("a model without lag taps got a pitch period of %d values", len(a.Period))
	}

	// With lag taps both fill the period from the same track.
	mc.LagTaps = 3
	if add, err = ExcitationAdder(d, mc); err != nil {
		t.Fatal(err)
	}
	c, e := *a, *a
	c.Period, e.Period = nil, nil
	if err := add(&c); err != nil {
		t.Fatal(err)
	}
	if err := AddExcitation(d, []*ljspeech.Utterance{&e}, mc, ioDiscard{}, true); err != nil {
		t.Fatal(err)
	}
	voiced := 0
	for i, p := range c.Period {
		if p > 0 {
			voiced++
			// The tracker searches lags sr/PitchMaxHz..sr/PitchMinHz (a
			// sample of slack for its peak interpolation).
			sr := float64(d.Params.MelConfig().SampleRate)
			if lo, hi := sr/evaluate.PitchMaxHz-1, sr/evaluate.PitchMinHz+1; float64(p) < lo || float64(p) > hi {
				t.Fatalf("sample %d: period %g samples is outside the tracker's lags [%.1f, %.1f]", i, p, lo, hi)
			}
		}
	}
	if len(c.Period) != len(a.Wave) || !slices.Equal(c.Period, e.Period) || voiced == 0 {
		t.Errorf("period: adder %d values (%d voiced), AddExcitation %d, or they differ", len(c.Period), voiced, len(e.Period))
	}
}
