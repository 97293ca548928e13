package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/ebitengine/purego"
)

// libSpec describes one shared library to find: the sonames to try in
// preference order (newest CUDA major first, unversioned last) and what to
// tell the user to install when none loads.
type libSpec struct {
	what  string   // human name, e.g. "cuBLAS"
	names []string // sonames, tried in order inside every folder
	// deps maps a soname to libraries that must be loaded from the same
	// folder first (cuBLAS needs cuBLASLt; a toolkit folder outside the
	// linker's cache would otherwise fail to resolve it).
	deps    map[string][]string
	install string
}

var (
	libCUDA = libSpec{
		what:    "the CUDA driver API",
		names:   []string{"libcuda.so.1", "libcuda.so"},
		install: "install the NVIDIA driver (it provides libcuda.so.1); in a container run with the NVIDIA container toolkit (docker --gpus all)",
	}
	libCUBLAS = libSpec{
		what:  "cuBLAS",
		names: []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so"},
		deps: map[string][]string{
			"libcublas.so.13": {"libcublasLt.so.13"},
			"libcublas.so.12": {"libcublasLt.so.12"},
			"libcublas.so.11": {"libcublasLt.so.11"},
			"libcublas.so":    {"libcublasLt.so"},
		},
		install: "install the CUDA toolkit libraries (CUDA 11 or newer), or `pip install nvidia-cublas-cu12`, or point WAVECAT_CUDA_LIBS at the folder holding libcublas.so.*",
	}
	libNVRTC = libSpec{
		what:    "NVRTC (the CUDA runtime compiler)",
		names:   []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so.11.1", "libnvrtc.so.11.0", "libnvrtc.so"},
		install: "install the CUDA toolkit (CUDA 11 or newer), or `pip install nvidia-cuda-nvrtc-cu12`, or on Debian `apt-get install libnvrtc11.2` (non-free; see scripts/install-nvrtc.sh), or point WAVECAT_CUDA_LIBS at the folder holding libnvrtc.so.*",
	}
)

// searchEnv is what the folder search reads from the outside world, so tests
// can drive it with a fake environment.
type searchEnv struct {
	getenv func(string) string
	glob   func(string) ([]string, error)
}

var osSearchEnv = searchEnv{getenv: os.Getenv, glob: filepath.Glob}

// multiarchDir is Debian's per-architecture library folder.
func multiarchDir() string {
	switch runtime.GOARCH {
	case "arm64":
		return "/usr/lib/aarch64-linux-gnu"
	case "ppc64le":
		return "/usr/lib/powerpc64le-linux-gnu"
	default:
		return "/usr/lib/x86_64-linux-gnu"
	}
}

// searchDirs lists the folders to look in, in order: $WAVECAT_CUDA_LIBS,
// $CUDA_HOME and $CUDA_PATH, $LD_LIBRARY_PATH, the standard install folders
// (versioned toolkits newest first), then the lib folders of pip's nvidia-*
// wheels under common Python prefixes. Duplicates are dropped.
func searchDirs(env searchEnv) []string {
	var dirs []string
	add := func(d ...string) {
		for _, x := range d {
			if x = strings.TrimSpace(x); x != "" && !slices.Contains(dirs, x) {
				dirs = append(dirs, x)
			}
		}
	}
	add(strings.Split(env.getenv("WAVECAT_CUDA_LIBS"), ":")...)
	for _, v := range []string{"CUDA_HOME", "CUDA_PATH"} {
		if root := env.getenv(v); root != "" {
			add(filepath.Join(root, "lib64"), filepath.Join(root, "lib"))
		}
	}
	add(strings.Split(env.getenv("LD_LIBRARY_PATH"), ":")...)
	add("/usr/local/cuda/lib64")
	versioned, _ := env.glob("/usr/local/cuda-*/lib64")
	slices.SortStableFunc(versioned, func(a, b string) int { return -compareVersionDirs(a, b) })
	add(versioned...)
	// Debian's nvidia-driver packages keep libcuda in nvidia/current.
	add(multiarchDir(), filepath.Join(multiarchDir(), "nvidia", "current"), "/usr/lib64", "/usr/lib/wsl/lib")

	var prefixes []string
	for _, v := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := env.getenv(v); p != "" {
			prefixes = append(prefixes, p)
		}
	}
	if home := env.getenv("HOME"); home != "" {
		prefixes = append(prefixes, filepath.Join(home, ".local"))
	}
	prefixes = append(prefixes, "/usr/local", "/usr", "/opt/conda")
	for _, p := range prefixes {
		for _, pkg := range []string{"cublas", "cuda_nvrtc", "cuda_runtime", "nccl", "cu13"} {
			m, _ := env.glob(filepath.Join(p, "lib", "python3*", "*-packages", "nvidia", pkg, "lib"))
			slices.SortStableFunc(m, func(a, b string) int { return -compareVersionDirs(a, b) })
			add(m...)
		}
	}
	return dirs
}

// compareVersionDirs orders paths by the numbers embedded in them, so that
// cuda-12.10 sorts after cuda-12.9 and python3.12 after python3.9 (the 64
// of lib64 is not a version).
func compareVersionDirs(a, b string) int {
	na, nb := numbersIn(strings.ReplaceAll(a, "lib64", "lib")), numbersIn(strings.ReplaceAll(b, "lib64", "lib"))
	for i := 0; i < len(na) && i < len(nb); i++ {
		if na[i] != nb[i] {
			return na[i] - nb[i]
		}
	}
	if c := len(na) - len(nb); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

func numbersIn(s string) []int {
	var out []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r < '0' || r > '9' }) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// library is one loaded shared library.
type library struct {
	handle uintptr
	path   string // what was passed to dlopen
}

// LoadError says a library could not be found or loaded, with every place
// that was tried and what to install.
type LoadError struct {
	What    string   // e.g. "cuBLAS"
	Names   []string // sonames tried
	Tried   []string // one line per folder or file tried, with the outcome
	Install string
}

func (e *LoadError) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "cuda: cannot load %s (%s); searched:", e.What, strings.Join(e.Names, ", "))
	for _, t := range e.Tried {
		sb.WriteString("\n  ")
		sb.WriteString(t)
	}
	fmt.Fprintf(&sb, "\nto fix: %s", e.Install)
	return sb.String()
}

// dlopenFunc is purego.Dlopen, replaceable in tests.
type dlopenFunc func(path string) (uintptr, error)

func systemDlopen(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// load tries every soname of spec in every folder of dirs, in order, and
// then (when useLinker) the bare sonames through the dynamic linker's own
// search (ld.so.cache), returning the first that dlopens.
func load(spec libSpec, dirs []string, useLinker bool, dlopen dlopenFunc) (*library, error) {
	le := &LoadError{What: spec.what, Names: spec.names, Install: spec.install}
	for _, dir := range dirs {
		st, err := os.Stat(dir)
		switch {
		case err != nil:
			le.Tried = append(le.Tried, dir+": folder missing")
			continue
		case !st.IsDir():
			le.Tried = append(le.Tried, dir+": not a folder")
			continue
		}
		found := false
		for _, name := range spec.names {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			found = true
			for _, dep := range spec.deps[name] {
				if dp := filepath.Join(dir, dep); fileExists(dp) {
					// Failure here shows up as the main library's error.
					_, _ = dlopen(dp)
				}
			}
			h, err := dlopen(p)
			if err != nil {
				le.Tried = append(le.Tried, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			return &library{handle: h, path: p}, nil
		}
		if !found {
			le.Tried = append(le.Tried, dir+": none of the names present")
		}
	}
	if useLinker {
		for _, name := range spec.names {
			h, err := dlopen(name)
			if err == nil {
				return &library{handle: h, path: name}, nil
			}
			le.Tried = append(le.Tried, fmt.Sprintf("dynamic linker search for %s: %v", name, err))
		}
	}
	return nil, le
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// symbol binds one C function to a Go function variable.
type symbol struct {
	name     string
	fptr     any
	optional bool // absent in older releases; callers check for nil
}

// bind resolves every symbol in lib and fails naming the first missing
// required one (usually a driver or library older than CUDA 11).
func bind(lib *library, what string, syms []symbol) error {
	var missing []string
	for _, s := range syms {
		addr, err := purego.Dlsym(lib.handle, s.name)
		if err != nil || addr == 0 {
			if !s.optional {
				missing = append(missing, s.name)
			}
			continue
		}
		purego.RegisterFunc(s.fptr, addr)
	}
	if len(missing) > 0 {
		return fmt.Errorf("cuda: %s at %s lacks %s: it is older than CUDA 11 or not the NVIDIA library; install CUDA 11 or newer", what, lib.path, strings.Join(missing, ", "))
	}
	return nil
}

// ErrNoDevice is wrapped by New's error when the driver loaded but no GPU
// is usable; a missing library gives a *LoadError instead. Either way a
// caller choosing a device automatically falls back to the CPU.
var ErrNoDevice = errors.New("no CUDA GPU found")
