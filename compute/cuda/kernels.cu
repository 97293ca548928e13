// Elementwise and reduction kernels of the wavecat CUDA backend, compiled at
// run time by NVRTC (see nvrtc.go). extern "C" keeps the names unmangled so
// the Go side finds them with cuModuleGetFunction.
//
// Conventions: every size is a long long (the Go side passes 8-byte slots),
// elementwise kernels use grid-stride loops, reductions use blocks of exactly
// BLOCK threads and a shared-memory tree (deterministic, no atomics).

#define BLOCK 256

typedef long long ll;

__device__ __forceinline__ ll gtid() { return (ll)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ ll gstride() { return (ll)blockDim.x * gridDim.x; }

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// block_sum_d returns the sum of v over the block to every thread.
__device__ double block_sum_d(double v, double *sh) {
    sh[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = BLOCK / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    double r = sh[0];
    __syncthreads();
    return r;
}

extern "C" {

__global__ void wc_scale(float *x, ll n, float alpha) {
    for (ll i = gtid(); i < n; i += gstride()) x[i] *= alpha;
}

__global__ void wc_axpy(float *y, const float *x, ll n, float alpha) {
    for (ll i = gtid(); i < n; i += gstride()) y[i] += alpha * x[i];
}

__global__ void wc_add_scaled(float *dst, const float *a, const float *b, ll n, float alpha) {
    for (ll i = gtid(); i < n; i += gstride()) dst[i] = (a[i] + b[i]) * alpha;
}

__global__ void wc_relu(float *dst, const float *src, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) {
        float v = src[i];
        dst[i] = v > 0.0f ? v : 0.0f;
    }
}

__global__ void wc_relu_backward(float *dx, const float *dy, const float *y, ll n) {
    for (ll i = gtid(); i < n; i += gstride()) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

// wc_dot_partial writes one float64 partial sum of a*b per block; the host
// adds the partials in order, so the result does not depend on timing.
__global__ void wc_dot_partial(const float *a, const float *b, ll n, double *partial) {
    __shared__ double sh[BLOCK];
    double acc = 0.0;
    for (ll i = gtid(); i < n; i += gstride()) acc += (double)a[i] * (double)b[i];
    double s = block_sum_d(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void wc_sumsq_partial(const float *x, ll n, double *partial) {
    __shared__ double sh[BLOCK];
    double acc = 0.0;
    for (ll i = gtid(); i < n; i += gstride()) {
        double v = (double)x[i];
        acc += v * v;
    }
    double s = block_sum_d(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// x[b][c][t] += bias[c]
__global__ void wc_add_bias(float *x, const float *bias, ll batch, ll channels, ll t) {
    ll n = batch * channels * t;
    for (ll i = gtid(); i < n; i += gstride()) x[i] += bias[(i / t) % channels];
}

// One block per channel: dbias[c] += sum over b, t of dy[b][c][t].
__global__ void wc_bias_grad(float *dbias, const float *dy, ll batch, ll channels, ll t) {
    __shared__ double sh[BLOCK];
    ll c = blockIdx.x;
    double acc = 0.0;
    for (ll b = 0; b < batch; b++) {
        const float *row = dy + (b * channels + c) * t;
        for (ll j = threadIdx.x; j < t; j += BLOCK) acc += (double)row[j];
    }
    double s = block_sum_d(acc, sh);
    if (threadIdx.x == 0) dbias[c] += (float)s;
}

// pre is [batch][2n] (a then b), z is [batch][n]: z = tanh(a)*sigmoid(b).
__global__ void wc_gated(float *z, const float *pre, ll batch, ll n) {
    ll total = batch * n;
    for (ll i = gtid(); i < total; i += gstride()) {
        ll b = i / n, j = i - b * n;
        const float *p = pre + b * 2 * n;
        z[i] = tanhf(p[j]) * sigmoidf_(p[n + j]);
    }
}

__global__ void wc_gated_backward(float *dpre, const float *dz, const float *pre, ll batch, ll n) {
    ll total = batch * n;
    for (ll i = gtid(); i < total; i += gstride()) {
        ll b = i / n, j = i - b * n;
        const float *p = pre + b * 2 * n;
        float *dp = dpre + b * 2 * n;
        float ta = tanhf(p[j]);
        float sb = sigmoidf_(p[n + j]);
        float g = dz[i];
        dp[j] = g * sb * (1.0f - ta * ta);
        dp[n + j] = g * ta * sb * (1.0f - sb);
    }
}

// dst[r][t*s+j] = src[r][t]
__global__ void wc_stretch(float *dst, const float *src, ll rows, ll t, ll s) {
    ll ts = t * s, total = rows * ts;
    for (ll i = gtid(); i < total; i += gstride()) {
        ll r = i / ts, k = i - r * ts;
        dst[i] = src[r * t + k / s];
    }
}

// dsrc[r][t] = sum_j ddst[r][t*s+j]
__global__ void wc_stretch_backward(float *dsrc, const float *ddst, ll rows, ll t, ll s) {
    ll total = rows * t;
    for (ll i = gtid(); i < total; i += gstride()) {
        const float *p = ddst + i * s;
        float acc = 0.0f;
        for (ll j = 0; j < s; j++) acc += p[j];
        dsrc[i] = acc;
    }
}

// dst[r][u] = sum_j w[j] * src[r][u + j - width/2], zero outside the row.
__global__ void wc_row_conv_same(float *dst, const float *src, const float *w, ll rows, ll t, ll width) {
    ll h = width / 2, total = rows * t;
    for (ll i = gtid(); i < total; i += gstride()) {
        ll r = i / t, u = i - r * t;
        const float *row = src + r * t;
        float acc = 0.0f;
        for (ll j = 0; j < width; j++) {
            ll q = u + j - h;
            if (q >= 0 && q < t) acc += w[j] * row[q];
        }
        dst[i] = acc;
    }
}

// dsrc[r][q] = sum_j w[j] * dy[r][q - j + width/2] (overwrites).
__global__ void wc_row_conv_same_backward_src(float *dsrc, const float *dy, const float *w, ll rows, ll t, ll width) {
    ll h = width / 2, total = rows * t;
    for (ll i = gtid(); i < total; i += gstride()) {
        ll r = i / t, q = i - r * t;
        const float *row = dy + r * t;
        float acc = 0.0f;
        for (ll j = 0; j < width; j++) {
            ll u = q - j + h;
            if (u >= 0 && u < t) acc += w[j] * row[u];
        }
        dsrc[i] = acc;
    }
}

// One block per tap j: dw[j] += sum_{r,u} dy[r][u] * src[r][u + j - width/2].
// dw of the row convolution in two deterministic passes: block (j, p)
// sums tap j's products over its share of the rows into partial[j*parts+p]
// (float64), then wc_row_conv_w_finish adds each tap's partials in order.
// One block per tap alone left all but a handful of SMs idle (measured on
// an H100: 1.4 ms per call at 640 rows x 10240).
__global__ void wc_row_conv_same_backward_w(double *partial, const float *dy, const float *src, ll rows, ll t, ll width, ll parts) {
    __shared__ double sh[BLOCK];
    ll j = blockIdx.x / parts, p = blockIdx.x % parts, off = j - width / 2;
    ll lo = off < 0 ? -off : 0;
    ll hi = off > 0 ? t - off : t;
    ll r0 = p * rows / parts, r1 = (p + 1) * rows / parts;
    double acc = 0.0;
    for (ll r = r0; r < r1; r++) {
        const float *d = dy + r * t;
        const float *s = src + r * t;
        for (ll u = lo + threadIdx.x; u < hi; u += BLOCK) acc += (double)d[u] * (double)s[u + off];
    }
    double sum = block_sum_d(acc, sh);
    if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void wc_row_conv_w_finish(float *dw, const double *partial, ll width, ll parts) {
    ll j = gtid();
    if (j >= width) return;
    double s = 0.0;
    for (ll p = 0; p < parts; p++) s += partial[j * parts + p];
    dw[j] += (float)s;
}

// Weight norm over a tap-major weight [groups][out][inner]; one block per
// output row o: w = g[o] * v / ||v[:, o, :]||.
__global__ void wc_weight_norm(float *w, const float *g, const float *v, ll groups, ll out, ll inner) {
    __shared__ double sh[BLOCK];
    ll o = blockIdx.x, per = groups * inner;
    double acc = 0.0;
    for (ll k = threadIdx.x; k < per; k += BLOCK) {
        ll gr = k / inner, i = k - gr * inner;
        double x = (double)v[(gr * out + o) * inner + i];
        acc += x * x;
    }
    double ss = block_sum_d(acc, sh);
    float scale = (float)((double)g[o] / sqrt(ss));
    for (ll k = threadIdx.x; k < per; k += BLOCK) {
        ll gr = k / inner, i = k - gr * inner;
        ll idx = (gr * out + o) * inner + i;
        w[idx] = v[idx] * scale;
    }
}

// dg[o] += <dw, v>/||v||; dv += g/||v|| * (dw - <dw, v>/||v||^2 * v).
__global__ void wc_weight_norm_backward(float *dg, float *dv, const float *dw, const float *g, const float *v, ll groups, ll out, ll inner) {
    __shared__ double sh[BLOCK];
    ll o = blockIdx.x, per = groups * inner;
    double ss = 0.0, dot = 0.0;
    for (ll k = threadIdx.x; k < per; k += BLOCK) {
        ll gr = k / inner, i = k - gr * inner;
        ll idx = (gr * out + o) * inner + i;
        double x = (double)v[idx];
        ss += x * x;
        dot += (double)dw[idx] * x;
    }
    ss = block_sum_d(ss, sh);
    dot = block_sum_d(dot, sh);
    double norm = sqrt(ss);
    if (threadIdx.x == 0) dg[o] += (float)(dot / norm);
    float a = (float)((double)g[o] / norm);
    float b = (float)((double)g[o] * dot / (norm * ss));
    for (ll k = threadIdx.x; k < per; k += BLOCK) {
        ll gr = k / inner, i = k - gr * inner;
        ll idx = (gr * out + o) * inner + i;
        dv[idx] += a * dw[idx] - b * v[idx];
    }
}

// Adam (PyTorch form): step = lr / (1 - beta1^t), bc2s = sqrt(1 - beta2^t),
// p -= step * m / (sqrt(v)/bc2s + eps).
__global__ void wc_adam(float *p, const float *grad, float *m, float *v, ll n, float beta1, float beta2, float eps, float step, float bc2s) {
    for (ll i = gtid(); i < n; i += gstride()) {
        float gr = grad[i];
        float mi = beta1 * m[i] + (1.0f - beta1) * gr;
        float vi = beta2 * v[i] + (1.0f - beta2) * gr * gr;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * mi / (sqrtf(vi) / bc2s + eps);
    }
}

// C = beta*C over batch row-major m x n matrices (leading dimension ldc,
// stridec apart): a GEMM with k = 0, which cuBLAS is not relied on for.
// beta = 0 writes zeros without reading C (BLAS semantics: NaN in C is
// not propagated).
__global__ void wc_gemm_scale_c(float *c, ll batch, ll m, ll n, ll ldc, ll stridec, float beta) {
    ll mn = m * n, total = batch * mn;
    for (ll i = gtid(); i < total; i += gstride()) {
        ll b = i / mn, r = i - b * mn, row = r / n, col = r - row * n;
        float *p = c + b * stridec + row * ldc + col;
        *p = beta == 0.0f ? 0.0f : beta * *p;
    }
}

__global__ void wc_ema(float *ema, const float *param, ll n, float decay) {
    for (ll i = gtid(); i < n; i += gstride()) ema[i] = decay * ema[i] + (1.0f - decay) * param[i];
}

}  // extern "C"
