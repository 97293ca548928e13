package main

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"testing"
	"time"

	"github.com/wavecat/wavecat/listening"
)

func resetListeningOpts() {
	listeningExportOpts.checkpoints, listeningExportOpts.names = nil, nil
	listeningExportOpts.data, listeningExportOpts.split, listeningExportOpts.out = "", "eval", ""
	listeningExportOpts.maxUtts, listeningExportOpts.lufs, listeningExportOpts.noAnchor, listeningExportOpts.plots = 0, -23, false, false
	listeningExportOpts.title, listeningExportOpts.mushraAudio, listeningExportOpts.seed = "Speech quality test", "configs/resources/audio/wavecat", 1
	listeningScoreOpts.key, listeningScoreOpts.plot, listeningScoreOpts.table, listeningScoreOpts.json = "", "", "", ""
	evalOpts.postfilter = "comb+envelope"
}

// Export with the real generator on two tiny checkpoints, then score a
// hand-made results file: the ground truth rated 5 and 4 by two raters, the
// systems 2 and 3, the anchor 1.
func TestListeningExportAndScore(t *testing.T) {
	d := evalTestDump(t)
	a := evalTestCheckpoint(t, d, "adacat --components 4 --lambda 0.001", 5)
	g := evalTestCheckpoint(t, d, "gaussian", 6)
	out := filepath.Join(t.TempDir(), "test")
	resetListeningOpts()
	stdout, _, err := run(t, "listening-test", "export", "-q", "--checkpoint", a, "--checkpoint", g, "--name", "adacat", "--name", "gauss",
		"--data", d.Dir, "--max-utterances", "2", "--plots", "-o", out)
	if err != nil {
		t.Fatal(err)
	}
	_ = stdout
	key, err := listening.ReadKey(filepath.Join(out, listening.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 2*4 {
		t.Fatalf("%d stimuli, want 2 utterances x 4", len(key))
	}
	ids, _ := d.Split.Subset("eval")
	for _, id := range ids[:2] {
		if _, err := os.Stat(filepath.Join(out, listening.PlotDir, id+".png")); err != nil {
			t.Error(err)
		}
	}
	for _, f := range []string{"mos/index.html", "mushra.yaml"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	score := map[string][2]string{listening.GroundTruth: {"5", "4"}, "adacat": {"2", "3"}, "gauss": {"3", "2"}, listening.Anchor: {"1", "1"}}
	var files []string
	for r := 0; r < 2; r++ {
		p := filepath.Join(t.TempDir(), fmt.Sprintf("r%d.csv", r))
		f, _ := os.Create(p)
		w := csv.NewWriter(f)
		w.Write([]string{"rater", "stimulus", "rating", "timestamp"})
		for name, s := range key {
			w.Write([]string{fmt.Sprintf("rater%d", r), name, score[s.System][r], "2026-11-26T12:00:00Z"})
		}
		w.Flush()
		f.Close()
		files = append(files, p)
	}
	resetListeningOpts()
	js := filepath.Join(t.TempDir(), "mos.json")
	stdout, _, err = run(t, append([]string{"listening-test", "score", "--key", filepath.Join(out, listening.KeyFile), "--json", js}, files...)...)
	if err != nil {
		t.Fatal(err)
	}
	// Ground truth: 5,5,4,4 -> 4.50; by rater 5 and 4 -> 4.50.
	for _, want := range []string{"| ground_truth | 4 | 2 | 4.50 ±", "| adacat | 4 | 2 | 2.50 ±", "| gauss | 4 | 2 | 2.50 ±", "| anchor_3.5khz | 4 | 2 | 1.00 ± 0.00 | 1.00 ± 0.00 |"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	if gt, ac, ga, an := strings.Index(stdout, "| ground_truth"), strings.Index(stdout, "| adacat"), strings.Index(stdout, "| gauss"), strings.Index(stdout, "| anchor"); !(gt < ac && ac < ga && ga < an) {
		t.Errorf("rows not ground truth, systems by name, anchor:\n%s", stdout)
	}
	if _, err := os.Stat(filepath.Join(out, "mos.png")); err != nil {
		t.Errorf("bar plot: %v", err)
	}
	var parsed []listening.SystemScore
	if b, err := os.ReadFile(js); err != nil || json.Unmarshal(b, &parsed) != nil || len(parsed) != 4 {
		t.Errorf("JSON scores: %v %s", err, b)
	}
	// The same file twice double-counts a rater: refused.
	resetListeningOpts()
	if _, _, err := run(t, "listening-test", "score", "--key", filepath.Join(out, listening.KeyFile), files[0], files[0]); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("duplicate results file: %v", err)
	}
	// A second export into the same directory is refused (keys never mix).
	resetListeningOpts()
	if _, _, err := run(t, "listening-test", "export", "-q", "--checkpoint", a, "--data", d.Dir, "--max-utterances", "1", "-o", out); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("export over an existing test: %v", err)
	}
	resetListeningOpts()
	if _, _, err := run(t, "listening-test", "export", "-q", "--checkpoint", a, "--name", "ground_truth", "--data", d.Dir, "-o", filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("reserved system name: %v", err)
	}
	// An unknown --postfilter is refused before any synthesis; none is taken.
	resetListeningOpts()
	bad := filepath.Join(t.TempDir(), "pf")
	if _, _, err := run(t, "listening-test", "export", "-q", "--checkpoint", a, "--data", d.Dir, "--postfilter", "loud", "-o", bad); err == nil || !strings.Contains(err.Error(), "--postfilter") {
		t.Errorf("--postfilter loud: %v", err)
	}
	resetListeningOpts()
	if _, _, err := run(t, "listening-test", "export", "-q", "--checkpoint", a, "--data", d.Dir, "--max-utterances", "1", "--postfilter", "none", "-o", bad); err != nil {
		t.Errorf("--postfilter none: %v", err)
	}
	resetListeningOpts()
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

// score streams the ratings CSVs: 30 MB of ratings grow the heap by a small
// fraction of that (reading them whole took several times their size). The
// key's system names, neutralised against spreadsheet formulas, score under
// their real names, and a | in one stays inside its table cell.
func TestListeningScoreStreamsAndEscapes(t *testing.T) {
	dir := t.TempDir()
	systems := []string{listening.GroundTruth, "'=sys", "a|b", listening.Anchor} // as key.csv holds them
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
	keyPath := filepath.Join(dir, listening.KeyFile)
	if err := os.WriteFile(keyPath, []byte(kb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	raters := 1400
	if testing.Short() {
		raters = 300
	}
	res := filepath.Join(dir, "ratings.csv")
	f, err := os.Create(res)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("rater,stimulus,rating,timestamp\n")
	for r := 0; r < raters; r++ {
		for i, name := range files {
			fmt.Fprintf(w, "rater%05d,%s,%d,2026-11-26T12:%02d:%02d.000Z\n", r, name, 1+i%4, i/60%60, i%60)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	f.Close()
	size := st.Size()
	resetListeningOpts()
	var stdout string
	grew := peakHeapGrowth(func() { stdout, _, err = run(t, "listening-test", "score", "--key", keyPath, res) })
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d MB of ratings, heap grew by at most %.1f MB", size>>20, float64(grew)/(1<<20))
	// A quarter of the file, but at least 4 MiB: the command's fixed heap
	// (measured 2.8 MB under load) would otherwise fail the short file.
	// Reading the whole file grew the heap by several times its size.
	if limit := max(uint64(size)/4, 4<<20); grew > limit {
		t.Errorf("scoring %d MB of ratings grew the heap by %.1f MB; want under %.1f MB (a quarter of the file, at least 4 MiB)", size>>20, float64(grew)/(1<<20), float64(limit)/(1<<20))
	}
	n := raters * 100
	for _, want := range []string{
		fmt.Sprintf("| ground_truth | %d | %d | 1.00 ± 0.00 |", n, raters),
		fmt.Sprintf("| =sys | %d | %d | 2.00 ± 0.00 |", n, raters),
		fmt.Sprintf(`| a\|b | %d | %d | 3.00 ± 0.00 |`, n, raters),
		fmt.Sprintf("| anchor_3.5khz | %d | %d | 4.00 ± 0.00 |", n, raters),
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
}
