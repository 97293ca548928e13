//go:build amd64

#include "textflag.h"

// Eight-lane elementwise loops (elem_amd64.go); n % 8 == 0, n > 0.

// func addConstAVX(x *float32, n int, v float32)
TEXT ·addConstAVX(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS v+16(FP), Y1
	SHLQ $2, CX
	ADDQ DI, CX
addc:
	VADDPS (DI), Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	CMPQ DI, CX
	JLT addc
	VZEROUPPER
	RET

// func scaleAVX(x *float32, n int, a float32)
TEXT ·scaleAVX(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	VBROADCASTSS a+16(FP), Y1
	SHLQ $2, CX
	ADDQ DI, CX
scl:
	VMULPS (DI), Y1, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, DI
	CMPQ DI, CX
	JLT scl
	VZEROUPPER
	RET

// func addScaledAVX(d, a, b *float32, n int, alpha float32)
TEXT ·addScaledAVX(SB), NOSPLIT, $0-36
	MOVQ d+0(FP), DI
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DX
	MOVQ n+24(FP), CX
	VBROADCASTSS alpha+32(FP), Y2
	XORQ BX, BX
	SHLQ $2, CX
adds:
	VMOVUPS (SI)(BX*1), Y0
	VADDPS (DX)(BX*1), Y0, Y0
	VMULPS Y2, Y0, Y0
	VMOVUPS Y0, (DI)(BX*1)
	ADDQ $32, BX
	CMPQ BX, CX
	JLT adds
	VZEROUPPER
	RET

// func sumAVX(x *float32, n int) float32
// Four eight-lane partial sums (n % 8 == 0), added pairwise at the end.
TEXT ·sumAVX(SB), NOSPLIT, $0-20
	MOVQ x+0(FP), DI
	MOVQ n+8(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	SHLQ $2, CX
	ADDQ DI, CX
	LEAQ -96(CX), DX
	CMPQ DI, DX
	JGE sum8
sum32:
	VADDPS (DI), Y0, Y0
	VADDPS 32(DI), Y1, Y1
	VADDPS 64(DI), Y2, Y2
	VADDPS 96(DI), Y3, Y3
	ADDQ $128, DI
	CMPQ DI, DX
	JLT sum32
sum8:
	CMPQ DI, CX
	JGE fold
	VADDPS (DI), Y0, Y0
	ADDQ $32, DI
	JMP sum8
fold:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VPERMILPS $0x4E, X0, X1
	VADDPS X1, X0, X0
	VPERMILPS $0xB1, X0, X1
	VADDPS X1, X0, X0
	VMOVSS X0, ret+16(FP)
	VZEROUPPER
	RET
