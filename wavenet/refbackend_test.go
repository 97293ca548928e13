package wavenet

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/compute"
)

// refBackend is a deliberately naive compute.Backend that stores float64:
// plain loops straight from the kernel docs, so the model's composition can
// be gradient-checked with float64 finite differences independently of any
// optimised backend, and optimised backends can be compared against it.
type refBackend struct {
	allocated int64 // floats currently allocated (for the workspace-size test)
}

type f64buf struct{ d []float64 }

func (b *f64buf) Len() int { return len(b.d) }

func d(v compute.View, n int, what string) []float64 {
	v.Check(n, what)
	return v.Buf.(*f64buf).d[v.Off : v.Off+n]
}

func (r *refBackend) Name() string     { return "ref64" }
func (r *refBackend) Describe() string { return "ref64: naive float64 loops (tests only)" }
func (r *refBackend) Alloc(n int) compute.Buffer {
	r.allocated += int64(n)
	return &f64buf{d: make([]float64, n)}
}
func (r *refBackend) Free(b compute.Buffer) { r.allocated -= int64(b.Len()) }
func (r *refBackend) Upload(dst compute.View, src []float32) {
	x := d(dst, len(src), "upload")
	for i, v := range src {
		x[i] = float64(v)
	}
}
func (r *refBackend) Download(dst []float32, src compute.View) {
	x := d(src, len(dst), "download")
	for i := range dst {
		dst[i] = float32(x[i])
	}
}
func (r *refBackend) Copy(dst, src compute.View, n int) { copy(d(dst, n, "copy"), d(src, n, "copy")) }
func (r *refBackend) Fill(dst compute.View, n int, v float32) {
	x := d(dst, n, "fill")
	for i := range x {
		x[i] = float64(v)
	}
}
func (r *refBackend) Sync() {}

func (r *refBackend) Gemm(tA, tB bool, m, n, k int, alpha float32, a compute.View, lda int, b compute.View, ldb int, beta float32, c compute.View, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	A, B, C := a.Buf.(*f64buf).d, b.Buf.(*f64buf).d, c.Buf.(*f64buf).d
	at := func(i, p int) float64 {
		if tA {
			return A[a.Off+p*lda+i]
		}
		return A[a.Off+i*lda+p]
	}
	bt := func(p, j int) float64 {
		if tB {
			return B[b.Off+j*ldb+p]
		}
		return B[b.Off+p*ldb+j]
	}
	c.Check((m-1)*ldc+n, "gemm c")
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += at(i, p) * bt(p, j)
			}
			idx := c.Off + i*ldc + j
			old := 0.0
			if beta != 0 {
				old = float64(beta) * C[idx]
			}
			C[idx] = float64(alpha)*s + old
		}
	}
}

func (r *refBackend) GemmStridedBatched(tA, tB bool, m, n, k int, alpha float32, a compute.View, lda, sA int, b compute.View, ldb, sB int, beta float32, c compute.View, ldc, sC int, batch int) {
	for i := 0; i < batch; i++ {
		r.Gemm(tA, tB, m, n, k, alpha, a.At(i*sA), lda, b.At(i*sB), ldb, beta, c.At(i*sC), ldc)
	}
}

func (r *refBackend) GemmSum(tA, tB bool, m, n, k int, alpha float32, a compute.View, lda, sA int, b compute.View, ldb, sB int, beta float32, c compute.View, ldc int, batch int) {
	for i := 0; i < batch; i++ {
		r.Gemm(tA, tB, m, n, k, alpha, a.At(i*sA), lda, b.At(i*sB), ldb, beta, c, ldc)
		beta = 1
	}
}

func (r *refBackend) Scale(x compute.View, n int, alpha float32) {
	v := d(x, n, "scale")
	for i := range v {
		v[i] *= float64(alpha)
	}
}
func (r *refBackend) Axpy(y, x compute.View, n int, alpha float32) {
	Y, X := d(y, n, "axpy"), d(x, n, "axpy")
	for i := range Y {
		Y[i] += float64(alpha) * X[i]
	}
}
func (r *refBackend) AddScaled(dst, a, b compute.View, n int, alpha float32) {
	D, A, B := d(dst, n, "addscaled"), d(a, n, "addscaled"), d(b, n, "addscaled")
	for i := range D {
		D[i] = (A[i] + B[i]) * float64(alpha)
	}
}
func (r *refBackend) ReLU(dst, src compute.View, n int) {
	D, S := d(dst, n, "relu"), d(src, n, "relu")
	for i := range D {
		D[i] = math.Max(S[i], 0)
	}
}
func (r *refBackend) ReLUBackward(dx, dy, y compute.View, n int) {
	DX, DY, Y := d(dx, n, "relub"), d(dy, n, "relub"), d(y, n, "relub")
	for i := range DX {
		if Y[i] > 0 {
			DX[i] = DY[i]
		} else {
			DX[i] = 0
		}
	}
}
func (r *refBackend) Dot(a, b compute.View, n int) float64 {
	A, B := d(a, n, "dot"), d(b, n, "dot")
	var s float64
	for i := range A {
		s += A[i] * B[i]
	}
	return s
}
func (r *refBackend) SumSquares(x compute.View, n int) float64 { return r.Dot(x, x, n) }
func (r *refBackend) AddBias(x, bias compute.View, batch, ch, t int) {
	X, Bi := d(x, batch*ch*t, "addbias"), d(bias, ch, "addbias")
	for b := 0; b < batch; b++ {
		for c := 0; c < ch; c++ {
			for i := 0; i < t; i++ {
				X[(b*ch+c)*t+i] += Bi[c]
			}
		}
	}
}
func (r *refBackend) BiasGrad(dbias, dy compute.View, batch, ch, t int) {
	DB, DY := d(dbias, ch, "biasgrad"), d(dy, batch*ch*t, "biasgrad")
	for b := 0; b < batch; b++ {
		for c := 0; c < ch; c++ {
			for i := 0; i < t; i++ {
				DB[c] += DY[(b*ch+c)*t+i]
			}
		}
	}
}
func sigm(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
func (r *refBackend) GatedTanhSigmoid(z, pre compute.View, batch, n int) {
	Z, P := d(z, batch*n, "gated"), d(pre, 2*batch*n, "gated")
	for b := 0; b < batch; b++ {
		for i := 0; i < n; i++ {
			Z[b*n+i] = math.Tanh(P[2*b*n+i]) * sigm(P[2*b*n+n+i])
		}
	}
}
func (r *refBackend) GatedTanhSigmoidBackward(dpre, dz, pre compute.View, batch, n int) {
	DP, DZ, P := d(dpre, 2*batch*n, "gatedb"), d(dz, batch*n, "gatedb"), d(pre, 2*batch*n, "gatedb")
	for b := 0; b < batch; b++ {
		for i := 0; i < n; i++ {
			ta, sb := math.Tanh(P[2*b*n+i]), sigm(P[2*b*n+n+i])
			g := DZ[b*n+i]
			DP[2*b*n+i] = g * sb * (1 - ta*ta)
			DP[2*b*n+n+i] = g * ta * sb * (1 - sb)
		}
	}
}
func (r *refBackend) Stretch(dst, src compute.View, rows, t, s int) {
	D, S := d(dst, rows*t*s, "stretch"), d(src, rows*t, "stretch")
	for i := 0; i < rows; i++ {
		for j := 0; j < t*s; j++ {
			D[i*t*s+j] = S[i*t+j/s]
		}
	}
}
func (r *refBackend) StretchBackward(dsrc, ddst compute.View, rows, t, s int) {
	DS, DD := d(dsrc, rows*t, "stretchb"), d(ddst, rows*t*s, "stretchb")
	for i := 0; i < rows; i++ {
		for j := 0; j < t; j++ {
			var sum float64
			for q := 0; q < s; q++ {
				sum += DD[i*t*s+j*s+q]
			}
			DS[i*t+j] = sum
		}
	}
}
func (r *refBackend) RowConvSame(dst, src, w compute.View, rows, t, width int) {
	D, S, W := d(dst, rows*t, "rowconv"), d(src, rows*t, "rowconv"), d(w, width, "rowconv")
	h := width / 2
	for i := 0; i < rows; i++ {
		for j := 0; j < t; j++ {
			var sum float64
			for q := 0; q < width; q++ {
				if p := j + q - h; p >= 0 && p < t {
					sum += W[q] * S[i*t+p]
				}
			}
			D[i*t+j] = sum
		}
	}
}
func (r *refBackend) RowConvSameBackward(dsrc, dw, dy, src, w compute.View, rows, t, width int) {
	DS, DW, DY := d(dsrc, rows*t, "rowconvb"), d(dw, width, "rowconvb"), d(dy, rows*t, "rowconvb")
	S, W := d(src, rows*t, "rowconvb"), d(w, width, "rowconvb")
	h := width / 2
	for i := range DS {
		DS[i] = 0
	}
	for i := 0; i < rows; i++ {
		for j := 0; j < t; j++ {
			g := DY[i*t+j]
			for q := 0; q < width; q++ {
				if p := j + q - h; p >= 0 && p < t {
					DS[i*t+p] += W[q] * g
					DW[q] += S[i*t+p] * g
				}
			}
		}
	}
}
func (r *refBackend) WeightNorm(w, g, v compute.View, groups, out, inner int) {
	W, G, V := d(w, groups*out*inner, "wn"), d(g, out, "wn"), d(v, groups*out*inner, "wn")
	for o := 0; o < out; o++ {
		var ss float64
		for k := 0; k < groups; k++ {
			for i := 0; i < inner; i++ {
				x := V[(k*out+o)*inner+i]
				ss += x * x
			}
		}
		nrm := math.Sqrt(ss)
		for k := 0; k < groups; k++ {
			for i := 0; i < inner; i++ {
				W[(k*out+o)*inner+i] = G[o] * V[(k*out+o)*inner+i] / nrm
			}
		}
	}
}
func (r *refBackend) WeightNormBackward(dg, dv, dw, g, v compute.View, groups, out, inner int) {
	n := groups * out * inner
	DG, DV, DW, G, V := d(dg, out, "wnb"), d(dv, n, "wnb"), d(dw, n, "wnb"), d(g, out, "wnb"), d(v, n, "wnb")
	for o := 0; o < out; o++ {
		var ss, dot float64
		for k := 0; k < groups; k++ {
			for i := 0; i < inner; i++ {
				j := (k*out+o)*inner + i
				ss += V[j] * V[j]
				dot += DW[j] * V[j]
			}
		}
		nrm := math.Sqrt(ss)
		// w = g v/|v|: dg = dw.v/|v|; dv = g/|v| (dw - (dw.v) v/|v|^2).
		DG[o] += dot / nrm
		for k := 0; k < groups; k++ {
			for i := 0; i < inner; i++ {
				j := (k*out+o)*inner + i
				DV[j] += G[o] / nrm * (DW[j] - dot*V[j]/ss)
			}
		}
	}
}
func (r *refBackend) Adam(param, grad, m, v compute.View, n int, p compute.AdamParams) {
	panic(fmt.Sprint("ref64: Adam not needed by wavenet tests"))
}
func (r *refBackend) EMA(ema, param compute.View, n int, decay float32) {
	panic("ref64: EMA not needed by wavenet tests")
}

var _ compute.Backend = (*refBackend)(nil)
