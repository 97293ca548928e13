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
// For batches up to 32 the network part of a step can instead be one launch,
// wf_step (below), whose blocks all run at once and pass each other their
// results: at batch 1 a step's time is mostly the gaps between kernels.
//
// Layout: the weights are the CPU generator's folded copy (genOffsets); tab
// is an int table (float slots reinterpreted) of sizes and offsets, see
// NewGPUGenerator in generate_gpu.go. Activations are [B][n] per buffer; the dilated
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

// proj_at is utterance b's conditioning projection for layer l at sample t
// (G = 2H values): proj holds chunk samples of L layers per utterance.
__device__ __forceinline__ const float *proj_at(const float *proj, int b, int chunk, int t, int L, int G, int l) {
    return proj + (b * chunk + t % chunk) * ((ll)L * G) + (ll)l * G;
}

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
    const float *pj = proj_at(proj, b, chunk, t, L, G, l);
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

// ---- wf_step: the whole network step in one launch, for small batches ----
//
// A step of L+5 launches spends most of its time between kernels at batch
// 1. wf_step runs the network part of a step (everything but sampling) as
// one launch of NB blocks that all run at once (the host launches no more
// than compute.CoResident allows) and hand each other their results through
// tagged words instead of kernel boundaries: a word is the 32-bit value in
// the low half and a tag, t*(L+2) + round + 1, in the high half, stored and
// loaded as one 8-byte volatile access (strong, and past L1), so a reader
// that sees the tag it waits for sees the value written with it, and no
// fence or grid barrier is needed. Words are cleared to 0 per utterance
// group (the host), and each round writes its own region, so a tag is never
// ambiguous.
//
// Round l < L computes layer l for the current sample. Its inputs are layer
// l-1's outputs, [x_{l-1}, z_{l-1}] (region l-1; for l = 0 the encoded input),
// and the past taps of x_l from the ring. The current tap x_l(t) is not
// waited for: with x_l = a (x_{l-1} + Wr z_{l-1} + br), the host folds
// Wcur x_l into a Wcur x_{l-1} + (a Wcur Wr) z_{l-1} + a Wcur br, so a round
// needs one exchange, not two. Each round's rows are one matrix over its
// input vector (fused weights, see fusedWeights in generate_fused.go): the
// gate rows (in pairs a, b sharing a warp), the residual rows (x_l, also
// written to the ring for later steps) and, from round 1, the skip rows of
// layer l-1 (summed by their owner in skip[]). Round L adds the last skip
// rows and publishes a1 = ReLU(skip * skipNorm), round L+1 a2 = ReLU(W1 a1 +
// b1), round L+2 writes out = W2 a2 + b2. Block j owns rows [j*n/NB,
// (j+1)*n/NB) of each kind.
//
// Within a round a block first reads the round's input once into shared
// memory (a thread per word polls it), so the L2 sees one request per word
// and block, not one per warp; each warp takes (task, utterance) pairs, a
// task being a row or a gate pair, and loads its first pair's weights into
// registers and its constants before that wait.
//
// A wait longer than WF_SPIN_LIMIT pauses (the blocks were not all running:
// another process sharing the GPU's SMs) sets status[0] = 1 and stops
// waiting; the host checks status after the group and reruns it with the
// layered kernels.

#define WF_NREG 12 // fresh weights per lane held in registers (rows up to 384 long)
#define WF_BMAX 32 // utterances per launch (fusedMaxBatch)
#ifdef __CUDA_ARCH__
#define WF_SPIN_LIMIT (1ll << 18) // about 0.1-0.3 s of 32 ns pauses and L2 reads
#else
#define WF_SPIN_LIMIT (1ll << 22) // the simulator's pause yields the OS thread: allow for a busy machine
#endif

enum { FR = 0, FH, FS, FO, FK, FL, FCIN, FCHUNK, FNB, FRINGPER, FHDR = 16, FPER = 12 };
// Per round r, at FHDR + r*FPER: offset of the fresh-weight matrix [rows][flen], of
// the row constants, of the past-tap matrix [2H][(K-1)R]; flen; the input region's
// word offset and length per utterance; the output region's; the layer's ring offset,
// dilation and span.
enum { FW = 0, FC, FP, FLEN, FIN, FINLEN, FOUT, FOUTLEN, FRING, FDIL, FSPAN };

typedef unsigned long long wf_word;

__device__ __forceinline__ void wf_pause() {
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 700
    __nanosleep(32);
#endif
}

// wf_wait returns the value of word p once it carries tag (or, once
// status[0] is set, whatever it holds: the host then discards the group).
// status is read only every 1024 pauses, so a poll is one L2 round trip.
__device__ float wf_wait(const wf_word *p, unsigned tag, float *status) {
    const volatile wf_word *vp = (const volatile wf_word *)p;
    wf_word w = *vp;
    for (long long spins = 1; (unsigned)(w >> 32) != tag; spins++) {
        if ((spins & 1023) == 0) {
            if (*(const volatile float *)status != 0.0f) break;
            if (spins >= WF_SPIN_LIMIT) {
                *(volatile float *)status = 1.0f;
                break;
            }
        }
        wf_pause();
        w = *vp;
    }
    return __uint_as_float((unsigned)w);
}

__device__ __forceinline__ void wf_put(wf_word *p, unsigned tag, float v) {
    *(volatile wf_word *)p = ((wf_word)tag << 32) | __float_as_uint(v);
}

// WfShare is block j's share (of NB) of round r's rows of each kind: gate
// pairs [g0, g1), residual rows [r0, r1), skip rows [s0, s1) and head
// rows [h0, h1).
struct WfShare {
    int g0, g1, r0, r1, s0, s1, h0, h1;
};

__device__ __forceinline__ WfShare wf_share(int r, int L, int H, int R, int S, int O, int j, int NB) {
    const int ng = r < L ? H : 0, nr = r < L ? R : 0, ns = (r >= 1 && r <= L) ? S : 0;
    const int nh = r == L + 1 ? S : (r == L + 2 ? O : 0);
    return WfShare{j * ng / NB, (j + 1) * ng / NB, j * nr / NB, (j + 1) * nr / NB,
                   j * ns / NB, (j + 1) * ns / NB, j * nh / NB, (j + 1) * nh / NB};
}

// wf_tasks is the number of (task, utterance) pairs of share w for B utterances.
__device__ __forceinline__ int wf_tasks(const WfShare &w, int B) {
    return ((w.g1 - w.g0) + (w.r1 - w.r0) + (w.s1 - w.s0) + (w.h1 - w.h0)) * B;
}

// wf_task decodes pair tb of round r of share w (tasks in the order gate
// pairs, residual rows, skip rows, head rows; B utterances each) into its
// kind (0 gate pair, 1 residual, 2 skip, 3 head), row index idx in its
// kind, rows rowA (and rowB for a gate pair, else -1) of the round's
// matrix, and utterance b.
struct WfTask {
    int kind, idx, rowA, rowB, b;
};

__device__ __forceinline__ WfTask wf_task(int tb, int B, int r, int L, int H, int R, const WfShare &w) {
    WfTask k;
    k.b = tb % B;
    int task = tb / B;
    k.rowB = -1;
    const int ng = w.g1 - w.g0, nr = w.r1 - w.r0, ns = w.s1 - w.s0;
    if (task < ng) {
        k.kind = 0, k.idx = w.g0 + task, k.rowA = k.idx, k.rowB = H + k.idx;
    } else if ((task -= ng) < nr) {
        k.kind = 1, k.idx = w.r0 + task, k.rowA = 2 * H + k.idx;
    } else if ((task -= nr) < ns) {
        k.kind = 2, k.idx = w.s0 + task, k.rowA = (r < L ? 2 * H + R : 0) + k.idx;
    } else {
        k.kind = 3, k.idx = w.h0 + task - ns, k.rowA = k.idx;
    }
    return k;
}

// WfRound is what a task needs of its round (wf_step's and wcl_step's):
// the round's fused matrix and row constants, its row length and the part
// of a row held in registers, and where the block keeps its past-tap sums
// and skip sums ([L][ngb][nu][2] and [nu][nsb] for nu utterances).
struct WfRound {
    const float *Wm, *cst, *proj, *past, *skip;
    int r, L, H, flen, nreg, chunk, t, ngb, gb0, nu, nsb, s0;
};

// wf_prepare loads task k's first nreg weights of each row into xa, xb
// and, on lane 0, its constants into c0, c1: the row constants and, for a
// gate pair, utterance bg's conditioning projection (none for bg < 0).
__device__ __forceinline__ void wf_prepare(const WfRound &rd, const WfTask &k, int bg, int lane, float (&xa)[WF_NREG],
                                           float (&xb)[WF_NREG], float &c0, float &c1) {
    const float *wa = rd.Wm + (ll)k.rowA * rd.flen, *wb = k.rowB >= 0 ? rd.Wm + (ll)k.rowB * rd.flen : wa;
#pragma unroll
    for (int i = 0; i < WF_NREG; i++) {
        const int e = lane + 32 * i;
        xa[i] = e < rd.nreg ? wa[e] : 0.0f;
        xb[i] = (k.rowB >= 0 && e < rd.nreg) ? wb[e] : 0.0f;
    }
    c0 = 0.0f, c1 = 0.0f;
    if (lane == 0) {
        c0 = rd.cst[k.rowA];
        if (k.rowB >= 0) {
            c1 = rd.cst[k.rowB];
            if (bg >= 0) {
                const int G = 2 * rd.H;
                const float *pj = proj_at(rd.proj, bg, rd.chunk, rd.t, rd.L, G, rd.r);
                c0 += pj[k.idx];
                c1 += pj[rd.H + k.idx];
            }
        }
    }
}

// wf_sums finishes task k's dot products over the round input v, from a
// and c holding its constants (lane 0): lane 0 adds the past taps of a
// gate pair and the running skip sum, the lanes the weights in registers
// and the rest of a long row from memory; the warp's sums end up in every
// lane (c only for a gate pair).
__device__ __forceinline__ void wf_sums(const WfRound &rd, const WfTask &k, const float (&xa)[WF_NREG], const float (&xb)[WF_NREG],
                                        const float *v, int lane, float &a, float &c) {
    const bool pair = k.rowB >= 0;
    if (lane == 0) {
        if (pair) {
            const float *ps = rd.past + (((ll)rd.r * rd.ngb + k.idx - rd.gb0) * rd.nu + k.b) * 2;
            a += ps[0], c += ps[1];
        }
        if (k.kind == 2 && rd.r > 1) a += rd.skip[k.b * rd.nsb + k.idx - rd.s0];
    }
#pragma unroll
    for (int i = 0; i < WF_NREG; i++) {
        const int e = lane + 32 * i;
        if (e < rd.nreg) {
            a += xa[i] * v[e];
            c += xb[i] * v[e];
        }
    }
    if (rd.flen > rd.nreg) {
        const float *wa = rd.Wm + (ll)k.rowA * rd.flen, *wb = pair ? rd.Wm + (ll)k.rowB * rd.flen : wa;
        for (int e = rd.nreg + lane; e < rd.flen; e += 32) {
            a += wa[e] * v[e];
            if (pair) c += wb[e] * v[e];
        }
    }
    a = warp_allsum(a);
    if (pair) c = warp_allsum(c);
}

// wf_step: one step's network for B <= WF_BMAX utterances; see above.
// Arguments as wg_layer's, plus the fused weights Wf and table ftab, the
// exchange words xchF (float pairs) and status. Dynamic shared memory:
// B * (2*L*ceil(H/NB) + ceil(S/NB) + the longest round input) floats.
// One block per SM (the ", 1"): the registers of a warp's weight rows fit
// without spilling, and one block per SM is all the grid needs.
__global__ void __launch_bounds__(256, 1) wf_step(const float *__restrict__ Wf, const float *ftab, float *xchF, float *ring,
                                                  const float *proj, const float *enc, float *out, const float *tbuf,
                                                  float *status, ll B, float skipNorm) {
    wf_word *xch = (wf_word *)xchF;
    const int R = tab_at(ftab, FR), H = tab_at(ftab, FH), S = tab_at(ftab, FS), O = tab_at(ftab, FO);
    const int K = tab_at(ftab, FK), L = tab_at(ftab, FL), Cin = tab_at(ftab, FCIN), chunk = tab_at(ftab, FCHUNK);
    const int NB = tab_at(ftab, FNB);
    const ll ringPer = tab_at(ftab, FRINGPER);
    const int t = __float_as_int(tbuf[0]);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    const int j = blockIdx.x;
    if (B > WF_BMAX || j >= NB) return;
    // After a stall the group's result is discarded (the host reruns it),
    // so the remaining steps return at once; the whole block decides
    // together, as a block must reach its barriers together.
    __shared__ int wf_stop;
    if (threadIdx.x == 0) wf_stop = *(const volatile float *)status != 0.0f;
    __syncthreads();
    if (wf_stop) return;
    const unsigned tag0 = (unsigned)t * (unsigned)(L + 2);
    // Prologue: the past taps of every layer's gate pairs of this block
    // depend only on earlier steps (the rings), so they are all summed
    // here, with many loads in flight, instead of inside the rounds.
    extern __shared__ float sh[];
    const int gb0 = j * H / NB, ngb = (j + 1) * H / NB - gb0;
    const int nsb = (S + NB - 1) / NB;
    float *past = sh;                          // [L][ngb][B][2]
    float *skip = past + (ll)2 * L * ngb * B;  // [B][nsb]: the running sums of this block's skip rows
    float *vin = skip + (ll)nsb * B;           // [B][flen]: the round's input
    for (int q = warp; q < L * ngb; q += nw) {
        const int l = q / ngb, h = gb0 + q % ngb, base = FHDR + l * FPER;
        const int dil = tab_at(ftab, base + FDIL), span = tab_at(ftab, base + FSPAN);
        const int KP = (K - 1) * R;
        const float *pwa = Wf + tab_at(ftab, base + FP) + (ll)h * KP, *pwb = pwa + (ll)H * KP;
        for (int b = 0; b < B; b++) {
            float a = 0.0f, c = 0.0f;
            if (span > 0) {
                const float *rg = ring + tab_at(ftab, base + FRING) + b * ringPer;
                for (int k = 0; k < K - 1; k++) {
                    int p = (t - (K - 1 - k) * dil) % (span + 1);
                    if (p < 0) p += span + 1;
                    const float *xr = rg + (ll)p * R;
                    for (int i = lane; i < R; i += 32) {
                        a += pwa[k * R + i] * xr[i];
                        c += pwb[k * R + i] * xr[i];
                    }
                }
            }
            a = warp_allsum(a);
            c = warp_allsum(c);
            if (lane == 0) past[(q * B + b) * 2] = a, past[(q * B + b) * 2 + 1] = c;
        }
    }
    for (int r = 0; r < L + 3; r++) {
        const int base = FHDR + r * FPER;
        const float *Wm = Wf + tab_at(ftab, base + FW), *cst = Wf + tab_at(ftab, base + FC);
        const int flen = tab_at(ftab, base + FLEN), nreg = min(flen, 32 * WF_NREG);
        const ll inOff = tab_at(ftab, base + FIN), inLen = tab_at(ftab, base + FINLEN);
        const ll outOff = tab_at(ftab, base + FOUT), outLen = tab_at(ftab, base + FOUTLEN);
        const int span = tab_at(ftab, base + FSPAN);
        float *rg0 = ring + tab_at(ftab, base + FRING);
        const unsigned tagIn = tag0 + r, tagOut = tag0 + r + 1;
        // This block's tasks: gate pairs, residual rows, skip rows, head rows.
        const WfShare w = wf_share(r, L, H, R, S, O, j, NB);
        const int npair = wf_tasks(w, (int)B), s0 = w.s0;
        if (npair == 0) continue; // nothing to read or write (the same for the whole block)
        // Before waiting: this warp's first pair's weights (registers) and,
        // on lane 0, its constants (the row constants, a gate pair's
        // conditioning projection).
        float ra[WF_NREG], rb[WF_NREG], ca = 0.0f, cb = 0.0f;
        WfTask k{};
        int tb = warp;
        const WfRound rd{Wm, cst, proj, past, skip, r, L, H, flen, nreg, chunk, t, ngb, gb0, (int)B, nsb, s0};
        auto prepare = [&]() {
            k = wf_task(tb, (int)B, r, L, H, R, w);
            wf_prepare(rd, k, k.b, lane, ra, rb, ca, cb);
        };
        if (tb < npair) prepare();
        // The round's input for every utterance, once per block. (The
        // barrier also orders the prologue's and the previous round's
        // shared-memory writes before their reads below.)
        __syncthreads();
        for (int e = threadIdx.x; e < B * flen; e += blockDim.x) {
            const int b = e / flen, i = e % flen;
            vin[e] = r == 0 ? enc[b * Cin + i] : wf_wait(xch + B * inOff + b * inLen + i, tagIn, status);
        }
        __syncthreads();
        for (; tb < npair; tb += nw) {
            if (tb != warp) prepare();
            float a = ca, c = cb;
            wf_sums(rd, k, ra, rb, vin + k.b * flen, lane, a, c);
            if (lane != 0) continue;
            const int b = k.b, idx = k.idx;
            wf_word *o = xch + B * outOff + b * outLen;
            if (k.kind == 0) {
                wf_put(o + R + idx, tagOut, tanhf(a) * (1.0f / (1.0f + expf(-c))));
            } else if (k.kind == 1) {
                wf_put(o + idx, tagOut, a);
                if (span > 0) rg0[b * ringPer + (ll)(t % (span + 1)) * R + idx] = a;
            } else if (k.kind == 2) {
                if (r < L) skip[b * nsb + idx - s0] = a;
                else wf_put(o + idx, tagOut, fmaxf(a * skipNorm, 0.0f));
            } else if (r == L + 1) {
                wf_put(o + idx, tagOut, fmaxf(a, 0.0f));
            } else {
                out[b * O + idx] = a;
            }
        }
    }
}

// ---- wcl_step: the one-launch step on a thread-block cluster (sm_90) ----
//
// wf_step's blocks hand each round's results to each other through L2
// (tagged words that readers poll): about 2.6 us per layer on an H200.
// wcl_step runs the same rounds, with the same fused weights and table (NB
// is the cluster size), on the blocks of a thread-block cluster: each
// result is stored straight into every peer's shared memory (lane p of
// the warp that computed it writes peer p), and the blocks then meet at
// the cluster barrier, so when the barrier opens a round's input is
// already in each block's own shared memory: no polling, no L2 round
// trip, no tags. Inputs alternate between two buffers (round r reads
// buffer r%2 and writes round r+1's into the peers' other one), so one
// barrier per round suffices: a block writes a peer's buffer only after
// every block has passed the barrier that ended the round that read it.
// The barrier is split: a block arrives when its round's writes are done,
// loads its warps' next WCL_PRE tasks' weights into registers, and then
// waits.
// The blocks of a cluster are scheduled together by the hardware, so there
// is no stall to detect (wf_step's status).
//
// Batches run on several clusters, cluster q taking utterances
// [q*B/NQ, (q+1)*B/NQ) of B, NQ = gridDim.x / NB. Within a cluster a warp's
// task is a row (or gate pair) for all of its utterances, so each weight
// row is loaded once per round whatever the batch. Dynamic shared memory
// per block: Bq * (2*L*ceil(H/NB) + ceil(S/NB) + 2*F) floats for Bq
// utterances, F the longest round input. Compiled for sm_90 and the
// simulator; on older GPUs the kernel is a trap (the host launches it only
// where CoResidentClusters says clusters run).
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 900
#define WCL_CLUSTERS 1
#endif
#define WCL_ILP 8 // gate pairs a warp sums at once in the prologue
#define WCL_PRE 4 // tasks per warp whose weights are in registers before a round's wait

// wcl_ns is a nanosecond clock (the GPU's global timer; the simulator's
// clock64 counts nanoseconds too), for wcl_step's optional profile.
__device__ __forceinline__ unsigned long long wcl_ns() {
#ifdef __CUDA_ARCH__
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
#else
    return (unsigned long long)clock64();
#endif
}

__global__ void __launch_bounds__(256, 1) wcl_step(const float *__restrict__ Wf, const float *ftab, float *ring,
                                                   const float *proj, const float *enc, float *out, const float *tbuf,
                                                   ll B, float skipNorm, float *profF, ll profile) {
#ifdef WCL_CLUSTERS
    // With profile set, thread 0 of block 0 adds to profF (5 unsigned 64-bit
    // counters) the step's nanoseconds and clock64 ticks, the ticks until
    // the prologue's barrier opened, the ticks spent waiting at the
    // rounds' barriers, and 1 (the steps).
    const bool prof = profile != 0 && blockIdx.x == 0 && threadIdx.x == 0;
    unsigned long long profNs = 0;
    long long profT0 = 0, profPro = 0, profWait = 0;
    if (prof) profNs = wcl_ns(), profT0 = clock64();
    const int R = tab_at(ftab, FR), H = tab_at(ftab, FH), S = tab_at(ftab, FS), O = tab_at(ftab, FO);
    const int K = tab_at(ftab, FK), L = tab_at(ftab, FL), Cin = tab_at(ftab, FCIN), chunk = tab_at(ftab, FCHUNK);
    const int NB = tab_at(ftab, FNB);
    const ll ringPer = tab_at(ftab, FRINGPER);
    const int F = max(Cin, max(R + H, S));
    const int t = __float_as_int(tbuf[0]);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    const int j = (int)__clusterRelativeBlockRank();
    const int q = (int)(blockIdx.x / NB), NQ = (int)(gridDim.x / NB);
    const int b0 = (int)(q * B / NQ), Bq = (int)((q + 1) * B / NQ) - b0;
    extern __shared__ float sh[];
    const int gb0 = j * H / NB, ngb = (j + 1) * H / NB - gb0;
    const int nsb = (S + NB - 1) / NB;
    float *past = sh;                          // [L][ngb][Bq][2]
    float *skip = past + (ll)2 * L * ngb * Bq; // [Bq][nsb]: running sums of this block's skip rows
    float *vin = skip + (ll)nsb * Bq;          // [2][Bq][F]: the round inputs
    for (int e = threadIdx.x; e < Bq * Cin; e += blockDim.x) vin[(e / Cin) * F + e % Cin] = enc[(b0 + e / Cin) * Cin + e % Cin];
    // The peers must have started before their shared memory is mapped:
    // arrive now, wait after the prologue.
    __cluster_barrier_arrive();
    // Prologue: the past taps of this block's gate pairs (see wf_step). A
    // cluster has far fewer blocks than wf_step's grid, so each warp takes
    // WCL_ILP gate pairs at once, their loads in flight together.
    const int nq = L * ngb, KP = (K - 1) * R;
    for (int q0 = warp; q0 < nq; q0 += WCL_ILP * nw) {
        const float *pw[WCL_ILP], *rgu[WCL_ILP];
        int dilu[WCL_ILP], spanu[WCL_ILP];
#pragma unroll
        for (int u = 0; u < WCL_ILP; u++) {
            const int qq = min(q0 + u * nw, nq - 1), l = qq / ngb, base = FHDR + l * FPER;
            dilu[u] = tab_at(ftab, base + FDIL), spanu[u] = tab_at(ftab, base + FSPAN);
            pw[u] = Wf + tab_at(ftab, base + FP) + (ll)(gb0 + qq % ngb) * KP;
            rgu[u] = ring + tab_at(ftab, base + FRING);
        }
        for (int b = 0; b < Bq; b++) {
            float a[WCL_ILP], c[WCL_ILP];
#pragma unroll
            for (int u = 0; u < WCL_ILP; u++) a[u] = 0.0f, c[u] = 0.0f;
            for (int k = 0; k < K - 1; k++) {
                const float *xr[WCL_ILP];
#pragma unroll
                for (int u = 0; u < WCL_ILP; u++) {
                    int p = (t - (K - 1 - k) * dilu[u]) % (spanu[u] + 1);
                    if (p < 0) p += spanu[u] + 1;
                    xr[u] = rgu[u] + (b0 + b) * ringPer + (ll)p * R;
                }
                // No branch: every load of the WCL_ILP pairs issues at once
                // (a pair past the end reads the last one's rows, and its
                // sums are not stored).
                for (int i = lane; i < R; i += 32) {
#pragma unroll
                    for (int u = 0; u < WCL_ILP; u++) {
                        const float x = xr[u][i];
                        a[u] += pw[u][k * R + i] * x;
                        c[u] += pw[u][(ll)H * KP + k * R + i] * x;
                    }
                }
            }
#pragma unroll
            for (int u = 0; u < WCL_ILP; u++) {
                const float sa = warp_allsum(a[u]), sc = warp_allsum(c[u]);
                const int qq = q0 + u * nw;
                if (lane == 0 && qq < nq) past[(qq * Bq + b) * 2] = sa, past[(qq * Bq + b) * 2 + 1] = sc;
            }
        }
    }
    __cluster_barrier_wait();
    if (prof) profPro = clock64() - profT0;
    // Lane p of every warp stores into peer p's round inputs.
    float *peer = lane < NB ? (float *)__cluster_map_shared_rank(vin, (unsigned)lane) : vin;
    for (int r = 0; r < L + 3; r++) {
        const int base = FHDR + r * FPER;
        const float *Wm = Wf + tab_at(ftab, base + FW), *cst = Wf + tab_at(ftab, base + FC);
        const int flen = tab_at(ftab, base + FLEN), nreg = min(flen, 32 * WF_NREG);
        const int span = tab_at(ftab, base + FSPAN);
        float *rg0 = ring + tab_at(ftab, base + FRING);
        const WfShare w = wf_share(r, L, H, R, S, O, j, NB);
        const int ntask = wf_tasks(w, 1), s0 = w.s0;
        const float *vr = vin + (ll)(r & 1) * Bq * F;  // this round's input
        const ll nxt = (ll)((r + 1) & 1) * Bq * F;     // the next round's buffer, in every peer
        // A task is a row (or gate pair) for all of the cluster's Bq
        // utterances: its weights are loaded once. A warp's first WCL_PRE
        // tasks have their weights (registers), row constants (lane 0) and
        // conditioning projections (lane b: utterance b's) loaded before
        // the wait; later ones load theirs when they come.
        WfTask kt[WCL_PRE];
        float ra[WCL_PRE][WF_NREG], rb[WCL_PRE][WF_NREG], ca[WCL_PRE], cb[WCL_PRE], pa[WCL_PRE], pb[WCL_PRE];
        const WfRound rd{Wm, cst, proj, past, skip, r, L, H, flen, nreg, chunk, t, ngb, gb0, Bq, nsb, s0};
        auto prepare = [&](int tb, WfTask &k, float (&xa)[WF_NREG], float (&xb)[WF_NREG], float &c0, float &c1, float &p0,
                           float &p1) {
            k = wf_task(tb, 1, r, L, H, R, w);
            wf_prepare(rd, k, -1, lane, xa, xb, c0, c1);
            p0 = 0.0f, p1 = 0.0f;
            if (k.rowB >= 0 && lane < Bq) {
                const float *pj = proj_at(proj, b0 + lane, chunk, t, L, 2 * H, r);
                p0 = pj[k.idx], p1 = pj[H + k.idx];
            }
        };
        // run finishes task k for each utterance: the dot products over its
        // round input, the activation, and the stores (peers, ring, skip
        // sum, output).
        auto run = [&](WfTask k, const float (&xa)[WF_NREG], const float (&xb)[WF_NREG], float c0, float c1, float p0, float p1) {
            for (int b = 0; b < Bq; b++) {
                const float q0 = __shfl_sync(0xffffffffu, p0, b), q1 = __shfl_sync(0xffffffffu, p1, b);
                float a = c0, c = c1;
                if (lane == 0) a += q0, c += q1;
                k.b = b;
                wf_sums(rd, k, xa, xb, vr + b * F, lane, a, c); // every lane has the sums
                const int idx = k.idx;
                float val = 0.0f;
                int slot = -1; // where the value goes in the next round's input
                if (k.kind == 0) {
                    val = tanhf(a) * (1.0f / (1.0f + expf(-c))), slot = R + idx;
                } else if (k.kind == 1) {
                    val = a, slot = idx;
                    if (lane == 0 && span > 0) rg0[(b0 + b) * ringPer + (ll)(t % (span + 1)) * R + idx] = a;
                } else if (k.kind == 2) {
                    if (r < L) {
                        if (lane == 0) skip[b * nsb + idx - s0] = a;
                    } else {
                        val = fmaxf(a * skipNorm, 0.0f), slot = idx;
                    }
                } else if (r == L + 1) {
                    val = fmaxf(a, 0.0f), slot = idx;
                } else if (lane == 0) {
                    out[(b0 + b) * O + idx] = a;
                }
                if (slot >= 0 && lane < NB) peer[nxt + (ll)b * F + slot] = val;
            }
        };
#pragma unroll
        for (int u = 0; u < WCL_PRE; u++)
            if (warp + u * nw < ntask) prepare(warp + u * nw, kt[u], ra[u], rb[u], ca[u], cb[u], pa[u], pb[u]);
        if (r > 0) { // round r-1's results are all here after the wait
            const long long w0 = prof ? clock64() : 0;
            __cluster_barrier_wait();
            if (prof) profWait += clock64() - w0;
        }
#pragma unroll
        for (int u = 0; u < WCL_PRE; u++)
            if (warp + u * nw < ntask) run(kt[u], ra[u], rb[u], ca[u], cb[u], pa[u], pb[u]);
        for (int tb = warp + WCL_PRE * nw; tb < ntask; tb += nw) {
            prepare(tb, kt[0], ra[0], rb[0], ca[0], cb[0], pa[0], pb[0]);
            run(kt[0], ra[0], rb[0], ca[0], cb[0], pa[0], pb[0]);
        }
        // The last round writes no peer: its wait (round L+2's) was the
        // last access to this block's shared memory by the others, so
        // the blocks may exit without another barrier.
        if (r < L + 2) __cluster_barrier_arrive();
    }
    if (prof) {
        unsigned long long *p = (unsigned long long *)profF;
        p[0] += wcl_ns() - profNs, p[1] += (unsigned long long)(clock64() - profT0);
        p[2] += (unsigned long long)profPro, p[3] += (unsigned long long)profWait, p[4] += 1;
    }
#else
    __trap();
#endif
}

}  // extern "C"
