package cuda

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"unsafe"

	"github.com/ebitengine/purego"
	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
)

// A CPU build of kernels.cu, so the conformance suite can check the CUDA C
// itself (index arithmetic, reductions, accumulate versus overwrite) on a
// machine without a GPU. A small C++ prelude maps the CUDA built-ins onto
// the host: every block runs its threads as ucontext fibers on one OS
// thread, and __syncthreads switches to the next fiber, so the block-wide
// reductions really run with 256 cooperating threads and shared memory.
// Host libm stands in for the device's tanhf/expf (both within a few ulp).

const simPrelude = `
#include <math.h>
#include <ucontext.h>
#include <string.h>
#include <vector>
#include <utility>

struct wc_dim3 { unsigned x, y, z; };
static wc_dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

static ucontext_t wc_main;
static std::vector<ucontext_t> wc_fibers;
static std::vector<std::vector<char> > wc_stacks;
static std::vector<char> wc_done;
static unsigned wc_cur;
static void (*wc_entry)(void **);
static void **wc_params;

static void __syncthreads() {
    unsigned me = wc_cur;
    swapcontext(&wc_fibers[me], &wc_main);
    threadIdx.x = me;
}

static void wc_fiber_main() {
    wc_entry(wc_params);
    wc_done[wc_cur] = 1;
}
`

// simLauncher is the C++ tail: one typed trampoline per kernel (generated
// from kernelNames) and the block scheduler.
func simLauncher() string {
	var sb strings.Builder
	sb.WriteString(`
template <typename... A, size_t... I>
static void wc_call(void (*k)(A...), void **p, std::index_sequence<I...>) { k(*static_cast<A *>(p[I])...); }
template <typename... A>
static void wc_invoke(void (*k)(A...), void **p) { wc_call(k, p, std::index_sequence_for<A...>{}); }
`)
	for _, k := range kernelNames {
		fmt.Fprintf(&sb, "static void tramp_%s(void **p) { wc_invoke(%s, p); }\n", k, k)
	}
	sb.WriteString("struct wc_entry_t { const char *name; void (*fn)(void **); };\nstatic const wc_entry_t wc_table[] = {\n")
	for _, k := range kernelNames {
		fmt.Fprintf(&sb, "  {%q, tramp_%s},\n", k, k)
	}
	sb.WriteString(`};

extern "C" int wc_sim_launch(const char *name, unsigned grid, unsigned block, void **params) {
    wc_entry = 0;
    for (const wc_entry_t &e : wc_table)
        if (strcmp(e.name, name) == 0) wc_entry = e.fn;
    if (!wc_entry || grid == 0 || block == 0) return 1;
    wc_params = params;
    gridDim.x = grid; gridDim.y = gridDim.z = 1;
    blockDim.x = block; blockDim.y = blockDim.z = 1;
    threadIdx.y = threadIdx.z = blockIdx.y = blockIdx.z = 0;
    wc_fibers.resize(block);
    wc_done.assign(block, 0);
    if (wc_stacks.size() < block) wc_stacks.resize(block);
    for (unsigned t = 0; t < block; t++) wc_stacks[t].resize(64 << 10);
    for (unsigned b = 0; b < grid; b++) {
        blockIdx.x = b;
        for (unsigned t = 0; t < block; t++) {
            getcontext(&wc_fibers[t]);
            wc_fibers[t].uc_stack.ss_sp = wc_stacks[t].data();
            wc_fibers[t].uc_stack.ss_size = wc_stacks[t].size();
            wc_fibers[t].uc_link = &wc_main;
            makecontext(&wc_fibers[t], wc_fiber_main, 0);
            wc_done[t] = 0;
        }
        // Round robin: each pass runs every live thread up to its next
        // __syncthreads (or its end), which is a block-wide barrier.
        for (unsigned live = block; live > 0;) {
            live = 0;
            unsigned finished = 0;
            for (unsigned t = 0; t < block; t++) {
                if (wc_done[t]) { finished++; continue; }
                wc_cur = t;
                threadIdx.x = t;
                swapcontext(&wc_main, &wc_fibers[t]);
                if (!wc_done[t]) live++;
            }
            if (live > 0 && finished > 0) return 2; // __syncthreads after some threads exited
        }
    }
    return 0;
}
`)
	return sb.String()
}

var (
	simOnce   sync.Once
	simLaunch func(name string, grid, block uint32, params unsafe.Pointer) int32
	simErr    error
	simDir    string
)

// loadSim builds kernels.cu for the CPU with g++ (once per test binary) or
// skips when there is no C++ compiler.
func loadSim(t *testing.T) func(string, uint32, uint32, unsafe.Pointer) int32 {
	t.Helper()
	simOnce.Do(func() {
		cxx, err := exec.LookPath("g++")
		if err != nil {
			simErr = fmt.Errorf("no g++ to build kernels.cu for the CPU: %w", err)
			return
		}
		if simDir, err = os.MkdirTemp("", "wavecat-cudasim-"); err != nil {
			simErr = err
			return
		}
		src := filepath.Join(simDir, "kernels_sim.cpp")
		lib := filepath.Join(simDir, "libkernels_sim.so")
		if err := os.WriteFile(src, []byte(simPrelude+"\n#line 1 \"kernels.cu\"\n"+kernelSource+simLauncher()), 0o644); err != nil {
			simErr = err
			return
		}
		out, err := exec.Command(cxx, "-std=c++17", "-O1", "-Wall", "-Werror", "-Wno-unused-function", "-fPIC", "-shared", "-o", lib, src).CombinedOutput()
		if err != nil {
			simErr = fmt.Errorf("g++ kernels.cu for the CPU: %v\n%s", err, out)
			return
		}
		h, err := purego.Dlopen(lib, purego.RTLD_NOW|purego.RTLD_LOCAL)
		if err != nil {
			simErr = err
			return
		}
		purego.RegisterLibFunc(&simLaunch, h, "wc_sim_launch")
	})
	if simErr != nil {
		if strings.HasPrefix(simErr.Error(), "no g++") {
			t.Skip(simErr)
		}
		t.Fatal(simErr)
	}
	return simLaunch
}

func TestMain(m *testing.M) {
	code := m.Run()
	if simDir != "" {
		os.RemoveAll(simDir)
	}
	os.Exit(code)
}

// newSimBackend is a fake-driver backend whose kernels run the CPU build
// of kernels.cu.
func newSimBackend(t *testing.T) *Backend {
	be, f := newFakeBackend(t)
	f.sim = loadSim(t)
	return be
}

// TestSimConformance runs the backend conformance suite (float64
// references, finite-difference gradients, padding sentinels) on the real
// Backend code with kernels.cu executed on the CPU and GEMMs by the
// column-major reference: everything but the GPU itself.
func TestSimConformance(t *testing.T) {
	be := newSimBackend(t)
	computetest.RunConformance(t, func() compute.Backend { return be })
}
