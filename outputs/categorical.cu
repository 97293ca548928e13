// Kernels of the categorical and mu-law heads (categorical.go), compiled
// after heads_common.cu. Both are softmax cross-entropy over Q classes; they
// differ in the class of an amplitude, the evaluation density and the
// sampler's representative.
//
// Mu-law classes come from a table that device.go builds with MuLaw.Class
// itself: thr[q-1] is the smallest float32 amplitude whose class is >= q
// (q = 1..mu), so the class of a float32 y is the number of thresholds <= y,
// exactly the Go class of every float32 (mulaw.Quantize is non-decreasing
// over the float32 values). The sampler uses two more tables: sy[q] =
// Representative(q) and sc[q] = the class of sy[q] (the one-hot index
// EncodeInput gives that float32), so y and its encoding are the CPU's.

// cat_class is Categorical.Class of a float32 amplitude: floor((y+1)/2*Q)
// clamped to [0,Q-1] (the same three correctly rounded operations as Go).
__device__ __forceinline__ int cat_class(float y, ll Q) {
    double f = floor(((double)y + 1.0) / 2.0 * (double)Q);
    return (int)hb_clamp(f, 0.0, (double)(Q - 1));
}

// mulaw_class counts the thresholds <= y (a NaN counts none).
__device__ __forceinline__ int mulaw_class(float y, const float *thr, ll mu) {
    ll lo = 0, hi = mu;
    while (lo < hi) {
        ll m = (lo + hi) >> 1;
        if (y >= thr[m]) lo = m + 1;
        else hi = m;
    }
    return (int)lo;
}

// cat_ce is categoricalLoss on the Q channels at stride T: it returns the
// cross-entropy of class q and writes (softmax - onehot(q)) * wt into g
// (0 where wt == 0).
__device__ double cat_ce(const float *z, float *g, ll Q, ll T, int q, double wt) {
    double mx;
    double s = hb_sum_exp(z, Q, T, &mx);
    double inv = 1.0 / s;
    for (ll c = 0; c < Q; c++) {
        double e = exp((double)z[c * T] - mx) * inv;
        if (c == q) e -= 1.0;
        g[c * T] = wt == 0.0 ? 0.0f : (float)(e * wt);
    }
    return mx + log(s) - (double)z[(ll)q * T];
}

// cat_log_softmax_at is logSoftmaxAt: z[q] - logSumExp(z).
__device__ double cat_log_softmax_at(const float *z, ll Q, ll T, int q) {
    double mx;
    double s = hb_sum_exp(z, Q, T, &mx);
    double lse = mx == -HB_INF ? mx : mx + log(s); // every logit -inf: the sum is NaN
    return (double)z[(ll)q * T] - lse;
}

// cat_loss_common is the body of both loss kernels; cls < 0 asks for the
// categorical class, else thr is the mu-law table.
__device__ __forceinline__ void cat_loss_common(const float *logits, const float *targets, const float *mask, float *grad,
                                                float *partial, ll B, ll T, ll hasMask, float gradScale, ll Q, const float *thr) {
    ll idx = hb_gid();
    double v = 0.0;
    if (idx < B * T) {
        ll b = idx / T, t = idx - b * T;
        const float *z = logits + b * Q * T + t;
        float *g = grad + b * Q * T + t;
        double m = hasMask ? (double)mask[idx] : 1.0;
        if (m == 0.0) {
            for (ll c = 0; c < Q; c++) g[c * T] = 0.0f;
        } else {
            int q = thr ? mulaw_class(targets[idx], thr, Q - 1) : cat_class(targets[idx], Q);
            v = m * cat_ce(z, g, Q, T, q, m * (double)gradScale);
        }
    }
    hb_loss_partial(v, partial);
}

// cat_draw is the warp-per-utterance draw of a class from the step logits
// [B][Q] at temperature 1/invT: warp w of the grid serves utterance w; the
// warps past B work on utterance B-1 and write nothing. Lane 0 reads the RNG
// state and shares it.
__device__ __forceinline__ int cat_draw(const float *logits, const float *rng, ll B, ll Q, double invT, ll *b, bool *live,
                                        u64 *s) {
    *b = hb_gid() >> 5;
    *live = *b < B;
    ll bb = *live ? *b : B - 1;
    u64 st = 0;
    if ((threadIdx.x & 31) == 0) st = hb_rng_load(rng, bb);
    st = __shfl_sync(HB_FULL, st, 0);
    *s = st;
    return hb_warp_softmax_draw(logits + bb * Q, (int)Q, invT, hb_uniform(st, 0));
}

__device__ __forceinline__ void cat_one_hot(float *enc, ll b, ll Q, int cls) {
    for (ll j = threadIdx.x & 31; j < Q; j += 32) enc[b * Q + j] = j == cls ? 1.0f : 0.0f;
}

extern "C" {

__global__ void wc_categorical_loss(const float *logits, const float *targets, const float *mask, float *grad, float *partial,
                                    long long B, long long T, long long hasMask, float gradScale, long long Q) {
    cat_loss_common(logits, targets, mask, grad, partial, B, T, hasMask, gradScale, Q, 0);
}

// logHalfQ is the float64 bits of log(Q/2).
__global__ void wc_categorical_bits(const float *logits, const float *targets, float *out, long long B, long long T,
                                    long long Q, long long logHalfQ) {
    ll idx = hb_gid();
    if (idx >= B * T) return;
    ll b = idx / T, t = idx - b * T;
    int q = cat_class(targets[idx], Q);
    double ld = cat_log_softmax_at(logits + b * Q * T + t, Q, T, q) + hb_f64(logHalfQ);
    out[idx] = (float)(-ld / HB_LN2);
}

// A class from the softmax at temperature temp (float64 bits), then y uniform
// within its bin (two draws).
__global__ void wc_categorical_sample(const float *logits, float *rng, float *y, float *enc, long long B, long long temp,
                                      long long Q) {
    ll b;
    bool live;
    u64 s;
    int q = cat_draw(logits, rng, B, Q, 1.0 / hb_f64(temp), &b, &live, &s);
    double yy = -1.0 + ((double)q + hb_uniform(s, 1)) * 2.0 / (double)Q;
    float yf = (float)hb_clamp(yy, -1.0, 1.0);
    if (!live) return;
    if ((threadIdx.x & 31) == 0) {
        y[b] = yf;
        hb_rng_store(rng, b, s + 2 * HB_GAMMA);
    }
    cat_one_hot(enc, b, Q, cat_class(yf, Q));
}

// thr: the mu = Q-1 class thresholds.
__global__ void wc_mulaw_loss(const float *logits, const float *targets, const float *mask, float *grad, float *partial,
                              long long B, long long T, long long hasMask, float gradScale, long long Q, const float *thr) {
    cat_loss_common(logits, targets, mask, grad, partial, B, T, hasMask, gradScale, Q, thr);
}

// logHalfMu and logJ0 are the float64 bits of log(mu/2) and
// log(mu) - log(log1p(mu)); the density is P(q) mu/2 J(y), with y = 1 scored
// in class mu-1.
__global__ void wc_mulaw_bits(const float *logits, const float *targets, float *out, long long B, long long T,
                              long long Q, const float *thr, long long logHalfMu, long long logJ0) {
    ll idx = hb_gid();
    if (idx >= B * T) return;
    ll b = idx / T, t = idx - b * T;
    float y = targets[idx];
    int q = min(mulaw_class(y, thr, Q - 1), (int)(Q - 2));
    double ya = fabs(hb_clamp((double)y, -1.0, 1.0));
    double lj = hb_f64(logJ0) - log1p((double)(Q - 1) * ya);
    double ld = (cat_log_softmax_at(logits + b * Q * T + t, Q, T, q) + hb_f64(logHalfMu)) + lj;
    out[idx] = (float)(-ld / HB_LN2);
}

// A class from the softmax at temperature temp, y its representative (one
// draw). sy and sc are the sampler tables (Q entries each).
__global__ void wc_mulaw_sample(const float *logits, float *rng, float *y, float *enc, long long B, long long temp,
                                long long Q, const float *sy, const float *sc) {
    ll b;
    bool live;
    u64 s;
    int q = cat_draw(logits, rng, B, Q, 1.0 / hb_f64(temp), &b, &live, &s);
    if (!live) return;
    if ((threadIdx.x & 31) == 0) {
        y[b] = sy[q];
        hb_rng_store(rng, b, s + HB_GAMMA);
    }
    cat_one_hot(enc, b, Q, (int)sc[q]);
}

} // extern "C"
