//go:build amd64

package cpu

// adamAVX is adam on eight lanes (adam_amd64.s): the same operations in
// the same order, so the same bits, about ten times faster than the
// scalar loop, whose float64 square root and float32 division per element
// made the optimizer a tenth of a reference training step.
//
//go:noescape
func adamAVX(p, grad, m, v *float32, n int, k *adamConsts)

// adamVec runs the vector kernel over the largest multiple of 8 elements
// and returns how many it did.
func adamVec(p, g, m, v []float32, k *adamConsts) int {
	n := vec8(len(p))
	if n == 0 {
		return 0
	}
	adamAVX(&p[0], &g[0], &m[0], &v[0], n, k)
	return n
}
