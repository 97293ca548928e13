#!/usr/bin/env python3
"""Generates gemm_amd64.s and gemm_amd64_kernels.go: the AVX-512 GEMM
micro-kernels behind ownGEMM (see gemm_own.go).

Two kernel families, each over every tile shape so no shape falls back to
scalar code:

  gp (panel): C[MR x 16*NV] (+)= op(A)[MR x k] B[k x 16*NV] for B row-major
      with its columns contiguous (the NN and TN products of training:
      forward and input gradients, columns = time). op(A)[i, p] is at
      a + i*ars + p*aps, so one kernel serves A and A^T. The last vector
      column is masked (K1), so any column count works. The tile starts
      from zero (mode 0: beta 0 without clearing C), from C (mode 1) or
      from a bias per row (mode 2).
  gd (dot): C[MR x NR] += A[MR x k] B[NR x k]^T with both operands
      contiguous along k (the NT product: weight gradients, k = time).
      Lanes run along k; the last chunk of 16 is masked; each accumulator
      is reduced across lanes and added to C at the end.

Run: python3 gen_gemm.py (from compute/cpu), then gofmt.
"""

PANEL_MR, PANEL_NV = 6, 4
DOT_MR, DOT_NR = 4, 6


def rows(base, alt, stride, n):
    """Addresses of n rows: base, base+s, base+2s, alt(=base+3s), alt+s, alt+2s."""
    out = []
    for i in range(n):
        b = base if i < 3 else alt
        r = i % 3
        out.append("(%s)" % b if r == 0 else "(%s)(%s*%d)" % (b, stride, r))
    return out


def disp(off, addr):
    return ("%d%s" % (off, addr)) if off else addr


def load_args(e, args):
    """Loads 8-byte arguments in order: (name, register, kind), kind
    "stride" turning an element count into bytes, "mask" also moving the
    value into K1."""
    for i, (name, reg, kind) in enumerate(args):
        e("\tMOVQ %s+%d(FP), %s" % (name, 8 * i, reg))
        if kind == "stride":
            e("\tSHLQ $2, %s" % reg)
        elif kind == "mask":
            e("\tKMOVW %s, K1" % reg)


def third_row(e, base, stride, dst):
    """dst = base + 3*stride: the fourth row's address (rows())."""
    e("\tLEAQ (%s)(%s*2), %s" % (base, stride, dst))
    e("\tADDQ %s, %s" % (stride, dst))


def panel(MR, NV):
    name = "gpA5M%dN%d" % (MR, NV)
    o = []
    e = o.append
    e("// func %s(a *float32, ars, aps int, b *float32, ldb int, c *float32, ldc, k, mask, mode int, bias *float32)" % name)
    e("TEXT ·%s(SB), NOSPLIT, $0-88" % name)
    load_args(e, [("a", "SI", ""), ("ars", "R9", "stride"), ("aps", "R11", "stride"), ("b", "DI", ""),
                  ("ldb", "BX", "stride"), ("c", "AX", ""), ("ldc", "CX", "stride"), ("k", "DX", ""), ("mask", "R8", "mask")])
    if MR > 3:
        third_row(e, "SI", "R9", "R10")
        third_row(e, "AX", "CX", "R12")
    arow = rows("SI", "R10", "R9", MR)
    crow = rows("AX", "R12", "CX", MR)

    def acc(i, v):
        return "Z%d" % (i * NV + v)

    # The C tile below this one (the next call's, as panels walks down a
    # column of tiles) is fetched while this one computes: its loads would
    # otherwise each wait on L3 at the start of the call. Prefetches past
    # the matrix do not fault.
    if MR == 6:
        third_row(e, "R12", "CX", "R13")
        for r in rows("R13", "R14", "CX", 3):
            for v in range(NV):
                e("\tPREFETCHT0 %s" % disp(64 * v, r))
        third_row(e, "R13", "CX", "R14")
        for r in rows("R14", "R14", "CX", 3):
            for v in range(NV):
                e("\tPREFETCHT0 %s" % disp(64 * v, r))
    e("\tMOVQ mode+72(FP), R15")
    e("\tCMPQ R15, $1")
    e("\tJLT zero")
    e("\tJGT bias")
    for i in range(MR):
        for v in range(NV):
            a = disp(64 * v, crow[i])
            if v == NV - 1:
                e("\tVMOVUPS.Z %s, K1, %s" % (a, acc(i, v)))
            else:
                e("\tVMOVUPS %s, %s" % (a, acc(i, v)))
    e("\tJMP loop")
    e("bias:")
    e("\tMOVQ bias+80(FP), R15")
    for i in range(MR):
        e("\tVBROADCASTSS %d(R15), %s" % (4 * i, acc(i, 0)))
        for v in range(1, NV):
            e("\tVMOVAPS %s, %s" % (acc(i, 0), acc(i, v)))
    e("\tJMP loop")
    e("zero:")
    for i in range(MR):
        for v in range(NV):
            z = acc(i, v)
            e("\tVPXORD %s, %s, %s" % (z, z, z))
    e("loop:")
    for v in range(NV):
        a = disp(64 * v, "(DI)")
        if v == NV - 1:
            e("\tVMOVUPS.Z %s, K1, Z%d" % (a, 24 + v))
        else:
            e("\tVMOVUPS %s, Z%d" % (a, 24 + v))
    for i in range(MR):
        bc = "Z%d" % (28 + i % 4)
        e("\tVBROADCASTSS %s, %s" % (arow[i], bc))
        for v in range(NV):
            e("\tVFMADD231PS Z%d, %s, %s" % (24 + v, bc, acc(i, v)))
    e("\tADDQ BX, DI")
    e("\tADDQ R11, SI")
    if MR > 3:
        e("\tADDQ R11, R10")
    e("\tDECQ DX")
    e("\tJNZ loop")
    for i in range(MR):
        for v in range(NV):
            a = disp(64 * v, crow[i])
            if v == NV - 1:
                e("\tVMOVUPS %s, K1, %s" % (acc(i, v), a))
            else:
                e("\tVMOVUPS %s, %s" % (acc(i, v), a))
    e("\tVZEROUPPER")
    e("\tRET")
    return name, "\n".join(o)


def dot(MR, NR):
    name = "gdA5M%dN%d" % (MR, NR)
    o = []
    e = o.append
    e("// func %s(a *float32, lda int, b *float32, ldb int, c *float32, ldc, chunks, mask int)" % name)
    e("TEXT ·%s(SB), NOSPLIT, $0-64" % name)
    load_args(e, [("a", "SI", ""), ("lda", "R9", "stride"), ("b", "DI", ""), ("ldb", "BX", "stride"),
                  ("c", "AX", ""), ("ldc", "CX", "stride"), ("chunks", "DX", ""), ("mask", "R8", "mask")])
    if MR > 3:
        third_row(e, "SI", "R9", "R10")
        third_row(e, "AX", "CX", "R12")
    if NR > 3:
        third_row(e, "DI", "BX", "R13")
    arow = rows("SI", "R10", "R9", MR)
    brow = rows("DI", "R13", "BX", NR)
    crow = rows("AX", "R12", "CX", MR)

    def acc(i, j):
        return i * NR + j

    for i in range(MR):
        for j in range(NR):
            z = acc(i, j)
            e("\tVPXORD Z%d, Z%d, Z%d" % (z, z, z))

    def body(masked):
        for i in range(MR):
            if masked:
                e("\tVMOVUPS.Z %s, K1, Z%d" % (arow[i], 24 + i))
            else:
                e("\tVMOVUPS %s, Z%d" % (arow[i], 24 + i))
        for j in range(NR):
            bz = "Z%d" % (28 + j % 4)
            if masked:
                e("\tVMOVUPS.Z %s, K1, %s" % (brow[j], bz))
            else:
                e("\tVMOVUPS %s, %s" % (brow[j], bz))
            for i in range(MR):
                e("\tVFMADD231PS Z%d, %s, Z%d" % (24 + i, bz, acc(i, j)))

    e("\tTESTQ DX, DX")
    e("\tJZ tail")
    e("loop:")
    body(False)
    e("\tADDQ $64, SI")
    e("\tADDQ $64, DI")
    if MR > 3:
        e("\tADDQ $64, R10")
    if NR > 3:
        e("\tADDQ $64, R13")
    e("\tDECQ DX")
    e("\tJNZ loop")
    e("tail:")
    e("\tTESTQ R8, R8")
    e("\tJZ reduce")
    body(True)
    e("reduce:")
    for i in range(MR):
        for j in range(NR):
            z = acc(i, j)
            e("\tVEXTRACTF64X4 $1, Z%d, Y30" % z)
            e("\tVADDPS Y30, Y%d, Y%d" % (z, z))
            e("\tVEXTRACTF32X4 $1, Y%d, X30" % z)
            e("\tVADDPS X30, X%d, X%d" % (z, z))
            e("\tVPERMILPS $0x4E, X%d, X30" % z)
            e("\tVADDPS X30, X%d, X%d" % (z, z))
            e("\tVPERMILPS $0xB1, X%d, X30" % z)
            e("\tVADDPS X30, X%d, X%d" % (z, z))
            a = disp(4 * j, crow[i])
            e("\tVADDSS %s, X%d, X%d" % (a, z, z))
            e("\tVMOVSS X%d, %s" % (z, a))
    e("\tVZEROUPPER")
    e("\tRET")
    return name, "\n".join(o)


def main():
    kernels = [panel(m, n) for m in range(1, PANEL_MR + 1) for n in range(1, PANEL_NV + 1)]
    dots = [dot(m, n) for m in range(1, DOT_MR + 1) for n in range(1, DOT_NR + 1)]
    with open("gemm_amd64.s", "w") as f:
        f.write("// Code generated by gen_gemm.py; DO NOT EDIT.\n\n//go:build amd64\n\n#include \"textflag.h\"\n\n")
        f.write("\n\n".join(k for _, k in kernels + dots))
        f.write("\n")
    with open("gemm_amd64_kernels.go", "w") as f:
        f.write("// Code generated by gen_gemm.py; DO NOT EDIT.\n\n//go:build amd64\n\npackage cpu\n\n")
        for name, _ in kernels:
            f.write("//go:noescape\nfunc %s(a *float32, ars, aps int, b *float32, ldb int, c *float32, ldc, k, mask, mode int, bias *float32)\n\n" % name)
        for name, _ in dots:
            f.write("//go:noescape\nfunc %s(a *float32, lda int, b *float32, ldb int, c *float32, ldc, chunks, mask int)\n\n" % name)
        f.write("// gpKernels[MR-1][NV-1] is the panel kernel for an MR x 16*NV tile.\n")
        f.write("var gpKernels = [%d][%d]func(a *float32, ars, aps int, b *float32, ldb int, c *float32, ldc, k, mask, mode int, bias *float32){\n" % (PANEL_MR, PANEL_NV))
        for m in range(1, PANEL_MR + 1):
            f.write("\t{%s},\n" % ", ".join("gpA5M%dN%d" % (m, n) for n in range(1, PANEL_NV + 1)))
        f.write("}\n\n")
        f.write("// gdKernels[MR-1][NR-1] is the dot kernel for an MR x NR tile.\n")
        f.write("var gdKernels = [%d][%d]func(a *float32, lda int, b *float32, ldb int, c *float32, ldc, chunks, mask int){\n" % (DOT_MR, DOT_NR))
        for m in range(1, DOT_MR + 1):
            f.write("\t{%s},\n" % ", ".join("gdA5M%dN%d" % (m, n) for n in range(1, DOT_NR + 1)))
        f.write("}\n")


if __name__ == "__main__":
    main()
