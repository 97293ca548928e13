package main

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/cmd/vocode/model"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/melspec"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/postfilter"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// synth runs the root (synthesis) command in-process with fresh flag values.
func synth(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	synthOpts.out, synthOpts.checkpoint, synthOpts.device = "", "", "cpu"
	synthOpts.noEMA, synthOpts.melNormalized, synthOpts.copySynthesis, synthOpts.wide = false, false, false, false
	synthOpts.seed, synthOpts.batch, synthOpts.threads = 1, 0, 0
	synthOpts.temperature, synthOpts.griffinLim, synthOpts.glIterations = 1, false, 60
	synthOpts.voicedTemp, synthOpts.postfilter = defaultVoicedTemperature, "comb+envelope"
	rootCmd.Flags().Lookup("voiced-temperature").Changed = false
	synthOpts.melLayout = "auto"
	return run(t, args...)
}

// testModel is a 4-layer model with the reference mel front end (80 mels,
// hop 256) so real mels and WAVs fit it.
type testModel struct {
	dir   string // run directory
	ck    string // its checkpoint
	info  train.ModelInfo
	ema   []wavenet.Tensor
	head  outputs.Head
	stats *melspec.Normalizer
}

func saveTestModel(t *testing.T, runDir, spec string, seed int64) *testModel {
	t.Helper()
	h, err := outputs.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := wavenet.TinyConfig(h.Channels(), h.InputChannels(), 80)
	cfg.UpsampleScales = []int{4, 4, 4, 4}
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := wavenet.New(cfg, be, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	raw := m.ExportTensors()
	// EMA weights differ from the raw ones, so --no-ema is observable.
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	ema := m.ExportTensors()
	for _, tt := range ema {
		for i := range tt.Data {
			if strings.HasSuffix(tt.Name, ".bias") {
				tt.Data[i] = float32(0.1 * rng.NormFloat64())
			} else {
				tt.Data[i] *= float32(1 + 0.2*rng.NormFloat64())
			}
		}
	}
	st := melspec.NewStats(80)
	frame := make([]float32, 80)
	for i := 0; i < 50; i++ {
		for j := range frame {
			frame[j] = float32(-4 + 2*rng.NormFloat64() + float64(j)/40)
		}
		if err := st.Add(frame); err != nil {
			t.Fatal(err)
		}
	}
	stats, err := st.Normalizer(1e-4)
	if err != nil {
		t.Fatal(err)
	}
	tm := &testModel{dir: runDir, info: train.ModelInfo{Model: cfg, Head: h.Spec(), Preprocess: ljspeech.DefaultParams(), Stats: stats},
		ema: ema, head: h, stats: stats}
	ck := &train.Checkpoint{Weights: train.FromModelTensors(raw), EMA: train.FromModelTensors(ema)}
	if err := tm.info.SetMeta(&ck.Config); err != nil {
		t.Fatal(err)
	}
	ck.Config.Format = train.FormatVersion
	ck.Config.Step = 7
	if tm.ck, err = train.SaveStep(runDir, ck); err != nil {
		t.Fatal(err)
	}
	return tm
}

// expectedWAV synthesises what vocode should write for mel (raw log-mel,
// frames x 80) with the EMA weights and seed, through the library, and
// returns the waveform (16-bit rounding not applied), postfiltered as
// vocode does by default.
func (tm *testModel) expectedWAV(t *testing.T, mel []float32, seed uint64) []float32 {
	t.Helper()
	return tm.expectedWAVAt(t, mel, seed, 1)
}

// expectedWAVAt is expectedWAV at sampling temperature temp.
func (tm *testModel) expectedWAVAt(t *testing.T, mel []float32, seed uint64, temp float64) []float32 {
	t.Helper()
	y, norm := tm.expectedRawAt(t, mel, seed, temp)
	// The postfilter reads the mel vocode reads: normalised, then the
	// statistics undone (so equal to the last float bit), and its pitch
	// track.
	raw := slices.Clone(norm)
	if err := tm.stats.Invert(raw); err != nil {
		t.Fatal(err)
	}
	cfg := tm.info.Preprocess.MelConfig()
	est, err := excitation.NewEstimator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := est.Track(raw, len(raw)/80)
	if err != nil {
		t.Fatal(err)
	}
	out, err := postfilter.Apply(y, raw, tr.Period(len(y)), tr.Voicing(len(y)), cfg, postfilter.Default())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// expectedRawAt is the network's synthesis at temperature temp without a
// postfilter (vocode --postfilter none), and the normalised mel it read.
func (tm *testModel) expectedRawAt(t *testing.T, mel []float32, seed uint64, temp float64) (y, norm []float32) {
	t.Helper()
	// One OpenBLAS thread, as vocode runs the step.
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cpu.New(cpu.Options{})
	m, err := wavenet.New(tm.info.Model, be, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.ImportTensors(tm.ema); err != nil {
		t.Fatal(err)
	}
	norm = append([]float32(nil), mel...)
	if err := tm.stats.Apply(norm); err != nil {
		t.Fatal(err)
	}
	g, err := wavenet.NewGenerator(m, tm.head)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	ys, err := g.Generate([]wavenet.Utterance{{Mel: norm, Seed: seed}}, wavenet.GenerateOptions{Temperature: temp})
	if err != nil {
		t.Fatal(err)
	}
	y = ys[0]
	// Inverse pre-emphasis, undo the gain, clip: computed here independently.
	pp := tm.info.Preprocess
	prev := 0.0
	for i, v := range y {
		prev = float64(v) + pp.Preemphasis*prev
		y[i] = float32(math.Max(-1, math.Min(1, prev/pp.Gain)))
	}
	return y, norm
}

// sameAudio compares a 16-bit WAV with an expected waveform to within one
// quantisation step (the reference above rounds differently in the last
// float32 bit) and checks its rate.
func sameAudio(t *testing.T, path string, want []float32, rate int) {
	t.Helper()
	a, err := audio.ReadWAV(path, audio.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.SampleRate != rate || len(a.Samples) != len(want) {
		t.Fatalf("%s: %d samples at %d Hz, want %d at %d Hz", path, len(a.Samples), a.SampleRate, len(want), rate)
	}
	bad := 0
	for i, v := range a.Samples {
		if math.Abs(float64(v)-float64(want[i])) > 1.01/32767 {
			if bad < 3 {
				t.Errorf("%s: sample %d = %v, want %v", path, i, v, want[i])
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d samples differ from the library's synthesis", path, bad, len(want))
	}
}

func writeMel(t *testing.T, path string, frames, mels int, seed uint64) []float32 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 3))
	mel := make([]float32, frames*mels)
	for i := range mel {
		mel[i] = float32(-4 + 1.5*rng.NormFloat64())
	}
	if err := audio.WriteNPY(path, mel, []int{frames, mels}); err != nil {
		t.Fatal(err)
	}
	return mel
}

// checkReadable asserts Python's wave module and sox read the file with
// the expected length and rate (each skipped when absent).
func checkReadable(t *testing.T, path string, samples, rate int) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		out, err := exec.Command("/usr/bin/python3", "-c",
			"import sys, wave; w = wave.open(sys.argv[1]); print(w.getnframes(), w.getframerate(), w.getsampwidth(), w.getnchannels())", path).CombinedOutput()
		if err != nil {
			t.Fatalf("python wave cannot read %s: %v\n%s", path, err, out)
		}
		want := strconv.Itoa(samples) + " " + strconv.Itoa(rate) + " 2 1"
		if strings.TrimSpace(string(out)) != want {
			t.Errorf("python wave: %q, want %q", strings.TrimSpace(string(out)), want)
		}
	} else {
		t.Log("skipping the Python wave check: /usr/bin/python3 not found")
	}
	if sox, err := exec.LookPath("sox"); err == nil {
		out, err := exec.Command(sox, "--i", "-s", path).CombinedOutput()
		if err != nil {
			t.Fatalf("sox cannot read %s: %v\n%s", path, err, out)
		}
		if strings.TrimSpace(string(out)) != strconv.Itoa(samples) {
			t.Errorf("sox says %q samples, want %d", strings.TrimSpace(string(out)), samples)
		}
	} else {
		t.Log("skipping the sox check: sox not found")
	}
}

// TestSynthEveryHead: for every head, vocode writes exactly the WAV the
// library produces (EMA weights, checkpoint normalisation, inverse
// pre-emphasis, gain, clip), frames*hop samples long, readable by Python's
// wave and sox; --raw-weights changes it.
func TestSynthEveryHead(t *testing.T) {
	heads := []string{"mulaw --bins 32", "categorical --bins 32", "mol --mixtures 3", "gaussian", "adacat --components 8"}
	for i, spec := range heads {
		name := strings.Fields(spec)[0]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			tm := saveTestModel(t, filepath.Join(dir, "run"), spec, int64(i+1))
			const frames = 5
			in := filepath.Join(dir, "utt-feats.npy")
			mel := writeMel(t, in, frames, 80, uint64(i))
			out := filepath.Join(dir, "out.wav")
			_, stderr, err := synth(t, in, "-o", out, "--checkpoint", tm.dir, "--seed", "11")
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			if !strings.Contains(stderr, "model: --checkpoint: "+tm.ck+" ") || !strings.Contains(stderr, "EMA weights") {
				t.Errorf("model line missing or wrong: %q", stderr)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			sameAudio(t, out, tm.expectedWAV(t, mel, 11), 22050)
			checkReadable(t, out, frames*256, 22050)
			raw := filepath.Join(dir, "raw.wav")
			if _, stderr, err := synth(t, in, "-o", raw, "--checkpoint", tm.dir, "--seed", "11", "--raw-weights"); err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			rawb, _ := os.ReadFile(raw)
			if bytes.Equal(rawb, got) {
				t.Error("--raw-weights gave the EMA output")
			}
			// The old spelling (deprecated, hidden from --help) still works.
			old := filepath.Join(dir, "old.wav")
			if _, _, err := synth(t, in, "-o", old, "--checkpoint", tm.dir, "--seed", "11", "--no-ema"); err != nil {
				t.Errorf("--no-ema: %v", err)
			}
			if b, _ := os.ReadFile(old); !bytes.Equal(b, rawb) {
				t.Error("--no-ema and --raw-weights differ")
			}
		})
	}
}

// TestSynthBatchAndDir: several inputs into a directory, named after the
// inputs; --batch 3 writes the same files as --batch 1 (input i uses seed+i).
func TestSynthBatchAndDir(t *testing.T) {
	dir := t.TempDir()
	tm := saveTestModel(t, filepath.Join(dir, "run"), "mol --mixtures 2", 3)
	var ins []string
	for i, f := range []int{3, 6, 2, 4} {
		p := filepath.Join(dir, "u"+strconv.Itoa(i)+".npy")
		writeMel(t, p, f, 80, uint64(10+i))
		ins = append(ins, p)
	}
	files := func(out string, extra ...string) [][]byte {
		args := append(append([]string{}, ins...), append([]string{"-o", out, "--checkpoint", tm.ck}, extra...)...)
		if _, stderr, err := synth(t, args...); err != nil {
			t.Fatalf("%v\n%s", err, stderr)
		}
		var bs [][]byte
		for i := range ins {
			b, err := os.ReadFile(filepath.Join(out, "u"+strconv.Itoa(i)+".wav"))
			if err != nil {
				t.Fatal(err)
			}
			bs = append(bs, b)
		}
		return bs
	}
	one := files(filepath.Join(dir, "b1"), "--batch", "1")
	three := files(filepath.Join(dir, "b3"), "--batch", "3", "--threads", "2")
	for i := range one {
		if !bytes.Equal(one[i], three[i]) {
			t.Errorf("input %d: --batch 3 output differs from --batch 1", i)
		}
	}
	if bytes.Equal(one[0][44:], one[2][44:len(one[2])]) {
		t.Error("different inputs gave the same audio")
	}
	// --wide is not bit-identical to batch 1 by design; it must still
	// write every file at full length.
	wide := files(filepath.Join(dir, "wide"), "--wide")
	for i := range wide {
		if len(wide[i]) != len(one[i]) {
			t.Errorf("input %d: --wide wrote %d bytes, batch 1 %d", i, len(wide[i]), len(one[i]))
		}
	}
}

// TestSynthModelResolution: without --checkpoint, $WAVECAT_CHECKPOINT wins,
// then the run under ./runs with the newest checkpoint, then the built-in
// model, and vocode says which.
func TestSynthModelResolution(t *testing.T) {
	dir := t.TempDir()
	runsUnder(t, filepath.Join(dir, "runs"))
	in := filepath.Join(dir, "m.npy")
	writeMel(t, in, 3, 80, 1)
	out := filepath.Join(dir, "o.wav")

	_, stderr, err := synth(t, in, "-o", out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "built-in default model") {
		t.Errorf("with no runs, expected the built-in model to be announced: %q", stderr)
	}
	if q := model.Quality(); q != "" && !strings.Contains(stderr, q) {
		t.Errorf("the built-in model's measured quality %q is not on its model line: %q", q, stderr)
	}
	checkReadable(t, out, 3*256, 22050)

	a := saveTestModel(t, filepath.Join(runsDir, "a"), "gaussian", 1)
	b := saveTestModel(t, filepath.Join(runsDir, "b"), "gaussian", 2)
	// Make a's checkpoint the newest.
	later := mustStat(t, filepath.Join(b.ck, train.ConfigFile)).ModTime().Add(10e9)
	if err := os.Chtimes(filepath.Join(a.ck, train.ConfigFile), later, later); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err = synth(t, in, "-o", out); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "newest run under") || !strings.Contains(stderr, a.ck) {
		t.Errorf("expected run a (%s): %q", a.ck, stderr)
	}
	t.Setenv(checkpointEnv, b.dir)
	if _, stderr, err = synth(t, in, "-o", out); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "$"+checkpointEnv) || !strings.Contains(stderr, b.dir) {
		t.Errorf("expected $%s (%s): %q", checkpointEnv, b.dir, stderr)
	}
}

// runsUnder points vocode's model resolution at runs (restored after the
// test) with no $WAVECAT_CHECKPOINT, so without a run there it takes the
// built-in model.
func runsUnder(t *testing.T, runs string) {
	t.Helper()
	old := runsDir
	runsDir = runs
	t.Cleanup(func() { runsDir = old })
	t.Setenv(checkpointEnv, "")
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestSynthCopySynthesis: a WAV at the model's rate is high-passed and
// analysed with the checkpoint's mel parameters, then resynthesised to
// frames*hop samples exactly as that mel would be.
func TestSynthCopySynthesis(t *testing.T) {
	dir := t.TempDir()
	tm := saveTestModel(t, filepath.Join(dir, "run"), "adacat --components 4", 5)
	wav := filepath.Join(dir, "speech.wav")
	if err := audio.WriteWAV16(wav, sine(1500, 300), 22050); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "re.wav")
	if _, stderr, err := synth(t, "--copy-synthesis", wav, "-o", out, "--checkpoint", tm.ck); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	a, err := audio.ReadWAV(wav, audio.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The recipe's high-pass, then the mel (no trim).
	hp, err := melspec.HighPass(a.Samples, 22050)
	if err != nil {
		t.Fatal(err)
	}
	ex, _ := melspec.NewExtractor(tm.info.Preprocess.MelConfig())
	mel, frames := ex.Compute(hp)
	sameAudio(t, out, tm.expectedWAV(t, mel, 1), 22050)
	checkReadable(t, out, frames*256, 22050)
}

// TestSynthTemperature: --temperature reaches the sampler (the output is
// the library's at that temperature, and differs from temperature 1), and
// a temperature that is not a finite number > 0 is refused.
func TestSynthTemperature(t *testing.T) {
	dir := t.TempDir()
	tm := saveTestModel(t, filepath.Join(dir, "run"), "mol --mixtures 3", 4)
	in := filepath.Join(dir, "utt.npy")
	mel := writeMel(t, in, 4, 80, 9)
	out := filepath.Join(dir, "cold.wav")
	if _, stderr, err := synth(t, in, "-o", out, "--checkpoint", tm.dir, "--temperature", "0.4"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	cold := tm.expectedWAVAt(t, mel, 1, 0.4)
	sameAudio(t, out, cold, 22050)
	warm := tm.expectedWAV(t, mel, 1)
	if slices.Equal(cold, warm) {
		t.Fatal("temperature 0.4 and 1 give the same waveform: the test cannot tell them apart")
	}
	for _, bad := range []string{"0", "-1", "NaN", "Inf"} {
		o := filepath.Join(dir, "bad.wav")
		if _, _, err := synth(t, in, "-o", o, "--checkpoint", tm.dir, "--temperature", bad); err == nil || !strings.Contains(err.Error(), "--temperature") {
			t.Errorf("--temperature %s: error %v", bad, err)
		}
		if _, err := os.Stat(o); err == nil {
			t.Errorf("--temperature %s wrote %s", bad, o)
		}
	}
}

// TestSynthPostfilter: --postfilter none writes the network's output as
// the library synthesises it, the default differs from it (the tests above
// check it against the library's postfilter), each named step changes the
// audio, and an unknown name is refused with no output.
func TestSynthPostfilter(t *testing.T) {
	dir := t.TempDir()
	tm := saveTestModel(t, filepath.Join(dir, "run"), "mulaw --bins 64", 8)
	in := filepath.Join(dir, "utt.npy")
	mel := writeMel(t, in, 6, 80, 3)
	outs := map[string][]float32{}
	for _, name := range []string{"none", "comb+envelope", "envelope", "comb"} {
		out := filepath.Join(dir, name+".wav")
		if _, stderr, err := synth(t, in, "-o", out, "--checkpoint", tm.dir, "--seed", "4", "--postfilter", name); err != nil {
			t.Fatalf("--postfilter %s: %v\n%s", name, err, stderr)
		}
		w, err := audio.ReadWAV(out, audio.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		outs[name] = w.Samples
	}
	raw, _ := tm.expectedRawAt(t, mel, 4, 1)
	sameAudio(t, filepath.Join(dir, "none.wav"), raw, 22050)
	for _, name := range []string{"comb+envelope", "envelope"} {
		if slices.Equal(outs[name], outs["none"]) {
			t.Errorf("--postfilter %s wrote the raw output", name)
		}
	}
	bad := filepath.Join(dir, "bad.wav")
	if _, _, err := synth(t, in, "-o", bad, "--checkpoint", tm.dir, "--postfilter", "loud"); err == nil || !strings.Contains(err.Error(), "--postfilter") {
		t.Errorf("--postfilter loud: %v", err)
	}
	if _, err := os.Stat(bad); err == nil {
		t.Errorf("a refused --postfilter wrote %s", bad)
	}
}

// TestSynthVoicedTemperature: --voiced-temperature changes the built-in
// (excitation) model's output on a voiced input, and is refused, with no
// output, for a model without an excitation input.
func TestSynthVoicedTemperature(t *testing.T) {
	dir := t.TempDir()
	runsUnder(t, filepath.Join(dir, "runs"))
	wav := filepath.Join(dir, "tone.wav")
	if err := audio.WriteWAV16(wav, sine(6000, 150), 22050); err != nil {
		t.Fatal(err)
	}
	bi, cleanup, err := extractBuiltin()
	if err != nil {
		t.Fatal(err)
	}
	mi, err := evalModelInfo(bi)
	cleanup()
	if err != nil || mi.Model.ExcitationChannels == 0 {
		t.Skipf("the built-in model takes no excitation (%v)", err)
	}
	plain, cold := filepath.Join(dir, "plain.wav"), filepath.Join(dir, "cold.wav")
	if _, stderr, err := synth(t, "--copy-synthesis", wav, "-o", plain, "--voiced-temperature", "0"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if _, stderr, err := synth(t, "--copy-synthesis", wav, "-o", cold, "--voiced-temperature", "0.3"); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	a, err := audio.ReadWAV(plain, audio.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := audio.ReadWAV(cold, audio.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Samples, b.Samples) {
		t.Error("--voiced-temperature 0.3 left a voiced tone's synthesis unchanged")
	}
	// Without the flag an excitation model samples at the default.
	def, explicit := filepath.Join(dir, "default.wav"), filepath.Join(dir, "explicit.wav")
	if _, stderr, err := synth(t, "--copy-synthesis", wav, "-o", def); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if _, stderr, err := synth(t, "--copy-synthesis", wav, "-o", explicit, "--voiced-temperature", fmt.Sprint(defaultVoicedTemperature)); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	d, err := audio.ReadWAV(def, audio.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sameAudio(t, explicit, d.Samples, 22050)
	if slices.Equal(d.Samples, a.Samples) {
		t.Errorf("the default synthesis equals --voiced-temperature 0: the default %g is not applied", defaultVoicedTemperature)
	}

	tm := saveTestModel(t, filepath.Join(dir, "run"), "mol --mixtures 3", 4)
	in := filepath.Join(dir, "utt.npy")
	writeMel(t, in, 4, 80, 9)
	out := filepath.Join(dir, "no.wav")
	_, _, err = synth(t, in, "-o", out, "--checkpoint", tm.dir, "--voiced-temperature", "0.5")
	if err == nil || !strings.Contains(err.Error(), "--voiced-temperature") || !strings.Contains(err.Error(), "no excitation") {
		t.Errorf("--voiced-temperature on a model without excitation: %v", err)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("a refused --voiced-temperature wrote %s", out)
	}
}

// TestSynthGriffinLim: --griffin-lim writes melspec's Griffin-Lim of the
// input mel (raw log-mel, or normalised with --mel-normalized and the
// model's statistics), needs no trained model, and says what it did.
func TestSynthGriffinLim(t *testing.T) {
	dir := t.TempDir()
	tm := saveTestModel(t, filepath.Join(dir, "run"), "gaussian", 6)
	in := filepath.Join(dir, "utt.npy")
	const frames = 12
	mel := writeMel(t, in, frames, 80, 5)
	gl, err := melspec.NewGriffinLim(tm.info.Preprocess.MelConfig())
	if err != nil {
		t.Fatal(err)
	}
	opt := melspec.DefaultGriffinLimOptions()
	opt.Iterations, opt.Seed = 7, 3
	want, err := gl.Synthesize(mel, frames, opt)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range want { // the 16-bit WAV clips
		want[i] = min(max(v, -1), 1)
	}
	out := filepath.Join(dir, "gl.wav")
	_, stderr, err := synth(t, "--griffin-lim", "--griffin-lim-iters", "7", "--seed", "3", in, "-o", out, "--checkpoint", tm.dir)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "Griffin-Lim, no neural model (7 iterations") {
		t.Errorf("no Griffin-Lim line: %q", stderr)
	}
	sameAudio(t, out, want, 22050)
	checkReadable(t, out, frames*256, 22050)
	// The same mel normalised with the model's statistics.
	norm := append([]float32(nil), mel...)
	if err := tm.stats.Apply(norm); err != nil {
		t.Fatal(err)
	}
	nin := filepath.Join(dir, "norm.npy")
	if err := audio.WriteNPY(nin, norm, []int{frames, 80}); err != nil {
		t.Fatal(err)
	}
	nout := filepath.Join(dir, "gl-norm.wav")
	if _, stderr, err := synth(t, "--griffin-lim", "--griffin-lim-iters", "7", "--seed", "3", "--mel-normalized", nin, "-o", nout, "--checkpoint", tm.dir); err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	sameAudio(t, nout, want, 22050)
	// No model anywhere: the built-in model's mel parameters.
	runsUnder(t, filepath.Join(dir, "no-runs"))
	if _, stderr, err := synth(t, "--griffin-lim", in, "-o", out); err != nil || !strings.Contains(stderr, "built-in default model") {
		t.Fatalf("without a model: %v\n%s", err, stderr)
	}
	if _, _, err := synth(t, "--griffin-lim", "--griffin-lim-iters", "-1", in, "-o", out); err == nil || !strings.Contains(err.Error(), "--griffin-lim-iters") {
		t.Errorf("negative iterations: %v", err)
	}
}

// TestSynthBadInputs: each bad input is refused before any synthesis, with
// an error naming the file and the problem, and no output file appears.
func TestSynthBadInputs(t *testing.T) {
	dir := t.TempDir()
	tm := saveTestModel(t, filepath.Join(dir, "run"), "gaussian", 9)
	good := filepath.Join(dir, "good.npy")
	writeMel(t, good, 3, 80, 2)
	npy := func(name string, data []float32, shape ...int) string {
		p := filepath.Join(dir, name)
		if err := audio.WriteNPY(p, data, shape); err != nil {
			t.Fatal(err)
		}
		return p
	}
	nan := make([]float32, 4*80)
	nan[85] = float32(math.NaN())
	inf := make([]float32, 4*80)
	inf[3] = float32(math.Inf(-1))
	wav16k := filepath.Join(dir, "16k.wav")
	if err := audio.WriteWAV16(wav16k, sine(4000, 200), 16000); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.wav")
	if err := audio.WriteWAV16(empty, nil, 22050); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"wrong mel dimension", []string{npy("dim.npy", make([]float32, 10*60), 10, 60)}, []string{"dim.npy", "no axis of 80 mels"}},
		{"ambiguous orientation", []string{npy("square.npy", make([]float32, 80*80), 80, 80)}, []string{"square.npy", "square", "--mel-layout frames-mels or mels-frames"}},
		{"layout contradicts shape", []string{good, "--mel-layout", "mels-frames"}, []string{"good.npy", "is not (80 mels, frames)"}},
		{"bad layout", []string{good, "--mel-layout", "time-first"}, []string{"--mel-layout", "auto, frames-mels, mels-frames"}},
		{"int16 mel", []string{int16NPY(t, filepath.Join(dir, "i16.npy"), 4, 80)}, []string{"i16.npy", "integer data"}},
		{"absurd values", []string{npy("huge.npy", filled(4*80, 1e30), 4, 80)}, []string{"huge.npy", "1e+30", "outside a log10 magnitude mel"}},
		{"natural-log mel", []string{npy("ln.npy", filled(4*80, -23), 4, 80)}, []string{"ln.npy", "-23", "natural-log"}},
		{"normalised out of range", []string{"--mel-normalized", npy("z.npy", filled(4*80, 400), 4, 80)}, []string{"z.npy", "400", "normalised"}},
		{"not 2-D", []string{npy("flat.npy", make([]float32, 80), 80)}, []string{"flat.npy", "2-D"}},
		{"empty", []string{npy("zero.npy", nil, 0, 80)}, []string{"zero.npy", "0 frames"}},
		{"nan", []string{npy("nan.npy", nan, 4, 80)}, []string{"nan.npy", "frame 1", "NaN"}},
		{"inf", []string{npy("inf.npy", inf, 4, 80)}, []string{"inf.npy", "-Inf"}},
		{"missing", []string{filepath.Join(dir, "nope.npy")}, []string{"nope.npy"}},
		{"two bad, one good", []string{good, filepath.Join(dir, "dim.npy"), filepath.Join(dir, "nan.npy")}, []string{"2 of 3 inputs", "dim.npy", "nan.npy"}},
		{"copy-synthesis rate", []string{"--copy-synthesis", wav16k}, []string{"16k.wav", "16000 Hz", "22050 Hz"}},
		{"copy-synthesis empty", []string{"--copy-synthesis", empty}, []string{"empty.wav", "no samples"}},
		{"no input", nil, []string{"no input"}},
		{"wav for many", []string{good, good, "-o", filepath.Join(dir, "x.wav")}, []string{"must be a directory"}},
		{"bad batch", []string{good, "--batch", "-1"}, []string{"--batch"}},
		{"bad device", []string{good, "--device", "tpu"}, []string{"tpu"}},
		{"bad gpu step", []string{good, "--gpu-step", "warp"}, []string{"--gpu-step", `"warp"`, "auto, layered, fused or cluster"}},
		// Either no GPU/driver here, or the generator's CPU-only refusal.
		{"cuda", []string{good, "--device", "cuda"}, []string{"--device cuda"}},
	}
	if !testing.Short() {
		// A 100 MB file: more than an hour of frames.
		cases = append(cases, struct {
			name string
			args []string
			want []string
		}{"absurd length", []string{npy("long.npy", make([]float32, (wavenet.MaxGenerateFrames+1)*80), wavenet.MaxGenerateFrames+1, 80)}, []string{"long.npy", "frame limit"}})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+strings.ReplaceAll(c.name, " ", "_"))
			args := append(append([]string{}, c.args...), "--checkpoint", tm.ck)
			if i := slices.Index(c.args, "-o"); i >= 0 {
				out = c.args[i+1]
			} else {
				args = append(args, "-o", out)
			}
			_, stderr, err := synth(t, args...)
			if err == nil {
				t.Fatalf("accepted; stderr %q", stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Errorf("output %s exists after a refused run", out)
			}
		})
	}
}

// A (mels, frames) mel is read transposed with a one-line note; a square
// one is read as --mel-layout says, each layout giving its own reading.
func TestSynthMelLayouts(t *testing.T) {
	dir := t.TempDir()
	tm := saveTestModel(t, filepath.Join(dir, "run"), "gaussian", 9)
	fm := writeMel(t, filepath.Join(dir, "fm.npy"), 6, 80, 5)
	mf := make([]float32, len(fm))
	for f := 0; f < 6; f++ {
		for m := 0; m < 80; m++ {
			mf[m*6+f] = fm[f*80+m]
		}
	}
	if err := audio.WriteNPY(filepath.Join(dir, "mf.npy"), mf, []int{80, 6}); err != nil {
		t.Fatal(err)
	}
	run := func(out string, args ...string) ([]float32, string) {
		t.Helper()
		_, stderr, err := synth(t, append(args, "--checkpoint", tm.ck, "-o", out, "-q")...)
		if err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		a, err := audio.ReadWAV(out, audio.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return a.Samples, stderr
	}
	want, stderr := run(filepath.Join(dir, "fm.wav"), filepath.Join(dir, "fm.npy"))
	if strings.Contains(stderr, "transposed") {
		t.Errorf("a (frames, mels) input was reported transposed: %q", stderr)
	}
	got, stderr := run(filepath.Join(dir, "mf.wav"), filepath.Join(dir, "mf.npy"))
	if n := strings.Count(stderr, "mf.npy: read as (80 mels, 6 frames)"); n != 1 {
		t.Errorf("the transposed input should be noted once, stderr %q", stderr)
	}
	if !slices.Equal(got, want) {
		t.Error("the transposed mel gave other audio than the same mel as (frames, mels)")
	}
	if _, stderr = run(filepath.Join(dir, "mf2.wav"), "--mel-layout", "mels-frames", filepath.Join(dir, "mf.npy")); strings.Contains(stderr, "transposed") {
		t.Errorf("--mel-layout mels-frames still notes the transposition: %q", stderr)
	}

	writeMel(t, filepath.Join(dir, "sq.npy"), 80, 80, 6)
	a, _ := run(filepath.Join(dir, "sq-fm.wav"), "--mel-layout", "frames-mels", filepath.Join(dir, "sq.npy"))
	b, _ := run(filepath.Join(dir, "sq-mf.wav"), "--mel-layout", "mels-frames", filepath.Join(dir, "sq.npy"))
	if len(a) != len(b) || slices.Equal(a, b) {
		t.Errorf("square mel: both layouts gave the same audio (%d, %d samples)", len(a), len(b))
	}
}

// TestSynthUserMistakes: what a new user gets wrong gets an error that says
// what to do, before any synthesis, and nothing is overwritten: the output
// naming an input, an unwritable output location, a WAV without
// --copy-synthesis, a stereo WAV (--downmix), a mistyped subcommand.
func TestSynthUserMistakes(t *testing.T) {
	dir := t.TempDir()
	tm := saveTestModel(t, filepath.Join(dir, "run"), "gaussian", 8)
	wav := filepath.Join(dir, "speech.wav")
	if err := audio.WriteWAV16(wav, sine(2000, 220), 22050); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(wav)
	if _, _, err := synth(t, "--copy-synthesis", wav, "-o", wav, "--checkpoint", tm.dir); err == nil || !strings.Contains(err.Error(), "is also an input") {
		t.Errorf("output = input: %v", err)
	}
	if after, _ := os.ReadFile(wav); !bytes.Equal(before, after) {
		t.Error("the input was overwritten")
	}
	notDir := filepath.Join(dir, "file.txt")
	if err := os.WriteFile(notDir, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := synth(t, "--copy-synthesis", wav, "-o", filepath.Join(notDir, "out.wav"), "--checkpoint", tm.dir); err == nil || !strings.Contains(err.Error(), "-o: "+notDir+": not a directory") || strings.Count(err.Error(), notDir) != 1 {
		t.Errorf("unwritable output location: %v (want the path named once)", err)
	}
	// A refused run leaves none of the directories it created for -o.
	nested := filepath.Join(dir, "new", "deeper")
	if _, _, err := synth(t, filepath.Join(dir, "missing.npy"), "-o", nested, "--checkpoint", tm.dir); err == nil {
		t.Error("a missing input was accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "new")); !os.IsNotExist(err) {
		t.Errorf("a failed run left %s (%v)", filepath.Join(dir, "new"), err)
	}
	if _, _, err := synth(t, wav, "-o", filepath.Join(dir, "o.wav"), "--checkpoint", tm.dir); err == nil || !strings.Contains(err.Error(), "add --copy-synthesis") {
		t.Errorf("a WAV as a mel: %v", err)
	}
	stereo := filepath.Join(dir, "stereo.wav")
	var buf bytes.Buffer
	if err := audio.EncodeWAV16(&buf, sine(4000, 220), 22050, 2); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stereo, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "mono.wav")
	if _, _, err := synth(t, "--copy-synthesis", stereo, "-o", out, "--checkpoint", tm.dir); err == nil || !strings.Contains(err.Error(), "add --downmix") {
		t.Errorf("stereo: %v", err)
	}
	if _, stderr, err := synth(t, "--copy-synthesis", "--downmix", stereo, "-o", out, "--checkpoint", tm.dir); err != nil {
		t.Fatalf("--downmix: %v\n%s", err, stderr)
	}
	checkReadable(t, out, (1+2000/256)*256, 22050)
	if _, _, err := run(t, "mel", stereo, "-o", filepath.Join(dir, "m.npy")); err == nil || !strings.Contains(err.Error(), "add --downmix") {
		t.Errorf("vocode mel, stereo: %v", err)
	}
	if _, _, err := run(t, "mel", "--downmix", stereo, "-o", filepath.Join(dir, "m.npy")); err != nil {
		t.Errorf("vocode mel --downmix: %v", err)
	}
	if _, _, err := synth(t, "evl", "--checkpoint", tm.dir); err == nil || !strings.Contains(err.Error(), `unknown command "evl" for vocode; did you mean eval?`) {
		t.Errorf("mistyped subcommand: %v", err)
	}
}

// filled returns n copies of v.
func filled(n int, v float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = v
	}
	return x
}

// int16NPY writes a (rows, cols) int16 .npy of ramp values, as numpy would.
func int16NPY(t *testing.T, path string, rows, cols int) string {
	t.Helper()
	h := fmt.Sprintf("{'descr': '<i2', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols)
	for (10+len(h)+1)%64 != 0 {
		h += " "
	}
	h += "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(h)), byte(len(h)>>8))
	b = append(b, h...)
	for i := 0; i < rows*cols; i++ {
		b = append(b, byte(i*37), byte(i*37>>8))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}
