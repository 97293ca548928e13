package train

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func testCheckpoint(seed uint64) *Checkpoint {
	w := sampleTensors(seed)
	ema := sampleTensors(seed + 100)
	var opt []Tensor
	for _, t := range sampleTensors(seed + 200) {
		m, v := t, t
		m.Name += ".exp_avg"
		v.Name += ".exp_avg_sq"
		opt = append(opt, m, v)
	}
	return &Checkpoint{
		// No "model" section: these tensors are no WaveNet's, and a model
		// section is checked against them (untrusted.go). The other
		// sections stay opaque to Save and Load.
		Config: Meta{
			Extra:    json.RawMessage(`{"layers": 24, "stacks": 4}`),
			Head:     json.RawMessage(`{"kind":"adacat","k":15}`),
			Mel:      json.RawMessage(`{"sample_rate":22050}`),
			Stats:    json.RawMessage(`{"mean":[1,2],"std":[3,4]}`),
			Step:     int64(seed) * 1000,
			Seed:     seed,
			RNGState: []byte{0, 1, 2, 255},
			Data:     DataPosition{Epoch: 3, Index: 17, ShuffleSeed: 99},
			Adam:     AdamState{AdamConfig: DefaultAdam(), Step: int64(seed) * 1000},
			Schedule: DefaultSchedule(),
			EMADecay: DefaultEMADecay,
		},
		Weights: w, EMA: ema, Optimizer: opt,
	}
}

// sameMeta compares configs with the opaque JSON sections compacted (the
// writer re-indents them).
func sameMeta(t *testing.T, got, want Meta) {
	t.Helper()
	want.Format = FormatVersion
	for _, p := range []*json.RawMessage{&got.Model, &got.Head, &got.Mel, &got.Stats, &got.Extra, &want.Model, &want.Head, &want.Mel, &want.Stats, &want.Extra} {
		if len(*p) == 0 {
			continue
		}
		var b bytes.Buffer
		if err := json.Compact(&b, *p); err != nil {
			t.Fatal(err)
		}
		*p = b.Bytes()
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("config differs:\n got %+v\nwant %+v", got, want)
	}
}

func sameCheckpoint(t *testing.T, got, want *Checkpoint) {
	t.Helper()
	sameMeta(t, got.Config, want.Config)
	if !Equal(got.Weights, want.Weights) || !Equal(got.EMA, want.EMA) || !Equal(got.Optimizer, want.Optimizer) {
		t.Error("tensors differ after the round trip")
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ck")
	ck := testCheckpoint(1)
	if err := Save(dir, ck); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, got, ck)

	// Overwrite (the swap path) and check nothing is left beside it.
	ck2 := testCheckpoint(2)
	if err := Save(dir, ck2); err != nil {
		t.Fatal(err)
	}
	got, err = Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, got, ck2)
	assertOnly(t, filepath.Dir(dir), "ck")

	w, meta, err := LoadWeightsOnly(dir, true)
	if err != nil || !Equal(w, ck2.EMA) || meta.Step != ck2.Config.Step {
		t.Errorf("LoadWeightsOnly(ema): %v", err)
	}
	w, _, err = LoadWeightsOnly(dir, false)
	if err != nil || !Equal(w, ck2.Weights) {
		t.Errorf("LoadWeightsOnly(weights): %v", err)
	}
}

func TestCheckpointOptionalFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ck")
	ck := testCheckpoint(3)
	ck.EMA, ck.Optimizer = nil, nil
	if err := Save(dir, ck); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sameCheckpoint(t, got, ck)
	if _, _, err := LoadWeightsOnly(dir, true); err == nil || !strings.Contains(err.Error(), EMAFile) {
		t.Errorf("LoadWeightsOnly(ema) without EMA: %v", err)
	}
	// An unlisted file appearing later is refused, not ignored.
	if err := os.WriteFile(filepath.Join(dir, EMAFile), encode(t, ck.Weights, nil), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not listed") {
		t.Errorf("unlisted %s: %v", EMAFile, err)
	}
}

func TestSaveRefusesBadCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ck")
	ck := testCheckpoint(1)
	ck.EMA = ck.EMA[1:]
	if err := Save(dir, ck); err == nil {
		t.Error("EMA with a missing tensor accepted")
	}
	ck = testCheckpoint(1)
	ck.Optimizer = ck.Optimizer[:len(ck.Optimizer)-1]
	if err := Save(dir, ck); err == nil {
		t.Error("optimizer state missing a moment accepted")
	}
	ck = testCheckpoint(1)
	ck.Config.Model = json.RawMessage(`{"layers":`)
	if err := Save(dir, ck); err == nil {
		t.Error("invalid model JSON accepted")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused save left %s behind", dir)
	}
	assertOnly(t, filepath.Dir(dir))

	// Never replace something that is not a checkpoint.
	other := filepath.Join(t.TempDir(), "home")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, "precious.txt"), []byte("x"), 0o644)
	if err := Save(other, testCheckpoint(1)); err == nil || !strings.Contains(err.Error(), "not a checkpoint") {
		t.Errorf("Save over a non-checkpoint directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "precious.txt")); err != nil {
		t.Error("Save destroyed a non-checkpoint directory")
	}
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o644)
	if err := Save(file, testCheckpoint(1)); err == nil {
		t.Error("Save over a regular file accepted")
	}
	empty := filepath.Join(t.TempDir(), "empty")
	os.Mkdir(empty, 0o755)
	if err := Save(empty, testCheckpoint(1)); err != nil {
		t.Errorf("Save into an empty directory: %v", err)
	}
}

func assertOnly(t *testing.T, parent string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Errorf("%s holds %v, want %v", parent, got, names)
	}
}

// rewriteSum recomputes a file's manifest entry so a test reaches the check
// behind the checksum.
func rewriteSum(t *testing.T, dir, name string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(dir, ManifestFile)
	mb, _ := os.ReadFile(mp)
	man, err := ParseManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	man.Files[name] = FileSum{Size: int64(len(data)), SHA256: hex.EncodeToString(s[:])}
	mb, _ = json.Marshal(man)
	if err := os.WriteFile(mp, mb, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRefusesCorruption(t *testing.T) {
	base := t.TempDir()
	n := 0
	fresh := func() string {
		n++
		d := filepath.Join(base, "ck"+itoa(n))
		if err := Save(d, testCheckpoint(5)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	files := []string{ConfigFile, WeightsFile, EMAFile, OptimizerFile}
	type corruption struct {
		name, want string
		edit       func(dir string)
	}
	var cases []corruption
	for _, f := range files {
		f := f
		cases = append(cases,
			corruption{"flip byte in " + f, "SHA-256 mismatch", func(d string) {
				p := filepath.Join(d, f)
				b, _ := os.ReadFile(p)
				b[len(b)-1] ^= 0x01
				os.WriteFile(p, b, 0o644)
			}},
			corruption{"truncate " + f, "truncated", func(d string) {
				p := filepath.Join(d, f)
				fi, _ := os.Stat(p)
				os.Truncate(p, fi.Size()/2)
			}},
			corruption{"delete " + f, f, func(d string) { os.Remove(filepath.Join(d, f)) }},
		)
	}
	cases = append(cases,
		corruption{"delete manifest", ManifestFile, func(d string) { os.Remove(filepath.Join(d, ManifestFile)) }},
		corruption{"truncate manifest", "invalid manifest", func(d string) {
			p := filepath.Join(d, ManifestFile)
			fi, _ := os.Stat(p)
			os.Truncate(p, fi.Size()/2)
		}},
		corruption{"manifest drops ema", "not listed", func(d string) {
			p := filepath.Join(d, ManifestFile)
			man, _ := ParseManifest(must(os.ReadFile(p)))
			delete(man.Files, EMAFile)
			os.WriteFile(p, must(json.Marshal(man)), 0o644)
		}},
		corruption{"manifest format", "unsupported manifest format", func(d string) {
			p := filepath.Join(d, ManifestFile)
			b := bytes.Replace(must(os.ReadFile(p)), []byte(`"format": 1`), []byte(`"format": 7`), 1)
			os.WriteFile(p, b, 0o644)
		}},
		corruption{"config format version", "unsupported checkpoint format 2", func(d string) {
			p := filepath.Join(d, ConfigFile)
			b := bytes.Replace(must(os.ReadFile(p)), []byte(`"format": 1`), []byte(`"format": 2`), 1)
			os.WriteFile(p, b, 0o644)
			rewriteSum(t, d, ConfigFile)
		}},
		corruption{"config unknown field", "unknown field", func(d string) {
			p := filepath.Join(d, ConfigFile)
			b := bytes.Replace(must(os.ReadFile(p)), []byte(`"seed"`), []byte(`"sed"`), 1)
			os.WriteFile(p, b, 0o644)
			rewriteSum(t, d, ConfigFile)
		}},
		corruption{"weights header dtype (checksum fixed)", WeightsFile + ": tensor", func(d string) {
			p := filepath.Join(d, WeightsFile)
			b := bytes.Replace(must(os.ReadFile(p)), []byte(`"F32"`), []byte(`"F16"`), 1)
			os.WriteFile(p, b, 0o644)
			rewriteSum(t, d, WeightsFile)
		}},
		corruption{"ema shape (checksum fixed)", "does not match", func(d string) {
			ts := sampleTensors(105)
			ts[0].Shape = []int{2, 5, 3}
			os.WriteFile(filepath.Join(d, EMAFile), encode(t, ts, nil), 0o644)
			rewriteSum(t, d, EMAFile)
		}},
		corruption{"optimizer shape (checksum fixed)", "does not match", func(d string) {
			ck := testCheckpoint(5)
			ck.Optimizer[0].Shape = []int{5, 3, 2}
			os.WriteFile(filepath.Join(d, OptimizerFile), encode(t, ck.Optimizer, map[string]string{"step": "5000"}), 0o644)
			rewriteSum(t, d, OptimizerFile)
		}},
		corruption{"optimizer step (checksum fixed)", "disagrees", func(d string) {
			ck := testCheckpoint(5)
			os.WriteFile(filepath.Join(d, OptimizerFile), encode(t, ck.Optimizer, map[string]string{"step": "4"}), 0o644)
			rewriteSum(t, d, OptimizerFile)
		}},
	)
	for _, c := range cases {
		d := fresh()
		c.edit(d)
		_, err := Load(d)
		if err == nil {
			t.Errorf("%s: Load accepted it", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), d) {
			t.Errorf("%s: error %q should name %s and mention %q", c.name, err, d, c.want)
		}
	}
	if _, err := Load(filepath.Join(base, "nothing")); err == nil {
		t.Error("missing directory accepted")
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

type crash struct{}

// TestSaveCrashSafety interrupts Save at every stage, both as a returned
// error and as a simulated crash (a panic skips all cleanup, like a killed
// process), and checks that the directory always loads as the old or the new
// checkpoint and that the next Save repairs everything.
func TestSaveCrashSafety(t *testing.T) {
	defer func() { saveHook = nil }()
	stages := []string{"wrote " + ConfigFile, "wrote " + WeightsFile, "wrote " + EMAFile, "wrote " + OptimizerFile, "built", "moved old", "swapped"}
	oldCk, newCk, nextCk := testCheckpoint(6), testCheckpoint(7), testCheckpoint(8)
	for _, stage := range stages {
		for _, mode := range []string{"error", "crash"} {
			parent := t.TempDir()
			dir := filepath.Join(parent, "ck")
			if err := Save(dir, oldCk); err != nil {
				t.Fatal(err)
			}
			hit := false
			saveHook = func(s string) error {
				if s != stage {
					return nil
				}
				hit = true
				if mode == "crash" {
					panic(crash{})
				}
				return errors.New("injected failure")
			}
			func() {
				defer func() {
					if r := recover(); r != nil && r != (crash{}) {
						panic(r)
					}
				}()
				err := Save(dir, newCk)
				if mode == "error" && err == nil {
					t.Errorf("%s/%s: Save returned nil", stage, mode)
				}
			}()
			saveHook = nil
			if !hit {
				t.Fatalf("stage %q never reached", stage)
			}
			got, err := Load(dir)
			if err != nil {
				t.Errorf("%s/%s: Load after interruption: %v", stage, mode, err)
				continue
			}
			late := stage == "moved old" || stage == "swapped"
			switch {
			case got.Config.Step == oldCk.Config.Step:
				sameCheckpoint(t, got, oldCk)
			case got.Config.Step == newCk.Config.Step && late:
				sameCheckpoint(t, got, newCk)
			default:
				t.Errorf("%s/%s: loaded step %d", stage, mode, got.Config.Step)
			}
			if mode == "error" && !late {
				assertOnly(t, parent, "ck") // failures clean up after themselves
			}
			// Recovery: the next save succeeds and leaves only the checkpoint.
			if err := Save(dir, nextCk); err != nil {
				t.Fatalf("%s/%s: save after interruption: %v", stage, mode, err)
			}
			got, err = Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			sameCheckpoint(t, got, nextCk)
			assertOnly(t, parent, "ck")
		}
	}
}

func TestRunDirectory(t *testing.T) {
	run := t.TempDir()
	if _, err := Latest(run); err == nil {
		t.Error("Latest on an empty run succeeded")
	}
	for _, step := range []int64{100, 200, 300, 400} {
		ck := testCheckpoint(1)
		ck.Config.Step = step
		d, err := SaveStep(run, ck)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Base(d) != "step-"+strings.Repeat("0", 6)+itoa(int(step)) {
			t.Errorf("step dir %s", d)
		}
	}
	if d, err := Latest(run); err != nil || filepath.Base(d) != "step-000000400" {
		t.Errorf("Latest = %s, %v", d, err)
	}
	// The pointer is authoritative when valid, even if not the highest step.
	os.WriteFile(filepath.Join(run, LatestFile), []byte("step-000000200\n"), 0o644)
	if d, _ := Latest(run); filepath.Base(d) != "step-000000200" {
		t.Errorf("Latest ignored the pointer: %s", d)
	}
	if err := Prune(run, 1); err != nil {
		t.Fatal(err)
	}
	assertOnly(t, run, "latest", "step-000000200", "step-000000400")
	// Stale pointer (crash before it was updated) falls back to the newest.
	os.WriteFile(filepath.Join(run, LatestFile), []byte("step-000000999\n"), 0o644)
	if d, _ := Latest(run); filepath.Base(d) != "step-000000400" {
		t.Errorf("Latest with a stale pointer: %s", d)
	}
	os.Remove(filepath.Join(run, LatestFile))
	if d, _ := Latest(run); filepath.Base(d) != "step-000000400" {
		t.Errorf("Latest without a pointer: %s", d)
	}
	// A step caught mid-swap (only .old left) still counts and loads.
	os.Rename(filepath.Join(run, "step-000000400"), filepath.Join(run, "step-000000400.old"))
	d, err := Latest(run)
	if err != nil || filepath.Base(d) != "step-000000400" {
		t.Fatalf("Latest mid-swap: %s %v", d, err)
	}
	if ck, err := Load(d); err != nil || ck.Config.Step != 400 {
		t.Errorf("Load mid-swap: %v", err)
	}
	if err := Prune(run, 0); err == nil {
		t.Error("Prune(keep=0) accepted")
	}
}

// FuzzParseManifest and FuzzParseMeta: never panic; accepted input
// re-encodes to something accepted and equal.
func FuzzParseManifest(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "ck")
	if err := Save(dir, testCheckpoint(1)); err != nil {
		f.Fatal(err)
	}
	f.Add(must(os.ReadFile(filepath.Join(dir, ManifestFile))))
	f.Add([]byte(`{"format":1,"algorithm":"sha256","files":{}}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data)
		if err != nil {
			return
		}
		m2, err := ParseManifest(must(json.Marshal(m)))
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoded manifest differs: %v", err)
		}
	})
}

func FuzzParseMeta(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "ck")
	if err := Save(dir, testCheckpoint(1)); err != nil {
		f.Fatal(err)
	}
	f.Add(must(os.ReadFile(filepath.Join(dir, ConfigFile))))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":1,"rng_state":"!!"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMeta(data)
		if err != nil {
			return
		}
		if _, err := ParseMeta(must(json.Marshal(m))); err != nil {
			t.Fatalf("accepted config does not re-parse: %v", err)
		}
	})
}
