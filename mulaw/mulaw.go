// Package mulaw implements mu-law companding and the (mu+1)-level
// quantisation used by categorical WaveNet heads, with the exact rounding
// convention of the reference vocoder so that class indices agree with data
// prepared by r9y9/wavenet_vocoder.
//
// Convention (checked against nnmnkwii/preprocessing/generic.py in
// r9y9/nnmnkwii at commit 085994d8, which wavenet_vocoder calls):
// mulaw_quantize(x, mu) = _asint((mulaw(x)+1)/2*mu) where _asint is x.astype(int), i.e. truncation toward zero; the argument is
// never negative for x in [-1, 1], so this is floor. inv_mulaw_quantize(q, mu)
// = inv_mulaw(2*q/mu - 1). Quantize->Dequantize therefore returns the LOWER
// edge of the companded bin, not its centre: the reconstruction error is
// bounded by one whole bin width, not half of it.
package mulaw

import "math"

// DefaultMu is the 8-bit mu-law constant (Q = 256 classes).
const DefaultMu = 255

// Compand maps an amplitude x in [-1, 1] to sign(x) ln(1+mu|x|)/ln(1+mu).
func Compand(x, mu float64) float64 {
	c := math.Log1p(mu*math.Abs(x)) / math.Log1p(mu)
	if x < 0 {
		return -c
	}
	return c
}

// Expand is the inverse of Compand: sign(y) ((1+mu)^|y| - 1)/mu.
func Expand(y, mu float64) float64 {
	// expm1 keeps precision for small |y| where (1+mu)^|y| is close to 1.
	e := math.Expm1(math.Abs(y)*math.Log1p(mu)) / mu
	if y < 0 {
		return -e
	}
	return e
}

// Jacobian is d Compand(y)/dy = (mu/ln(1+mu)) / (1+mu|y|); the likelihood
// protocol multiplies a density in companded space by it to get a density
// over raw amplitude.
func Jacobian(y, mu float64) float64 {
	return mu / math.Log1p(mu) / (1 + mu*math.Abs(y))
}

// LogJacobian is ln Jacobian(y, mu), for log-likelihood sums without underflow.
func LogJacobian(y, mu float64) float64 {
	return math.Log(mu) - math.Log(math.Log1p(mu)) - math.Log1p(mu*math.Abs(y))
}

// Quantize maps x in [-1, 1] to a class in [0, mu] (mu only for x == 1)
// with the nnmnkwii truncation convention. x is clipped to [-1, 1] first so a
// slightly out-of-range sample cannot produce an invalid class.
func Quantize(x float64, mu int) int {
	if x > 1 {
		x = 1
	} else if x < -1 {
		x = -1
	}
	m := float64(mu)
	return int(math.Floor((Compand(x, m) + 1) / 2 * m))
}

// Dequantize maps a class q in [0, mu] back to an amplitude:
// Expand(2q/mu - 1), the lower edge of the class's companded bin.
func Dequantize(q, mu int) float64 {
	m := float64(mu)
	return Expand(2*float64(q)/m-1, m)
}

// Centre maps a class q in [0, mu] to the amplitude at the centre of its
// companded bin, Expand((2q+1)/mu - 1), and class mu (the point y = 1) to 1.
// Unlike Dequantize's lower edge, it sits half a bin from either edge, so
// Quantize(Centre(q)) == q even after rounding to float32: a sampler that
// feeds its sample back through Quantize gets the class it drew.
func Centre(q, mu int) float64 {
	if q >= mu {
		return 1
	}
	m := float64(mu)
	return Expand((2*float64(q)+1)/m-1, m)
}

// CompandedBin returns the companded interval [lo, hi) that Quantize maps to
// class q: [2q/mu - 1, 2(q+1)/mu - 1), with hi clipped to 1. Class mu is the
// single point {1} and returns lo == hi == 1.
func CompandedBin(q, mu int) (lo, hi float64) {
	m := float64(mu)
	lo = 2*float64(q)/m - 1
	hi = math.Min(2*float64(q+1)/m-1, 1)
	return lo, hi
}

// AmplitudeBin is CompandedBin mapped back to raw amplitude with Expand.
func AmplitudeBin(q, mu int) (lo, hi float64) {
	clo, chi := CompandedBin(q, mu)
	m := float64(mu)
	return Expand(clo, m), Expand(chi, m)
}

// CompandSlice writes Compand(src[i]) into dst[i]; dst and src may alias.
// It panics if dst is shorter than src.
func CompandSlice(dst, src []float32, mu float64) {
	mustFit(len(dst), len(src))
	inv := 1 / math.Log1p(mu)
	for i, x := range src {
		c := math.Log1p(mu*math.Abs(float64(x))) * inv
		if x < 0 {
			c = -c
		}
		dst[i] = float32(c)
	}
}

// ExpandSlice writes Expand(src[i]) into dst[i]; dst and src may alias.
func ExpandSlice(dst, src []float32, mu float64) {
	mustFit(len(dst), len(src))
	l := math.Log1p(mu)
	for i, y := range src {
		e := math.Expm1(math.Abs(float64(y))*l) / mu
		if y < 0 {
			e = -e
		}
		dst[i] = float32(e)
	}
}

// QuantizeSlice writes Quantize(src[i], mu) into dst[i] as int32 class
// labels (compact for large training sets).
func QuantizeSlice(dst []int32, src []float32, mu int) {
	mustFit(len(dst), len(src))
	for i, x := range src {
		dst[i] = int32(Quantize(float64(x), mu))
	}
}

// DequantizeSlice writes Dequantize(src[i], mu) into dst[i].
func DequantizeSlice(dst []float32, src []int32, mu int) {
	mustFit(len(dst), len(src))
	for i, q := range src {
		dst[i] = float32(Dequantize(int(q), mu))
	}
}

func mustFit(dst, src int) {
	if dst < src {
		panic("mulaw: destination slice shorter than source")
	}
}
