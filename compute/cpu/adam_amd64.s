//go:build amd64

#include "textflag.h"

// func adamAVX(p, grad, m, v *float32, n int, k *adamConsts)
// Eight lanes of adam (kernels.go) with the same operations in the same
// order, no FMA, so the results are bit-identical. n % 8 == 0.
TEXT ·adamAVX(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), DX
	MOVQ v+24(FP), R8
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), AX
	VBROADCASTSS 0(AX), Y8   // b1
	VBROADCASTSS 4(AX), Y9   // b2
	VBROADCASTSS 8(AX), Y10  // c1
	VBROADCASTSS 12(AX), Y11 // c2
	VBROADCASTSS 16(AX), Y12 // step
	VBROADCASTSS 20(AX), Y13 // isqb2
	VBROADCASTSS 24(AX), Y14 // eps
	XORQ BX, BX
	SHLQ $2, CX
	JZ done
loop:
	VMOVUPS (SI)(BX*1), Y0
	VMULPS (DX)(BX*1), Y8, Y1
	VMULPS Y0, Y10, Y2
	VADDPS Y2, Y1, Y1
	VMOVUPS Y1, (DX)(BX*1)
	VMULPS (R8)(BX*1), Y9, Y3
	VMULPS Y0, Y11, Y4
	VMULPS Y0, Y4, Y4
	VADDPS Y4, Y3, Y3
	VMOVUPS Y3, (R8)(BX*1)
	VSQRTPS Y3, Y5
	VMULPS Y13, Y5, Y5
	VADDPS Y14, Y5, Y5
	VMULPS Y1, Y12, Y6
	VDIVPS Y5, Y6, Y6
	VMOVUPS (DI)(BX*1), Y7
	VSUBPS Y6, Y7, Y7
	VMOVUPS Y7, (DI)(BX*1)
	ADDQ $32, BX
	CMPQ BX, CX
	JLT loop
done:
	VZEROUPPER
	RET
