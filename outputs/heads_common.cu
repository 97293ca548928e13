// Device helpers shared by the output-head kernels. device.go puts this file
// in front of each head's .cu before compiling it (NVRTC, --std=c++14
// -default-device, no fast-math), so every head module has its own copy.
//
// Conventions of the head kernels:
//   - Loss and Bits run one thread per (b, t) timestep, idx = b*T + t, and
//     loop over the C channels of that timestep in double precision, the
//     float64 maths of the Go stepper; channel c of the timestep is at
//     logits[(b*C + c)*T + t], so adjacent threads read adjacent floats.
//   - Loss kernels write one double partial sum per block (HB_BLOCK threads,
//     a shared-memory tree, no atomics) into a float buffer reinterpreted as
//     double; wc_heads_sum adds the partials in order, so the sum does not
//     depend on scheduling.
//   - Double-precision head options arrive as long long carrying the
//     float64 bits (the launch ABI has only float*, long long and float).
//   - Sample kernels draw from a per-utterance splitmix64 stream: the state
//     s is a 64-bit counter held in two float slots (low word first), draw i
//     is mix(s + (i+1)*GAMMA), and the kernel adds n*GAMMA to the state after
//     using n draws. Draws are counter-based, so lanes of a warp can take
//     theirs in parallel.
//   - Warp-level helpers must be called by all 32 lanes of a warp; the
//     kernels keep every lane of a block on the same path through them.

typedef long long ll;
typedef unsigned long long u64;

#define HB_BLOCK 256
#define HB_FULL 0xffffffffu
#define HB_GAMMA 0x9E3779B97F4A7C15ull
#define HB_LN2 0.693147180559945309417232121458176568
#define HB_2PI 6.283185307179586476925286766559005768
// 2^-53: the spacing of the uniform doubles.
#define HB_U53 (1.0 / 9007199254740992.0)
#define HB_INF __longlong_as_double(0x7ff0000000000000LL)

__device__ __forceinline__ double hb_f64(ll bits) { return __longlong_as_double(bits); }

__device__ __forceinline__ ll hb_gid() { return (ll)blockIdx.x * blockDim.x + threadIdx.x; }

// hb_clamp is outputs.go's clamp: plain compares, NaN passes through.
__device__ __forceinline__ double hb_clamp(double x, double lo, double hi) {
    if (x < lo) return lo;
    if (x > hi) return hi;
    return x;
}

// softplus(x) = log(1+e^x) and the logistic sigmoid, without overflow (as
// outputs.go).
__device__ __forceinline__ double hb_softplus(double x) {
    if (x > 0) return x + log1p(exp(-x));
    return log1p(exp(x));
}

__device__ __forceinline__ double hb_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

// ---- random numbers ----

__device__ __forceinline__ u64 hb_mix(u64 z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ u64 hb_rng_load(const float *rng, ll b) {
    const unsigned *p = reinterpret_cast<const unsigned *>(rng) + 2 * b;
    return (u64)p[0] | ((u64)p[1] << 32);
}

__device__ __forceinline__ void hb_rng_store(float *rng, ll b, u64 s) {
    unsigned *p = reinterpret_cast<unsigned *>(rng) + 2 * b;
    p[0] = (unsigned)s;
    p[1] = (unsigned)(s >> 32);
}

// hb_uniform is draw i of the stream at state s: a 53-bit uniform double in
// [0,1), like Go's rand.Float64.
__device__ __forceinline__ double hb_uniform(u64 s, ll i) {
    u64 z = hb_mix(s + (u64)(i + 1) * HB_GAMMA);
    return (double)(z >> 11) * HB_U53;
}

// ---- reductions ----

// hb_block_sum returns the sum of v over a block of HB_BLOCK threads to
// every thread (every thread of the block must call it).
__device__ double hb_block_sum(double v) {
    __shared__ double sh[HB_BLOCK];
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = HB_BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

// hb_loss_partial writes the block's sum of v as one double at partial[blockIdx.x].
__device__ __forceinline__ void hb_loss_partial(double v, float *partial) {
    double s = hb_block_sum(v);
    if (threadIdx.x == 0) reinterpret_cast<double *>(partial)[blockIdx.x] = s;
}

// hb_sum_exp is one thread's softmax denominator over n logits at stride
// T: it sets *mx to their maximum and returns sum exp(z - *mx), both in
// double (outputs.go's softmax: max first, then the sum in channel order).
__device__ double hb_sum_exp(const float *z, ll n, ll T, double *mx) {
    double m = (double)z[0];
    for (ll c = 1; c < n; c++) {
        double v = (double)z[c * T];
        if (v > m) m = v;
    }
    double s = 0.0;
    for (ll c = 0; c < n; c++) s += exp((double)z[c * T] - m);
    *mx = m;
    return s;
}

// Butterfly reductions: every lane ends with the same, bit-identical value
// (a+b == b+a in IEEE arithmetic).
__device__ __forceinline__ double hb_warp_sum(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(HB_FULL, v, o);
    return v;
}

__device__ __forceinline__ double hb_warp_max(double v) {
    for (int o = 16; o > 0; o >>= 1) {
        double u = __shfl_xor_sync(HB_FULL, v, o);
        if (u > v) v = u;
    }
    return v;
}

__device__ __forceinline__ int hb_warp_max_int(int v) {
    for (int o = 16; o > 0; o >>= 1) {
        int u = __shfl_xor_sync(HB_FULL, v, o);
        if (u > v) v = u;
    }
    return v;
}

// hb_warp_softmax_draw draws a class from softmax(z[0..n) / t) (channel
// stride 1; invT = 1/t, exact at t = 1) with the uniform u in [0,1); all 32
// lanes call it with the same z, n, invT and u and get the class back. Lane L owns the contiguous channels [L*ch,
// (L+1)*ch); the lanes' masses are prefix-summed, the lane whose interval
// holds u*total walks its channels. Like outputs.go's sampleSoftmax, a u
// that falls in a rounding gap at the top takes the last class with mass.
__device__ int hb_warp_softmax_draw(const float *z, int n, double invT, double u) {
    int lane = threadIdx.x & 31;
    int ch = (n + 31) / 32;
    int j0 = min(n, lane * ch), j1 = min(n, j0 + ch);
    double mx = -HB_INF;
    for (int j = j0; j < j1; j++) {
        double v = (double)z[j];
        if (v > mx) mx = v;
    }
    mx = hb_warp_max(mx);
    double s = 0.0;
    int lastNZ = -1;
    for (int j = j0; j < j1; j++) {
        double p = exp(((double)z[j] - mx) * invT);
        if (p > 0) lastNZ = j;
        s += p;
    }
    double incl = s; // inclusive prefix sum over lanes
    for (int o = 1; o < 32; o <<= 1) {
        double t = __shfl_up_sync(HB_FULL, incl, o);
        if (lane >= o) incl += t;
    }
    double excl = __shfl_up_sync(HB_FULL, incl, 1);
    if (lane == 0) excl = 0.0;
    double total = __shfl_sync(HB_FULL, incl, 31);
    double target = u * total;
    unsigned sel = __ballot_sync(HB_FULL, target >= excl && target < incl);
    int fallback = hb_warp_max_int(lastNZ);
    int owner = sel ? __ffs(sel) - 1 : 0;
    int c = lastNZ;
    if (sel && lane == owner) {
        double acc = excl;
        for (int j = j0; j < j1; j++) {
            acc += exp(((double)z[j] - mx) * invT);
            if (target < acc) {
                c = j;
                break;
            }
        }
    }
    int picked = __shfl_sync(HB_FULL, c, owner);
    int q = sel ? picked : fallback;
    return q < 0 ? n - 1 : q;
}

extern "C" {

// wc_heads_sum adds n double partials in order (one block of HB_BLOCK
// threads) and writes the double sum into out[0..1].
__global__ void wc_heads_sum(const float *partial, long long n, float *out) {
    const double *p = reinterpret_cast<const double *>(partial);
    double acc = 0.0;
    for (ll i = threadIdx.x; i < n; i += HB_BLOCK) acc += p[i];
    double s = hb_block_sum(acc);
    if (threadIdx.x == 0) reinterpret_cast<double *>(out)[0] = s;
}

} // extern "C"
