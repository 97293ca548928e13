package listening

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Names and ids a user controls reach key.csv as text, never as a formula,
// and read back exactly.
func TestKeyCSVNeutralisesFormulas(t *testing.T) {
	for _, s := range []string{"=1+1", "+sys", "-3", "@SUM(A1)", "\tx", "\rx", "'=x", "''+y", "'plain", "plain", "a=b", "", "'"} {
		if got := cellText(csvCell(s)); got != s {
			t.Errorf("cellText(csvCell(%q)) = %q", s, got)
		}
		if c := csvCell(s); c != "" && strings.ContainsRune(formulaStart, rune(c[0])) {
			t.Errorf("csvCell(%q) = %q starts like a formula", s, c)
		}
	}
	for _, s := range []string{"'plain", "'", "plain"} {
		if cellText(s) != s {
			t.Errorf("cellText(%q) = %q: a quote not guarding a formula must stay", s, cellText(s))
		}
	}

	items := testItems()
	items[0].ID = `=HYPERLINK("http://evil.example/","x")`
	items[1].ID = "-2+3"
	items[0].Systems[0].System, items[1].Systems[0].System = "@cmd", "@cmd"
	items[0].Systems[1].System, items[1].Systems[1].System = "+sys|x", "+sys|x"
	dir := t.TempDir()
	key, err := Export(items, ExportOptions{Dir: dir, SampleRate: 22050, LUFS: -23})
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range rows {
		for _, c := range row {
			if c != "" && strings.ContainsRune(formulaStart, rune(c[0])) {
				t.Errorf("key.csv cell %q starts like a formula", c)
			}
		}
	}
	k, err := ReadKey(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range key {
		if k[s.File] != s {
			t.Errorf("key.csv reads back %+v for %s, want %+v", k[s.File], s.File, s)
		}
	}
	// Ratings of those systems score under their own names.
	res := filepath.Join(dir, "r.csv")
	var b strings.Builder
	b.WriteString("rater,stimulus,rating,timestamp\n")
	for _, s := range key {
		fmt.Fprintf(&b, "'=rater,%s,3,t\n", s.File)
	}
	write(t, dir, "r.csv", b.String())
	rs, err := ReadResults(res, k)
	if err != nil {
		t.Fatal(err)
	}
	if rs[0].Rater != "=rater" {
		t.Errorf("rater %q, want the quote the page adds removed", rs[0].Rater)
	}
	got := map[string]bool{}
	for _, s := range Score(rs) {
		got[s.System] = true
	}
	if !got["@cmd"] || !got["+sys|x"] {
		t.Errorf("scored systems %v, want @cmd and +sys|x", got)
	}
}

// A | or a line break in a system name stays inside its cell.
func TestScoreMarkdownEscapesCells(t *testing.T) {
	md := ScoreMarkdown([]SystemScore{
		{System: "a|b", Ratings: 2, Raters: 1, MOS: 3, CI95: 1, RaterMOS: 3, RaterCI95: math.NaN()},
		{System: "line\nbreak", Ratings: 2, Raters: 1, MOS: 3, CI95: 1, RaterMOS: 3, RaterCI95: math.NaN()},
		{System: `back\|slash`, Ratings: 2, Raters: 1, MOS: 3, CI95: 1, RaterMOS: 3, RaterCI95: math.NaN()},
	})
	lines := strings.Split(strings.TrimSuffix(md, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want header, rule and 3 rows:\n%s", len(lines), md)
	}
	for _, l := range lines[2:] {
		// Column separators are the pipes not escaped by a backslash (an
		// escaped backslash does not escape what follows).
		n := 0
		for i := 0; i < len(l); i++ {
			switch l[i] {
			case '\\':
				i++
			case '|':
				n++
			}
		}
		if n != 6 {
			t.Errorf("row %q has %d column separators, want 6", l, n)
		}
	}
	for _, want := range []string{`| a\|b |`, "| line break |", `| back\\\|slash |`} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

// peakHeapGrowth runs f and returns the most its heap objects (live or not
// yet swept) grew over the level before, sampled every millisecond. The GC
// runs eagerly meanwhile, so garbage does not count as growth.
func peakHeapGrowth(f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	runtime.GC()
	const name = "/memory/classes/heap/objects:bytes"
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	base := s[0].Value.Uint64()
	peak := base
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		s := []metrics.Sample{{Name: name}}
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			metrics.Read(s)
			peak = max(peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	f()
	close(done)
	<-stopped
	return peak - base
}

// bigResults writes a key of 400 stimuli (100 utterances, 4 systems) and
// raters x 400 ratings, and returns their paths and the ratings file size.
func bigResults(t *testing.T, raters int) (keyPath, resPath string, size int64) {
	t.Helper()
	dir := t.TempDir()
	systems := []string{GroundTruth, "sysA", "sysB", Anchor}
	var kb strings.Builder
	kb.WriteString("stimulus,system,utterance\n")
	var files []string
	for u := 0; u < 100; u++ {
		for i, s := range systems {
			f := fmt.Sprintf("%016x.wav", u*4+i+0xabc000)
			files = append(files, f)
			fmt.Fprintf(&kb, "%s,%s,u%03d\n", f, s, u)
		}
	}
	keyPath = write(t, dir, "key.csv", kb.String())
	resPath = filepath.Join(dir, "ratings.csv")
	f, err := os.Create(resPath)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("rater,stimulus,rating,timestamp\n")
	for r := 0; r < raters; r++ {
		for i, name := range files {
			fmt.Fprintf(w, "rater%05d,%s,%d,2026-11-26T12:%02d:%02d.000Z\n", r, name, 1+(i%4+r%2)%5, i/60%60, i%60)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	return keyPath, resPath, st.Size()
}

// Scoring streams the ratings: a 35 MB file grows the heap by a small
// fraction of its size (reading it whole took several times its size).
func TestTallyStreamsLargeResults(t *testing.T) {
	raters := 1500
	if testing.Short() {
		raters = 300
	}
	keyPath, resPath, size := bigResults(t, raters)
	key, err := ReadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	tally := NewTally(key)
	var addErr error
	grew := peakHeapGrowth(func() { addErr = tally.AddFile(resPath) })
	if addErr != nil {
		t.Fatal(addErr)
	}
	t.Logf("%d MB of ratings, heap grew by at most %.1f MB", size>>20, float64(grew)/(1<<20))
	if grew > uint64(size)/4 {
		t.Errorf("reading %d MB of ratings grew the heap by %.1f MB; want under a quarter of the file", size>>20, float64(grew)/(1<<20))
	}
	sc := tally.Scores()
	if len(sc) != 4 {
		t.Fatalf("scores %+v", sc)
	}
	for _, s := range sc {
		if s.Ratings != raters*100 || s.Raters != raters {
			t.Errorf("%s: %d ratings by %d raters, want %d by %d", s.System, s.Ratings, s.Raters, raters*100, raters)
		}
	}
}

// The streaming tally scores exactly as the rows read whole, and catches a
// rating repeated in another file.
func TestTallyMatchesScoreAndSpansFiles(t *testing.T) {
	keyPath, resPath, _ := bigResults(t, 7)
	key, err := ReadKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ReadResults(resPath, key)
	if err != nil {
		t.Fatal(err)
	}
	tally := NewTally(key)
	if err := tally.AddFile(resPath); err != nil {
		t.Fatal(err)
	}
	want, got := Score(rs), tally.Scores()
	if len(got) != len(want) {
		t.Fatalf("tally %+v, want %+v", got, want)
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.System != w.System || g.Ratings != w.Ratings || g.Raters != w.Raters || g.MOS != w.MOS || g.RaterMOS != w.RaterMOS ||
			math.Abs(g.CI95-w.CI95) > 1e-12 || math.Abs(g.RaterCI95-w.RaterCI95) > 1e-12 {
			t.Errorf("tally %+v, want %+v", g, w)
		}
	}
	dir := t.TempDir()
	first := write(t, dir, "a.csv", "rater,stimulus,rating,timestamp\nr1,a.wav,3,t\n")
	again := write(t, dir, "b.csv", "rater,stimulus,rating,timestamp\nr2,a.wav,3,t\nr1,audio/a.wav,4,t\n")
	tally = NewTally(Key{"a.wav": {File: "a.wav", System: "s"}})
	if err := tally.AddFile(first); err != nil {
		t.Fatal(err)
	}
	err = tally.AddFile(again)
	if err == nil || !strings.Contains(err.Error(), again+" line 3") || !strings.Contains(err.Error(), "also in "+first+" line 2") {
		t.Errorf("rating repeated across files: %v", err)
	}
}

// failAfter is a random source that runs dry after n bytes, failing an
// export after its stimuli are written.
type failAfter struct {
	r io.Reader
	n int
}

func (f *failAfter) Read(p []byte) (int, error) {
	if len(p) > f.n {
		return 0, errors.New("entropy ran out")
	}
	f.n -= len(p)
	return f.r.Read(p)
}

// An export that fails half way leaves the target as it was, so running it
// again succeeds; a staging folder left by a killed export is cleared.
func TestExportInterruptedThenRetried(t *testing.T) {
	items := testItems()
	for _, c := range []struct {
		name   string
		exists bool // the target directory is there before the export
		fail   func() (restore func(), opt func(*ExportOptions))
	}{
		{"disk full, new dir", false, diskFullAfter(3)},
		{"disk full, existing dir", true, diskFullAfter(5)},
		{"random source fails after the stimuli", true, func() (func(), func(*ExportOptions)) {
			// 8 stimuli x 8 name bytes + one 32-byte shuffle, then dry.
			return func() {}, func(o *ExportOptions) { o.Random = &failAfter{newSeeded(1), 8*8 + 32} }
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "test")
			if c.exists {
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			restore, setOpt := c.fail()
			opt := ExportOptions{Dir: dir, SampleRate: 22050, LUFS: -23, Anchor: true}
			setOpt(&opt)
			_, err := Export(items, opt)
			restore()
			if err == nil {
				t.Fatal("the failing export succeeded")
			}
			if c.exists {
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("failed export left %v in %s", names(ents), dir)
				}
			} else if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("failed export created %s (%v)", dir, err)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != map[bool]int{true: 1, false: 0}[c.exists] {
				t.Errorf("failed export left %v beside %s", names(ents), dir)
			}
			key, err := Export(items, ExportOptions{Dir: dir, SampleRate: 22050, LUFS: -23, Anchor: true})
			if err != nil {
				t.Fatalf("retry: %v", err)
			}
			checkComplete(t, dir, key)
			if ents, _ := os.ReadDir(parent); len(ents) != 1 {
				t.Errorf("after the retry %s holds %v, want only the test", parent, names(ents))
			}
		})
	}

	// Killed exports leave their staging folders (beside a new target, or
	// inside an existing one); the next export removes them.
	parent := t.TempDir()
	dir := filepath.Join(parent, "test")
	stale := filepath.Join(parent, ".test"+stagingName)
	if err := os.MkdirAll(filepath.Join(stale, MOSDir, AudioDir), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(stale, MOSDir, AudioDir), "0123456789abcdef.wav", "partial")
	key, err := Export(items, ExportOptions{Dir: dir, SampleRate: 22050, LUFS: -23})
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, dir, key)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale staging folder %s still there (%v)", stale, err)
	}
	dir2 := t.TempDir()
	stale = filepath.Join(dir2, stagingName)
	if err := os.MkdirAll(filepath.Join(stale, MOSDir), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, dir2, "notes.txt", "the experimenter's")
	key, err = Export(items, ExportOptions{Dir: dir2, SampleRate: 22050, LUFS: -23})
	if err != nil {
		t.Fatal(err)
	}
	checkComplete(t, dir2, key)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale staging folder %s still there (%v)", stale, err)
	}
	if _, err := os.Stat(filepath.Join(dir2, "notes.txt")); err != nil {
		t.Errorf("export into an existing directory lost its other files: %v", err)
	}
	// A complete test is still never overwritten, and a part of one left by
	// an older version is named.
	if _, err := Export(items, ExportOptions{Dir: dir2, SampleRate: 22050, LUFS: -23}); err == nil || !strings.Contains(err.Error(), "already holds a listening test") {
		t.Errorf("export over a complete test: %v", err)
	}
	os.Remove(filepath.Join(dir2, KeyFile))
	if _, err := Export(items, ExportOptions{Dir: dir2, SampleRate: 22050, LUFS: -23}); err == nil || !strings.Contains(err.Error(), "no key.csv") {
		t.Errorf("export over part of a test: %v", err)
	}
}

// diskFullAfter makes the stimulus writer fail with ENOSPC after n files.
func diskFullAfter(n int) func() (func(), func(*ExportOptions)) {
	return func() (func(), func(*ExportOptions)) {
		orig := writeWAV16
		writeWAV16 = func(path string, y []float32, rate int) error {
			if n == 0 {
				return fmt.Errorf("%s: %w", path, syscall.ENOSPC)
			}
			n--
			return orig(path, y, rate)
		}
		return func() { writeWAV16 = orig }, func(*ExportOptions) {}
	}
}

func names(ents []os.DirEntry) []string {
	var s []string
	for _, e := range ents {
		s = append(s, e.Name())
	}
	return s
}

// checkComplete checks dir holds the whole export of key and no staging.
func checkComplete(t *testing.T, dir string, key []Stimulus) {
	t.Helper()
	k, err := ReadKey(filepath.Join(dir, KeyFile))
	if err != nil || len(k) != len(key) {
		t.Fatalf("key.csv after the retry: %v, %d entries, want %d", err, len(k), len(key))
	}
	for _, s := range key {
		if _, err := os.Stat(filepath.Join(dir, MOSDir, AudioDir, s.File)); err != nil {
			t.Error(err)
		}
	}
	for _, f := range []string{MushraFile, filepath.Join(MOSDir, "index.html")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, stagingName)); !os.IsNotExist(err) {
		t.Errorf("staging folder left in %s (%v)", dir, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, MOSDir, AudioDir)); len(ents) != len(key) {
		t.Errorf("%d files in the audio folder, want %d: %v", len(ents), len(key), names(ents))
	}
}
