package outputs

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"

	"gonum.org/v1/gonum/stat/distuv"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/compute/cuda"
	"github.com/wavecat/wavecat/compute/cudasim"
	"github.com/wavecat/wavecat/mulaw"
)

// The device heads are checked against the CPU heads (the Go steppers are
// the reference) on two backends:
//   - TestDevice*: a real GPU (compute/cuda; skipped without one);
//   - TestCPUSim*: the same checks on compute/cudasim, which compiles the
//     .cu files with g++ for the host (skipped without g++) and runs every
//     thread of a block as a fiber, with __syncthreads and the warp
//     intrinsics as barriers, so the kernels' index arithmetic, reductions,
//     warp sampler and argument lists are exercised on any machine. Host
//     libm stands in for the device's exp/log.
// TestDeviceSourcesCompile compiles every .cu with NVRTC (no GPU needed).

// deviceSpecs are the heads checked on the device.
var deviceSpecs = []string{
	"adacat --components 15 --lambda 0.0001",
	"adacat --components 128 --lambda 0.0001",
	"adacat --components 15 --lambda 0",
	"mol --mixtures 10 --levels 65536",
	"mol --mixtures 3 --levels 256",
	"gaussian",
	"mulaw --bins 256",
	"categorical --bins 256",
}

func TestDeviceSourcesCompile(t *testing.T) {
	srcs := DeviceSources()
	if len(srcs) != 4 {
		t.Fatalf("DeviceSources has %d files, want 4", len(srcs))
	}
	for name, src := range srcs {
		err := cuda.CheckCompile("outputs/"+name, src)
		if errors.Is(err, cuda.ErrNoNVRTC) {
			t.Skipf("NVRTC not available: %v", err)
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestNewDeviceNeedsKernelCompiler(t *testing.T) {
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: "gonum"})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := New("mulaw")
	if _, err := NewDevice(h, be); err == nil {
		t.Fatal("NewDevice on the CPU backend succeeded; want an error (the caller falls back to Go maths)")
	}
}

// TestMuLawDeviceTable checks the mu-law class table of categorical.cu
// against MuLaw.Class: a Go copy of mulaw_class over the thresholds gives
// Class for float32 amplitudes at and around every threshold and at random.
func TestMuLawDeviceTable(t *testing.T) {
	for _, Q := range []int{3, 256, 1024} {
		h, _ := NewMuLaw(Q)
		tab := h.deviceTable()
		thr := tab[:h.mu]
		class := func(y float32) int { // mulaw_class
			lo, hi := 0, h.mu
			for lo < hi {
				m := (lo + hi) / 2
				if y >= thr[m] {
					lo = m + 1
				} else {
					hi = m
				}
			}
			return lo
		}
		check := func(y float32) {
			if got, want := class(y), h.Class(float64(y)); got != want {
				t.Fatalf("Q=%d: table class of %v (bits %08x) is %d, MuLaw.Class %d", Q, y, math.Float32bits(y), got, want)
			}
		}
		for _, x := range thr {
			k := orderedKey(x)
			for d := int64(-3); d <= 3; d++ {
				if y := fromOrderedKey(k + d); y >= -1 && y <= 1 {
					check(y)
				}
			}
		}
		rng := rand.New(rand.NewPCG(uint64(Q), 3))
		for i := 0; i < 200000; i++ {
			check(float32(2*rng.Float64() - 1))
		}
		for _, y := range []float32{-1.5, -1, float32(math.Copysign(0, -1)), 0, 1, 1.5} {
			check(y)
		}
		for q := 0; q < Q; q++ {
			y := tab[h.mu+q]
			if y != float32(mulaw.Centre(q, h.mu)) || int(tab[h.mu+Q+q]) != q || h.Class(float64(y)) != q {
				t.Fatalf("Q=%d: sampler table entry %d is (%v, class %v), want the bin centre of class %d", Q, q, y, tab[h.mu+Q+q], q)
			}
		}
	}
}

// ---- backends ----

var (
	gpuOnce sync.Once
	gpuBE   compute.Backend
	gpuErr  error
)

func gpuBackend(tb testing.TB) compute.Backend {
	tb.Helper()
	gpuOnce.Do(func() {
		be, err := cuda.New(cuda.Options{})
		if err != nil {
			gpuErr = err
			return
		}
		gpuBE = be
	})
	if gpuErr != nil {
		tb.Skipf("no CUDA GPU: %v", gpuErr)
	}
	return gpuBE
}

func TestDeviceLoss(t *testing.T)   { checkDeviceLoss(t, gpuBackend(t)) }
func TestDeviceBits(t *testing.T)   { checkDeviceBits(t, gpuBackend(t)) }
func TestDeviceSample(t *testing.T) { checkDeviceSample(t, gpuBackend(t)) }
func TestDeviceSeedRNG(t *testing.T) {
	checkDeviceSeedRNG(t, gpuBackend(t))
}

func TestCPUSimLoss(t *testing.T)    { checkDeviceLoss(t, simBackendFor(t)) }
func TestCPUSimBits(t *testing.T)    { checkDeviceBits(t, simBackendFor(t)) }
func TestCPUSimSample(t *testing.T)  { checkDeviceSample(t, simBackendFor(t)) }
func TestCPUSimSeedRNG(t *testing.T) { checkDeviceSeedRNG(t, simBackendFor(t)) }

func TestDeviceMuLawReencodes(t *testing.T) { checkDeviceMuLawReencodes(t, gpuBackend(t)) }
func TestCPUSimMuLawReencodes(t *testing.T) { checkDeviceMuLawReencodes(t, simBackendFor(t)) }

// ---- inputs ----

const (
	devB = 3
	devT = 2999 // B*T is not a multiple of the block
)

// devLogits returns [C][T] logits of realistic scale for h, and for mol the
// per-timestep component means and log-scales (targets near them reach the
// bin-mass branch).
func devLogits(h Head, T int, rng *rand.Rand) []float32 {
	C := h.Channels()
	z := make([]float32, C*T)
	for c := 0; c < C; c++ {
		for t := 0; t < T; t++ {
			var v float64
			switch h := h.(type) {
			case *AdaCat:
				v = 1.5 * rng.NormFloat64()
				if c >= h.k {
					v = 2 * rng.NormFloat64()
				}
			case *MoL:
				switch c / h.m {
				case 0:
					v = 1.5 * rng.NormFloat64()
				case 1:
					v = 0.9 * (2*rng.Float64() - 1)
				default:
					v = logScale(rng)
				}
			case *Gaussian:
				if c == 0 {
					v = 0.4 * rng.NormFloat64()
				} else {
					v = logScale(rng)
				}
			default:
				v = 2.5 * rng.NormFloat64()
			}
			z[c*T+t] = float32(v)
		}
	}
	return z
}

// logScale is a log-scale in [-7, 0], or one time in 20 in [-17, -15.5]
// (around the default log-scale-min -16, so the clamp is exercised).
func logScale(rng *rand.Rand) float64 {
	if rng.IntN(20) == 0 {
		return -17 + 1.5*rng.Float64()
	}
	return -7 + 7*rng.Float64()
}

// devTargets draws T targets for the [C][T] logits z: uniform amplitudes,
// class centres for the one-hot heads, points near the component means for
// mol and gaussian, and the edges -1, 1, +-0.9995 and 0.
func devTargets(h Head, z []float32, T int, rng *rand.Rand) []float32 {
	y := make([]float32, T)
	special := []float64{-1, 1, 0, -0.9995, 0.9995}
	for t := range y {
		v := 2*rng.Float64() - 1
		switch r := rng.IntN(10); {
		case r == 0:
			v = special[rng.IntN(len(special))]
		case r < 4:
			switch h := h.(type) {
			case *Categorical:
				v = -1 + (float64(rng.IntN(h.q))+0.5)*2/float64(h.q)
			case *MuLaw:
				v = mulaw.Expand((2*float64(rng.IntN(h.mu))+1)/float64(h.mu)-1, float64(h.mu))
			case *MoL:
				j := rng.IntN(h.m)
				mu, s := float64(z[(h.m+j)*T+t]), float64(z[(2*h.m+j)*T+t])
				v = clamp(mu+math.Exp(s)*rng.NormFloat64(), -1, 1)
			case *Gaussian:
				v = clamp(float64(z[t])+math.Exp(float64(z[T+t]))*rng.NormFloat64(), -1, 1)
			}
		}
		y[t] = float32(v)
	}
	return y
}

func devMask(T int, rng *rand.Rand) []float32 {
	m := make([]float32, T)
	for t := range m {
		switch r := rng.IntN(20); {
		case r < 3:
			m[t] = 0
		case r < 15:
			m[t] = 1
		default:
			m[t] = float32(2 * rng.Float64())
		}
	}
	return m
}

func newDevice(t testing.TB, be compute.Backend, spec string) (Head, *Device) {
	t.Helper()
	h, err := New(spec)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDevice(h, be)
	if err != nil {
		t.Fatalf("NewDevice(%s): %v", spec, err)
	}
	t.Cleanup(d.Free)
	if d.Head() != h {
		t.Fatal("Device.Head is not the head")
	}
	return h, d
}

// relErr is |got-want| over max(|want|, floor).
func relErr(got, want, floor float64) float64 {
	return math.Abs(got-want) / math.Max(math.Abs(want), floor)
}

const devTol = 1e-4

// devBatch draws B items of T timesteps: logits [B][C][T] and targets
// [B][T].
func devBatch(h Head, B, T int, rng *rand.Rand) (logits, targets []float32) {
	C := h.Channels()
	logits = make([]float32, 0, B*C*T)
	targets = make([]float32, 0, B*T)
	for b := 0; b < B; b++ {
		z := devLogits(h, T, rng)
		logits = append(logits, z...)
		targets = append(targets, devTargets(h, z, T, rng)...)
	}
	return logits, targets
}

// ---- checks ----

func checkDeviceLoss(t *testing.T, be compute.Backend) {
	for i, spec := range deviceSpecs {
		t.Run(strings.ReplaceAll(spec, " ", "_"), func(t *testing.T) {
			h, d := newDevice(t, be, spec)
			C := h.Channels()
			rng := rand.New(rand.NewPCG(7, uint64(i)))
			logits, targets := devBatch(h, devB, devT, rng)
			mask := devMask(devB*devT, rng)
			const scale = 0.37
			lb, tb, mb := computetest.BufferOf(be, logits), computetest.BufferOf(be, targets), computetest.BufferOf(be, mask)
			gb := be.Alloc(len(logits))
			defer func() {
				for _, b := range []compute.Buffer{lb, tb, mb, gb} {
					be.Free(b)
				}
			}()
			for _, masked := range []bool{true, false} {
				want := make([]float32, len(logits))
				wantSum := 0.0
				for b := 0; b < devB; b++ {
					var m []float32
					if masked {
						m = mask[b*devT : (b+1)*devT]
					}
					wantSum += h.Loss(logits[b*C*devT:(b+1)*C*devT], devT, devT, targets[b*devT:(b+1)*devT], m, want[b*C*devT:(b+1)*C*devT], scale)
				}
				nan := make([]float32, len(logits))
				for j := range nan {
					nan[j] = float32(math.NaN())
				}
				be.Upload(compute.V(gb), nan) // every element must be written
				mv := compute.View{}
				if masked {
					mv = compute.V(mb)
				}
				gotSum := d.Loss(compute.V(lb), devB, devT, compute.V(tb), mv, compute.V(gb), scale)
				if e := relErr(gotSum, wantSum, 1e-300); !(e <= 1e-6) {
					t.Errorf("masked=%v: loss sum %.12g, CPU %.12g (relative error %.2g)", masked, gotSum, wantSum, e)
				}
				got := computetest.Contents(be, gb)
				// Relative error per element, with a floor of 1e-9 of the
				// largest gradient (float64 rounding of a cancelling sum).
				floor := 0.0
				for _, v := range want {
					floor = math.Max(floor, math.Abs(float64(v)))
				}
				floor *= 1e-9
				worst, bad := 0.0, 0
				for j := range got {
					e := relErr(float64(got[j]), float64(want[j]), floor)
					if !(e <= devTol) {
						if bad++; bad <= 5 {
							b, c, tt := j/(C*devT), j/devT%C, j%devT
							t.Errorf("masked=%v: grad[b=%d][c=%d][t=%d] = %g, CPU %g (target %v, mask %v)", masked, b, c, tt, got[j], want[j], targets[b*devT+tt], mask[b*devT+tt])
						}
					}
					if e > worst || e != e {
						worst = e
					}
				}
				if bad > 0 {
					t.Errorf("masked=%v: %d of %d gradient elements differ from the CPU by more than %g", masked, bad, len(got), devTol)
				}
				t.Logf("masked=%v: loss %.10g (CPU %.10g), worst gradient relative error %.3g", masked, gotSum, wantSum, worst)
			}
		})
	}
}

func checkDeviceBits(t *testing.T, be compute.Backend) {
	for i, spec := range deviceSpecs {
		t.Run(strings.ReplaceAll(spec, " ", "_"), func(t *testing.T) {
			h, d := newDevice(t, be, spec)
			C := h.Channels()
			rng := rand.New(rand.NewPCG(8, uint64(i)))
			logits, targets := devBatch(h, devB, devT, rng)
			want := make([]float64, devB*devT)
			for b := 0; b < devB; b++ {
				h.Bits(logits[b*C*devT:(b+1)*C*devT], devT, devT, targets[b*devT:(b+1)*devT], want[b*devT:(b+1)*devT])
			}
			lb, tb := computetest.BufferOf(be, logits), computetest.BufferOf(be, targets)
			ob := be.Alloc(len(targets))
			defer func() {
				for _, b := range []compute.Buffer{lb, tb, ob} {
					be.Free(b)
				}
			}()
			d.Bits(compute.V(lb), devB, devT, compute.V(tb), compute.V(ob))
			got := computetest.Contents(be, ob)
			worst, bad := 0.0, 0
			for j := range got {
				// float32 output: relative 1e-4 with a floor of 0.1 bit.
				e := relErr(float64(got[j]), want[j], 0.1)
				if !(e <= devTol) {
					if bad++; bad <= 5 {
						t.Errorf("bits[%d] = %g, CPU %g (target %v)", j, got[j], want[j], targets[j])
					}
				}
				if e > worst || e != e {
					worst = e
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d bits differ from the CPU by more than %g", bad, len(got), devTol)
			}
			t.Logf("worst relative error %.3g", worst)
		})
	}
}

// sampleLogits is one timestep's logits for the sampling test.
func sampleLogits(h Head, rng *rand.Rand) []float32 {
	switch h := h.(type) {
	case *AdaCat:
		return f32(randLogits(rng, 2*h.k, 0.7))
	case *MoL:
		z := make([]float64, 3*h.m)
		for j := 0; j < h.m; j++ {
			z[j] = rng.NormFloat64()
			z[h.m+j] = 0.7 * (2*rng.Float64() - 1)
			z[2*h.m+j] = -3 + 1.5*rng.Float64()
		}
		return f32(z)
	case *Gaussian:
		return []float32{0.1, float32(math.Log(0.45))}
	default:
		return f32(randLogits(rng, h.Channels(), 1))
	}
}

// sampleCells returns the cell probabilities of h's sampler for logits z at
// temperature temp (computed independently, as sample_test.go: the
// temperature as the package doc defines it per head) and the cell of a
// sample.
func sampleCells(h Head, z []float32, temp float64) ([]float64, func(y float32) int) {
	const n = 40
	switch h := h.(type) {
	case *AdaCat:
		k := h.k
		return cellProbs(n, adacatCDFAt(z, k, temp)), equalCells(n)
	case *MoL:
		M := h.m
		pi := softmax64(scaled(f64(z[:M]), 1/temp))
		cdf := func(y float64) float64 {
			F := 0.0
			for j := 0; j < M; j++ {
				s := math.Exp(math.Max(float64(z[2*M+j]), h.logScaleMin)) * temp
				F += pi[j] / (1 + math.Exp(-(y-float64(z[M+j]))/s))
			}
			return F
		}
		return cellProbs(n, cdf), equalCells(n)
	case *Gaussian:
		mu, sd := float64(z[0]), math.Exp(math.Max(float64(z[1]), h.logScaleMin))*temp
		cdf := func(y float64) float64 { return 0.5 * math.Erfc(-(y-mu)/(sd*math.Sqrt2)) }
		return cellProbs(n, cdf), equalCells(n)
	case *Categorical:
		pc := softmax64(scaled(f64(z), 1/temp))
		p := make([]float64, 2*h.q) // half bins: uniform within each bin
		for i := range p {
			p[i] = pc[i/2] / 2
		}
		return p, equalCells(2 * h.q)
	case *MuLaw:
		reps := make([]float32, h.q)
		for q := range reps {
			reps[q] = float32(mulaw.Centre(q, h.mu))
		}
		return softmax64(scaled(f64(z), 1/temp)), func(y float32) int {
			i := sort.Search(h.q, func(i int) bool { return reps[i] >= y })
			if i == h.q || reps[i] != y {
				return -1
			}
			return i
		}
	}
	panic("no cells for " + h.Name())
}

// mergeCells joins adjacent cells until each expects at least 20 of n draws.
func mergeCells(p []float64, n int) (group []int, gp []float64) {
	group = make([]int, len(p))
	acc := 0.0
	for i, v := range p {
		group[i] = len(gp)
		acc += v
		if acc*float64(n) >= 20 {
			gp = append(gp, acc)
			acc = 0
		}
	}
	if acc > 0 || len(gp) == 0 {
		if len(gp) == 0 {
			gp = append(gp, acc)
		} else {
			gp[len(gp)-1] += acc // the short tail joins the last group
			for i := range group {
				group[i] = min(group[i], len(gp)-1)
			}
		}
	}
	return group, gp
}

// sampleBuffers makes the buffers of a Sample call for B utterances with
// the same step logits z: logits, RNG states, samples and encoded inputs
// (freed when the test ends).
func sampleBuffers(t *testing.T, be compute.Backend, h Head, z []float32, B int) (lb, rb, yb, eb compute.Buffer) {
	C, IC := h.Channels(), h.InputChannels()
	logits := make([]float32, B*C)
	for b := 0; b < B; b++ {
		copy(logits[b*C:], z)
	}
	lb, rb, yb, eb = computetest.BufferOf(be, logits), be.Alloc(2*B), be.Alloc(B), be.Alloc(B*IC)
	t.Cleanup(func() {
		for _, b := range []compute.Buffer{lb, rb, yb, eb} {
			be.Free(b)
		}
	})
	return lb, rb, yb, eb
}

// deviceSampleTemps are the temperatures checkDeviceSample draws at: the
// model's own distribution, a sharper and a flatter one.
var deviceSampleTemps = []float64{1, 0.6, 1.5}

func checkDeviceSample(t *testing.T, be compute.Backend) {
	for _, temp := range deviceSampleTemps {
		for i, spec := range deviceSpecs {
			t.Run(fmt.Sprintf("%s/t=%g", strings.ReplaceAll(spec, " ", "_"), temp), func(t *testing.T) {
				checkDeviceSampleAt(t, be, i, spec, temp)
			})
		}
	}
}

// checkDeviceSampleAt draws B samples at temperature temp from one head's
// Device and checks their encodings against EncodeInput and their
// distribution against sampleCells (chi-square).
func checkDeviceSampleAt(t *testing.T, be compute.Backend, i int, spec string, temp float64) {
	h, d := newDevice(t, be, spec)
	IC := h.InputChannels()
	const B = 100000
	rng := rand.New(rand.NewPCG(9, uint64(i)))
	z := sampleLogits(h, rng)
	lb, rb, yb, eb := sampleBuffers(t, be, h, z, B)
	d.SeedRNG(compute.V(rb), B, 12345)
	d.Sample(compute.V(lb), B, temp, compute.V(rb), compute.V(yb), compute.V(eb))
	y := computetest.Contents(be, yb)
	enc := computetest.Contents(be, eb)
	want := make([]float32, IC)
	for b := 0; b < B; b++ {
		if !(y[b] >= -1 && y[b] <= 1) {
			t.Fatalf("utterance %d: sample %v outside [-1,1]", b, y[b])
		}
		h.EncodeInput(y[b], want)
		for c := range want {
			if enc[b*IC+c] != want[c] {
				t.Fatalf("utterance %d: enc[%d] = %v, EncodeInput(%v) gives %v", b, c, enc[b*IC+c], y[b], want[c])
			}
		}
	}
	p, cell := sampleCells(h, z, temp)
	group, gp := mergeCells(p, B)
	counts := make([]int, len(gp))
	for b, v := range y {
		c := cell(v)
		if c < 0 {
			t.Fatalf("utterance %d: sample %v is not a class representative", b, v)
		}
		counts[group[c]]++
	}
	stat := chiSquare(counts, gp, B)
	limit := distuv.ChiSquared{K: float64(len(gp) - 1)}.Quantile(0.999)
	if stat > limit {
		t.Errorf("chi-square %.1f > %.1f (0.999 quantile, %d cells, %d draws): device samples do not follow the head's density", stat, limit, len(gp), B)
	} else {
		t.Logf("chi-square %.1f (limit %.1f, %d cells, %d draws)", stat, limit, len(gp), B)
	}
}

// checkDeviceMuLawReencodes: utterance q's logits put all mass on class q;
// the device sampler must return the class's representative and feed back
// the one-hot of class q itself, for every class.
func checkDeviceMuLawReencodes(t *testing.T, be compute.Backend) {
	for _, Q := range []int{3, 256} {
		h, d := newDevice(t, be, fmt.Sprintf("mulaw --bins %d", Q))
		m := h.(*MuLaw)
		logits := make([]float32, Q*Q)
		for q := 0; q < Q; q++ {
			logits[q*Q+q] = 200
		}
		lb, rb, yb, eb := computetest.BufferOf(be, logits), be.Alloc(2*Q), be.Alloc(Q), be.Alloc(Q*Q)
		d.SeedRNG(compute.V(rb), Q, 3)
		d.Sample(compute.V(lb), Q, 1, compute.V(rb), compute.V(yb), compute.V(eb))
		y, enc := computetest.Contents(be, yb), computetest.Contents(be, eb)
		for _, b := range []compute.Buffer{lb, rb, yb, eb} {
			be.Free(b)
		}
		for q := 0; q < Q; q++ {
			if y[q] != m.Representative(q) {
				t.Fatalf("Q=%d: class %d sampled as %v, want its representative %v", Q, q, y[q], m.Representative(q))
			}
			for c := 0; c < Q; c++ {
				if want := float32(0); c == q && enc[q*Q+c] != 1 || c != q && enc[q*Q+c] != want {
					t.Fatalf("Q=%d: class %d (y = %v) fed back as a one-hot with %v at class %d", Q, q, y[q], enc[q*Q+c], c)
				}
			}
		}
	}
}

func checkDeviceSeedRNG(t *testing.T, be compute.Backend) {
	const B = 64
	for i, spec := range deviceSpecs {
		t.Run(strings.ReplaceAll(spec, " ", "_"), func(t *testing.T) {
			h, d := newDevice(t, be, spec)
			rng := rand.New(rand.NewPCG(10, uint64(i)))
			z := sampleLogits(h, rng)
			lb, rb, yb, eb := sampleBuffers(t, be, h, z, B)
			draw := func() []float32 {
				d.Sample(compute.V(lb), B, 1, compute.V(rb), compute.V(yb), compute.V(eb))
				return computetest.Contents(be, yb)
			}
			seed := func(s uint64) []float32 {
				d.SeedRNG(compute.V(rb), B, s)
				return computetest.Contents(be, rb)
			}
			st := seed(1)
			seen := map[[2]uint32]bool{}
			for b := 0; b < B; b++ {
				k := [2]uint32{math.Float32bits(st[2*b]), math.Float32bits(st[2*b+1])}
				if seen[k] {
					t.Fatalf("utterances share the RNG state %08x%08x", k[1], k[0])
				}
				seen[k] = true
			}
			a1, a2 := draw(), draw()
			st2 := computetest.Contents(be, rb)
			for b := 0; b < B; b++ {
				if math.Float32bits(st2[2*b]) == math.Float32bits(st[2*b]) && math.Float32bits(st2[2*b+1]) == math.Float32bits(st[2*b+1]) {
					t.Fatalf("utterance %d: Sample did not advance its RNG state", b)
				}
			}
			seed(1)
			b1, b2 := draw(), draw()
			seed(2)
			c1 := draw()
			if !equalF32(a1, b1) || !equalF32(a2, b2) {
				t.Error("the same seed gave different draws")
			}
			if diff := countDiff(a1, c1); diff < 2 {
				t.Errorf("seeds 1 and 2 gave %d different draws of %d", diff, B)
			}
			if diff := countDiff(a1, a2); diff < 2 {
				t.Errorf("two successive draws differ in %d of %d utterances", diff, B)
			}
			if diff := distinct(a1); diff < 2 {
				t.Errorf("%d utterances with identical logits drew %d distinct values", B, diff)
			}
			// One utterance seeded at an offset (as the generator does) draws
			// what utterance 0 of a batch with that seed draws.
			d.SeedRNG(compute.V(rb).At(2*7), 1, 1)
			one := computetest.Contents(be, rb)
			if math.Float32bits(one[14]) != math.Float32bits(st[0]) || math.Float32bits(one[15]) != math.Float32bits(st[1]) {
				t.Error("SeedRNG of one utterance at an offset differs from utterance 0 of a batch")
			}
		})
	}
}

func equalF32(a, b []float32) bool {
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return len(a) == len(b)
}

func countDiff(a, b []float32) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func distinct(a []float32) int {
	m := map[float32]bool{}
	for _, v := range a {
		m[v] = true
	}
	return len(m)
}

// ---- the CPU simulator ----

var (
	simOnce sync.Once
	simBE   *cudasim.Backend
	simErr  error
)

// simBackendFor is the simulator backend shared by the TestCPUSim* tests
// (each head's module is compiled once); it skips without g++.
func simBackendFor(t *testing.T) *cudasim.Backend {
	t.Helper()
	simOnce.Do(func() {
		simBE, simErr = cudasim.New(cudasim.Options{CPU: cpu.Options{Threads: 1, BLAS: "gonum"}})
	})
	if errors.Is(simErr, cudasim.ErrNoCompiler) {
		t.Skip(simErr)
	}
	if simErr != nil {
		t.Fatal(simErr)
	}
	return simBE
}

// BenchmarkDeviceLoss times Device.Loss (kernel, reduction and the one
// download) at the reference training shape, 8 x 10240 timesteps, on a GPU.
func BenchmarkDeviceLoss(b *testing.B) {
	const B, T = 8, 10240
	for _, spec := range deviceSpecs {
		b.Run(strings.ReplaceAll(spec, " ", "_"), func(b *testing.B) {
			be := gpuBackend(b)
			h, d := newDevice(b, be, spec)
			rng := rand.New(rand.NewPCG(1, 2))
			logits, targets := devBatch(h, B, T, rng)
			lb, tb, gb := computetest.BufferOf(be, logits), computetest.BufferOf(be, targets), be.Alloc(len(logits))
			defer func() {
				for _, x := range []compute.Buffer{lb, tb, gb} {
					be.Free(x)
				}
			}()
			d.Loss(compute.V(lb), B, T, compute.V(tb), compute.View{}, compute.V(gb), 1)
			b.ResetTimer()
			for range b.N {
				d.Loss(compute.V(lb), B, T, compute.V(tb), compute.View{}, compute.V(gb), 1)
			}
		})
	}
}

// BenchmarkDeviceSample times one Device.Sample step (queued and synced)
// for 1 and 32 utterances on a GPU.
func BenchmarkDeviceSample(b *testing.B) {
	for _, spec := range deviceSpecs {
		for _, B := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/B=%d", strings.ReplaceAll(spec, " ", "_"), B), func(b *testing.B) {
				be := gpuBackend(b)
				h, d := newDevice(b, be, spec)
				rng := rand.New(rand.NewPCG(1, 3))
				var logits []float32
				for i := 0; i < B; i++ {
					logits = append(logits, sampleLogits(h, rng)...)
				}
				lb, rb, yb, eb := computetest.BufferOf(be, logits), be.Alloc(2*B), be.Alloc(B), be.Alloc(B*h.InputChannels())
				defer func() {
					for _, x := range []compute.Buffer{lb, rb, yb, eb} {
						be.Free(x)
					}
				}()
				d.SeedRNG(compute.V(rb), B, 1)
				b.ResetTimer()
				for range b.N {
					d.Sample(compute.V(lb), B, 1, compute.V(rb), compute.V(yb), compute.V(eb))
				}
				be.Sync()
			})
		}
	}
}
