package compute

// GemmTerm is one product of a GemmTermser call: op(A) (m x K; A is
// row-major with leading dimension LDA, transposed when TransA) times B
// (K x n, row-major, leading dimension LDB) read Shift columns to the
// right: column j of the product is op(A) B[:, j-Shift], zero where
// j-Shift falls outside [0, n). A causal dilated conv's tap is a positive
// shift; its input gradient a negative one.
type GemmTerm struct {
	TransA bool
	A      View
	LDA    int
	K      int
	B      View
	LDB    int
	Shift  int
}

// GemmTermser is implemented by backends that compute a sum of shifted
// products in one pass over C (the CPU backend): the layers of a WaveNet
// are each a few such products (the conv taps, the conditioning), and
// adding them one GEMM at a time reads and writes C once per term.
type GemmTermser interface {
	// GemmTerms computes C (m x n, row-major, leading dimension ldc) =
	// beta*C + sum of the terms + bias (one value per row; bias.Buf nil:
	// none). beta is 0 or 1.
	GemmTerms(m, n int, terms []GemmTerm, bias View, beta float32, c View, ldc int)
}

// GradTerm is one output of GemmTermsGrad: C (m x N, leading dimension
// LDC) and B (N x k, row-major, leading dimension LDB) read Shift columns
// to the right.
type GradTerm struct {
	B     View
	LDB   int
	N     int
	Shift int
	C     View
	LDC   int
}

// GemmTermsGrader is implemented by backends that accumulate several
// weight gradients sharing one output gradient in one pass over it (the
// CPU backend): for each term, C (m x N) += A B_s^T where A is m x k
// (row-major, leading dimension lda) and B_s[:, p] = B[:, p-Shift], zero
// where p-Shift falls outside [0, k). A layer's conv taps and its
// conditioning all take the gradient of the same pre-activation.
type GemmTermsGrader interface {
	GemmTermsGrad(m, k int, a View, lda int, terms []GradTerm)
}
