package outputs

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// MoL is the discretized mixture of M logistics over Q levels of the
// reference vocoder (r9y9 discretized_mix_logistic_loss). Channels: 3M,
// mixture logits, then means, then log-scales. Each component scores the
// bin [y-d, y+d], d = 1/(Q-1): y < -0.999 uses log CDF(y+d), y > 0.999 uses
// log(1-CDF(y-d)), a bin mass below 1e-5 falls back to log pdf(y) -
// log((Q-1)/2). Unlike the reference, only the selected branch is
// differentiated, so an unused branch cannot inject NaN into the gradient.
//
// The log-scales are clamped below at log-scale-min in training, evaluation
// and sampling (the reference clamps in its loss and its sampler, so the
// clamped mixture is the model's distribution).
//
// Bits: the bin mass P as a density on [-1,1], P*(Q-1)/2 (P over the bin
// width 2/(Q-1) the loss integrates; REFERENCE's P*Q/2 differs by log2(Q/(Q-1))
// = 2.2e-5 bits at Q=65536; this choice makes the tiny-mass branch exactly
// the mixture pdf). At |y| > 0.999 it is the tail mass the reference assigns
// to the edge bin. Sampling: Gumbel-max component, logistic sample, clamp to
// [-1,1] (uniforms in [1e-5, 1-1e-5] as the reference). Input: one scalar.
type MoL struct {
	m           int
	q           int
	logScaleMin float64
}

// NewMoL returns a mixture of mixtures logistics over levels bins.
func NewMoL(mixtures, levels int, logScaleMin float64) (*MoL, error) {
	if mixtures < 1 {
		return nil, fmt.Errorf("outputs: mol: --mixtures must be >= 1, got %d", mixtures)
	}
	if mixtures > MaxChannels/3 {
		return nil, fmt.Errorf("outputs: mol: --mixtures %d exceeds the limit %d", mixtures, MaxChannels/3)
	}
	if levels < 2 {
		return nil, fmt.Errorf("outputs: mol: --levels must be >= 2, got %d", levels)
	}
	if math.IsNaN(logScaleMin) || math.IsInf(logScaleMin, 0) {
		return nil, fmt.Errorf("outputs: mol: --log-scale-min must be finite, got %v", logScaleMin)
	}
	return &MoL{m: mixtures, q: levels, logScaleMin: logScaleMin}, nil
}

func (l *MoL) Name() string { return "mol" }
func (l *MoL) Spec() string {
	return fmt.Sprintf("mol --mixtures %d --levels %d --log-scale-min %s", l.m, l.q, fmtFloat(l.logScaleMin))
}
func (l *MoL) Channels() int                        { return 3 * l.m }
func (l *MoL) InputChannels() int                   { return 1 }
func (l *MoL) EncodeInput(y float32, dst []float32) { dst[0] = y }

// Mixtures, Levels and LogScaleMin are the head's options.
func (l *MoL) Mixtures() int        { return l.m }
func (l *MoL) Levels() int          { return l.q }
func (l *MoL) LogScaleMin() float64 { return l.logScaleMin }

func (l *MoL) Loss(logits []float32, stride, T int, targets, mask []float32, grad []float32, gradScale float32) float64 {
	return runLoss(l, "mol", logits, stride, T, targets, mask, grad, gradScale)
}

func (l *MoL) Bits(logits []float32, stride, T int, targets []float32, out []float64) {
	runBits(l, "mol", logits, stride, T, targets, out)
}

func (l *MoL) channels() int   { return 3 * l.m }
func (l *MoL) scratchLen() int { return 3 * l.m }

// lossStep: loss = -logsumexp_m(log pi_m + L_m); with responsibilities r,
// d/dlogit_m = pi_m - r_m, d/dmean_m = -r_m dL_m/dmean, d/dlogscale_m =
// -r_m dL_m/ds (zero where the clamp is active).
func (l *MoL) lossStep(z []float64, y float64, g, s []float64) float64 {
	M := l.m
	a, pi := s[:M], s[M:2*M]
	logSoftmax(z[:M], a, pi)
	dmu, ds := g[M:2*M], g[2*M:3*M]
	for j := 0; j < M; j++ {
		ls := z[2*M+j]
		clamped := ls < l.logScaleMin
		if clamped {
			ls = l.logScaleMin
		}
		lc, dm, dsj := molComponent(y, z[M+j], ls, l.q)
		a[j] += lc
		dmu[j], ds[j] = dm, dsj
		if clamped {
			ds[j] = 0
		}
	}
	lse := logSumExp(a)
	for j := 0; j < M; j++ {
		r := math.Exp(a[j] - lse)
		g[j] = pi[j] - r
		dmu[j] *= -r
		ds[j] *= -r
	}
	return -lse
}

func (l *MoL) logDensity(z []float64, y float64, s []float64) float64 {
	M := l.m
	a, pi := s[:M], s[M:2*M]
	logSoftmax(z[:M], a, pi)
	for j := 0; j < M; j++ {
		lc, _, _ := molComponent(y, z[M+j], math.Max(z[2*M+j], l.logScaleMin), l.q)
		a[j] += lc
	}
	return logSumExp(a) + math.Log(float64(l.q-1)/2)
}

// molComponent is one logistic's discretized log-probability of y with mean
// mu and log-scale s (already clamped) over q levels, and its derivatives
// with respect to mu and s. Pure: the CUDA kernel mirrors it.
func molComponent(y, mu, s float64, q int) (lp, dmu, ds float64) {
	inv := math.Exp(-s)
	cy := y - mu
	d := 1 / float64(q-1)
	switch {
	case y < -0.999: // log CDF(y+d)
		p := inv * (cy + d)
		dp := sigmoid(-p)
		return -softplus(-p), -inv * dp, -p * dp
	case y > 0.999: // log(1 - CDF(y-d))
		n := inv * (cy - d)
		dn := -sigmoid(n)
		return -softplus(n), -inv * dn, -n * dn
	}
	p, n := inv*(cy+d), inv*(cy-d)
	sp, sn := sigmoid(p), sigmoid(n)
	if delta := sp - sn; delta > 1e-5 {
		dp := sp * sigmoid(-p) / delta
		dn := -sn * sigmoid(-n) / delta
		return math.Log(delta), -inv * (dp + dn), -(p*dp + n*dn)
	}
	mid := inv * cy
	dmid := 1 - 2*sigmoid(mid)
	return mid - s - 2*softplus(mid) - math.Log(float64(q-1)/2), -inv * dmid, -1 - mid*dmid
}

func (l *MoL) Sample(logits []float32, stride int, t float64, rng *rand.Rand) float32 {
	M := l.m
	checkOneStep("mol", logits, 3*M, stride, t)
	u01 := func() float64 { return 1e-5 + (1-2e-5)*rng.Float64() }
	invT := 1 / t
	best, bj := math.Inf(-1), 0
	for j := 0; j < M; j++ {
		v := strided(logits, j, stride)*invT - math.Log(-math.Log(u01()))
		if v > best {
			best, bj = v, j
		}
	}
	mu := strided(logits, M+bj, stride)
	s := math.Max(strided(logits, 2*M+bj, stride), l.logScaleMin)
	u := u01()
	return float32(clamp(mu+math.Exp(s)*t*(math.Log(u)-math.Log(1-u)), -1, 1))
}
