// Kernels of the AdaCat head (adacat.go), compiled after heads_common.cu.
// Channels per timestep: k width logits psi, then k height logits phi.
//
// The Go stepper keeps widths, edges, bin masses and edge terms in scratch
// arrays; here one thread per timestep walks the channels instead:
//   A. maxima of psi and phi;       B. the two softmax sums;
//   C. the bin edges c_j (the float64 cumulative sum, last edge pinned to 1)
//      up to the last bin the target needs: the plain NLL's bin, or for the
//      smoothed loss the bins ia..ib under the kernel with their masses, the
//      loss and the edge-term sums dtot and dc;
//   D. the gradient, walking the same edges again.
// The edges are formed with __dmul_rn/__dadd_rn (never fused), so passes C
// and D see bit-identical edges and the suffix sums of the edge terms, taken
// as dtot minus a prefix accumulated the same way, end exactly at 0.

struct Ada {
    const float *psi, *phi; // channel j at psi[j*T], phi[j*T]
    ll k, T;
    double mw, mh, inv, invH, lseW, lseH;

    __device__ double logDens(ll j) const {
        return ((double)phi[j * T] - lseH) - ((double)psi[j * T] - lseW);
    }
    __device__ double width(ll j) const { return __dmul_rn(exp((double)psi[j * T] - mw), inv); }
    __device__ double height(ll j) const { return exp((double)phi[j * T] - mh); } // unnormalised
};

// ada_setup is adacatSetup's passes A and B.
__device__ Ada ada_setup(const float *z, ll k, ll T) {
    Ada p;
    p.psi = z;
    p.phi = z + k * T;
    p.k = k;
    p.T = T;
    double sw = hb_sum_exp(p.psi, k, T, &p.mw), sh = hb_sum_exp(p.phi, k, T, &p.mh);
    p.lseW = p.mw + log(sw);
    p.lseH = p.mh + log(sh);
    p.invH = 1.0 / sh;
    p.inv = 1.0 / sw;
    return p;
}

// ada_bin is adacatBin: the first bin whose right edge is >= x (x in [0,1]).
__device__ ll ada_bin(const Ada &p, double x) {
    double acc = 0.0;
    for (ll j = 0; j < p.k - 1; j++) {
        acc = __dadd_rn(acc, p.width(j));
        if (acc >= x) return j;
    }
    return p.k - 1;
}

__device__ __forceinline__ double ada_fz(double u, double lo, double invK) { return hb_clamp((u - lo) * invK, 0.0, 1.0); }

// ada_loss is adacatLoss for x = (y+1)/2: it returns the loss and writes
// dloss/dz * wt into g (0 where wt == 0), channel j at g[j*T].
__device__ double ada_loss(const Ada &p, double lambda, double x, float *g, double wt) {
    const ll k = p.k, T = p.T;
    x = hb_clamp(x, 0.0, 1.0);
    if (lambda == 0.0) {
        ll i = ada_bin(p, x);
        for (ll j = 0; j < k; j++) {
            double gp = -p.width(j), gh = p.height(j) * p.invH;
            if (j == i) {
                gp += 1.0;
                gh -= 1.0;
            }
            g[j * T] = wt == 0.0 ? 0.0f : (float)(gp * wt);
            g[(k + j) * T] = wt == 0.0 ? 0.0f : (float)(gh * wt);
        }
        return -p.logDens(i);
    }
    double lo = fmax(x - lambda, 0.0), hi = fmin(x + lambda, 1.0);
    double invK = 1.0 / (hi - lo);

    // Pass C: bins ia..ib overlap the kernel [lo, hi].
    ll ia = -1, ib = k - 1;
    double acc = 0.0, loss = 0.0, M = 0.0, dtot = 0.0, dc = 0.0, gprev = 0.0;
    for (ll j = 0; j < k; j++) {
        double left = acc;
        acc = __dadd_rn(acc, p.width(j));
        double right = j == k - 1 ? 1.0 : acc;
        if (ia < 0 && right >= lo) ia = j;
        if (ia < 0) continue;
        double gj = p.logDens(j);
        double mj = ada_fz(right, lo, invK) - ada_fz(left, lo, invK);
        M += mj;
        loss -= mj * gj;
        if (j > ia && left > lo && left < hi) { // edge e = j
            double d = __dmul_rn(-invK, gprev - gj);
            dtot = __dadd_rn(dtot, d);
            dc += d * left;
        }
        gprev = gj;
        if (right >= hi) {
            ib = j;
            break;
        }
    }

    // Pass D: the gradient.
    double hM = p.invH * M;
    double pre = 0.0; // edge terms d_e for ia < e <= j
    acc = 0.0;
    for (ll j = 0; j < k; j++) {
        double w = p.width(j);
        double left = acc;
        acc = __dadd_rn(acc, w);
        double right = j == k - 1 ? 1.0 : acc;
        double eh = p.height(j), gp, gh;
        if (j < ia) {
            gp = w * ((dtot - dc) - M);
            gh = eh * hM;
        } else if (j > ib) {
            gp = w * (-dc - M);
            gh = eh * hM;
        } else {
            double gj = p.logDens(j);
            double mj = ada_fz(right, lo, invK) - ada_fz(left, lo, invK);
            if (j > ia && left > lo && left < hi) pre = __dadd_rn(pre, __dmul_rn(-invK, gprev - gj));
            gprev = gj;
            double suf = dtot - pre; // sum of d_e for j < e <= ib
            gp = mj + w * ((suf - dc) - M);
            gh = eh * hM - mj;
        }
        g[j * T] = wt == 0.0 ? 0.0f : (float)(gp * wt);
        g[(k + j) * T] = wt == 0.0 ? 0.0f : (float)(gh * wt);
    }
    return loss;
}

extern "C" {

// lambda is the float64 bits of the kernel half-width.
__global__ void wc_adacat_loss(const float *logits, const float *targets, const float *mask, float *grad, float *partial,
                               long long B, long long T, long long hasMask, float gradScale, long long k, long long lambda) {
    ll idx = hb_gid();
    double v = 0.0;
    if (idx < B * T) {
        ll b = idx / T, t = idx - b * T;
        float *g = grad + b * 2 * k * T + t;
        double m = hasMask ? (double)mask[idx] : 1.0;
        if (m == 0.0) {
            for (ll c = 0; c < 2 * k; c++) g[c * T] = 0.0f;
        } else {
            Ada p = ada_setup(logits + b * 2 * k * T + t, k, T);
            v = m * ada_loss(p, hb_f64(lambda), ((double)targets[idx] + 1.0) / 2.0, g, m * (double)gradScale);
        }
    }
    hb_loss_partial(v, partial);
}

// -log2 of f(x)/2: bits = -(log f(x) - ln 2)/ln 2.
__global__ void wc_adacat_bits(const float *logits, const float *targets, float *out, long long B, long long T, long long k) {
    ll idx = hb_gid();
    if (idx >= B * T) return;
    ll b = idx / T, t = idx - b * T;
    Ada p = ada_setup(logits + b * 2 * k * T + t, k, T);
    double x = hb_clamp(((double)targets[idx] + 1.0) / 2.0, 0.0, 1.0);
    double ld = p.logDens(ada_bin(p, x)) - HB_LN2;
    out[idx] = (float)(-ld / HB_LN2);
}

// One warp per utterance: bin i ~ softmax(phi/t) (draw 0; t from temp's
// float64 bits), x uniform in bin i (draw 1), y = 2x-1.
__global__ void wc_adacat_sample(const float *logits, float *rng, float *y, float *enc, long long B, long long temp,
                                 long long k) {
    ll b = hb_gid() >> 5;
    int lane = threadIdx.x & 31;
    bool live = b < B;
    ll bb = live ? b : B - 1;
    u64 s = 0;
    if (lane == 0) s = hb_rng_load(rng, bb);
    s = __shfl_sync(HB_FULL, s, 0);
    const float *z = logits + bb * 2 * k;
    int i = hb_warp_softmax_draw(z + k, (int)k, 1.0 / hb_f64(temp), hb_uniform(s, 0));
    double mx = -HB_INF;
    for (ll j = lane; j < k; j += 32) {
        double v = (double)z[j];
        if (v > mx) mx = v;
    }
    mx = hb_warp_max(mx);
    double sum = 0.0, left = 0.0;
    for (ll j = lane; j < k; j += 32) {
        double e = exp((double)z[j] - mx);
        sum += e;
        if (j < i) left += e;
    }
    sum = hb_warp_sum(sum);
    left = hb_warp_sum(left);
    double wi = exp((double)z[i] - mx) / sum;
    double x = hb_clamp(left / sum + hb_uniform(s, 1) * wi, 0.0, 1.0);
    float yf = (float)(2.0 * x - 1.0);
    if (live && lane == 0) {
        y[b] = yf;
        enc[b] = yf;
        hb_rng_store(rng, b, s + 2 * HB_GAMMA);
    }
}

} // extern "C"
