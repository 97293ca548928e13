package cuda

import "fmt"

// colGemm is one column-major cuBLAS GEMM call: C = alpha*op(A)*op(B) +
// beta*C with op(A) m x k, and for the batched call the element strides
// between batch items. SwapAB says the row-major call's B is passed as
// cuBLAS's A (and A as B).
type colGemm struct {
	TransA, TransB            bool
	M, N, K                   int
	LDA, LDB, LDC             int
	StrideA, StrideB, StrideC int
	SwapAB                    bool
}

// toColMajor maps a row-major GEMM onto column-major cuBLAS. A row-major
// matrix with leading dimension ld, read column-major with the same ld, is
// its transpose; so the row-major C = op(A) op(B) is, column-major,
// C^T = op(B)^T op(A)^T: swap the operands (and their ld and trans flags)
// and swap m with n. No data moves. Strides follow their operands (pass 0
// for a single GEMM).
func toColMajor(transA, transB bool, m, n, k, lda, ldb, ldc, strideA, strideB, strideC int) colGemm {
	return colGemm{
		TransA: transB, TransB: transA,
		M: n, N: m, K: k,
		LDA: ldb, LDB: lda, LDC: ldc,
		StrideA: strideB, StrideB: strideA, StrideC: strideC,
		SwapAB: true,
	}
}

// operands returns the addresses to pass as cuBLAS's A and B, given the
// row-major call's a and b.
func (cg colGemm) operands(a, b uint64) (first, second uint64) {
	if cg.SwapAB {
		return b, a
	}
	return a, b
}

// matExtent is how many elements a row-major rows x cols matrix with leading
// dimension ld spans.
func matExtent(rows, cols, ld int) int {
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

// storedDims returns the stored shape of an operand whose op() is r x c.
func storedDims(trans bool, r, c int) (int, int) {
	if trans {
		return c, r
	}
	return r, c
}

// checkGemmDims panics, naming the argument, on negative sizes or leading
// dimensions smaller than a row (cuBLAS would return INVALID_VALUE, which
// says much less).
func checkGemmDims(what string, transA, transB bool, m, n, k, lda, ldb, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("cuda: %s: negative size m=%d n=%d k=%d", what, m, n, k))
	}
	_, ac := storedDims(transA, m, k)
	_, bc := storedDims(transB, k, n)
	if lda < max(1, ac) || ldb < max(1, bc) || ldc < max(1, n) {
		panic(fmt.Sprintf("cuda: %s: leading dimension too small: lda=%d (row of A is %d), ldb=%d (row of B is %d), ldc=%d (row of C is %d)", what, lda, ac, ldb, bc, ldc, n))
	}
	const maxInt32 = 1<<31 - 1
	if m > maxInt32 || n > maxInt32 || k > maxInt32 || lda > maxInt32 || ldb > maxInt32 || ldc > maxInt32 {
		panic(fmt.Sprintf("cuda: %s: size or leading dimension above 2^31-1 (cuBLAS takes int)", what))
	}
}
