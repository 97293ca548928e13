package cuda

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/compute"
)

// GemmSum (compute.Backend): C = alpha * sum_i op(A_i) op(B_i) + beta*C.
//
// Weight gradients are this shape: a small C (256x128 for a dilated conv
// tap) and a long k (the 10240 samples of a crop) per batch item. One cuBLAS
// GEMM per item, or a strided batch into per-item slices, runs
// ceil(m/128)*ceil(n/128)*batch thread blocks, a few dozen on a GPU with
// 132 SMs (measured on an H100: such GEMMs ran at 8-15 TFLOP/s against 20+
// for the forward ones). So k is split too: the batch x P pieces of k
// become one cublasSgemmBatched over pointer arrays (the pieces of one item
// are not at a uniform stride from the next item's), writing partial
// products into scratch, and one GEMM with a ones vector sums them into C.
// The pointer arrays depend only on the operands' addresses, so they are
// built once per call site and cached on the device.
func (be *Backend) GemmSum(transA, transB bool, m, n, k int, alpha float32, a compute.View, lda, strideA int, b compute.View, ldb, strideB int, beta float32, c compute.View, ldc int, batch int) {
	checkGemmDims("GemmSum", transA, transB, m, n, k, lda, ldb, ldc)
	if batch < 0 || strideA < 0 || strideB < 0 {
		panic(fmt.Sprintf("cuda: GemmSum: negative batch %d or stride (%d, %d)", batch, strideA, strideB))
	}
	if batch == 0 {
		be.Gemm(transA, transB, m, n, 0, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	ar, ac := storedDims(transA, m, k)
	br, bc := storedDims(transB, k, n)
	be.dptr(a, (batch-1)*strideA+matExtent(ar, ac, lda), "GemmSum A")
	be.dptr(b, (batch-1)*strideB+matExtent(br, bc, ldb), "GemmSum B")
	be.dptr(c, matExtent(m, n, ldc), "GemmSum C")
	P := splitK(m, n, k, batch, be.sms)
	if m == 0 || n == 0 || k == 0 || ldc != n || batch*P == 1 {
		for i := 0; i < max(batch, 1); i++ {
			be.Gemm(transA, transB, m, n, k, alpha, a.At(i*strideA), lda, b.At(i*strideB), ldb, beta, c, ldc)
			beta = 1
		}
		return
	}
	// Pieces of a multiple of 4 elements, so piece addresses keep the
	// operands' 16-byte alignment (the remainder goes through a strided
	// GEMM, which checks alignment itself).
	kc := k / P &^ 3
	if kc == 0 {
		kc = k / P
	}
	rem := k - kc*P
	// Offsets of k-piece p inside one operand: along a row when k is the
	// column index, down the rows when it is the row index.
	aStep, bStep := 1, ldb
	if transA {
		aStep = lda
	}
	if transB {
		bStep = 1
	}
	E := batch * P
	if rem > 0 {
		E += batch
	}
	mn := m * n
	pa, pb := be.dptr(a, 1, "GemmSum A"), be.dptr(b, 1, "GemmSum B")
	// cuBLAS cannot see the alignment of pointers that live in device
	// arrays and its tensor-core (TF32) kernels assume 16 bytes: measured on
	// an H100, a TF32 cublasSgemmBatched on views 1-3 floats off alignment
	// (a dilated tap's shift, conv_in's frame offset) failed with
	// CUDA_ERROR_MISALIGNED_ADDRESS. Such operands take one strided batch
	// into per-item slices instead (no split of k), in every math mode. The
	// scratch slots are aligned when m*n is a multiple of 4 (device
	// allocations start 256-byte aligned).
	aligned := func(p uint64, stride, step int) bool { return p%16 == 0 && stride%4 == 0 && (P == 1 || step*kc%4 == 0) }
	if !aligned(pa, strideA, aStep) || !aligned(pb, strideB, bStep) || mn%4 != 0 {
		scratch, ones := be.sumScratch(batch*mn, batch)
		be.GemmStridedBatched(transA, transB, m, n, k, 1, a, lda, strideA, b, ldb, strideB, 0, scratch, n, mn, batch)
		be.Gemm(false, false, 1, mn, batch, alpha, ones, batch, scratch, mn, beta, c, mn)
		return
	}
	scratch, ones := be.sumScratch(E*mn, E)
	ps := be.dptr(scratch, E*mn, "GemmSum scratch")
	arrays := be.sumPointers(sumKey{pa, pb, ps, strideA, strideB, aStep * kc, bStep * kc, mn, batch, P})
	cg := toColMajor(transA, transB, m, n, kc, lda, ldb, n, 0, 0, 0)
	nb := uint64(batch * P * 8)
	// Arrays hold A pointers, then B, then C; cuBLAS's A is the row-major B.
	first, second := cg.operands(arrays, arrays+nb)
	func() {
		defer be.enter()()
		be.alpha, be.beta = 1, 0
		s := be.blas.cublasSgemmBatched(be.handle, cublasOp(cg.TransA), cublasOp(cg.TransB), int32(cg.M), int32(cg.N), int32(cg.K),
			&be.alpha, first, int32(cg.LDA), second, int32(cg.LDB), &be.beta, arrays+2*nb, int32(cg.LDC), int32(batch*P))
		if err := be.blas.check("cublasSgemmBatched", s); err != nil {
			panic(err)
		}
	}()
	if rem > 0 {
		be.GemmStridedBatched(transA, transB, m, n, rem, 1, a.At(P*kc*aStep), lda, strideA, b.At(P*kc*bStep), ldb, strideB,
			0, scratch.At(batch*P*mn), n, mn, batch)
	}
	// C (as one row of m*n) = alpha * ones(1 x E) * scratch (E x m*n) + beta*C.
	be.Gemm(false, false, 1, mn, E, alpha, ones, E, scratch, mn, beta, c, mn)
}

// splitK picks how many pieces to cut k into: powers of two until the
// batch's pieces give about two thread blocks (128x128 tiles) per SM, each
// piece keeping at least 256 of k.
func splitK(m, n, k, batch, sms int) int {
	tiles := ((m + 127) / 128) * ((n + 127) / 128)
	P := 1
	for batch*P*tiles < 2*max(sms, 1) && k/(2*P) >= 256 {
		P *= 2
	}
	return P
}

// sumKey identifies one GemmSum call site's pointer arrays.
type sumKey struct {
	pa, pb, ps       uint64
	strideA, strideB int
	stepA, stepB, mn int
	batch, pieces    int
}

// sumScratch returns scratch of at least n floats and a ones vector of at
// least e (grown as needed; kept for the backend's life).
func (be *Backend) sumScratch(n, e int) (scratch, ones compute.View) {
	if be.sumBuf == nil || be.sumBuf.Len() < n {
		if be.sumBuf != nil {
			be.Free(be.sumBuf)
		}
		be.sumBuf = be.Alloc(n)
	}
	if be.sumOnes == nil || be.sumOnes.Len() < e {
		if be.sumOnes != nil {
			be.Free(be.sumOnes)
		}
		be.sumOnes = be.Alloc(e)
		be.Fill(compute.V(be.sumOnes), e, 1)
	}
	return compute.V(be.sumBuf), compute.V(be.sumOnes)
}

// sumPointers returns the device address of k's pointer arrays (A pieces,
// B pieces, C slots; batch*pieces each), building and caching them.
func (be *Backend) sumPointers(k sumKey) uint64 {
	if buf, ok := be.sumArrays[k]; ok {
		return be.dptr(compute.V(buf), buf.Len(), "GemmSum pointers")
	}
	E := k.batch * k.pieces
	words := make([]float32, 0, 6*E) // each pointer as two float32 bit patterns
	put := func(p uint64) {
		words = append(words, math.Float32frombits(uint32(p)), math.Float32frombits(uint32(p>>32)))
	}
	for i := 0; i < k.batch; i++ {
		for p := 0; p < k.pieces; p++ {
			put(k.pa + 4*uint64(i*k.strideA+p*k.stepA))
		}
	}
	for i := 0; i < k.batch; i++ {
		for p := 0; p < k.pieces; p++ {
			put(k.pb + 4*uint64(i*k.strideB+p*k.stepB))
		}
	}
	for e := 0; e < E; e++ {
		put(k.ps + 4*uint64(e*k.mn))
	}
	buf := be.Alloc(len(words))
	be.Upload(compute.V(buf), words)
	if be.sumArrays == nil {
		be.sumArrays = map[sumKey]compute.Buffer{}
	}
	be.sumArrays[k] = buf
	return be.dptr(compute.V(buf), buf.Len(), "GemmSum pointers")
}
