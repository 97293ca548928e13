// Kernels of the discretized mixture of logistics head (mol.go), compiled
// after heads_common.cu. Channels per timestep: M mixture logits, M means, M
// log-scales (clamped below at log-scale-min). Per timestep the thread makes
// the float64 stepper's passes over the M components, recomputing each
// component's discretized log-probability where the Go code keeps it in
// scratch (M is small; no per-thread arrays).

struct MolOpts {
    ll M, Q;
    double smin, logHalf; // log((Q-1)/2)
};

// mol_component is molComponent: the discretized log-probability of y under
// one logistic (mean mu, clamped log-scale s) over Q levels, and its
// derivatives with respect to mu and s.
__device__ double mol_component(double y, double mu, double s, const MolOpts &o, double *dmu, double *ds) {
    double inv = exp(-s);
    double cy = y - mu;
    double d = 1.0 / (double)(o.Q - 1);
    if (y < -0.999) { // log CDF(y+d)
        double p = inv * (cy + d);
        double dp = hb_sigmoid(-p);
        *dmu = -inv * dp;
        *ds = -p * dp;
        return -hb_softplus(-p);
    }
    if (y > 0.999) { // log(1 - CDF(y-d))
        double n = inv * (cy - d);
        double dn = -hb_sigmoid(n);
        *dmu = -inv * dn;
        *ds = -n * dn;
        return -hb_softplus(n);
    }
    double p = inv * (cy + d), n = inv * (cy - d);
    double sp = hb_sigmoid(p), sn = hb_sigmoid(n);
    double delta = sp - sn;
    if (delta > 1e-5) {
        double dp = sp * hb_sigmoid(-p) / delta;
        double dn = -sn * hb_sigmoid(-n) / delta;
        *dmu = -inv * (dp + dn);
        *ds = -(p * dp + n * dn);
        return log(delta);
    }
    double mid = inv * cy;
    double dmid = 1.0 - 2.0 * hb_sigmoid(mid);
    *dmu = -inv * dmid;
    *ds = -1.0 - mid * dmid;
    return mid - s - 2.0 * hb_softplus(mid) - o.logHalf;
}

// mol_a is a_j = log pi_j + L_j for component j of z (stride T); ls is the
// log-sum-exp of the mixture logits. clamped reports the log-scale clamp.
__device__ __forceinline__ double mol_a(const float *z, ll T, ll j, double y, double ls, const MolOpts &o, double *dmu,
                                        double *ds, bool *clamped) {
    double sc = (double)z[(2 * o.M + j) * T];
    *clamped = sc < o.smin;
    if (*clamped) sc = o.smin;
    double lc = mol_component(y, (double)z[(o.M + j) * T], sc, o, dmu, ds);
    return ((double)z[j * T] - ls) + lc;
}

// mol_mix returns the log-sum-exp of the mixture logits (outputs.go's
// softmax: max, then the sum) and 1/sum and the max for the softmax.
__device__ __forceinline__ double mol_mix(const float *z, ll T, ll M, double *mx, double *inv) {
    double s = hb_sum_exp(z, M, T, mx);
    *inv = 1.0 / s;
    return *mx + log(s);
}

// mol_lse returns logSumExp_j a_j (two passes, as outputs.go's logSumExp).
__device__ double mol_lse(const float *z, ll T, double y, double ls, const MolOpts &o) {
    double dmu, ds;
    bool cl;
    double mx = mol_a(z, T, 0, y, ls, o, &dmu, &ds, &cl);
    for (ll j = 1; j < o.M; j++) {
        double a = mol_a(z, T, j, y, ls, o, &dmu, &ds, &cl);
        if (a > mx) mx = a;
    }
    if (mx == -HB_INF) return mx;
    double s = 0.0;
    for (ll j = 0; j < o.M; j++) s += exp(mol_a(z, T, j, y, ls, o, &dmu, &ds, &cl) - mx);
    return mx + log(s);
}

extern "C" {

// smin and logHalf are float64 bits.
__global__ void wc_mol_loss(const float *logits, const float *targets, const float *mask, float *grad, float *partial,
                            long long B, long long T, long long hasMask, float gradScale, long long M, long long Q,
                            long long smin, long long logHalf) {
    MolOpts o = {M, Q, hb_f64(smin), hb_f64(logHalf)};
    ll idx = hb_gid();
    double v = 0.0;
    if (idx < B * T) {
        ll b = idx / T, t = idx - b * T;
        const float *z = logits + b * 3 * M * T + t;
        float *g = grad + b * 3 * M * T + t;
        double m = hasMask ? (double)mask[idx] : 1.0;
        if (m == 0.0) {
            for (ll c = 0; c < 3 * M; c++) g[c * T] = 0.0f;
        } else {
            double y = (double)targets[idx], wt = m * (double)gradScale;
            double mx, inv;
            double ls = mol_mix(z, T, M, &mx, &inv);
            double lse = mol_lse(z, T, y, ls, o);
            for (ll j = 0; j < M; j++) {
                double dmu, ds;
                bool clamped;
                double a = mol_a(z, T, j, y, ls, o, &dmu, &ds, &clamped);
                if (clamped) ds = 0.0;
                double r = exp(a - lse);
                double pi = exp((double)z[j * T] - mx) * inv;
                double gl = pi - r, gm = dmu * -r, gs = ds * -r;
                g[j * T] = wt == 0.0 ? 0.0f : (float)(gl * wt);
                g[(M + j) * T] = wt == 0.0 ? 0.0f : (float)(gm * wt);
                g[(2 * M + j) * T] = wt == 0.0 ? 0.0f : (float)(gs * wt);
            }
            v = m * -lse;
        }
    }
    hb_loss_partial(v, partial);
}

// logDensity: logSumExp_j(log pi_j + L_j) + log((Q-1)/2).
__global__ void wc_mol_bits(const float *logits, const float *targets, float *out, long long B, long long T,
                            long long M, long long Q, long long smin, long long logHalf) {
    MolOpts o = {M, Q, hb_f64(smin), hb_f64(logHalf)};
    ll idx = hb_gid();
    if (idx >= B * T) return;
    ll b = idx / T, t = idx - b * T;
    const float *z = logits + b * 3 * M * T + t;
    double y = (double)targets[idx];
    double mx, inv;
    double ls = mol_mix(z, T, M, &mx, &inv);
    double ld = mol_lse(z, T, y, ls, o) + o.logHalf;
    out[idx] = (float)(-ld / HB_LN2);
}

// One thread per utterance: a Gumbel-max component over logits/t (draws
// 0..M-1), then a logistic sample with its scale times t (draw M), clamped to
// [-1,1]; uniforms in [1e-5, 1-1e-5]; t from temp's float64 bits.
__global__ void wc_mol_sample(const float *logits, float *rng, float *y, float *enc, long long B, long long temp,
                              long long M, long long smin) {
    ll b = hb_gid();
    if (b >= B) return;
    u64 s = hb_rng_load(rng, b);
    const float *z = logits + b * 3 * M;
    double t = hb_f64(temp), invT = 1.0 / t;
    double best = -HB_INF;
    ll bj = 0;
    for (ll j = 0; j < M; j++) {
        double u = 1e-5 + (1.0 - 2e-5) * hb_uniform(s, j);
        double v = (double)z[j] * invT - log(-log(u));
        if (v > best) {
            best = v;
            bj = j;
        }
    }
    double mu = (double)z[M + bj], sc = (double)z[2 * M + bj];
    double sm = hb_f64(smin);
    if (sc < sm) sc = sm;
    double u = 1e-5 + (1.0 - 2e-5) * hb_uniform(s, M);
    float yf = (float)hb_clamp(mu + exp(sc) * t * (log(u) - log(1.0 - u)), -1.0, 1.0);
    y[b] = yf;
    enc[b] = yf;
    hb_rng_store(rng, b, s + (u64)(M + 1) * HB_GAMMA);
}

} // extern "C"
