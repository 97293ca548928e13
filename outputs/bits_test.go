package outputs

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/mulaw"
)

func f32(z []float64) []float32 {
	o := make([]float32, len(z))
	for i, v := range z {
		o[i] = float32(v)
	}
	return o
}

// bitsOne evaluates Head.Bits at one timestep (stride 1).
func bitsOne(h Head, z []float64, y float64) float64 {
	out := make([]float64, 1)
	h.Bits(f32(z), 1, 1, []float32{float32(y)}, out)
	return out[0]
}

var edgeTargets = []float64{-1, -0.999, -0.5, -1.0 / 3, 0, 1e-7, 0.25, 0.5, 0.9991, 1}

// Equal widths and heights: f = 1 on [0,1], so exactly 1 bit on [-1,1].
func TestAdaCatUniformIsOneBit(t *testing.T) {
	for _, k := range []int{1, 2, 7, 128} {
		h, _ := NewAdaCat(k, 1e-4)
		z := make([]float64, 2*k)
		for i := range z {
			z[i] = 3.25 // equal logits, not zero
		}
		for _, y := range edgeTargets {
			if b := bitsOne(h, z, y); math.Abs(b-1) > 1e-12 {
				t.Errorf("k=%d y=%g: %v bits, want 1", k, y, b)
			}
		}
	}
}

// Bits of AdaCat against an independent evaluation of the density.
func TestAdaCatBitsDensity(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const k = 6
	h, _ := NewAdaCat(k, 0.01)
	z := randLogits(rng, 2*k, 1.5)
	c := refEdges(f64(f32(z[:k])))
	hc := refEdges(f64(f32(z[k:])))
	for _, y := range edgeTargets {
		x := (y + 1) / 2
		i := 0
		for i < k-1 && c[i+1] < x {
			i++
		}
		want := -math.Log2((hc[i+1] - hc[i]) / (c[i+1] - c[i]) / 2)
		if b := bitsOne(h, z, y); math.Abs(b-want) > 1e-9 {
			t.Errorf("y=%g: %v bits, want %v (bin %d)", y, b, want, i)
		}
	}
}

// r32 rounds to float32, as the heads' inputs are.
func r32(v float64) float64 { return float64(float32(v)) }

func f64(z []float32) []float64 {
	o := make([]float64, len(z))
	for i, v := range z {
		o[i] = float64(v)
	}
	return o
}

// Uniform logits over Q=256 mu-law classes: p(y) = (1/256) * (mu/2) * J(y),
// bin width 2/mu in mu-law space, J(y) = (mu/ln(1+mu))/(1+mu|y|).
func TestMuLawUniformBits(t *testing.T) {
	h, _ := NewMuLaw(256)
	z := make([]float64, 256)
	mu := 255.0
	for _, y := range edgeTargets {
		y := r32(y) // Bits sees float32 targets
		want := -math.Log2(1.0 / 256 * mu / 2 * (mu / math.Log(1+mu)) / (1 + mu*math.Abs(y)))
		if b := bitsOne(h, z, y); math.Abs(b-want) > 1e-9 {
			t.Errorf("y=%g: %v bits, want %v", y, b, want)
		}
	}
	// The uniform-logit density integrates to 255/256 over [-1,1] (class 255
	// is the point y = 1): check with a fine midpoint rule.
	const n = 200000
	sum := 0.0
	for i := 0; i < n; i++ {
		y := -1 + (float64(i)+0.5)*2/n
		sum += math.Exp2(-bitsOne(h, z, y)) * 2 / n
	}
	if math.Abs(sum-255.0/256) > 1e-3 {
		t.Errorf("mu-law density integrates to %v, want 255/256", sum)
	}
}

func TestMuLawClassesMatchNnmnkwii(t *testing.T) {
	h, _ := NewMuLaw(256)
	// Hand values: mu=255, compand(0)=0 -> floor(127.5)=127; compand(1)=1 ->
	// 255; compand(-1)=-1 -> 0; y=0.5: ln(128.5)/ln(256)=0.875... -> floor(239.1)=239.
	for _, c := range []struct {
		y float64
		q int
	}{{0, 127}, {1, 255}, {-1, 0}, {0.5, 239}, {-0.5, 15}} {
		if q := h.Class(c.y); q != c.q {
			t.Errorf("quantize(%g) = %d, want %d", c.y, q, c.q)
		}
	}
	if y := mulaw.Dequantize(255, 255); math.Abs(y-1) > 1e-12 {
		t.Errorf("dequantize(255) = %v, want 1", y)
	}
	if y := mulaw.Dequantize(0, 255); math.Abs(y+1) > 1e-12 {
		t.Errorf("dequantize(0) = %v, want -1", y)
	}
}

func TestCategoricalUniformIsOneBit(t *testing.T) {
	for _, q := range []int{2, 10, 256} {
		h, _ := NewCategorical(q)
		z := make([]float64, q)
		for _, y := range edgeTargets {
			if b := bitsOne(h, z, y); math.Abs(b-1) > 1e-12 {
				t.Errorf("Q=%d y=%g: %v bits, want 1", q, y, b)
			}
		}
	}
	// Non-uniform: class 3 of 8 (y in [-0.25,0)) with logits 2 vs 0.
	h, _ := NewCategorical(8)
	z := make([]float64, 8)
	z[3] = 2
	p := math.Exp(2) / (math.Exp(2) + 7)
	if b, want := bitsOne(h, z, -0.1), -math.Log2(p*4); math.Abs(b-want) > 1e-12 {
		t.Errorf("%v bits, want %v", b, want)
	}
}

func TestGaussianBitsClosedForm(t *testing.T) {
	h, _ := NewGaussian(-16)
	for _, c := range [][3]float64{{0, 0, 0}, {0.1, -2, 0.3}, {-0.4, -5, 1}, {0.2, -30, 0.2}} {
		s := math.Max(r32(c[1]), -16)
		sd := math.Exp(s)
		want := -math.Log2(math.Exp(-0.5*math.Pow((r32(c[2])-r32(c[0]))/sd, 2)) / (sd * math.Sqrt(2*math.Pi)))
		if b := bitsOne(h, []float64{c[0], c[1]}, c[2]); math.Abs(b-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Errorf("%v: %v bits, want %v", c, b, want)
		}
	}
}

// One logistic component: P = sigma((y+d-m)/s) - sigma((y-d-m)/s), density
// P*(Q-1)/2; for a bin much narrower than the scale that is the logistic pdf.
func TestMoLOneComponentClosedForm(t *testing.T) {
	for _, q := range []int{256, 65536} {
		h, _ := NewMoL(1, q, -16)
		d := 1 / float64(q-1)
		for _, c := range [][3]float64{{0.1, -3, 0.3}, {-0.2, -1, 0.5}, {0, -6, 0.0001}} {
			m, s, y := r32(c[0]), math.Exp(r32(c[1])), r32(c[2])
			sg := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
			P := sg((y+d-m)/s) - sg((y-d-m)/s)
			want := -math.Log2(P * float64(q-1) / 2)
			if b := bitsOne(h, []float64{0, m, c[1]}, y); math.Abs(b-want) > 1e-7 {
				t.Errorf("Q=%d %v: %v bits, want %v", q, c, b, want)
			}
			if q == 65536 {
				u := (y - m) / s
				pdf := math.Exp(-u) / (s * math.Pow(1+math.Exp(-u), 2))
				if b := bitsOne(h, []float64{0, m, c[1]}, y); math.Abs(b+math.Log2(pdf)) > 1e-4 {
					t.Errorf("Q=%d %v: %v bits, logistic pdf gives %v", q, c, b, -math.Log2(pdf))
				}
			}
		}
		// Edge bins: y = -1 scores CDF(-1+d), y = 1 scores 1-CDF(1-d).
		m, ls := 0.9, -2.0
		s := math.Exp(ls)
		m32 := r32(m)
		sg := func(v float64) float64 { return 1 / (1 + math.Exp(-v)) }
		if b, want := bitsOne(h, []float64{0, m, ls}, 1), -math.Log2((1-sg((1-d-m32)/s))*float64(q-1)/2); math.Abs(b-want) > 1e-7 {
			t.Errorf("Q=%d y=1: %v bits, want %v", q, b, want)
		}
		if b, want := bitsOne(h, []float64{0, -m, ls}, -1), -math.Log2(sg((-1+d+m32)/s)*float64(q-1)/2); math.Abs(b-want) > 1e-7 {
			t.Errorf("Q=%d y=-1: %v bits, want %v", q, b, want)
		}
	}
}

// Plain AdaCat NLL equals (bits - 1) ln 2; Loss matches per-timestep steps,
// honours the mask and gradScale, and the parallel path matches the serial one.
func TestLossLayoutMaskAndParallel(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	heads := []string{"adacat --components 16 --lambda 0", "adacat --components 16 --lambda 0.01", "mol --mixtures 4", "gaussian", "mulaw --bins 32", "categorical --bins 32"}
	for _, spec := range heads {
		h, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		st := h.(stepper)
		C := h.Channels()
		for _, T := range []int{7, 5000} {
			stride := T + 3
			logits := make([]float32, C*stride)
			for i := range logits {
				logits[i] = float32(rng.NormFloat64())
			}
			if h.Name() == "mol" || h.Name() == "gaussian" {
				lsc := map[string]int{"mol": 8, "gaussian": 1}[h.Name()]
				for c := lsc; c < C; c++ {
					for t := 0; t < T; t++ {
						logits[c*stride+t] = float32(-3 + 0.5*rng.NormFloat64())
					}
				}
			}
			targets := make([]float32, T)
			mask := make([]float32, T)
			for i := range targets {
				targets[i] = float32(clamp(0.4*rng.NormFloat64(), -1, 1))
				mask[i] = float32(i % 3 % 2) // 0,1,0,0,1,0...
			}
			grad := make([]float32, C*stride)
			for i := range grad {
				grad[i] = 99
			}
			total := h.Loss(logits, stride, T, targets, mask, grad, 0.5)
			bits := make([]float64, T)
			h.Bits(logits, stride, T, targets, bits)
			z := make([]float64, C)
			g := make([]float64, C)
			s := make([]float64, st.scratchLen())
			want := 0.0
			for ti := 0; ti < T; ti++ {
				for c := 0; c < C; c++ {
					z[c] = float64(logits[c*stride+ti])
				}
				l := st.lossStep(z, float64(targets[ti]), g, s)
				if spec == heads[0] && math.Abs(l-(bits[ti]-1)*math.Ln2) > 1e-9 {
					t.Fatalf("%s t=%d: plain loss %v vs (bits-1) ln2 %v", spec, ti, l, (bits[ti]-1)*math.Ln2)
				}
				if want := -st.logDensity(z, float64(targets[ti]), s) / math.Ln2; bits[ti] != want {
					t.Fatalf("%s t=%d: bits %v, step gives %v", spec, ti, bits[ti], want)
				}
				for c := 0; c < C; c++ {
					wg := float32(g[c] * 0.5 * float64(mask[ti]))
					if got := grad[c*stride+ti]; got != wg {
						t.Fatalf("%s T=%d t=%d c=%d: grad %v, want %v", spec, T, ti, c, got, wg)
					}
				}
				want += float64(mask[ti]) * l
			}
			if math.Abs(total-want) > 1e-9*math.Max(1, math.Abs(want)) {
				t.Errorf("%s T=%d: Loss %v, per-step sum %v", spec, T, total, want)
			}
			for c := 0; c < C; c++ {
				for ti := T; ti < stride; ti++ {
					if grad[c*stride+ti] != 99 {
						t.Fatalf("%s: Loss wrote past T in the stride padding", spec)
					}
				}
			}
		}
	}
}

// Logits of +-1e4, targets on 0, 1 and edges: everything finite.
func TestExtremeLogitsFinite(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	specs := []string{"adacat --components 16 --lambda 0", "adacat --components 16 --lambda 1e-4", "adacat --components 16 --lambda 0.6", "adacat --components 2 --lambda 0.05", "mol", "mol --levels 256", "gaussian", "mulaw", "categorical"}
	for _, spec := range specs {
		h, _ := New(spec)
		C := h.Channels()
		for trial := 0; trial < 20; trial++ {
			z := make([]float64, C)
			for i := range z {
				z[i] = []float64{1e4, -1e4, 0, 1e4 * rng.Float64()}[rng.IntN(4)]
			}
			ys := append([]float64(nil), edgeTargets...)
			if h.Name() == "adacat" {
				for _, c := range refEdges(z[:C/2]) {
					ys = append(ys, float64(float32(2*c-1)))
				}
			}
			for _, y := range ys {
				grad := make([]float32, C)
				l := h.Loss(f32(z), 1, 1, []float32{float32(y)}, nil, grad, 1)
				b := bitsOne(h, z, y)
				if math.IsNaN(l) || math.IsInf(l, 0) || math.IsNaN(b) || math.IsInf(b, 0) {
					t.Fatalf("%s z=%v y=%g: loss %v bits %v", spec, z, y, l, b)
				}
				for c, v := range grad {
					if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
						t.Fatalf("%s z=%v y=%g: grad[%d] = %v", spec, z, y, c, v)
					}
				}
			}
			s := h.Sample(f32(z), 1, 1, rng)
			if !(s >= -1 && s <= 1) {
				t.Fatalf("%s: sample %v outside [-1,1]", spec, s)
			}
		}
	}
}

func TestNewParsing(t *testing.T) {
	for _, c := range []struct{ in, spec string }{
		{"adacat", "adacat --components 128 --lambda 0.0001"},
		{"adacat --components 15 --lambda=1e-4", "adacat --components 15 --lambda 0.0001"},
		{"mol", "mol --mixtures 10 --levels 65536 --log-scale-min -16"},
		{"mol --log-scale-min -7 --mixtures 3", "mol --mixtures 3 --levels 65536 --log-scale-min -7"},
		{"gaussian", "gaussian --log-scale-min -16"},
		{"mulaw --bins 256", "mulaw --bins 256"},
		{"  categorical   --bins 64 ", "categorical --bins 64"},
	} {
		h, err := New(c.in)
		if err != nil {
			t.Fatalf("New(%q): %v", c.in, err)
		}
		if h.Spec() != c.spec {
			t.Errorf("New(%q).Spec() = %q, want %q", c.in, h.Spec(), c.spec)
		}
		h2, err := New(h.Spec())
		if err != nil || h2.Spec() != h.Spec() {
			t.Errorf("New(Spec()) round trip of %q: %v %v", h.Spec(), h2, err)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"softmax", "valid heads: adacat, categorical, gaussian, mol, mulaw"},
		{"adacat --k 3", "unknown option --k for head adacat (valid options: --components --lambda)"},
		{"adacat --components", "has no value"},
		{"adacat --components 2.5", "not an integer"},
		{"adacat --components 0", "--components must be >= 1"},
		{"adacat --lambda -1", "--lambda must be"},
		{"adacat --lambda nan", "not a finite number"},
		{"adacat components 3", "expected an option"},
		{"mulaw --bins 3 --bins 4", "given twice"},
		{"mol --levels 1", "--levels must be >= 2"},
		{"categorical --bins 1", "--bins must be >= 2"},
	} {
		_, err := New(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q) error %v, want it to mention %q", c.in, err, c.want)
		}
	}
	if n := Names(); strings.Join(n, " ") != "adacat categorical gaussian mol mulaw" {
		t.Errorf("Names() = %v", n)
	}
}

func TestEncodeInput(t *testing.T) {
	mu, _ := NewMuLaw(256)
	dst := make([]float32, 256)
	dst[3] = 5
	mu.EncodeInput(0.5, dst)
	for i, v := range dst {
		if want := float32(map[bool]float64{true: 1}[i == 239]); v != want {
			t.Fatalf("mulaw one-hot[%d] = %v, want %v", i, v, want)
		}
	}
	cat, _ := NewCategorical(4)
	d4 := make([]float32, 4)
	cat.EncodeInput(1, d4)
	if d4[3] != 1 || d4[0]+d4[1]+d4[2] != 0 {
		t.Errorf("categorical one-hot of 1 = %v", d4)
	}
	a, _ := NewAdaCat(4, 0)
	d1 := []float32{0}
	a.EncodeInput(-0.25, d1)
	if d1[0] != -0.25 {
		t.Errorf("adacat input %v", d1)
	}
}

// Heads hold no mutable state: concurrent Loss/Bits/Sample calls on disjoint
// buffers give the same results as serial ones (run with -race to check).
func TestConcurrentCalls(t *testing.T) {
	h, _ := New("adacat --components 32 --lambda 0.01")
	const T, G = 3000, 4
	rng := rand.New(rand.NewPCG(5, 5))
	logits := make([][]float32, G)
	targets := make([][]float32, G)
	want := make([]float64, G)
	for i := range logits {
		logits[i] = f32(randLogits(rng, 64*T, 1))
		targets[i] = f32(randLogits(rng, T, 0.3))
		want[i] = h.Loss(logits[i], T, T, targets[i], nil, make([]float32, 64*T), 1)
	}
	got := make([]float64, G)
	done := make(chan int)
	for i := 0; i < G; i++ {
		go func() {
			grad := make([]float32, 64*T)
			bits := make([]float64, T)
			got[i] = h.Loss(logits[i], T, T, targets[i], nil, grad, 1)
			h.Bits(logits[i], T, T, targets[i], bits)
			h.Sample(logits[i], T, 1, rand.New(rand.NewPCG(uint64(i), 0)))
			done <- i
		}()
	}
	for i := 0; i < G; i++ {
		<-done
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("goroutine %d: loss %v, serial %v", i, got[i], want[i])
		}
	}
}
