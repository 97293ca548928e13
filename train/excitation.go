package train

import (
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/mulaw"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// checkExcitation refuses a model whose excitation channels are not the
// excitation package's signal (the only one there is).
func checkExcitation(mc wavenet.Config) error {
	if e := mc.ExcitationChannels; e != 0 && e != excitation.Channels {
		return fmt.Errorf("model has %d excitation channels; the excitation signal has %d", e, excitation.Channels)
	}
	return nil
}

// excitationTracks estimates the pitch track of every id of d from its
// stored (unnormalised) mel, with a progress bar: about half a second of
// CPU per utterance (60 Griffin-Lim iterations). Contours are cached in the
// dump (TrackCacheFile), so only mels not seen before cost that.
func excitationTracks(d *ljspeech.Dump, ids []string, mc wavenet.Config, log io.Writer, quiet bool) (map[string]excitation.Track, error) {
	if err := checkExcitation(mc); err != nil {
		return nil, err
	}
	cfg := d.Params.MelConfig()
	est, err := excitation.NewEstimator(cfg)
	if err != nil {
		return nil, err
	}
	cache := readTrackCache(d.Dir)
	out := make(map[string]excitation.Track, len(ids))
	var todo, digests []string
	for _, id := range ids {
		mel, _, err := d.LoadFeats(id)
		if err != nil {
			return nil, fmt.Errorf("excitation of %s: %w", d.Dir, err)
		}
		dg := melDigest(mel)
		if t, ok := cache.lookup(id, dg, cfg.SampleRate); ok {
			out[id] = t
			continue
		}
		todo, digests = append(todo, id), append(digests, dg)
	}
	if len(todo) == 0 {
		return out, nil
	}
	bar := cliutil.NewBarOptions(int64(len(todo)), "excitation", log, quiet, cliutil.BarOptions{Unit: "utts"})
	tracks, err := est.Tracks(len(todo), func(i int) ([]float32, int, error) { return d.LoadFeats(todo[i]) }, func() { bar.Add(1) })
	bar.Finish()
	if err != nil {
		return nil, fmt.Errorf("excitation of %s: %w", d.Dir, err)
	}
	for i, id := range todo {
		out[id] = tracks[i]
		cache.Tracks[id] = cachedTrack{Mel: digests[i], SampleRate: cfg.SampleRate, F0: tracks[i].F0}
	}
	cache.write(d.Dir, log)
	return out, nil
}

// AddExcitation fills each utterance's Excitation for model mc (nothing
// when it takes none), from d's stored mels.
func AddExcitation(d *ljspeech.Dump, utts []*ljspeech.Utterance, mc wavenet.Config, log io.Writer, quiet bool) error {
	if mc.ExcitationChannels == 0 {
		return nil
	}
	ids := make([]string, len(utts))
	for i, u := range utts {
		ids[i] = u.ID
	}
	tracks, err := excitationTracks(d, ids, mc, log, quiet)
	if err != nil {
		return err
	}
	for _, u := range utts {
		setExcitation(u, tracks[u.ID], mc)
	}
	return nil
}

// setExcitation fills u's Excitation from track t, and its Period when
// model mc has lag taps.
func setExcitation(u *ljspeech.Utterance, t excitation.Track, mc wavenet.Config) {
	u.Excitation = t.Signal(len(u.Wave))
	if mc.LagTaps > 0 {
		u.Period = t.Period(len(u.Wave))
	}
}

// modelInput is the network input x [FirstConvInputs][T] for a whole
// utterance, teacher-forced: the encoded previous samples (as in
// training), then the utterance's excitation rows when the model takes
// them.
func modelInput(mc wavenet.Config, head outputs.Head, u *ljspeech.Utterance) ([]float32, error) {
	T := len(u.Wave)
	in := mc.FirstConvInputs()
	x := make([]float32, in*T)
	encodeInputsStride(head, u.Wave, 1, T, in, x)
	if e := mc.ExcitationChannels; e > 0 {
		if len(u.Excitation) != e*T {
			return nil, fmt.Errorf("utterance %s: the model takes %d excitation channels x %d samples, the utterance has %d values (train.AddExcitation)", u.ID, e, T, len(u.Excitation))
		}
		copy(x[mc.InputChannels*T:], u.Excitation)
	}
	if L := mc.LagTaps; L > 0 {
		if len(u.Period) != T {
			return nil, fmt.Errorf("utterance %s: the model's lag taps want a pitch period per sample (%d), the utterance has %d (train.AddExcitation)", u.ID, T, len(u.Period))
		}
		wavenet.LagInput(x[(mc.InputChannels+mc.ExcitationChannels)*T:], T, u.Wave, u.Period, 0, T, L)
	}
	return x, nil
}

// noisyInputs is the batch's wave ([len(items)][T]) with every sample
// moved by Gaussian noise of std sigma in the mu-law companded domain
// (clamped to [-1, 1]). Each crop's noise is drawn from (seed, its global
// item number), so a resumed run sees the same noise, and a crop gets the
// same noise whichever rank of a data-parallel run reads it.
func noisyInputs(wave []float32, T int, items []int, sigma float64, seed uint64) []float32 {
	if len(items)*T != len(wave) {
		panic(fmt.Sprintf("train: noisyInputs: %d item numbers for %d crops of %d samples", len(items), len(wave)/max(T, 1), T))
	}
	out := make([]float32, len(wave))
	for i, k := range items {
		rng := rand.New(rand.NewPCG(seed^0x6e6f697365, uint64(k)))
		for t, y := range wave[i*T : (i+1)*T] {
			c := mulaw.Compand(float64(y), 255) + sigma*rng.NormFloat64()
			out[i*T+t] = float32(mulaw.Expand(max(-1, min(1, c)), 255))
		}
	}
	return out
}

// alignTracks aligns every track to its recording in d (AlignTo).
func alignTracks(d *ljspeech.Dump, tracks map[string]excitation.Track) error {
	for id, t := range tracks {
		u, err := d.LoadUtterance(id, 0)
		if err != nil {
			return err
		}
		tracks[id] = t.AlignTo(u.Wave)
	}
	return nil
}

// ExcitationAdder returns what fills one utterance's Excitation for model
// mc from d's stored mel, with one estimator for all the calls (nil and no
// error when the model takes none): for loaders that meet utterances one
// at a time.
func ExcitationAdder(d *ljspeech.Dump, mc wavenet.Config) (func(u *ljspeech.Utterance) error, error) {
	if mc.ExcitationChannels == 0 {
		return nil, nil
	}
	if err := checkExcitation(mc); err != nil {
		return nil, err
	}
	est, err := excitation.NewEstimator(d.Params.MelConfig())
	if err != nil {
		return nil, err
	}
	return func(u *ljspeech.Utterance) error {
		mel, frames, err := d.LoadFeats(u.ID)
		if err != nil {
			return err
		}
		t, err := est.Track(mel, frames)
		if err != nil {
			return fmt.Errorf("excitation of %s: %w", u.ID, err)
		}
		setExcitation(u, t, mc)
		return nil
	}, nil
}
