package cpu

import (
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
)

func newOrSkip(t testing.TB, blas string, threads int) *Backend {
	t.Helper()
	be, err := New(Options{BLAS: blas, Threads: threads})
	if err != nil {
		if blas == "openblas" {
			t.Skipf("OpenBLAS not loadable here, skipping the OpenBLAS path: %v", err)
		}
		t.Fatal(err)
	}
	return be
}

func TestConformanceGonum(t *testing.T) {
	computetest.RunConformance(t, func() compute.Backend { return newOrSkip(t, "gonum", 2) })
}

func TestConformanceOpenBLAS(t *testing.T) {
	newOrSkip(t, "openblas", 2)
	computetest.RunConformance(t, func() compute.Backend { return newOrSkip(t, "openblas", 2) })
}

func TestConformanceSingleThread(t *testing.T) {
	computetest.RunConformance(t, func() compute.Backend { return newOrSkip(t, "auto", 1) })
}
