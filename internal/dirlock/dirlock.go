// Package dirlock gives a process exclusive use of a directory it writes
// (a training run, a preprocessing dump) for as long as it lives. Two writers
// in one directory delete each other's temporaries and interleave their
// checkpoints and metrics; an OS file lock makes the second one stop at once
// with a message naming the first. The kernel drops the lock when the holder
// exits, even by kill -9, so a lock is never stale.
package dirlock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// File is the lock file's name inside a locked directory. It stays after the
// holder exits: only the OS lock on it matters, and its content says who
// holds (or last held) the directory.
const File = ".wavecat.lock"

// ErrBusy is wrapped by the error Acquire returns when another process holds
// the directory.
var ErrBusy = errors.New("in use by another process")

// Lock is a held directory lock.
type Lock struct {
	f   *os.File
	dir string
}

// Acquire locks dir (which must exist) for this process; what says what the
// holder is doing, for the message a second process gets. It never waits.
func Acquire(dir, what string) (*Lock, error) {
	path := filepath.Join(dir, File)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: lock: %w", dir, err)
	}
	if err := tryLock(f); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, errWouldBlock) {
			h := strings.TrimSpace(string(holder))
			if h == "" {
				h = "a process that has not said which"
			}
			return nil, fmt.Errorf("%s: %w (%s); wait for it to finish or stop it", dir, ErrBusy, h)
		}
		return nil, fmt.Errorf("%s: lock: %w", dir, err)
	}
	host, _ := os.Hostname()
	info := fmt.Sprintf("held by pid %d on %s since %s: %s\n", os.Getpid(), host,
		time.Now().UTC().Format(time.RFC3339), what)
	// The holder note is advisory: failing to write it does not matter.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(info), 0)
	}
	return &Lock{f: f, dir: dir}, nil
}

// Release drops the lock. Releasing a nil or released Lock does nothing.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := unlock(l.f)
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}

// CleanStale removes the temporaries that atomic writers in dir leave when
// they are killed (".<name>.tmp-*" files and checkpoint directories) and
// returns their names. Call it only with dir's lock held: without the lock
// they may belong to a live writer.
func CleanStale(dir string) ([]string, error) {
	matches, err := filepath.Glob(filepath.Join(dir, ".*.tmp-*"))
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, m := range matches {
		if err := os.RemoveAll(m); err != nil {
			return removed, fmt.Errorf("%s: removing a stale temporary: %w", m, err)
		}
		removed = append(removed, filepath.Base(m))
	}
	return removed, nil
}
