package cudasim

import (
	"testing"

	"github.com/wavecat/wavecat/compute"
)

// benchSource has the shapes that dominate the GPU generator on the
// simulator: b_layer is a block of threads meeting at two barriers, half of
// its warps doing a butterfly sum in between (wg_layer on a small model);
// b_map has no barrier (each thread runs to its end on the stack of the
// thread before it).
const benchSource = `
extern "C" {
__global__ void b_layer(float *out) {
    __shared__ float s[1024];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    s[threadIdx.x] = threadIdx.x;
    __syncthreads();
    for (int r = warp; r < 16; r += nw) {
        float acc = s[lane];
        for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == 0) out[blockIdx.x * 16 + r] = acc;
    }
    __syncthreads();
}

__global__ void b_map(float *out) {
    out[blockIdx.x * blockDim.x + threadIdx.x] += 1.0f;
}
}
`

func benchModule(b *testing.B) (*Backend, compute.Module) {
	be, err := New(Options{Workers: 1})
	if err != nil {
		b.Skip(err)
	}
	mod, err := be.Compile("bench.cu", benchSource, "b_layer", "b_map")
	if err != nil {
		b.Fatal(err)
	}
	return be, mod
}

// BenchmarkLayer launches 48 blocks of 1024 threads of b_layer on one
// worker (about 3 ms on a 2-core AMD EPYC VM).
func BenchmarkLayer(b *testing.B) {
	be, mod := benchModule(b)
	out := be.Alloc(48 * 16)
	for b.Loop() {
		mod.Launch("b_layer", 48, 1024, 0, compute.Ptr(compute.V(out), out.Len()))
	}
}

// BenchmarkMap launches 48 blocks of 1024 threads of b_map on one worker.
func BenchmarkMap(b *testing.B) {
	be, mod := benchModule(b)
	out := be.Alloc(48 * 1024)
	for b.Loop() {
		mod.Launch("b_map", 48, 1024, 0, compute.Ptr(compute.V(out), out.Len()))
	}
}
