package wavenet

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cuda"
	"github.com/wavecat/wavecat/compute/cudasim"
	"github.com/wavecat/wavecat/outputs"
)

// The GPU generator's tests need a CUDA GPU (scripts/gpu-check.sh runs them
// on one); without one they skip, saying why. Their TestCPUSim* twins run
// the same checks on compute/cudasim, which builds generate.cu and the head
// kernels with g++ for the CPU (they skip without g++).
// TestGenerateSourceCompiles needs only NVRTC.

var (
	gpuOnce sync.Once
	gpuBe   *cuda.Backend
	gpuErr  error
)

func gpuOrSkip(tb testing.TB) *cuda.Backend {
	tb.Helper()
	gpuOnce.Do(func() { gpuBe, gpuErr = cuda.New(cuda.Options{}) })
	if gpuErr != nil {
		tb.Skipf("no CUDA GPU here, GPU test skipped: %s", strings.SplitN(gpuErr.Error(), "\n", 2)[0])
	}
	return gpuBe
}

var (
	simOnce sync.Once
	simBe   *cudasim.Backend
	simErr  error
)

// simOrSkip is the CPU simulator of the GPU backend (compute/cudasim),
// shared by the tests; it skips without g++.
func simOrSkip(tb testing.TB) *cudasim.Backend {
	tb.Helper()
	simOnce.Do(func() { simBe, simErr = cudasim.New(cudasim.Options{}) })
	if errors.Is(simErr, cudasim.ErrNoCompiler) {
		tb.Skip(simErr)
	}
	if simErr != nil {
		tb.Fatal(simErr)
	}
	return simBe
}

// simCases are the named gpuCases, for the simulator. A launch there costs
// about a thousand times what it does on a GPU (every thread of every block
// is a fiber on the CPU): a check takes 7-10 s per tiny model and 18-23 s
// per wide one on two cores, so each simulated test runs two cases, which
// keeps go test ./wavenet under a minute. Between them they cover kernel
// sizes 2 and 3, one-hot and scalar inputs, a warp and a thread sampler,
// and the wide model's multi-row warp loops and block slices; the GPU runs
// every case.
func simCases(t *testing.T, names ...string) []gpuCase {
	t.Helper()
	all := gpuCases()
	var cs []gpuCase
	for _, n := range names {
		i := slices.IndexFunc(all, func(c gpuCase) bool { return c.name == n })
		if i < 0 {
			t.Fatalf("no gpuCase %q", n)
		}
		cs = append(cs, all[i])
	}
	return cs
}

// TestGenerateSourceCompiles compiles generate.cu with NVRTC (CI installs
// it; no GPU needed) for sm_80 and for sm_90, where the cluster step's
// barrier, rank and shared-memory mapping become PTX cluster instructions
// (on sm_80 the kernel is a trap).
func TestGenerateSourceCompiles(t *testing.T) {
	ptx := map[int]string{}
	for _, sm := range []int{80, 90} {
		p, err := cuda.CheckCompileFor("wavenet/generate.cu", GenerateSource(), sm)
		if errors.Is(err, cuda.ErrNoNVRTC) {
			t.Skipf("NVRTC not installed (scripts/install-nvrtc.sh): %s", strings.SplitN(err.Error(), "\n", 2)[0])
		}
		if err != nil {
			t.Fatal(err)
		}
		ptx[sm] = p
	}
	body := func(sm int) string {
		p := ptx[sm]
		i := strings.Index(p, ".entry wcl_step(")
		if i < 0 {
			t.Fatalf("sm_%d: no wcl_step in the PTX", sm)
		}
		if j := strings.Index(p[i+1:], ".entry "); j >= 0 {
			return p[i : i+1+j]
		}
		return p[i:]
	}
	for _, want := range []string{"barrier.cluster.arrive", "barrier.cluster.wait", "mapa.u64", "%cluster_ctarank"} {
		if !strings.Contains(body(90), want) {
			t.Errorf("sm_90: wcl_step has no %s", want)
		}
	}
	if b := body(80); !strings.Contains(b, "trap") || strings.Contains(b, "barrier.cluster") {
		t.Error("sm_80: wcl_step should be a trap without cluster instructions")
	}
}

// gpuTwin builds a GPU model with the CPU model's parameters.
func gpuTwin(t *testing.T, be compute.Backend, m *Model) *Model {
	t.Helper()
	g, err := New(m.Config(), be, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.ImportTensors(m.ExportTensors()); err != nil {
		t.Fatal(err)
	}
	return g
}

// gpuCase is one model for the GPU generator tests: the tiny model of every
// head at k = 2 and 3, wider ones (64/128/64, 6 layers) so the step
// kernels' warp loops and block slices run at sizes like the reference's,
// and the reference config itself.
type gpuCase struct {
	name  string
	spec  string
	k     int
	shape caseShape
}

// caseShape is a gpuCase's network.
type caseShape int

const (
	shapeTiny caseShape = iota // genModel: TinyConfig, hop 4
	shapeWide                  // 64/128/64, 6 layers
	// shapeLong: residual and gate halves of 256 (2 layers), so the
	// one-launch step's rows (R+H = 512) outrun the weights it keeps in
	// registers (WF_NREG*32 = 384) and take its loop over the rest.
	shapeLong
	// shapeReference: the reference config (24 layers, 128/256/128, hop
	// 256), so the GPU tests run the one-launch step on the grid the
	// driver sizes for it, as vocode does (too slow for the simulator).
	shapeReference
)

func gpuCases() []gpuCase {
	var cs []gpuCase
	for _, spec := range genHeads {
		for _, k := range []int{2, 3} {
			cs = append(cs, gpuCase{fmt.Sprintf("%s/k%d", strings.Fields(spec)[0], k), spec, k, shapeTiny})
		}
	}
	return append(cs, gpuCase{"mol-wide/k3", "mol --mixtures 10 --levels 65536", 3, shapeWide},
		gpuCase{"mulaw256-wide/k2", "mulaw --bins 256", 2, shapeWide},
		gpuCase{"gaussian-long/k2", "gaussian", 2, shapeLong},
		gpuCase{"mol-reference/k3", "mol --mixtures 10 --levels 65536", 3, shapeReference})
}

// generator builds the case's model on the CPU and a GPU generator on be
// with the same weights (all freed when the test ends).
func (c gpuCase) generator(t *testing.T, cpuBe, be compute.Backend) (*Model, outputs.Head, *GPUGenerator) {
	t.Helper()
	m, h := c.model(t, cpuBe)
	t.Cleanup(m.Free)
	gm := gpuTwin(t, be, m)
	t.Cleanup(gm.Free)
	dev, err := outputs.NewDevice(h, be)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dev.Free)
	g, err := NewGPUGenerator(gm, h, dev)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Free)
	return m, h, g
}

// lockstepSlots is each utterance's slot in Generate's group: utterances
// sorted longest first, ties in input order (frames per utterance). It
// restates the documented order rather than calling Generate's code, so
// the tests check it.
func lockstepSlots(frames []int) []int {
	order := make([]int, len(frames))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return frames[order[a]] > frames[order[b]] })
	slot := make([]int, len(frames))
	for s, i := range order {
		slot[i] = s
	}
	return slot
}

// traceDiff compares slot b's step outputs in trace [T][B][O] with the
// parallel output ref [O][T]: the largest difference and the largest |ref|.
func traceDiff(trace, ref []float32, T, B, b, O int) (worst, scale float64) {
	for tt := 0; tt < T; tt++ {
		for o := 0; o < O; o++ {
			r := float64(ref[o*T+tt])
			scale = max(scale, math.Abs(r))
			worst = max(worst, math.Abs(float64(trace[(tt*B+b)*O+o])-r))
		}
	}
	return worst, scale
}

func (c gpuCase) model(t *testing.T, cpuBe compute.Backend) (*Model, outputs.Head) {
	t.Helper()
	if c.shape == shapeTiny {
		return genModel(t, cpuBe, c.spec, c.k, int64(c.k*100+len(c.spec)))
	}
	h, err := outputs.New(c.spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := TinyConfig(h.Channels(), h.InputChannels(), 20)
	cfg.Layers, cfg.Stacks = 6, 2
	cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels = 64, 128, 64
	switch c.shape {
	case shapeLong:
		cfg.Layers, cfg.Stacks = 2, 1
		cfg.ResidualChannels, cfg.GateChannels, cfg.SkipChannels = 256, 512, 32
	case shapeReference:
		cfg = ReferenceConfig(h.Channels(), h.InputChannels())
	}
	cfg.KernelSize = c.k
	m, err := New(cfg, cpuBe, 5)
	if err != nil {
		t.Fatal(err)
	}
	ts := m.ExportTensors()
	rng := rand.New(rand.NewPCG(9, 7))
	for _, tt := range ts {
		if strings.HasSuffix(tt.Name, ".bias") {
			for i := range tt.Data {
				tt.Data[i] = float32(0.2 * rng.NormFloat64())
			}
		}
	}
	if err := m.ImportTensors(ts); err != nil {
		t.Fatal(err)
	}
	return m, h
}

// TestGPUGenerateMatchesForward: teacher-forced on random waveforms, the GPU
// step's head outputs at every sample equal the CPU parallel Forward's,
// for three utterances of different lengths batched in lockstep (so the
// rings wrap, chunks and graph replays cross, and shorter utterances run
// past their end).
func TestGPUGenerateMatchesForward(t *testing.T) {
	be := gpuOrSkip(t)
	for _, path := range gpuPaths {
		t.Run(path.name, func(t *testing.T) { checkGenerateMatchesForward(t, be, gpuCases(), path.path) })
	}
}

// gpuPaths are the GPU generator's step kernels, each tested on a GPU.
var gpuPaths = []struct {
	name string
	path GPUStep
}{{"layered", GPUStepLayered}, {"fused", GPUStepFused}, {"cluster", GPUStepCluster}}

// TestCPUSimGenerateMatchesForward is the same check on the CPU simulator,
// for a tiny one-hot model at k = 2 and the wide mixture model at k = 3.
func TestCPUSimGenerateMatchesForward(t *testing.T) {
	checkGenerateMatchesForward(t, simOrSkip(t), simCases(t, "mulaw/k2", "mol-wide/k3"), GPUStepLayered)
}

// TestCPUSimFusedMatchesForward is the same check of the one-launch step
// (wf_step), whose blocks run at once on the simulator's workers, for the
// wide mixture model at k = 3, a tiny one-hot model at k = 2 and the
// long-row model.
func TestCPUSimFusedMatchesForward(t *testing.T) {
	checkGenerateMatchesForward(t, simOrSkip(t), simCases(t, "mol-wide/k3", "categorical/k2", "gaussian-long/k2"), GPUStepFused)
}

// TestCPUSimClusterMatchesForward is the same check of the cluster step
// (wcl_step) on clusters of 16 blocks, the size an H100 or H200 runs
// (a simulator with 16 workers), for the wide mixture model at k = 3 and
// the long-row model.
func TestCPUSimClusterMatchesForward(t *testing.T) {
	simOrSkip(t) // skips without g++
	be, err := cudasim.New(cudasim.Options{Workers: 16})
	if err != nil {
		t.Fatal(err)
	}
	old := clusterSizes
	clusterSizes = []int{16}
	defer func() { clusterSizes = old }()
	checkGenerateMatchesForward(t, be, simCases(t, "mol-wide/k3", "gaussian-long/k2"), GPUStepCluster)
}

// skipWithoutClusters skips a check of the cluster step where the backend
// cannot run it (a GPU older than sm_90); the simulator always can.
func skipWithoutClusters(t *testing.T, g *GPUGenerator, path GPUStep) {
	t.Helper()
	if path == GPUStepCluster && g.clusterStep() == nil {
		if _, sim := g.be.(*cudasim.Backend); sim {
			t.Fatalf("the simulator built no cluster step (sizes tried: %v)", clusterSizes)
		}
		t.Skip("no thread-block clusters on this device")
	}
}

func checkGenerateMatchesForward(t *testing.T, be compute.Backend, cases []gpuCase, path GPUStep) {
	cpuBe := newCPU(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, h, g := c.generator(t, cpuBe, be)
			skipWithoutClusters(t, g, path)
			cfg := m.Config()
			C, O, Cin, hop := cfg.CinChannels, cfg.OutChannels, cfg.InputChannels, cfg.HopSize()
			frames := []int{(gpuChunk + 3*hop) / hop * 2, gpuChunk/hop + 1, 7}
			B := len(frames)
			Tmax := slices.Max(frames) * hop
			slotOf := lockstepSlots(frames)
			if Tmax <= cfg.ReceptiveField() || Tmax <= 2*gpuChunk {
				t.Fatalf("Tmax=%d too short for the receptive field %d and two chunks", Tmax, cfg.ReceptiveField())
			}
			rng := rand.New(rand.NewPCG(11, uint64(len(c.name))))
			utts := make([]Utterance, B)
			ys := make([][]float32, B)
			encAll := make([]float32, Tmax*B*Cin)
			enc := make([]float32, Cin)
			for b := range utts {
				utts[b] = Utterance{Mel: randMel(rng, frames[b], C), Seed: uint64(b)}
				T := frames[b] * hop
				ys[b] = make([]float32, T)
				for i := range ys[b] {
					ys[b][i] = float32(0.6 * math.Sin(float64(i)*0.05*float64(b+1)) * (0.8 + 0.2*rng.Float64()))
				}
				for tt := 0; tt < T; tt++ {
					prev := float32(0)
					if tt > 0 {
						prev = ys[b][tt-1]
					}
					h.EncodeInput(prev, enc)
					copy(encAll[(tt*B+slotOf[b])*Cin:], enc) // the forced inputs are per slot
				}
			}
			fb, tb := be.Alloc(len(encAll)), be.Alloc(Tmax*B*O)
			defer be.Free(fb)
			defer be.Free(tb)
			be.Upload(compute.V(fb), encAll)
			g.force, g.trace = compute.V(fb), compute.V(tb)
			if _, err := g.Generate(utts, GenerateOptions{Batch: B, GPUStep: path}); err != nil {
				t.Fatal(err)
			}
			trace := make([]float32, Tmax*B*O)
			be.Download(trace, compute.V(tb))
			for b := range utts {
				T := frames[b] * hop
				worst, scale := traceDiff(trace, forwardOutputs(t, m, h, utts[b].Mel, ys[b]), T, B, slotOf[b], O)
				if scale == 0 {
					t.Fatal("parallel output is all zero")
				}
				if worst > 1e-4*max(1, scale) {
					t.Errorf("utterance %d (%d samples): max |GPU step - CPU Forward| = %.3g (scale %.3g), want <= 1e-4", b, T, worst, scale)
				}
			}
		})
	}
}

// TestGPUGenerateFreeRunning: sampling on the GPU feeds back what the head
// encodes (the step outputs over the generated waveform equal the CPU
// Forward over it), samples are finite and in [-1,1], a seed reproduces its
// waveform, and an utterance's samples do not depend on its batch-mates.
func TestGPUGenerateFreeRunning(t *testing.T) {
	be := gpuOrSkip(t)
	for _, path := range gpuPaths {
		t.Run(path.name, func(t *testing.T) { checkGenerateFreeRunning(t, be, gpuCases(), path.path) })
	}
}

// TestCPUSimGenerateFreeRunning is the same check on the CPU simulator, for
// a head sampled by a warp per utterance with one-hot inputs (categorical,
// k = 3) and one sampled by a thread per utterance with scalar inputs (mol,
// k = 2).
func TestCPUSimGenerateFreeRunning(t *testing.T) {
	checkGenerateFreeRunning(t, simOrSkip(t), simCases(t, "categorical/k3", "mol/k2"), GPUStepLayered)
}

// TestCPUSimFusedFreeRunning is the same check of the one-launch step for
// AdaCat (a warp per utterance samples) and the Gaussian head (a thread),
// both at k = 3.
func TestCPUSimFusedFreeRunning(t *testing.T) {
	checkGenerateFreeRunning(t, simOrSkip(t), simCases(t, "adacat/k3", "gaussian/k3"), GPUStepFused)
}

// TestCPUSimClusterFreeRunning is the same check of the cluster step for
// AdaCat at k = 3.
func TestCPUSimClusterFreeRunning(t *testing.T) {
	checkGenerateFreeRunning(t, simOrSkip(t), simCases(t, "adacat/k3"), GPUStepCluster)
}

func checkGenerateFreeRunning(t *testing.T, be compute.Backend, cases []gpuCase, path GPUStep) {
	cpuBe := newCPU(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, h, g := c.generator(t, cpuBe, be)
			skipWithoutClusters(t, g, path)
			cfg := m.Config()
			C, O, hop := cfg.CinChannels, cfg.OutChannels, cfg.HopSize()
			rng := rand.New(rand.NewPCG(5, 6))
			frames := []int{gpuChunk/hop + 9, 40, gpuChunk/hop + 2}
			utts := make([]Utterance, len(frames))
			for i, f := range frames {
				utts[i] = Utterance{Mel: randMel(rng, f, C), Seed: uint64(100 + i)}
			}
			B := len(utts)
			Tmax := slices.Max(frames) * hop
			tb := be.Alloc(Tmax * B * O)
			defer be.Free(tb)
			g.trace = compute.V(tb)
			ys, err := g.Generate(utts, GenerateOptions{Batch: B, GPUStep: path})
			if err != nil {
				t.Fatal(err)
			}
			g.trace = compute.View{}
			trace := make([]float32, Tmax*B*O)
			be.Download(trace, compute.V(tb))
			slotOf := lockstepSlots(frames)
			for i, y := range ys {
				if len(y) != frames[i]*hop {
					t.Fatalf("utterance %d: %d samples, want %d", i, len(y), frames[i]*hop)
				}
				distinct := map[float32]bool{}
				for j, v := range y {
					if math.IsNaN(float64(v)) || v < -1 || v > 1 {
						t.Fatalf("utterance %d sample %d = %v, want finite in [-1,1]", i, j, v)
					}
					distinct[v] = true
				}
				if len(distinct) < 3 {
					t.Errorf("utterance %d: only %d distinct sample values", i, len(distinct))
				}
				T := len(y)
				worst, scale := traceDiff(trace, forwardOutputs(t, m, h, utts[i].Mel, y), T, B, slotOf[i], O)
				if worst > 1e-4*max(1, scale) {
					t.Errorf("utterance %d: step outputs over the generated waveform differ from Forward by %.3g (scale %.3g)", i, worst, scale)
				}
			}
			again, err := g.Generate(utts, GenerateOptions{Batch: B, GPUStep: path})
			if err != nil {
				t.Fatal(err)
			}
			alone, err := g.Generate(utts[1:2], GenerateOptions{Batch: 1, GPUStep: path})
			if err != nil {
				t.Fatal(err)
			}
			for i := range ys {
				for j := range ys[i] {
					if again[i][j] != ys[i][j] {
						t.Fatalf("utterance %d: a second run with the same seeds differs at sample %d", i, j)
					}
				}
			}
			for j := range alone[0] {
				if alone[0][j] != ys[1][j] {
					t.Fatalf("utterance 1 alone differs from it in a batch of 3 at sample %d", j)
				}
			}
			other := []Utterance{{Mel: utts[1].Mel, Seed: 7}}
			diff, err := g.Generate(other, GenerateOptions{GPUStep: path})
			if err != nil {
				t.Fatal(err)
			}
			same := 0
			for j := range diff[0] {
				if diff[0][j] == ys[1][j] {
					same++
				}
			}
			if same == len(diff[0]) {
				t.Errorf("another seed gave the same waveform")
			}
		})
	}
}

// TestCPUSimFusedStallFallsBack: a one-launch step given more blocks than
// run at once (on the simulator, more than its workers) stalls; the
// blocks give up waiting and flag it, a forced fused run reports it, and
// the default path (with the one-launch step as its default) reruns the
// group with the layered kernels, giving exactly the layered path's
// waveform.
func TestCPUSimFusedStallFallsBack(t *testing.T) {
	be := simOrSkip(t)
	c := simCases(t, "mol/k2")[0]
	m, h, g := c.generator(t, newCPU(t), be)
	if g.fusedStep() == nil {
		t.Fatal("no one-launch step on the simulator")
	}
	_, w, err := newPlan(gpuTwin(t, be, m), h)
	if err != nil {
		t.Fatal(err)
	}
	nb := g.fused.nb + 1
	g.fused.free(be)
	g.fused = newFusedStep(be, g.mod, g.plan, w, g.ring, nb)
	cfg := m.Config()
	utts := []Utterance{{Mel: randMel(rand.New(rand.NewPCG(3, 4)), 3, cfg.CinChannels), Seed: 5}}
	if _, err := g.Generate(utts, GenerateOptions{GPUStep: GPUStepFused}); !errors.Is(err, errNotCoResident) {
		t.Fatalf("forced one-launch step on %d blocks: err = %v, want errNotCoResident", nb, err)
	}
	defaultFused(t, true)
	got, err := g.Generate(utts, GenerateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, err := g.Generate(utts, GenerateOptions{GPUStep: GPUStepLayered})
	if err != nil {
		t.Fatal(err)
	}
	if len(got[0]) != len(want[0]) {
		t.Fatalf("%d samples, want %d", len(got[0]), len(want[0]))
	}
	for i := range want[0] {
		if got[0][i] != want[0][i] {
			t.Fatalf("sample %d: %v after the fallback, %v from the layered kernels", i, got[0][i], want[0][i])
		}
	}
}

// TestStepKernelsChoice: ParseGPUStep reads the four names and refuses
// others; a forced one-launch step fails, before any launch, where it does
// not apply (a batch above fusedMaxBatch); auto follows fusedByDefault,
// and takes the cluster step only with clusterByDefault; a backend without
// clusters refuses a forced cluster step and auto falls back.
func TestStepKernelsChoice(t *testing.T) {
	for s, want := range map[string]GPUStep{"auto": GPUStepAuto, "": GPUStepAuto, "layered": GPUStepLayered, "fused": GPUStepFused, "cluster": GPUStepCluster} {
		if got, err := ParseGPUStep(s); err != nil || got != want {
			t.Errorf("ParseGPUStep(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := ParseGPUStep("persistent"); err == nil || !strings.Contains(err.Error(), `"persistent"`) {
		t.Errorf("ParseGPUStep(persistent): err = %v", err)
	}
	be := simOrSkip(t)
	m, _, g := simCases(t, "gaussian/k2")[0].generator(t, newCPU(t), be)
	rng := rand.New(rand.NewPCG(1, 2))
	utts := make([]Utterance, fusedMaxBatch+1)
	for i := range utts {
		utts[i] = Utterance{Mel: randMel(rng, 2, m.Config().CinChannels)}
	}
	_, err := g.Generate(utts, GenerateOptions{Batch: len(utts), GPUStep: GPUStepFused})
	if err == nil || !strings.Contains(err.Error(), "one-launch step is not available") {
		t.Errorf("fused step at batch %d: err = %v", len(utts), err)
	}
	// At batch 1 the one-launch step applies: fused forces it, layered
	// refuses it, auto takes it only where it is the default. Above
	// fusedAutoMaxBatch only fused takes it.
	for _, def := range []bool{false, true} {
		defaultFused(t, def)
		for step, want := range map[GPUStep]bool{GPUStepFused: true, GPUStepLayered: false, GPUStepAuto: def} {
			if got, err := g.useFused(step, 1, 256); err != nil || got != want {
				t.Errorf("fusedByDefault %v: useFused(%v, batch 1) = %v, %v; want %v", def, step, got, err, want)
			}
		}
		for step, want := range map[GPUStep]bool{GPUStepFused: true, GPUStepLayered: false, GPUStepAuto: false} {
			if got, err := g.useFused(step, fusedAutoMaxBatch+1, 256); err != nil || got != want {
				t.Errorf("fusedByDefault %v: useFused(%v, batch %d) = %v, %v; want %v", def, step, fusedAutoMaxBatch+1, got, err, want)
			}
		}
	}
	defaultFused(t, true)
	for _, def := range []bool{false, true} {
		old := clusterByDefault
		clusterByDefault = def
		want := map[bool]GPUStep{false: GPUStepFused, true: GPUStepCluster}[def]
		if got, err := g.stepFor(GPUStepAuto, 1, 256); err != nil || got != want {
			t.Errorf("clusterByDefault %v: auto at batch 1 runs %v, %v; want %v", def, got, err, want)
		}
		if got, err := g.stepFor(GPUStepCluster, 1, 256); err != nil || got != GPUStepCluster {
			t.Errorf("clusterByDefault %v: a forced cluster step runs %v, %v", def, got, err)
		}
		if got, err := g.stepFor(GPUStepLayered, 1, 256); err != nil || got != GPUStepLayered {
			t.Errorf("clusterByDefault %v: layered runs %v, %v", def, got, err)
		}
		clusterByDefault = old
	}
	// Without clusters (the sizes tried all too large for the simulator's
	// workers): a forced cluster step fails, auto falls back.
	_, _, g2 := simCases(t, "gaussian/k2")[0].generator(t, newCPU(t), be)
	oldSizes, oldDef := clusterSizes, clusterByDefault
	clusterSizes, clusterByDefault = []int{64}, true
	defer func() { clusterSizes, clusterByDefault = oldSizes, oldDef }()
	if _, err := g2.stepFor(GPUStepCluster, 1, 256); !errors.Is(err, errNoCluster) {
		t.Errorf("no clusters: a forced cluster step gives %v, want errNoCluster", err)
	}
	if got, err := g2.stepFor(GPUStepAuto, 1, 256); err != nil || got != GPUStepFused {
		t.Errorf("no clusters: auto runs %v, %v; want the one-launch step", got, err)
	}
}

// defaultFused sets fusedByDefault for the rest of the test.
func defaultFused(t *testing.T, on bool) {
	old := fusedByDefault
	fusedByDefault = on
	t.Cleanup(func() { fusedByDefault = old })
}

// TestCPUSimFusedFullBatch: the one-launch step at its largest batch
// (fusedMaxBatch = 32 utterances of different lengths) gives each utterance
// exactly the waveform it gets alone, so every slot's exchange words,
// rings, skip sums and outputs are its own.
func TestCPUSimFusedFullBatch(t *testing.T) {
	be := simOrSkip(t)
	m, _, g := simCases(t, "mulaw/k3")[0].generator(t, newCPU(t), be)
	cfg := m.Config()
	rng := rand.New(rand.NewPCG(8, 9))
	utts := make([]Utterance, fusedMaxBatch)
	for i := range utts {
		utts[i] = Utterance{Mel: randMel(rng, 3+2*(i%5), cfg.CinChannels), Seed: uint64(40 + i)}
	}
	checkBatchEqualsAlone(t, g, utts, GPUStepFused)
}

// checkBatchEqualsAlone: with step, every utterance of utts generated in
// one batch gets exactly the waveform it gets alone.
func checkBatchEqualsAlone(t *testing.T, g *GPUGenerator, utts []Utterance, step GPUStep) {
	t.Helper()
	all, err := g.Generate(utts, GenerateOptions{Batch: len(utts), GPUStep: step})
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range utts {
		alone, err := g.Generate([]Utterance{u}, GenerateOptions{GPUStep: step})
		if err != nil {
			t.Fatal(err)
		}
		if len(alone[0]) != len(all[i]) {
			t.Fatalf("utterance %d: %d samples alone, %d in the batch", i, len(alone[0]), len(all[i]))
		}
		for j := range alone[0] {
			if alone[0][j] != all[i][j] {
				t.Fatalf("utterance %d differs at sample %d: %v alone, %v in a batch of %d", i, j, alone[0][j], all[i][j], len(utts))
			}
		}
	}
}

// TestCPUSimClusterGroups: on a simulator with four workers, a batch of 5
// utterances of different lengths runs on one cluster of 4 blocks and,
// with the cluster size forced to 2, on two clusters (2 and 3 utterances
// each); either way every utterance gets exactly the waveform it gets
// alone, so each cluster's share of the batch, its rings, skip sums and
// outputs are its own. A batch larger than the clusters take is refused.
func TestCPUSimClusterGroups(t *testing.T) {
	simOrSkip(t) // skips without g++
	be, err := cudasim.New(cudasim.Options{Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		sizes  []int
		nb, nq int
	}{{clusterSizes, 4, 1}, {[]int{2}, 2, 2}} {
		t.Run(fmt.Sprintf("clusters-of-%d", c.nb), func(t *testing.T) {
			old := clusterSizes
			clusterSizes = c.sizes
			defer func() { clusterSizes = old }()
			m, _, g := simCases(t, "mulaw/k3")[0].generator(t, newCPU(t), be)
			cs := g.clusterStep()
			if cs == nil || cs.nb != c.nb || cs.clusters(5) != c.nq {
				t.Fatalf("cluster step %+v, want %d clusters of %d for 5 utterances", cs, c.nq, c.nb)
			}
			rng := rand.New(rand.NewPCG(3, 4))
			utts := make([]Utterance, 5)
			for i := range utts {
				utts[i] = Utterance{Mel: randMel(rng, 3+2*i, m.Config().CinChannels), Seed: uint64(60 + i)}
			}
			checkBatchEqualsAlone(t, g, utts, GPUStepCluster)
			// More utterances than the clusters that run at once take.
			big := make([]Utterance, c.nq*cs.perQ+1)
			for i := range big {
				big[i] = utts[0]
			}
			if _, err := g.Generate(big, GenerateOptions{Batch: len(big), GPUStep: GPUStepCluster}); !errors.Is(err, errNoCluster) {
				t.Errorf("a batch of %d on %d clusters of at most %d: %v, want errNoCluster", len(big), c.nq, cs.perQ, err)
			}
		})
	}
}

// TestCPUSimClusterProfile: with clusterProfile set, wcl_step counts one
// step per sample generated, and its prologue and barrier-wait times are
// parts of its kernel time; without it the counters stay at zero.
func TestCPUSimClusterProfile(t *testing.T) {
	be := simOrSkip(t)
	m, _, g := simCases(t, "mulaw/k3")[0].generator(t, newCPU(t), be)
	c := g.clusterStep()
	if c == nil {
		t.Fatal("no cluster step on the simulator")
	}
	utts := []Utterance{{Mel: randMel(rand.New(rand.NewPCG(5, 5)), 4, m.Config().CinChannels), Seed: 1}}
	if _, err := g.Generate(utts, GenerateOptions{GPUStep: GPUStepCluster}); err != nil {
		t.Fatal(err)
	}
	if p := c.readProfile(be); p.Steps != 0 {
		t.Errorf("profile off: %+v, want nothing counted", p)
	}
	g.clusterProfile = true
	ys, err := g.Generate(utts, GenerateOptions{GPUStep: GPUStepCluster})
	if err != nil {
		t.Fatal(err)
	}
	p := c.readProfile(be)
	if p.Steps != len(ys[0]) {
		t.Errorf("profile counted %d steps, want one per sample (%d)", p.Steps, len(ys[0]))
	}
	if !(p.KernelUs > 0 && p.PrologueUs > 0 && p.WaitUs >= 0 && p.PrologueUs+p.WaitUs <= p.KernelUs) {
		t.Errorf("profile %+v: want prologue and waits within a positive kernel time", p)
	}
	t.Logf("simulator: %+v", p)
}
