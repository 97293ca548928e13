package ljspeech

import (
	"math"
	"slices"
	"strings"
	"testing"
)

const (
	testHop    = 256
	testCinPad = 2
)

func newTestBatcher(t *testing.T, split string, b, T int, seed uint64) *Batcher {
	t.Helper()
	bt, err := NewBatcher(sharedDump, split, b, T, testCinPad, testHop, seed)
	if err != nil {
		t.Fatal(err)
	}
	return bt
}

func batchesEqual(a, b Batch) bool {
	return a.B == b.B && a.T == b.T && a.Frames == b.Frames && a.Cin == b.Cin &&
		slices.Equal(a.Wave, b.Wave) && slices.Equal(a.Mel, b.Mel) &&
		slices.Equal(a.IDs, b.IDs) && slices.Equal(a.Starts, b.Starts) && slices.Equal(a.Items, b.Items)
}

// Batch(step) depends only on (seed, step): two instances, any call order,
// and a reconstructed batcher (a resumed run) give identical batches.
func TestBatcherDeterministic(t *testing.T) {
	a := newTestBatcher(t, "train", 4, 10240, 7)
	b := newTestBatcher(t, "train", 4, 10240, 7)
	var first []Batch
	for step := 0; step < 20; step++ {
		x, err := a.Batch(step)
		if err != nil {
			t.Fatal(err)
		}
		first = append(first, x)
	}
	for _, step := range []int{13, 2, 19, 0, 7, 13} {
		y, err := b.Batch(step)
		if err != nil {
			t.Fatal(err)
		}
		if !batchesEqual(first[step], y) {
			t.Fatalf("step %d differs between instances", step)
		}
	}
	c := newTestBatcher(t, "train", 4, 10240, 7)
	y, _ := c.Batch(19)
	if !batchesEqual(first[19], y) {
		t.Fatal("reconstructed batcher differs at step 19")
	}
	d := newTestBatcher(t, "train", 4, 10240, 8)
	same := 0
	for step := 0; step < 5; step++ {
		y, _ := d.Batch(step)
		if batchesEqual(first[step], y) {
			same++
		}
	}
	if same == 5 {
		t.Fatal("another seed gives the same batches")
	}
}

// Each batch item is exactly a crop of the stored utterance: wave samples
// [s*hop, (s+F)*hop) and mel frames [s-cinPad, s+F+cinPad), normalised and
// channel-major; the crops need no edge padding.
func TestBatcherCropAlignment(t *testing.T) {
	const T = 40 * testHop
	bt := newTestBatcher(t, "train", 3, T, 1)
	d := bt.Dump()
	for step := 0; step < 6; step++ {
		b, err := bt.Batch(step)
		if err != nil {
			t.Fatal(err)
		}
		if b.B != 3 || b.T != T || b.Cin != 80 || b.Frames != 40+2*testCinPad || len(b.Wave) != 3*T || len(b.Mel) != 3*80*b.Frames {
			t.Fatalf("batch shape %+v", b)
		}
		for i, id := range b.IDs {
			s := b.Starts[i]
			u, _ := d.Utt(id)
			if s < testCinPad || s+40+testCinPad > u.Frames {
				t.Fatalf("%s: start %d leaves no context in %d frames", id, s, u.Frames)
			}
			// Padded by cinPad (= the batch's), so padded column s+j is
			// utterance frame s-cinPad+j: no replicated frame is involved.
			full, err := d.LoadUtterance(id, testCinPad)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(b.Wave[i*T:(i+1)*T], full.Wave[s*testHop:(s+40)*testHop]) {
				t.Fatalf("%s: wave crop is not samples [%d, %d)", id, s*testHop, (s+40)*testHop)
			}
			fw := full.Frames + 2*testCinPad
			for c := 0; c < 80; c++ {
				got := b.Mel[(i*80+c)*b.Frames : (i*80+c+1)*b.Frames]
				want := full.Mel[c*fw+s : c*fw+s+b.Frames]
				if !slices.Equal(got, want) {
					t.Fatalf("%s: mel channel %d crop misaligned", id, c)
				}
			}
			// And against the raw features: frame s-cinPad+j, dimension c,
			// normalised by hand.
			raw, _, _ := readFeats(d.Dir, id, 80)
			for _, j := range []int{0, 2, b.Frames - 1} {
				for _, c := range []int{0, 41, 79} {
					want := (float64(raw[(s-testCinPad+j)*80+c]) - d.Stats.Mean[c]) / d.Stats.Std[c]
					if got := float64(b.Mel[(i*80+c)*b.Frames+j]); math.Abs(got-want) > 1e-5 {
						t.Fatalf("%s frame %d dim %d: %g, want %g", id, j, c, got, want)
					}
				}
			}
		}
	}
}

// With batch size 1, the first N steps visit each eligible utterance once
// (an epoch), and crop starts cover their whole allowed range.
func TestBatcherEpochsAndStartRange(t *testing.T) {
	bt := newTestBatcher(t, "train", 1, 40*testHop, 3)
	n := bt.Len()
	var seen []string
	for step := 0; step < n; step++ {
		b, err := bt.Batch(step)
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, b.IDs[0])
	}
	slices.Sort(seen)
	if len(slices.Compact(seen)) != n {
		t.Fatalf("first epoch visited %d distinct utterances of %d", len(slices.Compact(seen)), n)
	}
	// Over many items, every utterance's crop starts cover exactly the
	// range that keeps cinPad context frames on both sides.
	lo := make([]int, n)
	hi := make([]int, n)
	for i := range lo {
		lo[i] = math.MaxInt
	}
	for k := 0; k < 20000*n; k++ {
		u, s := bt.pick(k)
		lo[u], hi[u] = min(lo[u], s), max(hi[u], s)
	}
	for u := range lo {
		if lo[u] != testCinPad || hi[u] != bt.frames[u]-40-testCinPad {
			t.Fatalf("%s: starts in [%d, %d], want [%d, %d]", bt.ids[u], lo[u], hi[u], testCinPad, bt.frames[u]-40-testCinPad)
		}
	}
}

// Utterances shorter than a crop plus context are skipped and reported.
func TestBatcherSkipsShortUtterances(t *testing.T) {
	d, err := OpenDump(sharedDump)
	if err != nil {
		t.Fatal(err)
	}
	var frames []int
	for _, id := range d.Split.Train {
		u, _ := d.Utt(id)
		frames = append(frames, u.Frames)
	}
	slices.Sort(frames)
	median := frames[len(frames)/2]
	F := median - 2*testCinPad // crop fits exactly the median utterance
	bt, err := d.NewBatcher("train", 2, F*testHop, testCinPad, testHop, 1)
	if err != nil {
		t.Fatal(err)
	}
	var wantSkipped int
	for _, f := range frames {
		if f < median {
			wantSkipped++
		}
	}
	if len(bt.Skipped) != wantSkipped || bt.Len() != len(frames)-wantSkipped || wantSkipped == 0 {
		t.Fatalf("skipped %d, kept %d; want %d skipped of %d", len(bt.Skipped), bt.Len(), wantSkipped, len(frames))
	}
	for step := 0; step < 10; step++ {
		b, err := bt.Batch(step)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range b.IDs {
			if slices.Contains(bt.Skipped, id) {
				t.Fatalf("skipped utterance %s in a batch", id)
			}
		}
	}
	if _, err := d.NewBatcher("train", 2, (frames[len(frames)-1]+1)*testHop, testCinPad, testHop, 1); err == nil || !strings.Contains(err.Error(), "long enough") {
		t.Fatalf("all too short: err = %v", err)
	}
}

func TestBatcherArgumentErrors(t *testing.T) {
	for _, c := range []struct {
		split         string
		b, T, pad, hp int
		want          string
	}{
		{"train", 2, 10240, 2, 200, "hop 200 does not match"},
		{"train", 2, 10000, 2, 256, "multiple of the hop"},
		{"train", 0, 10240, 2, 256, "batch size"},
		{"test", 2, 10240, 2, 256, "unknown split"},
		{"train", 2, 10240, -1, 256, "cin_pad"},
	} {
		_, err := NewBatcher(sharedDump, c.split, c.b, c.T, c.pad, c.hp, 1)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v", c, err)
		}
	}
	if _, err := NewBatcher(t.TempDir(), "train", 1, 256, 0, 256, 1); err == nil || !strings.Contains(err.Error(), "preprocess") {
		t.Errorf("empty dir: err = %v", err)
	}
}

// Whole utterances: mel padded with replicated edge frames; over the
// training split the normalised mel has zero mean and unit variance.
func TestLoadUtterancePaddingAndNormalisation(t *testing.T) {
	d, err := OpenDump(sharedDump)
	if err != nil {
		t.Fatal(err)
	}
	u, err := d.LoadUtterance(d.Split.Eval[0], 2)
	if err != nil {
		t.Fatal(err)
	}
	fw := u.Frames + 4
	if len(u.Mel) != 80*fw || len(u.Wave) != u.Frames*testHop {
		t.Fatalf("shapes: mel %d, wave %d, frames %d", len(u.Mel), len(u.Wave), u.Frames)
	}
	for c := 0; c < 80; c++ {
		row := u.Mel[c*fw : (c+1)*fw]
		if row[0] != row[2] || row[1] != row[2] || row[fw-1] != row[fw-3] || row[fw-2] != row[fw-3] {
			t.Fatalf("channel %d: edges not replicated: %v ... %v", c, row[:3], row[fw-3:])
		}
	}
	var n float64
	sum := make([]float64, 80)
	sq := make([]float64, 80)
	for _, id := range d.Split.Train {
		u, err := d.LoadUtterance(id, 0)
		if err != nil {
			t.Fatal(err)
		}
		n += float64(u.Frames)
		for c := 0; c < 80; c++ {
			for _, v := range u.Mel[c*u.Frames : (c+1)*u.Frames] {
				sum[c] += float64(v)
				sq[c] += float64(v) * float64(v)
			}
		}
	}
	for c := 0; c < 80; c++ {
		m := sum[c] / n
		v := sq[c]/n - m*m
		if math.Abs(m) > 1e-4 || math.Abs(v-1) > 1e-3 {
			t.Fatalf("dim %d: normalised training mean %g, variance %g", c, m, v)
		}
	}
	if _, err := d.LoadUtterance("LJ999-0001", 2); err == nil {
		t.Fatal("unknown id accepted")
	}
}

func BenchmarkBatch(b *testing.B) {
	bt, err := NewBatcher(sharedDump, "train", 8, 10240, 2, 256, 1)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		if _, err := bt.Batch(i); err != nil {
			b.Fatal(err)
		}
	}
}
