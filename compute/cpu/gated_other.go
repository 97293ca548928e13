//go:build !amd64

package cpu

var useAVX2 = false

func gatedAVX2(z, a, b *float32, n int) { panic("cpu: no AVX2 kernels on this architecture") }
func gatedBackwardAVX2(da, db, dz, a, b *float32, n int) {
	panic("cpu: no AVX2 kernels on this architecture")
}
