package evaluate

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
)

// Gate is one pass/fail criterion of speech on held-out utterances. A
// vocoder that fails one of SpeechGates does not yet speak, whatever its
// likelihood: these are the numbers that separate speech from noise that
// follows the mel's loudness.
type Gate struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"` // the row's mean (NaN when it has none)
	Want  string  `json:"want"`  // the criterion, for people
	Pass  bool    `json:"pass"`
}

// SpeechGates checks a row's synthesis measures: level within 3 dB of the
// original, under 0.1% clipped samples, voicing agreement >= 0.85, gross
// pitch error <= 15%, band MCD <= 5 dB, and, when a Griffin-Lim row of the
// same utterances is given, periodicity of voiced frames above Griffin-Lim's.
// A row without synthesis fails every gate.
func SpeechGates(r Row, griffinLim *Row) []Gate {
	q := r.Quality
	if q == nil {
		nan := Stat{Mean: math.NaN(), SE: math.NaN()}
		q = &QualityStats{nan, nan, nan, nan, nan, nan, nan, nan, nan}
	}
	ok := func(v float64, pass bool) bool { return !math.IsNaN(v) && pass }
	lv, cl, va, gpe, mcd := q.LevelDiffDB.Mean, q.ClippedFraction.Mean, q.VoicingAgreement.Mean, q.GrossPitchError.Mean, q.BandMCD.Mean
	gates := []Gate{
		{"level", lv, "within ±3 dB of the original", ok(lv, math.Abs(lv) <= 3)},
		{"clipped", cl, "under 0.1% of samples", ok(cl, cl < 0.001)},
		{"voicing", va, "agreement >= 0.85", ok(va, va >= 0.85)},
		{"pitch", gpe, "gross pitch error <= 15%", ok(gpe, gpe <= 0.15)},
		{"band MCD", mcd, "<= 5 dB", ok(mcd, mcd <= 5)},
	}
	if griffinLim != nil && griffinLim.Quality != nil {
		p, g := q.Periodicity.Mean, griffinLim.Quality.Periodicity.Mean
		gates = append(gates, Gate{"periodicity", p, fmt.Sprintf("above Griffin-Lim's %.3f", g), ok(p, p > g)})
	}
	return gates
}

// GatesLine summarises gates on one line: "all 6 speech gates pass" or the
// failing ones with their values.
func GatesLine(gates []Gate) string {
	var fail []string
	for _, g := range gates {
		if !g.Pass {
			fail = append(fail, fmt.Sprintf("%s (want %s)", g, g.Want))
		}
	}
	if len(fail) == 0 {
		return fmt.Sprintf("all %d speech gates pass", len(gates))
	}
	return fmt.Sprintf("%d of %d speech gates fail: %s", len(fail), len(gates), strings.Join(fail, "; "))
}

// String is the gate's name and value in its unit ("level +14.5 dB",
// "pitch none" when the row has no value).
func (g Gate) String() string {
	v := fmt.Sprintf("%.3g", g.Value)
	switch {
	case math.IsNaN(g.Value):
		v = "none"
	case g.Name == "level":
		v = fmt.Sprintf("%+.1f dB", g.Value)
	case g.Name == "clipped", g.Name == "pitch":
		v = fmt.Sprintf("%.1f%%", 100*g.Value)
	case g.Name == "band MCD":
		v = fmt.Sprintf("%.1f dB", g.Value)
	}
	return g.Name + " " + v
}

// GatesMarkdown lists the gates of every row that has them, one line each
// (empty when none has).
func GatesMarkdown(rows []Row) string {
	var b strings.Builder
	for _, r := range rows {
		if r.Gates == nil {
			continue
		}
		fmt.Fprintf(&b, "- %s: %s\n", r.Label(), GatesLine(r.Gates))
	}
	return b.String()
}

// MarshalJSON writes a missing value (NaN) as null, as Stat does.
func (g Gate) MarshalJSON() ([]byte, error) {
	type plain Gate
	return json.Marshal(struct {
		plain
		Value *float64 `json:"value"`
	}{plain(g), finiteOrNil(g.Value)})
}

// UnmarshalJSON reads null back as NaN.
func (g *Gate) UnmarshalJSON(b []byte) error {
	type plain Gate
	var v struct {
		plain
		Value *float64 `json:"value"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*g = Gate(v.plain)
	g.Value = nilToNaN(v.Value)
	return nil
}
