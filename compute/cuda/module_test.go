package cuda

import (
	"errors"
	"math"
	"math/rand/v2"
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

// TestGemmSumSplitsK: on aligned operands with a long k, GemmSum splits k
// into pieces through one pointer-array batched GEMM (checked against the
// plain sum); misaligned operands take the strided path instead.
func TestGemmSumSplitsK(t *testing.T) {
	if got := splitK(256, 128, 10240, 8, 132); got != 32 {
		t.Errorf("splitK(256x128, k=10240, batch 8, 132 SMs) = %d, want 32", got)
	}
	if got := splitK(80, 80, 40, 8, 132); got != 1 {
		t.Errorf("splitK with k=40 = %d, want 1", got)
	}
	be, _ := newFakeBackend(t)
	batched := 0
	inner := be.blas.cublasSgemmBatched
	be.blas.cublasSgemmBatched = func(h uintptr, ta, tb, m, n, k int32, alpha *float32, a uint64, lda int32, b uint64, ldb int32, beta *float32, c uint64, ldc int32, count int32) cublasStatus {
		batched++
		if k%4 != 0 || count != 3*4 {
			t.Errorf("pointer-array GEMM with k=%d, %d entries; want pieces of a multiple of 4 and 3 items x 4 pieces", k, count)
		}
		return inner(h, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, count)
	}
	const m, n, k, batch = 5, 8, 1100, 3 // strides m*k, n*k multiples of 4
	r := rand.New(rand.NewPCG(1, 2))
	a, b := make([]float32, batch*m*k), make([]float32, batch*n*k)
	for i := range a {
		a[i] = float32(r.NormFloat64())
	}
	for i := range b {
		b[i] = float32(r.NormFloat64())
	}
	want := make([]float64, m*n)
	for i := 0; i < batch; i++ {
		for p := 0; p < m; p++ {
			for q := 0; q < n; q++ {
				s := 0.0
				for j := 0; j < k; j++ {
					s += float64(a[i*m*k+p*k+j]) * float64(b[i*n*k+q*k+j])
				}
				want[p*n+q] += s
			}
		}
	}
	for _, off := range []int{0, 1} {
		batched = 0
		ab, bb, cb := be.Alloc(len(a)+4), be.Alloc(len(b)+4), be.Alloc(m*n)
		av, bv := compute.V(ab).At(off), compute.V(bb).At(off)
		be.Upload(av, a)
		be.Upload(bv, b)
		be.GemmSum(false, true, m, n, k, 1, av, k, m*k, bv, k, n*k, 0, compute.V(cb), n, batch)
		got := download(be, compute.V(cb), m*n)
		for i := range got {
			if d := math.Abs(float64(got[i]) - want[i]); d > 1e-3*(1+math.Abs(want[i])) {
				t.Fatalf("offset %d: C[%d] = %g, want %g", off, i, got[i], want[i])
			}
		}
		if wantB := map[int]int{0: 1, 1: 0}[off]; batched != wantB {
			t.Errorf("operands %d floats off alignment: %d pointer-array GEMMs, want %d", off, batched, wantB)
		}
		be.Free(ab)
		be.Free(bb)
		be.Free(cb)
	}
}

// TestFakeCoResidentBlocks: CoResidentBlocks is the driver's per-SM
// occupancy for that kernel, block size and shared memory times the SM
// count, and 0 where it cannot be known (no occupancy entry point, an
// unknown kernel, a block above the kernel's __launch_bounds__). No GPU
// needed: the driver is faked, the module is compiled by NVRTC.
func TestFakeCoResidentBlocks(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	be, _, err := newFakeInit(t, 90, false)
	if err != nil {
		t.Fatal(err)
	}
	src := testModuleSrc + "extern \"C\" __global__ void __launch_bounds__(128) t_small(float *y) { y[threadIdx.x] = 0.0f; }\n"
	m, err := be.Compile("occupancy.cu", src, "t_axpb", "t_small")
	if err != nil {
		t.Fatal(err)
	}
	cr, ok := m.(compute.CoResident)
	if !ok {
		t.Fatal("cuda module does not implement compute.CoResident")
	}
	if n := cr.CoResidentBlocks("t_axpb", 256, 0); n != 0 {
		t.Errorf("without cuOccupancyMaxActiveBlocksPerMultiprocessor: %d blocks, want 0 (unknown)", n)
	}
	type call struct {
		f     uintptr
		block int32
		shmem uint64
	}
	var calls []call
	be.drv.cuOccupancyMaxActiveBlocksPerMultiprocessor = func(n *int32, f uintptr, block int32, shmem uint64) cuResult {
		calls = append(calls, call{f, block, shmem})
		*n = 2048 / block
		return cuSuccess
	}
	if n := cr.CoResidentBlocks("t_axpb", 256, 512); n != 8*132 {
		t.Errorf("CoResidentBlocks(t_axpb, 256) = %d, want 8 per SM x 132 SMs", n)
	}
	if len(calls) != 1 || calls[0].f != m.(*module).funcs["t_axpb"] || calls[0].block != 256 || calls[0].shmem != 512 {
		t.Errorf("occupancy query %+v, want t_axpb's function, 256 threads, 512 bytes", calls)
	}
	for _, c := range []struct {
		kernel string
		block  int
	}{{"t_inc", 64}, {"t_small", 256}, {"t_small", 0}} {
		if n := cr.CoResidentBlocks(c.kernel, c.block, 0); n != 0 {
			t.Errorf("CoResidentBlocks(%s, %d) = %d, want 0", c.kernel, c.block, n)
		}
	}
	be.drv.cuOccupancyMaxActiveBlocksPerMultiprocessor = func(n *int32, _ uintptr, _ int32, _ uint64) cuResult { return 1 }
	if n := cr.CoResidentBlocks("t_small", 128, 0); n != 0 {
		t.Errorf("failing occupancy query: %d blocks, want 0", n)
	}
}
