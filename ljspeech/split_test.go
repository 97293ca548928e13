package ljspeech

import (
	"fmt"
	"slices"
	"testing"
)

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		// Reverse order: MakeSplit must sort.
		out[i] = fmt.Sprintf("LJ%03d-%04d", 1+(n-1-i)/50, 1+(n-1-i)%50)
	}
	return out
}

func TestMakeSplitReference(t *testing.T) {
	all := ids(13100)
	s, scaled, err := MakeSplit(all, 10, 10)
	if err != nil || scaled {
		t.Fatal(err, scaled)
	}
	sorted := slices.Sorted(slices.Values(all))
	if len(s.Train) != 13080 || !slices.Equal(s.Dev, sorted[13080:13090]) || !slices.Equal(s.Eval, sorted[13090:]) || !slices.Equal(s.Train, sorted[:13080]) {
		t.Fatalf("split sizes %d/%d/%d or membership wrong", len(s.Train), len(s.Dev), len(s.Eval))
	}
	s2, _, _ := MakeSplit(slices.Clone(sorted), 10, 10)
	if !slices.Equal(s.Train, s2.Train) || !slices.Equal(s.Dev, s2.Dev) || !slices.Equal(s.Eval, s2.Eval) {
		t.Fatal("split depends on input order")
	}
}

func TestMakeSplitScalesDownForTinyCorpora(t *testing.T) {
	for _, c := range []struct{ n, dev, eval, wantDev, wantEval int }{
		{32, 10, 10, 3, 3},
		{100, 10, 10, 10, 10}, // exactly a fifth: not scaled
		{99, 10, 10, 9, 9},
		{5, 10, 10, 1, 1},
		{3, 10, 10, 1, 1},
		{32, 0, 10, 0, 3},
		{32, 0, 0, 0, 0},
	} {
		s, scaled, err := MakeSplit(ids(c.n), c.dev, c.eval)
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if len(s.Dev) != c.wantDev || len(s.Eval) != c.wantEval || len(s.Train) != c.n-c.wantDev-c.wantEval {
			t.Errorf("%+v: got %d/%d/%d", c, len(s.Train), len(s.Dev), len(s.Eval))
		}
		if scaled != (c.wantDev != c.dev || c.wantEval != c.eval) {
			t.Errorf("%+v: scaled = %v", c, scaled)
		}
	}
	if _, _, err := MakeSplit(ids(2), 10, 10); err == nil {
		t.Error("2 utterances cannot make train+dev+eval")
	}
	if _, _, err := MakeSplit(ids(20), -1, 1); err == nil {
		t.Error("negative size accepted")
	}
	var s Split
	if _, err := s.Subset("test"); err == nil {
		t.Error("unknown subset accepted")
	}
}
