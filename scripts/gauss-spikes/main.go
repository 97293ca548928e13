// Command gauss-spikes counts the training-loss spikes of runs from their
// metrics.jsonl, with docs/evaluation.md's definition: a spike is a logged
// training step after step 100 whose loss is more than 2.5 nats above the
// median loss of the run's second half (the steps from half the last step
// on). That definition also counts the steps of a run that is still slow to
// learn just after step 100, so a second count, jumps, takes the same margin
// over the median of the 50 preceding logged steps instead: a sudden rise
// from where the run was. For each run it prints that median, the mean loss
// of the last 200 logged steps, the highest loss after step 100, the largest
// gradient norm, the share of steps with a gradient norm above 100, the
// spike count, the spikes after step 300 (past the early steps that a run
// still learning counts) and the jumps. With several runs it also prints the
// mean and standard deviation of the columns over them (the seeds of one
// setting).
//
//	go run ./scripts/gauss-spikes RUN/metrics.jsonl...
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"sort"
)

// Definition of a spike (docs/evaluation.md).
const (
	afterStep   = 100
	spikeMargin = 2.5
	lastN       = 200
	jumpWindow  = 50
	lateStep    = 300
)

type record struct {
	Type     string   `json:"type"`
	Step     int64    `json:"step"`
	Loss     float64  `json:"loss"`
	GradNorm *float64 `json:"grad_norm"`
}

type stats struct {
	median, lastMean, highest, maxNorm, over100 float64
	spikes, late, jumps                         int
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gauss-spikes RUN/metrics.jsonl...")
		os.Exit(2)
	}
	fmt.Printf("%-48s %8s %8s %8s %9s %6s %6s %6s %6s\n", "run", "median", "last200", "highest", "max-norm", ">100", "spikes", ">300", "jumps")
	var all []stats
	for _, p := range os.Args[1:] {
		s, err := measure(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "gauss-spikes:", err)
			os.Exit(1)
		}
		all = append(all, s)
		fmt.Printf("%-48s %8.2f %8.2f %+8.2f %9.0f %5.0f%% %6d %6d %6d\n", p, s.median, s.lastMean, s.highest, s.maxNorm, 100*s.over100, s.spikes, s.late, s.jumps)
	}
	if len(all) > 1 {
		col := func(f func(stats) float64) string {
			m, sd := meanSD(all, f)
			return fmt.Sprintf("%.2f±%.2f", m, sd)
		}
		fmt.Printf("mean±sd of %d runs: median %s, last200 %s, highest %s, max-norm %s, >100 %s%%, spikes %s (total %d), after step 300 %s (total %d), jumps %s (total %d)\n",
			len(all), col(func(s stats) float64 { return s.median }), col(func(s stats) float64 { return s.lastMean }),
			col(func(s stats) float64 { return s.highest }), col(func(s stats) float64 { return s.maxNorm }),
			col(func(s stats) float64 { return 100 * s.over100 }),
			col(func(s stats) float64 { return float64(s.spikes) }), sum(all, func(s stats) int { return s.spikes }),
			col(func(s stats) float64 { return float64(s.late) }), sum(all, func(s stats) int { return s.late }),
			col(func(s stats) float64 { return float64(s.jumps) }), sum(all, func(s stats) int { return s.jumps }))
	}
}

func sum(all []stats, f func(stats) int) int {
	n := 0
	for _, s := range all {
		n += f(s)
	}
	return n
}

func meanSD(all []stats, f func(stats) float64) (float64, float64) {
	var m float64
	for _, s := range all {
		m += f(s)
	}
	m /= float64(len(all))
	var v float64
	for _, s := range all {
		v += (f(s) - m) * (f(s) - m)
	}
	return m, math.Sqrt(v / float64(len(all)-1))
}

// measure reads one run's training records and computes its statistics.
func measure(path string) (stats, error) {
	f, err := os.Open(path)
	if err != nil {
		return stats{}, err
	}
	defer f.Close()
	var recs []record
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var r record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return stats{}, fmt.Errorf("%s: %v", path, err)
		}
		if r.Type == "train" {
			recs = append(recs, r)
		}
	}
	if err := sc.Err(); err != nil {
		return stats{}, fmt.Errorf("%s: %v", path, err)
	}
	if len(recs) == 0 {
		return stats{}, fmt.Errorf("%s: no training records", path)
	}
	last := recs[len(recs)-1].Step
	var half []float64
	for _, r := range recs {
		if r.Step >= last/2 {
			half = append(half, r.Loss)
		}
	}
	sort.Float64s(half)
	s := stats{median: median(half), highest: math.Inf(-1)}
	n, norms := 0, 0
	for i, r := range recs {
		if i >= len(recs)-lastN {
			s.lastMean += r.Loss
			n++
		}
		if r.GradNorm != nil {
			norms++
			s.maxNorm = math.Max(s.maxNorm, *r.GradNorm)
			if *r.GradNorm > 100 {
				s.over100++
			}
		}
		if r.Step <= afterStep {
			continue
		}
		s.highest = math.Max(s.highest, r.Loss)
		if r.Loss > s.median+spikeMargin {
			s.spikes++
			if r.Step > lateStep {
				s.late++
			}
		}
		if i >= jumpWindow {
			prev := make([]float64, jumpWindow)
			for j := range prev {
				prev[j] = recs[i-jumpWindow+j].Loss
			}
			sort.Float64s(prev)
			if r.Loss > median(prev)+spikeMargin {
				s.jumps++
			}
		}
	}
	s.lastMean /= float64(n)
	if norms > 0 {
		s.over100 /= float64(norms)
	}
	return s, nil
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
