package compute

import (
	"strings"
	"testing"
)

func TestParseKernels(t *testing.T) {
	src := `
extern "C" __global__ void __launch_bounds__( 256 ) a(const float *x, float* y,
        long long n, const ll m, ll k, float s, const float t) {}
__global__ void b() {}
__global__ void c(void) {}
__global__ void __launch_bounds__(1024, 1) d(float *p) {}
`
	d, err := ParseKernels(src, []string{"a", "b", "c", "d"})
	if err != nil {
		t.Fatal(err)
	}
	if d["a"].Sig != "pplllff" || d["b"].Sig != "" || d["c"].Sig != "" || d["d"].Sig != "p" {
		t.Errorf("signatures %v", d)
	}
	if d["a"].MaxThreads != 256 || d["b"].MaxThreads != 0 || d["d"].MaxThreads != 1024 {
		t.Errorf("launch bounds %v", d)
	}
	if _, err := ParseKernels("__global__ void __launch_bounds__(N) e(float *p) {}", []string{"e"}); err == nil {
		t.Error("a symbolic launch bound was accepted")
	}
	if _, err := ParseKernels(src, []string{"missing"}); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing kernel: err = %v", err)
	}
	if _, err := ParseKernels(`__global__ void k(double x) {}`, []string{"k"}); err == nil || !strings.Contains(err.Error(), "double x") {
		t.Errorf("unsupported parameter type: err = %v", err)
	}
}
