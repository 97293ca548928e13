package computetest

import (
	"testing"

	"github.com/wavecat/wavecat/compute"
)

// ClusterSource (exported for compile checks) exchanges values between the blocks of thread-block
// clusters through their shared memory (sm_90; on older GPUs the kernel is
// empty and CoResidentClusters is 0). For each round r, block j of each
// cluster writes (r+1)*100 + j + 1000*cluster into slot j of every peer's
// buffer r%2 (thread p writes peer p; the blocks take turns to be late, so
// a barrier that does not wait shows), arrives, writes a local word,
// waits, and reads every slot: out[(block*rounds + r)*C + i] is slot i.
// meta[2*block] is the block's rank in its cluster, meta[2*block+1] the
// cluster size. Dynamic shared memory: 2*C + 1 floats.
const ClusterSource = `
extern "C" __global__ void ct_cluster(float *out, float *meta, long long rounds) {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
    extern __shared__ float cbuf[];
    const unsigned C = __clusterSizeInBlocks(), j = __clusterRelativeBlockRank(), t = threadIdx.x;
    if (t == 0) meta[2 * blockIdx.x] = j, meta[2 * blockIdx.x + 1] = C;
    __cluster_barrier_arrive();
    __cluster_barrier_wait(); // every peer has started: its shared memory may be mapped
    float *peer = t < C ? (float *)__cluster_map_shared_rank(cbuf, t) : 0;
    for (long long r = 0; r < rounds; r++) {
        float *slot = cbuf + (r % 2) * C;
        if (t == 0)
            for (unsigned k = 0; k < 200 * ((j + r) % C); k++) __nanosleep(100);
        __syncthreads();
        if (t < C) peer[(r % 2) * C + j] = (float)((r + 1) * 100 + j + 1000 * (blockIdx.x / C));
        __cluster_barrier_arrive();
        if (t == 0) cbuf[2 * C] = (float)r;
        __cluster_barrier_wait();
        if (t < C) out[(blockIdx.x * rounds + r) * C + t] = slot[t];
    }
#endif
}
`

// CheckClusters runs ClusterSource on be (a compute.KernelCompiler whose
// modules are compute.ClusterLauncher) in clusters of each of sizes that
// the backend runs, on up to two clusters at once, and checks that every
// block saw its rank, the cluster size and exactly its peers' values of
// each round, and that a launch without clusters is clusters of one. It
// returns the sizes that ran; sizes the backend cannot run are left out
// (CoResidentClusters 0).
func CheckClusters(t *testing.T, be compute.Backend, sizes []int) []int {
	t.Helper()
	kc, ok := be.(compute.KernelCompiler)
	if !ok {
		t.Fatalf("%s compiles no kernels", be.Name())
	}
	mod, err := kc.Compile("computetest/clusters.cu", ClusterSource, "ct_cluster")
	if err != nil {
		t.Fatal(err)
	}
	cl, ok := mod.(compute.ClusterLauncher)
	if !ok {
		t.Fatalf("%s modules do not launch clusters", be.Name())
	}
	const rounds, block = 5, 64
	var ran []int
	for _, C := range sizes {
		shared := 4 * (2*C + 1)
		n := min(cl.CoResidentClusters("ct_cluster", C, block, shared), 2)
		if n < 1 {
			continue
		}
		grid := n * C
		out, meta := be.Alloc(grid*rounds*C), be.Alloc(2*grid)
		cl.LaunchCluster("ct_cluster", grid, C, block, shared, compute.Ptr(compute.V(out), out.Len()),
			compute.Ptr(compute.V(meta), meta.Len()), compute.Int(rounds))
		got, gotMeta := Contents(be, out), Contents(be, meta)
		be.Free(out)
		be.Free(meta)
		bad := 0
		for b := range grid {
			if gotMeta[2*b] != float32(b%C) || gotMeta[2*b+1] != float32(C) {
				t.Errorf("clusters of %d: block %d has rank %g of %g", C, b, gotMeta[2*b], gotMeta[2*b+1])
			}
			for r := range rounds {
				for i := range C {
					want := float32((r+1)*100 + i + 1000*(b/C))
					if g := got[(b*rounds+r)*C+i]; g != want && bad < 8 {
						bad++
						t.Errorf("clusters of %d: block %d round %d slot %d = %g, want %g", C, b, r, i, g, want)
					}
				}
			}
		}
		ran = append(ran, C)
	}
	// Launched without clusters, each block is a cluster of one.
	out, meta := be.Alloc(2*rounds), be.Alloc(4)
	defer be.Free(out)
	defer be.Free(meta)
	mod.Launch("ct_cluster", 2, block, 12, compute.Ptr(compute.V(out), out.Len()), compute.Ptr(compute.V(meta), meta.Len()), compute.Int(rounds))
	got, gotMeta := Contents(be, out), Contents(be, meta)
	for b := range 2 {
		if gotMeta[2*b] != 0 || gotMeta[2*b+1] != 1 {
			t.Errorf("no clusters: block %d has rank %g of %g, want 0 of 1", b, gotMeta[2*b], gotMeta[2*b+1])
		}
		for r := range rounds {
			if want := float32((r+1)*100 + 1000*b); got[b*rounds+r] != want {
				t.Errorf("no clusters: block %d round %d read %g, want %g", b, r, got[b*rounds+r], want)
			}
		}
	}
	return ran
}
