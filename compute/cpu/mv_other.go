//go:build !amd64

package cpu

var useAVX512 = false

func mvBlockA2(p, n int, w *float32, ldw, k int, x *float32, ldx int, y *float32, ldy int, acc bool) bool {
	panic("cpu: no AVX2 kernels on this architecture")
}

func mvBlockA5(p, n int, w *float32, ldw, k int, x *float32, ldx int, y *float32, ldy int, acc bool) bool {
	panic("cpu: no AVX-512 kernels on this architecture")
}
