package listening

import (
	"bytes"
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/palette/moreland"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/melspec"
)

// melGrid shows a frames x bands log-mel spectrogram as a heat map.
type melGrid struct {
	data          []float32
	frames, bands int
	secPerFrame   float64
}

func (g melGrid) Dims() (c, r int)   { return g.frames, g.bands }
func (g melGrid) Z(c, r int) float64 { return float64(g.data[c*g.bands+r]) }
func (g melGrid) X(c int) float64    { return float64(c) * g.secPerFrame }
func (g melGrid) Y(r int) float64    { return float64(r) }

// PlotSpectrograms writes one PNG with the log-mel spectrogram of each
// rendition stacked top to bottom (the first is usually the ground truth), on
// one shared colour scale (80 dB below the loudest bin) so differences in
// level and in noise floor show.
func PlotSpectrograms(path, title string, rs []Rendition, sampleRate int) error {
	cfg := melspec.DefaultConfig()
	cfg.SampleRate = sampleRate
	cfg.FMax = math.Min(cfg.FMax, float64(sampleRate)/2)
	ex, err := melspec.NewExtractor(cfg)
	if err != nil {
		return err
	}
	grids := make([]melGrid, len(rs))
	top := math.Inf(-1)
	for i, r := range rs {
		m, f := ex.Compute(r.Audio)
		if f < 2 {
			return fmt.Errorf("%s: %s: too short to plot (%d samples)", path, r.System, len(r.Audio))
		}
		grids[i] = melGrid{m, f, cfg.NMels, float64(cfg.Hop) / float64(sampleRate)}
		for _, v := range m {
			top = math.Max(top, float64(v))
		}
	}
	pal := moreland.ExtendedBlackBody()
	pal.SetMax(top)
	pal.SetMin(top - 4) // log10 magnitude: 4 decades = 80 dB
	rows := make([][]*plot.Plot, len(rs))
	for i, r := range rs {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: %s", title, r.System)
		p.X.Label.Text = "time (s)"
		p.Y.Label.Text = "mel band"
		hm := plotter.NewHeatMap(grids[i], pal.Palette(256))
		hm.Min, hm.Max = top-4, top
		hm.Underflow = pal.Palette(256).Colors()[0]
		hm.Rasterized = true // one image, no seams between cells
		p.Add(hm)
		rows[i] = []*plot.Plot{p}
	}
	w, h := 10*vg.Inch, vg.Length(len(rs))*2.6*vg.Inch
	img := vgimg.New(w, h)
	dc := draw.New(img)
	canvases := plot.Align(rows, draw.Tiles{Rows: len(rs), Cols: 1, PadY: vg.Millimeter * 2}, dc)
	for i := range rows {
		rows[i][0].Draw(canvases[i][0])
	}
	var buf bytes.Buffer
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(&buf); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.WriteBytes(path, buf.Bytes(), 0o644)
}
