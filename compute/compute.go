// Package compute is the numeric backend seam: flat float32 buffers and the
// handful of kernels a WaveNet needs, so the same model code drives the CPU
// and the GPU. A backend is chosen once (--device) and the model never
// branches on it.
//
// Layout conventions (every backend follows them):
//   - Matrices are row-major, like cblas with CblasRowMajor: element (i, j) of
//     a matrix with leading dimension ld sits at Off + i*ld + j.
//   - Activations are [B][C][T] contiguous: batch item b, channel c, time t at
//     (b*C + c)*T + t. A causal dilated conv is K accumulated GEMMs over
//     column-shifted views (no padding, no im2col): tap k shifts by
//     s = (K-1-k)*d, so out[:, s:T] += W_k * x[:, 0:T-s] (see wavenet/).
//   - "batch, n" kernels work on batch segments of n contiguous elements.
//
// Kernels accumulate only where the doc says so; all others overwrite.
package compute

import "fmt"

// Buffer is a flat float32 array owned by a backend: host memory on the CPU,
// device memory on a GPU. Its contents are reached only through the backend.
type Buffer interface {
	Len() int
}

// View is a window into a Buffer starting at element Off. Sizes are passed to
// each kernel, so a View is just a typed pointer.
type View struct {
	Buf Buffer
	Off int
}

// V returns a view of the whole buffer.
func V(b Buffer) View { return View{Buf: b} }

// At returns the view shifted by n elements.
func (v View) At(n int) View { return View{Buf: v.Buf, Off: v.Off + n} }

// Check panics with a clear message when n elements from v would fall
// outside its buffer; backends call it on every argument (cheap, and it turns
// a silent memory corruption on the GPU into a Go panic with a stack).
func (v View) Check(n int, what string) {
	if v.Buf == nil {
		panic(fmt.Sprintf("compute: %s: nil buffer", what))
	}
	if v.Off < 0 || n < 0 || v.Off+n > v.Buf.Len() {
		panic(fmt.Sprintf("compute: %s: range [%d,%d) outside buffer of %d", what, v.Off, v.Off+n, v.Buf.Len()))
	}
}

// AdamParams are the hyperparameters of one Adam step. Step is 1-based and
// drives the bias correction.
type AdamParams struct {
	LR, Beta1, Beta2, Eps float32
	Step                  int
}

// Backend is one numeric device. Methods may run asynchronously on a device
// but observe program order; Download and Sync wait for completion.
type Backend interface {
	// Name is "cpu" or "cuda"; Describe says which library does the GEMMs
	// (e.g. "cpu: OpenBLAS sgemm (libopenblas.so.0), 2 threads").
	Name() string
	Describe() string

	// Memory.
	Alloc(n int) Buffer // zero-filled
	Free(b Buffer)
	Upload(dst View, src []float32)
	Download(dst []float32, src View)
	Copy(dst, src View, n int)
	Fill(dst View, n int, value float32)
	Sync()

	// Gemm: C = alpha*op(A)*op(B) + beta*C, row-major; op(A) is m x k,
	// op(B) is k x n, C is m x n. transA means A is stored k x m.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a View, lda int, b View, ldb int, beta float32, c View, ldc int)
	// GemmStridedBatched runs batch GEMMs, the i-th on a.At(i*strideA),
	// b.At(i*strideB), c.At(i*strideC). A stride of 0 shares the operand
	// (the weights of a conv applied to every batch item).
	GemmStridedBatched(transA, transB bool, m, n, k int, alpha float32, a View, lda, strideA int, b View, ldb, strideB int, beta float32, c View, ldc, strideC int, batch int)
	// GemmSum is the reduction over a batch: C = alpha * sum_i
	// op(A_i)*op(B_i) + beta*C with A_i = a.At(i*strideA), B_i =
	// b.At(i*strideB) (weight gradients summed over the batch items). A
	// backend may split each product along k (a GPU does, to fill its SMs
	// when m*n is small and k large), so the summation order is its own.
	GemmSum(transA, transB bool, m, n, k int, alpha float32, a View, lda, strideA int, b View, ldb, strideB int, beta float32, c View, ldc int, batch int)

	// Elementwise on n elements.
	Scale(x View, n int, alpha float32)             // x *= alpha
	Axpy(y View, x View, n int, alpha float32)      // y += alpha*x
	AddScaled(dst, a, b View, n int, alpha float32) // dst = (a + b)*alpha (residual)
	ReLU(dst, src View, n int)                      // dst = max(src, 0); dst may be src
	ReLUBackward(dx, dy, y View, n int)             // dx = dy * (y > 0); y is the ReLU output
	Dot(a, b View, n int) float64                   // sum a*b, accumulated in float64; synchronous
	SumSquares(x View, n int) float64               // sum x*x in float64; synchronous

	// Bias over [B][C][T]: x[b][c][t] += bias[c].
	AddBias(x, bias View, batch, channels, t int)
	// BiasGrad accumulates dbias[c] += sum over b, t of dy[b][c][t].
	BiasGrad(dbias, dy View, batch, channels, t int)

	// Gated activation over batch segments: pre is [batch][2n] (first half a,
	// second half b), z is [batch][n]: z = tanh(a) * sigmoid(b).
	GatedTanhSigmoid(z, pre View, batch, n int)
	// GatedTanhSigmoidBackward writes dpre (same layout as pre) from dz.
	GatedTanhSigmoidBackward(dpre, dz, pre View, batch, n int)

	// Nearest-neighbour stretch along time: src [rows][t], dst [rows][t*s],
	// dst[r][t*s+j] = src[r][t].
	Stretch(dst, src View, rows, t, s int)
	// StretchBackward: dsrc[r][t] = sum_j ddst[r][t*s+j] (overwrites).
	StretchBackward(dsrc, ddst View, rows, t, s int)

	// RowConvSame convolves every row of src [rows][t] with one shared
	// odd-width kernel w[width], zero padding width/2 on each side
	// (PyTorch Conv2d(1,1,(1,width),padding=(0,width/2)), cross-correlation):
	// dst[r][t] = sum_j w[j] * src[r][t + j - width/2].
	RowConvSame(dst, src, w View, rows, t, width int)
	// RowConvSameBackward overwrites dsrc and accumulates dw.
	RowConvSameBackward(dsrc, dw, dy, src, w View, rows, t, width int)

	// Weight normalisation, PyTorch weight_norm(dim=0) on a weight stored
	// tap-major [groups][out][inner] (groups = kernel taps): for each output
	// row o, w = g[o] * v / ||v[:, o, :]||, the norm over all groups and inner.
	WeightNorm(w, g, v View, groups, out, inner int)
	// WeightNormBackward accumulates dg and dv from dw.
	WeightNormBackward(dg, dv, dw, g, v View, groups, out, inner int)

	// Optimizer updates over n parameters.
	Adam(param, grad, m, v View, n int, p AdamParams)
	EMA(ema, param View, n int, decay float32) // ema = decay*ema + (1-decay)*param
}

// HostAccessor is implemented by backends whose buffers live in host memory
// (the CPU backend): code that runs host-side maths (the output heads on the
// CPU) reads and writes the buffer in place instead of copying.
type HostAccessor interface {
	Host(v View, n int) []float32
}
