package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute/computetest"
)

// colSgemm is the reference column-major BLAS sgemm, written from its
// definition: element (i, j) of a column-major matrix with leading dimension
// ld is at i + j*ld; op(A) is m x k. It validates its arguments the way
// cuBLAS does and returns an error instead of computing on bad ones.
func colSgemm(transa, transb bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) error {
	rowsA, rowsB := m, k
	if transa {
		rowsA = k
	}
	if transb {
		rowsB = n
	}
	if m < 0 || n < 0 || k < 0 || lda < max(1, rowsA) || ldb < max(1, rowsB) || ldc < max(1, m) {
		return fmt.Errorf("CUBLAS_STATUS_INVALID_VALUE: m=%d n=%d k=%d lda=%d ldb=%d ldc=%d", m, n, k, lda, ldb, ldc)
	}
	opA := func(i, p int) float64 {
		if transa {
			return float64(a[p+i*lda])
		}
		return float64(a[i+p*lda])
	}
	opB := func(p, j int) float64 {
		if transb {
			return float64(b[j+p*ldb])
		}
		return float64(b[p+j*ldb])
	}
	for j := 0; j < n; j++ {
		for i := 0; i < m; i++ {
			s := 0.0
			for p := 0; p < k; p++ {
				s += opA(i, p) * opB(p, j)
			}
			v := float64(alpha) * s
			if beta != 0 {
				v += float64(beta) * float64(c[i+j*ldc])
			}
			c[i+j*ldc] = float32(v)
		}
	}
	return nil
}

func randSlice(r *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64())
	}
	return s
}

func assertClose(t *testing.T, what string, got []float32, want []float64, tol float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > tol*(1+math.Abs(want[i])) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s: [%d] = %g, want %g", what, i, got[i], want[i])
		}
	}
}

// TestColMajorMapping: a row-major GEMM issued through toColMajor on a
// column-major sgemm (emulated from the BLAS definition) gives the row-major
// result, for every transpose combination, padded leading dimensions, and
// the degenerate k = 0; and the mapped arguments always pass cuBLAS's
// argument checks when the row-major ones pass checkGemmDims.
func TestColMajorMapping(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{{1, 1, 1}, {3, 5, 7}, {8, 1, 4}, {1, 9, 2}, {6, 6, 0}, {17, 13, 11}}
	for _, sh := range shapes {
		m, n, k := sh[0], sh[1], sh[2]
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, pad := range []int{0, 3} {
					ar, ac := storedDims(tA, m, k)
					br, bc := storedDims(tB, k, n)
					lda, ldb, ldc := max(1, ac)+pad, max(1, bc)+pad, n+pad
					checkGemmDims("test", tA, tB, m, n, k, lda, ldb, ldc)
					a := randSlice(r, max(1, matExtent(ar, ac, lda)))
					b := randSlice(r, max(1, matExtent(br, bc, ldb)))
					c := randSlice(r, matExtent(m, n, ldc))
					want := computetest.RefGemm(tA, tB, m, n, k, 0.7, a, lda, b, ldb, -0.3, c, ldc)

					cg := toColMajor(tA, tB, m, n, k, lda, ldb, ldc, 0, 0, 0)
					first, second := a, b
					if cg.SwapAB {
						first, second = b, a
					}
					got := append([]float32(nil), c...)
					name := fmt.Sprintf("m%d n%d k%d transA=%v transB=%v pad %d", m, n, k, tA, tB, pad)
					if err := colSgemm(cg.TransA, cg.TransB, cg.M, cg.N, cg.K, 0.7, first, cg.LDA, second, cg.LDB, -0.3, got, cg.LDC); err != nil {
						t.Fatalf("%s: mapped call rejected: %v", name, err)
					}
					assertClose(t, name, got, want, 1e-5)
				}
			}
		}
	}
}

// TestColMajorStrides: the batched strides follow their operands through
// the swap.
func TestColMajorStrides(t *testing.T) {
	cg := toColMajor(false, true, 2, 3, 4, 4, 4, 3, 11, 22, 33)
	if cg.StrideA != 22 || cg.StrideB != 11 || cg.StrideC != 33 || !cg.SwapAB || !cg.TransA || cg.TransB {
		t.Errorf("toColMajor = %+v: want B's stride 22 and trans first, A's stride 11 second", cg)
	}
	if f, s := cg.operands(100, 200); f != 200 || s != 100 {
		t.Errorf("operands(100, 200) = %d, %d; want B (200) first", f, s)
	}
}

func TestCheckGemmDimsPanics(t *testing.T) {
	for _, tc := range []struct {
		name          string
		tA, tB        bool
		m, n, k       int
		lda, ldb, ldc int
		want          string
	}{
		{"negative", false, false, -1, 2, 2, 2, 2, 2, "negative size"},
		{"lda short", false, false, 2, 2, 3, 2, 2, 2, "lda=2 (row of A is 3)"},
		{"lda short transposed", true, false, 4, 2, 3, 3, 2, 2, "lda=3 (row of A is 4)"},
		{"ldc short", false, false, 2, 5, 1, 1, 5, 4, "ldc=4 (row of C is 5)"},
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.Contains(fmt.Sprint(r), tc.want) {
					t.Errorf("%s: panic %v, want one mentioning %q", tc.name, r, tc.want)
				}
			}()
			checkGemmDims("Gemm", tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.lda, tc.ldb, tc.ldc)
		}()
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexString(s, sub) >= 0)
}

func indexString(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}
