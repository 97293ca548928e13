// Command excitation-use prints the teacher-forced bits/sample of a checkpoint (EMA
// weights) on the first 6 utterances of a dump (their first second), fed
// the plain excitation, the one aligned to each recording, and zeros: how
// much the network relies on its excitation input (docs/evaluation.md).
// For a model with lag taps every variant carries the mel's pitch period,
// and one more, "plain, no lag", zeroes the period (taps read 0).
//
//	go run ./scripts/excitation-use CHECKPOINT DUMP
package main

import (
	"fmt"
	"os"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/train"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: excitation-use CHECKPOINT DUMP")
		os.Exit(2)
	}
	be, err := cpu.New(cpu.Options{Threads: 1})
	check(err)
	m, h, mi, _, err := train.LoadModel(os.Args[1], be, true)
	check(err)
	if mi.Model.ExcitationChannels != excitation.Channels {
		check(fmt.Errorf("%s: the model takes no excitation", os.Args[1]))
	}
	d, err := ljspeech.OpenDump(os.Args[2])
	check(err)
	est, err := excitation.NewEstimator(d.Params.MelConfig())
	check(err)
	var plain, aligned, zero, nolag []*ljspeech.Utterance
	for i, u := range d.Index.Utterances {
		if i >= 6 {
			break
		}
		ut, err := d.LoadUtterance(u.ID, mi.Model.CinPad)
		check(err)
		ut = train.CapUtterance(ut, d.Params.SampleRate, d.Params.Mel.Hop)
		mel, fr, err := d.LoadFeats(u.ID)
		check(err)
		tr, err := est.Track(mel, fr)
		check(err)
		a, b, c := *ut, *ut, *ut
		a.Excitation = tr.Signal(len(ut.Wave))
		if mi.Model.LagTaps > 0 {
			a.Period = tr.Period(len(ut.Wave))
			b.Period, c.Period = a.Period, a.Period
			e := a
			e.Period = make([]float32, len(ut.Wave))
			nolag = append(nolag, &e)
		}
		full, err := d.LoadUtterance(u.ID, 0)
		check(err)
		b.Excitation = tr.AlignTo(full.Wave).Signal(len(ut.Wave))
		c.Excitation = make([]float32, 2*len(ut.Wave))
		plain, aligned, zero = append(plain, &a), append(aligned, &b), append(zero, &c)
	}
	for _, s := range []struct {
		n string
		u []*ljspeech.Utterance
	}{{"plain", plain}, {"aligned", aligned}, {"zero", zero}, {"plain, no lag", nolag}} {
		if len(s.u) == 0 {
			continue
		}
		b, se, _, err := train.EvalBits(m, h, s.u)
		check(err)
		fmt.Printf("%s excitation: %.4f ± %.4f bits/sample\n", s.n, b, se)
	}
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "excitation-use:", err)
		os.Exit(1)
	}
}
