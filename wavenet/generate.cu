// Per-sample step of the GPU generator (generate_gpu.go), compiled at run
// time by NVRTC. One step for B utterances is: wg_first (input 1x1 conv),
// one wg_layer per residual layer, wg_head1, wg_head2, the head's sampling
// kernel (outputs/), wg_advance. The kernels read the current sample index t
// from device memory (tbuf), so a run of steps is captured once as a CUDA
// graph and replayed.
//
// Each wg_layer launch also finishes the previous layer: its blocks all
// recompute the previous layer's residual output x(t) = (x_prev + Wr z_prev +
// br) * sqrt(0.5) (a 128x128 product, cheap next to a launch) instead of
// waiting for a second kernel, and each block adds its share of the previous
// layer's skip rows. So a step is L + 5 launches, not 2L + 5.
//
// Layout: the weights are the CPU generator's folded copy (genOffsets); tab
// is an int table (float slots reinterpreted) of sizes and offsets, see
// gpuTab in generate_gpu.go. Activations are [B][n] per buffer; the dilated
// conv's history is a ring of span+1 vectors per layer and utterance, so the
// slot written at t never aliases a tap read at t.

typedef long long ll;

enum {
    TR = 0, TG, TH, TS, TK, TL, TO, TCIN, TNSL, TCHUNK, TRINGPER, TCONDB,
    TFIRST, TFIRSTB, TLAST1, TLAST1B, TLAST2, TLAST2B, TSKIPB,
    THDR = 24, TPERLAYER = 8
};
// Per layer, at THDR + l*TPERLAYER: offConv, offRs, offRsB, dil, span, ringOff.

__device__ __forceinline__ float warp_allsum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ int tab_at(const float *tab, int i) { return __float_as_int(tab[i]); }

extern "C" {

// wg_first: x0 = W_first enc + b_first into X[0], and each utterance's skip
// sum starts at the sum of every layer's skip bias.
__global__ void wg_first(const float *W, const float *tab, const float *enc, float *X, float *skip, ll B) {
    const int R = tab_at(tab, TR), S = tab_at(tab, TS), Cin = tab_at(tab, TCIN);
    const float *Wf = W + tab_at(tab, TFIRST), *bf = W + tab_at(tab, TFIRSTB), *sb = W + tab_at(tab, TSKIPB);
    const ll b = blockIdx.x;
    if (b >= B) return;
    const float *e = enc + b * Cin;
    for (int r = threadIdx.x; r < R; r += blockDim.x) {
        float acc = 0.0f;
        for (int c = 0; c < Cin; c++) acc += Wf[(ll)r * Cin + c] * e[c];
        X[b * R + r] = acc + bf[r];
    }
    for (int s = threadIdx.x; s < S; s += blockDim.x) skip[b * S + s] = sb[s];
}

// wg_layer: layer l for every utterance; blocks b*nsl .. b*nsl+nsl-1 serve
// utterance b, block sl owning gate rows [h0,h1) and (for l > 0) the
// previous layer's skip rows [s0,s1). Dynamic shared memory: (K*R + H)
// floats.
__global__ void __launch_bounds__(1024) wg_layer(const float *W, const float *tab, float *X, float *ring, float *Z, float *skip,
                         const float *proj, const float *tbuf, ll l, ll B, float resScale) {
    extern __shared__ float sh[];
    const int R = tab_at(tab, TR), G = tab_at(tab, TG), H = tab_at(tab, TH), S = tab_at(tab, TS);
    const int K = tab_at(tab, TK), L = tab_at(tab, TL), nsl = tab_at(tab, TNSL), chunk = tab_at(tab, TCHUNK);
    const ll ringPer = tab_at(tab, TRINGPER);
    const ll b = blockIdx.x / nsl;
    const int sl = blockIdx.x % nsl;
    if (b >= B) return;
    const int t = __float_as_int(tbuf[0]);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    float *xs = sh, *zp = sh + K * R;
    float *xcur = xs + (K - 1) * R;
    float *Xl = X + (l * B + b) * R;
    if (l == 0) {
        for (int r = threadIdx.x; r < R; r += blockDim.x) xcur[r] = Xl[r];
    } else {
        const int pbase = THDR + (int)(l - 1) * TPERLAYER;
        const float *Wr = W + tab_at(tab, pbase + 1), *br = W + tab_at(tab, pbase + 2);
        const float *Ws = Wr + (ll)R * H;
        const float *Xp = X + ((l - 1) * B + b) * R;
        const float *Zp = Z + (((l - 1) & 1) * B + b) * H;
        for (int h = threadIdx.x; h < H; h += blockDim.x) zp[h] = Zp[h];
        __syncthreads();
        for (int r = warp; r < R; r += nw) {
            float acc = 0.0f;
            for (int h = lane; h < H; h += 32) acc += Wr[(ll)r * H + h] * zp[h];
            acc = warp_allsum(acc);
            if (lane == 0) xcur[r] = (acc + br[r] + Xp[r]) * resScale;
        }
        const int s0 = sl * S / nsl, s1 = (sl + 1) * S / nsl;
        for (int s = s0 + warp; s < s1; s += nw) {
            float acc = 0.0f;
            for (int h = lane; h < H; h += 32) acc += Ws[(ll)s * H + h] * zp[h];
            acc = warp_allsum(acc);
            if (lane == 0) skip[b * S + s] += acc;
        }
    }
    const int base = THDR + (int)l * TPERLAYER;
    const int dil = tab_at(tab, base + 3), span = tab_at(tab, base + 4);
    float *rg = ring + b * ringPer + tab_at(tab, base + 5);
    if (span > 0) {
        for (int k = 0; k < K - 1; k++) {
            int p = (t - (K - 1 - k) * dil) % (span + 1);
            if (p < 0) p += span + 1;
            for (int r = threadIdx.x; r < R; r += blockDim.x) xs[k * R + r] = rg[(ll)p * R + r];
        }
    }
    __syncthreads();
    if (sl == 0) {
        for (int r = threadIdx.x; r < R; r += blockDim.x) {
            if (l > 0) Xl[r] = xcur[r];
            if (span > 0) rg[(ll)(t % (span + 1)) * R + r] = xcur[r];
        }
    }
    const float *Wc = W + tab_at(tab, base + 0);
    const float *cb = W + tab_at(tab, TCONDB) + l * G;
    const float *pj = proj + (b * chunk + t % chunk) * ((ll)L * G) + l * G;
    float *Zo = Z + ((l & 1) * B + b) * H;
    const int KR = K * R;
    const int h0 = sl * H / nsl, h1 = (sl + 1) * H / nsl;
    for (int h = h0 + warp; h < h1; h += nw) {
        float a = 0.0f, c = 0.0f;
        const float *wa = Wc + (ll)h * KR, *wb = Wc + (ll)(h + H) * KR;
        for (int i = lane; i < KR; i += 32) {
            a += wa[i] * xs[i];
            c += wb[i] * xs[i];
        }
        a = warp_allsum(a);
        c = warp_allsum(c);
        if (lane == 0) {
            a += pj[h] + cb[h];
            c += pj[h + H] + cb[h + H];
            Zo[h] = tanhf(a) * (1.0f / (1.0f + expf(-c)));
        }
    }
}

// wg_head1: the last layer's skip rows (every block, full vector), then
// a1 = ReLU(skip * skipNorm) and block sl's rows of a2 = ReLU(W1 a1 + b1).
// Dynamic shared memory: (H + S) floats.
__global__ void __launch_bounds__(1024) wg_head1(const float *W, const float *tab, const float *Z, const float *skip, float *A2, ll B, float skipNorm) {
    extern __shared__ float sh[];
    const int R = tab_at(tab, TR), H = tab_at(tab, TH), S = tab_at(tab, TS), L = tab_at(tab, TL), nsl = tab_at(tab, TNSL);
    const ll b = blockIdx.x / nsl;
    const int sl = blockIdx.x % nsl;
    if (b >= B) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    float *zp = sh, *a1 = sh + H;
    const int pbase = THDR + (L - 1) * TPERLAYER;
    const float *Ws = W + tab_at(tab, pbase + 1) + (ll)R * H;
    const float *Zp = Z + ((ll)((L - 1) & 1) * B + b) * H;
    for (int h = threadIdx.x; h < H; h += blockDim.x) zp[h] = Zp[h];
    __syncthreads();
    for (int s = warp; s < S; s += nw) {
        float acc = 0.0f;
        for (int h = lane; h < H; h += 32) acc += Ws[(ll)s * H + h] * zp[h];
        acc = warp_allsum(acc);
        if (lane == 0) a1[s] = fmaxf((skip[b * S + s] + acc) * skipNorm, 0.0f);
    }
    __syncthreads();
    const float *W1 = W + tab_at(tab, TLAST1), *b1 = W + tab_at(tab, TLAST1B);
    const int s0 = sl * S / nsl, s1 = (sl + 1) * S / nsl;
    for (int s = s0 + warp; s < s1; s += nw) {
        float acc = 0.0f;
        for (int i = lane; i < S; i += 32) acc += W1[(ll)s * S + i] * a1[i];
        acc = warp_allsum(acc);
        if (lane == 0) A2[b * S + s] = fmaxf(acc + b1[s], 0.0f);
    }
}

// wg_head2: out = W2 a2 + b2, one block per utterance. Dynamic shared
// memory: S floats.
__global__ void wg_head2(const float *W, const float *tab, const float *A2, float *out, ll B) {
    extern __shared__ float sh[];
    const int S = tab_at(tab, TS), O = tab_at(tab, TO);
    const ll b = blockIdx.x;
    if (b >= B) return;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    for (int s = threadIdx.x; s < S; s += blockDim.x) sh[s] = A2[b * S + s];
    __syncthreads();
    const float *W2 = W + tab_at(tab, TLAST2), *b2 = W + tab_at(tab, TLAST2B);
    for (int o = warp; o < O; o += nw) {
        float acc = 0.0f;
        for (int i = lane; i < S; i += 32) acc += W2[(ll)o * S + i] * sh[i];
        acc = warp_allsum(acc);
        if (lane == 0) out[b * O + o] = acc + b2[o];
    }
}

// wg_advance: wave[b][t] = y[b] (while t < Tmax), then t += 1. One block.
__global__ void wg_advance(float *wave, const float *y, float *tbuf, ll B, ll Tmax) {
    const int t = __float_as_int(tbuf[0]);
    for (ll b = threadIdx.x; b < B; b += blockDim.x)
        if (t < Tmax) wave[b * Tmax + t] = y[b];
    __syncthreads();
    if (threadIdx.x == 0) tbuf[0] = __int_as_float(t + 1);
}

// wg_force (tests): enc = encAll[t] (n floats), teacher forcing.
__global__ void wg_force(float *enc, const float *encAll, const float *tbuf, ll n) {
    const ll t = __float_as_int(tbuf[0]);
    for (ll i = threadIdx.x; i < n; i += blockDim.x) enc[i] = encAll[t * n + i];
}

// wg_trace (tests): trace[t] = out (n floats).
__global__ void wg_trace(float *trace, const float *out, const float *tbuf, ll n) {
    const ll t = __float_as_int(tbuf[0]);
    for (ll i = threadIdx.x; i < n; i += blockDim.x) trace[t * n + i] = out[i];
}

}  // extern "C"
