// Command postfilter-variants scores variants of vocode's postfilter on one
// synthesis of a dump's utterances by a checkpoint (EMA weights, voiced
// temperature 0.7, seeds 1..n as vocode eval uses them), and the default
// postfilter applied to white noise instead of the network's output (what
// the network contributes). The synthesis is cached in CACHE, so variants
// are cheap to add. docs/evaluation.md, "The postfilter", has its tables.
//
//	go run ./scripts/postfilter-variants CHECKPOINT DUMP CACHE [N]
//
// N spreads N utterances over the dump (default: all).
package main

import (
	"encoding/gob"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/postfilter"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// cached is one synthesis of the utterances with what the postfilter reads.
type cached struct {
	Y, Period, Voicing, Mel [][]float32
}

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: postfilter-variants CHECKPOINT DUMP CACHE [N]")
		os.Exit(2)
	}
	d, err := ljspeech.OpenDump(os.Args[2])
	check(err)
	every := 1
	if len(os.Args) > 4 {
		n, err := strconv.Atoi(os.Args[4])
		check(err)
		every = max(1, len(d.Index.Utterances)/max(n, 1))
	}
	var ids []string
	for i, u := range d.Index.Utterances {
		if i%every == 0 {
			ids = append(ids, u.ID)
		}
	}
	c, err := synthesis(os.Args[1], d, ids, os.Args[3])
	check(err)
	cfg := d.Params.MelConfig()
	comb := func(passes int, g float64) func(y, p, v []float32) []float32 {
		return func(y, p, v []float32) []float32 {
			for range passes {
				y = postfilter.Comb(y, p, v, g, cfg.Hop)
			}
			return y
		}
	}
	env := func(y, mel []float32) []float32 {
		out, err := postfilter.MatchEnvelope(y, mel, cfg, 2, 20)
		check(err)
		return out
	}
	variants := []struct {
		name string
		f    func(y, p, v, mel []float32) []float32
	}{
		{"none", func(y, p, v, mel []float32) []float32 { return y }},
		{"envelope, 2 passes", func(y, p, v, mel []float32) []float32 { return env(y, mel) }},
		{"comb g=1, then envelope", func(y, p, v, mel []float32) []float32 { return env(comb(1, 1)(y, p, v), mel) }},
		{"comb g=1 twice, then envelope (default)", func(y, p, v, mel []float32) []float32 { return env(comb(2, 1)(y, p, v), mel) }},
		{"comb g=0.8 twice, then envelope", func(y, p, v, mel []float32) []float32 { return env(comb(2, 0.8)(y, p, v), mel) }},
		{"envelope, comb g=1, envelope", func(y, p, v, mel []float32) []float32 { return env(comb(1, 1)(env(y, mel), p, v), mel) }},
		{"envelope, comb g=1 twice, envelope", func(y, p, v, mel []float32) []float32 { return env(comb(2, 1)(env(y, mel), p, v), mel) }},
		{"white noise instead of the network, default postfilter", func(y, p, v, mel []float32) []float32 {
			rng := rand.New(rand.NewPCG(uint64(len(y)), 9))
			z := make([]float32, len(y))
			for i := range z {
				z[i] = float32(0.05 * rng.NormFloat64())
			}
			return env(comb(2, 1)(z, p, v), mel)
		}},
	}
	idx := map[string]int{}
	for i, id := range ids {
		idx[id] = i
	}
	load := func(id string) (*ljspeech.Utterance, error) { return d.LoadUtterance(id, 0) }
	opt := evaluate.Options{MCep: evaluate.DefaultMCepConfig(), Preprocess: d.Params}
	var rows []evaluate.Row
	for _, v := range variants {
		r, err := evaluate.Baseline(v.name, ids, load, func(u *ljspeech.Utterance) ([]float32, error) {
			i := idx[u.ID]
			y := evaluate.Postprocess(c.Y[i], d.Params)
			out := v.f(y, c.Period[i], c.Voicing[i], c.Mel[i])
			for j, s := range out {
				out[j] = max(-1, min(1, s))
			}
			return out, nil
		}, opt)
		check(err)
		rows = append(rows, r)
	}
	fmt.Print(evaluate.Markdown(rows))
}

// synthesis reads the cache, or synthesises ids with the checkpoint as
// vocode eval does and writes it.
func synthesis(ck string, d *ljspeech.Dump, ids []string, cache string) (*cached, error) {
	var c cached
	if f, err := os.Open(cache); err == nil {
		defer f.Close()
		return &c, gob.NewDecoder(f).Decode(&c)
	}
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		return nil, err
	}
	m, h, mi, _, err := train.LoadModel(ck, be, true)
	if err != nil {
		return nil, err
	}
	if mi.Model.ExcitationChannels == 0 {
		return nil, fmt.Errorf("%s: the model takes no excitation (this script reads its pitch track)", ck)
	}
	add, err := train.ExcitationAdder(d, mi.Model)
	if err != nil {
		return nil, err
	}
	g, err := wavenet.NewGenerator(m, h)
	if err != nil {
		return nil, err
	}
	C := mi.Model.CinChannels
	var utts []wavenet.Utterance
	for i, id := range ids {
		u, err := d.LoadUtteranceNormalized(id, 0, mi.Stats)
		if err != nil {
			return nil, err
		}
		if err := add(u); err != nil {
			return nil, err
		}
		rows := make([]float32, u.Frames*C)
		for f := 0; f < u.Frames; f++ {
			for ch := 0; ch < C; ch++ {
				rows[f*C+ch] = u.Mel[ch*u.Frames+f]
			}
		}
		utts = append(utts, wavenet.Utterance{Mel: rows, Seed: uint64(1 + i), Excitation: u.Excitation, Period: u.Period})
		T := len(u.Wave)
		v := make([]float32, T)
		for n := range v {
			// The excitation is v sin, v cos.
			v[n] = float32(min(1, math.Hypot(float64(u.Excitation[n]), float64(u.Excitation[T+n]))))
		}
		mel, _, err := d.LoadFeats(id)
		if err != nil {
			return nil, err
		}
		c.Period, c.Voicing, c.Mel = append(c.Period, u.Period), append(c.Voicing, v), append(c.Mel, mel)
	}
	if c.Y, err = g.Generate(utts, wavenet.GenerateOptions{Batch: len(utts), Workers: 1, Temperature: 1, VoicedTemperature: 0.7}); err != nil {
		return nil, err
	}
	f, err := os.Create(cache)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return &c, gob.NewEncoder(f).Encode(&c)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "postfilter-variants:", err)
		os.Exit(1)
	}
}
