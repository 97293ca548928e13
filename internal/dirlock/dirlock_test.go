package dirlock

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSecondHolderRefusedWithHolderNamed(t *testing.T) {
	dir := t.TempDir()
	a, err := Acquire(dir, "train-wavenet --out R")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(dir, "another run")
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("second Acquire: %v, want ErrBusy", err)
	}
	msg := err.Error()
	for _, want := range []string{dir, "train-wavenet --out R", "pid " + strconv.Itoa(os.Getpid())} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	b, err := Acquire(dir, "after release")
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	b.Release()
	b.Release() // twice is harmless
}

// A lock held by another process (here a child that holds it while it
// sleeps) is refused too; when that process dies the lock is free again.
func TestLockAcrossProcessesAndFreedOnKill(t *testing.T) {
	if os.Getenv("DIRLOCK_CHILD") != "" {
		if _, err := Acquire(os.Getenv("DIRLOCK_CHILD"), "child holder"); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("locked\n")
		select {} // hold until killed
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestLockAcrossProcessesAndFreedOnKill$")
	cmd.Env = append(os.Environ(), "DIRLOCK_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil || string(buf) != "locked\n" {
		cmd.Process.Kill()
		t.Fatalf("child did not lock: %q %v", buf, err)
	}
	if _, err := Acquire(dir, "parent"); !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "child holder") {
		t.Errorf("Acquire while the child holds it: %v", err)
	}
	cmd.Process.Kill() // as kill -9
	cmd.Wait()
	// The kernel drops the lock when the dead process's files are closed;
	// allow a loaded machine a moment for that.
	var l *Lock
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if l, err = Acquire(dir, "parent"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("lock not freed by the holder's death (state %v): %v", cmd.ProcessState, err)
	}
	l.Release()
}

func TestCleanStale(t *testing.T) {
	dir := t.TempDir()
	stale := []string{".latest.tmp-123", ".loss.png.tmp-9", ".LJ001-0001-wave.npy.tmp-77"}
	keep := []string{"latest", "loss.png", "metrics.jsonl", "LJ001-0001-wave.npy", File, ".hidden"}
	for _, n := range append(append([]string{}, stale...), keep...) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, ".step-000000500.tmp-42", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	removed, err := CleanStale(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != len(stale)+1 {
		t.Errorf("removed %v, want the %d temporaries", removed, len(stale)+1)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if strings.Join(left, ",") != ".hidden,.wavecat.lock,LJ001-0001-wave.npy,latest,loss.png,metrics.jsonl" {
		t.Errorf("left %v", left)
	}
}
