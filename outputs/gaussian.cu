// Kernels of the Gaussian head (gaussian.go), compiled after
// heads_common.cu. Channels: mean, then log-std clamped below at
// log-scale-min (smin, float64 bits), gradient zero where the clamp is active.

// GAUSS_MEAN_GRAD_MAX is gaussian.go's gaussMeanGradMax: the bound on each
// timestep's gradient with respect to the mean.
#define GAUSS_MEAN_GRAD_MAX 100.0

// gauss_step is gaussianLoss: the Normal NLL of y, d/dmu clamped to
// [-GAUSS_MEAN_GRAD_MAX, GAUSS_MEAN_GRAD_MAX], and d/ds.
__device__ __forceinline__ double gauss_step(double mu, double s, double smin, double y, double *gmu, double *gs) {
    bool clamped = s < smin;
    if (clamped) s = smin;
    double r = (y - mu) * exp(-s);
    *gmu = hb_clamp(-r * exp(-s), -GAUSS_MEAN_GRAD_MAX, GAUSS_MEAN_GRAD_MAX);
    *gs = clamped ? 0.0 : 1.0 - r * r;
    return 0.5 * log(HB_2PI) + s + 0.5 * r * r;
}

extern "C" {

__global__ void wc_gaussian_loss(const float *logits, const float *targets, const float *mask, float *grad, float *partial,
                                 long long B, long long T, long long hasMask, float gradScale, long long smin) {
    ll idx = hb_gid();
    double v = 0.0;
    if (idx < B * T) {
        ll b = idx / T, t = idx - b * T;
        const float *z = logits + b * 2 * T + t;
        float *g = grad + b * 2 * T + t;
        double m = hasMask ? (double)mask[idx] : 1.0;
        if (m == 0.0) {
            g[0] = 0.0f;
            g[T] = 0.0f;
        } else {
            double gmu, gs, wt = m * (double)gradScale;
            v = m * gauss_step((double)z[0], (double)z[T], hb_f64(smin), (double)targets[idx], &gmu, &gs);
            g[0] = wt == 0.0 ? 0.0f : (float)(gmu * wt);
            g[T] = wt == 0.0 ? 0.0f : (float)(gs * wt);
        }
    }
    hb_loss_partial(v, partial);
}

__global__ void wc_gaussian_bits(const float *logits, const float *targets, float *out, long long B, long long T,
                                 long long smin) {
    ll idx = hb_gid();
    if (idx >= B * T) return;
    ll b = idx / T, t = idx - b * T;
    const float *z = logits + b * 2 * T + t;
    double gmu, gs;
    double ld = -gauss_step((double)z[0], (double)z[T], hb_f64(smin), (double)targets[idx], &gmu, &gs);
    out[idx] = (float)(-ld / HB_LN2);
}

// One thread per utterance: y = mean + t*std*N(0,1) (Box-Muller on two
// draws; t from temp's float64 bits), clamped to [-1,1].
__global__ void wc_gaussian_sample(const float *logits, float *rng, float *y, float *enc, long long B, long long temp,
                                   long long smin) {
    ll b = hb_gid();
    if (b >= B) return;
    u64 s = hb_rng_load(rng, b);
    double mu = (double)logits[2 * b], ls = (double)logits[2 * b + 1];
    double sm = hb_f64(smin);
    if (ls < sm) ls = sm;
    double r = sqrt(-2.0 * log(1.0 - hb_uniform(s, 0)));
    double n = r * cos(HB_2PI * hb_uniform(s, 1));
    float yf = (float)hb_clamp(mu + exp(ls) * hb_f64(temp) * n, -1.0, 1.0);
    y[b] = yf;
    enc[b] = yf;
    hb_rng_store(rng, b, s + 2 * HB_GAMMA);
}

} // extern "C"
