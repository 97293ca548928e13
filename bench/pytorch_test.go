package bench

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"codeberg.org/sbinet/npyio/npy"

	"github.com/wavecat/wavecat/compute"
	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/train"
	"github.com/wavecat/wavecat/wavenet"
)

const python = "/usr/bin/python3"

// agreementTol is the largest accepted max|wavecat - torch| / max|torch|
// per tensor. wavecat computes in float32; measured worst ratios are
// ~7e-6 against float64 PyTorch and ~1e-5 against float32 PyTorch (the
// upsampler's weight_g gradient, a sum over every conditioning sample), so
// 1e-4 leaves room for summation order while a structural mistake (a wrong
// tap, scale or name) gives O(1).
const agreementTol = 1e-4

// requirePyTorch skips the test when /usr/bin/python3 or its torch module is
// missing (the pyenv python3 first on PATH has neither numpy nor torch).
func requirePyTorch(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(python); err != nil {
		t.Skipf("skipping: %s not found (the PyTorch reference needs it; make test-reference installs python3-torch)", python)
	}
	if out, err := exec.Command(python, "-c", "import torch, numpy").CombinedOutput(); err != nil {
		t.Skipf("skipping: %s cannot import torch/numpy (apt install python3-torch, or make test-reference): %v\n%s", python, err, out)
	}
}

// smallConfig is a scaled-down reference network: 12 layers, 64/128/64,
// 80 mels, hop 16, so dilations reach 32 (k=2) or 8 (k=3, three stacks).
func smallConfig(k, stacks, in, out int) wavenet.Config {
	return wavenet.Config{
		Layers: 12, Stacks: stacks,
		ResidualChannels: 64, GateChannels: 128, SkipChannels: 64,
		KernelSize: k, CinChannels: 80, CinPad: 2, UpsampleScales: []int{4, 4},
		InputChannels: in, OutChannels: out, WeightNorm: true,
	}
}

// TestPyTorchCheckpointAgreement saves real wavecat checkpoints (train.Save),
// has the independent PyTorch model of bench/pytorch/wavenet_ref.py load them
// with load_state_dict(strict=True), and compares the output, every
// parameter gradient and the mel gradient of loss = sum(out * R) with
// wavecat's float32 CPU backend, tensor by tensor, as
// max|wavecat - torch| / max|torch| < 1e-4. PyTorch runs in float64 (the
// truth) and in float32 (its default, what a user would run).
func TestPyTorchCheckpointAgreement(t *testing.T) {
	requirePyTorch(t)
	tinyPlain := wavenet.TinyConfig(10, 10, 8)
	tinyPlain.KernelSize, tinyPlain.WeightNorm = 2, false
	cases := []struct {
		name string
		cfg  wavenet.Config
		B, T int
		long bool // skipped under -short
	}{
		{"tiny_scalar_k3", wavenet.TinyConfig(30, 1, 8), 2, 64, false},
		{"tiny_onehot_k2_noWN", tinyPlain, 2, 48, false},
		{"small_onehot_k2", smallConfig(2, 2, 256, 256), 2, 256, true},
		{"small_scalar_k3", smallConfig(3, 3, 1, 30), 1, 512, true},
	}
	be, err := cpu.New(cpu.Options{Threads: 2, BLAS: "auto"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("wavecat backend: %s", be.Describe())
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.long && testing.Short() {
				t.Skip("larger configuration skipped in -short")
			}
			dir := t.TempDir()
			ck := filepath.Join(dir, "ck")
			saveCheckpoint(t, tc.cfg, ck, uint64(ci)+1)
			in := writeInputs(t, tc.cfg, tc.B, tc.T, dir, uint64(ci)+100)
			got := runWavecat(t, be, ck, tc.cfg, tc.B, tc.T, in)
			torchDir := filepath.Join(dir, "torch")
			runPyTorch(t, ck, in, torchDir, "float64,float32")
			for _, dtype := range []string{"float64", "float32"} {
				t.Run(dtype, func(t *testing.T) {
					compareResults(t, got, readPyTorch(t, filepath.Join(torchDir, dtype)))
				})
			}
		})
	}
}

// TestPyTorchRefusesCorruptCheckpoint: the reference script checks
// checksums.json like wavecat does, so it never compares against a damaged
// file's weights.
func TestPyTorchRefusesCorruptCheckpoint(t *testing.T) {
	requirePyTorch(t)
	cfg := wavenet.TinyConfig(30, 1, 8)
	dir := t.TempDir()
	ck := filepath.Join(dir, "ck")
	saveCheckpoint(t, cfg, ck, 7)
	in := writeInputs(t, cfg, 1, 16, dir, 8)
	p := filepath.Join(ck, train.WeightsFile)
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)-3] ^= 0x40
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "pytorch/wavenet_ref.py", ck, "--x", in.x, "--mel", in.mel, "--r", in.r,
		"--out", filepath.Join(dir, "res")).CombinedOutput()
	if err == nil {
		t.Fatalf("wavenet_ref.py accepted a corrupted %s:\n%s", p, out)
	}
	if !strings.Contains(string(out), "SHA-256 mismatch") {
		t.Errorf("wavenet_ref.py failed without naming the checksum problem:\n%s", out)
	}
}

// saveCheckpoint writes a checkpoint of a freshly initialised model whose
// every parameter is perturbed (biases start at zero and weight-norm g at
// ||v||, which would hide mistakes in their gradients or in the g/v split).
func saveCheckpoint(t *testing.T, cfg wavenet.Config, dir string, seed uint64) {
	t.Helper()
	be, err := cpu.New(cpu.Options{Threads: 1, BLAS: "gonum"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := wavenet.New(cfg, be, int64(seed))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	rng := rand.New(rand.NewPCG(seed, 42))
	ts := m.ExportTensors()
	for _, tt := range ts {
		var ss float64
		for _, v := range tt.Data {
			ss += float64(v) * float64(v)
		}
		rms := math.Sqrt(ss / float64(len(tt.Data)))
		for i := range tt.Data {
			tt.Data[i] += float32((0.2*rms + 0.05) * rng.NormFloat64())
		}
	}
	var meta train.Meta
	if err := (train.ModelInfo{Model: cfg, Head: "none (bench agreement test)"}).SetMeta(&meta); err != nil {
		t.Fatal(err)
	}
	if err := train.Save(dir, &train.Checkpoint{Config: meta, Weights: train.FromModelTensors(ts)}); err != nil {
		t.Fatal(err)
	}
}

type inputFiles struct {
	x, mel, r string
	X, Mel, R []float32
}

// writeInputs draws the network input (a waveform-like signal in [-1, 1],
// or one-hot classes), a mel and the loss weights R, and writes them as .npy.
func writeInputs(t *testing.T, cfg wavenet.Config, B, T int, dir string, seed uint64) inputFiles {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	F := cfg.MelFrames(T)
	in := inputFiles{
		x: filepath.Join(dir, "x.npy"), mel: filepath.Join(dir, "mel.npy"), r: filepath.Join(dir, "r.npy"),
		X:   make([]float32, B*cfg.InputChannels*T),
		Mel: make([]float32, B*cfg.CinChannels*F),
		R:   make([]float32, B*cfg.OutChannels*T),
	}
	if cfg.InputChannels == 1 {
		for i := range in.X {
			in.X[i] = float32(math.Tanh(0.5 * rng.NormFloat64()))
		}
	} else {
		Q := cfg.InputChannels
		for b := 0; b < B; b++ {
			for tt := 0; tt < T; tt++ {
				in.X[(b*Q+rng.IntN(Q))*T+tt] = 1
			}
		}
	}
	for i := range in.Mel {
		in.Mel[i] = float32(rng.NormFloat64())
	}
	for i := range in.R {
		in.R[i] = float32(rng.NormFloat64())
	}
	writeNpy(t, in.x, []int{B, cfg.InputChannels, T}, in.X)
	writeNpy(t, in.mel, []int{B, cfg.CinChannels, F}, in.Mel)
	writeNpy(t, in.r, []int{B, cfg.OutChannels, T}, in.R)
	return in
}

type result struct {
	out, dmel []float64
	grads     map[string][]float64
	order     []string // parameter names in state_dict order
	shapes    map[string][]int
}

// runWavecat loads the checkpoint back (train.Load, the path a user takes)
// and runs forward and backward of sum(out * R) on the float32 CPU backend.
func runWavecat(t *testing.T, be compute.Backend, dir string, cfg wavenet.Config, B, T int, in inputFiles) result {
	t.Helper()
	ck, err := train.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, err := wavenet.New(cfg, be, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.ImportTensors(train.ToModelTensors(ck.Weights)); err != nil {
		t.Fatal(err)
	}
	ws, err := m.NewWorkspace(B, T)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Free()
	be.Upload(ws.X(), in.X)
	be.Upload(ws.Mel(), in.Mel)
	out := m.Forward(ws, ws.X(), ws.Mel())
	res := result{out: make([]float64, len(in.R)), grads: map[string][]float64{}, shapes: map[string][]int{}}
	o32 := make([]float32, len(in.R))
	be.Download(o32, out)
	for i, v := range o32 {
		res.out[i] = float64(v)
	}
	be.Upload(ws.DOut(), in.R)
	dmelBuf := be.Alloc(len(in.Mel))
	defer be.Free(dmelBuf)
	m.ZeroGrads()
	m.Backward(ws, ws.DOut(), compute.V(dmelBuf))
	d32 := make([]float32, len(in.Mel))
	be.Download(d32, compute.V(dmelBuf))
	res.dmel = make([]float64, len(d32))
	for i, v := range d32 {
		res.dmel[i] = float64(v)
	}
	for _, g := range m.ExportGradTensors() {
		res.order = append(res.order, g.Name)
		res.shapes[g.Name] = g.Shape
		res.grads[g.Name] = make([]float64, len(g.Data))
		for i, v := range g.Data {
			res.grads[g.Name][i] = float64(v)
		}
	}
	return res
}

// runPyTorch runs bench/pytorch/wavenet_ref.py on the checkpoint with the
// given --dtype list.
func runPyTorch(t *testing.T, ck string, in inputFiles, outDir, dtypes string) {
	t.Helper()
	cmd := exec.Command(python, "pytorch/wavenet_ref.py", ck, "--x", in.x, "--mel", in.mel, "--r", in.r,
		"--out", outDir, "--dtype", dtypes)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pytorch/wavenet_ref.py: %v\n%s", err, out)
	}
}

// readPyTorch reads what wavenet_ref.py wrote into dir.
func readPyTorch(t *testing.T, dir string) result {
	t.Helper()
	res := result{grads: map[string][]float64{}}
	res.out = readNpy(t, filepath.Join(dir, "out.npy"))
	res.dmel = readNpy(t, filepath.Join(dir, "dmel.npy"))
	files, err := filepath.Glob(filepath.Join(dir, "grads", "*.npy"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		res.grads[strings.TrimSuffix(filepath.Base(f), ".npy")] = readNpy(t, f)
	}
	return res
}

// relDiff is max|a-b| / max|b|: the worst error measured against the
// tensor's own scale (0 when both are all zeros, +Inf when only b is).
func relDiff(a, b []float64) float64 {
	var diff, scale float64
	for i := range b {
		diff = math.Max(diff, math.Abs(a[i]-b[i]))
		scale = math.Max(scale, math.Abs(b[i]))
	}
	if diff == 0 {
		return 0
	}
	return diff / scale
}

func maxAbs(v []float64) float64 {
	var m float64
	for _, x := range v {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

func numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func compareResults(t *testing.T, got, want result) {
	t.Helper()
	// weight_norm(dim=0) over rows of a single element (the first conv of a
	// scalar-input model: weight [R, 1, 1]) makes w = g*sign(v), so d loss/d v
	// is exactly zero and both sides hold only rounding noise there (~1e-17
	// in float64, ~1e-8 in float32): a ratio of two noises means nothing.
	zeroGrad := map[string]bool{}
	for _, name := range got.order {
		if sh := got.shapes[name]; strings.HasSuffix(name, ".weight_v") && len(sh) > 0 && numel(sh) == sh[0] {
			zeroGrad["grad "+name] = true
		}
	}
	worst, worstName := 0.0, ""
	check := func(name string, a, b []float64) {
		t.Helper()
		if len(a) != len(b) {
			t.Errorf("%s: wavecat has %d values, PyTorch %d", name, len(a), len(b))
			return
		}
		r := relDiff(a, b)
		if zeroGrad[name] {
			// Analytically zero: both sides must be rounding noise against
			// the scale of the same conv's weight_g gradient.
			ref := maxAbs(want.grads[strings.TrimPrefix(strings.TrimSuffix(name, "_v"), "grad ")+"_g"])
			r = math.Max(maxAbs(a), maxAbs(b)) / ref
		}
		if !(r <= agreementTol) {
			t.Errorf("%s: max|wavecat-torch|/max|torch| = %.3g, want <= %g", name, r, agreementTol)
		}
		if r > worst || worstName == "" {
			worst, worstName = r, name
		}
	}
	check("output", got.out, want.out)
	check("d loss/d mel", got.dmel, want.dmel)
	if len(want.grads) != len(got.grads) {
		t.Errorf("PyTorch wrote %d parameter gradients, wavecat has %d parameters", len(want.grads), len(got.grads))
	}
	for _, name := range got.order {
		w, ok := want.grads[name]
		if !ok {
			t.Errorf("parameter %s: no gradient from PyTorch", name)
			continue
		}
		check("grad "+name, got.grads[name], w)
	}
	t.Logf("%d tensors compared; worst max|wavecat-torch|/max|torch| = %.2g (%s)", 2+len(got.order), worst, worstName)
}

// writeNpy writes a little-endian float32 C-order .npy file (format 1.0)
// with the given shape.
func writeNpy(t *testing.T, path string, shape []int, data []float32) {
	t.Helper()
	dims := make([]string, len(shape))
	n := 1
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
		n *= d
	}
	if n != len(data) {
		t.Fatalf("writeNpy %s: shape %v holds %d values, have %d", path, shape, n, len(data))
	}
	shapeStr := strings.Join(dims, ", ")
	if len(shape) == 1 {
		shapeStr += ","
	}
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", shapeStr)
	// Pad with spaces and a newline so the data starts on a 64-byte boundary.
	pad := 64 - (10+len(hdr)+1)%64
	hdr += strings.Repeat(" ", pad%64) + "\n"
	err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
		var buf bytes.Buffer
		buf.WriteString("\x93NUMPY\x01\x00")
		binary.Write(&buf, binary.LittleEndian, uint16(len(hdr)))
		buf.WriteString(hdr)
		if err := binary.Write(&buf, binary.LittleEndian, data); err != nil {
			return err
		}
		_, err := w.Write(buf.Bytes())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// readNpy reads a float32 or float64 C-order .npy file as float64.
func readNpy(t *testing.T, path string) []float64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := npy.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.Header.Descr.Fortran {
		t.Fatalf("%s: Fortran order not expected", path)
	}
	switch strings.Trim(r.Header.Descr.Type, "'\"") {
	case "<f8":
		var v []float64
		if err := r.Read(&v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return v
	case "<f4":
		var v []float32
		if err := r.Read(&v); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	default:
		t.Fatalf("%s: dtype %s, want <f4 or <f8", path, r.Header.Descr.Type)
		return nil
	}
}
