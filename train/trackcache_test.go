package train

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/ljspeech"
)

// TestTrackCache: the first run's contours are cached in the dump and
// reused as they are; an entry whose mel digest or version does not match
// is derived again, and an unwritable dump only costs a warning.
func TestTrackCache(t *testing.T) {
	src, err := ljspeech.OpenDump(miniDump(t))
	if err != nil {
		t.Fatal(err)
	}
	// A private copy of the dump, so the shared one's cache is not touched.
	dir := filepath.Join(t.TempDir(), "dump")
	if err := os.CopyFS(dir, os.DirFS(src.Dir)); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, TrackCacheFile))
	d, err := ljspeech.OpenDump(dir)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := LookupPreset("tiny")
	mc := p.Model
	mc.ExcitationChannels = excitation.Channels
	ids := []string{d.Index.Utterances[0].ID, d.Index.Utterances[1].ID}

	first, err := excitationTracks(d, ids, mc, ioDiscard{}, true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, TrackCacheFile)
	c := readTrackCache(dir)
	if len(c.Tracks) != 2 {
		t.Fatalf("cache %s holds %d contours, want 2", path, len(c.Tracks))
	}
	for _, id := range ids {
		if !slices.Equal(c.Tracks[id].F0, first[id].F0) {
			t.Errorf("%s: cached contour differs from the derived one", id)
		}
	}

	// A marked contour with the right digest comes back as stored (read,
	// not derived); one whose digest is wrong is derived again.
	marked := append([]float64(nil), c.Tracks[ids[0]].F0...)
	marked[0] = 123.5
	e0 := c.Tracks[ids[0]]
	e0.F0 = marked
	c.Tracks[ids[0]] = e0
	e1 := c.Tracks[ids[1]]
	e1.Mel = strings.Repeat("0", 64)
	e1.F0 = slices.Repeat([]float64{200}, len(e1.F0))
	c.Tracks[ids[1]] = e1
	writeCache(t, path, c)
	again, err := excitationTracks(d, ids, mc, ioDiscard{}, true)
	if err != nil {
		t.Fatal(err)
	}
	if again[ids[0]].F0[0] != 123.5 {
		t.Error("a cached contour with a matching mel digest was not used")
	}
	if !slices.Equal(again[ids[1]].F0, first[ids[1]].F0) {
		t.Error("a cached contour with another mel digest was used")
	}
	// Rebuilt from its F0 alone, a track gives the derived excitation.
	n := 3000
	if !slices.Equal(excitation.FromF0(first[ids[1]].F0, d.Params.MelConfig().SampleRate).Signal(n), first[ids[1]].Signal(n)) {
		t.Error("FromF0 of a derived contour gives another excitation")
	}

	// Another version: every entry is ignored.
	c = readTrackCache(dir)
	c.Version = "older"
	writeCache(t, path, c)
	if got := readTrackCache(dir); len(got.Tracks) != 0 || got.Version != excitation.Version {
		t.Errorf("a cache of another version was read: %d contours, version %q", len(got.Tracks), got.Version)
	}

	// A cache that cannot be written (a directory is in its place; a
	// read-only dump does the same for a user): derived anyway, with a
	// warning.
	os.Remove(path)
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	got, err := excitationTracks(d, ids, mc, &log, true)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "not cached") || !slices.Equal(got[ids[0]].F0, first[ids[0]].F0) {
		t.Errorf("unwritable cache: log %q, or the contour differs", log.String())
	}
}

func writeCache(t *testing.T, path string, c trackCache) {
	t.Helper()
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
