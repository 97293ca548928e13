package main

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wavecat/wavecat/dist"
)

func TestDistMode(t *testing.T) {
	torchrun := map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1"}
	child := map[string]string{"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", childVar: "1"}
	for _, c := range []struct {
		name           string
		gpus           int
		bucket         float64
		device         string
		env            map[string]string
		launch, ranked bool
		err            string
	}{
		{name: "alone", device: "cpu"},
		{name: "--gpus launches", gpus: 2, device: "cuda", launch: true},
		{name: "--gpus 1 launches too", gpus: 1, device: "cuda", launch: true},
		{name: "--gpus on the cpu", gpus: 2, device: "cpu", err: "--gpus 2 needs --device cuda"},
		{name: "--gpus under torchrun", gpus: 2, device: "cuda", env: torchrun, err: "started by torchrun as rank 1 of 2: leave --gpus out"},
		{name: "a --gpus child is a rank", gpus: 2, device: "cuda", env: child, ranked: true},
		{name: "torchrun rank", device: "cuda", env: torchrun, ranked: true},
		{name: "torchrun rank on the cpu", device: "cpu", env: torchrun, err: "data-parallel training needs --device cuda"},
		{name: "bad launcher environment", device: "cuda", env: map[string]string{"RANK": "x", "WORLD_SIZE": "2"}, err: `RANK="x"`},
		{name: "negative", gpus: -1, device: "cuda", err: "--gpus -1 must not be negative"},
		{name: "negative bucket", device: "cuda", bucket: -1, err: "--grad-bucket-mib -1 must be positive"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := defaultTrainOpts()
			o.gpus, o.device = c.gpus, c.device
			if c.bucket != 0 {
				o.bucketMiB = c.bucket
			}
			launch, env, ranked, err := distMode(&o, func(k string) string { return c.env[k] })
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || launch != c.launch || ranked != c.ranked {
				t.Fatalf("launch %v ranked %v err %v (env %+v)", launch, ranked, err, env)
			}
		})
	}
}

func TestGPUOrdinal(t *testing.T) {
	env := dist.Env{LocalRank: 3}
	for vis, want := range map[string]int{"": 3, "0,1,2,3": 3, "5": 0} {
		if got := gpuOrdinal(env, func(k string) string {
			if k == "CUDA_VISIBLE_DEVICES" {
				return vis
			}
			return ""
		}); got != want {
			t.Errorf("CUDA_VISIBLE_DEVICES=%q: GPU %d, want %d", vis, got, want)
		}
	}
}

func TestRankEnv(t *testing.T) {
	got := rankEnv([]string{"PATH=/bin", "RANK=9", "MASTER_PORT=1", "HOME=/h"}, 1, 4, 29999)
	want := []string{"PATH=/bin", "HOME=/h", "RANK=1", "WORLD_SIZE=4", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=4", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29999", childVar + "=1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	// What a rank started this way reads back.
	m := map[string]string{}
	for _, kv := range got {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	e, ok, err := dist.FromEnv(func(k string) string { return m[k] })
	if err != nil || !ok || e.Rank != 1 || e.WorldSize != 4 || e.LocalRank != 1 || e.Addr() != "127.0.0.1:29999" {
		t.Errorf("rank reads %+v %v %v", e, ok, err)
	}
}

// TestSuperviseRanksStopsOthers: when one rank fails, the launcher stops
// the others at once and names the failed rank.
func TestSuperviseRanksStopsOthers(t *testing.T) {
	start := time.Now()
	var log strings.Builder
	err := superviseRanks(context.Background(), 3, func(r int) *exec.Cmd {
		if r == 1 {
			return exec.Command("sh", "-c", "sleep 0.2; exit 3")
		}
		return exec.Command("sleep", "60")
	}, &log)
	if err == nil || !strings.Contains(err.Error(), "rank 1 of 3 failed (exit status 3)") {
		t.Fatalf("err %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("took %v: the other ranks were not stopped", d)
	}
	if !strings.Contains(log.String(), "rank 1 exited") {
		t.Errorf("log: %s", log.String())
	}
}

func TestSuperviseRanksAllSucceed(t *testing.T) {
	if err := superviseRanks(context.Background(), 2, func(int) *exec.Cmd { return exec.Command("true") }, &strings.Builder{}); err != nil {
		t.Fatal(err)
	}
}

// TestTrainCommandRefusesCPUDataParallel: the command line says clearly
// that data parallelism needs CUDA, before doing anything.
func TestTrainCommandRefusesCPUDataParallel(t *testing.T) {
	dir := t.TempDir()
	_, _, err := runT(t, "--data", dir, "--out", dir+"/run", "--preset", "tiny", "--gpus", "2")
	if err == nil || !strings.Contains(err.Error(), "--gpus 2 needs --device cuda") {
		t.Fatalf("--gpus on the cpu: %v", err)
	}
	t.Setenv("RANK", "0")
	t.Setenv("WORLD_SIZE", "2")
	t.Setenv("LOCAL_RANK", "0")
	t.Setenv("MASTER_ADDR", "127.0.0.1")
	_, _, err = runT(t, "--data", dir, "--out", dir+"/run", "--preset", "tiny")
	if err == nil || !strings.Contains(err.Error(), "started by torchrun as rank 0 of 2, but --device is cpu") {
		t.Fatalf("torchrun rank on the cpu: %v", err)
	}
}
