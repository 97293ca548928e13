//go:build amd64

package cpu

// Eight-lane versions of the elementwise loops a training step runs over
// every activation (elem_amd64.s). Go does not vectorise: the scalar
// loops ran at about one element per cycle, and biasGrad's running sum at
// one per add latency. The elementwise ones give the scalar loops' bits;
// sumAVX adds in another order (eight lanes, four partial sums).

//go:noescape
func addConstAVX(x *float32, n int, v float32)

//go:noescape
func scaleAVX(x *float32, n int, a float32)

//go:noescape
func addScaledAVX(d, a, b *float32, n int, alpha float32)

//go:noescape
func sumAVX(x *float32, n int) float32

// vec8 is how many leading elements of n the vector loops take.
func vec8(n int) int {
	if !useAVX2 {
		return 0
	}
	return n &^ 7
}

func addConstVec(x []float32, v float32) int {
	n := vec8(len(x))
	if n > 0 {
		addConstAVX(&x[0], n, v)
	}
	return n
}

func scaleVec(x []float32, a float32) int {
	n := vec8(len(x))
	if n > 0 {
		scaleAVX(&x[0], n, a)
	}
	return n
}

func addScaledVec(d, a, b []float32, alpha float32) int {
	n := vec8(len(d))
	if n > 0 {
		addScaledAVX(&d[0], &a[0], &b[0], n, alpha)
	}
	return n
}

// sumVec returns the sum of the leading vec8(len(x)) elements and how many.
func sumVec(x []float32) (float32, int) {
	n := vec8(len(x))
	if n == 0 {
		return 0, 0
	}
	return sumAVX(&x[0], n), n
}
