package outdir

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPrepareCreatesAndUndoRemovesOnlyWhatItMade(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "b", "c")
	d, err := Prepare(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("%s not created: %v", dir, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the write test left %v", ents)
	}
	if !d.Created(dir) || d.Created(root) {
		t.Errorf("Created(%s) = %v, Created(%s) = %v", dir, d.Created(dir), root, d.Created(root))
	}
	d.Undo()
	if _, err := os.Stat(filepath.Join(root, "a")); !os.IsNotExist(err) {
		t.Errorf("Undo left %s/a (%v)", root, err)
	}
	if _, err := os.Stat(root); err != nil {
		t.Errorf("Undo removed the existing parent: %v", err)
	}

	// A directory that received a file is kept, and so are its parents.
	d, err = Prepare(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "a", "b", "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d.Undo()
	if _, err := os.Stat(filepath.Join(root, "a", "b", "keep")); err != nil {
		t.Errorf("Undo removed a directory holding a file: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Undo kept the empty %s", dir)
	}
	(*Dirs)(nil).Undo()
}

func TestPrepareErrorsNameThePathOnce(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Prepare(filepath.Join(file, "sub"))
	if err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("under a file: %v", err)
	}
	if n := strings.Count(err.Error(), filepath.Join(file, "sub")); n != 1 {
		t.Errorf("%q names the path %d times", err, n)
	}
	if os.Geteuid() != 0 {
		ro := filepath.Join(root, "ro")
		os.Mkdir(ro, 0o555)
		_, err = Prepare(filepath.Join(ro, "x"))
		if err == nil || strings.Count(err.Error(), ro) > 2 || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("read-only parent: %v", err)
		}
		if _, serr := os.Stat(filepath.Join(ro, "x")); !os.IsNotExist(serr) {
			t.Errorf("left %s/x", ro)
		}
	}
}
