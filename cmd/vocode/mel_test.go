package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/melspec"
)

// run executes the vocode command tree in-process, as a user would from the shell.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var o, e bytes.Buffer
	rootCmd.SetOut(&o)
	rootCmd.SetErr(&e)
	rootCmd.SetArgs(args)
	// Reset flags that persist between in-process runs.
	melOpts.cfg = melspec.DefaultConfig()
	melOpts.out, melOpts.downmix = "", false
	synthOpts.gpuStep, synthOpts.downmix = "auto", false
	err = rootCmd.Execute()
	return o.String(), e.String(), err
}

func sine(n int, f float64) []float32 {
	y := make([]float32, n)
	for i := range y {
		y[i] = float32(0.5 * sinApprox(2*3.141592653589793*f*float64(i)/22050))
	}
	return y
}

func sinApprox(x float64) float64 { return math.Sin(x) }

func TestMelMatchesExtractorAndNamesOutputs(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.wav"), filepath.Join(dir, "b.wav")
	ya, yb := sine(22050, 440), sine(5000, 1000)
	if err := audio.WriteWAV16(a, ya, 22050); err != nil {
		t.Fatal(err)
	}
	if err := audio.WriteWAV16(b, yb, 22050); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "mels")
	stdout, _, err := run(t, "mel", a, b, "-o", out, "-q=false")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "a.npy") || !strings.Contains(stdout, "87 frames") {
		t.Fatalf("summary missing: %q", stdout)
	}
	ex, _ := melspec.NewExtractor(melspec.DefaultConfig())
	for _, c := range []struct {
		in   string
		name string
	}{{a, "a.npy"}, {b, "b.npy"}} {
		w, err := audio.ReadWAV(c.in, audio.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want, frames := ex.Compute(w.Samples)
		got, shape, err := audio.ReadNPY(filepath.Join(out, c.name))
		if err != nil {
			t.Fatal(err)
		}
		if len(shape) != 2 || shape[0] != frames || shape[1] != 80 {
			t.Fatalf("%s: shape %v, want [%d 80]", c.name, shape, frames)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: element %d = %g, want %g", c.name, i, got[i], want[i])
			}
		}
	}
}

func TestMelSingleFileAndOptions(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "x.wav")
	if err := audio.WriteWAV16(in, sine(16000, 300), 16000); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "x.npy")
	if _, _, err := run(t, "mel", in, "-o", out, "--sample-rate", "16000", "--n-mels", "40", "--hop", "200", "--fmax", "8000", "-q"); err != nil {
		t.Fatal(err)
	}
	_, shape, err := audio.ReadNPY(out)
	if err != nil {
		t.Fatal(err)
	}
	if shape[0] != 1+16000/200 || shape[1] != 40 {
		t.Fatalf("shape %v", shape)
	}
}

func TestMelBadInputsFailWithoutOutput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.wav")
	os.WriteFile(bad, []byte("RIFF\x10\x00\x00\x00WAVEjunkjunk"), 0o644)
	rate := filepath.Join(dir, "rate.wav")
	audio.WriteWAV16(rate, sine(8000, 200), 8000)
	empty := filepath.Join(dir, "empty.wav")
	audio.WriteWAV16(empty, nil, 22050)
	for _, c := range []struct{ in, want string }{
		{bad, "bad.wav"},
		{rate, "sample rate 8000"},
		{empty, "no samples"},
		{filepath.Join(dir, "missing.wav"), "missing.wav"},
	} {
		out := filepath.Join(dir, "out.npy")
		_, _, err := run(t, "mel", c.in, "-o", out, "-q")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%s: error %v, want it to mention %q", c.in, err, c.want)
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error is not one line: %q", c.in, err)
		}
		if _, serr := os.Stat(out); serr == nil {
			t.Fatalf("%s: output file written despite the error", c.in)
		}
		// Into directories that do not exist yet: none is left behind.
		nested := filepath.Join(dir, "new", "mels")
		if _, _, err := run(t, "mel", c.in, "-o", nested, "-q"); err == nil {
			t.Fatalf("%s into %s: accepted", c.in, nested)
		}
		if _, serr := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(serr) {
			t.Fatalf("%s: a failed run left %s (%v)", c.in, filepath.Join(dir, "new"), serr)
		}
	}
}

func TestMelReportsEveryFailedFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.wav")
	audio.WriteWAV16(good, sine(4000, 200), 22050)
	_, _, err := run(t, "mel", good, filepath.Join(dir, "m1.wav"), filepath.Join(dir, "m2.wav"), "-o", filepath.Join(dir, "o"), "-q")
	if err == nil || !strings.Contains(err.Error(), "2 of 3 files failed") || !strings.Contains(err.Error(), "m1.wav") || !strings.Contains(err.Error(), "m2.wav") {
		t.Fatalf("error %v", err)
	}
	if _, serr := os.Stat(filepath.Join(dir, "o", "good.npy")); serr != nil {
		t.Fatal("the good file should still be converted")
	}
}

func TestMelSeveralInputsNeedADirectory(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.wav"), filepath.Join(dir, "b.wav")
	audio.WriteWAV16(a, sine(4000, 200), 22050)
	audio.WriteWAV16(b, sine(4000, 300), 22050)
	out := filepath.Join(dir, "both.npy")
	_, _, err := run(t, "mel", a, b, "-o", out, "-q")
	if err == nil || !strings.Contains(err.Error(), "must be a directory") {
		t.Fatalf("error %v, want a -o must be a directory error", err)
	}
	if _, serr := os.Stat(out); serr == nil {
		t.Fatal("something was written at -o")
	}
}

// TestVersionAndHelp: --version names the build; eval's help shows no empty
// "(default [])" for its list flags.
func TestVersionAndHelp(t *testing.T) {
	stdout, _, err := run(t, "--version")
	rootCmd.Flags().Set("version", "false") // the flag outlives this in-process run
	if err != nil || !strings.HasPrefix(stdout, "vocode version wavecat ") || !strings.Contains(stdout, "go1.") {
		t.Errorf("--version: %q, %v", stdout, err)
	}
	stdout, _, err = run(t, "eval", "--help")
	evalCmd.Flags().Set("help", "false") // the flag outlives this in-process run
	if err != nil || strings.Contains(stdout, "(default [])") || !strings.Contains(stdout, "--temperature") {
		t.Errorf("eval --help: %v\n%s", err, stdout)
	}
	// One spelling for the raw weights in both commands' help.
	for _, args := range [][]string{{"--help"}, {"eval", "--help"}} {
		stdout, _, err = run(t, args...)
		rootCmd.Flags().Set("help", "false")
		evalCmd.Flags().Set("help", "false")
		if err != nil || !strings.Contains(stdout, "--raw-weights") || strings.Contains(stdout, "--no-ema") {
			t.Errorf("%v: want --raw-weights and no --no-ema (%v)", args, err)
		}
	}
}
