package outputs

import (
	"math"
	"math/rand/v2"
	"testing"
)

// The Appendix A experiment: data x ~ Uniform[0,1), AdaCat with k = 2.
//
// Expected log-likelihood E(psi, phi) = E_x[log f(x)] = sum_i w_i (log h_i -
// log w_i), since bin i holds mass w_i of the uniform data. Its true gradient
// with respect to the width logits, counting the moving edge, is
//
//	dE/dpsi_l = w_l (g_l - sum_i w_i g_i),  g_i = log h_i - log w_i,
//
// while the per-sample NLL gradient -(1[x in l] - w_l) averages to
// -(w_l - w_l) = 0 for every psi: the Monte-Carlo mean misses the whole
// dE/dpsi. At the brief's point w = h = 0.5 both are 0 (the model equals the
// data), so the bias is shown at w = 0.5, h = (0.8, 0.2), where
// dE/dpsi = +-0.25 ln 4 = +-0.3466.
//
// Claim B.1: the lambda-smoothed per-sample loss L_s(x) is the negated
// expected log-density under the kernel, so its Monte-Carlo gradient must match
// the gradient of S = E_x[L_s(x)] (here: midpoint quadrature over x of an
// independent closed form of L_s for k = 2, differentiated numerically).
func TestAppendixAEdgeBias(t *testing.T) {
	for _, pt := range []struct {
		name string
		phi  [2]float64
	}{{"w=h=0.5", [2]float64{0, 0}}, {"w=0.5 h=(0.8,0.2)", [2]float64{math.Log(0.8), math.Log(0.2)}}} {
		z := []float64{0, 0, pt.phi[0], pt.phi[1]}
		w, h := softmax64(z[:2]), softmax64(z[2:])
		g := []float64{math.Log(h[0] / w[0]), math.Log(h[1] / w[1])}
		gbar := w[0]*g[0] + w[1]*g[1]
		// Loss is -E, so its true psi gradient is -w_l (g_l - gbar).
		truePsi := []float64{-w[0] * (g[0] - gbar), -w[1] * (g[1] - gbar)}
		// Check the closed form against finite differences of -E(psi).
		negE := func(psi0 float64) float64 {
			ww := softmax64([]float64{psi0, 0})
			return -(ww[0]*(math.Log(h[0])-math.Log(ww[0])) + ww[1]*(math.Log(h[1])-math.Log(ww[1])))
		}
		if fd := (negE(1e-6) - negE(-1e-6)) / 2e-6; math.Abs(fd-truePsi[0]) > 1e-8 {
			t.Fatalf("%s: closed-form dE/dpsi_0 %v, finite difference %v", pt.name, truePsi[0], fd)
		}

		plain, _ := NewAdaCat(2, 0)
		mc := mcGrad(plain, z, 1_000_000)
		for l := 0; l < 2; l++ {
			if math.Abs(mc[l]) > 0.005 {
				t.Errorf("%s: plain MC grad psi_%d = %v, expected ~0 for any psi", pt.name, l, mc[l])
			}
			if want := h[l] - w[l]; math.Abs(mc[2+l]-want) > 0.005 {
				t.Errorf("%s: plain MC grad phi_%d = %v, true %v", pt.name, l, mc[2+l], want)
			}
		}
		if pt.phi[0] != 0 {
			if miss := math.Abs(truePsi[0] - mc[0]); miss < 0.3 {
				t.Errorf("%s: plain MC grad psi misses only %v of the true %v", pt.name, miss, truePsi[0])
			}
			t.Logf("%s: true dLoss/dpsi = %.4f %.4f, plain NLL MC mean = %.4f %.4f (edge terms missed)", pt.name, truePsi[0], truePsi[1], mc[0], mc[1])
		}

		const lambda = 0.05
		smooth, _ := NewAdaCat(2, lambda)
		mcs := mcGrad(smooth, z, 1_000_000)
		for j := 0; j < 4; j++ {
			const eps = 1e-4
			zp := append([]float64(nil), z...)
			zp[j] += eps
			zm := append([]float64(nil), z...)
			zm[j] -= eps
			want := (smoothedExpectation(zp, lambda) - smoothedExpectation(zm, lambda)) / (2 * eps)
			if math.Abs(mcs[j]-want) > 0.01 {
				t.Errorf("%s lambda=%g: smoothed MC grad[%d] = %v, d/dz of quadrature E[L_s] = %v", pt.name, lambda, j, mcs[j], want)
			}
			// The smoothed gradient recovers the edge term the plain one misses.
			if j < 2 && math.Abs(mcs[j]-truePsi[j]) > 0.01 {
				t.Errorf("%s lambda=%g: smoothed MC dL/dpsi_%d = %v, true unsmoothed gradient %v", pt.name, lambda, j, mcs[j], truePsi[j])
			}
			if j < 2 {
				t.Logf("%s lambda=%g: smoothed MC dL/dpsi_%d = %.4f, d/dpsi E[L_s] = %.4f, true unsmoothed %.4f", pt.name, lambda, j, mcs[j], want, truePsi[j])
			}
		}
	}
}

// mcGrad averages the per-sample gradient over n draws x ~ Uniform[0,1).
func mcGrad(h *AdaCat, z []float64, n int) []float64 {
	rng := rand.New(rand.NewPCG(42, 4242))
	g := make([]float64, 4)
	sum := make([]float64, 4)
	s := make([]float64, h.scratchLen())
	for i := 0; i < n; i++ {
		h.lossStep(z, 2*rng.Float64()-1, g, s)
		for j := range sum {
			sum[j] += g[j]
		}
	}
	for j := range sum {
		sum[j] /= float64(n)
	}
	return sum
}

// smoothedExpectation is E_x[L_s(x)] for x ~ U[0,1) and k = 2 by the
// midpoint rule, with L_s in closed form: the kernel U[max(x-l,0),
// min(x+l,1)] puts mass F(c) on bin 0 (c = w_0 the edge) and 1-F(c) on bin 1.
func smoothedExpectation(z []float64, lambda float64) float64 {
	w, h := softmax64(z[:2]), softmax64(z[2:])
	c := w[0]
	g0, g1 := math.Log(h[0]/w[0]), math.Log(h[1]/w[1])
	const n = 100000
	sum := 0.0
	for i := 0; i < n; i++ {
		x := (float64(i) + 0.5) / n
		a, b := math.Max(x-lambda, 0), math.Min(x+lambda, 1)
		m0 := math.Max(0, math.Min(1, (c-a)/(b-a)))
		sum -= m0*g0 + (1-m0)*g1
	}
	return sum / n
}
