package main

import (
	"bytes"
	"github.com/wavecat/wavecat/train"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/ljspeech"
)

const miniCorpus = "../../testdata/minicorpus/LJSpeech-1.1"

// TestMain lets a test run the real main (exit status and all) by
// re-executing the test binary with TRAIN_WAVENET_MAIN=1.
func TestMain(m *testing.M) {
	if os.Getenv("TRAIN_WAVENET_MAIN") == "1" {
		os.Args = append([]string{"train-wavenet"}, strings.Fields(os.Getenv("TRAIN_WAVENET_ARGS"))...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// run executes a fresh command tree in-process.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	var o, e bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

func TestPreprocessCommandOnMiniCorpus(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dump")
	stdout, stderr, err := run(t, "preprocess", "--data", miniCorpus, "--out", out, "--quiet", "--workers", "2")
	if err != nil {
		t.Fatal(err, stderr)
	}
	if !strings.Contains(stdout, "32 utterances (train 26, dev 3, eval 3); computed 32, reused 0, dropped 0, bad 0") {
		t.Fatalf("stdout %q", stdout)
	}
	if !strings.Contains(stderr, "dev and eval scaled down to 3 and 3") || strings.Contains(stderr, "preprocessing") {
		t.Fatalf("stderr (quiet) %q", stderr)
	}
	stdout, _, err = run(t, "preprocess", "--data", miniCorpus, "--out", out, "-q")
	if err != nil || !strings.Contains(stdout, "computed 0, reused 32") {
		t.Fatalf("rerun: %q, %v", stdout, err)
	}
	// What the trainer will do with it.
	bt, err := ljspeech.NewBatcher(out, "train", 2, 10240, 2, 256, 1)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := bt.Batch(0); err != nil || len(b.Wave) != 2*10240 || len(b.Mel) != 2*80*44 {
		t.Fatalf("batch: %v", err)
	}

	// Explicit split sizes, and progress on stderr without --quiet.
	out2 := filepath.Join(t.TempDir(), "dump")
	stdout, stderr, err = run(t, "preprocess", "--data", miniCorpus, "--out", out2, "--dev", "1", "--eval", "2")
	if err != nil || !strings.Contains(stdout, "(train 29, dev 1, eval 2)") {
		t.Fatalf("--dev 1 --eval 2: %q, %v", stdout, err)
	}
	if !strings.Contains(stderr, "preprocessing") {
		t.Fatalf("no progress bar on stderr: %q", stderr)
	}
}

func TestPreprocessCommandErrors(t *testing.T) {
	if _, _, err := run(t, "preprocess", "--out", t.TempDir()); err == nil || !strings.Contains(err.Error(), "--data and --out are required") {
		t.Fatalf("missing --data: %v", err)
	}
	// A corpus with a missing recording: listed; --skip-bad goes on.
	dir := filepath.Join(t.TempDir(), "LJSpeech-1.1")
	if err := os.MkdirAll(filepath.Join(dir, "wavs"), 0o755); err != nil {
		t.Fatal(err)
	}
	var meta strings.Builder
	for _, id := range []string{"LJ001-0001", "LJ001-0002", "LJ001-0003", "LJ001-0004"} {
		b, err := os.ReadFile(filepath.Join(miniCorpus, "wavs", id+".wav"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "wavs", id+".wav"), b, 0o644)
		meta.WriteString(id + "|x|x\n")
	}
	meta.WriteString("LJ001-0005|gone|gone\n")
	os.WriteFile(filepath.Join(dir, "metadata.csv"), []byte(meta.String()), 0o644)
	out := filepath.Join(t.TempDir(), "dump")
	_, _, err := run(t, "preprocess", "--data", dir, "--out", out, "-q")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "wavs", "LJ001-0005.wav")+": missing") {
		t.Fatalf("missing wav: %v", err)
	}
	stdout, stderr, err := run(t, "preprocess", "--data", dir, "--out", out, "-q", "--skip-bad")
	if err != nil || !strings.Contains(stdout, "4 utterances") || !strings.Contains(stdout, "bad 1") || !strings.Contains(stderr, "LJ001-0005.wav: missing") {
		t.Fatalf("--skip-bad: %q %q %v", stdout, stderr, err)
	}
}

func TestPlanCorpus(t *testing.T) {
	a, err := planCorpus(120, 5, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := planCorpus(120, 5, 0, false)
	if !slices.Equal(a, b) {
		t.Fatal("plan not deterministic")
	}
	c, _ := planCorpus(120, 6, 0, false)
	if slices.Equal(a, c) {
		t.Fatal("seed ignored")
	}
	if a[0].id != "LJ001-0001" || a[49].id != "LJ001-0050" || a[50].id != "LJ002-0001" || a[119].id != "LJ003-0020" {
		t.Fatalf("ids %s %s %s %s", a[0].id, a[49].id, a[50].id, a[119].id)
	}
	// Every sentence once before any repeats.
	seen := map[string]bool{}
	for _, it := range a[:len(sentences)] {
		if seen[it.s.text] {
			t.Fatalf("%q repeated within the first %d", it.s.text, len(sentences))
		}
		seen[it.s.text] = true
	}
	short, _ := planCorpus(40, 1, 5, false)
	for _, it := range short {
		if len(strings.Fields(it.s.norm)) > 5 {
			t.Fatalf("--max-words 5 picked %q", it.s.norm)
		}
	}
	if _, err := planCorpus(3, 1, 1, false); err == nil {
		t.Fatal("no one-word sentences, want an error")
	}
	for _, s := range append(slices.Clone(sentences), heldOutSentences...) {
		if strings.ContainsAny(s.text+s.norm, "|\n") {
			t.Fatalf("sentence %q would break metadata.csv", s.text)
		}
	}
}

// TestPlanHeldOutCorpus: the --held-out plan shares no sentence (text or
// spoken form) and no voice with the training plan, and uses all of its
// own.
func TestPlanHeldOutCorpus(t *testing.T) {
	train, _ := planCorpus(500, 1, 0, false)
	held, err := planCorpus(60, 1, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	trainText, trainVoice := map[string]bool{}, map[string]bool{}
	for _, it := range train {
		trainText[it.s.text], trainText[it.s.norm], trainVoice[it.voice] = true, true, true
		// Neither the accent nor the voice-tract variant of a held-out
		// voice is heard in training on its own either.
		accent, variant, _ := strings.Cut(it.voice, "+")
		trainVoice[accent] = true
		if variant != "" {
			trainVoice["+"+variant] = true
		}
	}
	if len(trainVoice) < 12 {
		t.Errorf("the training plan uses only %d voices and variants", len(trainVoice))
	}
	heldText, heldVoice := map[string]bool{}, map[string]bool{}
	for _, it := range held {
		accent, variant, _ := strings.Cut(it.voice, "+")
		if trainText[it.s.text] || trainText[it.s.norm] || trainVoice[it.voice] || trainVoice[accent] && trainVoice["+"+variant] {
			t.Fatalf("held-out item %+v shares its sentence or voice with the training corpus", it)
		}
		heldText[it.s.text], heldVoice[it.voice] = true, true
	}
	if len(heldText) != len(heldOutSentences) || len(heldVoice) != len(heldOutVoices) {
		t.Errorf("60 held-out items use %d of %d sentences and %d of %d voices", len(heldText), len(heldOutSentences), len(heldVoice), len(heldOutVoices))
	}
}

func TestMakeCorpusWithEspeak(t *testing.T) {
	if _, err := exec.LookPath("espeak-ng"); err != nil {
		t.Skip("espeak-ng not installed (apt-get install espeak-ng)")
	}
	dir := filepath.Join(t.TempDir(), "LJSpeech-1.1")
	stdout, _, err := run(t, "make-corpus", "--out", dir, "--n", "4", "--max-words", "4", "--seed", "9", "-q")
	if err != nil || !strings.Contains(stdout, "4 utterances") {
		t.Fatalf("%q %v", stdout, err)
	}
	c, err := ljspeech.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Entries) != 4 || c.Entries[0].ID != "LJ001-0001" {
		t.Fatalf("entries %+v", c.Entries)
	}
	if bad := c.Validate(22050, 2, nil); len(bad) != 0 {
		t.Fatalf("bad recordings: %+v", bad)
	}
	// Same seed, same bytes.
	dir2 := filepath.Join(t.TempDir(), "LJSpeech-1.1")
	if _, _, err := run(t, "make-corpus", "--out", dir2, "--n", "4", "--max-words", "4", "--seed", "9", "-q"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"metadata.csv", "wavs/LJ001-0001.wav", "wavs/LJ001-0004.wav"} {
		a, _ := os.ReadFile(filepath.Join(dir, f))
		b, _ := os.ReadFile(filepath.Join(dir2, f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("%s differs between runs with the same seed", f)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".espeak-*")); len(left) != 0 {
		t.Fatalf("temp dirs left: %v", left)
	}
	// The noise floor: where espeak-ng writes digital silence (kept with
	// --noise-floor-db 0), the default corpus has noise at -75 dBFS RMS,
	// and no run of exact zeros longer than noise makes by chance.
	raw := filepath.Join(t.TempDir(), "LJSpeech-1.1")
	if _, _, err := run(t, "make-corpus", "--out", raw, "--n", "4", "--max-words", "4", "--seed", "9", "-q", "--noise-floor-db", "0"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"LJ001-0001.wav", "LJ001-0004.wav"} {
		a, err := audio.ReadWAV(filepath.Join(raw, "wavs", f), audio.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := audio.ReadWAV(filepath.Join(dir, "wavs", f), audio.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var silent, run, longest int
		var ss float64
		for i, v := range a.Samples {
			if v == 0 {
				silent++
				ss += float64(b.Samples[i]) * float64(b.Samples[i])
			}
			if b.Samples[i] == 0 {
				run++
				longest = max(longest, run)
			} else {
				run = 0
			}
		}
		if silent < len(a.Samples)/20 {
			t.Fatalf("%s: only %d of %d raw espeak-ng samples are digital silence; the test needs some", f, silent, len(a.Samples))
		}
		level := 10 * math.Log10(ss/float64(silent))
		if math.Abs(level+75) > 1 || longest > 8 {
			t.Errorf("%s: noise floor %.2f dBFS where espeak-ng is silent (want -75), longest run of exact zeros %d samples", f, level, longest)
		}
	}
	if _, _, err := run(t, "make-corpus", "--out", filepath.Join(t.TempDir(), "x"), "--n", "1", "--noise-floor-db", "3"); err == nil || !strings.Contains(err.Error(), "--noise-floor-db") {
		t.Errorf("a positive noise floor: %v", err)
	}
	// An existing corpus is not overwritten without --force.
	before, _ := os.ReadFile(filepath.Join(dir, "wavs", "LJ001-0001.wav"))
	if _, _, err := run(t, "make-corpus", "--out", dir, "--n", "2", "--seed", "3", "-q"); err == nil || !strings.Contains(err.Error(), "is not empty") {
		t.Errorf("make-corpus into a corpus: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(dir, "wavs", "LJ001-0001.wav")); !bytes.Equal(before, after) {
		t.Error("an existing corpus file changed")
	}
	if _, _, err := run(t, "make-corpus", "--out", dir, "--n", "2", "--seed", "3", "-q", "--force"); err != nil {
		t.Errorf("--force: %v", err)
	}
}

// Without espeak-ng the command says how to install it and main exits
// non-zero.
func TestMakeCorpusWithoutEspeak(t *testing.T) {
	empty := t.TempDir()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "TRAIN_WAVENET_MAIN=1", "PATH="+empty,
		"TRAIN_WAVENET_ARGS=make-corpus --out "+filepath.Join(t.TempDir(), "c")+" --n 2")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() == 0 {
		t.Fatalf("want a non-zero exit, got %v: %s", err, out)
	}
	if !strings.Contains(string(out), "apt-get install espeak-ng") {
		t.Fatalf("message %q does not say how to install espeak-ng", out)
	}
}

func TestRootHasQuietAndDataCommands(t *testing.T) {
	if rootCmd.PersistentFlags().Lookup("quiet") == nil {
		t.Fatal("no persistent --quiet")
	}
	var names []string
	for _, c := range rootCmd.Commands() {
		names = append(names, c.Name())
	}
	for _, want := range []string{"preprocess", "make-corpus"} {
		if !slices.Contains(names, want) {
			t.Fatalf("commands %v lack %s", names, want)
		}
	}
}

func TestVersion(t *testing.T) {
	stdout, _, err := run(t, "--version")
	if err != nil || !strings.HasPrefix(stdout, "train-wavenet version wavecat ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("--version: %q, %v", stdout, err)
	}
}

// --help (and train --help) describe every preset, not only name it.
func TestHelpDescribesPresets(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"train", "--help"}} {
		stdout, _, err := runT(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range train.PresetNames() {
			p, _ := train.LookupPreset(n)
			if !strings.Contains(stdout, n+strings.Repeat(" ", max(1, 11-len(n)))+p.Description) {
				t.Errorf("%v: no line for preset %s: %q", args, n, p.Description)
			}
		}
	}
}
