package melspec

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"codeberg.org/sbinet/npyio"
)

// Reference fixtures are written by testdata/reference/make_reference.py, an
// independent numpy/scipy re-implementation of librosa's semantics.
const refDir = "../testdata/reference"

const pythonPath = "/usr/bin/python3"

type refManifest struct {
	Config  Config   `json:"config"`
	Signals []string `json:"signals"`
}

func readNpy[T float32 | float64 | int64](t *testing.T, path string) ([]T, []int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := npyio.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.Header.Descr.Fortran {
		t.Fatalf("%s: Fortran order not expected", path)
	}
	var v []T
	if err := r.Read(&v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v, r.Header.Descr.Shape
}

// checkReferenceDir compares every signal listed in dir/reference.json.
func checkReferenceDir(t *testing.T, dir string) {
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m refManifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("%s/reference.json: %v", dir, err)
	}
	cfg := m.Config
	e, err := NewExtractor(cfg)
	if err != nil {
		t.Fatal(err)
	}

	fb, shape := readNpy[float32](t, filepath.Join(dir, "filterbank.npy"))
	if len(shape) != 2 || shape[0] != cfg.NMels || shape[1] != cfg.Bins() {
		t.Fatalf("filterbank.npy shape %v, want [%d %d]", shape, cfg.NMels, cfg.Bins())
	}
	var fbErr float64
	for i, v := range e.Filterbank() {
		fbErr = math.Max(fbErr, math.Abs(float64(v-fb[i])))
	}
	t.Logf("%s: filterbank max abs error %.3g", dir, fbErr)
	if fbErr > 1e-6 {
		t.Errorf("filterbank max abs error %g > 1e-6", fbErr)
	}

	for _, name := range m.Signals {
		p := func(s string) string { return filepath.Join(dir, name+"_"+s+".npy") }
		y, _ := readNpy[float32](t, p("input"))

		want, shape := readNpy[float32](t, p("logmel"))
		got, frames := e.Compute(y)
		if len(shape) != 2 || shape[0] != frames || shape[1] != cfg.NMels {
			t.Errorf("%s: reference log-mel shape %v, Go gives %d x %d", name, shape, frames, cfg.NMels)
			continue
		}
		var melErr float64
		worst := 0
		for i := range got {
			if d := math.Abs(float64(got[i] - want[i])); d > melErr {
				melErr, worst = d, i
			}
		}
		t.Logf("%s: %d samples, %d frames, log10-mel max abs error %.3g", name, len(y), frames, melErr)
		if melErr > 1e-4 {
			t.Errorf("%s: log10-mel max abs error %g > 1e-4 at frame %d mel %d (Go %g, reference %g)",
				name, melErr, worst/cfg.NMels, worst%cfg.NMels, got[worst], want[worst])
		}

		for _, tc := range []struct {
			file string
			pad  PadMode
		}{{"trim", PadConstant}, {"trim_reflect", PadReflect}} {
			idx, _ := readNpy[int64](t, p(tc.file))
			tcfg := DefaultTrimConfig()
			tcfg.Pad = tc.pad
			kept, s, en, err := Trim(y, tcfg)
			if err != nil {
				t.Fatal(err)
			}
			if int64(s) != idx[0] || int64(en) != idx[1] || len(kept) != en-s {
				t.Errorf("%s: %s gives [%d, %d), reference [%d, %d)", name, tc.file, s, en, idx[0], idx[1])
			}
		}

		hpWant, _ := readNpy[float32](t, p("highpass"))
		hp, err := HighPass(y, float64(cfg.SampleRate))
		if err != nil {
			t.Fatal(err)
		}
		var hpErr float64
		for i := range hp {
			hpErr = math.Max(hpErr, math.Abs(float64(hp[i]-hpWant[i])))
		}
		t.Logf("%s: high-pass max abs error %.3g", name, hpErr)
		if len(hp) != len(hpWant) || hpErr > 1e-5 {
			t.Errorf("%s: high-pass length %d (want %d), max abs error %g > 1e-5", name, len(hp), len(hpWant), hpErr)
		}
	}
}

func TestReferenceFixtures(t *testing.T) {
	checkReferenceDir(t, refDir)
}

// TestReferenceLive reruns the generator on fresh random signals so the
// comparison is not only against committed files.
func TestReferenceLive(t *testing.T) {
	if err := exec.Command(pythonPath, "-c", "import numpy, scipy").Run(); err != nil {
		t.Skipf("%s with numpy and scipy not available (%v): live reference check skipped", pythonPath, err)
	}
	seed := time.Now().UnixNano() % 1_000_000
	configs := []string{
		"",
		`{"sample_rate": 16000, "n_fft": 512, "hop": 160, "win_length": 400, "n_mels": 40, "fmin": 0, "fmax": 8000}`,
	}
	if testing.Short() {
		configs = configs[:1]
	}
	for i, cfg := range configs {
		t.Run(fmt.Sprintf("config%d", i), func(t *testing.T) {
			dir := t.TempDir()
			args := []string{filepath.Join(refDir, "make_reference.py"), "--out", dir, "--random", fmt.Sprint(seed + int64(i))}
			if cfg != "" {
				args = append(args, "--config", cfg)
			}
			out, err := exec.Command(pythonPath, args...).CombinedOutput()
			if err != nil {
				t.Fatalf("make_reference.py (seed %d): %v\n%s", seed+int64(i), err, out)
			}
			t.Logf("seed %d", seed+int64(i))
			checkReferenceDir(t, dir)
		})
	}
}
