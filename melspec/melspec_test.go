package melspec

import (
	"math"
	"math/cmplx"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestMelScaleHandValues(t *testing.T) {
	// Slaney: 200/3 Hz per mel below 1 kHz (1 kHz = 15 mel), then 27 mels
	// per factor 6.4.
	cases := []struct{ hz, mel float64 }{
		{0, 0}, {200.0 / 3, 1}, {500, 7.5}, {1000, 15}, {6400, 42}, {40960, 69},
	}
	for _, c := range cases {
		if got := HzToMel(c.hz); math.Abs(got-c.mel) > 1e-12 {
			t.Errorf("HzToMel(%v) = %v, want %v", c.hz, got, c.mel)
		}
		if got := MelToHz(c.mel); math.Abs(got-c.hz) > 1e-9*math.Max(1, c.hz) {
			t.Errorf("MelToHz(%v) = %v, want %v", c.mel, got, c.hz)
		}
	}
}

func TestFrames(t *testing.T) {
	c := DefaultConfig()
	for _, tc := range []struct{ n, want int }{{0, 0}, {1, 1}, {255, 1}, {256, 2}, {22050, 87}} {
		if got := c.Frames(tc.n); got != tc.want {
			t.Errorf("Frames(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

// A one-band filterbank worked by hand: sr 8, n_fft 8 gives bins at 0..4 Hz;
// fmin 0, fmax 4 (all below 1 kHz, linear mel) puts the edges at 0, 2, 4 Hz;
// the triangle is 0, .5, 1, .5, 0 and the Slaney factor 2/(4-0) halves it.
func TestFilterbankHandValues(t *testing.T) {
	c := Config{SampleRate: 8, NFFT: 8, Hop: 2, WinLength: 8, NMels: 1, FMin: 0, FMax: 4}
	want := []float32{0, 0.25, 0.5, 0.25, 0}
	got := Filterbank(c)
	for i := range want {
		if math.Abs(float64(got[i]-want[i])) > 1e-7 {
			t.Fatalf("Filterbank = %v, want %v", got, want)
		}
	}
}

// Slaney normalisation gives every triangle unit area in Hz; for bands much
// wider than a bin the Riemann sum over bins must be close to 1.
func TestFilterbankArea(t *testing.T) {
	c := DefaultConfig()
	fb := Filterbank(c)
	df := float64(c.SampleRate) / float64(c.NFFT)
	nb := c.Bins()
	for m := 0; m < c.NMels; m++ {
		lo, hi := MelToHz(HzToMel(c.FMin)+float64(m)*(HzToMel(c.FMax)-HzToMel(c.FMin))/float64(c.NMels+1)), 0.0
		hi = MelToHz(HzToMel(c.FMin) + float64(m+2)*(HzToMel(c.FMax)-HzToMel(c.FMin))/float64(c.NMels+1))
		var area float64
		for k := 0; k < nb; k++ {
			v := float64(fb[m*nb+k])
			if v < 0 {
				t.Fatalf("negative weight at band %d bin %d", m, k)
			}
			f := float64(k) * df
			if v > 0 && (f <= lo || f >= hi) {
				t.Fatalf("band %d has weight at %v Hz outside (%v, %v)", m, f, lo, hi)
			}
			area += v * df
		}
		if hi-lo > 20*df && math.Abs(area-1) > 0.02 {
			t.Errorf("band %d (%.0f-%.0f Hz) area %v, want ~1", m, lo, hi, area)
		}
	}
}

// naivePad builds the reflect-padded signal the way numpy.pad does it:
// repeatedly mirror the current array about its end samples.
func naivePad(y []float64, p int) []float64 {
	out := append([]float64(nil), y...)
	left, right := p, p
	for left > 0 || right > 0 {
		n := len(out)
		if n == 1 {
			for ; left > 0; left-- {
				out = append([]float64{out[0]}, out...)
			}
			for ; right > 0; right-- {
				out = append(out, out[len(out)-1])
			}
			break
		}
		l := min(left, n-1)
		r := min(right, n-1)
		var pre []float64
		for k := l; k >= 1; k-- {
			pre = append(pre, out[k])
		}
		var post []float64
		for k := 1; k <= r; k++ {
			post = append(post, out[n-1-k])
		}
		out = append(append(pre, out...), post...)
		left -= l
		right -= r
	}
	return out
}

// naiveLogMel is an O(n^2) DFT version written from the definitions.
func naiveLogMel(y []float32, c Config) []float64 {
	yd := make([]float64, len(y))
	for i, v := range y {
		yd[i] = float64(v)
	}
	padded := naivePad(yd, c.NFFT/2)
	win := make([]float64, c.NFFT)
	off := (c.NFFT - c.WinLength) / 2
	for k := 0; k < c.WinLength; k++ {
		win[off+k] = math.Pow(math.Sin(math.Pi*float64(k)/float64(c.WinLength)), 2) // = periodic Hann
	}
	fb := Filterbank(c)
	nb := c.Bins()
	frames := 1 + (len(padded)-c.NFFT)/c.Hop
	out := make([]float64, 0, frames*c.NMels)
	for t := 0; t < frames; t++ {
		mag := make([]float64, nb)
		for k := 0; k < nb; k++ {
			var s complex128
			for j := 0; j < c.NFFT; j++ {
				s += complex(win[j]*padded[t*c.Hop+j], 0) * cmplx.Exp(complex(0, -2*math.Pi*float64(j*k)/float64(c.NFFT)))
			}
			mag[k] = cmplx.Abs(s)
		}
		for m := 0; m < c.NMels; m++ {
			var acc float64
			for k := 0; k < nb; k++ {
				acc += float64(fb[m*nb+k]) * mag[k]
			}
			out = append(out, math.Log10(math.Max(acc, 1e-10)))
		}
	}
	return out
}

func TestComputeMatchesNaiveDFT(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	c := Config{SampleRate: 16000, NFFT: 32, Hop: 7, WinLength: 20, NMels: 6, FMin: 300, FMax: 8000}
	e, err := NewExtractor(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 2, 5, 15, 16, 17, 100, 333} {
		y := make([]float32, n)
		for i := range y {
			y[i] = float32(r.NormFloat64())
		}
		got, frames := e.Compute(y)
		want := naiveLogMel(y, c)
		if frames != c.Frames(n) || len(got) != len(want) {
			t.Fatalf("n=%d: %d frames (%d values), naive has %d values", n, frames, len(got), len(want))
		}
		for i := range got {
			if math.Abs(float64(got[i])-want[i]) > 2e-6 {
				t.Fatalf("n=%d: value %d: %v, naive DFT %v", n, i, got[i], want[i])
			}
		}
	}
	if mel, frames := e.Compute(nil); mel != nil || frames != 0 {
		t.Errorf("empty input gave %d frames", frames)
	}
}

// A sine at a bin-centre frequency must put its energy in the mel bands
// whose triangles cover that frequency.
func TestSinePeakBand(t *testing.T) {
	c := DefaultConfig()
	e, _ := NewExtractor(c)
	k := 100 // bin 100 = 2153.3 Hz
	f := float64(k) * float64(c.SampleRate) / float64(c.NFFT)
	y := make([]float32, c.SampleRate)
	for i := range y {
		y[i] = float32(0.5 * math.Sin(2*math.Pi*f*float64(i)/float64(c.SampleRate)))
	}
	mel, frames := e.Compute(y)
	row := mel[(frames/2)*c.NMels : (frames/2+1)*c.NMels]
	best := 0
	for m := range row {
		if row[m] > row[best] {
			best = m
		}
	}
	fb := e.Filterbank()
	nb := c.Bins()
	for m := 0; m < c.NMels; m++ {
		if fb[m*nb+k] > fb[best*nb+k] {
			t.Fatalf("sine at %.1f Hz peaks in band %d, but band %d weights that bin more", f, best, m)
		}
	}
}

func TestComputeIntoNoAllocAndConcurrent(t *testing.T) {
	c := DefaultConfig()
	e, _ := NewExtractor(c)
	r := rand.New(rand.NewPCG(8, 9))
	y := make([]float32, 20000)
	for i := range y {
		y[i] = float32(r.NormFloat64() * 0.1)
	}
	dst := make([]float32, c.Frames(len(y))*c.NMels)
	if a := testing.AllocsPerRun(3, func() { e.ComputeInto(dst, y) }); a != 0 {
		t.Errorf("ComputeInto allocates %v times per call", a)
	}
	var wg sync.WaitGroup
	results := make([][]float32, 4)
	for g := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			eg, _ := NewExtractor(c)
			results[g], _ = eg.Compute(y)
		}()
	}
	wg.Wait()
	for g, res := range results {
		for i := range res {
			if res[i] != dst[i] {
				t.Fatalf("goroutine %d differs at %d", g, i)
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("short dst did not panic")
		}
	}()
	e.ComputeInto(dst[:10], y)
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []func(*Config){
		func(c *Config) { c.SampleRate = 0 },
		func(c *Config) { c.NFFT = 1 },
		func(c *Config) { c.Hop = 0 },
		func(c *Config) { c.WinLength = 2000 },
		func(c *Config) { c.NMels = 0 },
		func(c *Config) { c.FMax = 20000 },
		func(c *Config) { c.FMin = 8000 },
	}
	for i, f := range bad {
		c := DefaultConfig()
		f(&c)
		if _, err := NewExtractor(c); err == nil {
			t.Errorf("bad config %d accepted: %+v", i, c)
		}
	}
}

// Hand case: 10000 zeros with 0.5 in [4000, 5000). Centred frames of 2048
// with hop 512 span [512t-1024, 512t+1024); frames 6..11 touch the burst and
// are at most ~31 dB below the loudest, the rest are digital silence. So
// start = 6*512 = 3072 and end = 12*512 = 6144.
func TestTrimHandCase(t *testing.T) {
	y := make([]float32, 10000)
	for i := 4000; i < 5000; i++ {
		y[i] = 0.5
	}
	for _, pad := range []PadMode{PadConstant, PadReflect} {
		c := DefaultTrimConfig()
		c.Pad = pad
		kept, s, e, err := Trim(y, c)
		if err != nil {
			t.Fatal(err)
		}
		if s != 3072 || e != 6144 || len(kept) != e-s {
			t.Errorf("pad %d: Trim = [%d, %d), want [3072, 6144)", pad, s, e)
		}
	}
	// A single-sample click c gives frame RMS c/sqrt(2048) against the
	// loudest frame's 0.5*sqrt(1000/2048) = 0.349: c = 0.01 is 64 dB down
	// (silence), c = 0.1 is 44 dB down and keeps frames 0..2 (those that
	// contain sample 100), so the start moves to 0.
	y[100] = 0.01
	if _, s, _, _ := Trim(y, DefaultTrimConfig()); s != 3072 {
		t.Errorf("a 64 dB-down click moved the start to %d", s)
	}
	y[100] = 0.1
	if _, s, _, _ := Trim(y, DefaultTrimConfig()); s != 0 {
		t.Errorf("a 44 dB-down click should move the start to 0, got %d", s)
	}
}

func TestTrimEdgeCases(t *testing.T) {
	// librosa keeps an all-zero signal whole: each frame is 0 dB relative
	// to the (zero) loudest frame.
	z := make([]float32, 3000)
	if kept, s, e, _ := Trim(z, DefaultTrimConfig()); s != 0 || e != 3000 || len(kept) != 3000 {
		t.Errorf("all-zero: [%d, %d)", s, e)
	}
	if kept, s, e, _ := Trim(nil, DefaultTrimConfig()); len(kept) != 0 || s != 0 || e != 0 {
		t.Errorf("empty: [%d, %d)", s, e)
	}
	c := DefaultTrimConfig()
	c.TopDB = 0
	if kept, _, _, _ := Trim([]float32{1, 2, 3}, c); len(kept) != 0 {
		t.Errorf("top_db 0 should trim everything, kept %d", len(kept))
	}
	c = DefaultTrimConfig()
	c.HopLength = 0
	if _, _, _, err := Trim(z, c); err == nil {
		t.Error("hop 0 accepted")
	}
}

func TestFrameRMSHand(t *testing.T) {
	// frame length 4, hop 2, constant pad 2: frames over
	// [0 0 1 1] [1 1 1 1] [1 1 0 0] for y = 1 1 1 1.
	got := FrameRMS([]float32{1, 1, 1, 1}, 4, 2, PadConstant)
	want := []float64{math.Sqrt(0.5), 1, math.Sqrt(0.5)}
	if len(got) != len(want) {
		t.Fatalf("FrameRMS = %v, want %v", got, want)
	}
	for i := range want {
		if math.Abs(got[i]-want[i]) > 1e-15 {
			t.Fatalf("FrameRMS = %v, want %v", got, want)
		}
	}
	// reflect: y = 1 2 3 -> padded 3 2 | 1 2 3 | 2 1, frames [3 2 1 2] [1 2 3 2]
	got = FrameRMS([]float32{1, 2, 3}, 4, 2, PadReflect)
	want = []float64{math.Sqrt(18.0 / 4), math.Sqrt(18.0 / 4)}
	if len(got) != 2 || math.Abs(got[0]-want[0]) > 1e-15 || math.Abs(got[1]-want[1]) > 1e-15 {
		t.Fatalf("reflect FrameRMS = %v, want %v", got, want)
	}
}

func TestHighPassDesign(t *testing.T) {
	h, err := HighPassFIR(HighPassTaps, HighPassCutoff, 22050)
	if err != nil {
		t.Fatal(err)
	}
	resp := func(f float64) float64 { // |H(e^{jw})| at f Hz
		var re, im float64
		for n, v := range h {
			w := 2 * math.Pi * f / 22050 * float64(n)
			re += v * math.Cos(w)
			im -= v * math.Sin(w)
		}
		return math.Hypot(re, im)
	}
	for i := range h {
		if math.Abs(h[i]-h[len(h)-1-i]) > 1e-16 {
			t.Fatalf("taps not symmetric at %d", i)
		}
	}
	if g := resp(11025); math.Abs(g-1) > 1e-12 {
		t.Errorf("gain at Nyquist %v, want 1", g)
	}
	// 255 Hamming taps give a ~290 Hz transition band, so the recipe's
	// "70 Hz high-pass" only attenuates DC to 0.261 (-11.7 dB; scipy.signal.freqz
	// of firwin(255, 70, pass_zero=False, fs=22050) agrees). Reproduced as is.
	if g := resp(0); math.Abs(g-0.2609) > 1e-3 {
		t.Errorf("DC gain %v, want 0.2609", g)
	}
	if g := resp(300); math.Abs(g-1) > 0.005 {
		t.Errorf("gain at 300 Hz %v, want ~1", g)
	}
	if g := resp(70); math.Abs(g-0.5) > 0.05 {
		t.Errorf("gain at the 70 Hz cutoff %v, want ~0.5 (-6 dB)", g)
	}
	if g := resp(1000); math.Abs(g-1) > 0.01 {
		t.Errorf("gain at 1 kHz %v, want ~1", g)
	}
	if _, err := HighPassFIR(254, 70, 22050); err == nil {
		t.Error("even tap count accepted")
	}
	if _, err := HighPassFIR(255, 20000, 22050); err == nil {
		t.Error("cutoff above Nyquist accepted")
	}
}

func TestFIRFilterHand(t *testing.T) {
	dst := make([]float32, 5)
	FIRFilter(dst, []float32{1, 0, 0, 1, 2}, []float64{1, 2, 3})
	want := []float32{1, 2, 3, 1, 4}
	for i := range want {
		if dst[i] != want[i] {
			t.Fatalf("FIRFilter = %v, want %v", dst, want)
		}
	}
	inplace := []float32{1, 0, 0, 1, 2}
	FIRFilter(inplace, inplace, []float64{1, 2, 3})
	for i := range want {
		if inplace[i] != want[i] {
			t.Fatalf("in-place FIRFilter = %v, want %v", inplace, want)
		}
	}
}

func TestPreEmphasis(t *testing.T) {
	x := []float32{1, 1, 1, -1}
	y := make([]float32, 4)
	PreEmphasis(y, x, 0.85)
	want := []float64{1, 0.15, 0.15, -1.85}
	for i := range want {
		if math.Abs(float64(y[i])-want[i]) > 1e-7 {
			t.Fatalf("PreEmphasis = %v, want %v", y, want)
		}
	}
	r := rand.New(rand.NewPCG(10, 11))
	sig := make([]float32, 50000)
	for i := range sig {
		sig[i] = float32(r.Float64()*2 - 1)
	}
	work := append([]float32(nil), sig...)
	PreEmphasis(work, work, PreEmphCoef) // in place
	DeEmphasis(work, work, PreEmphCoef)
	for i := range sig {
		if math.Abs(float64(work[i]-sig[i])) > 1e-6 {
			t.Fatalf("DeEmphasis(PreEmphasis(x)) differs by %v at %d", work[i]-sig[i], i)
		}
	}
	Scale(work, work, Gain)
	if work[7] != Gain*sig[7] && math.Abs(float64(work[7]-Gain*sig[7])) > 1e-7 {
		t.Errorf("Scale: %v, want %v", work[7], Gain*sig[7])
	}
}

func TestStats(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 13))
	const dim = 5
	var all [][]float32
	whole := NewStats(dim)
	a, b := NewStats(dim), NewStats(dim)
	for i := range 20 {
		frames := 1 + r.IntN(300)
		x := make([]float32, frames*dim)
		for j := range x {
			d := j % dim
			x[j] = float32(float64(d)*10 - 7 + float64(d+1)*r.NormFloat64())
			if d == 4 {
				x[j] = 3 // constant dimension
			}
		}
		all = append(all, x)
		if err := whole.Add(x); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			a.Add(x)
		} else {
			b.Add(x)
		}
	}
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	// two-pass float64 reference
	var n float64
	mean := make([]float64, dim)
	for _, x := range all {
		for j, v := range x {
			mean[j%dim] += float64(v)
		}
		n += float64(len(x) / dim)
	}
	for d := range mean {
		mean[d] /= n
	}
	vr := make([]float64, dim)
	for _, x := range all {
		for j, v := range x {
			dv := float64(v) - mean[j%dim]
			vr[j%dim] += dv * dv
		}
	}
	for _, s := range []*Stats{whole, a} {
		if float64(s.Count) != n {
			t.Fatalf("count %d, want %v", s.Count, n)
		}
		m, sd := s.Mean(), s.Std()
		for d := 0; d < dim; d++ {
			if math.Abs(m[d]-mean[d]) > 1e-10 || math.Abs(sd[d]-math.Sqrt(vr[d]/n)) > 1e-10 {
				t.Fatalf("dim %d: mean %v std %v, want %v %v", d, m[d], sd[d], mean[d], math.Sqrt(vr[d]/n))
			}
		}
	}
	norm, err := whole.Normalizer(DefaultMinStd)
	if err != nil {
		t.Fatal(err)
	}
	if norm.Std[4] != 1 {
		t.Errorf("constant dimension std %v, want 1", norm.Std[4])
	}
	path := filepath.Join(t.TempDir(), "stats.json")
	if err := norm.Save(path); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadNormalizer(path)
	if err != nil {
		t.Fatal(err)
	}
	x := append([]float32(nil), all[0]...)
	if err := loaded.Apply(x); err != nil {
		t.Fatal(err)
	}
	z := NewStats(dim)
	for _, arr := range all {
		c := append([]float32(nil), arr...)
		loaded.Apply(c)
		z.Add(c)
	}
	zm, zs := z.Mean(), z.Std()
	for d := 0; d < 4; d++ {
		if math.Abs(zm[d]) > 1e-5 || math.Abs(zs[d]-1) > 1e-5 {
			t.Errorf("normalised dim %d: mean %v std %v", d, zm[d], zs[d])
		}
	}
	if err := loaded.Invert(x); err != nil {
		t.Fatal(err)
	}
	for i := range x {
		if math.Abs(float64(x[i]-all[0][i])) > 1e-5 {
			t.Fatalf("Invert(Apply(x)) differs at %d: %v vs %v", i, x[i], all[0][i])
		}
	}
	if err := whole.Add(make([]float32, 7)); err == nil {
		t.Error("ragged array accepted")
	}
	if err := loaded.Apply(make([]float32, 7)); err == nil {
		t.Error("ragged array accepted by Apply")
	}
	if _, err := NewStats(3).Normalizer(DefaultMinStd); err == nil {
		t.Error("empty stats gave a normalizer")
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	(&Normalizer{Mean: []float64{1}, Std: []float64{0}}).Save(bad)
	if _, err := LoadNormalizer(bad); err == nil || !strings.Contains(err.Error(), "bad.json") {
		t.Errorf("zero std accepted or error without file name: %v", err)
	}
}
