// The host side of CUDA C for the simulator (../cudasim.go). hostSource puts
// it in front of a kernel source (whose dynamic shared arrays it rewrites)
// and follows them with a trampoline per kernel, hb_sim_table and
// launch.cpp; g++ makes that a shared library whose hb_sim_launch runs a 1-D
// grid of blocks.
//
// Each block's threads are fibers on the calling OS thread. A fiber runs
// until it waits at __syncthreads (released when all of the block's threads
// are there) or at a warp operation (released when all lanes of its warp
// are there), then switches straight to the next runnable fiber. Warp
// shuffles and ballots exchange values through a per-thread slot written
// before the warp barrier and read after it. A block whose fibers can no
// longer progress (a thread exited, or waits somewhere its peers never
// reach) fails the launch with code 2.
//
// The switch is a few instructions of assembly on x86-64 (no signal-mask
// system call, unlike swapcontext), ucontext elsewhere or when
// HB_SIM_UCONTEXT is defined.

#if defined(__x86_64__) && defined(__ELF__) && !defined(HB_SIM_UCONTEXT)
#define HB_SIM_ASM 1
#else
#define HB_SIM_ASM 0
#endif

#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>
#include <algorithm>
#include <utility>
#if !HB_SIM_ASM
#include <ucontext.h>
#endif

#define HB_SIM_HIDDEN __attribute__((visibility("hidden")))
// The state below is shared by the fibers: a switch is opaque to the
// compiler, and this makes it reload memory after one.
#define HB_SIM_CLOBBER asm volatile("" ::: "memory")

struct hb_sim_dim3 {
    unsigned x, y, z;
};
HB_SIM_HIDDEN hb_sim_dim3 threadIdx, blockIdx, blockDim, gridDim;
static const int warpSize = 32;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __shared__ static
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
using std::max;
using std::min;

// ---- intrinsics (host maths stands in for the device's) ----

static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
static inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
static inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
static inline double __longlong_as_double(long long b) { double d; memcpy(&d, &b, 8); return d; }
static inline long long __double_as_longlong(double d) { long long b; memcpy(&b, &d, 8); return b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
// A thread that polls memory another block writes pauses with
// __nanosleep; here that gives the OS thread away, since the other block
// runs on another worker thread (see CoResidentBlocks in cudasim.go).
static inline void __nanosleep(unsigned) { sched_yield(); }
// clock64 counts nanoseconds of the host's monotonic clock (a GPU's counts
// SM cycles): kernels that time their phases read ratios of it.
static inline long long clock64() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}
static inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __clz(unsigned x) { return x ? __builtin_clz(x) : 32; }

// ---- fibers ----

enum { HB_SIM_MAXT = 1024, HB_SIM_STACK = 64 << 10, HB_SIM_REDZONE = 256, HB_SIM_MAXSHARED = 48 << 10 };
static const unsigned HB_SIM_NOSTACK = ~0u;

static void (*hb_sim_fn)(void **);
static void **hb_sim_params;
HB_SIM_HIDDEN unsigned hb_sim_n;              // threads in the block; fiber hb_sim_n is the launcher
HB_SIM_HIDDEN unsigned hb_sim_cur;            // the running fiber
HB_SIM_HIDDEN unsigned hb_sim_q[HB_SIM_MAXT]; // runnable threads, a ring used as a deque
HB_SIM_HIDDEN unsigned hb_sim_qh, hb_sim_qn;
HB_SIM_HIDDEN unsigned hb_sim_at_sync; // threads waiting at __syncthreads
HB_SIM_HIDDEN unsigned hb_sim_at_warp[HB_SIM_MAXT / 32];
HB_SIM_HIDDEN unsigned hb_sim_finished;
// A thread takes a stack when it starts: a thread that finishes hands its
// stack straight to the next thread when that one has not started (no
// switch), else frees it; the most recently freed stack (still in cache) is
// taken first.
HB_SIM_HIDDEN unsigned hb_sim_stack_of[HB_SIM_MAXT]; // HB_SIM_NOSTACK: not started
HB_SIM_HIDDEN unsigned hb_sim_free[HB_SIM_MAXT], hb_sim_nfree;
static char *hb_sim_stacks; // [guard page][stack] per stack (hb_sim_map_stacks)
static size_t hb_sim_per;   // bytes per stack and guard page

static void hb_sim_entry();

static inline void hb_sim_push(unsigned t) { hb_sim_q[(hb_sim_qh + hb_sim_qn++) & (HB_SIM_MAXT - 1)] = t; }

static inline void hb_sim_push_front(unsigned t) {
    hb_sim_qh = (hb_sim_qh - 1) & (HB_SIM_MAXT - 1);
    hb_sim_q[hb_sim_qh] = t;
    hb_sim_qn++;
}

static inline unsigned hb_sim_pop() {
    if (hb_sim_qn == 0) return hb_sim_n;
    unsigned t = hb_sim_q[hb_sim_qh];
    hb_sim_qh = (hb_sim_qh + 1) & (HB_SIM_MAXT - 1);
    hb_sim_qn--;
    return t;
}

// hb_sim_top is the first byte above stack s. The tops are staggered by
// cache lines so the fibers' hot frames do not all fall in the same sets.
static inline uintptr_t hb_sim_top(unsigned s) {
    return (uintptr_t)hb_sim_stacks + (s + 1) * hb_sim_per - (s & 63) * 64;
}

#if HB_SIM_ASM
HB_SIM_HIDDEN void *hb_sim_sp[HB_SIM_MAXT + 1];
extern "C" void hb_sim_swap(void **save, void *to) HB_SIM_HIDDEN;
// hb_sim_swap pushes the callee-saved registers, saves the stack pointer in
// *save, and pops the registers of the fiber whose stack pointer is to.
asm(R"(
    .text
    .p2align 4
    .globl hb_sim_swap
    .hidden hb_sim_swap
    .type hb_sim_swap, @function
hb_sim_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size hb_sim_swap, .-hb_sim_swap
)");

static inline void hb_sim_switch(unsigned from, unsigned to) {
    hb_sim_cur = to;
    threadIdx.x = to;
    HB_SIM_CLOBBER;
    hb_sim_swap(&hb_sim_sp[from], hb_sim_sp[to]);
    HB_SIM_CLOBBER;
}

// hb_sim_start gives thread t a stack whose first switch "returns" into
// hb_sim_entry, aligned as after a call.
static void hb_sim_start(unsigned t) {
    unsigned s = hb_sim_free[--hb_sim_nfree];
    hb_sim_stack_of[t] = s;
    uintptr_t a = (hb_sim_top(s) & ~(uintptr_t)15) - 16;
    void **p = (void **)a;
    p[0] = (void *)&hb_sim_entry;
    p[1] = 0;
    for (int i = 1; i <= 6; i++) p[-i] = 0;
    hb_sim_sp[t] = (void *)(a - 6 * sizeof(void *));
}

// hb_sim_prefetch fetches the live top of the stack of the thread that runs
// after the next switch: a block's fibers take turns, so their stacks are
// out of the first-level cache by the time they run again.
// (always_inline: a function of prefetches alone looks pure to GCC, which
// would drop calls to it.)
__attribute__((always_inline)) static inline void hb_sim_prefetch() {
    if (hb_sim_qn == 0) return;
    unsigned s = hb_sim_stack_of[hb_sim_q[hb_sim_qh]];
    if (s == HB_SIM_NOSTACK) return;
    const char *sp = (const char *)hb_sim_sp[hb_sim_q[hb_sim_qh]], *top = (const char *)hb_sim_top(s);
    for (const char *p = sp; p < top && p < sp + 4 * 64; p += 64) __builtin_prefetch(p, 1);
}
#else
static ucontext_t hb_sim_uc[HB_SIM_MAXT + 1];

static inline void hb_sim_switch(unsigned from, unsigned to) {
    hb_sim_cur = to;
    threadIdx.x = to;
    HB_SIM_CLOBBER;
    swapcontext(&hb_sim_uc[from], &hb_sim_uc[to]);
    HB_SIM_CLOBBER;
}

static void hb_sim_start(unsigned t) {
    unsigned s = hb_sim_free[--hb_sim_nfree];
    hb_sim_stack_of[t] = s;
    getcontext(&hb_sim_uc[t]);
    hb_sim_uc[t].uc_stack.ss_sp = hb_sim_stacks + s * hb_sim_per + (hb_sim_per - HB_SIM_STACK);
    hb_sim_uc[t].uc_stack.ss_size = hb_sim_top(s) - (uintptr_t)hb_sim_uc[t].uc_stack.ss_sp;
    hb_sim_uc[t].uc_link = 0;
    makecontext(&hb_sim_uc[t], hb_sim_entry, 0);
}

static inline void hb_sim_prefetch() {}
#endif

// hb_sim_next switches from fiber me to the next runnable thread (or the
// launcher when there is none).
static inline void hb_sim_next(unsigned me) {
    unsigned to = hb_sim_pop();
    if (to < hb_sim_n && hb_sim_stack_of[to] == HB_SIM_NOSTACK) hb_sim_start(to);
    hb_sim_prefetch();
    hb_sim_switch(me, to);
}

// hb_sim_wait parks the running fiber until another one queues it.
static void hb_sim_wait() {
    unsigned me = hb_sim_cur;
    hb_sim_next(me);
    hb_sim_cur = me;
    threadIdx.x = me;
}

static void hb_sim_entry() {
    for (;;) {
        hb_sim_fn(hb_sim_params);
        HB_SIM_CLOBBER;
        hb_sim_finished++;
        unsigned me = hb_sim_cur, s = hb_sim_stack_of[me];
        if (hb_sim_qn > 0 && hb_sim_stack_of[hb_sim_q[hb_sim_qh]] == HB_SIM_NOSTACK) {
            unsigned t = hb_sim_pop(); // runs here, on this stack
            hb_sim_stack_of[t] = s;
            hb_sim_cur = t;
            threadIdx.x = t;
            HB_SIM_CLOBBER;
            continue;
        }
        hb_sim_free[hb_sim_nfree++] = s;
        hb_sim_next(me); // never returns: a finished thread is not queued
        __builtin_trap();
    }
}

static void __syncthreads() {
    HB_SIM_CLOBBER;
    if (++hb_sim_at_sync == hb_sim_n) {
        hb_sim_at_sync = 0;
        for (unsigned t = 0; t < hb_sim_n; t++)
            if (t != threadIdx.x) hb_sim_push(t);
    } else {
        hb_sim_wait();
    }
    HB_SIM_CLOBBER;
}

static inline unsigned hb_sim_warp_base() { return threadIdx.x & ~31u; }
static inline unsigned hb_sim_warp_lanes() { return min(32u, hb_sim_n - hb_sim_warp_base()); }

// hb_sim_warp_barrier returns once every lane of the caller's warp called it.
static void hb_sim_warp_barrier() {
    HB_SIM_CLOBBER;
    unsigned w = threadIdx.x >> 5, base = hb_sim_warp_base(), lanes = hb_sim_warp_lanes();
    if (++hb_sim_at_warp[w] == lanes) {
        hb_sim_at_warp[w] = 0;
        // The warp runs next, while its stacks are in cache.
        for (unsigned t = base + lanes; t-- > base;)
            if (t != threadIdx.x) hb_sim_push_front(t);
    } else {
        hb_sim_wait();
    }
    HB_SIM_CLOBBER;
}

static void __syncwarp(unsigned = 0xffffffffu) { hb_sim_warp_barrier(); }

// Warp exchanges alternate between two slot arrays, so one barrier each
// suffices: a lane rewrites an array two exchanges later, after the next
// barrier, which its whole warp passes only after reading this one.
HB_SIM_HIDDEN unsigned long long hb_sim_x[2][HB_SIM_MAXT];
HB_SIM_HIDDEN unsigned char hb_sim_phase[HB_SIM_MAXT];

static unsigned long long *hb_sim_publish(unsigned long long u) {
    unsigned me = threadIdx.x, ph = hb_sim_phase[me];
    hb_sim_phase[me] = ph ^ 1;
    hb_sim_x[ph][me] = u;
    hb_sim_warp_barrier();
    return hb_sim_x[ph];
}

// hb_sim_exchange returns v of lane src of the caller's warp (its own v when
// src is not a lane of the block).
template <class T> static T hb_sim_exchange(T v, unsigned src) {
    static_assert(sizeof(T) <= 8, "warp exchange of more than 8 bytes");
    unsigned long long u = 0;
    memcpy(&u, &v, sizeof(T));
    unsigned long long *x = hb_sim_publish(u);
    unsigned s = hb_sim_warp_base() + src;
    if (src < hb_sim_warp_lanes()) u = x[s];
    T out;
    memcpy(&out, &u, sizeof(T));
    return out;
}

template <class T> static T __shfl_sync(unsigned, T v, int srcLane, int width = 32) {
    unsigned lane = threadIdx.x & 31u, w = (unsigned)width;
    return hb_sim_exchange(v, (lane & ~(w - 1)) + ((unsigned)srcLane & (w - 1)));
}

template <class T> static T __shfl_xor_sync(unsigned, T v, int laneMask, int width = 32) {
    unsigned lane = threadIdx.x & 31u, w = (unsigned)width, src = lane ^ (unsigned)laneMask;
    return hb_sim_exchange(v, src >= (lane & ~(w - 1)) + w ? lane : src);
}

template <class T> static T __shfl_up_sync(unsigned, T v, unsigned delta, int width = 32) {
    unsigned lane = threadIdx.x & 31u, w = (unsigned)width;
    return hb_sim_exchange(v, (lane & (w - 1)) >= delta ? lane - delta : lane);
}

template <class T> static T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
    unsigned lane = threadIdx.x & 31u, w = (unsigned)width;
    return hb_sim_exchange(v, (lane & (w - 1)) + delta < w ? lane + delta : lane);
}

static unsigned __ballot_sync(unsigned, int p) {
    unsigned long long *x = hb_sim_publish(p != 0);
    unsigned m = 0, base = hb_sim_warp_base(), lanes = hb_sim_warp_lanes();
    for (unsigned l = 0; l < lanes; l++)
        if (x[base + l]) m |= 1u << l;
    return m;
}

static int __all_sync(unsigned mask, int p) {
    unsigned lanes = hb_sim_warp_lanes();
    unsigned full = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    return __ballot_sync(mask, p) == full;
}

static int __any_sync(unsigned mask, int p) { return __ballot_sync(mask, p) != 0; }

static unsigned __activemask() {
    unsigned lanes = hb_sim_warp_lanes();
    return lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
}

// Dynamic shared memory: extern __shared__ arrays point here (the rewrite
// in hostSource). Each block starts with it poisoned (0xff bytes: NaN floats),
// and a red zone after the launch's size catches writes past it.
HB_SIM_HIDDEN alignas(128) unsigned char hb_sim_dyn_shared[HB_SIM_MAXSHARED + HB_SIM_REDZONE];

// ---- thread-block clusters ----
//
// A cluster launch (LaunchCluster in cudasim.go) runs every block on a
// worker of its own, so the blocks of a cluster run at once, as on a GPU.
// hb_sim_ctab is shared by the workers' copies of this library: word b
// holds block b's dynamic shared memory address, then each cluster has an
// arrival count and a generation for its barrier. A launch without
// clusters is a grid of one-block clusters (ctab null), as in CUDA.
//
// Misuse fails the launch (hb_sim_fault, returned by hb_sim_launch): a
// second arrive before a wait or a wait without an arrive (4), mapping a
// pointer outside the block's dynamic shared memory or a rank outside the
// cluster (5), a wait that lasts 60 s because a block of the cluster never
// arrives (6: every block of a cluster must reach each barrier equally
// often), and mapping a peer's shared memory before this block has passed
// a cluster barrier (7: CUDA does not promise that the peer has started).
HB_SIM_HIDDEN unsigned long long *hb_sim_ctab;
HB_SIM_HIDDEN unsigned hb_sim_csize = 1;
HB_SIM_HIDDEN int hb_sim_arrived;        // the block arrived and has not waited yet
HB_SIM_HIDDEN int hb_sim_cluster_synced; // the block has passed a cluster barrier
HB_SIM_HIDDEN unsigned long long hb_sim_gen_seen;
HB_SIM_HIDDEN long long hb_sim_fault;

static void hb_sim_set_fault(long long code) {
    if (!hb_sim_fault) hb_sim_fault = code;
}

static unsigned __clusterRelativeBlockRank() { return blockIdx.x % hb_sim_csize; }
static unsigned __clusterSizeInBlocks() { return hb_sim_csize; }

// hb_sim_cluster_words is the caller's cluster's arrival count and generation.
static unsigned long long *hb_sim_cluster_words() { return hb_sim_ctab + gridDim.x + 2 * (blockIdx.x / hb_sim_csize); }

// __cluster_barrier_arrive: once the whole block is there, thread 0
// counts the block in; the last block of the cluster starts the next
// generation, which its peers' waits see (release/acquire: the writes
// before an arrive are visible after the wait).
static void __cluster_barrier_arrive() {
    __syncthreads();
    if (threadIdx.x != 0) return;
    if (hb_sim_arrived) hb_sim_set_fault(4);
    hb_sim_arrived = 1;
    if (!hb_sim_ctab) return;
    unsigned long long *w = hb_sim_cluster_words();
    hb_sim_gen_seen = __atomic_load_n(&w[1], __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&w[0], 1, __ATOMIC_ACQ_REL) == hb_sim_csize) {
        __atomic_store_n(&w[0], 0, __ATOMIC_RELAXED);
        __atomic_store_n(&w[1], hb_sim_gen_seen + 1, __ATOMIC_RELEASE);
    }
}

static void __cluster_barrier_wait() {
    __syncthreads();
    if (threadIdx.x == 0) {
        if (!hb_sim_arrived) {
            hb_sim_set_fault(4);
        } else if (hb_sim_ctab && !hb_sim_fault) { // after a fault the launch fails anyway: do not wait again
            unsigned long long *w = hb_sim_cluster_words();
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (long long spins = 1; __atomic_load_n(&w[1], __ATOMIC_ACQUIRE) == hb_sim_gen_seen; spins++) {
                sched_yield(); // the peers run on other workers
                if ((spins & 1023) == 0) {
                    clock_gettime(CLOCK_MONOTONIC, &t1);
                    if (t1.tv_sec - t0.tv_sec > 60) {
                        hb_sim_set_fault(6);
                        break;
                    }
                }
            }
        }
        hb_sim_arrived = 0;
        hb_sim_cluster_synced = 1;
    }
    __syncthreads();
}

static void __cluster_barrier_sync() {
    __cluster_barrier_arrive();
    __cluster_barrier_wait();
}

// __cluster_map_shared_rank is p's place in the dynamic shared memory of
// block rank of the caller's cluster.
static void *__cluster_map_shared_rank(void *p, unsigned rank) {
    unsigned char *q = (unsigned char *)p;
    if (q < hb_sim_dyn_shared || q >= hb_sim_dyn_shared + HB_SIM_MAXSHARED || rank >= hb_sim_csize) {
        hb_sim_set_fault(5);
        return p;
    }
    if (!hb_sim_cluster_synced) hb_sim_set_fault(7);
    if (!hb_sim_ctab) return p;
    unsigned long long base = __atomic_load_n(&hb_sim_ctab[blockIdx.x - blockIdx.x % hb_sim_csize + rank], __ATOMIC_ACQUIRE);
    if (!base) { // the peer has not started
        hb_sim_set_fault(7);
        return p;
    }
    return (void *)(uintptr_t)(base + (unsigned long long)(q - hb_sim_dyn_shared));
}

// hb_sim_invoke calls kernel k with its arguments read from p[i] (each a
// pointer to 8 bytes: a device pointer, a long long, or a float in the low
// 4 bytes).
template <typename... A, size_t... I>
static void hb_sim_call(void (*k)(A...), void **p, std::index_sequence<I...>) { k(*static_cast<A *>(p[I])...); }
template <typename... A> static void hb_sim_invoke(void (*k)(A...), void **p) {
    hb_sim_call(k, p, std::index_sequence_for<A...>{});
}

// ---- the kernel source follows, then its trampolines and launch.cpp ----
