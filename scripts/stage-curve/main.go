// Command stage-curve plots the training loss of a model trained in
// stages (each stage a run started with --init-from the last one) on one
// step axis: each DIR:LAST is a run directory and the step of it the next
// stage started from; steps are offset by the stages before.
//
//	go run ./scripts/stage-curve OUT.png TITLE DIR:LAST...
//
// docs/evaluation.md's curve of the built-in model:
//
//	go run ./scripts/stage-curve docs/img/builtin-training.png "built-in model: all stages, 41,769 steps" \
//	    build/default-model/run:28620 build/exc-model/run:1000 build/exc-align/run:1500 \
//	    build/exc-heavy/run:1000 build/exc-anneal/run:1000 build/exc-anneal2/run:2307 \
//	    build/exc-lag/run:1500 build/exc-lagclean/run:4842
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/wavecat/wavecat/train"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: stage-curve OUT.png TITLE DIR:LAST...")
		os.Exit(2)
	}
	var all []train.TrainRecord
	var off int64
	for _, a := range os.Args[3:] {
		i := strings.LastIndex(a, ":")
		last, err := strconv.ParseInt(a[i+1:], 10, 64)
		if i < 0 || err != nil {
			fail(fmt.Errorf("%q: want DIR:LAST", a))
		}
		tr, _, err := train.ReadMetrics(filepath.Join(a[:i], "metrics.jsonl"))
		if err != nil {
			fail(err)
		}
		for _, r := range tr {
			if r.Step <= last {
				r.Step += off
				all = append(all, r)
			}
		}
		off += last
	}
	if err := train.WritePlot(os.Args[1], all, nil, os.Args[2]); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "stage-curve:", err)
	os.Exit(1)
}
