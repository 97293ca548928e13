#!/usr/bin/env python3
"""Generates mv_amd64.s and mv_amd64_dispatch.go: the multi-column
matrix-vector micro-kernels behind PackedMatrix.MulVecs (see mv.go).

Every kernel computes a block of P 16-row weight panels times NC columns.
Each output element is one FMA chain over k = 0..K-1 in order, started from
0 or from y, whatever P and NC are, so a column's result does not depend on
how many columns are computed with it (or on AVX2 vs AVX-512).

Run: python3 gen_mv.py (from compute/cpu), then gofmt.
"""

# Panel p's address: SI walks panel 0; DX is the panel stride in bytes and
# R8, R9, R10 hold 3, 5 and 7 strides.
PANEL = ["(SI)", "(SI)(DX*1)", "(SI)(DX*2)", "(SI)(R8*1)", "(SI)(DX*4)",
         "(SI)(R9*1)", "(SI)(R8*2)", "(SI)(R10*1)"]
# Column c's x: DI walks column 0; BX is the column stride in bytes and R11,
# R12, R13 hold 3, 5 and 7 strides.
COL = ["(DI)", "(DI)(BX*1)", "(DI)(BX*2)", "(DI)(R11*1)", "(DI)(BX*4)",
       "(DI)(R12*1)", "(DI)(R11*2)", "(DI)(R13*1)"]

# (isa, P, NC) variants. AVX2: a panel is two YMM registers; one column keeps
# up to 4 panels (8 accumulators) and reads the weights as FMA memory
# operands; 2..6 columns share one panel's weights loaded into registers.
# AVX-512: a panel is one ZMM register; one column keeps up to 8 panels,
# 2..8 columns share 1 or 2 panels.
VARIANTS = ([("avx2", p, 1) for p in range(1, 5)] +
            [("avx2", 1, n) for n in range(2, 7)] +
            [("avx512", p, 1) for p in range(1, 9)] +
            [("avx512", p, n) for p in (1, 2) for n in range(2, 9)])
UNROLL = 2  # k steps per loop iteration (a remainder step follows)


def name(isa, p, n):
    return "mv%sP%dN%d" % ("A2" if isa == "avx2" else "A5", p, n)


def kernel(isa, P, NC):
    out = []
    e = out.append
    e("// func %s(w *float32, ldw, k int, x *float32, ldx int, y *float32, ldy int, acc bool)" % name(isa, P, NC))
    e("TEXT ·%s(SB), NOSPLIT, $0-57" % name(isa, P, NC))
    e("\tMOVQ w+0(FP), SI")
    e("\tMOVQ ldw+8(FP), DX")
    e("\tSHLQ $2, DX")
    if P > 3:
        e("\tLEAQ (DX)(DX*2), R8")
    if P > 5:
        e("\tLEAQ (DX)(DX*4), R9")
    if P > 7:
        e("\tLEAQ (R8)(DX*4), R10")
    e("\tMOVQ x+24(FP), DI")
    e("\tMOVQ ldx+32(FP), BX")
    e("\tSHLQ $2, BX")
    if NC > 3:
        e("\tLEAQ (BX)(BX*2), R11")
    if NC > 5:
        e("\tLEAQ (BX)(BX*4), R12")
    if NC > 7:
        e("\tLEAQ (R11)(BX*4), R13")

    if isa == "avx2":
        halves = 2
        vw = 32
        def reg(i): return "Y%d" % i
        if NC == 1:
            acc = {(p, h, 0): reg(2 * p + h) for p in range(P) for h in range(2)}
            wreg = None
            bc = reg(15)
        else:
            acc = {(0, h, c): reg(2 * c + h) for c in range(NC) for h in range(2)}
            wreg = {(0, h): reg(12 + h) for h in range(2)}
            bc = reg(14)
    else:
        halves = 1
        vw = 64
        def reg(i): return "Z%d" % i
        if NC == 1:
            acc = {(p, 0, 0): reg(p) for p in range(P)}
            wreg = None
            bc = reg(31)
        else:
            acc = {(p, 0, c): reg(p * NC + c) for p in range(P) for c in range(NC)}
            wreg = {(p, 0): reg(28 + p) for p in range(P)}
            bc = reg(30)

    def yaddr(p, h):
        off = p * 64 + h * vw
        return "%d(AX)" % off if off else "(AX)"

    # Initial accumulators: y (acc) or zero.
    e("\tMOVQ y+40(FP), AX")
    e("\tMOVQ ldy+48(FP), CX")
    e("\tSHLQ $2, CX")
    e("\tCMPB acc+56(FP), $0")
    e("\tJEQ zero")
    for c in range(NC):
        for p in range(P):
            for h in range(halves):
                e("\tVMOVUPS %s, %s" % (yaddr(p, h), acc[(p, h, c)]))
        if c < NC - 1:
            e("\tADDQ CX, AX")
    e("\tJMP start")
    e("zero:")
    for r in sorted(set(acc.values()), key=lambda s: int(s[1:])):
        if isa == "avx2":
            e("\tVXORPS %s, %s, %s" % (r, r, r))
        else:
            e("\tVPXORD %s, %s, %s" % (r, r, r))
    e("start:")
    e("\tMOVQ k+16(FP), CX")

    def step(kk):
        """One k step at offset kk (in k) from SI/DI."""
        woff = kk * 64
        xoff = kk * 4
        def wa(p, h):
            o = woff + h * vw
            a = PANEL[p]
            return ("%d%s" % (o, a)) if o else a
        def xa(c):
            a = COL[c]
            return ("%d%s" % (xoff, a)) if xoff else a
        if NC == 1:
            e("\tVBROADCASTSS %s, %s" % (xa(0), bc))
            for p in range(P):
                for h in range(halves):
                    e("\tVFMADD231PS %s, %s, %s" % (wa(p, h), bc, acc[(p, h, 0)]))
        else:
            for p in range(P):
                for h in range(halves):
                    e("\tVMOVUPS %s, %s" % (wa(p, h), wreg[(p, h)]))
            for c in range(NC):
                e("\tVBROADCASTSS %s, %s" % (xa(c), bc))
                for p in range(P):
                    for h in range(halves):
                        e("\tVFMADD231PS %s, %s, %s" % (wreg[(p, h)], bc, acc[(p, h, c)]))

    e("\tCMPQ CX, $%d" % UNROLL)
    e("\tJLT tail")
    e("loop:")
    for kk in range(UNROLL):
        step(kk)
    e("\tADDQ $%d, SI" % (64 * UNROLL))
    e("\tADDQ $%d, DI" % (4 * UNROLL))
    e("\tSUBQ $%d, CX" % UNROLL)
    e("\tCMPQ CX, $%d" % UNROLL)
    e("\tJGE loop")
    e("tail:")
    e("\tTESTQ CX, CX")
    e("\tJEQ store")
    e("tail1:")
    step(0)
    e("\tADDQ $64, SI")
    e("\tADDQ $4, DI")
    e("\tDECQ CX")
    e("\tJNE tail1")
    e("store:")
    e("\tMOVQ y+40(FP), AX")
    e("\tMOVQ ldy+48(FP), CX")
    e("\tSHLQ $2, CX")
    for c in range(NC):
        for p in range(P):
            for h in range(halves):
                e("\tVMOVUPS %s, %s" % (acc[(p, h, c)], yaddr(p, h)))
        if c < NC - 1:
            e("\tADDQ CX, AX")
    e("\tVZEROUPPER")
    e("\tRET")
    return "\n".join(out) + "\n"


def main():
    s = ["// Code generated by gen_mv.py; DO NOT EDIT.", "", "//go:build amd64", "",
         '#include "textflag.h"', "",
         "// Multi-column matrix-vector micro-kernels (see mv.go, gen_mv.py).", ""]
    for v in VARIANTS:
        s.append(kernel(*v))
    with open("mv_amd64.s", "w") as f:
        f.write("\n".join(s))

    g = ["// Code generated by gen_mv.py; DO NOT EDIT.", "", "//go:build amd64", "",
         "package cpu", ""]
    for v in VARIANTS:
        g.append("//go:noescape")
        g.append("func %s(w *float32, ldw, k int, x *float32, ldx int, y *float32, ldy int, acc bool)" % name(*v))
        g.append("")
    for isa in ("avx2", "avx512"):
        fn = "mvBlockA2" if isa == "avx2" else "mvBlockA5"
        g.append("// %s runs the %s kernel for p panels and n columns (false: no such kernel)." % (fn, isa.upper()))
        g.append("func %s(p, n int, w *float32, ldw, k int, x *float32, ldx int, y *float32, ldy int, acc bool) bool {" % fn)
        g.append("\tswitch p<<8 | n {")
        for v in VARIANTS:
            if v[0] != isa:
                continue
            g.append("\tcase %d<<8 | %d:" % (v[1], v[2]))
            g.append("\t\t%s(w, ldw, k, x, ldx, y, ldy, acc)" % name(*v))
        g.append("\tdefault:")
        g.append("\t\treturn false")
        g.append("\t}")
        g.append("\treturn true")
        g.append("}")
        g.append("")
    with open("mv_amd64_dispatch.go", "w") as f:
        f.write("\n".join(g))


if __name__ == "__main__":
    main()
