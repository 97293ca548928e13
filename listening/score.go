package listening

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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

// ReadKey reads an export's key.csv, dropping the quote Export puts before
// names that a spreadsheet would take for formulas.
func ReadKey(path string) (Key, error) {
	t, err := openCSV(path, "stimulus", "system", "utterance")
	if err != nil {
		return nil, err
	}
	defer t.close()
	k := Key{}
	for {
		row, line, err := t.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		s := Stimulus{File: row[0], System: row[1], Utterance: row[2]}
		if s.File == "" || s.System == "" {
			return nil, fmt.Errorf("%s line %d: empty stimulus or system", path, line)
		}
		if _, dup := k[s.File]; dup {
			return nil, fmt.Errorf("%s line %d: stimulus %s listed twice", path, line, s.File)
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

// resultColumns are the columns of a results CSV, as the MOS page writes them.
var resultColumns = []string{"rater", "stimulus", "rating", "timestamp"}

// Tally checks results CSVs against a key and aggregates their ratings as it
// reads them, row by row: a results file can be far larger than memory
// would comfortably hold, and what the scores need grows only with the
// number of raters, systems and stimuli. After an error from AddFile the
// tally holds part of that file and should be discarded.
type Tally struct {
	key    Key
	index  map[string]int // stimulus file -> bit in a rater's seen set
	files  []string
	raters map[string]*raterSeen
	agg    aggregate
}

// raterSeen is one rater's interned name and the stimuli they have rated.
type raterSeen struct {
	name string
	seen []uint64
}

// NewTally starts an empty tally over key.
func NewTally(key Key) *Tally {
	t := &Tally{key: key, index: make(map[string]int, len(key)), raters: map[string]*raterSeen{}}
	for f := range key {
		t.index[f] = len(t.index)
	}
	return t
}

// AddFile streams a results CSV (rater,stimulus,rating,timestamp) into the
// tally. Every stimulus must be in the key (a bare name or a path ending in
// it), every rating an integer 1-5, and no rater may rate a stimulus twice,
// in this file or in one added before.
func (t *Tally) AddFile(path string) error {
	return t.scan(path, nil)
}

// Scores is the MOS of each system over the files added so far, ordered as
// by Score.
func (t *Tally) Scores() []SystemScore { return t.agg.scores() }

// resolve finds a results row's stimulus in the key.
func (t *Tally) resolve(cell string) (Stimulus, bool) {
	name := strings.TrimSpace(cell)
	if j := strings.LastIndexAny(name, `/\`); j >= 0 {
		name = name[j+1:]
	}
	if s, ok := t.key[name]; ok {
		return s, true
	}
	s, ok := t.key[name+".wav"]
	return s, ok
}

// scan checks and aggregates path, calling each (when not nil) for every
// rating.
func (t *Tally) scan(path string, each func(Rating)) error {
	tab, err := openCSV(path, resultColumns...)
	if err != nil {
		return err
	}
	defer tab.close()
	t.files = append(t.files, path)
	n := 0
	for {
		row, line, err := tab.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		rater := strings.TrimSpace(row[0])
		if rater == "" {
			return fmt.Errorf("%s line %d: empty rater", path, line)
		}
		s, ok := t.resolve(row[1])
		if !ok {
			return fmt.Errorf("%s line %d: stimulus %q is not in the key (results of another test?)", path, line, row[1])
		}
		v, err := strconv.Atoi(strings.TrimSpace(row[2]))
		if err != nil || v < 1 || v > 5 {
			return fmt.Errorf("%s line %d: rating %q is not an integer from 1 to 5", path, line, row[2])
		}
		r := t.raters[rater]
		if r == nil {
			// A copy: rater is a slice of the whole record, which must not
			// stay in memory.
			r = &raterSeen{name: strings.Clone(rater), seen: make([]uint64, (len(t.index)+63)/64)}
			t.raters[r.name] = r
		}
		i := t.index[s.File]
		if r.seen[i/64]&(1<<(i%64)) != 0 {
			return t.duplicate(path, line, r.name, s.File)
		}
		r.seen[i/64] |= 1 << (i % 64)
		t.agg.add(s.System, r.name, v)
		if each != nil {
			each(Rating{Rater: r.name, Stimulus: s, Score: v, Timestamp: strings.Clone(row[3])})
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("%s: no ratings", path)
	}
	return nil
}

// duplicate builds the error for a rating of file by rater on path's line
// that was already counted: it reads back where the first one was (only the
// seen bit is kept while scanning).
func (t *Tally) duplicate(path string, line int, rater, file string) error {
	first := func(p string, before int) int {
		tab, err := openCSV(p, resultColumns...)
		if err != nil {
			return 0
		}
		defer tab.close()
		for {
			row, l, err := tab.next()
			if err != nil || (before > 0 && l >= before) {
				return 0
			}
			if s, ok := t.resolve(row[1]); ok && s.File == file && strings.TrimSpace(row[0]) == rater {
				return l
			}
		}
	}
	if l := first(path, line); l > 0 {
		return fmt.Errorf("%s line %d: rater %q rated %s again (first on line %d)", path, line, rater, file, l)
	}
	for _, p := range t.files[:len(t.files)-1] {
		if l := first(p, 0); l > 0 {
			return fmt.Errorf("%s line %d: rater %q rated %s again (also in %s line %d); was a results file given twice?", path, line, rater, file, p, l)
		}
	}
	return fmt.Errorf("%s line %d: rater %q rated %s again", path, line, rater, file)
}

// ReadResults reads a results CSV (rater,stimulus,rating,timestamp) with the
// checks of Tally.AddFile and returns its rows. It holds every row in
// memory: to score large files use a Tally.
func ReadResults(path string, key Key) ([]Rating, error) {
	var out []Rating
	if err := NewTally(key).scan(path, func(r Rating) { out = append(out, r) }); err != nil {
		return nil, err
	}
	return out, nil
}

// aggregate is what the scores need: per system the count of each rating,
// and per system and rater the sum and number of ratings.
type aggregate struct {
	counts  map[string]*[6]int
	byRater map[string]map[string]*[2]int
}

func (a *aggregate) add(system, rater string, score int) {
	if a.counts == nil {
		a.counts, a.byRater = map[string]*[6]int{}, map[string]map[string]*[2]int{}
	}
	c := a.counts[system]
	if c == nil {
		c = new([6]int)
		a.counts[system] = c
		a.byRater[system] = map[string]*[2]int{}
	}
	c[score]++
	sn := a.byRater[system][rater]
	if sn == nil {
		sn = new([2]int)
		a.byRater[system][rater] = sn
	}
	sn[0] += score
	sn[1]++
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

// countsMeanCI is meanCI of the ratings counted in c (c[v] ratings of v).
func countsMeanCI(c *[6]int) (mean, ci float64) {
	var n, sum int
	for v, k := range c {
		n += k
		sum += v * k
	}
	mean = float64(sum) / float64(n)
	if n < 2 {
		return mean, math.NaN()
	}
	var ss float64
	for v, k := range c {
		d := float64(v) - mean
		ss += float64(k) * d * d
	}
	t := distuv.StudentsT{Mu: 0, Sigma: 1, Nu: float64(n - 1)}.Quantile(0.975)
	return mean, t * math.Sqrt(ss/float64(n-1)/float64(n))
}

// Score computes each system's MOS: ground truth first, then the systems by
// name, the anchor last. Scores outside 1-5 are ignored.
func Score(ratings []Rating) []SystemScore {
	var a aggregate
	for _, r := range ratings {
		if r.Score >= 1 && r.Score <= 5 {
			a.add(r.Stimulus.System, r.Rater, r.Score)
		}
	}
	return a.scores()
}

func (a *aggregate) scores() []SystemScore {
	names := make([]string, 0, len(a.counts))
	for s := range a.counts {
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
		c := a.counts[s]
		sc := SystemScore{System: s, Raters: len(a.byRater[s])}
		for _, k := range c {
			sc.Ratings += k
		}
		sc.MOS, sc.CI95 = countsMeanCI(c)
		means := make([]float64, 0, len(a.byRater[s]))
		for _, sn := range a.byRater[s] {
			means = append(means, float64(sn[0])/float64(sn[1]))
		}
		sort.Float64s(means) // map order must not change the float sum
		sc.RaterMOS, sc.RaterCI95 = meanCI(means)
		out[i] = sc
	}
	return out
}

// ScoreMarkdown renders scores as a table. System names are escaped, so
// one holding | or a line break stays in its cell.
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
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %s |\n", markdownCell(s.System), s.Ratings, s.Raters, f(s.MOS, s.CI95), f(s.RaterMOS, s.RaterCI95))
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
