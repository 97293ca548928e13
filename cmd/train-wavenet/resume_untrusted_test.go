package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/train"
)

// twoCheckpointRun trains a tiny run to step 4 with checkpoints at steps 2
// and 4 and returns the dump and the run directory.
func twoCheckpointRun(t *testing.T) (dump, out string) {
	t.Helper()
	dump = dumpForTraining(t)
	out = filepath.Join(t.TempDir(), "run")
	if _, stderr, err := runT(t, small(dump, out, "--steps", "4", "--checkpoint-interval", "2", "--keep", "0", "--eval-interval", "0")...); err != nil {
		t.Fatal(err, stderr)
	}
	for _, s := range []int64{2, 4} {
		if _, err := os.Stat(filepath.Join(train.StepDir(out, s), train.ManifestFile)); err != nil {
			t.Fatal(err)
		}
	}
	return dump, out
}

// reseal records a file's new size and SHA-256 in its checkpoint's
// checksums.json, as anyone who edits a checkpoint can.
func reseal(t *testing.T, dir, name string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	mp := filepath.Join(dir, train.ManifestFile)
	mb, err := os.ReadFile(mp)
	if err != nil {
		t.Fatal(err)
	}
	man, err := train.ParseManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	man.Files[name] = train.FileSum{Size: int64(len(data)), SHA256: hex.EncodeToString(s[:])}
	mb, _ = json.Marshal(man)
	if err := os.WriteFile(mp, mb, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestResumeFallsBackFromDamagedNewest (issue 18 item 9): when the newest
// checkpoint is corrupt, or has lost its checksums.json, --resume continues
// from the newest good one and says which one it skipped, why, and where it
// moved it. Before, the corrupt one made --resume refuse, and the one
// without checksums.json was passed over in silence and the run then failed
// when it came to save that step again.
func TestResumeFallsBackFromDamagedNewest(t *testing.T) {
	for _, c := range []struct {
		name   string
		damage func(t *testing.T, step4 string)
		why    string
	}{
		{"corrupt weights", func(t *testing.T, step4 string) {
			p := filepath.Join(step4, train.WeightsFile)
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			data[len(data)-7] ^= 0x01
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "model.safetensors: SHA-256 mismatch with checksums.json (corrupted file)"},
		{"missing checksums.json", func(t *testing.T, step4 string) {
			if err := os.Remove(filepath.Join(step4, train.ManifestFile)); err != nil {
				t.Fatal(err)
			}
		}, "step-000000004: no checksums.json"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dump, out := twoCheckpointRun(t)
			step2, step4 := train.StepDir(out, 2), train.StepDir(out, 4)
			c.damage(t, step4)
			stdout, stderr, err := runT(t, "--data", dump, "--out", out, "--resume", "--steps", "6", "-q")
			if err != nil || !strings.Contains(stdout, "finished step 6") {
				t.Fatalf("resume: %v\nstdout %s\nstderr %s", err, stdout, stderr)
			}
			for _, want := range []string{
				"train-wavenet: --resume: skipping " + step4 + ": ",
				c.why,
				"; moved it to " + step4 + train.BadSuffix + "\n",
				"train-wavenet: --resume: resuming from " + step2 + ", the newest checkpoint that verifies\n",
			} {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr)
				}
			}
			// The run went on from step 2 and saved step 4 and 6 afresh; the
			// damaged directory is kept for inspection.
			for _, s := range []int64{4, 6} {
				ck, err := train.Load(train.StepDir(out, s))
				if err != nil || ck.Config.Step != s {
					t.Errorf("step %d after the resume: %v", s, err)
				}
			}
			if _, err := os.Stat(step4 + train.BadSuffix); err != nil {
				t.Errorf("the damaged checkpoint was not kept: %v", err)
			}
			// Nothing more to skip on the next resume.
			_, stderr, err = runT(t, "--data", dump, "--out", out, "--resume", "--steps", "7", "-q")
			if err != nil || strings.Contains(stderr, "skipping") {
				t.Errorf("second resume: %v\n%s", err, stderr)
			}
		})
	}
}

// TestResumeRefusesHostileConfig (issue 18 items 7 and 8): a checkpoint
// whose config.json was edited and its checksums.json resealed is refused
// by --resume with the file and the problem named, before a model is built
// for it (a head of 1e9 components used to crash the process); with an
// older good checkpoint the run falls back to it instead.
func TestResumeRefusesHostileConfig(t *testing.T) {
	dump, out := twoCheckpointRun(t)
	edit := func(dir, old, new string) {
		p := filepath.Join(dir, train.ConfigFile)
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(data, []byte(old)) {
			t.Fatalf("%s lacks %q", p, old)
		}
		if err := os.WriteFile(p, bytes.Replace(data, []byte(old), []byte(new), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		reseal(t, dir, train.ConfigFile)
	}
	step2, step4 := train.StepDir(out, 2), train.StepDir(out, 4)
	edit(step4, `"head": "adacat --components 15`, `"head": "adacat --components 1000000000`)
	edit(step2, `"gain": `, `"gain": -`)
	_, _, err := runT(t, "--data", dump, "--out", out, "--resume", "--steps", "6", "-q")
	for _, want := range []string{
		"no checkpoint can be resumed",
		filepath.Join(step4, train.ConfigFile) + `: head "adacat --components 1000000000 --lambda 0.0001": outputs: adacat: --components 1000000000 exceeds the limit 32768`,
		filepath.Join(step2, train.ConfigFile) + ": mel: gain -",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resume error %v\nwant it to contain %q", err, want)
		}
	}
	if err != nil && strings.Contains(err.Error(), "\n") {
		t.Errorf("multi-line error %q", err)
	}
	// Restore step 2: the run falls back to it, naming the hostile step 4.
	edit(step2, `"gain": -`, `"gain": `)
	stdout, stderr, err := runT(t, "--data", dump, "--out", out, "--resume", "--steps", "6", "-q")
	if err != nil || !strings.Contains(stdout, "finished step 6") || !strings.Contains(stderr, "skipping "+step4+": "+filepath.Join(step4, train.ConfigFile)+": head") {
		t.Fatalf("fallback: %v\n%s\n%s", err, stdout, stderr)
	}
}
