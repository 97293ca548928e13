package train

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/wavenet"
)

// resumableCheckpoint is a complete checkpoint of a tiny adacat model, as
// the training loop writes one: model description, run state, weights, EMA
// and Adam state.
func resumableCheckpoint(t *testing.T, step int64) *Checkpoint {
	t.Helper()
	mi := tinyInfo(t, "adacat --components 4 --lambda 0.001")
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := wavenet.New(mi.Model, be, step)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	ts := FromModelTensors(m.ExportTensors())
	meta := Meta{Format: FormatVersion, Step: step, Seed: 1, Adam: AdamState{AdamConfig: DefaultAdam(), Step: step},
		Schedule: DefaultSchedule(), EMADecay: DefaultEMADecay}
	if err := mi.SetMeta(&meta); err != nil {
		t.Fatal(err)
	}
	extra, _ := json.Marshal(RunState{BatchSize: 2, MaxTimeSteps: 1024})
	meta.Extra = extra
	return &Checkpoint{Config: meta, Weights: ts, EMA: ts, Optimizer: AdamTensors(ts, ts)}
}

// editConfig rewrites one field of dir's config.json (path of JSON keys,
// value as raw JSON) and reseals checksums.json, as anyone can: checksums
// are not authentication.
func editConfig(t *testing.T, dir string, value string, path ...string) {
	t.Helper()
	p := filepath.Join(dir, ConfigFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&root); err != nil {
		t.Fatal(err)
	}
	obj := root
	for _, k := range path[:len(path)-1] {
		obj = obj[k].(map[string]any)
	}
	obj[path[len(path)-1]] = json.RawMessage(value)
	out, err := json.MarshalIndent(root, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	rewriteSum(t, dir, ConfigFile)
}

// allocDuring returns the bytes allocated while f ran.
func allocDuring(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// TestLoadRefusesHostileModelConfig (issue 18 item 7): a config.json whose
// model section claims a huge or different network, resealed in
// checksums.json, is refused by Load, LoadModel and CheckResumable with one
// line naming the file and the problem, before anything is allocated for
// the claimed model (residual_channels 1e9 and cin_pad 1e8 used to crash
// with a fatal out-of-memory, layers 2e9 and kernel_size 1e6 to hang at
// 5 GB, a head of 1e9 components to crash --resume).
func TestLoadRefusesHostileModelConfig(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		value string
		path  []string
		want  string
		// headOnly: Load (training state) does not judge heads; the
		// synthesis and resume paths do.
		headOnly bool
	}{
		{"1000000000", []string{"model", "residual_channels"}, "residual_channels 1000000000 exceeds the limit 4096", false},
		{"100000000", []string{"model", "cin_pad"}, "cin_pad 100000000 exceeds the limit 32", false},
		{"2000000000", []string{"model", "layers"}, "layers 2000000000 exceeds the limit 1024", false},
		{"1000000", []string{"model", "kernel_size"}, "kernel_size 1000000 exceeds the limit 64", false},
		{"2000000000", []string{"model", "out_channels"}, "out_channels 2000000000 exceeds the limit 65536", false},
		// Within the limits but not what the file holds: caught on the
		// safetensors header, before a 1024-channel model is built.
		{"1024", []string{"model", "residual_channels"}, `the model section implies tensor "first_conv.bias" of shape [1024], model.safetensors has [16]`, false},
		{"8", []string{"model", "layers"}, `the model section implies tensor "conv_layers.4.conv.bias" of shape [32], model.safetensors has no such tensor`, false},
		{"2", []string{"model", "layers"}, "model.safetensors has 22 tensor(s) the model section does not imply: \"conv_layers.2.conv.bias\"", false},
		{"[4, 4]", []string{"model", "upsample_scales"}, `the model section implies tensor "upsample_net.upsample.up_layers.1.weight_v" of shape [1 1 1 9], model.safetensors has [1 1 1 5]`, false},
		{`"adacat --components 1000000000 --lambda 0.001"`, []string{"head"}, "--components 1000000000 exceeds the limit 32768", true},
		{`"adacat --components 100 --lambda 0.001"`, []string{"head"}, "needs 200 output / 1 input channels, model has 8 / 1", true},
	} {
		t.Run(c.want, func(t *testing.T) {
			dir, err := SaveStep(t.TempDir(), resumableCheckpoint(t, 3))
			if err != nil {
				t.Fatal(err)
			}
			editConfig(t, dir, c.value, c.path...)
			// LoadModel(ema=true) compares the EMA weights, the ones it loads.
			check := func(what, file string, err error) {
				t.Helper()
				wantPrefix := filepath.Join(dir, ConfigFile) + ": "
				want := strings.ReplaceAll(c.want, WeightsFile, file)
				if err == nil || !strings.HasPrefix(err.Error(), wantPrefix) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("%s: %v\nwant one line starting %q and containing %q", what, err, wantPrefix, want)
				}
			}
			var lerr, merr, rerr error
			n := allocDuring(func() {
				_, lerr = Load(dir)
				_, _, _, _, merr = LoadModel(dir, be, true)
				rerr = CheckResumable(dir)
			})
			if !c.headOnly {
				check("Load", WeightsFile, lerr)
			}
			check("LoadModel", EMAFile, merr)
			check("CheckResumable", WeightsFile, rerr)
			// The checkpoint itself is a few hundred kB (read three times).
			if n > 32<<20 {
				t.Errorf("refusing it allocated %d MB", n>>20)
			}
		})
	}
}

// TestLoadModelRefusesBadPreprocessing (issue 18 item 8): preprocessing
// parameters synthesis cannot use (a gain of 0 or below or a pre-emphasis
// of 1.5 give full-scale clipped output) are refused on load, each naming
// config.json and the parameter.
func TestLoadModelRefusesBadPreprocessing(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		value string
		path  []string
		want  string
	}{
		{"0", []string{"mel", "gain"}, "mel: gain 0 must be positive and finite"},
		{"-0.5", []string{"mel", "gain"}, "mel: gain -0.5 must be positive and finite"},
		{"1.5", []string{"mel", "preemphasis"}, "mel: preemphasis 1.5 must be in [0, 1)"},
		{"1", []string{"mel", "preemphasis"}, "mel: preemphasis 1 must be in [0, 1)"},
		{"-0.1", []string{"mel", "preemphasis"}, "mel: preemphasis -0.1 must be in [0, 1)"},
		{"0", []string{"mel", "sample_rate"}, "sample_rate 0 must be in [1, 1048576]"},
		{"8000", []string{"mel", "mel", "fmin"}, "need 0 <= mel.fmin (8000) < mel.fmax (7600) <= sample_rate/2 (11025)"},
		{"20000", []string{"mel", "mel", "fmax"}, "mel.fmax (20000) <= sample_rate/2 (11025)"},
		{"0", []string{"mel", "mel", "hop"}, "mel.hop 0 must be in [1, 65536]"},
		{"4096", []string{"mel", "mel", "win_length"}, "mel.win_length 4096 must be in [1, n_fft=1024]"},
		{"1000000000", []string{"mel", "mel", "n_fft"}, "mel.n_fft 1000000000 must be in [2, 65536]"},
		{"256", []string{"mel", "highpass_taps"}, "highpass_taps 256 must be 0 (off) or odd"},
		{"20000", []string{"mel", "highpass_cutoff_hz"}, "highpass_cutoff_hz 20000 must be in (0, sample_rate/2 = 11025)"},
		{"1", []string{"mel", "pad_right"}, "pad_right 1 must be in [hop=256, 1048576]"},
		{`"mirror"`, []string{"mel", "trim", "pad"}, `trim.pad "mirror" must be "constant" or "reflect"`},
		{"0", []string{"mel", "trim", "top_db"}, "trim.top_db 0 must be positive and finite"},
		{"[0, 1, 1, 1, 1, 1, 1, 1]", []string{"stats", "std"}, "stats: dimension 0 has mean 0 and std 0"},
	} {
		t.Run(c.want, func(t *testing.T) {
			dir, err := SaveStep(t.TempDir(), resumableCheckpoint(t, 3))
			if err != nil {
				t.Fatal(err)
			}
			editConfig(t, dir, c.value, c.path...)
			wantPrefix := filepath.Join(dir, ConfigFile) + ": "
			for what, err := range map[string]error{
				"LoadModel":      func() error { _, _, _, _, err := LoadModel(dir, be, true); return err }(),
				"CheckResumable": CheckResumable(dir),
			} {
				if err == nil || !strings.HasPrefix(err.Error(), wantPrefix) || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
					t.Errorf("%s: %v\nwant one line starting %q and containing %q", what, err, wantPrefix, c.want)
				}
			}
		})
	}
	// The unedited checkpoint loads.
	dir, err := SaveStep(t.TempDir(), resumableCheckpoint(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	m, _, _, _, err := LoadModel(dir, be, true)
	if err != nil {
		t.Fatal(err)
	}
	m.Free()
	if err := CheckResumable(dir); err != nil {
		t.Fatal(err)
	}
}

// TestReadSafetensorsHeader: the header alone gives the shapes ParseSafetensors
// gives, and a header that claims more data than the file holds is refused
// without reading (or allocating for) the claim.
func TestReadSafetensorsHeader(t *testing.T) {
	var buf bytes.Buffer
	ts := sampleTensors(3)
	if err := WriteSafetensors(&buf, ts, nil); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	hs, _, err := ReadSafetensorsHeader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	full, _, err := ParseSafetensors(data)
	if err != nil || len(hs) != len(full) {
		t.Fatalf("%d headers, %d tensors (%v)", len(hs), len(full), err)
	}
	for i := range hs {
		if hs[i].Name != full[i].Name || !slices.Equal(hs[i].Shape, full[i].Shape) || hs[i].End-hs[i].Begin != 4*len(full[i].Data) {
			t.Errorf("header %+v, tensor %s %v", hs[i], full[i].Name, full[i].Shape)
		}
	}
	// The same header in front of too few data bytes.
	short := data[:len(data)-4]
	if _, _, err := ReadSafetensorsHeader(bytes.NewReader(short), int64(len(short))); err == nil || !strings.Contains(err.Error(), "outside the") {
		t.Errorf("truncated data: %v", err)
	}
	// A header length beyond the file.
	bogus := append([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0}, data[8:]...)
	if _, _, err := ReadSafetensorsHeader(bytes.NewReader(bogus), int64(len(bogus))); err == nil || !strings.Contains(err.Error(), "impossible for a file of") {
		t.Errorf("huge header length: %v", err)
	}
}

// TestPrepareResume (issue 18 item 9): a corrupt newest checkpoint, or one
// without checksums.json, is passed over for the newest good one, moved
// aside (kept for inspection, out of the way of the next save) and
// reported with its reason; the latest pointer then names the good one.
// With no good checkpoint nothing is moved and every problem is given.
// FindResume, before and after, chooses the same and changes nothing.
func TestPrepareResume(t *testing.T) {
	newRun := func(t *testing.T) string {
		run := t.TempDir()
		for step := int64(1); step <= 3; step++ {
			if _, err := SaveStep(run, resumableCheckpoint(t, step)); err != nil {
				t.Fatal(err)
			}
		}
		return run
	}
	flip := func(t *testing.T, p string) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)-5] ^= 0x10
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, run string)
		want   []string // reasons, newest first
	}{
		{"corrupt newest", func(t *testing.T, run string) { flip(t, filepath.Join(StepDir(run, 3), WeightsFile)) },
			[]string{"model.safetensors: SHA-256 mismatch"}},
		{"newest without checksums.json", func(t *testing.T, run string) { os.Remove(filepath.Join(StepDir(run, 3), ManifestFile)) },
			[]string{"step-000000003: no checksums.json"}},
		{"two bad", func(t *testing.T, run string) {
			os.Remove(filepath.Join(StepDir(run, 3), ManifestFile))
			editConfig(t, StepDir(run, 2), "0", "mel", "gain")
		}, []string{"step-000000003: no checksums.json", "step-000000002/config.json: mel: gain 0"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := newRun(t)
			c.damage(t, run)
			good := StepDir(run, int64(3-len(c.want)))
			// FindResume (the other ranks') makes the same choice and
			// changes nothing.
			latest, _ := os.ReadFile(filepath.Join(run, LatestFile))
			found, skipped, err := FindResume(run)
			if err != nil || found != good || len(skipped) != len(c.want) {
				t.Fatalf("FindResume = %q, %+v, %v; want %s after %d skipped", found, skipped, err, good, len(c.want))
			}
			for i, u := range skipped {
				if _, err := os.Stat(u.Dir); err != nil || u.MovedTo != "" || !strings.Contains(u.Err.Error(), c.want[i]) {
					t.Errorf("FindResume skipped %s (%v), moved to %q; stat: %v", u.Dir, u.Err, u.MovedTo, err)
				}
			}
			if now, _ := os.ReadFile(filepath.Join(run, LatestFile)); string(now) != string(latest) {
				t.Errorf("FindResume rewrote the latest pointer: %q -> %q", latest, now)
			}
			got, bad, err := PrepareResume(run)
			if err != nil || got != good {
				t.Fatalf("PrepareResume = %q, %v; want %s", got, err, good)
			}
			if len(bad) != len(c.want) {
				t.Fatalf("skipped %+v, want %d", bad, len(c.want))
			}
			for i, u := range bad {
				step := StepDir(run, int64(3-i))
				if u.Dir != step || u.MovedTo != step+BadSuffix || !strings.Contains(u.Err.Error(), c.want[i]) {
					t.Errorf("skipped %s (%v) moved to %s; want %s for %q moved to %s", u.Dir, u.Err, u.MovedTo, step, c.want[i], step+BadSuffix)
				}
				if _, err := os.Stat(step); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still in place: %v", step, err)
				}
				if _, err := os.Stat(step + BadSuffix); err != nil {
					t.Errorf("moved-aside copy: %v", err)
				}
			}
			if l, err := Latest(run); err != nil || l != good {
				t.Errorf("Latest = %s, %v; want %s", l, err, good)
			}
			// A second call finds nothing more to do, and a rank reading
			// after rank 0 prepared the run chooses the same.
			if got, bad, err := PrepareResume(run); err != nil || got != good || len(bad) != 0 {
				t.Errorf("second call: %s %v %v", got, bad, err)
			}
			if got, bad, err := FindResume(run); err != nil || got != good || len(bad) != 0 {
				t.Errorf("FindResume after PrepareResume: %s %v %v", got, bad, err)
			}
		})
	}
	t.Run("healthy", func(t *testing.T) {
		run := newRun(t)
		got, bad, err := PrepareResume(run)
		if err != nil || got != StepDir(run, 3) || len(bad) != 0 {
			t.Fatalf("%s %+v %v", got, bad, err)
		}
	})
	t.Run("nothing resumable", func(t *testing.T) {
		run := newRun(t)
		for step := int64(1); step <= 3; step++ {
			flip(t, filepath.Join(StepDir(run, step), EMAFile))
		}
		_, _, err := PrepareResume(run)
		if err == nil || strings.Count(err.Error(), "SHA-256 mismatch") != 3 || !strings.Contains(err.Error(), "no checkpoint can be resumed") {
			t.Fatalf("error %v", err)
		}
		for step := int64(1); step <= 3; step++ {
			if _, err := os.Stat(StepDir(run, step)); err != nil {
				t.Errorf("moved although nothing could be resumed: %v", err)
			}
		}
	})
	t.Run("empty", func(t *testing.T) {
		if _, _, err := PrepareResume(t.TempDir()); !errors.Is(err, ErrNoCheckpoint) {
			t.Errorf("empty run: %v", err)
		}
		if _, _, err := FindResume(t.TempDir()); !errors.Is(err, ErrNoCheckpoint) {
			t.Errorf("FindResume, empty run: %v", err)
		}
		if _, _, err := PrepareResume(filepath.Join(t.TempDir(), "none")); !errors.Is(err, ErrNoCheckpoint) {
			t.Errorf("missing run: %v", err)
		}
	})
}

// FuzzCheckpointModelConfig: config.json's model section -> the check
// against model.safetensors' header -> model construction. Whatever the
// section says, it is either refused or describes a model that New builds
// and that the file's tensors fill exactly, so accepting it never allocates
// beyond what the file holds. Seeded with the real section and hostile ones.
func FuzzCheckpointModelConfig(f *testing.F) {
	cfg := wavenet.TinyConfig(8, 1, 8) // an adacat head of 4 components
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		f.Fatal(err)
	}
	m, err := wavenet.New(cfg, be, 1)
	if err != nil {
		f.Fatal(err)
	}
	ts := FromModelTensors(m.ExportTensors())
	m.Free()
	var file bytes.Buffer
	if err := WriteSafetensors(&file, ts, nil); err != nil {
		f.Fatal(err)
	}
	hs, _, err := ReadSafetensorsHeader(bytes.NewReader(file.Bytes()), int64(file.Len()))
	if err != nil {
		f.Fatal(err)
	}
	held := 0
	for _, h := range hs {
		held += (h.End - h.Begin) / 4
	}
	good, _ := json.Marshal(cfg)
	f.Add(good)
	for _, edit := range []struct{ key, val string }{
		{"residual_channels", "1000000000"}, {"cin_pad", "100000000"}, {"layers", "2000000000"}, {"kernel_size", "1000000"},
		{"out_channels", "2000000000"}, {"residual_channels", "1024"}, {"layers", "8"}, {"upsample_scales", "[4,4]"},
		{"weight_normalization", "false"}, {"stacks", "1"}, {"dropout", "0.5"}, {"gate_channels", "31"},
	} {
		var obj map[string]json.RawMessage
		json.Unmarshal(good, &obj)
		obj[edit.key] = json.RawMessage(edit.val)
		b, _ := json.Marshal(obj)
		f.Add(b)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if !json.Valid(raw) {
			return
		}
		cfg, err := modelAgainst(raw, hs, WeightsFile)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if n := cfg.NumParams(); n != held {
			t.Fatalf("accepted %+v: %d parameters, the file holds %d", cfg, n, held)
		}
		m, err := wavenet.New(cfg, be, 0)
		if err != nil {
			t.Fatalf("accepted %+v but New failed: %v", cfg, err)
		}
		defer m.Free()
		if err := m.ImportTensors(ToModelTensors(ts)); err != nil {
			t.Fatalf("accepted %+v but the tensors do not import: %v", cfg, err)
		}
	})
}

// TestLoadCorruptHeaderIsCorruption: a byte flipped inside the weights'
// header, so that a shape no longer matches the config, is reported as the
// corrupted file it is, not as a config problem.
func TestLoadCorruptHeaderIsCorruption(t *testing.T) {
	dir, err := SaveStep(t.TempDir(), resumableCheckpoint(t, 3))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, WeightsFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte(`"shape":[16,`))
	if i < 0 {
		t.Fatal("no [16,...] shape in the header")
	}
	data[i+len(`"shape":[1`)] = '7' // [16,...] -> [17,...]
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), p+": SHA-256 mismatch") {
		t.Errorf("Load: %v, want the SHA-256 mismatch of %s", err, p)
	}
}
