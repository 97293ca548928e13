package evaluate

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// TestSpeechGates: a row at every limit's good side passes all six gates;
// moving one measure past its limit (or to NaN) fails exactly that gate,
// and a row without synthesis fails them all.
func TestSpeechGates(t *testing.T) {
	good := func() Row {
		return Row{Quality: &QualityStats{
			LevelDiffDB: Stat{Mean: -2.9}, ClippedFraction: Stat{Mean: 0.0009}, VoicingAgreement: Stat{Mean: 0.85},
			GrossPitchError: Stat{Mean: 0.15}, BandMCD: Stat{Mean: 5}, Periodicity: Stat{Mean: 0.8},
		}}
	}
	gl := Row{Quality: &QualityStats{Periodicity: Stat{Mean: 0.75}}}
	gates := SpeechGates(good(), &gl)
	if len(gates) != 6 || GatesLine(gates) != "all 6 speech gates pass" {
		t.Fatalf("good row: %+v (%s)", gates, GatesLine(gates))
	}
	for _, c := range []struct {
		gate string
		set  func(q *QualityStats)
	}{
		{"level", func(q *QualityStats) { q.LevelDiffDB.Mean = 3.1 }},
		{"level", func(q *QualityStats) { q.LevelDiffDB.Mean = math.NaN() }},
		{"clipped", func(q *QualityStats) { q.ClippedFraction.Mean = 0.001 }},
		{"voicing", func(q *QualityStats) { q.VoicingAgreement.Mean = 0.849 }},
		{"pitch", func(q *QualityStats) { q.GrossPitchError.Mean = 0.151 }},
		{"pitch", func(q *QualityStats) { q.GrossPitchError.Mean = math.NaN() }},
		{"band MCD", func(q *QualityStats) { q.BandMCD.Mean = 5.01 }},
		{"periodicity", func(q *QualityStats) { q.Periodicity.Mean = 0.75 }},
	} {
		r := good()
		c.set(r.Quality)
		var failed []string
		for _, g := range SpeechGates(r, &gl) {
			if !g.Pass {
				failed = append(failed, g.Name)
			}
		}
		if len(failed) != 1 || failed[0] != c.gate {
			t.Errorf("%s past its limit: failed %v", c.gate, failed)
		}
	}
	if n := len(SpeechGates(good(), nil)); n != 5 {
		t.Errorf("without Griffin-Lim: %d gates, want 5 (no periodicity gate)", n)
	}
	line := GatesLine(SpeechGates(Row{}, &gl))
	if !strings.HasPrefix(line, "6 of 6 speech gates fail: level none (want") {
		t.Errorf("row without synthesis: %s", line)
	}
	r := good()
	r.Quality.LevelDiffDB.Mean = 14.5
	if line := GatesLine(SpeechGates(r, &gl)); line != "1 of 6 speech gates fail: level +14.5 dB (want within ±3 dB of the original)" {
		t.Errorf("line %q", line)
	}
}

// TestGateJSON: a gate without a value (NaN) encodes as null and decodes
// back to NaN with its other fields.
func TestGateJSON(t *testing.T) {
	in := []Gate{{Name: "pitch", Value: math.NaN(), Want: "x"}, {Name: "level", Value: -1.5, Want: "y", Pass: true}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"value":null`) {
		t.Fatalf("encoded %s", b)
	}
	var out []Gate
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || out[0].Name != "pitch" || !math.IsNaN(out[0].Value) || out[1] != in[1] {
		t.Errorf("decoded %+v from %s", out, b)
	}
}

// TestRowLabel: tables and gate lists name a row by its checkpoint and any
// sampling temperature that is not the plain 1.
func TestRowLabel(t *testing.T) {
	for _, c := range []struct {
		r    Row
		want string
	}{
		{Row{Checkpoint: "run"}, "run"},
		{Row{Checkpoint: "run", Temperature: 1}, "run"},
		{Row{Checkpoint: "run", Temperature: 0.8}, "run (t=0.8)"},
		{Row{Checkpoint: "run", Temperature: 1, VoicedTemperature: 0.7}, "run (voiced t=0.7)"},
		{Row{Checkpoint: "run", Temperature: 0.9, VoicedTemperature: 0.5}, "run (t=0.9) (voiced t=0.5)"},
	} {
		if got := c.r.Label(); got != c.want {
			t.Errorf("%+v: label %q, want %q", c.r, got, c.want)
		}
	}
	g := []Gate{{Name: "level", Pass: true}}
	md := GatesMarkdown([]Row{{Checkpoint: "a", VoicedTemperature: 0.7, Gates: g}})
	if !strings.Contains(md, "- a (voiced t=0.7):") {
		t.Errorf("gate list %q does not name the voiced temperature", md)
	}
}
