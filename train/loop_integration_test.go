package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/internal/dirlock"
	"github.com/wavecat/wavecat/ljspeech"
)

const miniCorpus = "../testdata/minicorpus/LJSpeech-1.1"

// sharedDir holds the mini corpus dump shared by the tests of this binary
// (preprocessing it once takes a few seconds); TestMain removes it.
var (
	sharedDir string
	dumpOnce  sync.Once
	dumpPath  string
	dumpErr   error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// miniDump preprocesses the committed mini corpus (32 utterances: train 26,
// dev 3, eval 3) once per test binary.
func miniDump(t testing.TB) string {
	t.Helper()
	dumpOnce.Do(func() {
		sharedDir, dumpErr = os.MkdirTemp("", "wavecat-train-test-")
		if dumpErr != nil {
			return
		}
		dumpPath = filepath.Join(sharedDir, "dump")
		_, dumpErr = ljspeech.Preprocess(ljspeech.Options{Data: miniCorpus, Out: dumpPath, Dev: 10, Eval: 10, Quiet: true, Workers: 2, Log: ioDiscard{}})
	})
	if dumpErr != nil {
		t.Fatalf("preprocessing the mini corpus: %v", dumpErr)
	}
	return dumpPath
}

type ioDiscard struct{}

func (ioDiscard) Write(p []byte) (int, error) { return len(p), nil }

// tinyRun is a small CPU run configuration on the mini corpus.
func tinyRun(t testing.TB, head string, steps int64) RunConfig {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := LookupPreset("tiny")
	cfg := DefaultRunConfig()
	cfg.Data, cfg.Out, cfg.Head, cfg.Model, cfg.Backend = miniDump(t), filepath.Join(t.TempDir(), "run"), head, p.Model, be
	cfg.BatchSize, cfg.MaxTimeSteps, cfg.Steps = 2, 1024, steps
	cfg.LogInterval, cfg.EvalInterval, cfg.CheckpointInterval = 10, steps, 0
	cfg.EvalMaxSamples = 8192
	cfg.Quiet, cfg.Log = true, ioDiscard{}
	return cfg
}

// cfgSteps shrinks step counts under -short.
func cfgSteps(full, short int64) int64 {
	if testing.Short() {
		return short
	}
	return full
}

// TestEveryHeadLearns trains the tiny model with every head on the mini
// corpus and requires the dev bits/sample (EMA weights, teacher-forced) to
// fall by a margin. Measured on this machine (2 cores, batch 2 x 1024,
// EMA decay 0.95, lr 1e-3, seed 0), initial -> after 100 / 200 steps:
// mulaw -3.20 -> -4.35 / -5.03, categorical 1.10 -> -2.96 / -4.72,
// mol 2.07 -> 0.49 / -2.68, gaussian 1.41 -> -0.81 / -2.78,
// adacat(k=15) 2.65 -> -1.46 / -2.86 bits; the smallest drops are mulaw's,
// 1.15 and 1.83 bits. Margins: 1 bit after 200 steps, 0.5 bit under -short
// (100 steps). (The exact values move when the CPU kernels' rounding does.)
func TestEveryHeadLearns(t *testing.T) {
	steps := cfgSteps(200, 100)
	margin := 1.0
	if testing.Short() {
		margin = 0.5
	}
	for _, head := range []string{
		"mulaw --bins 256",
		"categorical --bins 256",
		"mol --mixtures 10 --levels 65536 --log-scale-min -16",
		"gaussian --log-scale-min -16",
		"adacat --components 15 --lambda 1e-4",
	} {
		t.Run(strings.Fields(head)[0], func(t *testing.T) {
			cfg := tinyRun(t, head, steps)
			cfg.EMADecay = 0.95 // 0.9999 would leave the EMA at its init after 200 steps
			res, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			_, ev, err := ReadMetrics(filepath.Join(cfg.Out, MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			if len(ev) != 2 || ev[0].Step != 0 || ev[1].Step != steps {
				t.Fatalf("eval records %+v, want steps 0 and %d", ev, steps)
			}
			first, last := ev[0].Bits, ev[1].Bits
			t.Logf("%s: dev bits/sample %.3f -> %.3f (+- %.3f) after %d steps", head, first, last, ev[1].BitsSE, steps)
			if !(first-last >= margin) {
				t.Errorf("%s: dev bits/sample went %.3f -> %.3f, want a drop of at least %.1f", head, first, last, margin)
			}
			if res.LastEval == nil || res.LastEval.Bits != last || res.Checkpoint != StepDir(cfg.Out, steps) {
				t.Errorf("result %+v does not describe the run's end", res)
			}
			// What synthesis will load: the shipped EMA weights and the head.
			be := cfg.Backend
			m, h, mi, _, err := LoadModel(cfg.Out, be, true)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Free()
			if h.Spec() != res.Config.Head && mi.Head != h.Spec() {
				t.Errorf("loaded head %q, trained %q", h.Spec(), res.Config.Head)
			}
			d, _ := ljspeech.OpenDump(cfg.Data)
			var utts []*ljspeech.Utterance
			for _, id := range d.Split.Dev {
				u, err := d.LoadUtterance(id, mi.Model.CinPad)
				if err != nil {
					t.Fatal(err)
				}
				utts = append(utts, CapUtterance(u, cfg.EvalMaxSamples, mi.Model.HopSize()))
			}
			bits, _, _, err := EvalBits(m, h, utts)
			if err != nil {
				t.Fatal(err)
			}
			if bits != last {
				t.Errorf("bits of the loaded EMA checkpoint %v differ from the run's last validation %v", bits, last)
			}
		})
	}
}

// TestEveryHeadFiniteAfterOneStep: one update with the reference learning
// rate leaves every head with a finite loss and finite validation bits.
func TestEveryHeadFiniteAfterOneStep(t *testing.T) {
	for _, name := range []string{"mulaw", "categorical", "mol", "gaussian", "adacat"} {
		cfg := tinyRun(t, name, 1)
		cfg.EvalInterval, cfg.LogInterval = 1, 1
		res, err := Run(context.Background(), cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		tr, ev, err := ReadMetrics(filepath.Join(cfg.Out, MetricsFile))
		if err != nil || len(tr) != 1 || len(ev) != 2 {
			t.Fatalf("%s: metrics %v %v %v", name, tr, ev, err)
		}
		if !finite(tr[0].Loss) || !finite(tr[0].GradNorm) || tr[0].GradNorm <= 0 || !finite(res.LastEval.Bits) || !finite(res.LastEval.BitsSE) {
			t.Errorf("%s: loss %v, grad norm %v, bits %v +- %v", name, tr[0].Loss, tr[0].GradNorm, res.LastEval.Bits, res.LastEval.BitsSE)
		}
		if tr[0].LR != 1e-3 || tr[0].StepsPerSec <= 0 || tr[0].SamplesPerSec != tr[0].StepsPerSec*2*1024 {
			t.Errorf("%s: train record %+v", name, tr[0])
		}
	}
}

// loadState reads a checkpoint's weights, EMA and optimizer tensors.
func loadState(t *testing.T, dir string) *Checkpoint {
	t.Helper()
	ck, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return ck
}

func sameState(t *testing.T, what string, a, b *Checkpoint) {
	t.Helper()
	if a.Config.Step != b.Config.Step || a.Config.Adam.Step != b.Config.Adam.Step {
		t.Fatalf("%s: steps %d/%d vs %d/%d", what, a.Config.Step, a.Config.Adam.Step, b.Config.Step, b.Config.Adam.Step)
	}
	for _, c := range []struct {
		name string
		x, y []Tensor
	}{{"weights", a.Weights, b.Weights}, {"EMA", a.EMA, b.EMA}, {"Adam moments", a.Optimizer, b.Optimizer}} {
		if !Equal(c.x, c.y) {
			t.Errorf("%s: %s differ", what, c.name)
		}
	}
}

// TestResumeIsBitExact: N steps uninterrupted == K steps, stop, resume to N
// (bit-identical weights, EMA and Adam moments), both for a run that ended
// at K and one interrupted (context cancelled) at K; and the metrics log of
// the resumed run has each step once.
func TestResumeIsBitExact(t *testing.T) {
	const N, K = 9, 4
	for _, head := range []string{"adacat --components 15 --lambda 1e-4", "mulaw --bins 64"} {
		ref := tinyRun(t, head, N)
		ref.EMADecay, ref.EvalInterval, ref.LogInterval = 0.9, 3, 1
		ref.InputNoise = 0.02 // its draws must resume exactly too
		if _, err := Run(context.Background(), ref); err != nil {
			t.Fatal(err)
		}
		want := loadState(t, StepDir(ref.Out, N))

		// Ended at K, resumed with --steps N.
		a := ref
		a.Out = filepath.Join(t.TempDir(), "a")
		a.Steps = K
		if _, err := Run(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		a.Steps, a.Resume = N, true
		a.Head, a.BatchSize = "", 0 // taken from the checkpoint
		res, err := Run(context.Background(), a)
		if err != nil {
			t.Fatal(err)
		}
		if res.StartStep != K || res.Step != N || res.Config.BatchSize != 2 || res.Config.Head != ref.Head && !strings.HasPrefix(res.Config.Head, strings.Fields(head)[0]) {
			t.Errorf("resumed run: start %d, end %d, config %+v", res.StartStep, res.Step, res.Config)
		}
		sameState(t, head+": ended at K + resume", want, loadState(t, StepDir(a.Out, N)))

		// Interrupted at K (as by Ctrl-C), resumed.
		b := ref
		b.Out = filepath.Join(t.TempDir(), "b")
		ctx, cancel := context.WithCancel(context.Background())
		b.OnStep = func(s int64) {
			if s == K {
				cancel()
			}
		}
		res, err = Run(ctx, b)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !res.Interrupted || res.Step != K || res.Checkpoint != StepDir(b.Out, K) {
			t.Fatalf("interrupted run: %+v", res)
		}
		b.OnStep, b.Resume = nil, true
		if _, err := Run(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		sameState(t, head+": interrupted at K + resume", want, loadState(t, StepDir(b.Out, N)))
		trs, evs, err := ReadMetrics(filepath.Join(b.Out, MetricsFile))
		if err != nil {
			t.Fatal(err)
		}
		if len(trs) != N {
			t.Errorf("resumed metrics hold %d train records, want %d (one per step)", len(trs), N)
		}
		for i, r := range trs {
			if r.Step != int64(i+1) {
				t.Errorf("train record %d is step %d", i, r.Step)
			}
		}
		var evSteps []int64
		for _, e := range evs {
			evSteps = append(evSteps, e.Step)
		}
		if fmt.Sprint(evSteps) != "[0 3 6 9]" {
			t.Errorf("validations at steps %v, want [0 3 6 9]", evSteps)
		}
	}
}

// TestNonFiniteLossStops: a learning rate of 1e30 throws the weights to
// ~1e30 at step 1 (Adam's step is ~lr per weight), so step 2's loss
// overflows. The run must stop naming step 2, keep step 1's checkpoint as the
// newest, and write nothing for the bad state.
func TestNonFiniteLossStops(t *testing.T) {
	cfg := tinyRun(t, "gaussian", 10)
	cfg.Schedule = Constant(1e30)
	cfg.CheckpointInterval, cfg.EvalInterval = 1, 0
	_, err := Run(context.Background(), cfg)
	var nf *NonFiniteError
	if !errors.As(err, &nf) {
		t.Fatalf("want a NonFiniteError, got %v", err)
	}
	if nf.Step != 2 || nf.Checkpoint != StepDir(cfg.Out, 1) || !strings.Contains(err.Error(), "step 2") || !strings.Contains(err.Error(), StepDir(cfg.Out, 1)) {
		t.Fatalf("error %q (%+v)", err, nf)
	}
	if latest, err := Latest(cfg.Out); err != nil || latest != StepDir(cfg.Out, 1) {
		t.Fatalf("latest %q, %v; want step 1", latest, err)
	}
	if _, err := os.Stat(StepDir(cfg.Out, 2)); !os.IsNotExist(err) {
		t.Fatalf("a checkpoint of the diverged step exists: %v", err)
	}
	ck := loadState(t, StepDir(cfg.Out, 1))
	for _, ts := range ck.Weights {
		for _, v := range ts.Data {
			if !finite(float64(v)) {
				t.Fatalf("the kept checkpoint holds a non-finite weight in %s", ts.Name)
			}
		}
	}
}

// TestUnwritableOutputKeepsCheckpoint: when the next checkpoint cannot be
// written the run fails loudly, naming the step and the intact previous
// checkpoint, which still loads. As root a read-only directory does not stop
// writes, so the failure is made by a file squatting on the step directory's
// name (the rename of the finished checkpoint fails); otherwise the run
// directory is made read-only.
func TestUnwritableOutputKeepsCheckpoint(t *testing.T) {
	for _, mode := range []string{"squat", "readonly"} {
		if mode == "readonly" && os.Geteuid() == 0 {
			t.Log("running as root: read-only directories do not block root; only the squatting-file case runs")
			continue
		}
		cfg := tinyRun(t, "adacat --components 15", 4)
		cfg.CheckpointInterval, cfg.EvalInterval = 2, 0
		cfg.OnStep = func(s int64) {
			if s != 2 {
				return
			}
			if mode == "squat" {
				os.WriteFile(StepDir(cfg.Out, 4), []byte("not a checkpoint"), 0o644)
			} else {
				os.Chmod(cfg.Out, 0o555)
			}
		}
		_, err := Run(context.Background(), cfg)
		os.Chmod(cfg.Out, 0o755)
		if err == nil || !strings.Contains(err.Error(), "checkpoint of step 4 failed") || !strings.Contains(err.Error(), StepDir(cfg.Out, 2)+", is intact") {
			t.Fatalf("%s: error %v", mode, err)
		}
		if latest, lerr := Latest(cfg.Out); lerr != nil || latest != StepDir(cfg.Out, 2) {
			t.Fatalf("%s: latest %q %v", mode, latest, lerr)
		}
		if ck, lerr := Load(StepDir(cfg.Out, 2)); lerr != nil || ck.Config.Step != 2 {
			t.Fatalf("%s: previous checkpoint: %v", mode, lerr)
		}
	}
}

// TestRunOutputs checks the run directory: pruning, the metrics log, the
// plot (a PNG), and the refusals to overwrite or resume nothing.
func TestRunOutputs(t *testing.T) {
	cfg := tinyRun(t, "mol", 6)
	cfg.CheckpointInterval, cfg.Keep, cfg.EvalInterval, cfg.LogInterval = 2, 2, 3, 2
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(cfg.Out)
	var names []string
	for _, e := range ents {
		if e.Name() != dirlock.File {
			names = append(names, e.Name())
		}
	}
	want := []string{LatestFile, PlotFile, MetricsFile, "step-000000004", "step-000000006"}
	for _, w := range want {
		found := false
		for _, n := range names {
			found = found || n == w
		}
		if !found {
			t.Errorf("run directory %v lacks %s", names, w)
		}
	}
	if len(names) != len(want) {
		t.Errorf("run directory holds %v, want %v", names, want)
	}
	png, err := os.ReadFile(filepath.Join(cfg.Out, PlotFile))
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("plot is not a PNG (%v)", err)
	}
	tr, ev, err := ReadMetrics(filepath.Join(cfg.Out, MetricsFile))
	if err != nil || len(tr) != 3 || len(ev) != 3 || ev[1].Step != 3 || ev[2].Step != 6 || tr[2].Step != 6 {
		t.Errorf("metrics %+v %+v %v", tr, ev, err)
	}
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "already holds checkpoints") {
		t.Errorf("second fresh run in the same directory: %v", err)
	}
	cfg.Out, cfg.Resume = filepath.Join(t.TempDir(), "empty"), true
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "no checkpoint to resume") {
		t.Errorf("resume of nothing: %v", err)
	}
}

// TestScheduleInMetrics: the logged learning rate follows the step decay
// (r9y9's lr * gamma^floor(step/decay) with the 0-based step of the update).
func TestScheduleInMetrics(t *testing.T) {
	cfg := tinyRun(t, "gaussian", 5)
	cfg.Schedule, cfg.LogInterval, cfg.EvalInterval = StepDecay(1e-3, 0.5, 2), 1, 0
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	tr, _, err := ReadMetrics(filepath.Join(cfg.Out, MetricsFile))
	if err != nil || len(tr) != 5 {
		t.Fatalf("%v %v", tr, err)
	}
	for i, want := range []float64{1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4} {
		if tr[i].LR != want || tr[i].Step != int64(i+1) {
			t.Errorf("record %d: step %d lr %v, want %v", i, tr[i].Step, tr[i].LR, want)
		}
	}
}
