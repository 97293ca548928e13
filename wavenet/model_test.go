package wavenet

import (
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/compute"
)

func TestConfigPresetsAndDerived(t *testing.T) {
	c := ReferenceConfig(30, 1)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.HopSize(); got != 256 {
		t.Errorf("reference hop %d, want 256", got)
	}
	// Hand-derived: 4 stacks x (1+2+4+8+16+32) x (k-1=2) + 1.
	if got := c.ReceptiveField(); got != 4*63*2+1 {
		t.Errorf("reference receptive field %d, want %d", got, 4*63*2+1)
	}
	wantDil := []int{1, 2, 4, 8, 16, 32, 1, 2}
	for l, w := range wantDil {
		if got := c.Dilation(l); got != w {
			t.Errorf("dilation(%d) = %d, want %d", l, got, w)
		}
	}
	// Training crops: 40 frames + 2 context frames each side for 10240 samples.
	if got := c.MelFrames(10240); got != 44 {
		t.Errorf("MelFrames(10240) = %d, want 44", got)
	}
	if err := TinyConfig(2, 256, 8).Validate(); err != nil {
		t.Fatal(err)
	}
	// JSON uses r9y9's hparam names and round-trips.
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"residual_channels":128`, `"gate_channels":256`, `"skip_out_channels":128`, `"cin_pad":2`, `"upsample_scales":[4,4,4,4]`, `"weight_normalization":true`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("config JSON %s lacks %s", data, key)
		}
	}
	var back Config
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(back.UpsampleScales, c.UpsampleScales) || back.Layers != c.Layers || back.WeightNorm != c.WeightNorm {
		t.Errorf("config JSON round trip: got %+v, want %+v", back, c)
	}
}

func TestConfigValidateErrors(t *testing.T) {
	for _, tc := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Dropout = 0.05 }, "dropout"},
		{func(c *Config) { c.Layers = 10 }, "multiple of stacks"},
		{func(c *Config) { c.GateChannels = 7 }, "gate_channels"},
		{func(c *Config) { c.UpsampleScales = nil }, "upsample_scales"},
		{func(c *Config) { c.UpsampleScales = []int{4, 0} }, "upsample_scales[1]"},
		{func(c *Config) { c.InputChannels = 0 }, "in_channels"},
		{func(c *Config) { c.CinChannels = 0 }, "cin_channels"},
		{func(c *Config) { c.KernelSize = 0 }, "kernel_size"},
	} {
		c := ReferenceConfig(30, 1)
		tc.mut(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate() = %v, want an error mentioning %q", err, tc.want)
		}
		if _, err := New(c, &refBackend{}, 1); err == nil {
			t.Errorf("New accepted an invalid config (%s)", tc.want)
		}
	}
}

// TestParameterTable checks the state_dict names, shapes and the total
// against a hand count of r9y9's model.
func TestParameterTable(t *testing.T) {
	m, err := New(ReferenceConfig(30, 1), &refBackend{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Hand count (weight norm adds one g per output channel):
	// first_conv 128 (b) + 128 (g) + 128 (v); per layer conv 256+256+256*128*3,
	// conv1x1c 256+256*80, conv1x1_out 128+128+128*128, skip same;
	// last 1: 128+128+128*128; last 3: 30+30+30*128; conv_in 80*80*5;
	// upsampler 4 x (1 g + 9 v).
	layer := (256 + 256 + 256*128*3) + (256 + 256*80) + 2*(128+128+128*128)
	want := 384 + 24*layer + (128 + 128 + 128*128) + (30 + 30 + 30*128) + 80*80*5 + 4*(1+9)
	if got := m.NumParams(); got != want {
		t.Errorf("NumParams %d, want %d", got, want)
	}
	shapes := map[string][]int{
		"first_conv.bias":                            {128},
		"first_conv.weight_g":                        {128, 1, 1},
		"first_conv.weight_v":                        {128, 1, 1},
		"conv_layers.0.conv.bias":                    {256},
		"conv_layers.0.conv.weight_g":                {256, 1, 1},
		"conv_layers.23.conv.weight_v":               {256, 128, 3},
		"conv_layers.5.conv1x1c.weight_v":            {256, 80, 1},
		"conv_layers.5.conv1x1_out.weight_v":         {128, 128, 1},
		"conv_layers.5.conv1x1_skip.bias":            {128},
		"last_conv_layers.1.weight_v":                {128, 128, 1},
		"last_conv_layers.3.bias":                    {30},
		"upsample_net.conv_in.weight":                {80, 80, 5},
		"upsample_net.upsample.up_layers.1.weight_g": {1, 1, 1, 1},
		"upsample_net.upsample.up_layers.7.weight_v": {1, 1, 1, 9},
	}
	for name, shape := range shapes {
		ti, ok := m.Tensor(name)
		if !ok {
			t.Errorf("tensor %s missing", name)
			continue
		}
		if !slices.Equal(ti.Shape, shape) {
			t.Errorf("%s shape %v, want %v", name, ti.Shape, shape)
		}
	}
	if _, ok := m.Tensor("conv_layers.0.conv1x1c.bias"); ok {
		t.Error("conv1x1c has a bias; r9y9's has none")
	}
	// The table tiles the flat buffer exactly.
	off := 0
	for _, ti := range m.Tensors() {
		if ti.Offset != off {
			t.Fatalf("%s at offset %d, want %d (gap or overlap)", ti.Name, ti.Offset, off)
		}
		off += ti.Size
	}
	if off != m.NumParams() {
		t.Errorf("table covers %d values, NumParams %d", off, m.NumParams())
	}
}

// TestInit checks r9y9's initialisation: Kaiming-normal std sqrt(2/fan_in)
// for conv weights, g = ||v|| per output row, zero biases, 1/(2s+1) for the
// upsampler, U(+-1/sqrt(fan_in)) for conv_in; and that a seed reproduces.
func TestInit(t *testing.T) {
	cfg := ReferenceConfig(30, 1)
	m, err := New(cfg, &refBackend{}, 7)
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Tensor{}
	for _, ts := range m.ExportTensors() {
		byName[ts.Name] = ts
	}
	v := byName["conv_layers.3.conv.weight_v"].Data
	var ss float64
	for _, x := range v {
		ss += float64(x) * float64(x)
	}
	std, want := math.Sqrt(ss/float64(len(v))), math.Sqrt(2.0/(128*3))
	if math.Abs(std-want) > 0.02*want { // 98k samples: sampling error ~0.2%
		t.Errorf("conv weight std %.5f, want kaiming %.5f", std, want)
	}
	g := byName["conv_layers.3.conv.weight_g"].Data
	for o := 0; o < 256; o += 51 {
		var n float64
		for i := 0; i < 128*3; i++ {
			x := float64(v[o*128*3+i]) // PyTorch layout [out][in][K]
			n += x * x
		}
		if math.Abs(float64(g[o])-math.Sqrt(n)) > 1e-5*math.Sqrt(n) {
			t.Errorf("weight_g[%d] = %g, want ||v[%d]|| = %g", o, g[o], o, math.Sqrt(n))
		}
	}
	for _, x := range byName["conv_layers.3.conv.bias"].Data {
		if x != 0 {
			t.Fatalf("bias not zero-initialised: %g", x)
		}
	}
	for _, x := range byName["upsample_net.upsample.up_layers.3.weight_v"].Data {
		if math.Abs(float64(x)-1.0/9) > 1e-7 {
			t.Fatalf("upsampler weight %g, want 1/9", x)
		}
	}
	if gu := byName["upsample_net.upsample.up_layers.3.weight_g"].Data[0]; math.Abs(float64(gu)-1/3.0) > 1e-6 {
		t.Errorf("upsampler g %g, want ||v|| = 9*(1/9)^2 under sqrt = 1/3", gu)
	}
	b := 1 / math.Sqrt(80*5)
	var mx float64
	for _, x := range byName["upsample_net.conv_in.weight"].Data {
		mx = math.Max(mx, math.Abs(float64(x)))
	}
	if mx > b || mx < 0.95*b {
		t.Errorf("conv_in max |w| %g, want just under %g (uniform)", mx, b)
	}
	m2, _ := New(cfg, &refBackend{}, 7)
	m3, _ := New(cfg, &refBackend{}, 8)
	a, a2, a3 := m.ExportTensors()[5].Data, m2.ExportTensors()[5].Data, m3.ExportTensors()[5].Data
	if !slices.Equal(a, a2) || slices.Equal(a, a3) {
		t.Error("same seed must reproduce the init and another seed must differ")
	}
}

// TestExportImport: PyTorch-layout export/import round-trips exactly, the
// tap-major transpose is right for a known element, and bad input is
// rejected with the tensor's name.
func TestExportImport(t *testing.T) {
	cfg := smallConfig(1, 3, true)
	m, _ := New(cfg, &refBackend{}, 1)
	p := f64(m.Params())
	for i := 0; i < m.NumParams(); i++ {
		p[i] = float64(float32(i)*0.001 - 1)
	}
	ti, _ := m.Tensor("conv_layers.1.conv.weight_v")
	ts := m.ExportTensors()
	var conv Tensor
	for _, x := range ts {
		if x.Name == ti.Name {
			conv = x
		}
	}
	// PyTorch element [o=2][i=4][k=1] is stored at tap-major (k*G + o)*R + i.
	o, i, k := 2, 4, 1
	G, R := cfg.GateChannels, cfg.ResidualChannels
	if got, want := conv.Data[(o*R+i)*3+k], float32(p[ti.Offset+(k*G+o)*R+i]); got != want {
		t.Errorf("export of [%d][%d][%d] = %g, want %g", o, i, k, got, want)
	}
	m2, _ := New(cfg, &refBackend{}, 99)
	if err := m2.ImportTensors(ts); err != nil {
		t.Fatal(err)
	}
	p2 := f64(m2.Params())
	for j := 0; j < m.NumParams(); j++ {
		if p2[j] != p[j] {
			t.Fatalf("param %d after round trip %g, want %g", j, p2[j], p[j])
		}
	}
	bad := slices.Clone(ts)
	bad[3] = Tensor{Name: bad[3].Name, Shape: []int{1, 2}, Data: []float32{1, 2}}
	if err := m2.ImportTensors(bad); err == nil || !strings.Contains(err.Error(), ts[3].Name) {
		t.Errorf("shape mismatch: err %v, want one naming %s", err, ts[3].Name)
	}
	if err := m2.ImportTensors(ts[1:]); err == nil || !strings.Contains(err.Error(), ts[0].Name) || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing tensor: err %v", err)
	}
	extra := append(slices.Clone(ts), Tensor{Name: "embed_speakers.weight", Shape: []int{1}, Data: []float32{0}})
	if err := m2.ImportTensors(extra); err == nil || !strings.Contains(err.Error(), "embed_speakers.weight") {
		t.Errorf("unknown tensor: err %v", err)
	}
}

// TestActivationMemory: the reference config at batch 8 x 10240 fits the
// 6 GB budget, and ActivationBytes is exactly what NewWorkspace allocates.
func TestActivationMemory(t *testing.T) {
	// The largest head/input combination: mu-law 256 classes, one-hot input.
	if big := ReferenceConfig(256, 256).ActivationBytes(8, 10240); big >= 6e9 {
		t.Errorf("mu-law/one-hot reference config needs %.2f GB at 8 x 10240, over the 6 GB budget", float64(big)/1e9)
	}
	ref := ReferenceConfig(30, 1)
	got := ref.ActivationBytes(8, 10240)
	// Hand count of the dominant term: h, pre and z for 24 layers,
	// (128+256+128) channels x 81920 samples x 4 bytes.
	stored := int64(24) * 512 * 81920 * 4
	if got < stored || got >= 6e9 {
		t.Errorf("ActivationBytes(8, 10240) = %.2f GB, want between %.2f GB and 6 GB", float64(got)/1e9, float64(stored)/1e9)
	}
	t.Logf("reference config, batch 8 x 10240: %.2f GB of activations (stored h+pre+z %.2f GB)", float64(got)/1e9, float64(stored)/1e9)

	be := &refBackend{}
	cfg := TinyConfig(30, 256, 8)
	m, _ := New(cfg, be, 1)
	before := be.allocated
	ws, err := m.NewWorkspace(3, 64)
	if err != nil {
		t.Fatal(err)
	}
	if alloc := 4 * (be.allocated - before); alloc != cfg.ActivationBytes(3, 64) {
		t.Errorf("workspace allocates %d bytes, ActivationBytes says %d", alloc, cfg.ActivationBytes(3, 64))
	}
	ws.Free()
	if be.allocated != before {
		t.Errorf("Workspace.Free left %d floats allocated", be.allocated-before)
	}
	if _, err := m.NewWorkspace(2, 63); err == nil || !strings.Contains(err.Error(), "hop") {
		t.Errorf("T not a multiple of the hop: err %v", err)
	}
}

// TestTrainFLOPs checks the dominant GEMM count by hand for the reference
// config: per sample per layer 2*(256*128*3 + 256*80 + 128*128 + 128*128).
func TestTrainFLOPs(t *testing.T) {
	c := ReferenceConfig(30, 1)
	perLayer := 2.0 * (256*128*3 + 256*80 + 128*128 + 128*128)
	lower := 3 * 24 * perLayer * 10240
	got := c.TrainFLOPs(1, 10240)
	if got < 0.97*lower || got > 1.03*lower {
		t.Errorf("TrainFLOPs(1, 10240) = %.3g, want within 3%% of %.3g", got, lower)
	}
}

// TestExportInference: folded weights equal g*v/||v|| computed by hand from
// the exported (g, v), with r9y9's post-remove_weight_norm names.
func TestExportInference(t *testing.T) {
	f := newGradFixture(t, smallConfig(1, 3, true), 1, 12, 11)
	train := map[string]Tensor{}
	for _, ts := range f.m.ExportTensors() {
		train[ts.Name] = ts
	}
	inf := f.m.ExportInference()
	byName := map[string]Tensor{}
	for _, ts := range inf {
		if strings.HasSuffix(ts.Name, "_g") || strings.HasSuffix(ts.Name, "_v") {
			t.Errorf("inference tensor %s still weight-normalised", ts.Name)
		}
		byName[ts.Name] = ts
	}
	for _, conv := range []string{"conv_layers.2.conv", "first_conv", "last_conv_layers.3", "upsample_net.upsample.up_layers.3"} {
		g, v, w := train[conv+".weight_g"], train[conv+".weight_v"], byName[conv+".weight"]
		if !slices.Equal(w.Shape, v.Shape) {
			t.Fatalf("%s.weight shape %v, want %v", conv, w.Shape, v.Shape)
		}
		out := v.Shape[0]
		if len(v.Shape) == 4 {
			out = 1
		}
		per := len(v.Data) / out
		for o := 0; o < out; o++ {
			var n float64
			for _, x := range v.Data[o*per : (o+1)*per] {
				n += float64(x) * float64(x)
			}
			n = math.Sqrt(n)
			for i := o * per; i < (o+1)*per; i++ {
				want := float64(g.Data[o]) * float64(v.Data[i]) / n
				if math.Abs(float64(w.Data[i])-want) > 1e-6*math.Max(1, math.Abs(want)) {
					t.Fatalf("%s.weight[%d] = %g, want g*v/||v|| = %g", conv, i, w.Data[i], want)
				}
			}
		}
	}
	if b, ok := byName["conv_layers.2.conv.bias"]; !ok || !slices.Equal(b.Data, train["conv_layers.2.conv.bias"].Data) {
		t.Error("bias missing or changed in the inference export")
	}
	if _, ok := byName["upsample_net.conv_in.weight"]; !ok {
		t.Error("conv_in weight missing from the inference export")
	}
}

// TestConditioning: the standalone upsampler gives exactly the
// conditioning Forward uses.
func TestConditioning(t *testing.T) {
	f := newGradFixture(t, smallConfig(1, 3, true), 2, 24, 12)
	f.m.Forward(f.ws, f.x, f.mel)
	cfg := f.m.Config()
	n := 2 * cfg.CinChannels * 24
	dst := f.m.Backend().Alloc(n)
	f.m.Conditioning(f.mel, 2, 24/cfg.HopSize(), compute.V(dst))
	if got, want := f64(compute.V(dst))[:n], f64(compute.V(f.ws.c))[:n]; !slices.Equal(got, want) {
		t.Error("Conditioning differs from the conditioning inside Forward")
	}
}

// TestInferenceWorkspace: the forward-only workspace gives bit-identical
// outputs with far less memory, allocates exactly InferenceBytes, and
// refuses Backward.
func TestInferenceWorkspace(t *testing.T) {
	for _, layers := range []int{4, 5} { // even and odd layer counts (ping-pong parity)
		cfg := smallConfig(1, 3, true)
		cfg.Layers, cfg.Stacks = layers, 1
		f := newGradFixture(t, cfg, 2, 24, 13)
		want := slices.Clone(f64(f.m.Forward(f.ws, f.x, f.mel))[:2*cfg.OutChannels*24])
		be := f.m.Backend().(*refBackend)
		before := be.allocated
		iws, err := f.m.NewInferenceWorkspace(2, 24)
		if err != nil {
			t.Fatal(err)
		}
		if got := 4 * (be.allocated - before); got != cfg.InferenceBytes(2, 24) {
			t.Errorf("inference workspace allocates %d bytes, InferenceBytes says %d", got, cfg.InferenceBytes(2, 24))
		}
		got := f64(f.m.Forward(iws, f.x, f.mel))[:len(want)]
		if !slices.Equal(got, want) {
			t.Errorf("layers=%d: forward-only output differs from the training workspace's", layers)
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Error("Backward on a forward-only workspace did not panic")
				}
			}()
			f.m.Backward(iws, f.ws.DOut(), compute.View{})
		}()
	}
	ref := ReferenceConfig(30, 1)
	if inf, tr := ref.InferenceBytes(1, 220500/256*256), ref.ActivationBytes(1, 220500/256*256); inf*8 > tr {
		t.Errorf("forward-only workspace %.2f GB is not much smaller than training's %.2f GB", float64(inf)/1e9, float64(tr)/1e9)
	}
}
