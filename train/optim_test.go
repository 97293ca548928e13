package train

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/computetest"
	"github.com/wavecat/wavecat/compute/cpu"
)

func newCPU(t testing.TB) compute.Backend {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	return be
}

// adamRef is PyTorch's Adam written out in float64.
func adamRef(p0 []float64, grads [][]float64, lr []float64, b1, b2, eps float64) []float64 {
	x := append([]float64{}, p0...)
	m := make([]float64, len(x))
	v := make([]float64, len(x))
	for t, g := range grads {
		step := float64(t + 1)
		for i := range x {
			m[i] = b1*m[i] + (1-b1)*g[i]
			v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
			bc1 := 1 - math.Pow(b1, step)
			bc2 := 1 - math.Pow(b2, step)
			x[i] -= lr[t] / bc1 * m[i] / (math.Sqrt(v[i])/math.Sqrt(bc2) + eps)
		}
	}
	return x
}

var (
	adamP0    = []float32{0.5, -1.25, 3, 0, 1e-3}
	adamGrads = [][]float32{
		{0.1, -2, 0, 1e-6, 5},
		{-0.3, -2, 0, 1e-6, -5},
		{0.2, 1, 0, -4e-6, 0.5},
	}
	adamLR = []float32{1e-3, 1e-3, 5e-4}
)

func TestAdamThreeSteps(t *testing.T) {
	be := newCPU(t)
	p := computetest.BufferOf(be, adamP0)
	g := be.Alloc(len(adamP0))
	opt, err := NewAdam(be, len(adamP0), DefaultAdam())
	if err != nil {
		t.Fatal(err)
	}
	var gs [][]float64
	var lrs []float64
	for s, gr := range adamGrads {
		be.Upload(compute.V(g), gr)
		opt.Step(compute.V(p), compute.V(g), len(adamP0), adamLR[s])
		gs = append(gs, f64(gr))
		lrs = append(lrs, float64(adamLR[s]))
	}
	if opt.Steps() != 3 {
		t.Errorf("Steps() = %d", opt.Steps())
	}
	want := adamRef(f64(adamP0), gs, lrs, 0.9, 0.999, 1e-8)
	got := computetest.Contents(be, p)
	for i := range want {
		// float32 arithmetic on values of order 1: a few ulps.
		if d := math.Abs(float64(got[i]) - want[i]); d > 1e-6*math.Max(1, math.Abs(want[i])) {
			t.Errorf("param %d: got %.9g want %.9g", i, got[i], want[i])
		}
	}
	// Hand check of element 0, step 1: m^ = g, v^ = g^2, so the first
	// update is lr * g/(|g| + eps) = 1e-3 * 0.1/(0.1+1e-8).
	be2 := newCPU(t)
	p1 := computetest.BufferOf(be2, adamP0[:1])
	g1 := computetest.BufferOf(be2, adamGrads[0][:1])
	o1, _ := NewAdam(be2, 1, DefaultAdam())
	o1.Step(compute.V(p1), compute.V(g1), 1, 1e-3)
	if got, want := computetest.Contents(be2, p1)[0], 0.5-1e-3*0.1/(0.1+1e-8); math.Abs(float64(got)-want) > 1e-7 {
		t.Errorf("first step: got %.9g want %.9g", got, want)
	}
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// TestAdamMatchesTorch runs the same three steps with torch.optim.Adam.
func TestAdamMatchesTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping torch cross-check in -short mode (importing torch takes seconds)")
	}
	havePython(t, "torch")
	in, _ := json.Marshal(map[string]any{"p": adamP0, "g": adamGrads, "lr": adamLR})
	const script = `
import json, sys, torch
d = json.loads(sys.argv[1])
p = torch.nn.Parameter(torch.tensor(d["p"], dtype=torch.float32))
opt = torch.optim.Adam([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
for g, lr in zip(d["g"], d["lr"]):
    for grp in opt.param_groups:
        grp["lr"] = lr
    p.grad = torch.tensor(g, dtype=torch.float32)
    opt.step()
print(json.dumps([float(x) for x in p.detach()]))
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, string(in)).CombinedOutput()
	if err != nil {
		t.Fatalf("torch: %v\n%s", err, out)
	}
	var want []float64
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	be := newCPU(t)
	p := computetest.BufferOf(be, adamP0)
	g := be.Alloc(len(adamP0))
	opt, _ := NewAdam(be, len(adamP0), DefaultAdam())
	for s, gr := range adamGrads {
		be.Upload(compute.V(g), gr)
		opt.Step(compute.V(p), compute.V(g), len(adamP0), adamLR[s])
	}
	got := computetest.Contents(be, p)
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > 2e-7*math.Max(1, math.Abs(want[i])) {
			t.Errorf("param %d: got %.9g torch %.9g", i, got[i], want[i])
		}
	}
}

func TestAdamRefuses(t *testing.T) {
	be := newCPU(t)
	for _, c := range []AdamConfig{{Beta1: 1, Beta2: 0.999, Eps: 1e-8}, {Beta1: 0.9, Beta2: -0.1, Eps: 1e-8}, {Beta1: 0.9, Beta2: 0.999, Eps: 0}} {
		if _, err := NewAdam(be, 4, c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	opt, _ := NewAdam(be, 4, DefaultAdam())
	defer func() {
		if recover() == nil {
			t.Error("Step with the wrong n did not panic")
		}
	}()
	p := be.Alloc(8)
	opt.Step(compute.V(p), compute.V(p), 8, 1e-3)
}

// TestAdamResume: stepping, saving through a checkpoint and restoring gives
// bit-identical parameters to never stopping.
func TestAdamResume(t *testing.T) {
	be := newCPU(t)
	layout, n, err := Pack([]string{"a.weight", "b.bias"}, [][]int{{2, 2}, {1}})
	if err != nil || n != 5 {
		t.Fatal(n, err)
	}
	p := computetest.BufferOf(be, adamP0)
	g := be.Alloc(n)
	opt, _ := NewAdam(be, n, DefaultAdam())
	for s := 0; s < 2; s++ {
		be.Upload(compute.V(g), adamGrads[s])
		opt.Step(compute.V(p), compute.V(g), n, adamLR[s])
	}
	weights, err := Split(computetest.Contents(be, p), layout)
	if err != nil {
		t.Fatal(err)
	}
	ts, st, err := opt.Export(layout)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ck")
	if err := Save(dir, &Checkpoint{Config: Meta{Step: 2, Adam: st}, Weights: weights, Optimizer: ts}); err != nil {
		t.Fatal(err)
	}
	// Uninterrupted third step.
	be.Upload(compute.V(g), adamGrads[2])
	opt.Step(compute.V(p), compute.V(g), n, adamLR[2])
	want := computetest.Contents(be, p)

	ck, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	flat := make([]float32, n)
	if err := Join(flat, ck.Weights, layout); err != nil {
		t.Fatal(err)
	}
	be2 := newCPU(t)
	p2 := computetest.BufferOf(be2, flat)
	g2 := computetest.BufferOf(be2, adamGrads[2])
	opt2, _ := NewAdam(be2, n, DefaultAdam())
	if err := opt2.Import(ck.Optimizer, ck.Config.Adam, layout); err != nil {
		t.Fatal(err)
	}
	opt2.Step(compute.V(p2), compute.V(g2), n, adamLR[2])
	got := computetest.Contents(be2, p2)
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Errorf("param %d: resumed %v, uninterrupted %v", i, got[i], want[i])
		}
	}
	// Mismatched hyperparameters or a missing tensor are refused.
	other := ck.Config.Adam
	other.Beta2 = 0.99
	if err := opt2.Import(ck.Optimizer, other, layout); err == nil {
		t.Error("Import with different betas accepted")
	}
	if err := opt2.Import(ck.Optimizer[1:], ck.Config.Adam, layout); err == nil {
		t.Error("Import with a missing tensor accepted")
	}
}

// TestEMABiasCorrected: after t updates the average is the float64
// reference (1-d)/(1-d^t) * sum_i d^(t-i) p_i, whatever the initial weights
// were; at step 1 it is the weights themselves.
func TestEMABiasCorrected(t *testing.T) {
	be := newCPU(t)
	const n, steps, decay = 5, 60, 0.9
	rng := rand.New(rand.NewPCG(3, 3))
	p0 := make([]float32, n)
	for i := range p0 {
		p0[i] = 1000 // far from every later weight: any share of it shows
	}
	p := computetest.BufferOf(be, p0)
	e, err := NewEMA(be, compute.V(p), n, decay)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.Weights(); got[0] != 1000 {
		t.Fatalf("EMA not initialised as a copy: %v", got)
	}
	d := float64(float32(decay))
	sum := make([]float64, n) // sum_i d^(t-i) p_i
	for step := 1; step <= steps; step++ {
		pt := make([]float32, n)
		for i := range pt {
			pt[i] = float32(rng.NormFloat64())
			sum[i] = d*sum[i] + float64(pt[i])
		}
		be.Upload(compute.V(p), pt)
		e.Update(compute.V(p), n, int64(step))
		got := e.Weights()
		norm := (1 - d) / (1 - math.Pow(d, float64(step)))
		for i := range got {
			if want := norm * sum[i]; math.Abs(float64(got[i])-want) > 2e-6 {
				t.Fatalf("step %d: ema[%d] = %.8g, want %.8g", step, i, got[i], want)
			}
		}
		if step == 1 && !slices.Equal(got, pt) {
			t.Fatalf("step 1: ema %v, want the weights %v", got, pt)
		}
	}
	if _, err := NewEMA(be, compute.V(p), n, 1.5); err == nil {
		t.Error("decay 1.5 accepted")
	}
	if err := e.SetWeights([]float32{1}); err == nil {
		t.Error("SetWeights with the wrong length accepted")
	}
}

// TestEMADecayAt: the per-step factor at the example (decay 0.999,
// step 500) leaves the initial weights no share, tends to the decay, and
// handles the ends (0 and 1).
func TestEMADecayAt(t *testing.T) {
	e := &EMA{decay: 0.999}
	d := float64(float32(0.999))
	// The share of the weights of step 1 in the average after step 500 is
	// the product of the factors of steps 2..500 times (1 - factor at 1).
	share := 1 - e.DecayAt(1)
	for s := int64(2); s <= 500; s++ {
		share *= e.DecayAt(s)
	}
	want := math.Pow(d, 499) * (1 - d) / (1 - math.Pow(d, 500))
	if math.Abs(share-want) > 1e-12 {
		t.Errorf("share of step 1 after 500 steps %.6g, want %.6g", share, want)
	}
	if f := e.DecayAt(1); f != 0 {
		t.Errorf("DecayAt(1) = %v, want 0", f)
	}
	if f := e.DecayAt(1e7); math.Abs(f-d) > 1e-12 {
		t.Errorf("DecayAt(1e7) = %v, want the decay %v", f, d)
	}
	if f := (&EMA{decay: 0}).DecayAt(5); f != 0 {
		t.Errorf("decay 0: DecayAt = %v", f)
	}
	if f := (&EMA{decay: 1}).DecayAt(5); f != 1 {
		t.Errorf("decay 1: DecayAt = %v", f)
	}
}

func TestSchedule(t *testing.T) {
	s := DefaultSchedule()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		step int64
		want float32
	}{{0, 1e-3}, {1, 1e-3}, {199999, 1e-3}, {200000, 5e-4}, {399999, 5e-4}, {400000, 2.5e-4}, {1000000, 1e-3 / 32}} {
		if got := s.LR(c.step); got != c.want {
			t.Errorf("LR(%d) = %g, want %g", c.step, got, c.want)
		}
	}
	c := Constant(3e-4)
	if c.Validate() != nil || c.LR(0) != 3e-4 || c.LR(10_000_000) != 3e-4 {
		t.Error("constant schedule")
	}
	for _, bad := range []Schedule{StepDecay(1e-3, 0, 10), StepDecay(1e-3, 0.5, 0), StepDecay(-1, 0.5, 10), {Kind: "cosine", Init: 1}} {
		if bad.Validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestClipGradNorm(t *testing.T) {
	be := newCPU(t)
	g := computetest.BufferOf(be, []float32{3, 4})
	if n := ClipGradNorm(be, compute.V(g), 2, 10); n != 5 {
		t.Errorf("norm %g, want 5", n)
	}
	if got := computetest.Contents(be, g); got[0] != 3 || got[1] != 4 {
		t.Errorf("norm below max changed the gradients: %v", got)
	}
	ClipGradNorm(be, compute.V(g), 2, 1)
	c := 1 / (5 + 1e-6)
	if got := computetest.Contents(be, g); math.Abs(float64(got[0])-3*c) > 1e-7 || math.Abs(float64(got[1])-4*c) > 1e-7 {
		t.Errorf("clipped to %v, want [%g %g]", got, 3*c, 4*c)
	}
	be.Upload(compute.V(g), []float32{float32(math.NaN()), 1})
	if n := ClipGradNorm(be, compute.V(g), 2, 1); !math.IsNaN(n) || computetest.Contents(be, g)[1] != 1 {
		t.Error("non-finite norm: gradients should be left alone and NaN reported")
	}
}

func TestSplitJoin(t *testing.T) {
	layout, n, _ := Pack([]string{"x", "y"}, [][]int{{2}, {3}})
	flat := []float32{1, 2, 3, 4, 5}
	ts, err := Split(flat, layout)
	if err != nil || n != 5 || ts[1].Data[2] != 5 || ts[0].Shape[0] != 2 {
		t.Fatalf("Split: %v %v", ts, err)
	}
	out := make([]float32, 5)
	if err := Join(out, []Tensor{ts[1], ts[0]}, layout); err != nil || out[0] != 1 || out[4] != 5 {
		t.Errorf("Join: %v %v", out, err)
	}
	if err := Join(make([]float32, 4), ts, layout); err == nil {
		t.Error("Join into a short buffer accepted")
	}
	if _, err := Split(flat[:4], layout); err == nil {
		t.Error("Split of a short buffer accepted")
	}
}

func TestAdamTensorNames(t *testing.T) {
	w := sampleTensors(9)
	ts := AdamTensors(w, w)
	if ts[0].Name != "first_conv.weight_v.exp_avg" || ts[len(w)].Name != "first_conv.weight_v.exp_avg_sq" {
		t.Errorf("names %q %q", ts[0].Name, ts[len(w)].Name)
	}
	if w[0].Name != "first_conv.weight_v" {
		t.Error("AdamTensors renamed its input")
	}
	m, v, err := SplitAdamTensors(ts)
	if err != nil || !Equal(m, w) || !Equal(v, w) {
		t.Fatalf("SplitAdamTensors: %v", err)
	}
	if _, _, err := SplitAdamTensors(ts[1:]); err == nil {
		t.Error("exp_avg_sq without its exp_avg accepted")
	}
	bad := append(append([]Tensor{}, ts...), Tensor{Name: "x.momentum", Shape: []int{}, Data: []float32{0}})
	if _, _, err := SplitAdamTensors(bad); err == nil {
		t.Error("foreign optimizer tensor accepted")
	}
}

// TestAdamMomentsResume restores through Moments/SetSteps, the path a model
// with its own (tap-major) exporter uses, and checks the next step matches.
func TestAdamMomentsResume(t *testing.T) {
	be := newCPU(t)
	n := len(adamP0)
	p := computetest.BufferOf(be, adamP0)
	g := computetest.BufferOf(be, adamGrads[0])
	a, _ := NewAdam(be, n, DefaultAdam())
	a.Step(compute.V(p), compute.V(g), n, 1e-3)
	mv, vv := a.Moments()
	m := make([]float32, n)
	v := make([]float32, n)
	be.Copy(compute.V(g), mv, n) // through a backend copy, as an exporter would
	be.Download(m, compute.V(g))
	be.Download(v, vv)
	snapshot := computetest.Contents(be, p)

	b, _ := NewAdam(be, n, DefaultAdam())
	bm, bv := b.Moments()
	be.Upload(bm, m)
	be.Upload(bv, v)
	if err := b.SetSteps(a.Steps()); err != nil {
		t.Fatal(err)
	}
	q := computetest.BufferOf(be, snapshot)
	be.Upload(compute.V(g), adamGrads[1])
	a.Step(compute.V(p), compute.V(g), n, 1e-3)
	b.Step(compute.V(q), compute.V(g), n, 1e-3)
	pa, pb := computetest.Contents(be, p), computetest.Contents(be, q)
	for i := range pa {
		if math.Float32bits(pa[i]) != math.Float32bits(pb[i]) {
			t.Errorf("param %d: %v vs %v", i, pa[i], pb[i])
		}
	}
	if b.SetSteps(-1) == nil {
		t.Error("negative step accepted")
	}
}
