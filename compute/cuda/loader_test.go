package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ebitengine/purego"
)

// fakeEnv is a searchEnv over a map and a fixed glob table.
func fakeEnv(vars map[string]string, globs map[string][]string) searchEnv {
	return searchEnv{
		getenv: func(k string) string { return vars[k] },
		glob:   func(p string) ([]string, error) { return slices.Clone(globs[p]), nil },
	}
}

func indexOf(t *testing.T, dirs []string, d string) int {
	t.Helper()
	i := slices.Index(dirs, d)
	if i < 0 {
		t.Fatalf("%s not searched; searched %v", d, dirs)
	}
	return i
}

// TestSearchOrder: the documented order, versioned toolkits newest first
// (numerically: 12.10 after 12.9), duplicates dropped.
func TestSearchOrder(t *testing.T) {
	env := fakeEnv(map[string]string{
		"WAVECAT_CUDA_LIBS": "/w1::/w2",
		"CUDA_HOME":         "/ch",
		"CUDA_PATH":         "/cp",
		"LD_LIBRARY_PATH":   "/ld1:/w1",
		"HOME":              "/home/u",
		"VIRTUAL_ENV":       "/venv",
	}, map[string][]string{
		"/usr/local/cuda-*/lib64":                         {"/usr/local/cuda-11.8/lib64", "/usr/local/cuda-12.10/lib64", "/usr/local/cuda-12.9/lib64"},
		"/venv/lib/python3*/*-packages/nvidia/cublas/lib": {"/venv/lib/python3.11/site-packages/nvidia/cublas/lib"},
		"/home/u/.local/lib/python3*/*-packages/nvidia/cuda_nvrtc/lib": {
			"/home/u/.local/lib/python3.9/site-packages/nvidia/cuda_nvrtc/lib",
			"/home/u/.local/lib/python3.12/site-packages/nvidia/cuda_nvrtc/lib",
		},
	})
	dirs := searchDirs(env)
	if !slices.Equal(dirs[:7], []string{"/w1", "/w2", "/ch/lib64", "/ch/lib", "/cp/lib64", "/cp/lib", "/ld1"}) {
		t.Errorf("first folders = %v", dirs[:7])
	}
	if n := strings.Count(strings.Join(dirs, "\n")+"\n", "/w1\n"); n != 1 {
		t.Errorf("/w1 listed %d times", n)
	}
	order := []string{
		"/ld1", "/usr/local/cuda/lib64",
		"/usr/local/cuda-12.10/lib64", "/usr/local/cuda-12.9/lib64", "/usr/local/cuda-11.8/lib64",
		multiarchDir(), filepath.Join(multiarchDir(), "nvidia", "current"), "/usr/lib64", "/usr/lib/wsl/lib",
		"/venv/lib/python3.11/site-packages/nvidia/cublas/lib",
		"/home/u/.local/lib/python3.12/site-packages/nvidia/cuda_nvrtc/lib",
		"/home/u/.local/lib/python3.9/site-packages/nvidia/cuda_nvrtc/lib",
	}
	for i := 1; i < len(order); i++ {
		if indexOf(t, dirs, order[i-1]) > indexOf(t, dirs, order[i]) {
			t.Errorf("%s searched after %s; want before", order[i-1], order[i])
		}
	}
}

// TestLoadErrorListsEverything: $WAVECAT_CUDA_LIBS pointing at an empty
// folder, a folder holding a file that is not a library, and a missing
// folder: the error names each with its outcome and says what to install.
func TestLoadErrorListsEverything(t *testing.T) {
	empty := t.TempDir()
	bogus := t.TempDir()
	if err := os.WriteFile(filepath.Join(bogus, "libcuda.so.1"), []byte("not an ELF file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope")
	notDir := filepath.Join(bogus, "libcuda.so.1")
	t.Setenv("WAVECAT_CUDA_LIBS", strings.Join([]string{empty, bogus, missing, notDir}, ":"))
	dirs := searchDirs(osSearchEnv)
	_, err := load(libCUDA, dirs[:4], false, systemDlopen)
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("load from bad folders: err = %v, want a *LoadError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"the CUDA driver API", "libcuda.so.1",
		empty + ": none of the names present",
		filepath.Join(bogus, "libcuda.so.1") + ": ", // with dlopen's reason
		missing + ": folder missing",
		notDir + ": not a folder",
		"install the NVIDIA driver",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if len(le.Tried) != 4 {
		t.Errorf("Tried has %d lines, want 4:\n%s", len(le.Tried), msg)
	}
	// dlopen's own reason for the bogus file is kept (glibc: "invalid ELF
	// header" or "file too short").
	line := le.Tried[1]
	if !strings.Contains(line, "ELF") && !strings.Contains(line, "too short") {
		t.Errorf("bogus library line lacks dlopen's reason: %q", line)
	}
}

// TestLoadLinkerFallbackListed: the last resort (the dynamic linker's own
// search) is tried and reported too.
func TestLoadLinkerFallbackListed(t *testing.T) {
	spec := libSpec{what: "a test library", names: []string{"libwavecat-does-not-exist.so.7"}, install: "nothing"}
	_, err := load(spec, nil, true, systemDlopen)
	if err == nil || !strings.Contains(err.Error(), "dynamic linker search for libwavecat-does-not-exist.so.7") {
		t.Fatalf("err = %v, want the linker search listed", err)
	}
}

// TestLoadPreference: inside one folder the newest soname wins; across
// folders the earlier folder wins; a library's dependencies from the same
// folder are loaded first; a failing candidate falls through to the next.
func TestLoadPreference(t *testing.T) {
	d1, d2 := t.TempDir(), t.TempDir()
	touch := func(dir, name string) {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	touch(d1, "libcublas.so.11")
	touch(d1, "libcublas.so.12")
	touch(d1, "libcublasLt.so.12")
	touch(d2, "libcublas.so.13")
	var calls []string
	ok := func(p string) (uintptr, error) { calls = append(calls, p); return 1, nil }
	lib, err := load(libCUBLAS, []string{d1, d2}, false, ok)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(d1, "libcublasLt.so.12"), filepath.Join(d1, "libcublas.so.12")}
	if !slices.Equal(calls, want) || lib.path != want[1] {
		t.Errorf("dlopen calls %v, loaded %s; want %v", calls, lib.path, want)
	}

	calls = nil
	failFirst := func(p string) (uintptr, error) {
		calls = append(calls, p)
		if strings.HasSuffix(p, "libcublas.so.12") {
			return 0, errors.New("wrong ELF class")
		}
		return 1, nil
	}
	lib, err = load(libCUBLAS, []string{d1, d2}, false, failFirst)
	if err != nil || lib.path != filepath.Join(d1, "libcublas.so.11") {
		t.Errorf("after .12 fails: loaded %v, err %v; want %s", lib, err, filepath.Join(d1, "libcublas.so.11"))
	}
}

// TestBindMissingSymbol: a library lacking a required entry point (an old
// CUDA) is refused naming the symbol; optional ones may be absent.
func TestBindMissingSymbol(t *testing.T) {
	nv := nvrtcOrSkip(t)
	var f, g func() int32
	err := bind(nv.lib, "NVRTC", []symbol{
		{"nvrtcVersion", &f, false},
		{"wavecatNoSuchSymbol", &g, false},
	})
	if err == nil || !strings.Contains(err.Error(), "wavecatNoSuchSymbol") || !strings.Contains(err.Error(), "older than CUDA 11") {
		t.Fatalf("err = %v, want one naming wavecatNoSuchSymbol", err)
	}
	g = nil
	if err := bind(nv.lib, "NVRTC", []symbol{{"wavecatNoSuchSymbol", &g, true}}); err != nil || g != nil {
		t.Fatalf("optional missing symbol: err %v, bound %v", err, g != nil)
	}
}

// TestNewWithoutGPU: on a machine without a GPU, New fails with an error
// (never a panic) saying no driver or no GPU was found; with
// $WAVECAT_CUDA_LIBS set, the folder appears in the search list. When a
// driver library is present without a GPU (e.g. Debian's libcuda1 unpacked
// by scripts/install-nvrtc.sh --driver-lib DIR, DIR in $WAVECAT_CUDA_LIBS),
// this also proves every driver entry point binds and cuInit's
// CUDA_ERROR_NO_DEVICE comes back as ErrNoDevice.
func TestNewWithoutGPU(t *testing.T) {
	empty := t.TempDir()
	t.Setenv("WAVECAT_CUDA_LIBS", empty+":"+os.Getenv("WAVECAT_CUDA_LIBS"))
	be, err := New(Options{})
	if err == nil {
		be.Close()
		t.Skip("a CUDA GPU is present: New succeeded (the GPU tests cover it)")
	}
	msg := err.Error()
	if !strings.Contains(msg, "no CUDA driver found") && !strings.Contains(msg, "no CUDA GPU found") {
		t.Fatalf("New without a GPU: %v\nwant it to say no CUDA driver or GPU was found", err)
	}
	var le *LoadError
	if errors.As(err, &le) && !strings.Contains(msg, empty+": none of the names present") {
		t.Errorf("driver search does not list $WAVECAT_CUDA_LIBS folder %s:\n%s", empty, msg)
	}
	if !errors.As(err, &le) && (!errors.Is(err, ErrNoDevice) || !strings.Contains(msg, "CUDA_ERROR_NO_DEVICE")) {
		t.Errorf("driver loaded but the error is not ErrNoDevice naming CUDA_ERROR_NO_DEVICE: %v", err)
	}
	t.Logf("New on this machine: %v", err)
}

func TestCompareVersionDirs(t *testing.T) {
	in := []string{"/usr/local/cuda-12.9/lib64", "/usr/local/cuda-11.8/lib64", "/usr/local/cuda-12.10/lib64", "/usr/local/cuda-12/lib64"}
	slices.SortFunc(in, compareVersionDirs)
	want := []string{"/usr/local/cuda-11.8/lib64", "/usr/local/cuda-12/lib64", "/usr/local/cuda-12.9/lib64", "/usr/local/cuda-12.10/lib64"}
	if !slices.Equal(in, want) {
		t.Errorf("sorted %v, want %v", in, want)
	}
}

// TestSignaturesRegister: purego accepts every Go signature declared for the
// driver, cuBLAS and NVRTC (argument kinds and counts: cublasSgemmStrided-
// Batched takes 18). Registration checks the types without calling, so any
// resolvable symbol serves as the target; a rejected signature would
// otherwise panic inside New on the first GPU machine.
func TestSignaturesRegister(t *testing.T) {
	libc, err := purego.Dlopen("libc.so.6", purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no libc.so.6 to borrow a symbol from: %v", err)
	}
	addr, err := purego.Dlsym(libc, "abs")
	if err != nil {
		t.Fatal(err)
	}
	var syms []symbol
	syms = append(syms, (&driverAPI{}).symbols()...)
	syms = append(syms, (&cublasAPI{}).symbols()...)
	syms = append(syms, (&nvrtcAPI{}).symbols()...)
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
