package main

import (
	"bytes"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/train"
)

// runT executes a fresh command tree with training attached.
func runT(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRootCmd()
	attachTrain(root)
	var o, e bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err = root.Execute()
	return o.String(), e.String(), err
}

// dumpForTraining preprocesses the mini corpus into the test's temporary
// directory (well under a second).
func dumpForTraining(t *testing.T) string {
	t.Helper()
	dump := filepath.Join(t.TempDir(), "dump")
	if _, stderr, err := runT(t, "preprocess", "--data", miniCorpus, "--out", dump, "-q", "--workers", "2"); err != nil {
		t.Fatalf("preprocess: %v\n%s", err, stderr)
	}
	return dump
}

// small are the flags of a fast CPU run.
func small(dump, out string, more ...string) []string {
	return append([]string{"--data", dump, "--out", out, "--preset", "tiny", "--batch-size", "2", "--max-time-steps", "1024",
		"--eval-max-samples", "4096", "--threads", "2", "-q"}, more...)
}

func TestTrainCommand(t *testing.T) {
	dump := dumpForTraining(t)
	out := filepath.Join(t.TempDir(), "run")
	stdout, stderr, err := runT(t, small(dump, out, "--head", "mol", "--mixtures", "3", "--steps", "4", "--eval-interval", "2", "--checkpoint-interval", "2", "--log-interval", "1", "--eval-chunk-frames", "4")...)
	if err != nil {
		t.Fatal(err, stderr)
	}
	for _, want := range []string{"finished step 4 of " + out, "head mol --mixtures 3", "dev bits/sample (EMA weights):", filepath.Join(out, "step-000000004"), filepath.Join(out, "metrics.jsonl"), filepath.Join(out, "loss.png")} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	// The checkpoint loads as synthesis will load it.
	m, h, mi, meta, err := train.LoadModel(out, mustCPU(t), true)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	// The chunked validation the command uses scores what one pass over each
	// (capped) utterance does.
	_, ev, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
	if err != nil || len(ev) != 3 || ev[2].Step != 4 || ev[2].Samples != 3*4096 {
		t.Fatalf("eval records %+v, %v", ev, err)
	}
	d, err := ljspeech.OpenDump(dump)
	if err != nil {
		t.Fatal(err)
	}
	var utts []*ljspeech.Utterance
	for _, id := range d.Split.Dev {
		u, err := d.LoadUtterance(id, mi.Model.CinPad)
		if err != nil {
			t.Fatal(err)
		}
		utts = append(utts, train.CapUtterance(u, 4096, 256))
	}
	one, oneSE, _, err := train.EvalBits(m, h, utts)
	if err != nil || math.Abs(one-ev[2].Bits) > 1e-4 || math.Abs(oneSE-ev[2].BitsSE) > 1e-4 {
		t.Errorf("chunked validation %v +- %v, one pass %v +- %v (%v)", ev[2].Bits, ev[2].BitsSE, one, oneSE, err)
	}
	if h.Spec() != "mol --mixtures 3 --levels 65536 --log-scale-min -16" || mi.Model.Layers != 6 || mi.Model.HopSize() != 256 || meta.Step != 4 || meta.Seed != 1 {
		t.Errorf("checkpoint: head %q, model %+v, step %d", h.Spec(), mi.Model, meta.Step)
	}

	// "train" is the same command; --resume raises --steps and keeps the run's settings.
	stdout, stderr, err = runT(t, "train", "--data", dump, "--out", out, "--resume", "--steps", "6", "-q", "--eval-interval", "0")
	if err != nil || !strings.Contains(stdout, "finished step 6") || !strings.Contains(stdout, "head mol --mixtures 3") {
		t.Fatalf("resume: %v\n%s\n%s", err, stdout, stderr)
	}
	if _, _, err := runT(t, "--data", dump, "--out", out, "--resume", "--steps", "8", "--lr", "1e-2"); err == nil || !strings.Contains(err.Error(), "--lr 0.01 (the run has 0.001)") {
		t.Errorf("resume with another --lr: %v", err)
	}
	if _, _, err := runT(t, small(dump, out, "--steps", "8")...); err == nil || !strings.Contains(err.Error(), "already holds checkpoints") {
		t.Errorf("fresh run over an existing one: %v", err)
	}
}

func mustCPU(t *testing.T) compute.Backend {
	t.Helper()
	be, err := newBackend(&trainOpts{device: "cpu", blas: "auto", threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func formatStep(s int64) string { return strconv.FormatInt(s, 10) }

// parsed returns the RunConfig the flags give (no training).
func parsed(t *testing.T, args ...string) (train.RunConfig, error) {
	t.Helper()
	o := defaultTrainOpts()
	cmd := &cobra.Command{Use: "x"}
	addTrainFlags(cmd.Flags(), &o)
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return runConfig(cmd, &o, 1, false)
}

func TestTrainFlags(t *testing.T) {
	base := []string{"--data", "d", "--out", "o"}
	for _, c := range []struct {
		args []string
		head string
		ch   int // residual channels
		lay  int
	}{
		{[]string{"--preset", "tiny"}, "adacat --components 15 --lambda 0.0001", 16, 6},
		{[]string{"--preset", "tiny", "--components", "7"}, "adacat --components 7 --lambda 0.0001", 16, 6},
		{[]string{"--preset", "tiny", "--head", "mol", "--mixtures", "4"}, "mol --mixtures 4", 16, 6},
		{[]string{"--head", "adacat", "--lambda", "1e-05"}, "adacat --lambda 1e-05", 128, 24},
		{[]string{"--preset", "adacat512"}, "adacat --components 256 --lambda 0.00001", 128, 24},
		{[]string{"--preset", "mulaw256", "--layers", "12", "--residual-channels", "64"}, "mulaw --bins 256", 64, 12},
		{[]string{"--preset", "cat256"}, "categorical --bins 256", 128, 24},
		{[]string{"--preset", "gaussian", "--log-scale-min", "-7"}, "gaussian --log-scale-min -7", 128, 24},
	} {
		cfg, err := parsed(t, append(base, c.args...)...)
		if err != nil {
			t.Errorf("%v: %v", c.args, err)
			continue
		}
		if cfg.Head != c.head || cfg.Model.ResidualChannels != c.ch || cfg.Model.Layers != c.lay {
			t.Errorf("%v: head %q, residual %d, layers %d; want %q, %d, %d", c.args, cfg.Head, cfg.Model.ResidualChannels, cfg.Model.Layers, c.head, c.ch, c.lay)
		}
	}
	cfg, err := parsed(t, append(base, "--head", "gaussian", "--lr", "2e-4", "--lr-decay-steps", "50", "--lr-gamma", "0.25", "--ema-decay", "0.9",
		"--batch-size", "3", "--max-time-steps", "512", "--seed", "9", "--steps", "77", "--keep", "2", "--eval-interval", "5", "--checkpoint-interval", "7")...)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Schedule != train.StepDecay(2e-4, 0.25, 50) || cfg.EMADecay != 0.9 || cfg.BatchSize != 3 || cfg.MaxTimeSteps != 512 || cfg.Seed != 9 ||
		cfg.Steps != 77 || cfg.Keep != 2 || cfg.EvalInterval != 5 || cfg.CheckpointInterval != 7 || cfg.Schedule.LR(100) != float32(2e-4*0.25*0.25) {
		t.Errorf("config %+v", cfg)
	}
	def, _ := parsed(t, append(base, "--head", "adacat")...)
	if def.BatchSize != 8 || def.MaxTimeSteps != 10240 || def.Schedule != train.StepDecay(1e-3, 0.5, 200000) || def.EMADecay != 0.9999 || def.Model.Layers != 24 || def.EvalMaxSamples != 0 || def.Eval == nil {
		t.Errorf("defaults %+v", def)
	}
}

func TestTrainCommandErrors(t *testing.T) {
	dump := dumpForTraining(t)
	out := filepath.Join(t.TempDir(), "run")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--out", out, "--head", "adacat"}, "--data and --out are required"},
		{[]string{"--data", dump, "--out", out}, "choose an output head with --head"},
		{[]string{"--data", dump, "--out", out, "--head", "adacat", "--bins", "3"}, `head "adacat --bins 3"`},
		{[]string{"--data", dump, "--out", out, "--head", "wavelet"}, `unknown head "wavelet"`},
		{[]string{"--data", dump, "--out", out, "--preset", "huge"}, `unknown preset "huge"`},
		{[]string{"--data", dump, "--out", out, "--preset", "tiny", "--device", "tpu"}, `--device "tpu": want cpu or cuda`},
		{[]string{"--data", dump, "--out", out, "--preset", "tiny", "--device", "cuda"}, "--device cuda: cuda:"},
		{[]string{"--data", dump, "--out", out, "--preset", "tiny", "--max-time-steps", "1000"}, "multiple of the dump's hop 256"},
		{[]string{"--data", filepath.Join(out, "nothing"), "--out", out, "--preset", "tiny"}, "nothing"},
		{[]string{"--data", dump, "--out", out, "--resume"}, "no checkpoint to resume"},
		{[]string{"stray", "--data", dump}, `unknown command "stray"`},
	} {
		_, _, err := runT(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want it to contain %q", c.args, err, c.want)
		}
	}
}

// TestTrainInterruptSavesAndResumes runs the real binary (re-executed test
// binary), sends SIGINT mid-run and expects a clean exit with a checkpoint
// that --resume continues.
func TestTrainInterruptSavesAndResumes(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the subprocess interrupt test")
	}
	dump := dumpForTraining(t)
	out := filepath.Join(t.TempDir(), "run")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TRAIN_WAVENET_MAIN=1", "TRAIN_WAVENET_ARGS="+strings.Join(small(dump, out, "--steps", "1000000", "--log-interval", "1", "--eval-interval", "0"), " "))
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until a few steps are logged, then interrupt.
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(out, train.MetricsFile))
		if bytes.Count(b, []byte("\n")) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("no training progress: %s", se.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGINT: %v\n%s", err, se.String())
	}
	if !strings.Contains(so.String(), "interrupted at step") || !strings.Contains(so.String(), "--resume") || !strings.Contains(se.String(), "finishing the current step") {
		t.Fatalf("stdout %q stderr %q", so.String(), se.String())
	}
	latest, err := train.Latest(out)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := train.Load(latest)
	if err != nil {
		t.Fatal(err)
	}
	stdout, _, err := runT(t, "--data", dump, "--out", out, "--resume", "--steps", formatStep(ck.Config.Step+2), "-q", "--eval-interval", "0")
	if err != nil || !strings.Contains(stdout, "finished step "+formatStep(ck.Config.Step+2)) {
		t.Fatalf("resume after interrupt: %v %s", err, stdout)
	}
}

// TestTrainTimeLimit: --time-limit stops a run that would go on for a
// million steps, saves its step, says so and how to continue; a negative
// limit is refused.
func TestTrainTimeLimit(t *testing.T) {
	dump := dumpForTraining(t)
	out := filepath.Join(t.TempDir(), "run")
	stdout, stderr, err := runT(t, small(dump, out, "--steps", "1000000", "--eval-interval", "0", "--time-limit", "1500ms")...)
	if err != nil {
		t.Fatal(err, stderr)
	}
	if !strings.Contains(stdout, "time limit (1.5s) reached at step") || !strings.Contains(stdout, "--resume --steps 1000000") {
		t.Fatalf("stdout %q", stdout)
	}
	latest, err := train.Latest(out)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := train.Load(latest)
	if err != nil || ck.Config.Step < 1 || ck.Config.Step >= 1000000 {
		t.Fatalf("checkpoint %s: %v, step %d", latest, err, ck.Config.Step)
	}
	if _, _, err := runT(t, small(dump, filepath.Join(t.TempDir(), "r2"), "--steps", "3", "--time-limit", "-1s")...); err == nil || !strings.Contains(err.Error(), "--time-limit") {
		t.Errorf("negative limit: %v", err)
	}
}

// TestResumeKeepsRunSettings: --resume keeps the run's --keep, intervals
// and --steps unless they are given (a resumed --keep 0 run used to fall
// back to --keep 5 and delete its early checkpoints), prints a setting given
// with another value, accepts run-defining flags repeated with the run's
// values and names the saved value of one that differs.
func TestResumeKeepsRunSettings(t *testing.T) {
	dump := dumpForTraining(t)
	out := filepath.Join(t.TempDir(), "run")
	define := []string{"--head", "mol", "--mixtures", "3"}
	if _, stderr, err := runT(t, small(dump, out, append(define, "--steps", "4", "--keep", "0", "--checkpoint-interval", "1", "--log-interval", "1", "--eval-interval", "0")...)...); err != nil {
		t.Fatal(err, stderr)
	}
	steps := func() []string {
		m, _ := filepath.Glob(filepath.Join(out, "step-*"))
		for i := range m {
			m[i] = filepath.Base(m[i])
		}
		return m
	}
	// Only --steps: every step kept, one checkpoint per step as before.
	if _, stderr, err := runT(t, "--data", dump, "--out", out, "--resume", "--steps", "6", "-q"); err != nil {
		t.Fatal(err, stderr)
	}
	if got := strings.Join(steps(), " "); got != "step-000000001 step-000000002 step-000000003 step-000000004 step-000000005 step-000000006" {
		t.Fatalf("after resuming to step 6: %s", got)
	}
	// Nothing given: the saved --steps (6) is the target, nothing to do.
	if stdout, stderr, err := runT(t, "--data", dump, "--out", out, "--resume", "-q"); err != nil || !strings.Contains(stdout, "finished step 6") {
		t.Fatalf("resume with no flags: %v\n%s\n%s", err, stdout, stderr)
	}
	// The run-defining flags repeated unchanged, and the preset it used.
	if _, stderr, err := runT(t, small(dump, out, append(define, "--resume", "--steps", "7")...)...); err != nil {
		t.Fatalf("repeating the run's own flags: %v\n%s", err, stderr)
	}
	// A changed setting is printed and applies.
	_, stderr, err := runT(t, "--data", dump, "--out", out, "--resume", "--steps", "8", "--keep", "2", "-q")
	if err != nil || !strings.Contains(stderr, "resuming with --keep 2 (the run had 0)") {
		t.Fatalf("--keep 2: %v\n%s", err, stderr)
	}
	if got := strings.Join(steps(), " "); got != "step-000000007 step-000000008" {
		t.Errorf("after --keep 2: %s", got)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--layers", "5"}, "--layers 5 (the run has 6)"},
		{[]string{"--mixtures", "4"}, "--mixtures 4 (the run has 3)"},
		{[]string{"--bins", "7"}, `--bins (the run's head is "mol --mixtures 3`},
		{[]string{"--preset", "mol"}, "--preset mol (the run's model is 6 layers"},
	} {
		_, _, err := runT(t, append([]string{"--data", dump, "--out", out, "--resume", "--steps", "9", "-q"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}
