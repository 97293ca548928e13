/*
 * cloop: the CPU synthesis roofline anchor for wavecat's incremental
 * generator (wavenet/generate.go): the same per-sample work written as a
 * plain C loop over OpenBLAS, from its definition.
 *
 * Reference config: 24 layers (4 stacks of dilations 1..32), 128 residual /
 * 256 gate / 128 skip channels, kernel 3, 80 mels, 30 outputs (MoL, 10
 * mixtures), scalar input. Per sample and column (utterance):
 *   first conv (128 x 1), then per layer: the dilated conv as one product
 *   over the stacked taps [x(t-2d) x(t-d) x(t)] (256 x 384) added to the
 *   layer's conditioning projection, the gate tanh(a)*sigmoid(b), the fused
 *   residual+skip 1x1 conv (256 x 128; skip rows only in the last layer),
 *   residual add and skip sum; head ReLU, 128 x 128, ReLU, 30 x 128.
 * Batch 1 runs each product as sgemv; --gemm runs each as one sgemm over the
 * batch (columns contiguous). Conditioning: every 512 samples the layers'
 * projections of a (random) upsampled mel are computed with one sgemm per
 * column ([512 x 6144] = [512 x 80] x [80 x 6144]), as wavecat does per
 * chunk; the upsampler itself and sampling are not included (the next
 * input is tanh of the first output, a stand-in for sampling). Weights are
 * random with the real shapes: speed does not depend on their values.
 *
 * Usage: cloop [--batch N] [--gemm] [--seconds S]; prints "samples/s X"
 * (all columns together). OpenBLAS is set to one thread; OPENBLAS_CORETYPE
 * is left as the environment gives it. Build: see build.sh.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern void sgemv_(const char *trans, const int *m, const int *n, const float *alpha, const float *a,
                   const int *lda, const float *x, const int *incx, const float *beta, float *y,
                   const int *incy);
extern void sgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k,
                   const float *alpha, const float *a, const int *lda, const float *b, const int *ldb,
                   const float *beta, float *c, const int *ldc);
extern void openblas_set_num_threads(int n);
extern char *openblas_get_config(void);
extern char *openblas_get_corename(void);

enum { L = 24, STACK = 6, R = 128, G = 256, H = 128, S = 128, K = 3, C = 80, O = 30, CHUNK = 512 };
enum { KR = K * R, LG = L * G };

static unsigned long long rng = 88172645463325252ULL;
static float frand(float a) {
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return a * ((float)(rng >> 40) / (float)(1 << 24) * 2.0f - 1.0f);
}
static float *randv(size_t n, float a) {
	float *v = malloc(n * sizeof(float));
	for (size_t i = 0; i < n; i++) v[i] = frand(a);
	return v;
}
static float *zeros(size_t n) { return calloc(n, sizeof(float)); }

/* Weights: row-major as wavecat lays them out (a row of the conv is
 * [tap 0 | tap 1 | tap 2] of R each), i.e. column-major transposed. */
static float *Wfirst, *Bfirst, *Wc, *Bc, *Wconv[L], *Wrs[L], *Brs[L], *W1, *B1, *W2, *B2, *skipBias;
static int dil[L];

/* Per-column state; the batch's vectors of one kind are contiguous. */
typedef struct {
	int B, gemm;
	float *X[L + 1]; /* [B][KR]: stacked taps, the last R is x(t) */
	float *ring[L];  /* [B][2*d*R] */
	float *pre, *z, *rs, *skip, *a1, *a2, *out;
	float *cond, *proj; /* [B][C][CHUNK], [B][CHUNK][LG] */
	float *prev;
} state;

static void gate(float *z, const float *pre) {
	for (int i = 0; i < H; i++) {
		float a = pre[i], b = pre[H + i];
		z[i] = tanhf(a) * (1.0f / (1.0f + expf(-b)));
	}
}

/* prod: y_b = W x_b (+ y_b) for every column: sgemv per column, or one
 * sgemm over the batch. W is m x k row-major. */
static void prod(state *s, int m, int k, const float *W, const float *x, int ldx, float *y, int ldy, float beta) {
	const float one = 1;
	const int inc = 1;
	if (s->gemm) {
		int B = s->B;
		sgemm_("T", "N", &m, &B, &k, &one, W, &k, x, &ldx, &beta, y, &ldy);
		return;
	}
	for (int b = 0; b < s->B; b++) sgemv_("T", &k, &m, &one, W, &k, x + (size_t)b * ldx, &inc, &beta, y + (size_t)b * ldy, &inc);
}

static void condChunk(state *s) {
	const float one = 1, zero = 0;
	const int chunk = CHUNK, c = C, lg = LG;
	for (int b = 0; b < s->B; b++) {
		/* proj (col-major LG x CHUNK) = Wc (row-major LG x C) cond (row-major C x CHUNK). */
		sgemm_("T", "T", &lg, &chunk, &c, &one, Wc, &c, s->cond + (size_t)b * C * CHUNK, &chunk, &zero,
		       s->proj + (size_t)b * CHUNK * LG, &lg);
		for (int j = 0; j < CHUNK; j++) {
			float *p = s->proj + ((size_t)b * CHUNK + j) * LG;
			for (int i = 0; i < LG; i++) p[i] += Bc[i];
		}
	}
}

static void step(state *s, long t) {
	int B = s->B;
	int tc = (int)(t % CHUNK);
	if (tc == 0) condChunk(s);
	for (int b = 0; b < B; b++) {
		float *h = s->X[0] + (size_t)b * KR + (K - 1) * R;
		for (int r = 0; r < R; r++) h[r] = Wfirst[r] * s->prev[b] + Bfirst[r];
	}
	for (int l = 0; l < L; l++) {
		int d = dil[l], span = (K - 1) * d, last = l == L - 1;
		for (int b = 0; b < B; b++) {
			float *x = s->X[l] + (size_t)b * KR;
			float *ring = s->ring[l] + (size_t)b * span * R;
			for (int k = 0; k < K - 1; k++) {
				long sl = (t - (long)(K - 1 - k) * d) % span;
				if (sl < 0) sl += span;
				memcpy(x + k * R, ring + sl * R, R * sizeof(float));
			}
			memcpy(s->pre + (size_t)b * G, s->proj + ((size_t)b * CHUNK + tc) * LG + l * G, G * sizeof(float));
		}
		prod(s, G, KR, Wconv[l], s->X[l], KR, s->pre, G, 1);
		for (int b = 0; b < B; b++) {
			float *ring = s->ring[l] + (size_t)b * span * R;
			memcpy(ring + (t % span) * R, s->X[l] + (size_t)b * KR + (K - 1) * R, R * sizeof(float));
			gate(s->z + (size_t)b * H, s->pre + (size_t)b * G);
		}
		if (last)
			prod(s, S, H, Wrs[l] + R * H, s->z, H, s->rs + R, R + S, 0);
		else
			prod(s, R + S, H, Wrs[l], s->z, H, s->rs, R + S, 0);
		for (int b = 0; b < B; b++) {
			float *rs = s->rs + (size_t)b * (R + S), *skip = s->skip + (size_t)b * S;
			if (!last) {
				float *h = s->X[l] + (size_t)b * KR + (K - 1) * R;
				float *hn = s->X[l + 1] + (size_t)b * KR + (K - 1) * R;
				for (int r = 0; r < R; r++) hn[r] = (rs[r] + Brs[l][r] + h[r]) * 0.70710678f;
			}
			if (l == 0)
				memcpy(skip, rs + R, S * sizeof(float));
			else
				for (int i = 0; i < S; i++) skip[i] += rs[R + i];
		}
	}
	const float norm = sqrtf(1.0f / L);
	for (int b = 0; b < B; b++)
		for (int i = 0; i < S; i++) s->a1[b * S + i] = fmaxf((s->skip[b * S + i] + skipBias[i]) * norm, 0);
	prod(s, S, S, W1, s->a1, S, s->a2, S, 0);
	for (int b = 0; b < B; b++)
		for (int i = 0; i < S; i++) s->a2[b * S + i] = fmaxf(s->a2[b * S + i] + B1[i], 0);
	prod(s, O, S, W2, s->a2, S, s->out, O, 0);
	for (int b = 0; b < B; b++) s->prev[b] = tanhf(s->out[b * O] + B2[0]);
}

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
	int B = 1, gemm = 0;
	double seconds = 3;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--batch") && i + 1 < argc)
			B = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--gemm"))
			gemm = 1;
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else {
			fprintf(stderr, "usage: cloop [--batch N] [--gemm] [--seconds S]\n");
			return 2;
		}
	}
	if (B < 1) B = 1;
	openblas_set_num_threads(1);
	for (int l = 0; l < L; l++) dil[l] = 1 << (l % STACK);
	Wfirst = randv(R, 1);
	Bfirst = randv(R, 0.1f);
	Wc = randv((size_t)LG * C, 1 / sqrtf(C));
	Bc = randv(LG, 0.1f);
	for (int l = 0; l < L; l++) {
		Wconv[l] = randv((size_t)G * KR, 1 / sqrtf(KR));
		Wrs[l] = randv((size_t)(R + S) * H, 1 / sqrtf(H));
		Brs[l] = randv(R + S, 0.1f);
	}
	W1 = randv(S * S, 1 / sqrtf(S));
	B1 = randv(S, 0.1f);
	W2 = randv(O * S, 1 / sqrtf(S));
	B2 = randv(O, 0.1f);
	skipBias = randv(S, 0.1f);
	state s = {.B = B, .gemm = gemm};
	for (int l = 0; l <= L; l++) s.X[l] = zeros((size_t)B * KR);
	for (int l = 0; l < L; l++) s.ring[l] = zeros((size_t)B * 2 * dil[l] * R);
	s.pre = zeros((size_t)B * G);
	s.z = zeros((size_t)B * H);
	s.rs = zeros((size_t)B * (R + S));
	s.skip = zeros((size_t)B * S);
	s.a1 = zeros((size_t)B * S);
	s.a2 = zeros((size_t)B * S);
	s.out = zeros((size_t)B * O);
	s.prev = zeros(B);
	s.cond = randv((size_t)B * C * CHUNK, 1);
	s.proj = zeros((size_t)B * CHUNK * LG);
	/* Warm up one chunk, then time whole chunks until the time is up. */
	long t = 0;
	for (; t < CHUNK; t++) step(&s, t);
	double t0 = now(), el;
	long steps = 0;
	do {
		for (int i = 0; i < CHUNK; i++, t++, steps++) step(&s, t);
		el = now() - t0;
	} while (el < seconds);
	printf("samples/s %.1f\n", (double)steps * B / el);
	fprintf(stderr, "cloop: batch %d, %s, %ld steps in %.2f s, OpenBLAS %s (%s), checksum %g\n", B,
	        gemm ? "sgemm" : "sgemv", steps, el, openblas_get_config(), openblas_get_corename(), s.prev[0]);
	return 0;
}
