package listening

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"

	"gonum.org/v1/gonum/stat/distuv"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"

	"github.com/wavecat/wavecat/internal/atomicfile"
)

// Key maps a stimulus file name to what it is.
type Key map[string]Stimulus

// readCSV reads a whole CSV file with a header and returns the index of each
// wanted column (header names matched case-insensitively, extra columns
// ignored).
func readCSV(path string, want ...string) (rows [][]string, col map[string]int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.FieldsPerRecord = -1
	all, err := r.ReadAll()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(all) == 0 {
		return nil, nil, fmt.Errorf("%s: empty file (want a header with %s)", path, strings.Join(want, ", "))
	}
	col = map[string]int{}
	for i, h := range all[0] {
		col[strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))] = i
	}
	for _, w := range want {
		if _, ok := col[w]; !ok {
			return nil, nil, fmt.Errorf("%s: missing column %q (header: %s; want %s)", path, w, strings.Join(all[0], ","), strings.Join(want, ","))
		}
	}
	for i, row := range all[1:] {
		for _, w := range want {
			if col[w] >= len(row) {
				return nil, nil, fmt.Errorf("%s line %d: %d fields, no %q", path, i+2, len(row), w)
			}
		}
	}
	return all[1:], col, nil
}

// ReadKey reads an export's key.csv.
func ReadKey(path string) (Key, error) {
	rows, col, err := readCSV(path, "stimulus", "system", "utterance")
	if err != nil {
		return nil, err
	}
	k := Key{}
	for i, row := range rows {
		s := Stimulus{File: row[col["stimulus"]], System: row[col["system"]], Utterance: row[col["utterance"]]}
		if s.File == "" || s.System == "" {
			return nil, fmt.Errorf("%s line %d: empty stimulus or system", path, i+2)
		}
		if _, dup := k[s.File]; dup {
			return nil, fmt.Errorf("%s line %d: stimulus %s listed twice", path, i+2, s.File)
		}
		k[s.File] = s
	}
	if len(k) == 0 {
		return nil, fmt.Errorf("%s: no stimuli", path)
	}
	return k, nil
}

// Rating is one rater's score of one stimulus, resolved through the key.
type Rating struct {
	Rater     string
	Stimulus  Stimulus
	Score     int
	Timestamp string
}

// ReadResults reads a results CSV (rater,stimulus,rating,timestamp) and
// checks it against the key: every stimulus must be in the key (a bare name
// or a path ending in it), every rating an integer 1-5, and no rater may rate
// a stimulus twice.
func ReadResults(path string, key Key) ([]Rating, error) {
	rows, col, err := readCSV(path, "rater", "stimulus", "rating", "timestamp")
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("%s: no ratings", path)
	}
	seen := map[[2]string]int{}
	out := make([]Rating, 0, len(rows))
	for i, row := range rows {
		line := i + 2
		rater := strings.TrimSpace(row[col["rater"]])
		name := strings.TrimSpace(row[col["stimulus"]])
		if j := strings.LastIndexAny(name, `/\`); j >= 0 {
			name = name[j+1:]
		}
		if rater == "" {
			return nil, fmt.Errorf("%s line %d: empty rater", path, line)
		}
		s, ok := key[name]
		if !ok {
			s, ok = key[name+".wav"]
		}
		if !ok {
			return nil, fmt.Errorf("%s line %d: stimulus %q is not in the key (results of another test?)", path, line, row[col["stimulus"]])
		}
		v, err := strconv.Atoi(strings.TrimSpace(row[col["rating"]]))
		if err != nil || v < 1 || v > 5 {
			return nil, fmt.Errorf("%s line %d: rating %q is not an integer from 1 to 5", path, line, row[col["rating"]])
		}
		k := [2]string{rater, s.File}
		if prev, dup := seen[k]; dup {
			return nil, fmt.Errorf("%s line %d: rater %q rated %s again (first on line %d)", path, line, rater, s.File, prev)
		}
		seen[k] = line
		out = append(out, Rating{Rater: rater, Stimulus: s, Score: v, Timestamp: row[col["timestamp"]]})
	}
	return out, nil
}

// SystemScore is the MOS of one system with two 95% confidence intervals:
// over all ratings (each rating an observation), and over raters (each
// rater's mean for the system an observation, which does not pretend one
// rater's ratings are independent).
type SystemScore struct {
	System    string  `json:"system"`
	Ratings   int     `json:"ratings"`
	Raters    int     `json:"raters"`
	MOS       float64 `json:"mos"`
	CI95      float64 `json:"ci95"`       // half-width, t-distribution over ratings
	RaterMOS  float64 `json:"rater_mos"`  // mean of per-rater means
	RaterCI95 float64 `json:"rater_ci95"` // half-width, t-distribution over raters
}

// meanCI is the mean of xs and the half-width of its 95% t interval (NaN
// for fewer than two values).
func meanCI(xs []float64) (mean, ci float64) {
	n := float64(len(xs))
	for _, x := range xs {
		mean += x
	}
	mean /= n
	if len(xs) < 2 {
		return mean, math.NaN()
	}
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: n - 1}.Quantile(0.975)
	return mean, t * math.Sqrt(ss/(n-1)/n)
}

// Score computes each system's MOS: ground truth first, then the systems by
// name, the anchor last.
func Score(ratings []Rating) []SystemScore {
	bySys := map[string][]float64{}
	byRater := map[string]map[string][]float64{}
	for _, r := range ratings {
		s := r.Stimulus.System
		bySys[s] = append(bySys[s], float64(r.Score))
		if byRater[s] == nil {
			byRater[s] = map[string][]float64{}
		}
		byRater[s][r.Rater] = append(byRater[s][r.Rater], float64(r.Score))
	}
	names := make([]string, 0, len(bySys))
	for s := range bySys {
		names = append(names, s)
	}
	rank := func(s string) int { // ground truth first, the anchor last
		switch s {
		case GroundTruth:
			return 0
		case Anchor:
			return 2
		}
		return 1
	}
	sort.Slice(names, func(i, j int) bool {
		if ri, rj := rank(names[i]), rank(names[j]); ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	out := make([]SystemScore, len(names))
	for i, s := range names {
		sc := SystemScore{System: s, Ratings: len(bySys[s]), Raters: len(byRater[s])}
		sc.MOS, sc.CI95 = meanCI(bySys[s])
		var means []float64
		for _, v := range byRater[s] {
			m, _ := meanCI(v)
			means = append(means, m)
		}
		sort.Float64s(means) // map order must not change the float sum
		sc.RaterMOS, sc.RaterCI95 = meanCI(means)
		out[i] = sc
	}
	return out
}

// ScoreMarkdown renders scores as a table.
func ScoreMarkdown(scores []SystemScore) string {
	var b strings.Builder
	b.WriteString("| system | ratings | raters | MOS ± 95% CI (ratings) | MOS ± 95% CI (raters) |\n|---|---:|---:|---:|---:|\n")
	f := func(m, ci float64) string {
		if math.IsNaN(ci) {
			return fmt.Sprintf("%.2f ± -", m)
		}
		return fmt.Sprintf("%.2f ± %.2f", m, ci)
	}
	for _, s := range scores {
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s |\n", s.System, s.Ratings, s.Raters, f(s.MOS, s.CI95), f(s.RaterMOS, s.RaterCI95))
	}
	return b.String()
}

// PlotScores writes a bar chart of the MOS per system with 95% CI error bars
// (over ratings) as a PNG.
func PlotScores(path string, scores []SystemScore) error {
	if len(scores) == 0 {
		return errors.New("no scores to plot")
	}
	p := plot.New()
	p.Title.Text = "Mean opinion score (95% CI)"
	p.Y.Label.Text = "MOS"
	vals := make(plotter.Values, len(scores))
	errs := make(plotter.YErrors, len(scores))
	xys := make(plotter.XYs, len(scores))
	names := make([]string, len(scores))
	for i, s := range scores {
		vals[i] = s.MOS
		ci := s.CI95
		if math.IsNaN(ci) {
			ci = 0
		}
		errs[i].Low, errs[i].High = ci, ci
		xys[i].X, xys[i].Y = float64(i), s.MOS
		names[i] = s.System
	}
	bars, err := plotter.NewBarChart(vals, vg.Points(30))
	if err != nil {
		return err
	}
	eb, err := plotter.NewYErrorBars(struct {
		plotter.XYer
		plotter.YErrorer
	}{xys, errs})
	if err != nil {
		return err
	}
	p.Add(bars, eb, plotter.NewGrid())
	p.NominalX(names...)
	p.Y.Min, p.Y.Max = 0, 5.5 // the whole scale, whatever the data (after Add, which widens it)
	var buf bytes.Buffer
	wt, err := p.WriterTo(vg.Length(1.2*float64(len(scores))+2)*vg.Inch, 4*vg.Inch, "png")
	if err != nil {
		return err
	}
	if _, err := wt.WriteTo(&buf); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.Write(path, 0o644, func(w io.Writer) error { _, err := w.Write(buf.Bytes()); return err })
}

// MarshalJSON writes an undefined interval (one rating or one rater) as null:
// encoding/json refuses NaN.
func (s SystemScore) MarshalJSON() ([]byte, error) {
	type plain SystemScore
	nan := func(x float64) *float64 {
		if math.IsNaN(x) {
			return nil
		}
		return &x
	}
	return json.Marshal(struct {
		plain
		CI95      *float64 `json:"ci95"`
		RaterCI95 *float64 `json:"rater_ci95"`
	}{plain(s), nan(s.CI95), nan(s.RaterCI95)})
}
