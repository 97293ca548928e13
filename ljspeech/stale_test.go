package ljspeech

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/wavecat/wavecat/internal/dirlock"
)

// A recording that changes after preprocessing (edited in place, with its
// size kept, or another corpus with the same ids) is recomputed; the result
// equals a clean preprocessing of the new data.
func TestPreprocessRecomputesChangedRecordings(t *testing.T) {
	var lines []string
	for i := 1; i <= 12; i++ {
		lines = append(lines, fmt.Sprintf("LJ001-%04d|t|t", i))
	}
	data := buildCorpus(t, lines)
	out := filepath.Join(t.TempDir(), "dump")
	opt := Options{Data: data, Out: out, Dev: 1, Eval: 1, Quiet: true, Log: io.Discard, Workers: 2}
	if _, err := Preprocess(opt); err != nil {
		t.Fatal(err)
	}

	// Same size, other content: LJ001-0003 gets LJ001-0005's samples
	// truncated or padded to its own length (same header, same size).
	a, _ := os.ReadFile(filepath.Join(data, "wavs", "LJ001-0003.wav"))
	b, _ := os.ReadFile(filepath.Join(data, "wavs", "LJ001-0005.wav"))
	edited := append([]byte{}, a...)
	copy(edited[44:], b[44:min(len(b), len(a))])
	if err := os.WriteFile(filepath.Join(data, "wavs", "LJ001-0003.wav"), edited, 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := Preprocess(opt)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Stale, []string{"LJ001-0003"}) || rep.Processed != 1 || rep.Reused != 11 {
		t.Fatalf("after editing one recording: stale %v, processed %d, reused %d; want [LJ001-0003], 1, 11", rep.Stale, rep.Processed, rep.Reused)
	}
	clean := filepath.Join(t.TempDir(), "clean")
	copt := opt
	copt.Out = clean
	if _, err := Preprocess(copt); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, hashDir(t, clean), hashDir(t, out))

	// Another corpus under the same ids into the same dump: every
	// utterance whose recording differs is recomputed.
	var other []string
	for i := 13; i <= 24; i++ {
		other = append(other, fmt.Sprintf("LJ001-%04d|t|t", i))
	}
	data2 := buildCorpus(t, other)
	for i := 13; i <= 24; i++ {
		from := filepath.Join(data2, "wavs", fmt.Sprintf("LJ001-%04d.wav", i))
		to := filepath.Join(data2, "wavs", fmt.Sprintf("LJ001-%04d.wav", i-12))
		if err := os.Rename(from, to); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(data2, "metadata.csv"), []byte(joinLines(lines)), 0o644); err != nil {
		t.Fatal(err)
	}
	opt.Data = data2
	rep, err = Preprocess(opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Stale) != 12 || rep.Reused != 0 {
		t.Fatalf("another corpus in the same dump: stale %v, reused %d; want all 12 recomputed", rep.Stale, rep.Reused)
	}
	copt.Data, copt.Out = data2, filepath.Join(t.TempDir(), "clean2")
	if _, err := Preprocess(copt); err != nil {
		t.Fatal(err)
	}
	sameFiles(t, hashDir(t, copt.Out), hashDir(t, out))

	// A copy of the corpus (new mtimes, same bytes) is still reused.
	now := filepath.Join(data2, "wavs", "LJ001-0001.wav")
	if err := os.Chtimes(now, time.Unix(1e9, 0), time.Unix(1e9, 0)); err != nil {
		t.Fatal(err)
	}
	rep, err = Preprocess(opt)
	if err != nil || rep.Reused != 12 {
		t.Fatalf("touched recording: reused %d (%v), want 12", rep.Reused, err)
	}
}

// A dump being preprocessed is locked: a second preprocess into it stops.
func TestPreprocessLocksTheDump(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dump")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := dirlock.Acquire(out, "another preprocess")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	_, err = Preprocess(Options{Data: miniCorpus, Out: out, Quiet: true, Log: io.Discard})
	if !errors.Is(err, dirlock.ErrBusy) {
		t.Fatalf("preprocess into a locked dump: %v, want ErrBusy", err)
	}
	if _, serr := os.Stat(filepath.Join(out, ParamsFile)); serr == nil {
		t.Errorf("the refused preprocess wrote %s", ParamsFile)
	}
}

func joinLines(lines []string) string {
	s := ""
	for _, l := range lines {
		s += l + "\n"
	}
	return s
}
