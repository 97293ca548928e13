package train

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// sampleTensors covers the awkward values: NaN with a payload, -0, ±Inf,
// denormals, a 0-d tensor and a zero-size tensor.
func sampleTensors(seed uint64) []Tensor {
	r := rand.New(rand.NewPCG(seed, 1))
	w := make([]float32, 2*3*5)
	for i := range w {
		w[i] = float32(r.NormFloat64())
	}
	w[0] = math.Float32frombits(0x7fc01234) // NaN with payload
	w[1] = float32(math.Copysign(0, -1))
	w[2] = float32(math.Inf(1))
	w[3] = float32(math.Inf(-1))
	w[4] = math.Float32frombits(1) // smallest denormal
	return []Tensor{
		{Name: "first_conv.weight_v", Shape: []int{2, 3, 5}, Data: w},
		{Name: "first_conv.bias", Shape: []int{2}, Data: []float32{0.25, -7}},
		{Name: "scalar", Shape: []int{}, Data: []float32{3.5}},
		{Name: "empty", Shape: []int{0, 3}, Data: []float32{}},
	}
}

func encode(t *testing.T, ts []Tensor, meta map[string]string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := WriteSafetensors(&b, ts, meta); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSafetensorsRoundTrip(t *testing.T) {
	ts := sampleTensors(1)
	data := encode(t, ts, map[string]string{"k": "v"})
	n := binary.LittleEndian.Uint64(data)
	if (8+n)%8 != 0 {
		t.Errorf("data section starts at %d, not 8-byte aligned", 8+n)
	}
	got, meta, err := ParseSafetensors(data)
	if err != nil {
		t.Fatal(err)
	}
	if !Equal(got, ts) {
		t.Fatalf("round trip differs:\n got %v\nwant %v", got, ts)
	}
	if meta["k"] != "v" || len(meta) != 1 {
		t.Errorf("metadata %v", meta)
	}
	// Without metadata and with no tensors at all.
	for _, c := range [][]Tensor{nil, ts[:1]} {
		got, meta, err := ParseSafetensors(encode(t, c, nil))
		if err != nil || len(meta) != 0 || !Equal(got, c) {
			t.Errorf("%d tensors: got %v %v %v", len(c), got, meta, err)
		}
	}
}

func TestWriteSafetensorsRefuses(t *testing.T) {
	cases := map[string][]Tensor{
		"duplicate":  {{Name: "a", Shape: []int{1}, Data: []float32{1}}, {Name: "a", Shape: []int{1}, Data: []float32{2}}},
		"empty name": {{Name: "", Shape: []int{1}, Data: []float32{1}}},
		"reserved":   {{Name: "__metadata__", Shape: []int{1}, Data: []float32{1}}},
		"elements":   {{Name: "a", Shape: []int{2, 2}, Data: []float32{1, 2, 3}}},
		"negative":   {{Name: "a", Shape: []int{-1}, Data: nil}},
	}
	for name, ts := range cases {
		var b bytes.Buffer
		if err := WriteSafetensors(&b, ts, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// rawFile builds a safetensors file from a literal header and data.
func rawFile(header string, data []byte) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(header)))
	b.WriteString(header)
	b.Write(data)
	return b.Bytes()
}

func TestParseSafetensorsRefuses(t *testing.T) {
	eight := make([]byte, 8)
	ent := func(name, dtype, shape string, b, e int) string {
		return `"` + name + `":{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":[` + itoa(b) + `,` + itoa(e) + `]}`
	}
	huge := make([]byte, 16)
	binary.LittleEndian.PutUint64(huge, 1<<62)
	cases := []struct {
		name, want string
		file       []byte
	}{
		{"short", "shorter than", []byte{1, 2, 3}},
		{"absurd header length", "impossible", huge},
		{"header past end", "impossible", rawFile("{}", nil)[:9]},
		{"dtype", "unsupported dtype", rawFile("{"+ent("a", "F16", "[4]", 0, 8)+"}", eight)},
		{"shape vs offsets", "needs 4 bytes", rawFile("{"+ent("a", "F32", "[1]", 0, 8)+"}", eight)},
		{"duplicate", "duplicate", rawFile("{"+ent("a", "F32", "[1]", 0, 4)+","+ent("a", "F32", "[1]", 4, 8)+"}", eight)},
		{"overlap", "overlap", rawFile("{"+ent("a", "F32", "[2]", 0, 8)+","+ent("b", "F32", "[1]", 4, 8)+"}", eight)},
		{"out of range", "outside", rawFile("{"+ent("a", "F32", "[3]", 0, 12)+"}", eight)},
		{"reversed", "outside", rawFile("{"+ent("a", "F32", "[1]", 8, 4)+"}", eight)},
		{"hole", "belong to no tensor", rawFile("{"+ent("a", "F32", "[1]", 4, 8)+"}", eight)},
		{"trailing data", "cover", rawFile("{"+ent("a", "F32", "[1]", 0, 4)+"}", eight)},
		{"negative dim", "needs", rawFile("{"+ent("a", "F32", "[-1,-8]", 0, 8)+"}", eight)},
		{"overflowing shape", "needs", rawFile("{"+ent("a", "F32", "[4294967296,4294967296,4]", 0, 8)+"}", eight)},
		{"unknown field", "unknown field", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}}`, eight)},
		{"missing shape", "missing shape", rawFile(`{"a":{"dtype":"F32","data_offsets":[0,8]}}`, eight)},
		{"three offsets", "2 entries", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}}`, eight)},
		{"not an object", "not a JSON object", rawFile(`[1,2]   `, nil)},
		{"garbage after header", "after the JSON object", rawFile(`{}  x    `, nil)},
		{"bad metadata", "__metadata__", rawFile(`{"__metadata__":{"a":1}}`, nil)},
		{"truncated json", "header", rawFile(`{"a":{"dtype"`, nil)},
	}
	for _, c := range cases {
		_, _, err := ParseSafetensors(c.file)
		if err == nil {
			t.Errorf("%s: accepted", c.name)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q does not mention %q", c.name, err, c.want)
		}
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestSafetensorsForeignFixture reads a file written by numpy-only Python
// (testdata/make_tiny.py), recomputing the values from the script's formulas.
func TestSafetensorsForeignFixture(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "tiny.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	ts, meta, err := ParseSafetensors(data)
	if err != nil {
		t.Fatal(err)
	}
	w := make([]float32, 12)
	for i := range w {
		w[i] = float32((float64(i) - 5.5) / 4)
	}
	want := []Tensor{ // data order
		{Name: "scale", Shape: []int{}, Data: []float32{0.5}},
		{Name: "conv.bias", Shape: []int{3}, Data: []float32{1e-3, -2, 65504}},
		{Name: "empty", Shape: []int{0, 4}, Data: []float32{}},
		{Name: "conv.weight_v", Shape: []int{3, 2, 2}, Data: w},
	}
	if !Equal(ts, want) {
		t.Errorf("got %v\nwant %v", ts, want)
	}
	if meta["writer"] != "numpy" {
		t.Errorf("metadata %v", meta)
	}
}

func havePython(t *testing.T, module string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("skipping: /usr/bin/python3 not found (independent reference)")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import "+module).Run(); err != nil {
		t.Skipf("skipping: /usr/bin/python3 has no %s (independent reference)", module)
	}
}

// TestSafetensorsPythonReader has an independent reader (json + numpy, no
// safetensors package) decode our file and report every value's bits.
func TestSafetensorsPythonReader(t *testing.T) {
	havePython(t, "numpy")
	ts := sampleTensors(2)
	p := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(p, encode(t, ts, map[string]string{"step": "12"}), 0o644); err != nil {
		t.Fatal(err)
	}
	const script = `
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
(n,) = struct.unpack("<Q", raw[:8])
assert (8 + n) % 8 == 0, "data not aligned"
h = json.loads(raw[8:8 + n])
body = raw[8 + n:]
out = {"meta": h.pop("__metadata__", {}), "tensors": {}}
for name, e in h.items():
    assert e["dtype"] == "F32"
    b, en = e["data_offsets"]
    a = np.frombuffer(body[b:en], dtype="<f4").reshape(e["shape"])
    out["tensors"][name] = {"shape": list(a.shape), "bits": a.reshape(-1).view("<u4").tolist()}
print(json.dumps(out))
`
	out, err := exec.Command("/usr/bin/python3", "-c", script, p).CombinedOutput()
	if err != nil {
		t.Fatalf("python reader: %v\n%s", err, out)
	}
	var got struct {
		Meta    map[string]string
		Tensors map[string]struct {
			Shape []int
			Bits  []uint32
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Meta["step"] != "12" {
		t.Errorf("python saw metadata %v", got.Meta)
	}
	if len(got.Tensors) != len(ts) {
		t.Fatalf("python saw %d tensors, want %d", len(got.Tensors), len(ts))
	}
	for _, w := range ts {
		g, ok := got.Tensors[w.Name]
		if !ok || !slices.Equal(g.Shape, w.Shape) || len(g.Bits) != len(w.Data) {
			t.Errorf("%s: python saw %+v", w.Name, g)
			continue
		}
		for i, x := range w.Data {
			if g.Bits[i] != math.Float32bits(x) {
				t.Errorf("%s[%d]: python read bits %08x, wrote %08x", w.Name, i, g.Bits[i], math.Float32bits(x))
			}
		}
	}
}

func TestCheckTensors(t *testing.T) {
	ts := sampleTensors(3)
	want := Shapes(ts)
	if err := CheckTensors(ts, want); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func() ([]Tensor, map[string][]int){
		"missing": func() ([]Tensor, map[string][]int) { return ts[1:], want },
		"extra": func() ([]Tensor, map[string][]int) {
			return append(append([]Tensor{}, ts...), Tensor{Name: "x", Shape: []int{1}, Data: []float32{0}}), want
		},
		"duplicate": func() ([]Tensor, map[string][]int) { return append(append([]Tensor{}, ts...), ts[0]), want },
		"shape": func() ([]Tensor, map[string][]int) {
			w := Shapes(ts)
			w["first_conv.weight_v"] = []int{2, 5, 3}
			return ts, w
		},
		"rank": func() ([]Tensor, map[string][]int) {
			w := Shapes(ts)
			w["scalar"] = []int{1}
			return ts, w
		},
	}
	for name, f := range bad {
		g, w := f()
		if err := CheckTensors(g, w); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzLoadSafetensors: the parser must never panic, must allocate at most a
// small multiple of the input, and whatever it accepts must re-encode to a
// file that parses to the same tensors.
func FuzzLoadSafetensors(f *testing.F) {
	var b bytes.Buffer
	WriteSafetensors(&b, sampleTensors(4), map[string]string{"a": "b"})
	f.Add(b.Bytes())
	if fx, err := os.ReadFile(filepath.Join("testdata", "tiny.safetensors")); err == nil {
		f.Add(fx)
	}
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		ts, meta, err := ParseSafetensors(data)
		runtime.ReadMemStats(&after)
		if d := after.TotalAlloc - before.TotalAlloc; d > uint64(64*len(data)+1<<20) {
			t.Fatalf("allocated %d bytes for a %d-byte input", d, len(data))
		}
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteSafetensors(&out, ts, meta); err != nil {
			t.Fatalf("accepted tensors do not re-encode: %v", err)
		}
		ts2, _, err := ParseSafetensors(out.Bytes())
		if err != nil || !Equal(ts, ts2) {
			t.Fatalf("re-encoded file differs: %v", err)
		}
	})
}
