package wavenet

import (
	"errors"
	"math"

	"github.com/wavecat/wavecat/compute"
)

// The cluster step (wcl_step in generate.cu): wf_step's rounds on the
// blocks of a thread-block cluster, which pass each round's results
// through each other's shared memory and a cluster barrier instead of
// tagged words in L2. It needs a module that launches clusters
// (compute.ClusterLauncher: CUDA on compute capability 9.0 and newer, and
// the simulator).

// clusterSizes are the cluster sizes tried, largest first: 16 blocks is
// the most an H100/H200 runs (non-portable), 8 the most every sm_90 device
// does. Fewer blocks own more rows each. (A variable so tests can force
// several small clusters.)
var clusterSizes = []int{16, 8, 4, 2}

// clusterMaxBatch is the most utterances one cluster takes; a larger batch
// is spread over more clusters (or refused when fewer run at once).
const clusterMaxBatch = 8

// clusterByDefault makes GPUStepAuto take the cluster step where it is
// built. Off: it has not yet run on a GPU, so its speed and the
// conformance suite on hardware are unmeasured (scripts/gpu-check.sh
// --run measures both); auto keeps the one-launch step, which was.
var clusterByDefault = false

// clusterStep is wcl_step's weights, table and launch shape.
type clusterStep struct {
	w, tab compute.Buffer
	nb     int // blocks per cluster (the table's NB)
	nq     int // clusters that run at once
	block  int
	shared int // dynamic shared floats per block and utterance
	perQ   int // utterances a cluster takes at most (shared memory)
	// prof is wcl_step's profile counters (5 unsigned 64-bit words),
	// added to while GPUGenerator.clusterProfile is set.
	prof compute.Buffer
}

// clusterProfile is what wcl_step's profile says, per step: the kernel's
// time, the part of it until the prologue's barrier opened, and the part
// spent waiting at the rounds' barriers (measured on the first block; a
// GPU's clock64 ticks are converted with the kernel's global-timer time).
type clusterProfile struct {
	Steps                        int
	KernelUs, PrologueUs, WaitUs float64
}

// resetProfile zeroes the profile counters.
func (c *clusterStep) resetProfile(be compute.Backend) { be.Fill(compute.V(c.prof), c.prof.Len(), 0) }

// readProfile reads the profile counters.
func (c *clusterStep) readProfile(be compute.Backend) clusterProfile {
	h := make([]float32, c.prof.Len())
	be.Download(h, compute.V(c.prof))
	u := func(i int) float64 {
		return float64(uint64(math.Float32bits(h[2*i])) | uint64(math.Float32bits(h[2*i+1]))<<32)
	}
	p := clusterProfile{Steps: int(u(4))}
	if p.Steps == 0 || u(1) == 0 {
		return p
	}
	perTick := u(0) / u(1) / 1e3 / float64(p.Steps) // microseconds per tick, per step
	p.KernelUs = u(0) / 1e3 / float64(p.Steps)
	p.PrologueUs, p.WaitUs = u(2)*perTick, u(3)*perTick
	return p
}

// clusterShared is the dynamic shared memory (floats per utterance) of a
// block of wcl_step in a cluster of nb: wf_step's (fusedShared) and a
// second round input, for the double buffer.
func clusterShared(p *Generator, nb int) int {
	return fusedShared(p, nb) + max(p.Cin, p.R+p.H, p.S)
}

// newClusterStep builds wcl_step for the plan's folded weights w
// (genOffsets) on the largest cluster size of clusterSizes the module runs
// with the shared memory of clusterMaxBatch utterances (or as many as fit
// in fusedMaxShared). It returns nil where the module cannot launch
// clusters or none fits.
func newClusterStep(be compute.Backend, mod compute.Module, p *Generator, w []float32, ringOff []int) *clusterStep {
	cl, ok := mod.(compute.ClusterLauncher)
	if !ok {
		return nil
	}
	for _, nb := range clusterSizes {
		per := clusterShared(p, nb)
		perQ := min(clusterMaxBatch, fusedMaxShared/(4*per))
		if perQ < 1 || nb > max(p.H, p.R, p.S, p.O) {
			continue
		}
		nq := cl.CoResidentClusters("wcl_step", nb, fusedMaxBlock, 4*per*perQ)
		if nq < 1 {
			continue
		}
		c := &clusterStep{nb: nb, nq: nq, block: fusedMaxBlock, shared: per, perQ: perQ, prof: be.Alloc(10)}
		c.w, c.tab = uploadFused(be, p, w, nb, ringOff)
		c.resetProfile(be)
		return c
	}
	return nil
}

// clusters is the number of clusters a batch of B runs on: one per
// utterance up to the number that run at once, 0 when the batch does not
// fit (more than perQ utterances per cluster).
func (c *clusterStep) clusters(B int) int {
	nq := min(B, c.nq)
	if nq < 1 || (B+nq-1)/nq > c.perQ {
		return 0
	}
	return nq
}

func (c *clusterStep) free(be compute.Backend) {
	be.Free(c.w)
	be.Free(c.tab)
	be.Free(c.prof)
}

// clusterStep returns the cluster step, building it on first use (nil
// where the backend cannot launch clusters).
func (g *GPUGenerator) clusterStep() *clusterStep {
	if !g.clusterTried {
		g.clusterTried = true
		g.cluster = newClusterStep(g.be, g.mod, g.plan, g.hostWeights(), g.ring)
	}
	return g.cluster
}

// errNoCluster: GPUStepCluster asked where the cluster step cannot run.
var errNoCluster = errors.New("wavenet: GPU generator: the cluster step is not available here (it needs thread-block clusters: a GPU of compute capability 9.0 or newer and CUDA 12), or the batch needs more clusters than run at once")

// clusterLaunch queues wcl_step for st's slots.
func (g *GPUGenerator) clusterLaunch(st *gpuState) {
	c := g.cluster
	nq := c.clusters(st.B)
	profile := 0
	if g.clusterProfile {
		profile = 1
	}
	g.mod.(compute.ClusterLauncher).LaunchCluster("wcl_step", nq*c.nb, c.nb, c.block, 4*c.shared*((st.B+nq-1)/nq),
		whole(c.w), whole(c.tab), whole(st.ring), whole(st.proj), whole(st.enc), whole(st.out), whole(st.tbuf), compute.Int(st.B), compute.Float(g.plan.skipNorm),
		whole(c.prof), compute.Int(profile))
}
