package outputs

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// AdaCat is the Adaptive Categorical head on x = (y+1)/2 in [0,1].
//
// Channels: 2k per timestep, k width logits psi then k height logits phi;
// w = softmax(psi), h = softmax(phi), left edges c_i = sum_{j<i} w_j (float64
// cumulative sum). The density is f(x) = h_i/w_i for x in bin i, evaluated as
// log_softmax(phi)_i - log_softmax(psi)_i; the bin is the clamped
// searchsorted of x in cumsum(w) (x on an edge belongs to the left bin; the
// last edge is pinned to 1). Targets outside [-1,1] are clamped into it.
//
// Training loss, lambda > 0: L_s = -sum_j (Fz(c_j+w_j) - Fz(c_j)) (log h_j -
// log w_j), the expected log-density under the kernel Uniform[max(x-lambda,0),
// min(x+lambda,1)] (Fz its CDF). Its gradient includes the movement of the bin
// edges with psi, which the plain NLL gradient misses (that bias is why the
// smoothing exists). lambda = 0 is the plain NLL -log f(x) with the autodiff
// gradient (edges held fixed).
//
// Bits: -log2 f(x) + 1 (the density on [-1,1] is f/2), never smoothed.
// Sampling: bin i ~ Categorical(h), x ~ Uniform(c_i, c_i+w_i), y = 2x-1.
// Input: the previous sample as one scalar.
type AdaCat struct {
	k      int
	lambda float64
}

// NewAdaCat returns an AdaCat head with k components and kernel half-width
// lambda (0 = unsmoothed NLL).
func NewAdaCat(k int, lambda float64) (*AdaCat, error) {
	if k < 1 {
		return nil, fmt.Errorf("outputs: adacat: --components must be >= 1, got %d", k)
	}
	if k > MaxChannels/2 {
		return nil, fmt.Errorf("outputs: adacat: --components %d exceeds the limit %d", k, MaxChannels/2)
	}
	if lambda < 0 || math.IsNaN(lambda) || math.IsInf(lambda, 0) {
		return nil, fmt.Errorf("outputs: adacat: --lambda must be a finite number >= 0, got %v", lambda)
	}
	return &AdaCat{k: k, lambda: lambda}, nil
}

func (a *AdaCat) Name() string { return "adacat" }
func (a *AdaCat) Spec() string {
	return fmt.Sprintf("adacat --components %d --lambda %s", a.k, fmtFloat(a.lambda))
}
func (a *AdaCat) Channels() int      { return 2 * a.k }
func (a *AdaCat) InputChannels() int { return 1 }

// Components is k; Lambda the smoothing half-width.
func (a *AdaCat) Components() int { return a.k }
func (a *AdaCat) Lambda() float64 { return a.lambda }

func (a *AdaCat) EncodeInput(y float32, dst []float32) { dst[0] = y }

func (a *AdaCat) Loss(logits []float32, stride, T int, targets, mask []float32, grad []float32, gradScale float32) float64 {
	return runLoss(a, "adacat", logits, stride, T, targets, mask, grad, gradScale)
}

func (a *AdaCat) Bits(logits []float32, stride, T int, targets []float32, out []float64) {
	runBits(a, "adacat", logits, stride, T, targets, out)
}

func (a *AdaCat) channels() int { return 2 * a.k }

// scratch: widths w, unnormalised heights (k each), edges (k+1), masses and
// edge terms (k+1 each).
func (a *AdaCat) scratchLen() int { return 5*a.k + 3 }

func (a *AdaCat) lossStep(z []float64, y float64, g, s []float64) float64 {
	return adacatLoss(a.k, a.lambda, z, (y+1)/2, g, s)
}

func (a *AdaCat) logDensity(z []float64, y float64, s []float64) float64 {
	return adacatLogF(a.k, z, (y+1)/2, s) - math.Ln2
}

// adacatParams is one timestep's AdaCat distribution: log w_j = psi_j - lseW,
// log h_j = phi_j - lseH, widths w, heights h_j = eh_j*invH, edges c.
type adacatParams struct {
	psi, phi   []float64
	lseW, lseH float64
	w, eh, c   []float64
	invH       float64
}

// logDens is g_j = log h_j - log w_j, the log-density of bin j.
func (p *adacatParams) logDens(j int) float64 { return (p.phi[j] - p.lseH) - (p.psi[j] - p.lseW) }

// adacatSetup computes the widths, the float64 cumulative edges and the
// normalisers from z = [psi, phi] in three passes over each half (the cost of
// a softmax), keeping log-widths and log-heights implicit.
func adacatSetup(k int, z, s []float64) adacatParams {
	p := adacatParams{psi: z[:k], phi: z[k : 2*k], w: s[:k], eh: s[k : 2*k], c: s[2*k : 3*k+1]}
	mw, mh := p.psi[0], p.phi[0]
	for j := 1; j < k; j++ { // plain compares: math.Max's NaN/-0 handling costs 25% here
		if v := p.psi[j]; v > mw {
			mw = v
		}
		if v := p.phi[j]; v > mh {
			mh = v
		}
	}
	sw, sh := 0.0, 0.0
	for j := 0; j < k; j++ {
		ew := math.Exp(p.psi[j] - mw)
		eh := math.Exp(p.phi[j] - mh)
		p.w[j], p.eh[j] = ew, eh
		sw += ew
		sh += eh
	}
	p.lseW, p.lseH = mw+math.Log(sw), mh+math.Log(sh)
	p.invH = 1 / sh
	inv, acc := 1/sw, 0.0
	p.c[0] = 0
	for j := 0; j < k; j++ {
		p.w[j] *= inv
		acc += p.w[j]
		p.c[j+1] = acc
	}
	// The last edge is 1 by construction; pinning it keeps the rounding of
	// the sum out of the smoothed loss near x = 1 (amplified there by 1/lambda).
	p.c[k] = 1
	return p
}

// adacatBin is searchsorted(cumsum(w), x) clamped to [0,k-1]: the first bin
// whose right edge c[i+1] >= x.
func adacatBin(c []float64, x float64) int {
	k := len(c) - 1
	lo, hi := 0, k
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if c[m+1] >= x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return min(lo, k-1)
}

// adacatLogF returns log f(x) on [0,1] (x clamped into it).
func adacatLogF(k int, z []float64, x float64, s []float64) float64 {
	p := adacatSetup(k, z, s)
	return p.logDens(adacatBin(p.c, clamp(x, 0, 1)))
}

// adacatLoss is the per-timestep AdaCat training loss and its gradient g
// with respect to z = [psi, phi] (see AdaCat). Pure: the CUDA kernel mirrors it.
func adacatLoss(k int, lambda float64, z []float64, x float64, g, s []float64) float64 {
	p := adacatSetup(k, z, s)
	w, eh, c := p.w, p.eh, p.c
	gpsi, gphi := g[:k], g[k:2*k]
	x = clamp(x, 0, 1)
	if lambda == 0 {
		i := adacatBin(c, x)
		for j := 0; j < k; j++ {
			gpsi[j] = -w[j]
			gphi[j] = eh[j] * p.invH
		}
		gpsi[i]++
		gphi[i]--
		return -p.logDens(i)
	}
	m, d := s[3*k+1:4*k+2], s[4*k+2:5*k+3]
	lo, hi := math.Max(x-lambda, 0), math.Min(x+lambda, 1)
	inv := 1 / (hi - lo)
	fz := func(u float64) float64 { return clamp((u-lo)*inv, 0, 1) }
	// Only bins ia..ib overlap the kernel: left of ia the right edge is < lo,
	// right of ib the left edge is >= hi.
	ia, ib := adacatBin(c, lo), adacatBin(c, hi)
	loss, M := 0.0, 0.0
	for j := ia; j <= ib; j++ {
		m[j] = fz(c[j+1]) - fz(c[j])
		M += m[j]
		loss -= m[j] * p.logDens(j)
	}
	// Edge terms: dL/dc_e = -Fz'(c_e) (g_{e-1} - g_e), g = log h - log w, for
	// interior edges strictly inside the kernel; c_e = sum_{j<e} w_j gives
	// dc_e/dpsi_l = w_l ([l<e] - c_e).
	dtot, dc := 0.0, 0.0
	for e := ia + 1; e <= ib; e++ {
		d[e] = 0
		if e <= k-1 && c[e] > lo && c[e] < hi {
			d[e] = -inv * (p.logDens(e-1) - p.logDens(e))
			dtot += d[e]
			dc += d[e] * c[e]
		}
	}
	hM := p.invH * M
	for j := 0; j < ia; j++ {
		gpsi[j] = w[j] * (dtot - dc - M)
		gphi[j] = eh[j] * hM
	}
	for j := ib + 1; j < k; j++ {
		gpsi[j] = w[j] * (-dc - M)
		gphi[j] = eh[j] * hM
	}
	suf := 0.0 // sum of d[e] for e > j
	for j := ib; j >= ia; j-- {
		gpsi[j] = m[j] + w[j]*(suf-dc-M)
		gphi[j] = eh[j]*hM - m[j]
		if j > ia {
			suf += d[j]
		}
	}
	return loss
}

// Sample draws i ~ Categorical(h), x ~ Uniform(c_i, c_i+w_i), y = 2x-1.
func (a *AdaCat) Sample(logits []float32, stride int, t float64, rng *rand.Rand) float32 {
	k := a.k
	checkOneStep("adacat", logits, 2*k, stride, t)
	i := sampleSoftmax(logits, k, k, stride, t, rng)
	mx := math.Inf(-1)
	for j := 0; j < k; j++ {
		if v := strided(logits, j, stride); v > mx {
			mx = v
		}
	}
	sum, left := 0.0, 0.0
	for j := 0; j < k; j++ {
		e := math.Exp(strided(logits, j, stride) - mx)
		if j < i {
			left += e
		}
		sum += e
	}
	wi := math.Exp(strided(logits, i, stride)-mx) / sum
	x := clamp(left/sum+rng.Float64()*wi, 0, 1)
	return float32(2*x - 1)
}
