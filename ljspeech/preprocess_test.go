package ljspeech

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/internal/dirlock"
	"github.com/wavecat/wavecat/melspec"
)

const miniCorpus = "../testdata/minicorpus/LJSpeech-1.1"

// sharedDump is the mini corpus preprocessed once for the read-only tests.
var sharedDump string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ljspeech-test-")
	if err != nil {
		panic(err)
	}
	sharedDump = filepath.Join(dir, "dump")
	if _, err := Preprocess(Options{Data: miniCorpus, Out: sharedDump, Dev: 10, Eval: 10, Quiet: true, Log: io.Discard}); err != nil {
		fmt.Fprintln(os.Stderr, "preprocessing the mini corpus:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func TestPreprocessShapesSplitAndIndex(t *testing.T) {
	d, err := OpenDump(sharedDump)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(miniCorpus)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Index.Utterances) != len(c.Entries) || len(d.Index.Dropped) != 0 {
		t.Fatalf("%d utterances, %d dropped; want %d, 0", len(d.Index.Utterances), len(d.Index.Dropped), len(c.Entries))
	}
	hop := d.Params.Mel.Hop
	for i, u := range d.Index.Utterances {
		e := c.Entries[i]
		if u.ID != e.ID || u.Text != e.Text || u.Norm != e.Norm {
			t.Fatalf("index entry %d = %+v, metadata %+v", i, u, e)
		}
		wave, shape, err := audio.ReadNPY(WavePath(sharedDump, u.ID))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shape, []int{u.Frames * hop}) || len(wave) != u.Samples {
			t.Fatalf("%s: wave shape %v, want [%d]", u.ID, shape, u.Frames*hop)
		}
		_, shape, err = audio.ReadNPY(FeatsPath(sharedDump, u.ID))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shape, []int{u.Frames, 80}) {
			t.Fatalf("%s: feats shape %v, want [%d 80]", u.ID, shape, u.Frames)
		}
	}
	// 32 utterances: dev/eval scaled from 10/10 to 3/3, taken from the end
	// of the sorted ids.
	if len(d.Split.Train) != 26 || len(d.Split.Dev) != 3 || len(d.Split.Eval) != 3 {
		t.Fatalf("split %d/%d/%d, want 26/3/3", len(d.Split.Train), len(d.Split.Dev), len(d.Split.Eval))
	}
	all := append(append(slices.Clone(d.Split.Train), d.Split.Dev...), d.Split.Eval...)
	if !slices.IsSorted(all) || all[len(all)-1] != "LJ001-0032" {
		t.Fatalf("split not in sorted order: %v", all)
	}
}

// The chain's order, checked by redoing it step by step with the melspec
// functions on one file: the mel must come from the high-passed signal
// BEFORE gain and pre-emphasis, and the target is gain then pre-emphasis.
func TestPreprocessChainOrderByHand(t *testing.T) {
	const id = "LJ001-0015"
	a, err := audio.ReadWAV(filepath.Join(miniCorpus, "wavs", id+".wav"), audio.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kept, start, end, err := melspec.Trim(a.Samples, melspec.DefaultTrimConfig())
	if err != nil {
		t.Fatal(err)
	}
	if start == 0 && end == len(a.Samples) {
		t.Fatal("test file has no silence to trim; pick another")
	}
	hp, err := melspec.HighPass(kept, 22050)
	if err != nil {
		t.Fatal(err)
	}
	ext, err := melspec.NewExtractor(melspec.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	mel, frames := ext.Compute(hp)
	tgt := slices.Clone(hp)
	melspec.Scale(tgt, tgt, 0.55)
	melspec.PreEmphasis(tgt, tgt, 0.85)
	tgt = append(tgt, make([]float32, 1024)...)[:frames*256]

	gotWave, _, err := audio.ReadNPY(WavePath(sharedDump, id))
	if err != nil {
		t.Fatal(err)
	}
	gotMel, _, err := audio.ReadNPY(FeatsPath(sharedDump, id))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotWave, tgt) {
		t.Fatal("wave target differs from trim -> high-pass -> gain -> pre-emphasis -> pad/cut")
	}
	if !slices.Equal(gotMel, mel) {
		t.Fatal("mel differs from the mel of the trimmed, high-passed signal")
	}
	// The other order would give a different mel: make sure the test can
	// tell them apart.
	if wrong, _ := ext.Compute(tgt[:len(hp)]); slices.Equal(wrong, gotMel) {
		t.Fatal("mel of the gained signal equals the stored mel: test cannot detect order")
	}
	// Undoing pre-emphasis and gain gives back the high-passed signal, and
	// the tail beyond the signal is zero padding.
	inv := make([]float32, len(hp))
	melspec.DeEmphasis(inv, gotWave[:len(hp)], 0.85)
	for i := range inv {
		if d := math.Abs(float64(inv[i]/0.55 - hp[i])); d > 1e-5 {
			t.Fatalf("sample %d: inverted target %g, high-passed %g", i, inv[i]/0.55, hp[i])
		}
	}
	for i := len(hp); i < len(gotWave); i++ {
		if gotWave[i] != 0 {
			t.Fatalf("padding sample %d = %g", i, gotWave[i])
		}
	}
}

// An independent numpy/scipy implementation of the waveform half of the
// recipe (librosa trim semantics, scipy firwin + lfilter, gain,
// pre-emphasis, pad/cut) must give the same targets.
func TestPreprocessWaveMatchesNumpyReference(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy, scipy.signal").Run(); err != nil {
		t.Skip("needs /usr/bin/python3 with numpy and scipy (apt-get install python3-numpy python3-scipy)")
	}
	ids := []string{"LJ001-0001", "LJ001-0015", "LJ001-0032"}
	if testing.Short() {
		ids = ids[:1]
	}
	script := `
import sys, wave, numpy as np, scipy.signal as ss
corpus, dump = sys.argv[1], sys.argv[2]
worst = 0.0
for id in sys.argv[3:]:
    w = wave.open(f"{corpus}/wavs/{id}.wav")
    x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768
    # librosa.effects.trim(top_db=60, frame_length=2048, hop_length=512), rms centred with zero padding
    fl, hl = 2048, 512
    xp = np.pad(x, fl // 2)
    n = 1 + (len(xp) - fl) // hl
    rms = np.array([np.sqrt(np.mean(xp[i*hl:i*hl+fl] ** 2)) for i in range(n)])
    db = 20 * np.log10(np.maximum(1e-5, rms)) - 20 * np.log10(max(1e-5, rms.max()))
    nz = np.flatnonzero(db > -60)
    x = x[nz[0] * hl: min(len(x), (nz[-1] + 1) * hl)]
    b = ss.firwin(255, 70, pass_zero=False, fs=22050)
    y = ss.lfilter(b, [1.0], x)
    frames = 1 + len(y) // 256
    y = ss.lfilter([1, -0.85], [1], y * 0.55)
    y = np.pad(y, (0, 1024))[: frames * 256]
    got = np.load(f"{dump}/{id}-wave.npy")
    if got.shape != y.shape:
        print(f"{id}: shape {got.shape} want {y.shape}"); sys.exit(1)
    worst = max(worst, float(np.abs(got - y).max()))
print(worst)
`
	out, err := exec.Command(py, append([]string{"-c", script, miniCorpus, sharedDump}, ids...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("reference failed: %v\n%s", err, out)
	}
	var worst float64
	if _, err := fmt.Sscan(string(out), &worst); err != nil {
		t.Fatalf("reference printed %q", out)
	}
	t.Logf("numpy reference: max abs difference %g", worst)
	if worst > 1e-5 {
		t.Fatalf("wave targets differ from numpy/scipy by up to %g", worst)
	}
}

// stats.json holds the mean/std of the training split only, computed here
// directly in float64 over the stored features.
func TestStatsFromTrainingSplitOnly(t *testing.T) {
	d, err := OpenDump(sharedDump)
	if err != nil {
		t.Fatal(err)
	}
	sum := make([]float64, 80)
	sq := make([]float64, 80)
	n := 0
	for _, id := range d.Split.Train {
		mel, frames, err := readFeats(sharedDump, id, 80)
		if err != nil {
			t.Fatal(err)
		}
		n += frames
		for i, v := range mel {
			sum[i%80] += float64(v)
		}
	}
	for _, id := range d.Split.Train {
		mel, _, _ := readFeats(sharedDump, id, 80)
		for i, v := range mel {
			dv := float64(v) - sum[i%80]/float64(n)
			sq[i%80] += dv * dv
		}
	}
	if d.Stats.Count != int64(n) {
		t.Fatalf("stats count %d, training frames %d", d.Stats.Count, n)
	}
	for k := 0; k < 80; k++ {
		m, s := sum[k]/float64(n), math.Sqrt(sq[k]/float64(n))
		if math.Abs(d.Stats.Mean[k]-m) > 1e-9 || math.Abs(d.Stats.Std[k]-s) > 1e-9 {
			t.Fatalf("dim %d: stats %g/%g, want %g/%g", k, d.Stats.Mean[k], d.Stats.Std[k], m, s)
		}
	}
}

func hashDir(t *testing.T, dir string) map[string][32]byte {
	t.Helper()
	out := map[string][32]byte{}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() == dirlock.File {
			continue // says who last held the dump: pid and time
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = sha256.Sum256(b)
	}
	return out
}

func sameFiles(t *testing.T, a, b map[string][32]byte) {
	t.Helper()
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			t.Errorf("%s changed or vanished", k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			t.Errorf("new file %s", k)
		}
	}
}

// A second run reuses everything and changes no byte; a run killed midway
// (an utterance without its done marker, a stray temp file, a deleted
// output) is completed by rerunning, with the same result as a clean run.
func TestPreprocessIdempotentAndResumable(t *testing.T) {
	out := filepath.Join(t.TempDir(), "dump")
	opt := Options{Data: miniCorpus, Out: out, Dev: 10, Eval: 10, Quiet: true, Log: io.Discard, Workers: 2}
	rep, err := Preprocess(opt)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Processed != 32 || rep.Reused != 0 || !rep.Scaled {
		t.Fatalf("first run: %+v", rep)
	}
	clean := hashDir(t, out)
	sameFiles(t, hashDir(t, sharedDump), clean) // same data, same bytes

	rep, err = Preprocess(opt)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Processed != 0 || rep.Reused != 32 {
		t.Fatalf("second run: processed %d, reused %d", rep.Processed, rep.Reused)
	}
	sameFiles(t, clean, hashDir(t, out))

	// Simulate a killed run: one utterance lost its marker (killed before
	// the marker was written), another lost its wave, and a temp file of a
	// write in progress is lying around; index/split/stats are gone too.
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Remove(DonePath(out, "LJ001-0004")))
	must(os.Remove(WavePath(out, "LJ001-0020")))
	must(os.Remove(filepath.Join(out, StatsFile)))
	must(os.Remove(filepath.Join(out, IndexFile)))
	must(os.WriteFile(filepath.Join(out, ".LJ001-0007-wave.npy.tmp-123"), []byte("partial"), 0o644))
	if _, err := OpenDump(out); err == nil {
		t.Fatal("OpenDump accepted a dump without index")
	}
	rep, err = Preprocess(opt)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Processed != 2 || rep.Reused != 30 {
		t.Fatalf("resumed run: processed %d, reused %d; want 2, 30", rep.Processed, rep.Reused)
	}
	if _, err := os.Stat(filepath.Join(out, ".LJ001-0007-wave.npy.tmp-123")); !os.IsNotExist(err) {
		t.Errorf("the killed run's temporary is still there (%v)", err)
	}
	sameFiles(t, clean, hashDir(t, out))
	if _, err := OpenDump(out); err != nil {
		t.Fatal(err)
	}

	// Other parameters in the same dump are refused.
	p := DefaultParams()
	p.Gain = 0.5
	opt.Params = p
	if _, err := Preprocess(opt); err == nil || !strings.Contains(err.Error(), "other preprocessing parameters") {
		t.Fatalf("changed parameters: err = %v", err)
	}
}

// buildCorpus writes an LJSpeech directory with the given metadata lines,
// copying recordings from the mini corpus for ids that exist there.
func buildCorpus(t *testing.T, lines []string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "LJSpeech-1.1")
	if err := os.MkdirAll(filepath.Join(dir, "wavs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		id := strings.SplitN(l, "|", 2)[0]
		b, err := os.ReadFile(filepath.Join(miniCorpus, "wavs", id+".wav"))
		if err == nil {
			if err := os.WriteFile(filepath.Join(dir, "wavs", id+".wav"), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "metadata.csv"), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPreprocessListsEveryBadRecordingAndSkipBad(t *testing.T) {
	var lines []string
	for i := 1; i <= 12; i++ {
		id := fmt.Sprintf("LJ001-%04d", i)
		lines = append(lines, id+"|t|t")
	}
	lines = append(lines, "LJ009-0001|missing|missing", "LJ009-0002|16k|16k", "LJ009-0003|stereo|stereo", "LJ009-0004|junk|junk")
	dir := buildCorpus(t, lines)
	tone := make([]float32, 8000)
	for i := range tone {
		tone[i] = float32(0.3 * math.Sin(float64(i)*0.1))
	}
	if err := audio.WriteWAV16(filepath.Join(dir, "wavs", "LJ009-0002.wav"), tone, 16000); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "wavs", "LJ009-0003.wav"))
	if err != nil {
		t.Fatal(err)
	}
	if err := audio.EncodeWAV16(f, tone, 22050, 2); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.WriteFile(filepath.Join(dir, "wavs", "LJ009-0004.wav"), []byte("not a wav at all"), 0o644); err != nil {
		t.Fatal(err)
	}

	out := filepath.Join(t.TempDir(), "dump")
	opt := Options{Data: dir, Out: out, Dev: 1, Eval: 1, Quiet: true, Log: io.Discard}
	_, err = Preprocess(opt)
	var bad *BadFilesError
	if !errors.As(err, &bad) {
		t.Fatalf("want BadFilesError, got %v", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"4 of 16 recordings are unusable", "--skip-bad",
		filepath.Join(dir, "wavs", "LJ009-0001.wav") + ": missing",
		filepath.Join(dir, "wavs", "LJ009-0002.wav") + ": sample rate 16000 Hz, want 22050 Hz",
		filepath.Join(dir, "wavs", "LJ009-0003.wav") + ": 2 channels, want mono",
		filepath.Join(dir, "wavs", "LJ009-0004.wav") + ": ",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(out, "*.npy")); len(m) != 0 {
		t.Errorf("bad corpus without --skip-bad still wrote %d arrays", len(m))
	}

	opt.SkipBad = true
	rep, err := Preprocess(opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bad) != 4 || rep.Processed != 12 {
		t.Fatalf("skip-bad: %d bad, %d processed", len(rep.Bad), rep.Processed)
	}
	d, err := OpenDump(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Index.Utterances) != 12 || len(d.Split.Train)+len(d.Split.Dev)+len(d.Split.Eval) != 12 {
		t.Fatalf("index has %d utterances", len(d.Index.Utterances))
	}
	for _, u := range d.Index.Utterances {
		if strings.HasPrefix(u.ID, "LJ009") {
			t.Fatalf("bad recording %s in the index", u.ID)
		}
	}
}

func TestPreprocessBrokenMetadataNamesLine(t *testing.T) {
	dir := buildCorpus(t, []string{"LJ001-0001|a|a", "LJ001-0002|only two"})
	_, err := Preprocess(Options{Data: dir, Out: filepath.Join(t.TempDir(), "d"), Quiet: true, Log: io.Discard})
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "metadata.csv")+":2: 2 fields") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil || !strings.Contains(err.Error(), "metadata.csv") {
		t.Fatalf("empty dir: err = %v", err)
	}
}

// Utterances the recipe cannot use are dropped and reported: one that is
// pure silence trims to... itself (librosa keeps all-zero signals), so use
// one that is too loud after gain and pre-emphasis instead, plus a silent
// one whose trim keeps it (it must survive).
func TestPreprocessDropsTooLoud(t *testing.T) {
	dir := buildCorpus(t, []string{"LJ001-0001|a|a", "LJ001-0002|b|b", "LJ001-0003|c|c", "LJ002-0001|loud|loud"})
	// A full-scale alternating signal: pre-emphasis of 0.55*(+-1) reaches
	// 0.55*1.85 ~ 1.02 > 1.
	loud := make([]float32, 22050)
	for i := range loud {
		loud[i] = float32(1 - 2*(i%2))
	}
	if err := audio.WriteWAV16(filepath.Join(dir, "wavs", "LJ002-0001.wav"), loud, 22050); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "d")
	rep, err := Preprocess(Options{Data: dir, Out: out, Dev: 1, Eval: 1, Quiet: true, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Dropped) != 1 || rep.Dropped[0].ID != "LJ002-0001" || !strings.Contains(rep.Dropped[0].Reason, "> 1") {
		t.Fatalf("dropped = %+v", rep.Dropped)
	}
	d, err := OpenDump(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Index.Dropped) != 1 || len(d.Index.Utterances) != 3 {
		t.Fatalf("index: %+v", d.Index)
	}
	if _, err := os.Stat(WavePath(out, "LJ002-0001")); err == nil {
		t.Fatal("dropped utterance has a wave file")
	}
	// The drop is remembered: a rerun does not recompute it.
	rep, err = Preprocess(Options{Data: dir, Out: out, Dev: 1, Eval: 1, Quiet: true, Log: io.Discard})
	if err != nil || rep.Reused != 4 || len(rep.Dropped) != 1 {
		t.Fatalf("rerun: %+v, %v", rep, err)
	}
}
