//go:build amd64

package cpu

import "golang.org/x/sys/cpu"

// useAVX512 selects MulVecs' 16-lane kernels (mv_amd64.s): twice the
// multiply-adds per instruction of the AVX2 ones, and 32 registers, so more
// columns share each weight load. The OS must save ZMM state (x/sys/cpu
// checks XCR0 for HasAVX512F).
var useAVX512 = useAVX2 && cpu.X86.HasAVX512F
