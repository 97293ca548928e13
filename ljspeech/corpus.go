package ljspeech

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/internal/cliutil"
)

// Corpus is an LJSpeech-format directory: metadata.csv plus wavs/<id>.wav.
type Corpus struct {
	Dir     string
	Entries []Entry
}

// Open reads dir/metadata.csv and checks that dir/wavs exists. It does not
// look at the wav files; Validate does.
func Open(dir string) (*Corpus, error) {
	meta := filepath.Join(dir, "metadata.csv")
	if _, err := os.Stat(meta); err != nil {
		return nil, fmt.Errorf("ljspeech: %s is not an LJSpeech directory (want metadata.csv and wavs/ in it, e.g. LJSpeech-1.1/): %w", dir, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "wavs")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("ljspeech: %s has no wavs/ directory next to metadata.csv", dir)
	}
	entries, err := ReadMetadata(meta)
	if err != nil {
		return nil, err
	}
	return &Corpus{Dir: dir, Entries: entries}, nil
}

// WavPath is where the recording of id lives.
func (c *Corpus) WavPath(id string) string {
	return filepath.Join(c.Dir, "wavs", id+".wav")
}

// BadFile is one recording that cannot be used.
type BadFile struct {
	ID   string
	Path string
	Err  error
}

// BadFilesError lists every unusable recording, so a user fixing a corpus
// sees the whole list at once.
type BadFilesError struct {
	Bad   []BadFile
	Total int
}

func (e *BadFilesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ljspeech: %d of %d recordings are unusable (rerun with --skip-bad to go on without them):", len(e.Bad), e.Total)
	for _, f := range e.Bad {
		fmt.Fprintf(&b, "\n  %s: %v", f.Path, f.Err)
	}
	return b.String()
}

// Validate reads every recording (in parallel on workers goroutines;
// GOMAXPROCS when <= 0) and returns those that are missing, unreadable, not
// mono, not at sampleRate Hz, or empty, in metadata order. done, when not
// nil, is called after each file (progress bars).
func (c *Corpus) Validate(sampleRate, workers int, done func()) []BadFile {
	bad := make([]error, len(c.Entries))
	cliutil.ForEach(len(c.Entries), workers, func(i int) error {
		_, bad[i] = loadRecording(c.WavPath(c.Entries[i].ID), sampleRate)
		return nil
	}, done)
	var out []BadFile
	for i, err := range bad {
		if err != nil {
			out = append(out, BadFile{ID: c.Entries[i].ID, Path: c.WavPath(c.Entries[i].ID), Err: err})
		}
	}
	return out
}

// loadRecording reads one mono recording at sampleRate, clipped to [-1,1]
// (int16/32768 never exceeds it, float files might). Errors do not repeat
// the path: BadFile carries it.
func loadRecording(path string, sampleRate int) ([]float32, error) {
	x, _, err := readRecording(path, sampleRate, nil)
	return x, err
}

// readRecording is loadRecording that, given h, also feeds every byte of the
// file to h while decoding it, so that preprocessing hashes a recording from
// the same read that decodes it. It returns the file's size and mtime too.
func readRecording(path string, sampleRate int, h io.Writer) ([]float32, os.FileInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, errors.New("missing")
		}
		return nil, nil, stripPath(err, path)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, stripPath(err, path)
	}
	var r io.Reader = f
	if h != nil {
		r = io.TeeReader(f, h)
	}
	a, err := audio.DecodeWAV(bufio.NewReaderSize(r, 64<<10), path, fi.Size(), audio.ReadOptions{KeepChannels: true})
	if err != nil {
		return nil, nil, stripPath(err, path)
	}
	if h != nil {
		// Chunks after the data chunk are not decoded but belong to the file.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case a.Channels != 1:
		return nil, nil, fmt.Errorf("%d channels, want mono", a.Channels)
	case a.SampleRate != sampleRate:
		return nil, nil, fmt.Errorf("sample rate %d Hz, want %d Hz", a.SampleRate, sampleRate)
	case len(a.Samples) == 0:
		return nil, nil, errors.New("no samples")
	}
	for i, v := range a.Samples {
		a.Samples[i] = min(max(v, -1), 1)
	}
	return a.Samples, fi, nil
}

// stripPath removes a leading "path: " from err's message to avoid naming
// the file twice in BadFilesError.
func stripPath(err error, path string) error {
	msg := err.Error()
	if i := strings.Index(msg, path+": "); i >= 0 {
		return errors.New(msg[:i] + msg[i+len(path)+2:])
	}
	return err
}
