package cpu

import (
	"fmt"
	"math"
	"unsafe"
)

// PackedMatrix is an m x k weight matrix laid out for MulVecs: panels of 16
// rows (the last one zero-padded), each stored k-major ([k][16]), so a
// kernel streams contiguous memory and every output row is a vector lane.
type PackedMatrix struct {
	M, K int
	data []float32 // ceil(M/16) panels of K*16, 64-byte aligned
}

// mvPanel is the rows per panel: one ZMM register, two YMM registers.
const mvPanel = 16

// PackMatrix copies the m x k row-major matrix w (leading dimension ld) into
// panel layout.
func PackMatrix(w []float32, m, k, ld int) *PackedMatrix {
	if m < 0 || k < 0 || ld < max(k, 1) || (m > 0 && k > 0 && len(w) < (m-1)*ld+k) {
		panic(fmt.Sprintf("cpu: PackMatrix: %d x %d matrix (ld %d) in %d values", m, k, ld, len(w)))
	}
	np := (m + mvPanel - 1) / mvPanel
	n := np * k * mvPanel
	// Align to a cache line so each k step of a panel is one line.
	raw := make([]float32, n+16)
	a := 0
	for uintptr(unsafe.Pointer(unsafe.SliceData(raw[a:])))%64 != 0 {
		a++
	}
	p := &PackedMatrix{M: m, K: k, data: raw[a : a+n : a+n]}
	for i := 0; i < m; i++ {
		base := (i/mvPanel)*k*mvPanel + i%mvPanel
		for j := 0; j < k; j++ {
			p.data[base+j*mvPanel] = w[i*ld+j]
		}
	}
	return p
}

// mvISA selects MulVecs' kernels: 2 AVX-512, 1 AVX2+FMA, 0 pure Go. All
// three give the same bits (each output is the same FMA chain); tests set it
// to compare them.
var mvISA = func() int {
	switch {
	case useAVX512:
		return 2
	case useAVX2:
		return 1
	}
	return 0
}()

// MulVecsAccelerated reports whether MulVecs runs in assembly here (the pure
// Go fallback gives the same bits but is several times slower than BLAS).
func MulVecsAccelerated() bool { return mvISA > 0 }

// MulVecs computes y_c = W x_c for the n columns c (x_c = x[c*ldx:][:K],
// y_c = y[c*ldy:][:M]); with acc, y_c += W x_c, y_c's old value starting the
// sum. Each output element is one fused multiply-add chain over k = 0..K-1
// in order, so a column's result has the same bits whatever n is, which
// columns share the call and which kernel (AVX-512, AVX2, Go) runs it: what
// lets a batched synthesis step reproduce one-by-one synthesis exactly while
// sharing each weight load over the batch, which OpenBLAS cannot (it sums a
// column differently at different widths). x and y must not overlap.
func (p *PackedMatrix) MulVecs(x []float32, ldx int, y []float32, ldy, n int, acc bool) {
	if n <= 0 || p.M == 0 {
		return
	}
	if ldx < p.K || ldy < p.M || len(x) < (n-1)*ldx+p.K || len(y) < (n-1)*ldy+p.M {
		panic(fmt.Sprintf("cpu: MulVecs: %d columns of %d -> %d (ldx %d, ldy %d) in %d / %d values",
			n, p.K, p.M, ldx, ldy, len(x), len(y)))
	}
	if p.K == 0 {
		if !acc {
			for c := 0; c < n; c++ {
				clear(y[c*ldy : c*ldy+p.M])
			}
		}
		return
	}
	switch mvISA {
	case 2:
		p.mulVecsAsm(x, ldx, y, ldy, n, acc, true)
	case 1:
		p.mulVecsAsm(x, ldx, y, ldy, n, acc, false)
	default:
		p.mulVecsGo(x, ldx, y, ldy, n, acc)
	}
}

// mulVecsAsm tiles the product into kernel calls: columns in groups of up to
// maxN; one column takes up to p1 panels per call, several take up to pN
// (the generated variants). A partial last panel is computed into a stack
// scratch and copied out. The kernels are called directly, not through a
// func value, so the scratch does not escape to the heap.
func (p *PackedMatrix) mulVecsAsm(x []float32, ldx int, y []float32, ldy, n int, acc, avx512 bool) {
	maxN, p1, pN := 6, 4, 1
	if avx512 {
		maxN, p1, pN = 8, 8, 2
	}
	block := func(pp, nc int, w *float32, x *float32, y *float32, ldy int) {
		if avx512 {
			mvBlockA5(pp, nc, w, p.K*mvPanel, p.K, x, ldx, y, ldy, acc)
		} else {
			mvBlockA2(pp, nc, w, p.K*mvPanel, p.K, x, ldx, y, ldy, acc)
		}
	}
	K, M := p.K, p.M
	full := M / mvPanel
	ldw := K * mvPanel
	var scratch [mvPanel * 8]float32
	for c0 := 0; c0 < n; c0 += maxN {
		nc := min(maxN, n-c0)
		pmax := pN
		if nc == 1 {
			pmax = p1
		}
		xc := &x[c0*ldx]
		for p0 := 0; p0 < full; p0 += pmax {
			pp := min(pmax, full-p0)
			block(pp, nc, &p.data[p0*ldw], xc, &y[c0*ldy+p0*mvPanel], ldy)
		}
		if rem := M - full*mvPanel; rem > 0 {
			r0 := full * mvPanel
			if acc {
				for c := 0; c < nc; c++ {
					copy(scratch[c*mvPanel:c*mvPanel+rem], y[(c0+c)*ldy+r0:(c0+c)*ldy+M])
				}
			}
			block(1, nc, &p.data[full*ldw], xc, &scratch[0], mvPanel)
			for c := 0; c < nc; c++ {
				copy(y[(c0+c)*ldy+r0:(c0+c)*ldy+M], scratch[c*mvPanel:c*mvPanel+rem])
			}
		}
	}
}

// mulVecsGo is the portable MulVecs: the kernels' FMA chains, one element
// at a time.
func (p *PackedMatrix) mulVecsGo(x []float32, ldx int, y []float32, ldy, n int, acc bool) {
	K := p.K
	for c := 0; c < n; c++ {
		xc := x[c*ldx : c*ldx+K]
		yc := y[c*ldy : c*ldy+p.M]
		for i := range yc {
			var s float32
			if acc {
				s = yc[i]
			}
			w := p.data[(i/mvPanel)*K*mvPanel+i%mvPanel:]
			for j, xv := range xc {
				s = fma32(w[j*mvPanel], xv, s)
			}
			yc[i] = s
		}
	}
}

// fma32 is a*b+c rounded once to float32, as VFMADD231PS computes it.
// float32(math.FMA(...)) would round twice (to float64, then float32) and
// can differ in the last bit; rounding the exact sum to odd at float64
// precision first makes the second rounding the correct one (53 >= 24+2
// bits).
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: 48 significant bits
	cd := float64(c)
	s := p + cd
	// TwoSum: e is the exact error of s (explicit conversions keep the
	// compiler from fusing these operations).
	bb := float64(s - p)
	e := float64(float64(p-float64(s-bb)) + float64(cd-bb))
	if e != 0 && !math.IsInf(s, 0) {
		bits := math.Float64bits(s)
		if bits&1 == 0 {
			if (e > 0) == (s > 0) {
				bits++
			} else {
				bits--
			}
			s = math.Float64frombits(bits)
		}
	}
	return float32(s)
}
