package cpu

import "math"

// Scalar transcendentals for the gated activation, used where the AVX2
// kernels (gated_amd64.s, same formulas in float32) are not: tails of
// fewer than 8 elements and CPUs without AVX2. math.Tanh and math.Exp
// handle every float64 corner case at ~2x the cost; the kernels need
// float32 accuracy, so these use one branch-free polynomial in float64,
// accurate to about one float32 rounding (tested against math.Tanh /
// math.Exp in mathf_test.go). NaN propagates; +-Inf saturate.

const (
	log2e = 1.4426950408889634
	ln2hi = 6.93147180369123816490e-01 // ln 2 split so n*ln2hi is exact for |n| < 2^11
	ln2lo = 1.90821492927058770002e-10
	// round is 1.5*2^52: adding and subtracting it rounds a float64 of
	// magnitude < 2^51 to the nearest integer without a branch.
	round = 6755399441055744.0
	// maxExpArg keeps 2^n a normal float64 in fexpm1.
	maxExpArg = 708
)

// fexpm1 returns e^x - 1 and e^x for x in [-708, 708] (callers clamp):
// x = n ln2 + r with |r| <= ln2/2, e^r - 1 by its Taylor polynomial through
// r^8 (first omitted term < 2e-10 relative), then
// e^x - 1 = 2^n (e^r - 1) + (2^n - 1), which stays accurate near 0 where
// e^x - 1 would cancel.
func fexpm1(x float64) (em1, e float64) {
	n := (x*log2e + round) - round
	r := x - n*ln2hi - n*ln2lo
	q := r * (1 + r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040+r*(1.0/40320))))))))
	s := math.Float64frombits(uint64(int64(n)+1023) << 52)
	return s*q + (s - 1), s*q + s
}

// fexp is e^x for x in [-708, 708].
func fexp(x float64) float64 {
	_, e := fexpm1(x)
	return e
}

// clampExp clamps an exponent into fexpm1's domain; NaN passes through.
func clampExp(x float64) float64 { return max(min(x, maxExpArg), -maxExpArg) }

// With em = e^(-2|a|) - 1: tanh(a) = sign(a) * -em / (2 + em), which has
// no cancellation for small |a| (em is accurate there), and sigmoid(b) =
// 1/(1 + e^-b); beyond |x| = 708 the clamps change nothing at float32
// precision.

// fgated is tanh(a)*sigmoid(b) with a single division.
func fgated(a, b float64) float64 {
	em, _ := fexpm1(max(-2*math.Abs(a), -maxExpArg))
	eb := fexp(clampExp(-b))
	return math.Copysign(-em, a) / ((2 + em) * (1 + eb))
}

// fgatedGrad returns tanh(a), 1 - tanh(a)^2, sigmoid(b) and
// sigmoid(b)(1 - sigmoid(b)). The derivatives are formed from e^(-2|a|) and
// e^-b as 4e/(1+e)^2 and e/(1+e)^2 rather than 1-t*t and s-s*s, which would
// cancel in the tails and lose the small gradients there.
func fgatedGrad(a, b float64) (t, sech2, s, ds float64) {
	em, e := fexpm1(max(-2*math.Abs(a), -maxExpArg))
	ia := 1 / (2 + em) // 1/(1+e)
	t = math.Copysign(-em*ia, a)
	sech2 = 4 * e * ia * ia
	eb := fexp(clampExp(-b))
	s = 1 / (1 + eb)
	ds = eb * s * s
	return
}
