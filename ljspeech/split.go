package ljspeech

import (
	"fmt"
	"slices"
)

// Split names the utterances of each subset, each list sorted.
type Split struct {
	Train []string `json:"train"`
	Dev   []string `json:"dev"`
	Eval  []string `json:"eval"`
}

// Subset returns the ids of "train", "dev", "eval" or "all" (the three in
// order: a held-out corpus is scored whole).
func (s *Split) Subset(name string) ([]string, error) {
	switch name {
	case "all":
		return slices.Concat(s.Train, s.Dev, s.Eval), nil
	case "train":
		return s.Train, nil
	case "dev":
		return s.Dev, nil
	case "eval":
		return s.Eval, nil
	}
	return nil, fmt.Errorf("ljspeech: unknown split %q (want train, dev, eval or all)", name)
}

// MakeSplit is the reference split: ids sorted, the last nEval are eval, the
// nDev before them dev, the rest train. When dev+eval would take more than
// a fifth of a small corpus, both are scaled down to max(1, n/10) each (when
// asked for at all) so that a tiny test corpus still has every subset and
// most of its data for training; scaled says so. At least 3 ids are needed
// when both dev and eval are requested.
func MakeSplit(ids []string, nDev, nEval int) (s Split, scaled bool, err error) {
	if nDev < 0 || nEval < 0 {
		return s, false, fmt.Errorf("ljspeech: dev (%d) and eval (%d) sizes must not be negative", nDev, nEval)
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	n := len(sorted)
	if 5*(nDev+nEval) > n {
		small := max(1, n/10)
		d, e := min(nDev, small), min(nEval, small)
		scaled = d != nDev || e != nEval
		nDev, nEval = d, e
	}
	if n-nDev-nEval < 1 {
		return s, scaled, fmt.Errorf("ljspeech: %d usable utterances cannot make a split with %d dev, %d eval and at least 1 train", n, nDev, nEval)
	}
	s.Train = sorted[:n-nDev-nEval]
	s.Dev = sorted[n-nDev-nEval : n-nEval]
	s.Eval = sorted[n-nEval:]
	return s, scaled, nil
}
