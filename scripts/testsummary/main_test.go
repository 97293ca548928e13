package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// canned is go test -json (go 1.26) on a module with a package that does not
// build and one with a passing, a skipped and a failing test.
const canned = `{"ImportPath":"x/bad [x/bad.test]","Action":"build-output","Output":"# x/bad [x/bad.test]\n"}
{"ImportPath":"x/bad [x/bad.test]","Action":"build-output","Output":"bad/b.go:1:25: undefined: x\n"}
{"ImportPath":"x/bad [x/bad.test]","Action":"build-fail"}
{"Action":"start","Package":"x"}
{"Action":"start","Package":"x/bad"}
{"Action":"output","Package":"x/bad","Output":"FAIL\tx/bad [build failed]\n"}
{"Action":"fail","Package":"x/bad","Elapsed":0,"FailedBuild":"x/bad [x/bad.test]"}
{"Action":"run","Package":"x","Test":"TestPass"}
{"Action":"output","Package":"x","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"output","Package":"x","Test":"TestPass","Output":"    x_test.go:3: passing chatter\n"}
{"Action":"output","Package":"x","Test":"TestPass","Output":"--- PASS: TestPass (0.00s)\n"}
{"Action":"pass","Package":"x","Test":"TestPass","Elapsed":0}
{"Action":"run","Package":"x","Test":"TestSkip"}
{"Action":"output","Package":"x","Test":"TestSkip","Output":"=== RUN   TestSkip\n"}
{"Action":"output","Package":"x","Test":"TestSkip","Output":"    x_test.go:4: no espeak-ng on PATH\n"}
{"Action":"output","Package":"x","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}
{"Action":"skip","Package":"x","Test":"TestSkip","Elapsed":0}
{"Action":"run","Package":"x","Test":"TestSub"}
{"Action":"output","Package":"x","Test":"TestSub","Output":"=== RUN   TestSub\n"}
{"Action":"run","Package":"x","Test":"TestSub/a"}
{"Action":"output","Package":"x","Test":"TestSub/a","Output":"=== RUN   TestSub/a\n"}
{"Action":"output","Package":"x","Test":"TestSub/a","Output":"    x_test.go:5: sub skip\n"}
{"Action":"output","Package":"x","Test":"TestSub/a","Output":"        second line\n"}
{"Action":"output","Package":"x","Test":"TestSub/a","Output":"--- SKIP: TestSub/a (0.00s)\n"}
{"Action":"skip","Package":"x","Test":"TestSub/a","Elapsed":0}
{"Action":"run","Package":"x","Test":"TestSub/b"}
{"Action":"output","Package":"x","Test":"TestSub/b","Output":"=== RUN   TestSub/b\n"}
{"Action":"output","Package":"x","Test":"TestSub/b","Output":"    x_test.go:5: boom\n"}
{"Action":"output","Package":"x","Test":"TestSub/b","Output":"--- FAIL: TestSub/b (0.00s)\n"}
{"Action":"fail","Package":"x","Test":"TestSub/b","Elapsed":0}
{"Action":"output","Package":"x","Test":"TestSub","Output":"--- FAIL: TestSub (0.00s)\n"}
{"Action":"fail","Package":"x","Test":"TestSub","Elapsed":0}
{"Action":"output","Package":"x","Output":"FAIL\n"}
{"Action":"output","Package":"x","Output":"FAIL\tx\t0.017s\n"}
{"Action":"fail","Package":"x","Elapsed":0.019}
`

func run(in string) (string, bool) {
	var b strings.Builder
	ok := summarise(strings.NewReader(in), &b)
	return b.String(), ok
}

func TestFailuresPrintedSkipsListedAndResultFalse(t *testing.T) {
	out, ok := run(canned)
	if ok {
		t.Fatal("a failed build and a failed test reported as passing")
	}
	want := `# x/bad [x/bad.test]
bad/b.go:1:25: undefined: x
FAIL	x/bad [build failed]
    x_test.go:5: boom
--- FAIL: TestSub/b (0.00s)
--- FAIL: TestSub (0.00s)
FAIL
FAIL	x	0.017s

2 skipped:
SKIP x TestSkip: x_test.go:4: no espeak-ng on PATH
SKIP x TestSub/a: x_test.go:5: sub skip
	second line

2 failed:
FAIL x TestSub/b
FAIL x TestSub
`
	if out != want {
		t.Fatalf("got\n%s\nwant\n%s", out, want)
	}
}

func TestPassingRunPrintsOkLinesAndSkips(t *testing.T) {
	in := `{"Action":"start","Package":"x"}
{"Action":"run","Package":"x","Test":"TestSkip"}
{"Action":"output","Package":"x","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}
{"Action":"skip","Package":"x","Test":"TestSkip","Elapsed":0}
{"Action":"output","Package":"x","Output":"package chatter\n"}
{"Action":"output","Package":"x","Output":"PASS\n"}
{"Action":"output","Package":"x","Output":"ok  \tx\t0.014s\n"}
{"Action":"pass","Package":"x","Elapsed":0.014}
{"Action":"start","Package":"x/empty"}
{"Action":"output","Package":"x/empty","Output":"?   \tx/empty\t[no test files]\n"}
{"Action":"skip","Package":"x/empty","Elapsed":0}
`
	out, ok := run(in)
	want := "ok  \tx\t0.014s\n?   \tx/empty\t[no test files]\n\n1 skipped:\nSKIP x TestSkip: (no message)\n"
	if !ok || out != want {
		t.Fatalf("ok %v, got\n%q\nwant\n%q", ok, out, want)
	}
}

// A long skip message is cut to its first lines.
func TestLongSkipMessageCut(t *testing.T) {
	in := `{"Action":"output","Package":"x","Test":"TestGPU","Output":"    gpu_test.go:9: no GPU:\n\tline 2\n\tline 3\n\tline 4\n\tline 5\n"}
{"Action":"skip","Package":"x","Test":"TestGPU"}
{"Action":"pass","Package":"x"}
`
	out, ok := run(in)
	want := "\n1 skipped:\nSKIP x TestGPU: gpu_test.go:9: no GPU:\n\tline 2\n\tline 3\n\t... 2 more lines (go test -v shows them)\n"
	if !ok || out != want {
		t.Fatalf("ok %v, got\n%q\nwant\n%q", ok, out, want)
	}
}

// A stream cut before a package's result (go test killed) is a failure.
func TestTruncatedStreamFails(t *testing.T) {
	in := "{\"Action\":\"start\",\"Package\":\"x\"}\n{\"Action\":\"output\",\"Package\":\"x\",\"Test\":\"TestA\",\"Output\":\"=== RUN   TestA\\n\"}\n"
	out, ok := run(in)
	if ok || !strings.Contains(out, "FAIL\tx\t(no result)") {
		t.Fatalf("ok %v, out %q", ok, out)
	}
}

// A line that is not JSON (a panic of the go command) is passed on.
func TestNonJSONLinePassedOn(t *testing.T) {
	out, ok := run("go: warning: something\n")
	if !ok || out != "go: warning: something\n" {
		t.Fatalf("ok %v, out %q", ok, out)
	}
}

// make test runs scripts/test.sh; through it a failing test fails the run
// and a skipped test's message is printed.
func TestMakeTestScriptListsSkipsAndPropagatesFailure(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not installed")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mk), "\ntest:\n\tGO=$(GO) bash scripts/test.sh\n") {
		t.Fatal("make test does not run scripts/test.sh")
	}
	for _, fail := range []bool{false, true} {
		cmd := exec.Command("bash", "scripts/test.sh", "./scripts/testsummary/testdata/fixture")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "TESTSUMMARY_FIXTURE_FAIL=")
		if fail {
			cmd.Env = append(cmd.Env, "TESTSUMMARY_FIXTURE_FAIL=1")
		}
		out, err := cmd.CombinedOutput()
		if (err != nil) != fail {
			t.Fatalf("fail=%v: err %v\n%s", fail, err, out)
		}
		skip := "SKIP github.com/wavecat/wavecat/scripts/testsummary/testdata/fixture TestNeedsTool: fixture_test.go:14: fixture-tool is not installed: install it to run this test"
		if !strings.Contains(string(out), skip) {
			t.Fatalf("fail=%v: no skip message in\n%s", fail, out)
		}
		if fail != strings.Contains(string(out), "failing as asked") {
			t.Fatalf("fail=%v: output\n%s", fail, out)
		}
	}
}
