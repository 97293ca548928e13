package cuda

import (
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ebitengine/purego"
)

// TestNCCLMissingMessage: without NCCL, the error lists every folder tried
// and says what to install (NCCL 2.23+, the pip wheel, WAVECAT_CUDA_LIBS).
func TestNCCLMissingMessage(t *testing.T) {
	empty := t.TempDir()
	_, err := load(libNCCL, []string{empty}, false, func(string) (uintptr, error) { return 0, errors.New("not called") })
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("got %v, want a *LoadError", err)
	}
	msg := err.Error()
	for _, want := range []string{"cannot load NCCL (libnccl.so.2, libnccl.so)", empty + ": none of the names present", "NCCL 2.23 or newer", "pip install nvidia-nccl-cu12", "WAVECAT_CUDA_LIBS"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
}

// TestNCCLOnThisMachine: NCCLVersion either finds an NCCL that binds or
// fails with the load error; never a panic. (No GPU is needed to bind.)
func TestNCCLOnThisMachine(t *testing.T) {
	t.Setenv("WAVECAT_CUDA_LIBS", t.TempDir()+":"+os.Getenv("WAVECAT_CUDA_LIBS"))
	v, err := NCCLVersion()
	if err != nil {
		msg := err.Error()
		if !strings.Contains(msg, "cannot load") {
			t.Fatalf("NCCLVersion: %v", err)
		}
		t.Logf("no NCCL here: %s", strings.SplitN(msg, "\n", 2)[0])
		return
	}
	t.Logf("NCCL %d", v)
}

// TestNCCLWheelSearched: pip's nvidia-nccl wheel folder is searched.
func TestNCCLWheelSearched(t *testing.T) {
	env := fakeEnv(map[string]string{"VIRTUAL_ENV": "/venv"}, map[string][]string{
		"/venv/lib/python3*/*-packages/nvidia/nccl/lib": {"/venv/lib/python3.12/site-packages/nvidia/nccl/lib"},
	})
	if !slices.Contains(searchDirs(env), "/venv/lib/python3.12/site-packages/nvidia/nccl/lib") {
		t.Errorf("nccl wheel folder not searched: %v", searchDirs(env))
	}
}

// TestNCCLOldLibraryRefused: a library without ncclCommInitRankScalable
// (NCCL before 2.23; here libc stands in) is refused saying what is needed.
func TestNCCLOldLibraryRefused(t *testing.T) {
	libc, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no libc.so.6: %v", err)
	}
	err = bindNCCL(&library{handle: libc, path: "libc.so.6"}, &ncclAPI{})
	if err == nil || !strings.Contains(err.Error(), "ncclCommInitRankScalable") || !strings.Contains(err.Error(), "needs NCCL 2.23 or newer") {
		t.Fatalf("got %v", err)
	}
}

// TestNCCLSignaturesRegister: purego accepts every NCCL signature (checked
// without calling), so a GPU machine does not panic on first use.
func TestNCCLSignaturesRegister(t *testing.T) {
	libc, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no libc.so.6: %v", err)
	}
	addr, _ := purego.Dlsym(libc, "abs")
	n := &ncclAPI{}
	syms := append(n.symbols(), symbol{"cuStreamQuery", &n.cuStreamQuery, false})
	for _, s := range syms {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("%s: purego rejects the Go signature: %v", s.name, r)
				}
			}()
			purego.RegisterFunc(s.fptr, addr)
		}()
	}
}
