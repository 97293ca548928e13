package ljspeech

import (
	"strings"
	"testing"
)

// TestBatcherShard: rank r of N at batch B gets items r*B..(r+1)*B-1 of the
// global batch a single process at batch N*B draws, for every step (epoch
// boundaries included), so the ranks' shares are disjoint and together are
// exactly that batch, items numbered as the global batch numbers them;
// Shard(0, 1) changes nothing.
func TestBatcherShard(t *testing.T) {
	const N, B, T = 3, 2, 1024
	global := newTestBatcher(t, "train", N*B, T, 5)
	plain := newTestBatcher(t, "train", B, T, 5)
	one := newTestBatcher(t, "train", B, T, 5)
	if err := one.Shard(0, 1); err != nil {
		t.Fatal(err)
	}
	ranks := make([]*Batcher, N)
	for r := range ranks {
		ranks[r] = newTestBatcher(t, "train", B, T, 5)
		if err := ranks[r].Shard(r, N); err != nil {
			t.Fatal(err)
		}
	}
	steps := 2*global.Len()/(N*B) + 1 // crosses epoch boundaries
	for step := 0; step < steps; step++ {
		g, err := global.Batch(step)
		if err != nil {
			t.Fatal(err)
		}
		for i, k := range g.Items {
			if k != step*N*B+i {
				t.Fatalf("step %d: item %d numbered %d, want %d", step, i, k, step*N*B+i)
			}
		}
		for r, bt := range ranks {
			b, err := bt.Batch(step)
			if err != nil {
				t.Fatal(err)
			}
			lo, hi := r*B, (r+1)*B
			want := Batch{B: B, T: T, Cin: g.Cin, Frames: g.Frames, Wave: g.Wave[lo*T : hi*T],
				Mel: g.Mel[lo*g.Cin*g.Frames : hi*g.Cin*g.Frames], IDs: g.IDs[lo:hi], Starts: g.Starts[lo:hi], Items: g.Items[lo:hi]}
			if !batchesEqual(b, want) {
				t.Fatalf("step %d rank %d: items %v@%v, want %v@%v (slice %d..%d of the global batch)", step, r, b.IDs, b.Starts, want.IDs, want.Starts, lo, hi-1)
			}
		}
		a, _ := plain.Batch(step)
		c, _ := one.Batch(step)
		if !batchesEqual(a, c) {
			t.Fatalf("step %d: Shard(0, 1) changed the batch", step)
		}
	}
	for _, bad := range [][2]int{{1, 1}, {-1, 2}, {0, 0}} {
		if err := plain.Shard(bad[0], bad[1]); err == nil || !strings.Contains(err.Error(), "want 0 <= rank < world") {
			t.Errorf("Shard(%d, %d): %v", bad[0], bad[1], err)
		}
	}
}
