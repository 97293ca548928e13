package listening

import (
	"math"
	"testing"
)

func rms(y []float32, from, to int) float64 {
	var s float64
	for _, v := range y[from:to] {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s / float64(to-from))
}

func TestLowPassAnchor(t *testing.T) {
	fs := 22050.0
	for _, c := range []struct{ f, minDB, maxDB float64 }{
		{500, -0.05, 0.05}, {3000, -0.1, 0.1}, {4000, -200, -60}, {8000, -200, -60},
	} {
		y := sineAt(fs, c.f, 0.5, 1)
		out, err := LowPass(y, fs, AnchorCutoff)
		if err != nil {
			t.Fatal(err)
		}
		// Away from the edges the gain is the filter's response at f.
		g := 20 * math.Log10(rms(out, 2000, len(y)-2000)/rms(y, 2000, len(y)-2000))
		if g < c.minDB || g > c.maxDB {
			t.Errorf("%g Hz: gain %.2f dB, want [%g, %g]", c.f, g, c.minDB, c.maxDB)
		}
		if c.f == 500 { // zero delay: the passband output overlays the input
			for i := 2000; i < len(y)-2000; i++ {
				if math.Abs(float64(out[i]-y[i])) > 0.01 {
					t.Fatalf("sample %d: %g, input %g (delay not removed?)", i, out[i], y[i])
				}
			}
		}
	}
	if _, err := LowPass(make([]float32, 10), fs, 12000); err == nil {
		t.Error("cutoff above Nyquist accepted")
	}
}
