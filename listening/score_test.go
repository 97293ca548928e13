package listening

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const testKey = `stimulus,system,utterance
a1.wav,sysA,u1
a2.wav,sysA,u2
b1.wav,sysB,u1
b2.wav,sysB,u2
g1.wav,ground_truth,u1
`

// Hand-computed: sysA gets 4,5 from r1 and 3,4 from r2. Over ratings: mean 4,
// s = sqrt(2/3), t(0.975, 3) = 3.182446305 -> CI 3.182446305*sqrt(2/3)/2 =
// 1.299228. Over raters: means 4.5 and 3.5, mean 4, s = sqrt(1/2),
// t(0.975, 1) = 12.70620474 -> CI 12.70620474*sqrt(1/2)/sqrt(2) = 6.353102.
func TestScoreHandComputed(t *testing.T) {
	dir := t.TempDir()
	key, err := ReadKey(write(t, dir, "key.csv", testKey))
	if err != nil {
		t.Fatal(err)
	}
	res := write(t, dir, "r.csv", `rater,stimulus,rating,timestamp
r1,a1.wav,4,2026-01-01T00:00:00Z
r1,audio/a2.wav,5,2026-01-01T00:00:01Z
r2,a1,3,t
r2,a2.wav,4,t
r1,b1.wav,2,t
r1,g1.wav,5,t
`)
	rs, err := ReadResults(res, key)
	if err != nil {
		t.Fatal(err)
	}
	sc := Score(rs)
	if len(sc) != 3 || sc[0].System != "ground_truth" || sc[1].System != "sysA" || sc[2].System != "sysB" {
		t.Fatalf("systems %+v", sc)
	}
	a := sc[1]
	if a.Ratings != 4 || a.Raters != 2 || a.MOS != 4 || math.Abs(a.CI95-1.299228) > 1e-5 || a.RaterMOS != 4 || math.Abs(a.RaterCI95-6.353102) > 1e-5 {
		t.Errorf("sysA %+v, want 4 ± 1.299228 (ratings), 4 ± 6.353102 (raters)", a)
	}
	if b := sc[2]; b.MOS != 2 || !math.IsNaN(b.CI95) {
		t.Errorf("sysB (one rating) %+v, want 2 with no CI", b)
	}
	md := ScoreMarkdown(sc)
	if !strings.Contains(md, "| sysA | 4 | 2 | 4.00 ± 1.30 | 4.00 ± 6.35 |") || !strings.Contains(md, "2.00 ± -") {
		t.Errorf("markdown:\n%s", md)
	}
	png := filepath.Join(dir, "mos.png")
	if err := PlotScores(png, sc); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(png); err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Errorf("bar plot not a PNG (%d bytes, %v)", len(b), err)
	}
}

func TestResultsRejected(t *testing.T) {
	dir := t.TempDir()
	key, err := ReadKey(write(t, dir, "key.csv", testKey))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, text, want string }{
		{"unknown", "rater,stimulus,rating,timestamp\nr1,zz.wav,3,t\n", `"zz.wav" is not in the key`},
		{"high", "rater,stimulus,rating,timestamp\nr1,a1.wav,6,t\n", `rating "6" is not an integer from 1 to 5`},
		{"zero", "rater,stimulus,rating,timestamp\nr1,a1.wav,0,t\n", `rating "0"`},
		{"fraction", "rater,stimulus,rating,timestamp\nr1,a1.wav,3.5,t\n", `rating "3.5"`},
		{"nocol", "rater,stimulus,timestamp\nr1,a1.wav,t\n", `missing column "rating"`},
		{"short", "rater,stimulus,rating,timestamp\nr1,a1.wav\n", `line 2`},
		{"twice", "rater,stimulus,rating,timestamp\nr1,a1.wav,3,t\nr1,a1.wav,4,t\n", `rated a1.wav again (first on line 2)`},
		{"norater", "rater,stimulus,rating,timestamp\n,a1.wav,3,t\n", `empty rater`},
		{"empty", "", `empty file`},
		{"noratings", "rater,stimulus,rating,timestamp\n", `no ratings`},
	} {
		p := write(t, dir, c.name+".csv", c.text)
		_, err := ReadResults(p, key)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %v, want one naming %s and containing %q", c.name, err, p, c.want)
		}
	}
	if _, err := ReadKey(write(t, dir, "badkey.csv", "file,system\nx,y\n")); err == nil || !strings.Contains(err.Error(), `missing column "stimulus"`) {
		t.Errorf("bad key: %v", err)
	}
}
