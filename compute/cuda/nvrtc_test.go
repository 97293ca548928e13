package cuda

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestKernelNamesInSource checks that every kernel the Go side launches is
// defined, extern "C", in the embedded source, and that the source defines
// no kernel the Go side forgot to load.
func TestKernelNamesInSource(t *testing.T) {
	ext := strings.Index(kernelSource, `extern "C" {`)
	if ext < 0 {
		t.Fatal(`kernels.cu has no extern "C" block: kernel names would be mangled`)
	}
	defined := map[string]bool{}
	for _, m := range regexp.MustCompile(`__global__\s+void\s+(\w+)\s*\(`).FindAllStringSubmatchIndex(kernelSource, -1) {
		name := kernelSource[m[2]:m[3]]
		if m[0] < ext {
			t.Errorf("kernel %s is defined before the extern \"C\" block", name)
		}
		defined[name] = true
	}
	for _, k := range kernelNames {
		if !defined[k] {
			t.Errorf("Go launches %s but kernels.cu does not define it", k)
		}
	}
	for k := range defined {
		if !slices.Contains(kernelNames, k) {
			t.Errorf("kernels.cu defines %s but it is not in kernelNames (never loaded)", k)
		}
	}
	if !strings.Contains(kernelSource, "#define BLOCK 256") || reductionBlock != 256 {
		t.Errorf("reductionBlock (%d) and kernels.cu's BLOCK must agree", reductionBlock)
	}
}

// nvrtcOrSkip loads NVRTC or skips: it is optional on a build machine
// (scripts/install-nvrtc.sh installs Debian's libnvrtc11.2).
func nvrtcOrSkip(t *testing.T) *nvrtcAPI {
	t.Helper()
	nv, err := loadNVRTC()
	if err != nil {
		var le *LoadError
		if errors.As(err, &le) {
			t.Skipf("NVRTC not installed, kernels not compiled (run scripts/install-nvrtc.sh): %s", strings.SplitN(err.Error(), "\n", 2)[0])
		}
		t.Fatalf("NVRTC found but unusable: %v", err)
	}
	return nv
}

// TestKernelsCompile compiles kernels.cu with NVRTC for Ampere and Hopper,
// both to PTX (compute_XY, what the backend loads) and to SASS (sm_XY, which
// also runs ptxas over it), and fails on any error or warning. No GPU needed.
func TestKernelsCompile(t *testing.T) {
	nv := nvrtcOrSkip(t)
	t.Logf("NVRTC %s from %s", nv.version(), nv.lib.path)
	archs := []string{"compute_80", "compute_90", "sm_80", "sm_90"}
	if testing.Short() {
		archs = []string{"compute_90"} // each compile takes 1-3 s
	}
	for _, arch := range archs {
		t.Run(arch, func(t *testing.T) {
			ptx, log, err := nv.compile(kernelSource, "kernels.cu", compileOptions(arch))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(strings.ToLower(log), "warning") {
				t.Fatalf("NVRTC warnings for %s:\n%s", arch, log)
			}
			if !strings.HasPrefix(arch, "compute_") {
				return
			}
			text := string(ptx)
			if !strings.Contains(text, ".target sm_"+strings.TrimPrefix(arch, "compute_")) {
				t.Errorf("PTX does not target %s:\n%.300s", arch, text)
			}
			for _, k := range kernelNames {
				if !strings.Contains(text, ".entry "+k+"(") {
					t.Errorf("PTX for %s has no entry %s", arch, k)
				}
			}
			if ptx[len(ptx)-1] != 0 {
				t.Errorf("PTX is not NUL-terminated (cuModuleLoadData needs it)")
			}
		})
	}
}

// TestCompileErrorCarriesLog: a broken kernel fails with NVRTC's log (file,
// line, message) in the error, not just an error code.
func TestCompileErrorCarriesLog(t *testing.T) {
	nv := nvrtcOrSkip(t)
	_, _, err := nv.compile("extern \"C\" __global__ void k(float *x) { x[0] = undefined_name; }\n", "broken.cu", compileOptions("compute_80"))
	if err == nil {
		t.Fatal("compiling a kernel with an undefined identifier succeeded")
	}
	for _, want := range []string{"nvrtcCompileProgram", "NVRTC_ERROR_COMPILATION", "broken.cu", "undefined_name"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestPickArch(t *testing.T) {
	supported := []int{50, 52, 60, 70, 75, 80, 86, 89, 90}
	for _, tc := range []struct{ dev, want int }{{90, 90}, {86, 86}, {87, 86}, {100, 90}, {120, 90}, {52, 52}} {
		got, err := pickArch(tc.dev, supported)
		if err != nil || got != tc.want {
			t.Errorf("pickArch(%d) = %d, %v; want %d", tc.dev, got, err, tc.want)
		}
	}
	if _, err := pickArch(35, supported); err == nil || !strings.Contains(err.Error(), "sm_35") {
		t.Errorf("pickArch(35) on an NVRTC starting at sm_50: err = %v, want one naming sm_35", err)
	}
	if got, err := pickArch(75, nil); err != nil || got != 75 {
		t.Errorf("pickArch without a supported list = %d, %v; want the device's own 75", got, err)
	}
}

func TestPickArchAtLeast(t *testing.T) {
	supported := []int{75, 80, 86, 89, 90, 100}
	for _, tc := range []struct{ sm, want int }{{80, 80}, {90, 90}, {87, 89}, {50, 75}, {100, 100}} {
		got, err := pickArchAtLeast(tc.sm, supported)
		if err != nil || got != tc.want {
			t.Errorf("pickArchAtLeast(%d) = %d, %v; want %d", tc.sm, got, err, tc.want)
		}
	}
	if _, err := pickArchAtLeast(120, supported); err == nil || !strings.Contains(err.Error(), "sm_120 or newer") {
		t.Errorf("pickArchAtLeast(120) on an NVRTC ending at sm_100: err = %v, want one naming sm_120", err)
	}
	if got, err := pickArchAtLeast(90, nil); err != nil || got != 90 {
		t.Errorf("pickArchAtLeast without a supported list = %d, %v; want 90", got, err)
	}
}

// TestSupportedArchsFromNVRTC: the installed NVRTC reports sm_80 and sm_90
// (CUDA 11.8 and newer), which the backend's arch choice relies on.
func TestSupportedArchsFromNVRTC(t *testing.T) {
	nv := nvrtcOrSkip(t)
	a := nv.supportedArchs()
	if a == nil {
		t.Skipf("NVRTC %s predates nvrtcGetSupportedArchs", nv.version())
	}
	if !slices.Contains(a, 80) || !slices.Contains(a, 90) {
		t.Errorf("NVRTC %s supports %v, want 80 and 90 among them", nv.version(), a)
	}
}

func TestPTXCacheKey(t *testing.T) {
	base := ptxCacheKey("src", "compute_90", "12.4", 12040)
	for _, other := range []string{
		ptxCacheKey("src2", "compute_90", "12.4", 12040),
		ptxCacheKey("src", "compute_80", "12.4", 12040),
		ptxCacheKey("src", "compute_90", "12.5", 12040),
		ptxCacheKey("src", "compute_90", "12.4", 12050),
	} {
		if other == base {
			t.Errorf("cache key %s does not change with its inputs", base)
		}
	}
	if base != ptxCacheKey("src", "compute_90", "12.4", 12040) {
		t.Error("cache key is not deterministic")
	}
	if strings.ContainsAny(base, "/\\ ") {
		t.Errorf("cache key %q is not a plain file name", base)
	}
}
