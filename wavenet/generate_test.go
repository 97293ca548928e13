package wavenet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/outputs"
)

// genHeads are small instances of every head (few classes keep the one-hot
// inputs and the tiny models fast).
var genHeads = []string{
	"mulaw --bins 16",
	"categorical --bins 16",
	"mol --mixtures 3 --levels 65536",
	"gaussian",
	"adacat --components 6",
}

// genModel builds a tiny model for head with random biases and weight-norm
// gains, so a missing bias or gain in the generator shows up.
func genModel(t testing.TB, be compute.Backend, spec string, k int, seed int64) (*Model, outputs.Head) {
	t.Helper()
	h, err := outputs.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := TinyConfig(h.Channels(), h.InputChannels(), 8)
	cfg.KernelSize = k
	m, err := New(cfg, be, seed)
	if err != nil {
		t.Fatal(err)
	}
	ts := m.ExportTensors()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	for _, tt := range ts {
		switch {
		case strings.HasSuffix(tt.Name, ".bias"):
			for i := range tt.Data {
				tt.Data[i] = float32(0.2 * rng.NormFloat64())
			}
		case strings.HasSuffix(tt.Name, ".weight_g"):
			for i := range tt.Data {
				tt.Data[i] *= float32(0.7 + 0.6*rng.Float64())
			}
		}
	}
	if err := m.ImportTensors(ts); err != nil {
		t.Fatal(err)
	}
	return m, h
}

func randMel(rng *rand.Rand, frames, C int) []float32 {
	mel := make([]float32, frames*C)
	for i := range mel {
		mel[i] = float32(rng.NormFloat64())
	}
	return mel
}

// TestGenerateMatchesForward: the head outputs of the incremental path at
// every step equal the parallel (training) Forward run over the generated
// sequence as input, for every head and kernel sizes 2 and 3, with the
// conditioning computed in small chunks (boundaries inside the utterance)
// and in one piece.
func TestGenerateMatchesForward(t *testing.T) {
	be := newCPU(t)
	for _, spec := range genHeads {
		for _, k := range []int{2, 3} {
			for _, chunk := range []int{3, 0} {
				name := fmt.Sprintf("%s/k%d/chunk%d", strings.Fields(spec)[0], k, chunk)
				t.Run(name, func(t *testing.T) {
					m, h := genModel(t, be, spec, k, int64(k*100+len(spec)))
					defer m.Free()
					cfg := m.Config()
					g, err := NewGenerator(m, h)
					if err != nil {
						t.Fatal(err)
					}
					defer g.Free()
					const frames = 13
					C, O, hop := cfg.CinChannels, cfg.OutChannels, cfg.HopSize()
					T := frames * hop
					if T <= cfg.ReceptiveField() {
						t.Fatalf("T=%d does not exceed the receptive field %d: the rings would never wrap", T, cfg.ReceptiveField())
					}
					mel := randMel(rand.New(rand.NewPCG(3, 4)), frames, C)
					steps := make([]float32, T*O)
					seen := 0
					g.trace = func(u, t int, logits []float32) {
						copy(steps[t*O:(t+1)*O], logits)
						seen++
					}
					ys, err := g.Generate([]Utterance{{Mel: mel, Seed: 42}}, GenerateOptions{ChunkFrames: chunk})
					if err != nil {
						t.Fatal(err)
					}
					if seen != T || len(ys[0]) != T {
						t.Fatalf("traced %d steps, %d samples, want %d", seen, len(ys[0]), T)
					}
					out := forwardOutputs(t, m, h, mel, ys[0])
					worst, scale := stepsVsParallel(steps, out, T, O)
					if scale == 0 {
						t.Fatal("parallel output is all zero: the test would not see anything")
					}
					if worst > 1e-4*max(1, scale) {
						t.Errorf("max |incremental - parallel| = %.3g (output scale %.3g), want <= 1e-4", worst, scale)
					}
				})
			}
		}
	}
}

// stepsVsParallel compares a traced utterance's incremental outputs steps
// [T][O] with the parallel Forward's out [O][T]: the largest absolute
// difference and the largest |out|, the scale it is judged against.
func stepsVsParallel(steps, out []float32, T, O int) (worst, scale float64) {
	for tt := 0; tt < T; tt++ {
		for c := 0; c < O; c++ {
			ref := float64(out[c*T+tt])
			scale = max(scale, math.Abs(ref))
			worst = max(worst, math.Abs(float64(steps[tt*O+c])-ref))
		}
	}
	return worst, scale
}

// forwardOutputs runs the parallel Forward teacher-forced on a generated
// sequence (x[t] = enc(y[t-1]), x[0] = enc(0)) with the mel padded as the
// generator pads it, and returns its output [O][T]. It pads and encodes
// with its own loops, not padMel, so the generators' padding is checked
// against an independent copy.
func forwardOutputs(t *testing.T, m *Model, h outputs.Head, mel, ys []float32) []float32 {
	t.Helper()
	return forwardOutputsExc(t, m, h, mel, ys, nil)
}

// forwardOutputsExc is forwardOutputs for a model with excitation channels:
// exc [E][T] fills the input rows after the encoded sample's.
func forwardOutputsExc(t *testing.T, m *Model, h outputs.Head, mel, ys, exc []float32) []float32 {
	t.Helper()
	be := m.Backend()
	cfg := m.Config()
	C, O, Cin, pad := cfg.CinChannels, cfg.OutChannels, cfg.InputChannels, cfg.CinPad
	T, frames := len(ys), len(mel)/C
	x := make([]float32, cfg.FirstConvInputs()*T)
	copy(x[Cin*T:], exc)
	enc := make([]float32, Cin)
	for tt := 0; tt < T; tt++ {
		prev := float32(0)
		if tt > 0 {
			prev = ys[tt-1]
		}
		h.EncodeInput(prev, enc)
		for c := 0; c < Cin; c++ {
			x[c*T+tt] = enc[c]
		}
	}
	Fp := frames + 2*pad
	melP := make([]float32, C*Fp)
	for f := 0; f < Fp; f++ {
		src := min(max(f-pad, 0), frames-1)
		for c := 0; c < C; c++ {
			melP[c*Fp+f] = mel[src*C+c]
		}
	}
	ws, err := m.NewWorkspace(1, T)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Free()
	be.Upload(ws.X(), x)
	be.Upload(ws.Mel(), melP)
	out := make([]float32, O*T)
	be.Download(out, m.Forward(ws, ws.X(), ws.Mel()))
	return out
}

// TestGenerateWide: the wide-GEMM batch mode is not bit-identical to batch
// 1 by design, but every utterance's step outputs still match the parallel
// Forward over its own generated sequence. Run on the OpenBLAS GEMMs
// (blasStep, what Wide does without MulVecs assembly) and as Wide runs here.
func TestGenerateWide(t *testing.T) {
	for _, gemm := range []bool{true, false} {
		t.Run(fmt.Sprintf("openblas=%v", gemm), func(t *testing.T) { testGenerateWide(t, gemm) })
	}
}

func testGenerateWide(t *testing.T, openblas bool) {
	be := newCPU(t)
	m, h := genModel(t, be, "adacat --components 6", 3, 8)
	defer m.Free()
	g, err := NewGenerator(m, h)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	g.blasStep = openblas
	cfg := m.Config()
	O := cfg.OutChannels
	rng := rand.New(rand.NewPCG(2, 2))
	var utts []Utterance
	lens := []int{6, 11, 4, 9}
	steps := make([][]float32, len(lens))
	for i, f := range lens {
		utts = append(utts, Utterance{Mel: randMel(rng, f, cfg.CinChannels), Seed: uint64(i)})
		steps[i] = make([]float32, f*cfg.HopSize()*O)
	}
	g.trace = func(u, t int, logits []float32) { copy(steps[u][t*O:(t+1)*O], logits) }
	ys, err := g.Generate(utts, GenerateOptions{Batch: 3, Wide: true, ChunkFrames: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i := range utts {
		out := forwardOutputs(t, m, h, utts[i].Mel, ys[i])
		T := len(ys[i])
		worst, scale := stepsVsParallel(steps[i], out, T, O)
		if worst > 1e-4*max(1, scale) {
			t.Errorf("utterance %d: max |wide incremental - parallel| = %.3g (scale %.3g)", i, worst, scale)
		}
	}
}

// TestGenerateBatchedIdentical: utterances of different lengths generated
// together (batch 3 of 5, so slots are refilled) give bit-identical samples
// to generating each alone with the same seed; another seed differs.
func TestGenerateBatchedIdentical(t *testing.T) {
	be := newCPU(t)
	for _, spec := range []string{"mol --mixtures 3 --levels 65536", "mulaw --bins 16", "adacat --components 6"} {
		t.Run(strings.Fields(spec)[0], func(t *testing.T) {
			m, h := genModel(t, be, spec, 3, 5)
			defer m.Free()
			g, err := NewGenerator(m, h)
			if err != nil {
				t.Fatal(err)
			}
			defer g.Free()
			rng := rand.New(rand.NewPCG(9, 9))
			var utts []Utterance
			for i, f := range []int{7, 12, 3, 9, 5} {
				utts = append(utts, Utterance{Mel: randMel(rng, f, m.Config().CinChannels), Seed: uint64(100 + i)})
			}
			var total atomic.Int64
			batched, err := g.Generate(utts, GenerateOptions{Batch: 3, ChunkFrames: 2, Progress: func(n int) { total.Add(int64(n)) }})
			if err != nil {
				t.Fatal(err)
			}
			// Two workers (slot groups on goroutines) change nothing either.
			par, err := g.Generate(utts, GenerateOptions{Batch: 4, Workers: 2, ChunkFrames: 2})
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for i, u := range utts {
				alone, err := g.Generate([]Utterance{u}, GenerateOptions{ChunkFrames: 2})
				if err != nil {
					t.Fatal(err)
				}
				want += len(alone[0])
				if len(batched[i]) != len(u.Mel)/m.Config().CinChannels*m.Config().HopSize() {
					t.Fatalf("utterance %d: %d samples", i, len(batched[i]))
				}
				for j := range alone[0] {
					if math.Float32bits(alone[0][j]) != math.Float32bits(batched[i][j]) {
						t.Fatalf("utterance %d sample %d: batched %v, alone %v", i, j, batched[i][j], alone[0][j])
					}
					if math.Float32bits(alone[0][j]) != math.Float32bits(par[i][j]) {
						t.Fatalf("utterance %d sample %d: 2 workers %v, alone %v", i, j, par[i][j], alone[0][j])
					}
				}
			}
			if int(total.Load()) != want {
				t.Errorf("progress reported %d samples, generated %d", total.Load(), want)
			}
			other := utts[1]
			other.Seed++
			diff, err := g.Generate([]Utterance{other}, GenerateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			same := true
			for j := range diff[0] {
				same = same && diff[0][j] == batched[1][j]
			}
			if same {
				t.Error("a different seed gave the same waveform")
			}
		})
	}
}

func TestGenerateErrors(t *testing.T) {
	be := newCPU(t)
	m, h := genModel(t, be, "gaussian", 2, 1)
	defer m.Free()
	g, err := NewGenerator(m, h)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	C := m.Config().CinChannels
	nan := randMel(rand.New(rand.NewPCG(1, 1)), 4, C)
	nan[C+2] = float32(math.NaN())
	for _, c := range []struct {
		name string
		mel  []float32
		want string
	}{
		{"empty", nil, "not a positive multiple"},
		{"ragged", make([]float32, C+1), "not a positive multiple"},
		{"nan", nan, "frame 1, channel 2"},
		{"long", make([]float32, (MaxGenerateFrames+1)*C), "frames is more than"},
	} {
		_, err := g.Generate([]Utterance{{Mel: c.mel}}, GenerateOptions{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
	mh, _ := outputs.New("mulaw --bins 16")
	if _, err := NewGenerator(m, mh); err == nil || !strings.Contains(err.Error(), "input channels") {
		t.Errorf("mismatched head: error %v", err)
	}
}

// TestGenerateNoPerSampleAllocation: allocations depend on the number of
// utterances and conditioning chunks, not on the number of samples.
func TestGenerateNoPerSampleAllocation(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	be := newCPU(t)
	m, h := genModel(t, be, "mol --mixtures 3 --levels 65536", 3, 4)
	defer m.Free()
	g, err := NewGenerator(m, h)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	rng := rand.New(rand.NewPCG(1, 2))
	allocs := func(frames int) float64 {
		u := []Utterance{{Mel: randMel(rng, frames, m.Config().CinChannels)}}
		return testing.AllocsPerRun(3, func() {
			if _, err := g.Generate(u, GenerateOptions{ChunkFrames: 64}); err != nil {
				t.Fatal(err)
			}
		})
	}
	short, long := allocs(4), allocs(64)
	if long > short {
		t.Errorf("%v allocations for 64 frames, %v for 4: something allocates per sample", long, short)
	}
}

// TestGenerateChunkedConditioning: the conditioning the generator computes
// chunk by chunk (with condMargin frames of context) equals
// Model.Conditioning over the whole utterance, chunk boundaries included, to
// float32 rounding (conv_in's GEMM is narrower per chunk, and OpenBLAS sums
// differently at different widths; a missing frame of context would be off
// by O(1)).
func TestGenerateChunkedConditioning(t *testing.T) {
	be := newCPU(t)
	m, h := genModel(t, be, "gaussian", 3, 6)
	defer m.Free()
	cfg := m.Config()
	g, err := NewGenerator(m, h)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	const frames, chunkF = 11, 3
	C, pad, hop := cfg.CinChannels, cfg.CinPad, cfg.HopSize()
	T := frames * hop
	mel := randMel(rand.New(rand.NewPCG(8, 8)), frames, C)
	Fp := frames + 2*pad
	melP := make([]float32, C*Fp)
	for f := 0; f < Fp; f++ {
		src := min(max(f-pad, 0), frames-1)
		for c := 0; c < C; c++ {
			melP[c*Fp+f] = mel[src*C+c]
		}
	}
	mv, full := be.Alloc(C*Fp), be.Alloc(C*T)
	be.Upload(compute.V(mv), melP)
	m.Conditioning(compute.V(mv), 1, frames, compute.V(full))
	want := make([]float32, C*T)
	be.Download(want, compute.V(full))

	lo := g.layout(chunkF)
	v := compute.V(be.Alloc(lo.cold))
	sl := &slot{frames: frames, T: T, melP: melP, melC: v.At(lo.melC), cond: v.At(lo.cond),
		convOut: v.At(lo.c0), upA: v.At(lo.upA), proj: v.At(lo.proj), condT: v.At(lo.condT)}
	chunks := 0
	for sl.c1 < T {
		g.condChunk(sl, chunkF)
		chunks++
		f0 := sl.c0 / hop
		a := max(f0-condMargin, 0)
		e := min(sl.c1/hop+condMargin, frames)
		cw := (e - a) * hop
		got := make([]float32, C*cw)
		be.Download(got, sl.cond)
		for c := 0; c < C; c++ {
			for tt := sl.c0; tt < sl.c1; tt++ {
				if g, w := got[c*cw+tt-a*hop], want[c*T+tt]; math.Abs(float64(g-w)) > 1e-5*(1+math.Abs(float64(w))) {
					t.Fatalf("chunk %d: channel %d sample %d: %v, whole-utterance %v", chunks, c, tt, g, w)
				}
			}
		}
	}
	if chunks != (frames+chunkF-1)/chunkF {
		t.Errorf("%d chunks, want %d", chunks, (frames+chunkF-1)/chunkF)
	}
}

// tempRecorder is a head that records the temperatures it is asked to
// sample at.
type tempRecorder struct {
	outputs.Head
	seen map[float64]int
}

func (r *tempRecorder) Sample(logits []float32, stride int, t float64, rng *rand.Rand) float32 {
	r.seen[t]++
	return r.Head.Sample(logits, stride, t, rng)
}

// TestGenerateTemperature: GenerateOptions.Temperature reaches every
// sample draw (0 meaning 1, bit-identical to an explicit 1), changes the
// waveform, and a negative, NaN or infinite one is refused.
func TestGenerateTemperature(t *testing.T) {
	be := newCPU(t)
	m, h := genModel(t, be, "gaussian", 2, 3)
	defer m.Free()
	rec := &tempRecorder{Head: h, seen: map[float64]int{}}
	g, err := NewGenerator(m, rec)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	u := []Utterance{{Mel: randMel(rand.New(rand.NewPCG(4, 4)), 6, m.Config().CinChannels), Seed: 5}}
	gen := func(temp float64) []float32 {
		t.Helper()
		clear(rec.seen)
		y, err := g.Generate(u, GenerateOptions{Temperature: temp})
		if err != nil {
			t.Fatal(err)
		}
		want := temp
		if temp == 0 {
			want = 1
		}
		if len(rec.seen) != 1 || rec.seen[want] != len(y[0]) {
			t.Fatalf("temperature %g: the sampler saw temperatures %v for %d samples", temp, rec.seen, len(y[0]))
		}
		return y[0]
	}
	def, one, cold := gen(0), gen(1), gen(0.3)
	same := true
	for i := range def {
		if math.Float32bits(def[i]) != math.Float32bits(one[i]) {
			t.Fatalf("sample %d: default %v, temperature 1 %v", i, def[i], one[i])
		}
		same = same && cold[i] == one[i]
	}
	if same {
		t.Error("temperature 0.3 gave the temperature-1 waveform")
	}
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := g.Generate(u, GenerateOptions{Temperature: bad}); err == nil || !strings.Contains(err.Error(), "temperature") {
			t.Errorf("temperature %g: error %v", bad, err)
		}
	}
}

// TestGenerateGemvPath: the per-slot OpenBLAS path (what runs where MulVecs
// has no assembly) stays bit-identical across batch sizes too, and differs
// from the MulVecs path only by rounding: the two sum in different orders,
// so their head outputs agree closely although sampling may diverge later.
func TestGenerateGemvPath(t *testing.T) {
	be := newCPU(t)
	m, h := genModel(t, be, "mol --mixtures 3 --levels 65536", 3, 5)
	defer m.Free()
	g, err := NewGenerator(m, h)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Free()
	if cpu.MulVecsAccelerated() != (g.mv != nil) {
		t.Fatalf("MulVecs accelerated %v, generator packed its products: %v", cpu.MulVecsAccelerated(), g.mv != nil)
	}
	rng := rand.New(rand.NewPCG(4, 4))
	var utts []Utterance
	for i, f := range []int{5, 3, 4} {
		utts = append(utts, Utterance{Mel: randMel(rng, f, m.Config().CinChannels), Seed: uint64(7 + i)})
	}
	// The first step's head outputs of each path (same input: y[-1] = 0).
	first := map[bool][]float32{}
	for _, gemv := range []bool{true, false} {
		g.blasStep = gemv
		g.trace = func(utt, t int, out []float32) {
			if utt == 0 && t == 0 {
				first[gemv] = append([]float32(nil), out...)
			}
		}
		batched, err := g.Generate(utts, GenerateOptions{Batch: 3})
		g.trace = nil
		if err != nil {
			t.Fatal(err)
		}
		for i, u := range utts {
			alone, err := g.Generate([]Utterance{u}, GenerateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for j := range alone[0] {
				if math.Float32bits(alone[0][j]) != math.Float32bits(batched[i][j]) {
					t.Fatalf("gemv=%v utterance %d sample %d: batched %v, alone %v", gemv, i, j, batched[i][j], alone[0][j])
				}
			}
		}
	}
	g.blasStep = false
	for c := range first[true] {
		if d := math.Abs(float64(first[true][c] - first[false][c])); d > 1e-4*(1+math.Abs(float64(first[true][c]))) {
			t.Errorf("first step output %d: gemv path %v, MulVecs path %v", c, first[true][c], first[false][c])
		}
	}
}
