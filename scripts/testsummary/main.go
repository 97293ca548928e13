// Command testsummary reads `go test -json` on stdin and prints what plain
// `go test` prints (a line per package; the output of failed tests), then
// every skipped test with its message: plain `go test` hides skips, and the
// README promises that a test needing a missing tool says so. It exits 1 when
// a test, a package or a build failed, so `make test` still fails.
//
//	go test -count=1 -json ./... | go run ./scripts/testsummary
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json); build output comes as
// ImportPath events.
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string
}

func main() {
	if !summarise(os.Stdin, os.Stdout) {
		os.Exit(1)
	}
}

// pkgState buffers a package's output until its result, as go test does when
// it runs several packages at once.
type pkgState struct {
	out   []string            // package-level lines and failed tests' output
	tests map[string][]string // output of tests still running
	ok    bool                // a pass or skip result was seen
	done  bool
}

// skipped is a skipped test and what it logged.
type skipped struct {
	pkg, test string
	msg       []string
}

// maxSkipLines bounds each skip message in the summary: the reason is in the
// first lines, and a dozen skips with a ten-line search log each would bury
// the package results.
const maxSkipLines = 4

// summarise copies the results from r to w and reports whether everything
// passed.
func summarise(r io.Reader, w io.Writer) bool {
	pkgs := map[string]*pkgState{}
	var order []string
	state := func(p string) *pkgState {
		s := pkgs[p]
		if s == nil {
			s = &pkgState{tests: map[string][]string{}}
			pkgs[p] = s
			order = append(order, p)
		}
		return s
	}
	var skips []skipped
	var failed []string
	passed := true
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			fmt.Fprintf(w, "%s\n", line) // not from test2json: pass it on
			continue
		}
		switch {
		case e.Package == "" && e.Action == "build-output":
			io.WriteString(w, e.Output)
		case e.Package == "" && e.Action == "build-fail":
			passed = false
		case e.Package == "":
		case e.Test != "":
			s := state(e.Package)
			switch e.Action {
			case "output":
				s.tests[e.Test] = append(s.tests[e.Test], e.Output)
			case "fail":
				for _, l := range s.tests[e.Test] {
					if !strings.HasPrefix(l, "=== ") { // RUN, PAUSE, CONT, NAME
						s.out = append(s.out, l)
					}
				}
				failed = append(failed, e.Package+" "+e.Test)
				delete(s.tests, e.Test)
			case "skip":
				skips = append(skips, skipped{e.Package, e.Test, skipMessage(s.tests[e.Test])})
				delete(s.tests, e.Test)
			case "pass":
				delete(s.tests, e.Test)
			}
		default:
			s := state(e.Package)
			switch e.Action {
			case "output":
				s.out = append(s.out, e.Output)
			case "pass", "skip":
				s.ok, s.done = true, true
				flush(w, s)
			case "fail":
				s.done = true
				flush(w, s)
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testsummary: reading go test -json: %v\n", err)
		passed = false
	}
	for _, p := range order {
		if s := pkgs[p]; !s.done {
			// the stream stopped before this package's result (go test killed)
			flush(w, s)
			fmt.Fprintf(w, "FAIL\t%s\t(no result)\n", p)
		}
		if !pkgs[p].ok {
			passed = false
		}
	}
	if len(skips) > 0 {
		fmt.Fprintf(w, "\n%d skipped:\n", len(skips))
		for _, s := range skips {
			msg := s.msg
			if len(msg) > maxSkipLines {
				msg = append(msg[:maxSkipLines-1:maxSkipLines-1], fmt.Sprintf("... %d more lines (go test -v shows them)", len(s.msg)-maxSkipLines+1))
			}
			fmt.Fprintf(w, "SKIP %s %s: %s\n", s.pkg, s.test, strings.Join(msg, "\n\t"))
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "\n%d failed:\n", len(failed))
		for _, f := range failed {
			fmt.Fprintf(w, "FAIL %s\n", f)
		}
	}
	return passed
}

// flush prints a package's buffered output: all of it when it failed, else
// only the result line ("ok  pkg 1.2s", "?  pkg [no test files]").
func flush(w io.Writer, s *pkgState) {
	for _, l := range s.out {
		if !s.ok || strings.HasPrefix(l, "ok  \t") || strings.HasPrefix(l, "?   \t") {
			io.WriteString(w, l)
		}
	}
	s.out = nil
}

// skipMessage is what a skipped test logged, without the framing lines.
func skipMessage(out []string) []string {
	var msg []string
	for _, o := range out {
		for l := range strings.SplitSeq(strings.TrimRight(o, "\n"), "\n") {
			t := strings.TrimSpace(l)
			if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- SKIP: ") {
				continue
			}
			msg = append(msg, t)
		}
	}
	if len(msg) == 0 {
		msg = []string{"(no message)"}
	}
	return msg
}
