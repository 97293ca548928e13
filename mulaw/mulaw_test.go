package mulaw

import (
	"math"
	"math/rand/v2"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

// Hand-derived values: with mu = 255, ln(1+mu) = ln 256 = 8 ln 2, so
// x = 1/17 (1+255x = 16 = 2^4) compands to exactly 4/8 = 0.5, x = 1/255
// (1+255x = 2) to 1/8 and x = 3/255 (1+255x = 4) to 2/8.
func TestCompandHandValues(t *testing.T) {
	cases := []struct{ x, mu, want float64 }{
		{0, 255, 0},
		{1, 255, 1},
		{-1, 255, -1},
		{1.0 / 17, 255, 0.5},
		{-1.0 / 17, 255, -0.5},
		{1.0 / 255, 255, 0.125},
		{3.0 / 255, 255, 0.25},
		{0.2, 15, 0.5},    // 1+15*0.2 = 4 = 16^(1/2)
		{1.0 / 3, 3, 0.5}, // 1+3/3 = 2 = 4^(1/2)
	}
	for _, c := range cases {
		if got := Compand(c.x, c.mu); !near(got, c.want, 1e-15) {
			t.Errorf("Compand(%v, %v) = %v, want %v", c.x, c.mu, got, c.want)
		}
		if got := Expand(c.want, c.mu); !near(got, c.x, 1e-15) {
			t.Errorf("Expand(%v, %v) = %v, want %v", c.want, c.mu, got, c.x)
		}
	}
}

// Quantize values worked by hand from (Compand(x)+1)/2*mu, truncated.
func TestQuantizeHandValues(t *testing.T) {
	cases := []struct {
		x    float64
		mu   int
		want int
	}{
		{-1, 255, 0},
		{1, 255, 255},
		{0, 255, 127},         // 127.5 -> 127 (truncation, not rounding)
		{1.0 / 17, 255, 191},  // 1.5/2*255 = 191.25
		{-1.0 / 17, 255, 63},  // 0.5/2*255 = 63.75 -> 63, not 64
		{1.0 / 255, 255, 143}, // 1.125/2*255 = 143.4375
		{0.2, 15, 11},         // 1.5/2*15 = 11.25
		{1.5, 255, 255},       // clipped
		{-3, 255, 0},          // clipped
	}
	for _, c := range cases {
		if got := Quantize(c.x, c.mu); got != c.want {
			t.Errorf("Quantize(%v, %d) = %d, want %d", c.x, c.mu, got, c.want)
		}
	}
}

func TestDequantizeHandValues(t *testing.T) {
	cases := []struct {
		q, mu int
		want  float64
	}{
		{0, 255, -1},
		{255, 255, 1},
		{2, 4, 0},
		{3, 4, (math.Sqrt(5) - 1) / 4}, // Expand(0.5, 4) = (5^0.5 - 1)/4
		{1, 4, -(math.Sqrt(5) - 1) / 4},
		{12, 16, (math.Sqrt(17) - 1) / 16}, // 2*12/16-1 = 0.5
	}
	for _, c := range cases {
		if got := Dequantize(c.q, c.mu); !near(got, c.want, 1e-15) {
			t.Errorf("Dequantize(%d, %d) = %v, want %v", c.q, c.mu, got, c.want)
		}
	}
}

func TestJacobianHandValues(t *testing.T) {
	l := 8 * math.Ln2
	cases := []struct{ y, want float64 }{
		{0, 255 / l},
		{1.0 / 17, 255 / l / 16},
		{-1.0 / 17, 255 / l / 16},
		{1, 255 / l / 256},
	}
	for _, c := range cases {
		if got := Jacobian(c.y, 255); !near(got, c.want, 1e-12) {
			t.Errorf("Jacobian(%v) = %v, want %v", c.y, got, c.want)
		}
		if got := LogJacobian(c.y, 255); !near(got, math.Log(c.want), 1e-12) {
			t.Errorf("LogJacobian(%v) = %v, want %v", c.y, got, math.Log(c.want))
		}
	}
}

func TestJacobianFiniteDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, mu := range []float64{3, 15, 255, 65535} {
		for range 200 {
			y := 2*r.Float64() - 1
			if math.Abs(y) < 1e-3 {
				continue // |y| has a kink at 0; both one-sided slopes equal Jacobian(0)
			}
			h := 1e-6 * math.Abs(y)
			fd := (Compand(y+h, mu) - Compand(y-h, mu)) / (2 * h)
			if j := Jacobian(y, mu); math.Abs(fd-j) > 1e-6*j {
				t.Fatalf("mu=%v y=%v: Jacobian %v, finite difference %v", mu, y, j, fd)
			}
		}
		// one-sided slopes at 0
		h := 1e-7 / mu // keep mu*h small so the curvature term stays below 1e-7
		if fd := Compand(h, mu) / h; math.Abs(fd-Jacobian(0, mu)) > 1e-5*Jacobian(0, mu) {
			t.Errorf("mu=%v: slope at 0 %v, Jacobian %v", mu, fd, Jacobian(0, mu))
		}
	}
}

func TestProperties(t *testing.T) {
	for _, mu := range []float64{1, 15, 255, 65535} {
		prev := math.Inf(-1)
		prevQ := -1
		for i := -20000; i <= 20000; i++ {
			x := float64(i) / 20000
			c := Compand(x, mu)
			if c <= prev {
				t.Fatalf("mu=%v: Compand not strictly increasing at x=%v", mu, x)
			}
			prev = c
			if c < -1 || c > 1 {
				t.Fatalf("mu=%v: Compand(%v)=%v out of [-1,1]", mu, x, c)
			}
			if Compand(-x, mu) != -c {
				t.Fatalf("mu=%v: Compand not odd at x=%v", mu, x)
			}
			if back := Expand(c, mu); math.Abs(back-x) > 1e-12 {
				t.Fatalf("mu=%v: Expand(Compand(%v)) = %v", mu, x, back)
			}
			if mu == 65535 || mu == 1 {
				continue
			}
			q := Quantize(x, int(mu))
			if q < prevQ {
				t.Fatalf("mu=%v: Quantize not monotone at x=%v", mu, x)
			}
			prevQ = q
		}
	}
}

// Quantize->Dequantize returns the lower edge of the bin that contains x,
// so the error is within one local bin width (in amplitude) and, because of
// the truncation convention, not generally within half of it.
func TestRoundTripBound(t *testing.T) {
	for _, mu := range []int{15, 255, 1023} {
		sawOverHalf := false
		for i := -50000; i <= 50000; i++ {
			x := float64(i) / 50000
			q := Quantize(x, mu)
			if q < 0 || q > mu || (q == mu) != (x == 1) {
				t.Fatalf("mu=%d: Quantize(%v) = %d out of range", mu, x, q)
			}
			lo, hi := AmplitudeBin(q, mu)
			if x != 1 && !(lo <= x+1e-12 && x < hi+1e-12) {
				t.Fatalf("mu=%d: x=%v not in its bin %d [%v, %v)", mu, x, q, lo, hi)
			}
			err := math.Abs(Dequantize(q, mu) - x)
			if err > hi-lo+1e-12 {
				t.Fatalf("mu=%d: x=%v round-trip error %v exceeds bin width %v", mu, x, err, hi-lo)
			}
			if err > 0.5*(hi-lo)+1e-9 {
				sawOverHalf = true
			}
		}
		if !sawOverHalf {
			t.Errorf("mu=%d: never saw an error over half a bin; is Quantize rounding instead of truncating?", mu)
		}
	}
}

func TestSlicesMatchScalars(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	src := make([]float32, 1000)
	for i := range src {
		src[i] = float32(2*r.Float64() - 1)
	}
	src[0], src[1], src[2] = -1, 0, 1
	c := make([]float32, len(src))
	CompandSlice(c, src, 255)
	e := make([]float32, len(src))
	ExpandSlice(e, c, 255)
	q := make([]int32, len(src))
	QuantizeSlice(q, src, 255)
	d := make([]float32, len(src))
	DequantizeSlice(d, q, 255)
	for i, x := range src {
		if want := float32(Compand(float64(x), 255)); c[i] != want {
			t.Fatalf("CompandSlice[%d] = %v, want %v", i, c[i], want)
		}
		if math.Abs(float64(e[i]-x)) > 1e-6 {
			t.Fatalf("ExpandSlice(CompandSlice(%v)) = %v", x, e[i])
		}
		if want := int32(Quantize(float64(x), 255)); q[i] != want {
			t.Fatalf("QuantizeSlice[%d] = %d, want %d", i, q[i], want)
		}
		if want := float32(Dequantize(int(q[i]), 255)); d[i] != want {
			t.Fatalf("DequantizeSlice[%d] = %v, want %v", i, d[i], want)
		}
	}
	// in place
	alias := append([]float32(nil), src...)
	CompandSlice(alias, alias, 255)
	for i := range alias {
		if alias[i] != c[i] {
			t.Fatalf("in-place CompandSlice differs at %d", i)
		}
	}
	CompandSlice(nil, nil, 255) // empty input is fine
	defer func() {
		if recover() == nil {
			t.Error("short destination did not panic")
		}
	}()
	CompandSlice(make([]float32, 1), src, 255)
}

// TestCentreRoundTrip: the centre of every class's bin quantizes back to
// the class, in float64 and after rounding to float32 (what a sampler feeds
// back), and lies inside the class's amplitude bin.
func TestCentreRoundTrip(t *testing.T) {
	for _, mu := range []int{2, 15, 255, 1023} {
		for q := 0; q <= mu; q++ {
			c := Centre(q, mu)
			if got := Quantize(c, mu); got != q {
				t.Fatalf("mu=%d: Quantize(Centre(%d)) = %d", mu, q, got)
			}
			if got := Quantize(float64(float32(c)), mu); got != q {
				t.Fatalf("mu=%d: Quantize(float32(Centre(%d))) = %d", mu, q, got)
			}
			if lo, hi := AmplitudeBin(q, mu); q < mu && !(c > lo && c < hi) || q == mu && c != 1 {
				t.Fatalf("mu=%d: Centre(%d) = %v outside its bin [%v, %v)", mu, q, c, lo, hi)
			}
		}
	}
}
