package wavenet

import (
	"testing"

	"github.com/wavecat/wavecat/outputs"
)

// fakeOccupancy answers CoResidentBlocks for wf_step the way the driver's
// occupancy API does on a GPU with sms multiprocessors running at most
// perSM blocks each (registers) and smem bytes of shared memory each: 0
// blocks when a block's static and dynamic shared memory together pass the
// 48 KiB per-block default, which is what the H200 answered when the grid
// was sized by asking for the whole 48 KiB.
type fakeOccupancy struct {
	sms, perSM, smem int
	asked            []int
}

const wfStaticShared = 4 // wf_step's __shared__ int wf_stop

func (f *fakeOccupancy) CoResidentBlocks(kernel string, block, shared int) int {
	f.asked = append(f.asked, shared)
	if kernel != "wf_step" || block > fusedMaxBlock || shared+wfStaticShared > 48<<10 {
		return 0
	}
	return f.sms * min(f.perSM, f.smem/(shared+wfStaticShared+1024)) // 1 KiB: the driver's per-block reserve
}

// TestFusedGrid: the one-launch step's grid for the reference config is one
// block per row of the widest round where the GPU runs that many at once,
// else as many as it runs, and the shared memory it asks the driver about
// is what that grid needs (never over the per-block limit).
func TestFusedGrid(t *testing.T) {
	for _, c := range []struct {
		spec             string
		sms, perSM, want int
	}{
		{"mol --mixtures 10 --levels 65536", 132, 1, 128}, // H100/H200: widest round is the 128 gate pairs
		{"adacat --components 128", 132, 1, 132},          // 256 output rows, more than the SMs
		{"adacat --components 128", 132, 2, 256},
		{"mol --mixtures 10 --levels 65536", 108, 1, 108}, // A100
		{"mol --mixtures 10 --levels 65536", 2, 1, 2},     // a block owns 64 rows: shared memory at its cap
		{"mol --mixtures 10 --levels 65536", 0, 1, 0},     // no block fits
	} {
		h, err := outputs.New(c.spec)
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(ReferenceConfig(h.Channels(), h.InputChannels()), newCPU(t), 1)
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := newPlan(m, h)
		m.Free()
		if err != nil {
			t.Fatal(err)
		}
		f := &fakeOccupancy{sms: c.sms, perSM: c.perSM, smem: 228 << 10}
		got := fusedGrid(p, f)
		if got != c.want {
			t.Errorf("%s on %d SMs x %d: grid %d, want %d (asked with %v bytes)", h.Name(), c.sms, c.perSM, got, c.want, f.asked)
		}
		for _, s := range f.asked {
			if s+wfStaticShared > 48<<10 {
				t.Errorf("%s: asked about %d bytes of dynamic shared memory: over the per-block limit with wf_step's static word", h.Name(), s)
			}
		}
		if got > 0 {
			if n := f.CoResidentBlocks("wf_step", fusedMaxBlock, fusedGridShared(p, got)); n < got {
				t.Errorf("%s: grid %d, but only %d blocks with its shared memory run at once", h.Name(), got, n)
			}
		}
	}
}
