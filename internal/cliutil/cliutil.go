// Package cliutil holds what every wavecat command shares: progress bars with
// one look (redrawn on a terminal, plain lines in a log), and a bounded
// worker pool over input files that collects every failure instead of
// stopping at the first (a user fixing a corpus wants the whole list).
package cliutil

import (
	"errors"
	"fmt"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// ForEach runs fn(i) for i in [0, n) on up to workers goroutines (GOMAXPROCS
// when workers <= 0), calls done after each item, and returns every error
// joined in index order (nil when all succeeded).
func ForEach(n, workers int, fn func(i int) error, done func()) error {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	if workers > n {
		workers = n
	}
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				errs[i] = fn(i)
				if done != nil {
					done()
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// commit is set by make build (-ldflags -X), for environments that turn
// off Go's own version-control stamping (GOFLAGS=-buildvcs=false).
var commit string

// Version describes the binary for --version: the commit it was built from
// and when (Go records them when it builds inside a git checkout; make build
// passes the commit too), whether the tree had changes, and the Go version.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "wavecat (no build information)"
	}
	var rev, at, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
			if len(rev) > 12 {
				rev = rev[:12]
			}
		case "vcs.time":
			at = " " + s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = " with local changes"
			}
		}
	}
	if rev == "" {
		rev = commit
	}
	if rev == "" {
		rev = bi.Main.Version
	}
	return fmt.Sprintf("wavecat %s%s%s, %s", rev, at, dirty, bi.GoVersion)
}
