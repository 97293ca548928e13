package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/listening"
)

func resetListeningOpts() {
	listeningExportOpts.checkpoints, listeningExportOpts.names = nil, nil
	listeningExportOpts.data, listeningExportOpts.split, listeningExportOpts.out = "", "eval", ""
	listeningExportOpts.maxUtts, listeningExportOpts.lufs, listeningExportOpts.noAnchor, listeningExportOpts.plots = 0, -23, false, false
	listeningExportOpts.title, listeningExportOpts.mushraAudio, listeningExportOpts.seed = "Speech quality test", "configs/resources/audio/wavecat", 1
	listeningScoreOpts.key, listeningScoreOpts.plot, listeningScoreOpts.table, listeningScoreOpts.json = "", "", "", ""
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
}
