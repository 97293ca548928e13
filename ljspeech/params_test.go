package ljspeech

import (
	"math"
	"testing"

	"github.com/wavecat/wavecat/melspec"
)

// Restore must invert the target preprocessing (gain, then pre-emphasis)
// and clip what the model overshoots.
func TestRestoreInvertsGainAndPreemphasis(t *testing.T) {
	p := DefaultParams()
	x := make([]float32, 1000)
	for i := range x {
		x[i] = float32(0.9 * math.Sin(float64(i)*0.05) * math.Cos(float64(i)*0.013))
	}
	y := make([]float32, len(x))
	melspec.Scale(y, x, float32(p.Gain))
	melspec.PreEmphasis(y, y, p.Preemphasis)
	p.Restore(y)
	for i := range x {
		if d := math.Abs(float64(y[i] - x[i])); d > 1e-5 {
			t.Fatalf("sample %d: restored %g, want %g", i, y[i], x[i])
		}
	}
	loud := []float32{2, -2, 0.1}
	Params{Gain: 0.5}.Restore(loud)
	if loud[0] != 1 || loud[1] != -1 || loud[2] != 0.2 {
		t.Fatalf("no pre-emphasis, gain 0.5: got %v, want [1 -1 0.2]", loud)
	}
}
