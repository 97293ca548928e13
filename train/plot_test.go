package train

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
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

// A run without validation gets one panel, half the height: no empty
// validation axes.
func TestLossPlotWithoutValidation(t *testing.T) {
	tr := []TrainRecord{{Step: 1, Loss: 2}, {Step: 2, Loss: 1.5}}
	top, bot, err := lossPlots(tr, []EvalRecord{{Step: 2, Bits: math.NaN()}}, "mulaw --bins 256")
	if err != nil || top == nil || bot != nil {
		t.Fatalf("panels %v %v, error %v; want the training panel alone", top != nil, bot != nil, err)
	}
	dir := t.TempDir()
	sizes := map[string]int{}
	for name, ev := range map[string][]EvalRecord{"one": nil, "two": {{Step: 2, Bits: -3, BitsSE: 0.1}}} {
		p := filepath.Join(dir, name+".png")
		if err := WritePlot(p, tr, ev, "t"); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		sizes[name] = cfg.Height
	}
	if sizes["one"]*2 != sizes["two"] {
		t.Errorf("heights: %d without validation, %d with; want half", sizes["one"], sizes["two"])
	}
}
