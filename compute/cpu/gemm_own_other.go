//go:build !amd64

package cpu

import "github.com/wavecat/wavecat/compute"

const ownGEMMSupported = false

// newOwnGEMM: the own kernels are AVX-512 assembly, amd64 only.
func newOwnGEMM(inner sgemmer, threads int, pool *workerPool) (sgemmer, error) {
	return nil, errNoOwnGEMM
}

func (be *Backend) ownTerms(m, n int, terms []compute.GemmTerm, ktot int, bias []float32, beta float32, c []float32, ldc int) bool {
	return false
}

func (be *Backend) ownTermsGrad(m, k int, a []float32, lda int, terms []compute.GradTerm) bool {
	return false
}
