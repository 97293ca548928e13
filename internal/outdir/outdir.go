// Package outdir prepares the directory a command writes into: it creates
// what is missing, proves the directory writable before any work (so an
// unwritable -o fails in a second, not after minutes of synthesis), and on
// failure removes the directories it created, so a failed command leaves no
// empty folders behind.
package outdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Dirs records the directories Prepare created.
type Dirs struct {
	created []string // outermost first
}

// Prepare makes dir (and any missing parents) and checks that a file can be
// created in it. Errors name dir once, with the reason.
func Prepare(dir string) (*Dirs, error) {
	if dir == "" {
		dir = "."
	}
	d := &Dirs{}
	var missing []string
	for p := filepath.Clean(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err == nil {
			if !fi.IsDir() {
				if p == filepath.Clean(dir) {
					return nil, fmt.Errorf("%s: not a directory", dir)
				}
				return nil, fmt.Errorf("%s: %s is not a directory", dir, p)
			}
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %v", dir, reason(err))
		}
		missing = append(missing, p)
		if parent := filepath.Dir(p); parent == p {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			d.Undo()
			return nil, fmt.Errorf("%s: cannot create %s: %v", dir, missing[i], reason(err))
		}
		d.created = append(d.created, missing[i])
	}
	f, err := os.CreateTemp(dir, ".write-test-*")
	if err != nil {
		d.Undo()
		return nil, fmt.Errorf("%s: cannot write there: %v", dir, reason(err))
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return d, nil
}

// Created reports whether Prepare made dir itself (it did not exist).
func (d *Dirs) Created(dir string) bool {
	return d != nil && len(d.created) > 0 && d.created[len(d.created)-1] == filepath.Clean(dir)
}

// Undo removes the directories Prepare created, innermost first, as long as
// they are empty; a directory that received files is kept. Safe on nil.
func (d *Dirs) Undo() {
	if d == nil {
		return
	}
	for i := len(d.created) - 1; i >= 0; i-- {
		if os.Remove(d.created[i]) != nil {
			return
		}
	}
	d.created = nil
}

// reason strips the path from an *fs.PathError, which the caller names
// already.
func reason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
