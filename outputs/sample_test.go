package outputs

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/wavecat/wavecat/mulaw"

	"gonum.org/v1/gonum/stat/distuv"
)

// Sampling is checked with a chi-square goodness-of-fit test of N draws
// against the cell probabilities of the head's distribution, computed
// independently here. N = 400k gives the test power against a 2% density
// error: each test also checks that the same draws FAIL against the cell
// probabilities perturbed by +-2% (alternating cells, renormalised).
const sampleN = 400000

func chiSquare(counts []int, p []float64, n int) float64 {
	s := 0.0
	for i, c := range counts {
		e := p[i] * float64(n)
		s += (float64(c) - e) * (float64(c) - e) / e
	}
	return s
}

func perturb(p []float64, frac float64) []float64 {
	q := make([]float64, len(p))
	sum := 0.0
	for i, v := range p {
		q[i] = v * (1 + frac*float64(1-2*(i%2)))
		sum += q[i]
	}
	for i := range q {
		q[i] /= sum
	}
	return q
}

// checkSamples draws sampleN samples at temperature temp, bins them with
// cell() and runs both chi-square checks at the 0.999 quantile.
func checkSamples(t *testing.T, name string, h Head, logits []float32, temp float64, p []float64, cell func(y float32) int) {
	t.Helper()
	for i, v := range p {
		if v*sampleN < 20 {
			t.Fatalf("%s: cell %d expects only %.1f draws: reshape the test distribution", name, i, v*sampleN)
		}
	}
	rng := rand.New(rand.NewPCG(2026, 11))
	counts := make([]int, len(p))
	for i := 0; i < sampleN; i++ {
		y := h.Sample(logits, 1, temp, rng)
		if !(y >= -1 && y <= 1) {
			t.Fatalf("%s: sample %v outside [-1,1]", name, y)
		}
		counts[cell(y)]++
	}
	limit := distuv.ChiSquared{K: float64(len(p) - 1)}.Quantile(0.999)
	stat := chiSquare(counts, p, sampleN)
	if stat > limit {
		t.Errorf("%s: chi-square %.1f > %.1f (0.999 quantile, %d cells): samples do not follow the density", name, stat, limit, len(p))
	}
	if bad := chiSquare(counts, perturb(p, 0.02), sampleN); bad <= limit {
		t.Errorf("%s: chi-square against the 2%%-perturbed density is %.1f <= %.1f: the test has no power", name, bad, limit)
	} else {
		t.Logf("%s: chi-square %.1f, vs 2%%-perturbed %.1f (limit %.1f)", name, stat, bad, limit)
	}
}

// equalCells splits [-1,1] into n cells; the top edge y = 1 joins the last.
func equalCells(n int) func(y float32) int {
	return func(y float32) int { return min(int((float64(y)+1)/2*float64(n)), n-1) }
}

// cellProbs integrates a CDF over n equal cells of [-1,1]; mass below -1 and
// above 1 goes to the end cells (samplers clamp).
func cellProbs(n int, cdf func(y float64) float64) []float64 {
	p := make([]float64, n)
	for i := range p {
		lo, hi := cdf(-1+2*float64(i)/float64(n)), cdf(-1+2*float64(i+1)/float64(n))
		if i == 0 {
			lo = 0
		}
		if i == n-1 {
			hi = 1
		}
		p[i] = hi - lo
	}
	return p
}

// scaled returns z times c (tempered logits: c = 1/temperature).
func scaled(z []float64, c float64) []float64 {
	out := make([]float64, len(z))
	for i, v := range z {
		out[i] = v * c
	}
	return out
}

func softmax64(z []float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range z {
		mx = math.Max(mx, v)
	}
	p := make([]float64, len(z))
	s := 0.0
	for i, v := range z {
		p[i] = math.Exp(v - mx)
		s += p[i]
	}
	for i := range p {
		p[i] /= s
	}
	return p
}

func TestAdaCatSampling(t *testing.T) {
	const k = 6
	z := f32([]float64{0.5, -0.3, 1.1, 0.2, -1, 0.4, 0.9, -0.2, 0.3, 1.2, -0.4, 0.1})
	h, _ := NewAdaCat(k, 1e-4)
	checkSamples(t, "adacat", h, z, 1, cellProbs(20, adacatCDF(z, k)), equalCells(20))
}

// adacatCDF is the AdaCat CDF over y in [-1,1] for logits z (k widths,
// then k heights), computed independently of adacat.go:
// F(x) = sum_{j<i} h_j + (x-c_i) h_i/w_i on bin i.
func adacatCDF(z []float32, k int) func(y float64) float64 { return adacatCDFAt(z, k, 1) }

// adacatCDFAt is adacatCDF of the distribution sampled at temperature temp:
// heights softmax(phi/temp), widths unchanged.
func adacatCDFAt(z []float32, k int, temp float64) func(y float64) float64 {
	w, hh := softmax64(f64(z[:k])), softmax64(scaled(f64(z[k:]), 1/temp))
	return func(y float64) float64 {
		x, c, F := (y+1)/2, 0.0, 0.0
		for i := 0; i < k; i++ {
			if x <= c+w[i] || i == k-1 {
				return F + math.Min(x-c, w[i])*hh[i]/w[i]
			}
			c += w[i]
			F += hh[i]
		}
		return 1
	}
}

func TestGaussianSampling(t *testing.T) {
	h, _ := NewGaussian(-16)
	mu, ls := float32(0.1), float32(math.Log(0.45))
	sd := math.Exp(float64(ls))
	cdf := func(y float64) float64 { return 0.5 * math.Erfc(-(y-float64(mu))/(sd*math.Sqrt2)) }
	checkSamples(t, "gaussian", h, []float32{mu, ls}, 1, cellProbs(20, cdf), equalCells(20))
}

func TestMoLSampling(t *testing.T) {
	h, _ := NewMoL(3, 65536, -16)
	z := f32([]float64{0.2, -0.3, 0.5, -0.5, 0.1, 0.6, -2, -1.5, -2.5})
	pi := softmax64(f64(z[:3]))
	cdf := func(y float64) float64 {
		F := 0.0
		for j := 0; j < 3; j++ {
			F += pi[j] / (1 + math.Exp(-(y-float64(z[3+j]))/math.Exp(float64(z[6+j]))))
		}
		return F
	}
	checkSamples(t, "mol", h, z, 1, cellProbs(20, cdf), equalCells(20))
}

// Uniform categorical: 10 classes, cells are half-bins, so the test also sees
// whether draws are uniform inside each bin.
func TestCategoricalSampling(t *testing.T) {
	h, _ := NewCategorical(10)
	z := f32([]float64{0.1, 0.5, -0.2, 0.3, 0.9, 0.0, -0.4, 0.6, 0.2, -0.1})
	pc := softmax64(f64(z))
	p := make([]float64, 20)
	for i := range p {
		p[i] = pc[i/2] / 2
	}
	checkSamples(t, "categorical", h, z, 1, p, equalCells(20))
}

// Mu-law: every draw must be one of the Q class representatives (the bin
// centres), with class frequencies following the softmax.
func TestMuLawSampling(t *testing.T) {
	const Q = 32
	h, _ := NewMuLaw(Q)
	rng := rand.New(rand.NewPCG(1, 1))
	z := f32(randLogits(rng, Q, 0.4))
	reps := make([]float32, Q)
	for q := range reps {
		reps[q] = float32(mulaw.Centre(q, Q-1))
	}
	if !sort.SliceIsSorted(reps, func(i, j int) bool { return reps[i] < reps[j] }) || reps[0] <= -1 || reps[Q-2] >= 1 || reps[Q-1] != 1 {
		t.Fatalf("representatives not increasing inside (-1, 1), then 1: %v", reps)
	}
	cell := func(y float32) int {
		i := sort.Search(Q, func(i int) bool { return reps[i] >= y })
		if i == Q || reps[i] != y {
			panic(fmt.Sprintf("mu-law sample %v is not a class representative", y))
		}
		return i
	}
	checkSamples(t, "mulaw", h, z, 1, softmax64(f64(z)), cell)
}

// TestMuLawSampleReencodes: the amplitude the sampler returns for class q
// is encoded (EncodeInput, the one-hot fed back during synthesis) as class q
// again, for every class; the reference's lower bin edge fails this for
// about half of them.
func TestMuLawSampleReencodes(t *testing.T) {
	for _, Q := range []int{3, 32, 256, 1024} {
		h, _ := NewMuLaw(Q)
		enc := make([]float32, Q)
		for q := 0; q < Q; q++ {
			logits := make([]float32, Q)
			logits[q] = 200 // every other class has mass below exp(-200)
			y := h.Sample(logits, 1, 1, rand.New(rand.NewPCG(uint64(q), 1)))
			h.EncodeInput(y, enc)
			for c, v := range enc {
				if want := float32(0); c == q && v != 1 || c != q && v != want {
					t.Fatalf("Q=%d: class %d sampled as %v, which encodes as class %d", Q, q, y, h.Class(float64(y)))
				}
			}
		}
	}
}

// TestSampleTemperature: at temperatures other than 1 every head's draws
// follow the tempered distribution of the package doc (cell probabilities
// from sampleCells, written from the formulas), with the 2%-perturbation
// power check; and a temperature <= 0 is refused.
func TestSampleTemperature(t *testing.T) {
	for i, spec := range []string{"adacat --components 15", "mol --mixtures 3", "gaussian", "mulaw --bins 32", "categorical --bins 16"} {
		h, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		z := sampleLogits(h, rand.New(rand.NewPCG(77, uint64(i))))
		for _, temp := range []float64{0.5, 1.6} {
			p, cell := sampleCells(h, z, temp)
			group, gp := mergeCells(p, sampleN)
			checkSamples(t, fmt.Sprintf("%s at t=%g", spec, temp), h, z, temp, gp, func(y float32) int {
				c := cell(y)
				if c < 0 {
					panic(fmt.Sprintf("%s: sample %v is not a class representative", spec, y))
				}
				return group[c]
			})
		}
		for _, bad := range []float64{0, -1, math.NaN(), math.Inf(1)} {
			func() {
				defer func() {
					if recover() == nil {
						t.Errorf("%s: Sample at temperature %g did not panic", spec, bad)
					}
				}()
				h.Sample(z, 1, bad, rand.New(rand.NewPCG(1, 1)))
			}()
		}
	}
}
