package train

import (
	"math"
	"strings"
	"testing"
)

// Both panels of loss.png are in bits/sample: the training loss, logged in
// nats, is converted (a cross-entropy of 2 ln 2 nats is 2 bits).
func TestLossPlotUnits(t *testing.T) {
	tr := []TrainRecord{{Step: 1, Loss: 2 * math.Ln2}, {Step: 2, Loss: 3 * math.Ln2}, {Step: 3, Loss: math.NaN()}}
	ev := []EvalRecord{{Step: 2, Bits: -4, BitsSE: 0.1}}
	top, bot, err := lossPlots(tr, ev, "mulaw --bins 256")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{top.Y.Label.Text, bot.Y.Label.Text} {
		if !strings.Contains(l, "bits/sample") || strings.Contains(l, "nats") {
			t.Errorf("axis label %q: want bits/sample", l)
		}
	}
	if math.Abs(top.Y.Min-2) > 1e-12 || math.Abs(top.Y.Max-3) > 1e-12 {
		t.Errorf("training loss plotted from %g to %g bits, want 2 to 3", top.Y.Min, top.Y.Max)
	}
	if top.X.Min != bot.X.Min || top.X.Max != bot.X.Max {
		t.Errorf("panels do not share the step axis: [%g %g] [%g %g]", top.X.Min, top.X.Max, bot.X.Min, bot.X.Max)
	}
}
