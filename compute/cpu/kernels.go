package cpu

import (
	"fmt"
	"math"

	"github.com/wavecat/wavecat/compute"
)

func checkNonNeg(what string, vals ...int) {
	for _, v := range vals {
		if v < 0 {
			// Copy so vals does not escape (and allocate) on the happy path.
			panic(fmt.Sprintf("cpu: %s: negative size in %v", what, append([]int(nil), vals...)))
		}
	}
}

// Scale computes x *= alpha.
func (be *Backend) Scale(x compute.View, n int, alpha float32) {
	xs := sl(x, n, "Scale x")
	if n <= grain {
		scale(xs, alpha)
		return
	}
	t := getTask(scaleTask)
	t.x[0], t.f[0] = xs, alpha
	be.do(t, n, grain)
}

func scaleTask(t *task, lo, hi int) { scale(t.x[0][lo:hi], t.f[0]) }

func scale(x []float32, alpha float32) {
	x = x[scaleVec(x, alpha):]
	for i := range x {
		x[i] *= alpha
	}
}

// Axpy computes y += alpha*x.
func (be *Backend) Axpy(y compute.View, x compute.View, n int, alpha float32) {
	ys, xs := sl(y, n, "Axpy y"), sl(x, n, "Axpy x")
	if n <= grain {
		axpy(ys, xs, alpha)
		return
	}
	t := getTask(axpyTask)
	t.x[0], t.x[1], t.f[0] = ys, xs, alpha
	be.do(t, n, grain)
}

func axpyTask(t *task, lo, hi int) { axpy(t.x[0][lo:hi], t.x[1][lo:hi], t.f[0]) }

func axpy(y, x []float32, alpha float32) {
	x = x[:len(y)]
	for i := range y {
		y[i] += alpha * x[i]
	}
}

// AddScaled computes dst = (a + b)*alpha.
func (be *Backend) AddScaled(dst, a, b compute.View, n int, alpha float32) {
	ds, as, bs := sl(dst, n, "AddScaled dst"), sl(a, n, "AddScaled a"), sl(b, n, "AddScaled b")
	if n <= grain {
		addScaled(ds, as, bs, alpha)
		return
	}
	t := getTask(addScaledTask)
	t.x[0], t.x[1], t.x[2], t.f[0] = ds, as, bs, alpha
	be.do(t, n, grain)
}

func addScaledTask(t *task, lo, hi int) {
	addScaled(t.x[0][lo:hi], t.x[1][lo:hi], t.x[2][lo:hi], t.f[0])
}

func addScaled(d, a, b []float32, alpha float32) {
	a, b = a[:len(d)], b[:len(d)]
	v := addScaledVec(d, a, b, alpha)
	d, a, b = d[v:], a[v:], b[v:]
	for i := range d {
		d[i] = (a[i] + b[i]) * alpha
	}
}

// ReLU computes dst = max(src, 0); dst may alias src.
func (be *Backend) ReLU(dst, src compute.View, n int) {
	ds, ss := sl(dst, n, "ReLU dst"), sl(src, n, "ReLU src")
	if n <= grain {
		relu(ds, ss)
		return
	}
	t := getTask(reluTask)
	t.x[0], t.x[1] = ds, ss
	be.do(t, n, grain)
}

func reluTask(t *task, lo, hi int) { relu(t.x[0][lo:hi], t.x[1][lo:hi]) }

func relu(d, s []float32) {
	s = s[:len(d)]
	for i := range d {
		v := s[i]
		if !(v > 0) {
			v = 0
		}
		d[i] = v
	}
}

// ReLUBackward computes dx = dy * (y > 0), y being the ReLU output.
func (be *Backend) ReLUBackward(dx, dy, y compute.View, n int) {
	dxs, dys, ys := sl(dx, n, "ReLUBackward dx"), sl(dy, n, "ReLUBackward dy"), sl(y, n, "ReLUBackward y")
	if n <= grain {
		reluBackward(dxs, dys, ys)
		return
	}
	t := getTask(reluBackwardTask)
	t.x[0], t.x[1], t.x[2] = dxs, dys, ys
	be.do(t, n, grain)
}

func reluBackwardTask(t *task, lo, hi int) {
	reluBackward(t.x[0][lo:hi], t.x[1][lo:hi], t.x[2][lo:hi])
}

func reluBackward(dx, dy, y []float32) {
	dy, y = dy[:len(dx)], y[:len(dx)]
	for i := range dx {
		if y[i] > 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
}

// Dot returns sum a*b accumulated in float64.
func (be *Backend) Dot(a, b compute.View, n int) float64 {
	as, bs := sl(a, n, "Dot a"), sl(b, n, "Dot b")
	if n <= grain {
		return dot(as, bs)
	}
	t := getTask(dotTask)
	t.x[0], t.x[1] = as, bs
	return be.reduce(t, n)
}

func dotTask(t *task, lo, hi int) { t.part[lo/t.step] = dot(t.x[0][lo:hi], t.x[1][lo:hi]) }

func dot(a, b []float32) float64 {
	b = b[:len(a)]
	// Four accumulators: one float64 add chain is latency-bound at ~4
	// cycles per element.
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += float64(a[i]) * float64(b[i])
		s1 += float64(a[i+1]) * float64(b[i+1])
		s2 += float64(a[i+2]) * float64(b[i+2])
		s3 += float64(a[i+3]) * float64(b[i+3])
	}
	for ; i < len(a); i++ {
		s0 += float64(a[i]) * float64(b[i])
	}
	return (s0 + s1) + (s2 + s3)
}

// SumSquares returns sum x*x accumulated in float64.
func (be *Backend) SumSquares(x compute.View, n int) float64 {
	xs := sl(x, n, "SumSquares x")
	if n <= grain {
		return dot(xs, xs)
	}
	t := getTask(dotTask)
	t.x[0], t.x[1] = xs, xs
	return be.reduce(t, n)
}

// AddBias adds bias[c] to every x[b][c][:].
func (be *Backend) AddBias(x, bias compute.View, batch, channels, t int) {
	checkNonNeg("AddBias", batch, channels, t)
	xs, bs := sl(x, batch*channels*t, "AddBias x"), sl(bias, channels, "AddBias bias")
	rows := batch * channels
	if len(xs) <= grain || t == 0 {
		addBias(xs, bs, 0, rows, t)
		return
	}
	tk := getTask(addBiasTask)
	tk.x[0], tk.x[1], tk.n[0] = xs, bs, t
	be.do(tk, rows, max(1, grain/t))
}

func addBiasTask(t *task, lo, hi int) { addBias(t.x[0], t.x[1], lo, hi, t.n[0]) }

// addBias adds bias[r % channels] to rows [lo, hi) of x, each t long.
func addBias(x, bias []float32, lo, hi, t int) {
	for r := lo; r < hi; r++ {
		addConst(x[r*t:(r+1)*t], bias[r%len(bias)])
	}
}

// addConst adds v to every element of x.
func addConst(x []float32, v float32) {
	x = x[addConstVec(x, v):]
	for i := range x {
		x[i] += v
	}
}

// BiasGrad accumulates dbias[c] += sum over b, t of dy[b][c][t].
func (be *Backend) BiasGrad(dbias, dy compute.View, batch, channels, t int) {
	checkNonNeg("BiasGrad", batch, channels, t)
	ds, ys := sl(dbias, channels, "BiasGrad dbias"), sl(dy, batch*channels*t, "BiasGrad dy")
	if len(ys) <= grain || t == 0 || batch == 0 {
		biasGrad(ds, ys, 0, channels, batch, t)
		return
	}
	tk := getTask(biasGradTask)
	tk.x[0], tk.x[1], tk.n[0], tk.n[1] = ds, ys, batch, t
	be.do(tk, channels, max(1, grain/(t*batch)))
}

func biasGradTask(t *task, lo, hi int) { biasGrad(t.x[0], t.x[1], lo, hi, t.n[0], t.n[1]) }

// sumBlock is the run of elements summed in float32 before the partial
// sum moves to float64 (error ~ sumBlock*eps32 instead of t*eps32).
const sumBlock = 256

// biasGrad accumulates channels [lo, hi) of dbias: blocks of a row summed
// in float32, the blocks and rows in float64.
func biasGrad(dbias, dy []float32, lo, hi, batch, t int) {
	channels := len(dbias)
	for c := lo; c < hi; c++ {
		var s float64
		for b := 0; b < batch; b++ {
			row := dy[(b*channels+c)*t : (b*channels+c+1)*t]
			for b0 := 0; b0 < len(row); b0 += sumBlock {
				blk := row[b0:min(b0+sumBlock, len(row))]
				rs, d := sumVec(blk)
				for _, v := range blk[d:] {
					rs += v
				}
				s += float64(rs)
			}
		}
		dbias[c] += float32(s)
	}
}

// GatedTanhSigmoid computes z = tanh(a) * sigmoid(b) per batch segment,
// pre holding [a | b] for each segment.
func (be *Backend) GatedTanhSigmoid(z, pre compute.View, batch, n int) {
	checkNonNeg("GatedTanhSigmoid", batch, n)
	zs, ps := sl(z, batch*n, "GatedTanhSigmoid z"), sl(pre, 2*batch*n, "GatedTanhSigmoid pre")
	// Transcendentals cost ~10x a load, hence the smaller grain. Work units
	// are elements of z; a chunk may span batch segments.
	if batch*n <= grain/4 || n == 0 {
		gatedRange(zs, ps, n, 0, batch*n)
		return
	}
	t := getTask(gatedTask)
	t.x[0], t.x[1], t.n[0] = zs, ps, n
	be.do(t, batch*n, grain/4)
}

func gatedTask(t *task, lo, hi int) { gatedRange(t.x[0], t.x[1], t.n[0], lo, hi) }

// gatedRange computes elements [lo, hi) of z (flat over batch segments of n).
func gatedRange(z, pre []float32, n, lo, hi int) {
	for lo < hi {
		b, i := lo/n, lo%n
		e := min(hi-lo, n-i) // to the end of this segment
		gated(z[lo:lo+e], pre[2*b*n+i:2*b*n+i+e], pre[(2*b+1)*n+i:(2*b+1)*n+i+e])
		lo += e
	}
}

// gated computes z = tanh(a)*sigmoid(b): 8 lanes at a time in assembly
// where the CPU allows, the rest with fgated.
func gated(z, a, b []float32) {
	a, b = a[:len(z)], b[:len(z)]
	if n8 := len(z) &^ 7; useAVX2 && n8 > 0 {
		gatedAVX2(&z[0], &a[0], &b[0], n8)
		z, a, b = z[n8:], a[n8:], b[n8:]
	}
	for i := range z {
		z[i] = float32(fgated(float64(a[i]), float64(b[i])))
	}
}

// GatedTanhSigmoidBackward writes dpre = [dz*s*(1-t^2) | dz*t*s*(1-s)] with
// t = tanh(a), s = sigmoid(b).
func (be *Backend) GatedTanhSigmoidBackward(dpre, dz, pre compute.View, batch, n int) {
	checkNonNeg("GatedTanhSigmoidBackward", batch, n)
	ds := sl(dpre, 2*batch*n, "GatedTanhSigmoidBackward dpre")
	zs := sl(dz, batch*n, "GatedTanhSigmoidBackward dz")
	ps := sl(pre, 2*batch*n, "GatedTanhSigmoidBackward pre")
	if batch*n <= grain/4 || n == 0 {
		gatedBackwardRange(ds, zs, ps, n, 0, batch*n)
		return
	}
	t := getTask(gatedBackwardTask)
	t.x[0], t.x[1], t.x[2], t.n[0] = ds, zs, ps, n
	be.do(t, batch*n, grain/4)
}

func gatedBackwardTask(t *task, lo, hi int) {
	gatedBackwardRange(t.x[0], t.x[1], t.x[2], t.n[0], lo, hi)
}

// gatedBackwardRange does elements [lo, hi) of dz (flat over segments of n).
func gatedBackwardRange(dpre, dz, pre []float32, n, lo, hi int) {
	for lo < hi {
		b, i := lo/n, lo%n
		e := min(hi-lo, n-i)
		a0, b0 := 2*b*n+i, (2*b+1)*n+i
		gatedBackward(dpre[a0:a0+e], dpre[b0:b0+e], dz[lo:lo+e], pre[a0:a0+e], pre[b0:b0+e])
		lo += e
	}
}

// gatedBackward computes da = dz s (1-t^2), db = dz t s(1-s), like gated.
func gatedBackward(da, db, dz, a, b []float32) {
	db, dz, a, b = db[:len(da)], dz[:len(da)], a[:len(da)], b[:len(da)]
	if n8 := len(da) &^ 7; useAVX2 && n8 > 0 {
		gatedBackwardAVX2(&da[0], &db[0], &dz[0], &a[0], &b[0], n8)
		da, db, dz, a, b = da[n8:], db[n8:], dz[n8:], a[n8:], b[n8:]
	}
	for i := range da {
		t, sech2, s, ds := fgatedGrad(float64(a[i]), float64(b[i]))
		g := float64(dz[i])
		da[i] = float32(g * s * sech2)
		db[i] = float32(g * t * ds)
	}
}

// Stretch repeats every src[r][t] s times along time.
func (be *Backend) Stretch(dst, src compute.View, rows, t, s int) {
	checkNonNeg("Stretch", rows, t, s)
	ds, ss := sl(dst, rows*t*s, "Stretch dst"), sl(src, rows*t, "Stretch src")
	if len(ds) <= grain || s == 0 {
		stretch(ds, ss, 0, rows*t, s)
		return
	}
	tk := getTask(stretchTask)
	tk.x[0], tk.x[1], tk.n[0] = ds, ss, s
	be.do(tk, rows*t, max(1, grain/s))
}

func stretchTask(t *task, lo, hi int) { stretch(t.x[0], t.x[1], lo, hi, t.n[0]) }

// stretch writes the s copies of src[lo:hi].
func stretch(dst, src []float32, lo, hi, s int) {
	for i := lo; i < hi; i++ {
		v := src[i]
		out := dst[i*s : (i+1)*s]
		for j := range out {
			out[j] = v
		}
	}
}

// StretchBackward overwrites dsrc[r][t] with the sum of its s copies' grads.
func (be *Backend) StretchBackward(dsrc, ddst compute.View, rows, t, s int) {
	checkNonNeg("StretchBackward", rows, t, s)
	ds, dd := sl(dsrc, rows*t, "StretchBackward dsrc"), sl(ddst, rows*t*s, "StretchBackward ddst")
	if len(dd) <= grain || s == 0 {
		stretchBackward(ds, dd, 0, rows*t, s)
		return
	}
	tk := getTask(stretchBackwardTask)
	tk.x[0], tk.x[1], tk.n[0] = ds, dd, s
	be.do(tk, rows*t, max(1, grain/s))
}

func stretchBackwardTask(t *task, lo, hi int) { stretchBackward(t.x[0], t.x[1], lo, hi, t.n[0]) }

// stretchBackward sums the s copies of each of dsrc[lo:hi].
func stretchBackward(dsrc, ddst []float32, lo, hi, s int) {
	for i := lo; i < hi; i++ {
		var acc float32
		for _, v := range ddst[i*s : (i+1)*s] {
			acc += v
		}
		dsrc[i] = acc
	}
}

func checkOddWidth(what string, width int) {
	if width < 1 || width%2 == 0 {
		panic(fmt.Sprintf("cpu: %s: kernel width %d must be odd and positive", what, width))
	}
}

// RowConvSame cross-correlates every row with w, zero padding width/2.
func (be *Backend) RowConvSame(dst, src, w compute.View, rows, t, width int) {
	checkNonNeg("RowConvSame", rows, t)
	checkOddWidth("RowConvSame", width)
	ds, ss, ws := sl(dst, rows*t, "RowConvSame dst"), sl(src, rows*t, "RowConvSame src"), sl(w, width, "RowConvSame w")
	if rows*t*width <= grain || t == 0 {
		rowConvRows(ds, ss, ws, 0, rows, t)
		return
	}
	tk := getTask(rowConvTask)
	tk.x[0], tk.x[1], tk.x[2], tk.n[0] = ds, ss, ws, t
	be.do(tk, rows, max(1, grain/(t*width)))
}

func rowConvTask(t *task, lo, hi int) { rowConvRows(t.x[0], t.x[1], t.x[2], lo, hi, t.n[0]) }

func rowConvRows(dst, src, w []float32, lo, hi, t int) {
	for r := lo; r < hi; r++ {
		rowConv(dst[r*t:(r+1)*t], src[r*t:(r+1)*t], w)
	}
}

// rowConv: d[i] = sum_j w[j] * s[i+j-h], out-of-range s reading as zero.
func rowConv(d, s, w []float32) {
	t, h := len(d), len(w)/2
	clear(d)
	for j, wj := range w {
		sh := j - h // d[i] += wj * s[i+sh] for 0 <= i+sh < t
		lo, hi := max(0, -sh), min(t, t-sh)
		if lo >= hi {
			continue
		}
		dd, sv := d[lo:hi], s[lo+sh:hi+sh]
		for i := range dd {
			dd[i] += wj * sv[i]
		}
	}
}

// RowConvSameBackward overwrites dsrc and accumulates dw.
func (be *Backend) RowConvSameBackward(dsrc, dw, dy, src, w compute.View, rows, t, width int) {
	checkNonNeg("RowConvSameBackward", rows, t)
	checkOddWidth("RowConvSameBackward", width)
	dss := sl(dsrc, rows*t, "RowConvSameBackward dsrc")
	dws := sl(dw, width, "RowConvSameBackward dw")
	dys := sl(dy, rows*t, "RowConvSameBackward dy")
	ss := sl(src, rows*t, "RowConvSameBackward src")
	ws := sl(w, width, "RowConvSameBackward w")
	// dw is reduced in float64 per chunk of rows, then added in order.
	c := 1
	if rows*t*width > grain && t > 0 {
		c = be.chunks(rows, max(1, grain/(t*width)))
	}
	tk := getTask(rowConvBackwardTask)
	if cap(tk.part) < c*width {
		tk.part = make([]float64, c*width)
	}
	tk.part = tk.part[:c*width]
	clear(tk.part)
	tk.x[0], tk.x[1], tk.x[2], tk.x[3], tk.n[0] = dss, dys, ss, ws, t
	be.runChunks(tk, rows, c)
	for k := 0; k < c; k++ {
		for j := range dws {
			dws[j] += float32(tk.part[k*width+j])
		}
	}
	putTask(tk)
}

func rowConvBackwardTask(t *task, lo, hi int) {
	w := len(t.x[3])
	k := lo / t.step
	rowConvBackward(t.x[0], t.x[1], t.x[2], t.x[3], t.part[k*w:(k+1)*w], lo, hi, t.n[0])
}

// rowConvBackward does rows [lo, hi): dsrc[u] = sum_j w[j] dy[u-(j-h)] (the
// row conv of dy with w reversed) and acc[j] += sum_i dy[i] src[i+j-h].
func rowConvBackward(dsrc, dy, src, w []float32, acc []float64, lo, hi, t int) {
	h := len(w) / 2
	for r := lo; r < hi; r++ {
		d, s, g := dsrc[r*t:(r+1)*t], src[r*t:(r+1)*t], dy[r*t:(r+1)*t]
		clear(d)
		for j, wj := range w {
			sh := j - h
			lo, hi := max(0, -sh), min(t, t-sh)
			if lo >= hi {
				continue
			}
			gv, sv, dv := g[lo:hi], s[lo+sh:hi+sh], d[lo+sh:hi+sh]
			// float32 partial sums over blocks of sumBlock, added in
			// float64, keep long rows accurate without float64 per element.
			for b0 := 0; b0 < len(gv); b0 += sumBlock {
				b1 := min(b0+sumBlock, len(gv))
				gb, sb, db := gv[b0:b1], sv[b0:b1], dv[b0:b1]
				var a float32
				for i := range gb {
					a += gb[i] * sb[i]
					db[i] += wj * gb[i]
				}
				acc[j] += float64(a)
			}
		}
	}
}

// WeightNorm computes w = g[o] * v / ||v[:, o, :]|| on a [groups][out][inner]
// weight (a zero row gives NaN, as in PyTorch).
func (be *Backend) WeightNorm(w, g, v compute.View, groups, out, inner int) {
	checkNonNeg("WeightNorm", groups, out, inner)
	n := groups * out * inner
	ws, gs, vs := sl(w, n, "WeightNorm w"), sl(g, out, "WeightNorm g"), sl(v, n, "WeightNorm v")
	if n <= grain || inner == 0 {
		weightNorm(ws, gs, vs, groups, inner, 0, out)
		return
	}
	t := getTask(weightNormTask)
	t.x[0], t.x[1], t.x[2], t.n[0], t.n[1] = ws, gs, vs, groups, inner
	be.do(t, out, max(1, grain/(groups*inner)))
}

func weightNormTask(t *task, lo, hi int) {
	weightNorm(t.x[0], t.x[1], t.x[2], t.n[0], t.n[1], lo, hi)
}

// weightNorm does output rows [lo, hi); out is len(g).
func weightNorm(w, g, v []float32, groups, inner, lo, hi int) {
	out := len(g)
	for o := lo; o < hi; o++ {
		var ss float64
		for k := 0; k < groups; k++ {
			row := v[(k*out+o)*inner : (k*out+o+1)*inner]
			ss += dot(row, row)
		}
		f := float32(float64(g[o]) / math.Sqrt(ss))
		for k := 0; k < groups; k++ {
			row := v[(k*out+o)*inner : (k*out+o+1)*inner]
			wr := w[(k*out+o)*inner : (k*out+o+1)*inner]
			for i := range wr {
				wr[i] = f * row[i]
			}
		}
	}
}

// WeightNormBackward accumulates dg[o] += <dw, v>/||v|| and
// dv += g/||v|| * (dw - <dw, v>/||v||^2 * v), per output row o.
func (be *Backend) WeightNormBackward(dg, dv, dw, g, v compute.View, groups, out, inner int) {
	checkNonNeg("WeightNormBackward", groups, out, inner)
	n := groups * out * inner
	dgs, dvs := sl(dg, out, "WeightNormBackward dg"), sl(dv, n, "WeightNormBackward dv")
	dws, gs, vs := sl(dw, n, "WeightNormBackward dw"), sl(g, out, "WeightNormBackward g"), sl(v, n, "WeightNormBackward v")
	if n <= grain || inner == 0 {
		weightNormBackward(dgs, dvs, dws, gs, vs, groups, inner, 0, out)
		return
	}
	t := getTask(weightNormBackwardTask)
	t.x[0], t.x[1], t.x[2], t.x[3], t.x[4], t.n[0], t.n[1] = dgs, dvs, dws, gs, vs, groups, inner
	be.do(t, out, max(1, grain/(groups*inner)))
}

func weightNormBackwardTask(t *task, lo, hi int) {
	weightNormBackward(t.x[0], t.x[1], t.x[2], t.x[3], t.x[4], t.n[0], t.n[1], lo, hi)
}

// weightNormBackward does output rows [lo, hi); out is len(g).
func weightNormBackward(dg, dv, dw, g, v []float32, groups, inner, lo, hi int) {
	out := len(g)
	for o := lo; o < hi; o++ {
		var ss, dp float64
		for k := 0; k < groups; k++ {
			l, h := (k*out+o)*inner, (k*out+o+1)*inner
			ss += dot(v[l:h], v[l:h])
			dp += dot(dw[l:h], v[l:h])
		}
		norm := math.Sqrt(ss)
		dg[o] += float32(dp / norm)
		a := float32(float64(g[o]) / norm)
		b := float32(float64(g[o]) * dp / (norm * ss))
		for k := 0; k < groups; k++ {
			l, h := (k*out+o)*inner, (k*out+o+1)*inner
			dvr, dwr, vr := dv[l:h], dw[l:h], v[l:h]
			for i := range dvr {
				dvr[i] += a*dwr[i] - b*vr[i]
			}
		}
	}
}

// Adam applies one PyTorch-style Adam step (bias corrections in float64).
func (be *Backend) Adam(param, grad, m, v compute.View, n int, p compute.AdamParams) {
	if p.Step < 1 {
		panic(fmt.Sprintf("cpu: Adam: step %d, want >= 1 (1-based)", p.Step))
	}
	ps, gs := sl(param, n, "Adam param"), sl(grad, n, "Adam grad")
	ms, vs := sl(m, n, "Adam m"), sl(v, n, "Adam v")
	b1, b2 := float64(p.Beta1), float64(p.Beta2)
	bc1 := 1 - math.Pow(b1, float64(p.Step))
	bc2 := 1 - math.Pow(b2, float64(p.Step))
	k := adamConsts{
		b1: p.Beta1, b2: p.Beta2, c1: float32(1 - b1), c2: float32(1 - b2),
		step:  float32(float64(p.LR) / bc1),
		isqb2: float32(1 / math.Sqrt(bc2)),
		eps:   p.Eps,
	}
	if n <= grain {
		adam(ps, gs, ms, vs, &k)
		return
	}
	t := getTask(adamTask)
	t.x[0], t.x[1], t.x[2], t.x[3], t.adam = ps, gs, ms, vs, k
	be.do(t, n, grain)
}

func adamTask(t *task, lo, hi int) {
	adam(t.x[0][lo:hi], t.x[1][lo:hi], t.x[2][lo:hi], t.x[3][lo:hi], &t.adam)
}

type adamConsts struct{ b1, b2, c1, c2, step, isqb2, eps float32 }

// adam: p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps), the order PyTorch uses.
func adam(p, g, m, v []float32, k *adamConsts) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	d := adamVec(p, g, m, v, k)
	adamScalar(p[d:], g[d:], m[d:], v[d:], k)
}

// adamScalar rounds every product to float32 before it is added (an
// explicit conversion forbids Go from fusing a*b+c into an FMA, which it
// does at GOAMD64=v3), so its bits are adamAVX's separate multiplies and
// adds.
func adamScalar(p, g, m, v []float32, k *adamConsts) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	for i := range p {
		gi := g[i]
		mi := float32(k.b1*m[i]) + float32(k.c1*gi)
		vi := float32(k.b2*v[i]) + float32(float32(k.c2*gi)*gi)
		m[i], v[i] = mi, vi
		p[i] -= k.step * mi / (float32(float32(math.Sqrt(float64(vi)))*k.isqb2) + k.eps)
	}
}

// EMA computes ema = decay*ema + (1-decay)*param.
func (be *Backend) EMA(ema, param compute.View, n int, decay float32) {
	es, ps := sl(ema, n, "EMA ema"), sl(param, n, "EMA param")
	if n <= grain {
		emaK(es, ps, decay)
		return
	}
	t := getTask(emaTask)
	t.x[0], t.x[1], t.f[0] = es, ps, decay
	be.do(t, n, grain)
}

func emaTask(t *task, lo, hi int) { emaK(t.x[0][lo:hi], t.x[1][lo:hi], t.f[0]) }

func emaK(e, p []float32, decay float32) {
	p = p[:len(e)]
	c := 1 - decay
	for i := range e {
		e[i] = decay*e[i] + c*p[i]
	}
}
