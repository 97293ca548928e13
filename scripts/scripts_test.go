// Package scripts holds the shell scripts behind make; its tests run them
// against stand-in tools to check what they print when something fails.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// lockErr is what apt-get said when make demo printed only "could not
// install espeak-ng".
const lockErr = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)"

// sandbox copies script into a fresh tree and returns its root and a PATH
// holding only stand-ins for root's id, a failing apt-get, a dpkg that knows
// no package, and the real utilities the scripts use. apt-get records its
// arguments in ROOT/apt-args.
func sandbox(t *testing.T, script string) (root, path string) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	root = t.TempDir()
	fake := filepath.Join(root, "fakebin")
	for _, d := range []string{"scripts", "bin", "fakebin"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	write := func(p, body string) {
		if err := os.WriteFile(filepath.Join(root, p), []byte("#!"+bash+"\n"+body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join("scripts", filepath.Base(script)), string(src))
	write("fakebin/id", "echo 0\n")
	write("fakebin/dpkg", "exit 1\n")
	write("fakebin/apt-get", `echo "$*" >> `+filepath.Join(root, "apt-args")+`
[ "$1" = update ] && exit 0
echo "`+lockErr+`" >&2
exit 100
`)
	// make demo's binaries: vocode does nothing, train-wavenet stops the
	// script (set -e) right after the corpus step.
	write("bin/vocode", "exit 0\n")
	write("bin/train-wavenet", "exit 3\n")
	for _, tool := range []string{"bash", "mkdir", "rm", "dirname", "awk", "cat", "grep", "tail", "sed"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Skipf("%s not installed", tool)
		}
		if err := os.Symlink(p, filepath.Join(fake, tool)); err != nil {
			t.Fatal(err)
		}
	}
	return root, fake
}

func runScript(t *testing.T, root, path, script string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(path, "bash"), filepath.Join(root, "scripts", script))
	cmd.Dir = root
	cmd.Env = []string{"PATH=" + path, "HOME=" + root}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

// make demo names apt's reason when espeak-ng cannot be installed, and waits
// for a held dpkg lock rather than failing at once.
func TestDemoShowsWhyAptFailed(t *testing.T) {
	root, path := sandbox(t, "demo.sh")
	out, code := runScript(t, root, path, "demo.sh")
	if code != 3 {
		t.Fatalf("exit %d, want 3 (from the stand-in train-wavenet):\n%s", code, out)
	}
	if !strings.Contains(out, "could not install espeak-ng") || !strings.Contains(out, lockErr) {
		t.Fatalf("apt-get's reason is not shown:\n%s", out)
	}
	args, _ := os.ReadFile(filepath.Join(root, "apt-args"))
	if !strings.Contains(string(args), "DPkg::Lock::Timeout=") {
		t.Errorf("apt-get install does not wait for the dpkg lock: %q", args)
	}
}

// make deps-test (and CI) name apt's reason too.
func TestInstallTestDepsShowsWhyAptFailed(t *testing.T) {
	root, path := sandbox(t, "install-test-deps.sh")
	out, code := runScript(t, root, path, "install-test-deps.sh")
	if code != 0 {
		t.Fatalf("exit %d, want 0 (missing tools only make tests skip):\n%s", code, out)
	}
	if !strings.Contains(out, "could not install") || !strings.Contains(out, lockErr) {
		t.Fatalf("apt-get's reason is not shown:\n%s", out)
	}
}
