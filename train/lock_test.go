package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/internal/dirlock"
)

// A second run in the same directory stops before touching it, naming the
// first; once the first is done the directory is free again.
func TestRunDirectoryLocked(t *testing.T) {
	cfg := tinyRun(t, "mulaw", 2)
	first, err := newTrainer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(context.Background(), cfg)
	if !errors.Is(err, dirlock.ErrBusy) || !strings.Contains(err.Error(), "pid") {
		t.Errorf("second run in %s: %v, want a lock error naming the holder", cfg.Out, err)
	}
	if _, lerr := Latest(cfg.Out); lerr == nil {
		t.Errorf("the refused run wrote a checkpoint")
	}
	first.free()
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatalf("run after the first released the directory: %v", err)
	}
}

// Temporaries a killed run left (checkpoint, latest pointer, plot) are
// removed when the next run takes the directory.
func TestRunRemovesStaleTemporaries(t *testing.T) {
	cfg := tinyRun(t, "mulaw", 2)
	if err := os.MkdirAll(filepath.Join(cfg.Out, ".step-000000001.tmp-123", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{".latest.tmp-5", ".loss.png.tmp-6", ".metrics.jsonl.tmp-7"} {
		if err := os.WriteFile(filepath.Join(cfg.Out, n), []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Run(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(cfg.Out, ".*.tmp-*"))
	if len(left) != 0 {
		t.Errorf("stale temporaries left: %v", left)
	}
}

// A run that fails before its first checkpoint removes the run directory it
// created (and the parents it created), but never one that existed.
func TestFailedRunLeavesNoEmptyFolder(t *testing.T) {
	cfg := tinyRun(t, "mulaw", 2)
	cfg.Out = filepath.Join(t.TempDir(), "new", "run")
	cfg.MaxTimeSteps = 1000 // not a multiple of the hop: refused after the directory exists
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "multiple of the dump's hop") {
		t.Fatalf("want the hop error, got %v", err)
	}
	if _, err := os.Stat(filepath.Dir(cfg.Out)); !os.IsNotExist(err) {
		t.Errorf("the failed run left %s (%v)", filepath.Dir(cfg.Out), err)
	}

	existing := t.TempDir()
	cfg.Out = existing
	if _, err := Run(context.Background(), cfg); err == nil {
		t.Fatal("accepted")
	}
	if _, err := os.Stat(existing); err != nil {
		t.Errorf("a failed run removed the directory it was given: %v", err)
	}
}
