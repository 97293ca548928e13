package cuda

import (
	"errors"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute"
)

const testModuleSrc = `
extern "C" __global__ void t_axpb(float *y, const float *x, long long n, float a, float b) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + b;
}
extern "C" __global__ void t_inc(float *y, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += 1.0f;
}
`

func TestKernelSignaturesParsed(t *testing.T) {
	sigs, err := kernelSignatures(testModuleSrc, []string{"t_axpb", "t_inc"})
	if err != nil {
		t.Fatal(err)
	}
	if sigs["t_axpb"] != "pplff" || sigs["t_inc"] != "pl" {
		t.Errorf("signatures %v, want t_axpb \"pplff\" and t_inc \"pl\"", sigs)
	}
	lb, err := kernelSignatures(`extern "C" __global__ void __launch_bounds__(1024) k(const float *x, long long n) {}`, []string{"k"})
	if err != nil || lb["k"] != "pl" {
		t.Errorf("kernel with __launch_bounds__: %v, %v (want \"pl\")", lb, err)
	}
	if _, err := kernelSignatures(testModuleSrc, []string{"t_missing"}); err == nil || !strings.Contains(err.Error(), "t_missing") {
		t.Errorf("missing kernel: err = %v", err)
	}
	if _, err := kernelSignatures(`extern "C" __global__ void k(double x) {}`, []string{"k"}); err == nil || !strings.Contains(err.Error(), "double x") {
		t.Errorf("unsupported parameter type: err = %v", err)
	}
}

// TestCheckCompile: a good source compiles, a broken one fails with
// NVRTC's log naming the line. No GPU needed.
func TestCheckCompile(t *testing.T) {
	err := CheckCompile("good.cu", testModuleSrc)
	if errors.Is(err, ErrNoNVRTC) {
		t.Skipf("NVRTC not installed (run scripts/install-nvrtc.sh): %v", strings.SplitN(err.Error(), "\n", 2)[0])
	}
	if err != nil {
		t.Fatal(err)
	}
	err = CheckCompile("bad.cu", testModuleSrc+"\nextern \"C\" __global__ void broken(float *y) { y[0] = undefined_name; }\n")
	if err == nil || !strings.Contains(err.Error(), "undefined_name") || !strings.Contains(err.Error(), "bad.cu") {
		t.Errorf("broken source: err = %v, want NVRTC's log", err)
	}
}

// TestGPUModuleAndGraph compiles a module at run time, launches it, checks
// argument-kind mismatches panic, and replays a captured graph.
func TestGPUModuleAndGraph(t *testing.T) {
	be := gpuOrSkip(t)
	m, err := be.Compile("test_module.cu", testModuleSrc, "t_axpb", "t_inc")
	if err != nil {
		t.Fatal(err)
	}
	if m2, err := be.Compile("test_module.cu", testModuleSrc, "t_inc"); err != nil || m2 != m {
		t.Errorf("second Compile of the same source: %v, %v (want the same module)", m2, err)
	}
	const n = 1000
	x, y := be.Alloc(n), be.Alloc(n)
	defer be.Free(x)
	defer be.Free(y)
	h := make([]float32, n)
	for i := range h {
		h[i] = float32(i)
	}
	be.Upload(compute.V(x), h)
	m.Launch("t_axpb", (n+255)/256, 256, 0, compute.Ptr(compute.V(y), n), compute.Ptr(compute.V(x), n), compute.Int(n), compute.Float(2), compute.Float(0.5))
	out := make([]float32, n)
	be.Download(out, compute.V(y))
	for i, v := range out {
		if v != 2*float32(i)+0.5 {
			t.Fatalf("y[%d] = %g, want %g", i, v, 2*float32(i)+0.5)
		}
	}
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), "argument 1 is f") {
				t.Errorf("float passed for long long: recover() = %v", r)
			}
		}()
		m.Launch("t_inc", 1, 256, 0, compute.Ptr(compute.V(y), n), compute.Float(1))
	}()
	g, err := be.Capture(func() {
		for range 3 {
			m.Launch("t_inc", (n+255)/256, 256, 0, compute.Ptr(compute.V(y), n), compute.Int(n))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	be.Download(out, compute.V(y))
	if out[7] != 14.5 {
		t.Fatalf("capture ran the kernels: y[7] = %g, want 14.5 (unchanged)", out[7])
	}
	for range 5 {
		g.Launch()
	}
	be.Download(out, compute.V(y))
	for i, v := range out {
		if want := 2*float32(i) + 0.5 + 15; v != want {
			t.Fatalf("after 5 replays of 3 increments y[%d] = %g, want %g", i, v, want)
		}
	}
}
