package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/train"
)

// TestResumeAsRanks: the ranks of a data-parallel --resume read their
// flags from the run directory at the same time. Rank 0 prepares it (sets
// a damaged newest checkpoint aside) while the others only read it, so
// none is shut out by another's lock (before, every rank took the lock and
// all but one failed with "in use by another process"), and all agree on
// the checkpoint. --batch-size is per rank: the run's global batch of 2
// split over 2 ranks is 1.
func TestResumeAsRanks(t *testing.T) {
	dump, out := twoCheckpointRun(t)
	os.Remove(filepath.Join(train.StepDir(out, 4), train.ManifestFile))
	const world = 2
	for trial := range 5 {
		var wg sync.WaitGroup
		cfgs := make([]train.RunConfig, world)
		errs := make([]error, world)
		for r := range world {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := defaultTrainOpts()
				cmd := &cobra.Command{Use: "x"}
				cmd.SetErr(io.Discard)
				addTrainFlags(cmd.Flags(), &o)
				if err := cmd.ParseFlags([]string{"--data", dump, "--out", out, "--resume", "--batch-size", "1"}); err != nil {
					errs[r] = err
					return
				}
				cfgs[r], errs[r] = runConfig(cmd, &o, world, r > 0)
			}()
		}
		wg.Wait()
		for r, err := range errs {
			if err != nil {
				t.Fatalf("trial %d, rank %d: %v", trial, r, err)
			}
			if cfgs[r].Steps != 4 || cfgs[r].CheckpointInterval != 2 {
				t.Errorf("trial %d, rank %d: steps %d, checkpoint interval %d; want the run's 4 and 2", trial, r, cfgs[r].Steps, cfgs[r].CheckpointInterval)
			}
		}
		if l, err := train.Latest(out); err != nil || l != train.StepDir(out, 2) {
			t.Fatalf("trial %d: latest %s, %v; want step 2", trial, l, err)
		}
	}
	if _, err := os.Stat(train.StepDir(out, 4) + train.BadSuffix); err != nil {
		t.Errorf("the damaged step 4 was not set aside: %v", err)
	}
	if _, err := os.Stat(train.StepDir(out, 4) + train.BadSuffix + "-2"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("step 4 set aside twice: %v", err)
	}
	// The per-rank batch of the run's, on 2 ranks, is 1, not the 2 saved.
	o := defaultTrainOpts()
	cmd := &cobra.Command{Use: "x"}
	addTrainFlags(cmd.Flags(), &o)
	cmd.ParseFlags([]string{"--data", dump, "--out", out, "--resume", "--batch-size", "2"})
	if _, err := runConfig(cmd, &o, world, false); err == nil || !strings.Contains(err.Error(), "--batch-size 2 (the run has 1)") {
		t.Errorf("--batch-size 2 on 2 ranks of a batch-2 run: %v", err)
	}
	if _, err := runConfig(cmd, &o, 4, false); err == nil || !strings.Contains(err.Error(), "does not split over 4 ranks") {
		t.Errorf("4 ranks for a global batch of 2: %v", err)
	}
}
