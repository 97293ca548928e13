//go:build !amd64

package cpu

const ownGEMMSupported = false

// newOwnGEMM: the own kernels are AVX-512 assembly, amd64 only.
func newOwnGEMM(inner sgemmer, threads int, pool *workerPool) (sgemmer, error) {
	return nil, errNoOwnGEMM
}
