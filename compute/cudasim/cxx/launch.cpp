// The launcher, after the kernel source and hb_sim_table (see prelude.cpp).

static size_t hb_sim_stride() { return HB_SIM_STACK + (size_t)sysconf(_SC_PAGESIZE); }

// hb_sim_map_stacks maps n fiber stacks, each above a guard page, for
// hb_sim_launch; the Go side keeps one set per worker, shared by the
// modules. It returns 0 when the mapping fails.
extern "C" void *hb_sim_map_stacks(long long n) {
    if (n <= 0 || n > HB_SIM_MAXT) return 0;
    size_t page = (size_t)sysconf(_SC_PAGESIZE), per = hb_sim_stride();
    void *p = mmap(0, per * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return 0;
    for (long long t = 0; t < n; t++) {
        if (mprotect((char *)p + t * per, page, PROT_NONE) != 0) {
            munmap(p, per * n);
            return 0;
        }
    }
    return p;
}

extern "C" long long hb_sim_unmap_stacks(void *p, long long n) { return munmap(p, hb_sim_stride() * n); }

// hb_sim_launch runs blocks b0, b0+step, ... of a grid of kernel k on the
// nstacks stacks from hb_sim_map_stacks. It returns 0, or 1 for bad
// arguments, 2 when a block's threads could not all finish (they diverged
// at a barrier or warp operation), 3 when a block wrote past its dynamic
// shared memory, or a cluster fault (4-7, see prelude.cpp). csize is the
// cluster size and ctab the clusters' table (null: no clusters).
extern "C" long long hb_sim_launch(long long k, long long grid, long long block, long long shared, void **params,
                                   long long b0, long long step, void *stacks, long long nstacks, long long csize,
                                   unsigned long long *ctab) {
    const long long nk = sizeof(hb_sim_table) / sizeof(hb_sim_table[0]);
    if (k < 0 || k >= nk || grid < 0 || block <= 0 || block > HB_SIM_MAXT || shared < 0 ||
        shared > HB_SIM_MAXSHARED || b0 < 0 || step <= 0 || !stacks || nstacks < block || csize < 1 ||
        grid % csize != 0 || (csize > 1 && !ctab))
        return 1;
    hb_sim_csize = (unsigned)csize;
    hb_sim_ctab = ctab;
    hb_sim_stacks = (char *)stacks;
    hb_sim_per = hb_sim_stride();
    hb_sim_fn = hb_sim_table[k];
    hb_sim_params = params;
    gridDim.x = (unsigned)grid;
    blockDim.x = (unsigned)block;
    gridDim.y = gridDim.z = blockDim.y = blockDim.z = 1;
    threadIdx.y = threadIdx.z = blockIdx.y = blockIdx.z = 0;
    hb_sim_n = (unsigned)block;
    for (long long b = b0; b < grid; b += step) {
        blockIdx.x = (unsigned)b;
        hb_sim_qh = hb_sim_qn = 0;
        hb_sim_at_sync = hb_sim_finished = 0;
        memset(hb_sim_at_warp, 0, sizeof hb_sim_at_warp);
        memset(hb_sim_phase, 0, sizeof hb_sim_phase);
        memset(hb_sim_dyn_shared, 0xff, (size_t)shared);
        memset(hb_sim_dyn_shared + shared, 0xa5, HB_SIM_REDZONE);
        hb_sim_arrived = hb_sim_cluster_synced = 0;
        hb_sim_fault = 0;
        if (ctab) __atomic_store_n(&ctab[b], (unsigned long long)(uintptr_t)hb_sim_dyn_shared, __ATOMIC_RELEASE);
        hb_sim_nfree = hb_sim_n;
        for (unsigned t = 0; t < hb_sim_n; t++) {
            hb_sim_free[t] = hb_sim_n - 1 - t;
            hb_sim_stack_of[t] = HB_SIM_NOSTACK;
            hb_sim_push(t);
        }
        hb_sim_next(hb_sim_n);
        if (hb_sim_fault) return hb_sim_fault;
        if (hb_sim_finished != hb_sim_n) return 2;
        for (int i = 0; i < HB_SIM_REDZONE; i++)
            if (hb_sim_dyn_shared[shared + i] != 0xa5) return 3;
    }
    return 0;
}
