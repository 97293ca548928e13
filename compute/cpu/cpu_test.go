package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
)

func newOrSkip(t testing.TB, blas string, threads int) *Backend {
	t.Helper()
	be, err := New(Options{BLAS: blas, Threads: threads})
	if err != nil {
		if blas == "openblas" {
			t.Skipf("OpenBLAS not loadable here, skipping the OpenBLAS path: %v", err)
		}
		t.Fatal(err)
	}
	return be
}

func TestConformanceGonum(t *testing.T) {
	computetest.RunConformance(t, func() compute.Backend { return newOrSkip(t, "gonum", 2) })
}

func TestConformanceOpenBLAS(t *testing.T) {
	newOrSkip(t, "openblas", 2)
	computetest.RunConformance(t, func() compute.Backend { return newOrSkip(t, "openblas", 2) })
}

func TestConformanceSingleThread(t *testing.T) {
	computetest.RunConformance(t, func() compute.Backend { return newOrSkip(t, "auto", 1) })
}

func TestDescribe(t *testing.T) {
	for _, blas := range []string{"auto", "gonum"} {
		be := newOrSkip(t, blas, 0)
		t.Logf("BLAS %q: %s", blas, be.Describe())
		if !strings.HasPrefix(be.Describe(), "cpu: ") || !strings.Contains(be.Describe(), fmt.Sprintf("%d threads", be.Threads())) {
			t.Errorf("Describe() = %q, want \"cpu: <library>, N threads\"", be.Describe())
		}
	}
	if be := newOrSkip(t, "gonum", 3); be.BLAS() != "gonum" || !strings.Contains(be.Describe(), "gonum") || be.Threads() != 3 {
		t.Errorf("gonum backend: BLAS %q, Describe %q, Threads %d", be.BLAS(), be.Describe(), be.Threads())
	}
	if _, err := New(Options{BLAS: "mkl"}); err == nil || !strings.Contains(err.Error(), "mkl") {
		t.Errorf("New(BLAS: mkl) error = %v, want one naming the bad value", err)
	}
}

// TestMissingOpenBLAS: a bad $WAVECAT_BLAS_LIB makes "openblas" fail with
// the path in the error and "auto" fall back to gonum (under the own
// kernels on an AVX-512 CPU), saying why. Runs in a
// child process because the library is loaded once per process.
func TestMissingOpenBLAS(t *testing.T) {
	if os.Getenv("WAVECAT_TEST_CHILD") == "1" {
		_, err := New(Options{BLAS: "openblas"})
		if err == nil || !strings.Contains(err.Error(), "/nonexistent/libfoo.so") {
			t.Fatalf("New(openblas) with a bad WAVECAT_BLAS_LIB: err = %v", err)
		}
		be, err := New(Options{})
		want := "gonum"
		if ownGEMMSupported {
			want = "wavecat" // training's products on the own kernels, the rest on gonum
		}
		if err != nil || be.BLAS() != want || !strings.Contains(be.Describe(), "gonum") || !strings.Contains(be.Describe(), "not found") {
			t.Fatalf("auto fallback: err %v, Describe %q", err, be.Describe())
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestMissingOpenBLAS$")
	cmd.Env = append(os.Environ(), "WAVECAT_TEST_CHILD=1", "WAVECAT_BLAS_LIB=/nonexistent/libfoo.so")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// TestOpenBLASMatchesGonum runs the WaveNet's GEMM shapes (cut to 1000
// time steps) through both libraries; they differ only by float32
// summation order.
func TestOpenBLASMatchesGonum(t *testing.T) {
	ob := newOrSkip(t, "openblas", 2)
	gn := newOrSkip(t, "gonum", 2)
	r := rand.New(rand.NewPCG(3, 4))
	shapes := []struct {
		tA, tB  bool
		m, n, k int
	}{{false, false, 256, 1000, 128}, {false, true, 256, 128, 1000}, {true, false, 128, 1000, 256}, {false, false, 256, 1, 128}, {false, false, 1, 256, 128}}
	for _, s := range shapes {
		ar, ac := s.m, s.k
		if s.tA {
			ar, ac = ac, ar
		}
		br, bc := s.k, s.n
		if s.tB {
			br, bc = bc, br
		}
		a, b := make([]float32, ar*ac), make([]float32, br*bc)
		for i := range a {
			a[i] = float32(r.NormFloat64())
		}
		for i := range b {
			b[i] = float32(r.NormFloat64())
		}
		var out [2][]float32
		for i, be := range []*Backend{ob, gn} {
			av, bv, cv := be.Alloc(len(a)), be.Alloc(len(b)), be.Alloc(s.m*s.n)
			be.Upload(compute.V(av), a)
			be.Upload(compute.V(bv), b)
			be.Gemm(s.tA, s.tB, s.m, s.n, s.k, 1, compute.V(av), ac, compute.V(bv), bc, 0, compute.V(cv), s.n)
			out[i] = be.Host(compute.V(cv), s.m*s.n)
		}
		tol := 1e-5 * math.Sqrt(float64(s.k)) * 4 // |entries| ~ sqrt(k)
		for i := range out[0] {
			if d := math.Abs(float64(out[0][i] - out[1][i])); d > tol {
				t.Fatalf("%+v: element %d openblas %g vs gonum %g", s, i, out[0][i], out[1][i])
			}
		}
	}
}

// TestNoAllocs: kernels, small and parallel-sized, allocate nothing once
// warm (GC is off so the pools are not emptied mid-test).
func TestNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector (sync.Pool drops items)")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	be := newOrSkip(t, "auto", 2)
	for _, n := range []int{1000, 300000} {
		x, y, z := compute.V(be.Alloc(2*n)), compute.V(be.Alloc(2*n)), compute.V(be.Alloc(2*n))
		m, v := compute.V(be.Alloc(n)), compute.V(be.Alloc(n))
		w := compute.V(be.Alloc(9))
		be.Fill(y, 2*n, 0.5)
		hp := compute.AdamParams{LR: 1e-3, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1}
		kernels := map[string]func(){
			"Scale":      func() { be.Scale(x, n, 0.5) },
			"Axpy":       func() { be.Axpy(x, y, n, 0.5) },
			"AddScaled":  func() { be.AddScaled(z, x, y, n, 0.5) },
			"ReLU":       func() { be.ReLU(z, x, n) },
			"ReLUBack":   func() { be.ReLUBackward(z, x, y, n) },
			"Dot":        func() { be.Dot(x, y, n) },
			"SumSquares": func() { be.SumSquares(x, n) },
			"AddBias":    func() { be.AddBias(x, y, 2, 10, n/20) },
			"BiasGrad":   func() { be.BiasGrad(z, x, 2, 10, n/20) },
			"Gated":      func() { be.GatedTanhSigmoid(z, y, 1, n) },
			"GatedBack":  func() { be.GatedTanhSigmoidBackward(z, x, y, 1, n) },
			"Stretch":    func() { be.Stretch(z, x, 10, n/40, 4) },
			"StretchBk":  func() { be.StretchBackward(z, x, 10, n/40, 4) },
			"RowConv":    func() { be.RowConvSame(z, y, w, 10, n/10, 9) },
			"RowConvBk":  func() { be.RowConvSameBackward(z, w, x, y, w, 10, n/10, 9) },
			"WeightNorm": func() { be.WeightNorm(z, y, y, 3, 10, n/30) },
			"WNBack":     func() { be.WeightNormBackward(z, x, x, y, y, 3, 10, n/30) },
			"Adam":       func() { be.Adam(x, y, m, v, n, hp) },
			"EMA":        func() { be.EMA(z, x, n, 0.999) },
			"Gemm":       func() { be.Gemm(false, true, 10, 10, n/10, 1, x, n/10, y, n/10, 0, z, 10) },
			"Gemv":       func() { be.Gemm(false, false, 10, 1, n/10, 1, x, n/10, y, 1, 0, z, 1) },
			"Batched": func() {
				be.GemmStridedBatched(false, false, 5, 20, 10, 1, x, 10, 0, y, 20, 200, 0, z, 20, 100, 4)
			},
		}
		for name, f := range kernels {
			if a := testing.AllocsPerRun(5, f); a != 0 {
				t.Errorf("%s (n=%d): %.1f allocations per call", name, n, a)
			}
		}
	}
}
