package cudasim

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
	"github.com/wavecat/wavecat/compute/cpu"
)

// testSource exercises the simulated built-ins; each kernel's check is in
// the test of the same name.
const testSource = `
typedef long long ll;
#define FULL 0xffffffffu

extern __shared__ float gdyn[]; // at file scope: the rewrite must work here too

extern "C" {

__global__ void t_ids(float *out) {
    ll i = (ll)blockIdx.x * blockDim.x + threadIdx.x;
    out[4 * i + 0] += blockIdx.x + 1;
    out[4 * i + 1] += threadIdx.x + 1;
    out[4 * i + 2] = blockDim.x;
    out[4 * i + 3] = gridDim.x;
}

// t_reduce: out[b] = sum of the block's x (a shared-memory tree, blockDim a
// power of two).
__global__ void __launch_bounds__(1024) t_reduce(const float *x, float *out, ll n) {
    __shared__ double st[1024];
    ll i = (ll)blockIdx.x * blockDim.x + threadIdx.x;
    st[threadIdx.x] = i < n ? x[i] : 0.0;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) st[threadIdx.x] += st[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = (float)st[0];
}

// t_rotate: each thread reads its neighbour's dynamic shared slot, through
// the kernel-scope and the file-scope declaration.
__global__ void t_rotate(float *out) {
    extern __shared__ float sh[];
    const unsigned n = blockDim.x, t = threadIdx.x;
    sh[t] = (float)(t * 3 + blockIdx.x);
    __syncthreads();
    out[blockIdx.x * n + t] = sh[(t + 1) % n] + gdyn[(t + 2) % n];
}

// t_poison: dynamic shared memory as a block finds it.
__global__ void t_poison(float *out, ll n) {
    extern __shared__ float sh[];
    for (ll i = threadIdx.x; i < n; i += blockDim.x) out[blockIdx.x * n + i] = sh[i];
}

// t_overrun writes one float past n.
__global__ void t_overrun(ll n) {
    extern __shared__ float sh[];
    if (threadIdx.x == 0) sh[n] = 1.0f;
}

#define NW 14
// t_warp: the warp operations; v = x[thread]; results in out[thread][NW].
__global__ void t_warp(const float *x, float *out) {
    const unsigned t = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x & 31;
    float v = x[t], *o = out + (ll)t * NW;
    o[0] = __shfl_sync(FULL, v, 5);
    o[1] = __shfl_xor_sync(FULL, v, 3);
    o[2] = __shfl_up_sync(FULL, v, 2);
    o[3] = __shfl_down_sync(FULL, v, 2);
    o[4] = __shfl_sync(FULL, v, 3, 8);
    o[5] = __shfl_xor_sync(FULL, v, 9, 8);
    o[6] = __shfl_up_sync(FULL, v, 3, 8);
    o[7] = __shfl_down_sync(FULL, v, 3, 8);
    o[8] = __uint_as_float(__ballot_sync(FULL, v > 0));
    o[9] = __all_sync(FULL, v > -100.0f);
    o[10] = __any_sync(FULL, lane == 7 && v > 0);
    double d = v;
    for (int m = 16; m > 0; m >>= 1) d += __shfl_xor_sync(FULL, d, m);
    o[11] = (float)d;
    o[12] = __uint_as_float(__activemask());
    ll big = ((ll)t << 32) | (ll)(t + 7);
    ll got = __shfl_sync(FULL, big, 1);
    ll want = ((ll)(t - lane + 1) << 32) | (ll)(t - lane + 8);
    o[13] = got == want;
}

// t_uneven: warp w does w exchanges (as loops over rows do), then the
// block meets at a barrier.
__global__ void t_uneven(const float *x, float *out) {
    const unsigned t = blockIdx.x * blockDim.x + threadIdx.x, w = threadIdx.x >> 5;
    float v = x[t];
    for (unsigned i = 0; i < w; i++) v += __shfl_xor_sync(FULL, v, 1);
    __syncthreads();
    out[t] = v;
}

__global__ void t_sync_some(float *out) {
    if (threadIdx.x < 32) __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void t_exit_early(float *out) {
    if (threadIdx.x == 5) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

__global__ void t_warp_half(float *out) {
    float v = threadIdx.x;
    if ((threadIdx.x & 31) < 16) v = __shfl_xor_sync(FULL, v, 1);
    out[threadIdx.x] = v;
}

// t_params: the argument kinds, returned as bits.
__global__ void t_params(float *out, ll a, float f, const float *in, const ll b) {
    out[0] = __uint_as_float((unsigned)a);
    out[1] = __uint_as_float((unsigned)((unsigned long long)a >> 32));
    out[2] = f;
    out[3] = in[1];
    out[4] = (float)b;
}

// t_stack: 16 KiB of locals per thread survive a barrier (every fiber has
// its own stack).
__global__ void t_stack(float *out) {
    volatile float buf[4096];
    for (int i = 0; i < 4096; i++) buf[i] = (float)threadIdx.x;
    __syncthreads();
    int ok = 1;
    for (int i = 0; i < 4096; i++) ok &= buf[i] == (float)threadIdx.x;
    out[blockIdx.x * blockDim.x + threadIdx.x] = ok;
}

__global__ void __launch_bounds__(64, 2) t_bounded(float *out) { out[threadIdx.x] = 1; }

// t_handoff: block b publishes b+1 with tag 1 in one 8-byte word, then
// thread 0 polls block (b+1) mod grid's word until its tag is there and
// writes what it read; the other threads wait at the barrier. Every block
// waits for another, so it needs them all running at once.
__global__ void __launch_bounds__(64) t_handoff(float *words, float *out) {
    volatile unsigned long long *w = (volatile unsigned long long *)words;
    const unsigned b = blockIdx.x, next = (b + 1) % gridDim.x;
    if (threadIdx.x == 0) {
        w[b] = (1ull << 32) | __float_as_uint((float)(b + 1));
        unsigned long long v;
        while (((v = w[next]) >> 32) != 1ull) __nanosleep(100);
        out[b] = __uint_as_float((unsigned)v);
    }
    __syncthreads();
}

// t_cluster_early maps a peer's shared memory before any cluster barrier.
__global__ void t_cluster_early(float *out) {
    extern __shared__ float cbuf[];
    float *p = (float *)__cluster_map_shared_rank(cbuf, 0);
    out[blockIdx.x] = p == cbuf ? 1.0f : 0.0f;
    __cluster_barrier_arrive();
    __cluster_barrier_wait();
}

// t_cluster_wait_only waits at the cluster barrier without arriving.
__global__ void t_cluster_wait_only(float *out) {
    __cluster_barrier_wait();
    out[blockIdx.x] = 1.0f;
}

// t_cluster_map_static maps a pointer into static shared memory.
__global__ void t_cluster_map_static(float *out) {
    __shared__ float st[4];
    st[0] = 1.0f;
    __cluster_barrier_arrive();
    __cluster_barrier_wait();
    out[blockIdx.x] = *(float *)__cluster_map_shared_rank(st, 0);
}

}
`

var testKernels = []string{"t_ids", "t_reduce", "t_rotate", "t_poison", "t_overrun", "t_warp", "t_uneven",
	"t_sync_some", "t_exit_early", "t_warp_half", "t_params", "t_stack", "t_bounded", "t_handoff",
	"t_cluster_early", "t_cluster_wait_only", "t_cluster_map_static"}

// variant is a simulator build: the assembly or the ucontext fiber switch,
// with one or several workers.
type variant struct {
	name string
	opts Options
}

var variants = []variant{
	{"asm/workers3", Options{Workers: 3}},
	{"asm/workers1", Options{Workers: 1}},
	{"ucontext/workers2", Options{Workers: 2, ucontext: true}},
}

type built struct {
	be  *Backend
	mod compute.Module
	err error
}

var (
	buildMu sync.Mutex
	builds  = map[string]*built{}
)

// sim returns the backend and the compiled testSource of variant v, built
// once per test binary; it skips without g++.
func sim(t *testing.T, v variant) (*Backend, compute.Module) {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	b, ok := builds[v.name]
	if !ok {
		b = &built{}
		b.be, b.err = New(v.opts)
		if b.err == nil {
			b.mod, b.err = b.be.Compile("cudasim_test.cu", testSource, testKernels...)
		}
		builds[v.name] = b
	}
	if errors.Is(b.err, ErrNoCompiler) {
		t.Skip(b.err)
	}
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.be, b.mod
}

func forVariants(t *testing.T, f func(t *testing.T, be *Backend, mod compute.Module)) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			be, mod := sim(t, v)
			f(t, be, mod)
		})
	}
}

func arg(b compute.Buffer) compute.Arg { return compute.Ptr(compute.V(b), b.Len()) }

// expectPanic runs f and checks that it panics with a message containing
// every one of want.
func expectPanic(t *testing.T, f func(), want ...string) {
	t.Helper()
	defer func() {
		t.Helper()
		r := recover()
		if r == nil {
			t.Fatalf("no panic; want one mentioning %q", want)
		}
		msg := fmt.Sprint(r)
		for _, w := range want {
			if !strings.Contains(msg, w) {
				t.Fatalf("panic %q does not mention %q", msg, w)
			}
		}
	}()
	f()
}

func TestBackendInterfaces(t *testing.T) {
	be, _ := sim(t, variants[0])
	if be.Name() != "cudasim" || !strings.Contains(be.Describe(), "3 workers") {
		t.Errorf("Name %q, Describe %q", be.Name(), be.Describe())
	}
	var b compute.Backend = be
	if _, ok := b.(compute.HostAccessor); !ok {
		t.Error("not a HostAccessor")
	}
	if _, err := New(Options{Workers: -1}); err == nil {
		t.Error("New accepted Workers = -1")
	}
	if _, err := New(Options{CPU: cpu.Options{BLAS: "nonesuch"}}); err == nil {
		t.Error("New accepted a bad CPU option")
	}
}

// TestIDs: every thread of every block runs once, with its indices and the
// launch's dimensions, however the blocks are split over workers.
func TestIDs(t *testing.T) {
	forVariants(t, func(t *testing.T, be *Backend, mod compute.Module) {
		for _, dims := range [][2]int{{1, 32}, {7, 96}, {5, 1024}, {3, 80}, {2, 1}} {
			grid, block := dims[0], dims[1]
			out := be.Alloc(4 * grid * block)
			defer be.Free(out)
			mod.Launch("t_ids", grid, block, 0, arg(out))
			got := computetest.Contents(be, out)
			for b := 0; b < grid; b++ {
				for th := 0; th < block; th++ {
					i := 4 * (b*block + th)
					if want := []float32{float32(b + 1), float32(th + 1), float32(block), float32(grid)}; !equal(got[i:i+4], want) {
						t.Fatalf("grid %d block %d: thread (%d,%d) wrote %v, want %v", grid, block, b, th, got[i:i+4], want)
					}
				}
			}
		}
	})
}

func equal(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestReduce: a shared-memory tree over blocks of up to 1024 threads.
func TestReduce(t *testing.T) {
	forVariants(t, func(t *testing.T, be *Backend, mod compute.Module) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, block := range []int{32, 256, 1024} {
			n := 5*block - 17
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			grid := (n + block - 1) / block
			xb, out := computetest.BufferOf(be, x), be.Alloc(grid)
			mod.Launch("t_reduce", grid, block, 0, arg(xb), arg(out), compute.Int(n))
			got := computetest.Contents(be, out)
			for b := 0; b < grid; b++ {
				want := 0.0
				for i := b * block; i < min(n, (b+1)*block); i++ {
					want += float64(x[i])
				}
				if math.Abs(float64(got[b])-want) > 1e-5*(1+math.Abs(want)) {
					t.Errorf("block %d of %d threads: sum %v, want %v", b, block, got[b], want)
				}
			}
			be.Free(xb)
			be.Free(out)
		}
	})
}

// TestDynamicShared: the shared array is the block's, poisoned at the start
// of each block, and writes past the launch's size fail the launch.
func TestDynamicShared(t *testing.T) {
	forVariants(t, func(t *testing.T, be *Backend, mod compute.Module) {
		const grid, block = 3, 64
		out := be.Alloc(grid * block)
		defer be.Free(out)
		mod.Launch("t_rotate", grid, block, 4*block, arg(out))
		got := computetest.Contents(be, out)
		for b := 0; b < grid; b++ {
			for th := 0; th < block; th++ {
				want := float32(((th+1)%block)*3+b) + float32(((th+2)%block)*3+b)
				if got[b*block+th] != want {
					t.Fatalf("t_rotate[%d][%d] = %v, want %v", b, th, got[b*block+th], want)
				}
			}
		}
		const n = 1000
		pb := be.Alloc(grid * n)
		defer be.Free(pb)
		mod.Launch("t_poison", grid, 128, 4*n, arg(pb), compute.Int(n))
		for i, v := range computetest.Contents(be, pb) {
			if math.Float32bits(v) != 0xffffffff {
				t.Fatalf("dynamic shared float %d at the start of block %d has bits %08x, want the ffffffff poison", i%n, i/n, math.Float32bits(v))
			}
		}
		mod.Launch("t_overrun", 2, 32, 4*n, compute.Int(n-1)) // the last float: fine
		expectPanic(t, func() { mod.Launch("t_overrun", 2, 32, 4*n, compute.Int(n)) }, "t_overrun", "code 3", "past its dynamic shared memory")
		mod.Launch("t_overrun", 1, 32, maxShared, compute.Int(maxShared/4-1))
		expectPanic(t, func() { mod.Launch("t_overrun", 1, 32, maxShared+4, compute.Int(0)) }, "dynamic shared memory (at most 49152)")
	})
}

// warpModel is t_warp's result for thread t of a block of n threads, by the
// CUDA programming guide's definitions; ok[j] is false where the source
// lane lies outside a partial warp (undefined on a GPU).
func warpModel(x []float32, blockBase, n, t int) (out [14]float32, ok [14]bool) {
	lane := t & 31
	wbase := t - lane
	lanes := min(32, n-wbase)
	v := x[blockBase+t]
	at := func(l int) (float32, bool) {
		if l >= lanes {
			return 0, false
		}
		return x[blockBase+wbase+l], true
	}
	set := func(j int, l int) {
		out[j], ok[j] = at(l)
	}
	own := func(j int) { out[j], ok[j] = v, true }
	set(0, 5)
	set(1, lane^3)
	if lane >= 2 {
		set(2, lane-2)
	} else {
		own(2)
	}
	if lane+2 < 32 {
		set(3, lane+2)
	} else {
		own(3)
	}
	seg := lane &^ 7
	set(4, seg+3)
	if src := lane ^ 9; src < seg+8 {
		set(5, src)
	} else {
		own(5)
	}
	if lane&7 >= 3 {
		set(6, lane-3)
	} else {
		own(6)
	}
	if lane&7+3 < 8 {
		set(7, lane+3)
	} else {
		own(7)
	}
	var ballot uint32
	all, anyp := true, false
	sum := 0.0
	for l := 0; l < lanes; l++ {
		u := x[blockBase+wbase+l]
		if u > 0 {
			ballot |= 1 << l
		}
		all = all && u > -100
		anyp = anyp || (l == 7 && u > 0)
		sum += float64(u)
	}
	b2f := func(b bool) float32 {
		if b {
			return 1
		}
		return 0
	}
	out[8], ok[8] = math.Float32frombits(ballot), true
	out[9], ok[9] = b2f(all), true
	out[10], ok[10] = b2f(anyp), true
	out[11], ok[11] = float32(sum), lanes == 32 // the butterfly reads lanes past a partial warp
	mask := uint32(0xffffffff)
	if lanes < 32 {
		mask = 1<<lanes - 1
	}
	out[12], ok[12] = math.Float32frombits(mask), true
	out[13], ok[13] = 1, lanes > 1
	return out, ok
}

// TestWarpOps: shuffles (with widths), ballot, all, any, activemask and a
// 64-bit shuffle, against the guide's definitions; blocks of 80 threads end
// with a partial warp.
func TestWarpOps(t *testing.T) {
	forVariants(t, func(t *testing.T, be *Backend, mod compute.Module) {
		rng := rand.New(rand.NewPCG(3, 4))
		for _, block := range []int{64, 80, 1024} {
			const grid = 3
			x := make([]float32, grid*block)
			for i := range x {
				x[i] = float32(rng.IntN(2001)-1000) / 8 // exact sums
			}
			xb, out := computetest.BufferOf(be, x), be.Alloc(grid*block*14)
			mod.Launch("t_warp", grid, block, 0, arg(xb), arg(out))
			got := computetest.Contents(be, out)
			for b := 0; b < grid; b++ {
				for th := 0; th < block; th++ {
					want, ok := warpModel(x, b*block, block, th)
					g := got[(b*block+th)*14:][:14]
					for j := range want {
						if ok[j] && math.Float32bits(g[j]) != math.Float32bits(want[j]) {
							t.Fatalf("block of %d, thread (%d,%d): result %d is %v (bits %08x), want %v (bits %08x)",
								block, b, th, j, g[j], math.Float32bits(g[j]), want[j], math.Float32bits(want[j]))
						}
					}
				}
			}
			be.Free(xb)
			be.Free(out)
		}
	})
}

// TestUnevenWarps: warps may do different numbers of warp operations
// between barriers (each warp syncs on its own).
func TestUnevenWarps(t *testing.T) {
	forVariants(t, func(t *testing.T, be *Backend, mod compute.Module) {
		const grid, block = 2, 256
		x := make([]float32, grid*block)
		for i := range x {
			x[i] = float32(i % 13)
		}
		xb, out := computetest.BufferOf(be, x), be.Alloc(grid*block)
		defer be.Free(xb)
		defer be.Free(out)
		mod.Launch("t_uneven", grid, block, 0, arg(xb), arg(out))
		got := computetest.Contents(be, out)
		for i, g := range got {
			w := i % block / 32
			want := x[i]
			if w > 0 {
				want = (x[i] + x[i^1]) * float32(int(1)<<(w-1))
			}
			if g != want {
				t.Fatalf("thread %d (warp %d): %v, want %v", i, w, g, want)
			}
		}
	})
}

// TestDivergence: a barrier or warp operation that not every thread
// reaches fails the launch (on a GPU it hangs or is undefined), and the
// module still works afterwards.
func TestDivergence(t *testing.T) {
	forVariants(t, func(t *testing.T, be *Backend, mod compute.Module) {
		out := be.Alloc(256)
		defer be.Free(out)
		for _, k := range []string{"t_sync_some", "t_exit_early", "t_warp_half"} {
			expectPanic(t, func() { mod.Launch(k, 3, 128, 0, arg(out)) }, k, "code 2", "diverged")
		}
		mod.Launch("t_ids", 1, 64, 0, arg(out))
		if got := computetest.Contents(be, out); got[4*63+1] != 64 {
			t.Errorf("after the failed launches, t_ids wrote thread index %v, want 64", got[4*63+1])
		}
	})
}

func TestParams(t *testing.T) {
	forVariants(t, func(t *testing.T, be *Backend, mod compute.Module) {
		out, in := be.Alloc(5), computetest.BufferOf(be, []float32{9, -2.5, 7})
		defer be.Free(out)
		defer be.Free(in)
		a := int64(-0x123456789)
		mod.Launch("t_params", 1, 1, 0, arg(out), compute.Int(int(a)), compute.Float(-0.375), compute.Ptr(compute.V(in), 3), compute.Int(-42))
		got := computetest.Contents(be, out)
		if lo, hi := math.Float32bits(got[0]), math.Float32bits(got[1]); uint64(hi)<<32|uint64(lo) != uint64(a) {
			t.Errorf("long long arrived as %08x%08x, want %016x", hi, lo, uint64(a))
		}
		if got[2] != -0.375 || got[3] != -2.5 || got[4] != -42 {
			t.Errorf("float, pointer, const ll arrived as %v %v %v", got[2], got[3], got[4])
		}
		// A view into a buffer: the pointer is its first element.
		mod.Launch("t_params", 1, 1, 0, arg(out), compute.Int(0), compute.Float(0), compute.Ptr(compute.V(in).At(1), 2), compute.Int(0))
		if got := computetest.Contents(be, out); got[3] != 7 {
			t.Errorf("in[1] of a view at offset 1 is %v, want 7", got[3])
		}
	})
}

func TestFiberStacks(t *testing.T) {
	forVariants(t, func(t *testing.T, be *Backend, mod compute.Module) {
		const grid, block = 2, 1024
		out := be.Alloc(grid * block)
		defer be.Free(out)
		mod.Launch("t_stack", grid, block, 0, arg(out))
		for i, v := range computetest.Contents(be, out) {
			if v != 1 {
				t.Fatalf("thread %d: its 16 KiB of locals changed across a barrier", i)
			}
		}
	})
}

// TestLaunchChecks: launches the CUDA backend refuses (or a GPU fails) panic
// with a message naming the kernel.
func TestLaunchChecks(t *testing.T) {
	be, mod := sim(t, variants[0])
	out, in := be.Alloc(64), be.Alloc(3)
	defer be.Free(out)
	defer be.Free(in)
	cases := []struct {
		name string
		f    func()
		want []string
	}{
		{"kind", func() { mod.Launch("t_ids", 1, 32, 0, compute.Int(1)) }, []string{"t_ids argument 0 is l, want p"}},
		{"count", func() { mod.Launch("t_ids", 1, 32, 0) }, []string{"t_ids takes 1 arguments (p), launched with 0"}},
		{"range", func() { mod.Launch("t_ids", 1, 32, 0, compute.Ptr(compute.V(out), 65)) }, []string{"outside buffer of 64"}},
		{"block", func() { mod.Launch("t_ids", 1, 2048, 0, arg(out)) }, []string{"2048 threads (at most 1024)"}},
		{"bounds", func() { mod.Launch("t_bounded", 1, 96, 0, arg(out)) }, []string{"t_bounded", "more than its __launch_bounds__(64)"}},
		{"unknown", func() { mod.Launch("t_nonesuch", 1, 32, 0) }, []string{"kernel t_nonesuch not compiled"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { expectPanic(t, c.f, c.want...) })
	}
	mod.Launch("t_bounded", 1, 64, 0, arg(out))
	mod.Launch("t_ids", 0, 32, 0, arg(out)) // an empty grid runs nothing
}

func TestCompile(t *testing.T) {
	be, mod := sim(t, variants[0])
	again, err := be.Compile("other-name.cu", testSource, "t_ids")
	if err != nil || again != mod {
		t.Errorf("compiling the same source again: %v, %v; want the first module", again, err)
	}
	if _, err := be.Compile("x.cu", testSource+"\n", "t_nonesuch"); err == nil || !strings.Contains(err.Error(), "no __global__ void t_nonesuch") {
		t.Errorf("missing kernel: %v", err)
	}
	if _, err := be.Compile("x.cu", "extern \"C\" __global__ void k(int n) {}", "k"); err == nil || !strings.Contains(err.Error(), `parameter "int n"`) {
		t.Errorf("int parameter: %v", err)
	}
	bad := "extern \"C\" {\n__global__ void k(float *p) {\n    p[0] = undefined_thing;\n}\n}\n"
	if _, err := be.Compile("bad.cu", bad, "k"); err == nil || !strings.Contains(err.Error(), "bad.cu:3") {
		t.Errorf("a compile error should name the source line bad.cu:3: %v", err)
	}
	// A source compiled for some kernels cannot later resolve others.
	src := "extern \"C\" {\n__global__ void k1(float *p) { p[0] = 1; }\n__global__ void k2(float *p) { p[0] = 2; }\n}\n"
	if _, err := be.Compile("two.cu", src, "k1"); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Compile("two.cu", src, "k2"); err == nil || !strings.Contains(err.Error(), "not resolved") {
		t.Errorf("a kernel not resolved at the first compile: %v", err)
	}
}

func TestCapture(t *testing.T) {
	be, mod := sim(t, variants[0])
	out := be.Alloc(4 * 32)
	defer be.Free(out)
	calls := 0
	g, err := be.Capture(func() {
		calls++
		mod.Launch("t_ids", 1, 32, 0, arg(out))
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Fatal("Capture ran the function")
	}
	g.Launch()
	g.Launch()
	if got := computetest.Contents(be, out); calls != 2 || got[0] != 2 || got[1] != 2 {
		t.Errorf("after two replays: %d calls, block/thread sums %v %v, want 2 2 2", calls, got[0], got[1])
	}
	g.Free()
	expectPanic(t, g.Launch, "freed graph")
	if _, err := be.Capture(nil); err == nil {
		t.Error("Capture(nil) succeeded")
	}
}

// TestConcurrentLaunches: launches of one module from several goroutines
// take turns (the library's state is the launch's).
func TestConcurrentLaunches(t *testing.T) {
	be, mod := sim(t, variants[0])
	var wg sync.WaitGroup
	outs := make([]compute.Buffer, 4)
	for i := range outs {
		outs[i] = be.Alloc(4 * 5 * 128)
		wg.Go(func() {
			for range 3 {
				mod.Launch("t_ids", 5, 128, 0, arg(outs[i]))
			}
		})
	}
	wg.Wait()
	for i, o := range outs {
		got := computetest.Contents(be, o)
		for j := 0; j < 5*128; j++ {
			if got[4*j] != float32(3*(j/128+1)) || got[4*j+1] != float32(3*(j%128+1)) {
				t.Fatalf("goroutine %d, thread %d: sums %v %v", i, j, got[4*j], got[4*j+1])
			}
		}
		be.Free(o)
	}
}

// TestCoResidentBlocks: a launch of CoResidentBlocks blocks (the number of
// workers) runs them all at once, so blocks that wait for each other finish;
// launches Launch would refuse get 0.
func TestCoResidentBlocks(t *testing.T) {
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			be, mod := sim(t, v)
			cr := mod.(compute.CoResident)
			n := cr.CoResidentBlocks("t_handoff", 64, 0)
			if n != v.opts.Workers {
				t.Fatalf("CoResidentBlocks = %d, want the %d workers", n, v.opts.Workers)
			}
			words, out := be.Alloc(2*n), be.Alloc(n)
			defer be.Free(words)
			defer be.Free(out)
			be.Fill(compute.V(words), 2*n, 0)
			mod.Launch("t_handoff", n, 64, 0, arg(words), arg(out))
			got := computetest.Contents(be, out)
			for b := range n {
				if want := float32((b+1)%n + 1); got[b] != want {
					t.Errorf("block %d read %g from its neighbour, want %g", b, got[b], want)
				}
			}
			for _, c := range []struct {
				kernel        string
				block, shared int
			}{{"nonesuch", 64, 0}, {"t_handoff", 128, 0}, {"t_ids", 2048, 0}, {"t_ids", 64, maxShared + 1}, {"t_ids", 0, 0}} {
				if got := cr.CoResidentBlocks(c.kernel, c.block, c.shared); got != 0 {
					t.Errorf("CoResidentBlocks(%s, %d, %d) = %d, want 0", c.kernel, c.block, c.shared, got)
				}
			}
		})
	}
}

// TestClusters: the cluster exchange check (computetest.CheckClusters)
// runs every cluster size that divides the workers, and CoResidentClusters
// is the workers over the size. Misuse fails the launch: a peer mapped
// before any barrier, a wait without an arrive, static shared memory
// mapped, a grid that is not whole clusters or has more blocks than
// workers.
func TestClusters(t *testing.T) {
	for _, v := range append(variants, variant{"asm/workers4", Options{Workers: 4}}) {
		t.Run(v.name, func(t *testing.T) {
			be, mod := sim(t, v)
			cl := mod.(compute.ClusterLauncher)
			W := v.opts.Workers
			var want []int
			for C := 1; C <= W; C++ {
				if W%C == 0 {
					want = append(want, C)
				}
				if n := cl.CoResidentClusters("t_cluster_early", C, 64, 16); n != W/C {
					t.Errorf("CoResidentClusters(%d) = %d, want %d", C, n, W/C)
				}
			}
			if ran := computetest.CheckClusters(t, be, want); !slices.Equal(ran, want) {
				t.Errorf("cluster sizes run: %v, want %v", ran, want)
			}
			out := be.Alloc(W)
			defer be.Free(out)
			expectPanic(t, func() { cl.LaunchCluster("t_cluster_early", W, W, 32, 16, arg(out)) }, "t_cluster_early", "before it had passed a cluster barrier")
			expectPanic(t, func() { cl.LaunchCluster("t_cluster_wait_only", W, W, 32, 0, arg(out)) }, "waited without arriving")
			expectPanic(t, func() { cl.LaunchCluster("t_cluster_map_static", W, W, 32, 0, arg(out)) }, "outside the block's dynamic shared memory")
			expectPanic(t, func() { cl.LaunchCluster("t_cluster_early", 2*W, W, 32, 16, arg(out)) }, "needs a worker per block")
			if W > 1 {
				expectPanic(t, func() { cl.LaunchCluster("t_cluster_early", W+1, W, 32, 16, arg(out)) }, "dividing the grid")
			}
			if n := cl.CoResidentClusters("t_cluster_early", 0, 64, 0); n != 0 {
				t.Errorf("CoResidentClusters of size 0 = %d", n)
			}
		})
	}
}
