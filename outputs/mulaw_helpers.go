package outputs

import "math"

// Mu-law helpers (nnmnkwii conventions). Kept here until the mulaw package
// lands; then these become thin calls into it.

// muCompand maps y in [-1,1] to sign(y) ln(1+mu|y|)/ln(1+mu).
func muCompand(y, mu float64) float64 {
	return math.Copysign(math.Log1p(mu*math.Abs(y))/math.Log1p(mu), y)
}

// muExpand inverts muCompand.
func muExpand(m, mu float64) float64 {
	return math.Copysign((math.Pow(1+mu, math.Abs(m))-1)/mu, m)
}

// muQuantize is floor((compand(y)+1)/2*mu), in [0, mu] (y clamped to [-1,1]).
func muQuantize(y, mu float64) int {
	m := muCompand(clamp(y, -1, 1), mu)
	return int(clamp(math.Floor((m+1)/2*mu), 0, mu))
}

// muDequantize is expand(2q/mu - 1).
func muDequantize(q int, mu float64) float64 {
	return muExpand(2*float64(q)/mu-1, mu)
}

// muJacobian is d compand(y)/dy = (mu/ln(1+mu)) / (1+mu|y|).
func muJacobian(y, mu float64) float64 {
	return mu / math.Log1p(mu) / (1 + mu*math.Abs(y))
}
