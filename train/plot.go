package train

import (
	"bytes"
	"fmt"
	"image/color"
	"math"

	"github.com/wavecat/wavecat/internal/atomicfile"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlot draws the training loss (top) and the validation bits/sample
// with standard-error bars (bottom) against the step into a PNG at path,
// written atomically so a viewer never sees half an image. Both panels are
// in bits/sample; they stay two because the quantities differ: the loss is
// the head's training objective (smoothed for AdaCat, discrete
// cross-entropy for the categorical heads) while validation is the
// comparable continuous bits/sample. A run without validation
// (--eval-interval 0) gets the top panel alone.
func WritePlot(path string, train []TrainRecord, eval []EvalRecord, title string) error {
	top, bot, err := lossPlots(train, eval, title)
	if err != nil {
		return err
	}
	plots := [][]*plot.Plot{{top}}
	if bot != nil {
		plots = append(plots, []*plot.Plot{bot})
	}
	w, h := 8*vg.Inch, vg.Length(3.5*float64(len(plots)))*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: len(plots), Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter,
		PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter, PadLeft: 2 * vg.Millimeter, PadRight: 4 * vg.Millimeter}
	canvases := plot.Align(plots, tiles, dc)
	for i, row := range plots {
		row[0].Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.WriteBytes(path, buf.Bytes(), 0o644)
}

// lossPlots builds WritePlot's two panels; bot is nil when there is no
// finite validation point to draw.
func lossPlots(train []TrainRecord, eval []EvalRecord, title string) (top, bot *plot.Plot, err error) {
	top = plot.New()
	top.Title.Text = title
	top.X.Label.Text = "step"
	top.Y.Label.Text = "training loss (bits/sample)"
	var pts plotter.XYs
	for _, r := range train {
		if finite(r.Loss) {
			// metrics.jsonl keeps the loss in nats, as the heads compute it
			pts = append(pts, plotter.XY{X: float64(r.Step), Y: r.Loss / math.Ln2})
		}
	}
	if len(pts) > 0 {
		l, err := plotter.NewLine(pts)
		if err != nil {
			return nil, nil, err
		}
		l.Color = color.RGBA{R: 31, G: 119, B: 180, A: 255}
		top.Add(l, plotter.NewGrid())
	}

	bot = plot.New()
	bot.X.Label.Text = "step"
	bot.Y.Label.Text = "validation bits/sample (EMA)"
	var ev struct {
		plotter.XYs
		plotter.YErrors
	}
	for _, r := range eval {
		if finite(r.Bits) {
			ev.XYs = append(ev.XYs, plotter.XY{X: float64(r.Step), Y: r.Bits})
			ev.YErrors = append(ev.YErrors, struct{ Low, High float64 }{r.BitsSE, r.BitsSE})
		}
	}
	if len(ev.XYs) > 0 {
		l, s, err := plotter.NewLinePoints(ev.XYs)
		if err != nil {
			return nil, nil, err
		}
		red := color.RGBA{R: 214, G: 39, B: 40, A: 255}
		l.Color, s.Color = red, red
		eb, err := plotter.NewYErrorBars(ev)
		if err != nil {
			return nil, nil, err
		}
		eb.Color = red
		bot.Add(l, s, eb, plotter.NewGrid())
	} else {
		bot = nil
	}
	// Both panels share the step axis.
	if len(pts)+len(ev.XYs) > 0 {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, p := range append(append(plotter.XYs(nil), pts...), ev.XYs...) {
			lo, hi = math.Min(lo, p.X), math.Max(hi, p.X)
		}
		if hi <= lo {
			hi = lo + 1
		}
		top.X.Min, top.X.Max = lo, hi
		if bot != nil {
			bot.X.Min, bot.X.Max = lo, hi
		}
	}
	return top, bot, nil
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
