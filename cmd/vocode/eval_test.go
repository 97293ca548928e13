package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

// evalTestDump preprocesses the project's mini corpus (32 clips, 3 in eval).
func evalTestDump(t *testing.T) *ljspeech.Dump {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "dump")
	if _, err := ljspeech.Preprocess(ljspeech.Options{Data: "../../testdata/minicorpus/LJSpeech-1.1", Out: dir, Dev: 3, Eval: 3, Quiet: true, Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	d, err := ljspeech.OpenDump(dir)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// evalTestCheckpoint saves a tiny random model with head spec for dump d and
// returns its run directory.
func evalTestCheckpoint(t *testing.T, d *ljspeech.Dump, spec string, seed int64) string {
	t.Helper()
	h, err := outputs.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := train.ModelForHead(wavenet.TinyConfig(h.Channels(), h.InputChannels(), d.Params.Mel.NMels), h, d.Params.Mel.NMels, d.Params.Mel.Hop)
	if err != nil {
		t.Fatal(err)
	}
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := wavenet.New(cfg, be, seed)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	mi := train.ModelInfo{Model: cfg, Head: h.Spec(), Preprocess: d.Params, Stats: d.Stats}
	var meta train.Meta
	meta.Format = train.FormatVersion
	meta.Step = 1000 + seed
	if err := mi.SetMeta(&meta); err != nil {
		t.Fatal(err)
	}
	ts := train.FromModelTensors(m.ExportTensors())
	run := filepath.Join(t.TempDir(), strings.Fields(spec)[0])
	if _, err := train.SaveStep(run, &train.Checkpoint{Config: meta, Weights: ts, EMA: ts}); err != nil {
		t.Fatal(err)
	}
	return run
}

// evalStandInSynth replaces the generator: the ground truth target of the
// utterance with that many frames, plus noise of a level set per head
// (0 for gaussian, so its MCD must be exactly 0) times the temperature. The
// temperatures asked for are recorded in temps.
func evalStandInSynth(t *testing.T, d *ljspeech.Dump, ids []string, temps *[]float64) func() {
	byFrames := map[int][]float32{}
	for _, id := range ids {
		u, err := d.LoadUtterance(id, 0)
		if err != nil {
			t.Fatal(err)
		}
		byFrames[u.Frames] = u.Wave
	}
	if len(byFrames) != len(ids) {
		t.Fatalf("eval utterances share a length; the stand-in cannot tell them apart")
	}
	old := evalSynthesizerFor
	evalSynthesizerFor = func(ck string, ema bool, seed uint64, temp float64, device string) (evaluate.Synthesize, func(), error) {
		if temps != nil {
			*temps = append(*temps, temp)
		}
		mi, err := evalModelInfo(ck)
		if err != nil {
			return nil, nil, err
		}
		level := 0.0
		if !strings.HasPrefix(mi.Head, "gaussian") {
			level = 0.05 * temp
		}
		rng := rand.New(rand.NewPCG(seed, 1))
		return func(mels [][]float32, frames []int) ([][]float32, error) {
			var ys [][]float32
			for _, f := range frames {
				w, ok := byFrames[f]
				if !ok {
					t.Errorf("stand-in: no utterance of %d frames", f)
				}
				y := make([]float32, len(w))
				for i, v := range w {
					y[i] = v + float32(level*rng.NormFloat64())
				}
				ys = append(ys, y)
			}
			return ys, nil
		}, func() {}, nil
	}
	return func() { evalSynthesizerFor = old }
}

func resetEvalOpts() {
	evalOpts.checkpoints, evalOpts.temps, evalOpts.glIters = nil, nil, 60
	evalOpts.voicedTemp, evalOpts.postfilter = defaultVoicedTemperature, "comb+envelope"
	evalOpts.data, evalOpts.split, evalOpts.out = "", "eval", ""
	evalOpts.noSynth, evalOpts.maxUtts, evalOpts.chunk, evalOpts.raw, evalOpts.seed, evalOpts.device = false, 0, 32, false, 1, "cpu"
}

func TestEvalTable(t *testing.T) {
	d := evalTestDump(t)
	ids, _ := d.Split.Subset("eval")
	gauss := evalTestCheckpoint(t, d, "gaussian", 1)
	mulaw := evalTestCheckpoint(t, d, "mulaw --bins 16", 2)
	var temps []float64
	defer evalStandInSynth(t, d, ids, &temps)()
	out := filepath.Join(t.TempDir(), "table.json")
	resetEvalOpts()
	// The stand-in replaces the whole synthesis, postfilter included.
	stdout, _, err := run(t, "eval", "-q", "--checkpoint", gauss, "--checkpoint", mulaw, "--data", d.Dir, "-o", out, "--temperature", "1,0.5", "--postfilter", "none")
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + stdout)
	var got struct {
		Rows []evaluate.Row `json:"rows"`
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatal(err)
	}
	// The baselines, then one row per checkpoint and temperature.
	rows := got.Rows
	if len(rows) != 6 || rows[0].Checkpoint != "original" || !strings.HasPrefix(rows[1].Checkpoint, "griffin-lim") ||
		rows[2].Head != "gaussian" || rows[3].Head != "gaussian" || rows[4].Head != "mulaw" || rows[5].Head != "mulaw" {
		t.Fatalf("rows %+v", rows)
	}
	if fmt.Sprint(temps) != "[1 0.5 1 0.5]" || rows[2].Temperature != 1 || rows[3].Temperature != 0.5 {
		t.Errorf("synthesised at temperatures %v; rows at %v and %v", temps, rows[2].Temperature, rows[3].Temperature)
	}
	// The original and an exact copy of it score the ceiling.
	for _, r := range []evaluate.Row{rows[0], rows[2]} {
		q := r.Quality
		if r.MCD == nil || r.MCD.Mean != 0 || r.LogMelL1.Mean != 0 || q == nil || q.BandMCD.Mean != 0 || q.VoicingAgreement.Mean != 1 ||
			q.LevelDiffDB.Mean != 0 || q.LogMelL1Speech.Mean != 0 || !(q.GrossPitchError.Mean == 0 || math.IsNaN(q.GrossPitchError.Mean)) {
			t.Errorf("%s: exact ground truth: MCD %+v, L1 %+v, quality %+v, want the ceiling", r.Checkpoint, r.MCD, r.LogMelL1, q)
		}
	}
	if rows[0].Bits != nil || rows[1].Bits != nil || rows[3].Bits == nil || *rows[3].Bits != *rows[2].Bits {
		t.Errorf("bits: baselines %v %v (want none), gaussian %v and %v (want the same)", rows[0].Bits, rows[1].Bits, rows[2].Bits, rows[3].Bits)
	}
	if gl := rows[1]; gl.Quality == nil || !(gl.Quality.BandMCD.Mean > 0) || !(gl.MCD.Mean > 0) {
		t.Errorf("griffin-lim row %+v: want positive distortions", gl)
	}
	// The mulaw stand-in adds noise in proportion to the temperature.
	if !(rows[4].MCD.Mean > 0.5) || !(rows[4].LogMelL1.Mean > 0) || !(rows[5].Quality.BandMCD.Mean < rows[4].Quality.BandMCD.Mean) {
		t.Errorf("noisy synthesis: MCD %+v, L1 %+v, band MCD %v at t=1 and %v at t=0.5", rows[4].MCD, rows[4].LogMelL1, rows[4].Quality.BandMCD, rows[5].Quality.BandMCD)
	}
	// Bits agree with an independent pass of each model over each utterance.
	be, _ := cpu.New(cpu.Options{})
	for r, run := range []string{gauss, mulaw} {
		m, head, mi, _, err := train.LoadModel(run, be, true)
		if err != nil {
			t.Fatal(err)
		}
		var per []float64
		for _, id := range ids {
			u, err := d.LoadUtterance(id, mi.Model.CinPad)
			if err != nil {
				t.Fatal(err)
			}
			b, err := evaluate.TeacherForcedBits(m, head, u, evaluate.BitsOptions{ChunkFrames: 1000})
			if err != nil {
				t.Fatal(err)
			}
			var s float64
			for _, v := range b {
				s += v
			}
			per = append(per, s/float64(len(b)))
		}
		mean, se := evaluate.MeanSE(per)
		row := rows[2+2*r]
		if math.Abs(row.Bits.Mean-mean) > 1e-4 || math.Abs(row.Bits.SE-se) > 1e-4 || row.Utterances != len(ids) || row.Params != m.NumParams() {
			t.Errorf("%s: row %+v, want bits %g ± %g over %d utterances, %d params", run, row, mean, se, len(ids), m.NumParams())
		}
		m.Free()
	}
	// Speech gates for the model rows only: the exact copy passes the five
	// absolute ones (its periodicity equals the original's, above
	// Griffin-Lim's); the noisy one fails band MCD.
	if rows[0].Gates != nil || rows[1].Gates != nil || len(rows[2].Gates) != 6 || len(rows[4].Gates) != 6 {
		t.Errorf("gates: %v %v %v %v", rows[0].Gates, rows[1].Gates, rows[2].Gates, rows[4].Gates)
	}
	if line := evaluate.GatesLine(rows[2].Gates); line != "all 6 speech gates pass" {
		t.Errorf("exact copy: %s", line)
	}
	if !strings.Contains(stdout, "Speech gates") || !strings.Contains(stdout, "- "+gauss+": all 6 speech gates pass") {
		t.Errorf("gates missing from the output:\n%s", stdout)
	}
	for _, want := range []string{"| gaussian --log-scale-min -16 |", "bits/sample", "| original |", "| griffin-lim (60 it.) |", " (t=0.5) |", "voicing agr."} {
		if !strings.Contains(stdout, want) {
			t.Errorf("markdown table lacks %q:\n%s", want, stdout)
		}
	}
}

func TestEvalNoSynthesisAndErrors(t *testing.T) {
	d := evalTestDump(t)
	// Every head in one table, bits only.
	args := []string{"eval", "-q", "--data", d.Dir, "--no-synthesis", "--max-utterances", "1"}
	var ck string
	for i, spec := range []string{"adacat --components 4 --lambda 0.001", "mol --mixtures 2", "gaussian", "mulaw --bins 8", "categorical --bins 8"} {
		c := evalTestCheckpoint(t, d, spec, int64(10+i))
		if i == 0 {
			ck = c
		}
		args = append(args, "--checkpoint", c)
	}
	resetEvalOpts()
	stdout, _, err := run(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"| adacat", "| mol", "| gaussian", "| mulaw", "| categorical"} {
		if !strings.Contains(stdout, h) {
			t.Errorf("no %s row:\n%s", h, stdout)
		}
	}
	if strings.Count(stdout, "| 1 | ") != 5 || strings.Count(stdout, "| - | - | - | - | - | - | - | - | - | - |\n") != 5 || strings.Contains(stdout, "NaN") || strings.Contains(stdout, "original") {
		t.Errorf("want one utterance per row, bits only, no baselines:\n%s", stdout)
	}
	// With the real generator (a tiny random model: MCD is large but finite).
	resetEvalOpts()
	stdout, _, err = run(t, "eval", "-q", "--checkpoint", ck, "--data", d.Dir, "--max-utterances", "1")
	if err != nil {
		t.Fatal(err)
	}
	// The checkpoint's row has every distortion and level measure (its
	// pitch errors may be "-": a random model voices no frame).
	var cells []string
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Contains(line, "| adacat") {
			cells = strings.Split(line, "|")
		}
	}
	if len(cells) != 18 || strings.Contains(stdout, "NaN") {
		t.Fatalf("want a 16-column adacat row:\n%s", stdout)
	}
	for _, c := range []int{6, 7, 8, 9, 10, 13, 14, 15, 16} {
		if strings.TrimSpace(cells[c]) == "-" {
			t.Errorf("column %d of the synthesised row is empty:\n%s", c, stdout)
		}
	}
	// The postfilter (the default) brings the random model's mel to the
	// utterance's: a lower log-mel L1 than its raw output, and the row says
	// so; an unknown --postfilter is refused.
	l1 := func(stdout, label string) float64 {
		for _, line := range strings.Split(stdout, "\n") {
			if c := strings.Split(line, "|"); len(c) == 18 && strings.Contains(c[1], label) {
				v, err := strconv.ParseFloat(strings.Fields(c[9])[0], 64)
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("no row %q:\n%s", label, stdout)
		return 0
	}
	post := l1(stdout, "(postfilter comb+envelope)")
	resetEvalOpts()
	stdout, _, err = run(t, "eval", "-q", "--checkpoint", ck, "--data", d.Dir, "--max-utterances", "1", "--postfilter", "none")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stdout, "(postfilter") {
		t.Errorf("--postfilter none still labels a postfilter:\n%s", stdout)
	}
	if raw := l1(stdout, "adacat"); !(post < raw/2) {
		t.Errorf("log-mel L1 %.3f with the postfilter, %.3f without: the envelope is not matched", post, raw)
	}
	resetEvalOpts()
	if _, _, err := run(t, "eval", "-q", "--checkpoint", ck, "--data", d.Dir, "--postfilter", "loud"); err == nil || !strings.Contains(err.Error(), "--postfilter") {
		t.Errorf("--postfilter loud: %v", err)
	}
	resetEvalOpts()
	if _, _, err := run(t, "eval", "-q", "--checkpoint", ck, "--data", d.Dir, "--no-synthesis", "--device", "tpu"); err == nil || !strings.Contains(err.Error(), "want cpu or cuda") {
		t.Errorf("unknown device: %v", err)
	}
	resetEvalOpts()
	if _, _, err := run(t, "eval", "-q", "--checkpoint", ck, "--data", d.Dir, "--split", "test", "--no-synthesis"); err == nil || !strings.Contains(err.Error(), "test") {
		t.Errorf("unknown split: %v", err)
	}
	// A dump made with other preprocessing does not match the checkpoint.
	other := filepath.Join(t.TempDir(), "other")
	p := ljspeech.DefaultParams()
	p.Gain = 0.5
	if _, err := ljspeech.Preprocess(ljspeech.Options{Data: "../../testdata/minicorpus/LJSpeech-1.1", Out: other, Params: p, Dev: 3, Eval: 3, Quiet: true, Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	resetEvalOpts()
	if _, _, err := run(t, "eval", "-q", "--checkpoint", ck, "--data", other, "--no-synthesis"); err == nil || !strings.Contains(err.Error(), "preprocessing") {
		t.Errorf("mismatched dump: %v", err)
	}
}
