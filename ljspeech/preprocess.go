package ljspeech

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/internal/dirlock"
	"github.com/wavecat/wavecat/melspec"
)

// Options configures Preprocess.
type Options struct {
	Data    string // LJSpeech directory: metadata.csv + wavs/
	Out     string // dump directory (created)
	Params  Params // zero value means DefaultParams()
	Dev     int    // dev utterances (reference: 10)
	Eval    int    // eval utterances (reference: 10)
	SkipBad bool   // go on without unusable recordings instead of failing
	Workers int    // parallel files; GOMAXPROCS when <= 0
	Quiet   bool   // no progress bars
	// Log receives progress bars and notes (skipped, dropped, scaled
	// split); os.Stderr when nil.
	Log io.Writer
}

// Report says what Preprocess did.
type Report struct {
	Entries   int          // lines in metadata.csv
	Processed int          // utterances computed in this run
	Reused    int          // utterances already complete from an earlier run
	Stale     []string     // ids recomputed because their recording or parameters changed
	Bad       []BadFile    // unusable recordings (only with SkipBad; else an error)
	Dropped   []DroppedUtt // discarded by the recipe
	Split     Split
	Scaled    bool // dev/eval were scaled down for a small corpus
}

// Preprocess turns an LJSpeech directory into a dump (layout in dump.go).
// It is resumable: utterances whose done marker exists are not recomputed,
// and since every file is written atomically and the marker last, a killed
// run leaves nothing half-written. Index, split and stats are rebuilt at the
// end of every run from the markers, so they always describe the whole dump.
func Preprocess(opt Options) (*Report, error) {
	p := opt.Params
	if reflect.ValueOf(p).IsZero() {
		p = DefaultParams()
	}
	p.Features = featuresDoc
	if err := p.Validate(); err != nil {
		return nil, err
	}
	logw := opt.Log
	if logw == nil {
		logw = os.Stderr
	}
	corpus, err := Open(opt.Data)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opt.Out, 0o755); err != nil {
		return nil, fmt.Errorf("ljspeech: creating dump directory: %w", err)
	}
	// One writer per dump: two would overwrite each other's features.
	lock, err := dirlock.Acquire(opt.Out, "preprocessing "+opt.Data)
	if err != nil {
		return nil, fmt.Errorf("ljspeech: %w", err)
	}
	defer lock.Release()
	if removed, err := dirlock.CleanStale(opt.Out); err != nil {
		return nil, fmt.Errorf("ljspeech: %w", err)
	} else if len(removed) > 0 {
		fmt.Fprintf(logw, "removed %d temporary file(s) a killed run left in %s\n", len(removed), opt.Out)
	}
	if err := claimParams(opt.Out, p); err != nil {
		return nil, err
	}
	paramsKey, err := p.key()
	if err != nil {
		return nil, err
	}
	rep := &Report{Entries: len(corpus.Entries)}

	// Which utterances still need work: those without a marker, and those
	// whose recording changed since (another corpus, an edited file).
	todo, stale, err := needWork(corpus, opt.Out, paramsKey, opt.Workers)
	if err != nil {
		return nil, err
	}
	rep.Reused = len(corpus.Entries) - len(todo)
	rep.Stale = stale
	if len(stale) > 0 {
		fmt.Fprintf(logw, "recomputing %d utterance(s) whose recording or parameters changed since they were preprocessed (first: %s)\n", len(stale), stale[0])
	}

	// Check every recording still to be processed before spending time on
	// any, so the user gets the complete list of bad files at once.
	sub := &Corpus{Dir: corpus.Dir}
	for _, i := range todo {
		sub.Entries = append(sub.Entries, corpus.Entries[i])
	}
	bar := cliutil.NewBar(int64(len(todo)), "checking wavs", logw, opt.Quiet)
	bad := sub.Validate(p.SampleRate, opt.Workers, func() { bar.Add(1) })
	bar.Finish()
	if len(bad) > 0 {
		if !opt.SkipBad {
			return nil, &BadFilesError{Bad: bad, Total: len(corpus.Entries)}
		}
		rep.Bad = bad
		fmt.Fprintf(logw, "skipping %d unusable recording(s):\n", len(bad))
		for _, b := range bad {
			fmt.Fprintf(logw, "  %s: %v\n", b.Path, b.Err)
		}
		isBad := make(map[string]bool, len(bad))
		for _, b := range bad {
			isBad[b.ID] = true
		}
		kept := todo[:0]
		for _, i := range todo {
			if !isBad[corpus.Entries[i].ID] {
				kept = append(kept, i)
			}
		}
		todo = kept
	}

	// Compute. Each worker takes a Processor from the pool (they hold
	// scratch buffers and are not safe for concurrent use).
	pool := sync.Pool{New: func() any {
		pr, err := NewProcessor(p)
		if err != nil {
			return err
		}
		return pr
	}}
	bar = cliutil.NewBar(int64(len(todo)), "preprocessing", logw, opt.Quiet)
	err = cliutil.ForEach(len(todo), opt.Workers, func(k int) error {
		v := pool.Get()
		pr, ok := v.(*Processor)
		if !ok {
			return v.(error)
		}
		defer pool.Put(pr)
		return processOne(pr, corpus, corpus.Entries[todo[k]].ID, opt.Out, p, paramsKey)
	}, func() { bar.Add(1) })
	bar.Finish()
	if err != nil {
		return nil, err
	}
	rep.Processed = len(todo)

	// Index from the markers, in metadata order.
	var idx Index
	var kept []string
	isBad := make(map[string]bool, len(rep.Bad))
	for _, b := range rep.Bad {
		isBad[b.ID] = true
	}
	for _, e := range corpus.Entries {
		if isBad[e.ID] {
			continue
		}
		m, err := readDone(opt.Out, e.ID)
		if err != nil {
			return nil, err
		}
		if m.Dropped != "" {
			idx.Dropped = append(idx.Dropped, DroppedUtt{ID: e.ID, Reason: m.Dropped})
			continue
		}
		idx.Utterances = append(idx.Utterances, Utt{ID: e.ID, Frames: m.Frames, Samples: m.Samples, Text: e.Text, Norm: e.Norm})
		kept = append(kept, e.ID)
	}
	rep.Dropped = idx.Dropped
	for _, d := range idx.Dropped {
		fmt.Fprintf(logw, "dropped %s: %s\n", d.ID, d.Reason)
	}
	split, scaled, err := MakeSplit(kept, opt.Dev, opt.Eval)
	if err != nil {
		return nil, err
	}
	rep.Split, rep.Scaled = split, scaled
	if scaled {
		fmt.Fprintf(logw, "small corpus (%d usable utterances): dev and eval scaled down to %d and %d so that training keeps most of the data\n",
			len(kept), len(split.Dev), len(split.Eval))
	}

	// Statistics of the training split only, merged in a fixed order so
	// that stats.json is bit-identical across runs.
	norm, err := trainStats(opt.Out, split.Train, p.Mel.NMels, opt.Workers)
	if err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(opt.Out, IndexFile), idx); err != nil {
		return nil, err
	}
	if err := writeJSON(filepath.Join(opt.Out, SplitFile), split); err != nil {
		return nil, err
	}
	if err := norm.Save(filepath.Join(opt.Out, StatsFile)); err != nil {
		return nil, err
	}
	return rep, nil
}

// claimParams writes preprocess.json, or checks that an existing one holds
// the same parameters: mixing utterances made with different settings in one
// dump would silently corrupt training.
func claimParams(dir string, p Params) error {
	path := filepath.Join(dir, ParamsFile)
	if _, err := os.Stat(path); err == nil {
		var old Params
		if err := readJSON(path, &old); err != nil {
			return err
		}
		if !reflect.DeepEqual(old, p) {
			a, _ := json.Marshal(old)
			b, _ := json.Marshal(p)
			return fmt.Errorf("ljspeech: %s was made with other preprocessing parameters; use a new output directory\n  dump: %s\n  now:  %s", dir, a, b)
		}
		return nil
	}
	return writeJSON(path, p)
}

// needWork returns the indices of corpus entries to (re)compute, and the ids
// among them that had a marker whose source or parameters no longer match.
// Size is compared first (cheap); the content hash decides, so a copied
// corpus (new mtimes, same bytes) is still reused.
func needWork(corpus *Corpus, out, paramsKey string, workers int) (todo []int, stale []string, err error) {
	state := make([]int8, len(corpus.Entries)) // 0 reuse, 1 new, 2 stale
	err = cliutil.ForEach(len(corpus.Entries), workers, func(i int) error {
		id := corpus.Entries[i].ID
		m, err := readDone(out, id)
		if err != nil {
			state[i] = 1
			return nil
		}
		if m.Source == nil || m.Params != paramsKey {
			state[i] = 2
			return nil
		}
		path := corpus.WavPath(id)
		fi, err := os.Stat(path)
		if err != nil || fi.Size() != m.Source.Size {
			state[i] = 2
			return nil
		}
		now, err := sourceKey(path)
		if err != nil || now.SHA256 != m.Source.SHA256 {
			state[i] = 2
		}
		return nil
	}, nil)
	if err != nil {
		return nil, nil, err
	}
	for i, st := range state {
		if st != 0 {
			todo = append(todo, i)
		}
		if st == 2 {
			stale = append(stale, corpus.Entries[i].ID)
		}
	}
	return todo, stale, nil
}

// sourceKey hashes the recording at path.
func sourceKey(path string) (*SourceKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keyOf(fi, h), nil
}

// keyOf is the SourceKey of a file with info fi whose bytes went into h.
func keyOf(fi os.FileInfo, h hash.Hash) *SourceKey {
	return &SourceKey{Size: fi.Size(), ModTime: fi.ModTime().UTC().Format(time.RFC3339Nano), SHA256: hex.EncodeToString(h.Sum(nil))}
}

// readDone returns id's completion marker when it and the files it vouches
// for exist.
func readDone(dir, id string) (doneMarker, error) {
	var m doneMarker
	if err := readJSON(DonePath(dir, id), &m); err != nil {
		return m, err
	}
	if m.ID != id {
		return m, fmt.Errorf("ljspeech: %s is for %q", DonePath(dir, id), m.ID)
	}
	if m.Dropped == "" {
		for _, f := range []string{WavePath(dir, id), FeatsPath(dir, id)} {
			if _, err := os.Stat(f); err != nil {
				return m, fmt.Errorf("ljspeech: %w", err)
			}
		}
	}
	return m, nil
}

func processOne(pr *Processor, c *Corpus, id, out string, p Params, paramsKey string) error {
	path := c.WavPath(id)
	// Keyed from the bytes decoded: a file that changes afterwards no longer
	// matches, and the next run recomputes it.
	h := sha256.New()
	x, fi, err := readRecording(path, p.SampleRate, h)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	src := keyOf(fi, h)
	r, err := pr.Process(x)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	m := doneMarker{ID: id, MaxAbs: r.MaxAbs, Dropped: r.Dropped, Source: src, Params: paramsKey}
	if r.Dropped == "" {
		m.Frames, m.Samples = r.Frames, len(r.Wave)
		if err := audio.WriteNPY(WavePath(out, id), r.Wave, []int{len(r.Wave)}); err != nil {
			return err
		}
		if err := audio.WriteNPY(FeatsPath(out, id), r.Mel, []int{r.Frames, p.Mel.NMels}); err != nil {
			return err
		}
	}
	return writeJSON(DonePath(out, id), m)
}

func trainStats(dir string, ids []string, nMels, workers int) (*melspec.Normalizer, error) {
	per := make([]*melspec.Stats, len(ids))
	err := cliutil.ForEach(len(ids), workers, func(i int) error {
		mel, _, err := readFeats(dir, ids[i], nMels)
		if err != nil {
			return err
		}
		per[i] = melspec.NewStats(nMels)
		return per[i].Add(mel)
	}, nil)
	if err != nil {
		return nil, err
	}
	total := melspec.NewStats(nMels)
	for _, s := range per {
		if err := total.Merge(s); err != nil {
			return nil, err
		}
	}
	return total.Normalizer(melspec.DefaultMinStd)
}
