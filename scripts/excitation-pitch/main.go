// Command excitation-pitch measures how well the excitation's pitch, read
// from each mel alone, agrees with the pitch of the recording itself: over
// the speech frames of the first N utterances of a dump, the voicing
// agreement and the gross pitch error (the quality measures' definitions),
// and the time the estimates took (docs/evaluation.md).
//
//	go run ./scripts/excitation-pitch DUMP [N]
package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/ljspeech"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: excitation-pitch DUMP [N]")
		os.Exit(2)
	}
	n := 40
	if len(os.Args) == 3 {
		var err error
		if n, err = strconv.Atoi(os.Args[2]); err != nil || n <= 0 {
			check(fmt.Errorf("N %q: want a positive count", os.Args[2]))
		}
	}
	d, err := ljspeech.OpenDump(os.Args[1])
	check(err)
	est, err := excitation.NewEstimator(d.Params.MelConfig())
	check(err)
	var agree, speech, both, gross, utts int
	var took time.Duration
	for _, u := range d.Index.Utterances[:min(n, len(d.Index.Utterances))] {
		utt, err := d.LoadUtterance(u.ID, 0)
		check(err)
		ref := evaluate.Postprocess(utt.Wave, d.Params)
		mel, frames, err := d.LoadFeats(u.ID)
		check(err)
		t0 := time.Now()
		tr, err := est.Track(mel, frames)
		check(err)
		took += time.Since(t0)
		f0, peak := evaluate.Pitch(ref, d.Params.SampleRate)
		sp := evaluate.SpeechFrames(ref)
		v := evaluate.Voiced(peak, sp)
		for k := range f0 {
			if !sp[k] || k >= len(tr.F0) {
				continue
			}
			speech++
			tv := tr.F0[k] > 0
			if tv == v[k] {
				agree++
			}
			if tv && v[k] {
				both++
				if math.Abs(tr.F0[k]/f0[k]-1) > evaluate.GrossErrorRatio {
					gross++
				}
			}
		}
		utts++
	}
	fmt.Printf("%d utterances: voicing agreement %.3f, gross pitch error %.1f%% (%d frames voiced in both), %.2f s per utterance\n",
		utts, float64(agree)/float64(max(speech, 1)), 100*float64(gross)/float64(max(both, 1)), both, took.Seconds()/float64(max(utts, 1)))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "excitation-pitch:", err)
		os.Exit(1)
	}
}
