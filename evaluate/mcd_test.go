package evaluate

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/melspec"
)

func abs1(x, y []float64) float64 { return math.Abs(x[0] - y[0]) }

func seq(v ...float64) [][]float64 {
	s := make([][]float64, len(v))
	for i, x := range v {
		s[i] = []float64{x}
	}
	return s
}

// Hand-computed: a=[0,1,2], b=[0,2] with |x-y| gives the accumulated table
// [[0,2],[1,1],[3,1]]: cost 1, and the diagonal-first backtrack from (2,1)
// goes to (1,0) then (0,0).
func TestDTWHandComputed(t *testing.T) {
	path, cost, err := DTW(seq(0, 1, 2), seq(0, 2), abs1)
	if err != nil {
		t.Fatal(err)
	}
	if cost != 1 {
		t.Errorf("cost %g, want 1", cost)
	}
	want := [][2]int{{0, 0}, {1, 0}, {2, 1}}
	if len(path) != len(want) {
		t.Fatalf("path %v, want %v", path, want)
	}
	for i := range want {
		if path[i] != want[i] {
			t.Fatalf("path %v, want %v", path, want)
		}
	}
	if _, _, err := DTW(nil, seq(1), abs1); err == nil {
		t.Error("empty sequence accepted")
	}
}

// A copy of a with frames held (time-stretched) aligns at zero cost, each
// frame of the stretched copy onto the frame it repeats.
func TestDTWRecoversKnownWarp(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	a := make([][]float64, 30)
	for i := range a {
		a[i] = []float64{rng.NormFloat64(), rng.NormFloat64(), rng.NormFloat64()}
	}
	var b [][]float64
	var src []int
	for i := range a {
		rep := 1 + i%3
		for r := 0; r < rep; r++ {
			b = append(b, a[i])
			src = append(src, i)
		}
	}
	path, cost, err := DTW(a, b, CepDistance)
	if err != nil {
		t.Fatal(err)
	}
	if cost != 0 {
		t.Errorf("cost %g, want 0", cost)
	}
	seen := make([]bool, len(b))
	for _, p := range path {
		if src[p[1]] != p[0] {
			t.Errorf("b[%d] (a copy of a[%d]) aligned with a[%d]", p[1], src[p[1]], p[0])
		}
		seen[p[1]] = true
	}
	for j, s := range seen {
		if !s {
			t.Errorf("b[%d] not on the path", j)
		}
	}
}

// bruteDTW is the minimum over every monotone path by plain recursion.
func bruteDTW(a, b [][]float64, i, j int) float64 {
	d := abs1(a[i], b[j])
	if i == 0 && j == 0 {
		return d
	}
	best := math.Inf(1)
	if i > 0 {
		best = math.Min(best, bruteDTW(a, b, i-1, j))
	}
	if j > 0 {
		best = math.Min(best, bruteDTW(a, b, i, j-1))
	}
	if i > 0 && j > 0 {
		best = math.Min(best, bruteDTW(a, b, i-1, j-1))
	}
	return d + best
}

func TestDTWMatchesExhaustiveSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for trial := 0; trial < 20; trial++ {
		a := make([][]float64, 1+rng.IntN(6))
		b := make([][]float64, 1+rng.IntN(6))
		for i := range a {
			a[i] = []float64{math.Round(rng.NormFloat64() * 4)}
		}
		for i := range b {
			b[i] = []float64{math.Round(rng.NormFloat64() * 4)}
		}
		path, cost, err := DTW(a, b, abs1)
		if err != nil {
			t.Fatal(err)
		}
		if want := bruteDTW(a, b, len(a)-1, len(b)-1); cost != want {
			t.Fatalf("cost %g, exhaustive %g", cost, want)
		}
		var sum float64 // the returned path really costs that
		for k, p := range path {
			sum += abs1(a[p[0]], b[p[1]])
			if k > 0 {
				di, dj := p[0]-path[k-1][0], p[1]-path[k-1][1]
				if di < 0 || dj < 0 || di > 1 || dj > 1 || di+dj == 0 {
					t.Fatalf("illegal step %v -> %v", path[k-1], p)
				}
			}
		}
		if sum != cost {
			t.Fatalf("path sums to %g, cost %g", sum, cost)
		}
	}
}

// A constant offset delta in c1 alone (c0 differing too, which MCD ignores)
// is (10/ln10) sqrt(2) delta dB; c2 ramps steeply so the alignment stays
// diagonal.
func TestMCDFramesKnownOffset(t *testing.T) {
	var a, b [][]float64
	for i := 0; i < 10; i++ {
		x := []float64{float64(i), 0.1, 10 * float64(i)}
		y := []float64{float64(i) + 5, 0.35, 10 * float64(i)}
		a, b = append(a, x), append(b, y)
	}
	got, err := MCDFrames(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if want := 10 / math.Ln10 * math.Sqrt(2*0.25*0.25); math.Abs(got-want) > 1e-12 {
		t.Errorf("MCD %g, want %g", got, want)
	}
}

// speechLike is a harmonic signal with a gliding pitch and a moving formant.
func speechLike(n int, rng *rand.Rand) []float32 {
	y := make([]float32, n)
	var ph float64
	for i := range y {
		tm := float64(i) / 22050
		f0 := 120 + 40*math.Sin(2*math.Pi*1.5*tm)
		ph += 2 * math.Pi * f0 / 22050
		var s float64
		for h := 1; h <= 30; h++ {
			fh := f0 * float64(h)
			formant := 700 + 500*math.Sin(2*math.Pi*2*tm)
			amp := math.Exp(-math.Pow((fh-formant)/400, 2)) + 0.05
			s += amp * math.Sin(float64(h)*ph)
		}
		y[i] = float32(0.1*s + 0.001*rng.NormFloat64())
	}
	return y
}

func TestMCDSelfZeroAndGrowsWithNoise(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	n := 22050
	if testing.Short() {
		n = 8000
	}
	ref := speechLike(n, rng)
	cfg := DefaultMCepConfig()
	self, err := MCD(ref, ref, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if self != 0 {
		t.Errorf("MCD of a signal against itself = %g, want 0", self)
	}
	noise := make([]float64, n)
	for i := range noise {
		noise[i] = rng.NormFloat64()
	}
	prev := 0.0
	for _, level := range []float64{0.003, 0.01, 0.03, 0.1, 0.3} {
		test := make([]float32, n)
		for i := range test {
			test[i] = ref[i] + float32(level*noise[i])
		}
		got, err := MCD(ref, test, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("noise %g: MCD %.3f dB", level, got)
		if !(got > prev) {
			t.Errorf("noise %g: MCD %g dB not above %g dB at the lower level", level, got, prev)
		}
		prev = got
	}
}

func TestLogMelL1(t *testing.T) {
	ex, err := melspec.NewExtractor(melspec.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(8, 8))
	ref := speechLike(6000, rng)
	if d, err := LogMelL1(ref, ref, ex); err != nil || d != 0 {
		t.Fatalf("self distance %g, %v; want 0", d, err)
	}
	// Scaling by 10 multiplies every mel magnitude by 10: +1 in log10 where
	// the 1e-10 floor is not reached (it is not for this signal).
	loud := make([]float32, len(ref))
	for i, v := range ref {
		loud[i] = 10 * v
	}
	d, err := LogMelL1(ref, loud, ex)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(d-1) > 1e-5 {
		t.Errorf("x10 gain: L1 %g, want 1", d)
	}
	if _, err := LogMelL1(nil, ref, ex); err == nil {
		t.Error("empty waveform accepted")
	}
}

// BenchmarkMCD5s is the MCD of 5 s of audio against a noisy copy (two
// mel-cepstral analyses and a 431 x 431 DTW).
func BenchmarkMCD5s(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	ref := speechLike(5*22050, rng)
	test := make([]float32, len(ref))
	for i, v := range ref {
		test[i] = v + float32(0.01*rng.NormFloat64())
	}
	cfg := DefaultMCepConfig()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := MCD(ref, test, cfg); err != nil {
			b.Fatal(err)
		}
	}
}
