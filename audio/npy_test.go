package audio

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// k/4 for k in -5..6 laid out 3x4 row-major, as testdata/gen.py wrote it.
var fixtureA = []float32{-1.25, -1, -0.75, -0.5, -0.25, 0, 0.25, 0.5, 0.75, 1, 1.25, 1.5}

func TestReadNPYFixtures(t *testing.T) {
	iota24 := make([]float32, 24)
	for i := range iota24 {
		iota24[i] = float32(i)
	}
	cases := []struct {
		file  string
		shape []int
		want  []float32
	}{
		{"c_f4_le.npy", []int{3, 4}, fixtureA},
		{"c_f8_be.npy", []int{3, 4}, fixtureA},
		{"f_f2_le.npy", []int{3, 4}, fixtureA},     // Fortran order float16
		{"f_f4_be_3d.npy", []int{2, 3, 4}, iota24}, // Fortran order, 3-D, big endian
		{"c_i2.npy", []int{6}, []float32{-3, -2, -1, 0, 1, 2}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			data, shape, err := ReadNPY(filepath.Join("testdata", c.file))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(shape, c.shape) {
				t.Fatalf("shape %v, want %v", shape, c.shape)
			}
			equalF32(t, c.file, data, c.want)
		})
	}
}

// Every binary16 class converted by hand: 2^-24 is the smallest subnormal,
// 65504 the largest finite value.
func TestHalfToFloat32(t *testing.T) {
	cases := map[uint16]float32{
		0x0000: 0, 0x3C00: 1, 0xC000: -2, 0x3555: 0.25 * (1 + 341.0/1024), 0x7BFF: 65504,
		0x0001: 1.0 / (1 << 24), 0x03FF: 1023.0 / (1 << 24), 0x8001: -1.0 / (1 << 24), 0x0400: 1.0 / (1 << 14),
		0x7C00: float32(math.Inf(1)), 0xFC00: float32(math.Inf(-1)),
	}
	for h, want := range cases {
		if got := halfToFloat32(h); got != want {
			t.Errorf("half %#04x = %v, want %v", h, got, want)
		}
	}
	if v := halfToFloat32(0x8000); v != 0 || !math.Signbit(float64(v)) {
		t.Errorf("half 0x8000 = %v, want -0", v)
	}
	if v := halfToFloat32(0x7E00); !math.IsNaN(float64(v)) {
		t.Errorf("half 0x7e00 = %v, want NaN", v)
	}
}

// All 65536 float16 bit patterns against numpy's astype(float32).
func TestHalfToFloat32AllAgainstNumpy(t *testing.T) {
	needPython(t, "numpy")
	p := filepath.Join(t.TempDir(), "h.f32")
	runPython(t, `
import sys, numpy as np
np.arange(65536, dtype=np.uint16).view(np.float16).astype("<f4").tofile(sys.argv[1])
`, p)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for h := range 65536 {
		want := math.Float32frombits(binary.LittleEndian.Uint32(b[4*h:]))
		got := halfToFloat32(uint16(h))
		if math.IsNaN(float64(want)) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("half %#04x = %v, numpy NaN", h, got)
			}
			continue
		}
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("half %#04x = %v, numpy %v", h, got, want)
		}
	}
}

// numpy writes every supported dtype, order and byte order plus format 2.0;
// the expected values are the same arrays dumped as raw little-endian
// float32 in C order (no .npy parsing involved).
func TestReadNumpyWrittenNPY(t *testing.T) {
	needPython(t, "numpy")
	dir := t.TempDir()
	out := runPython(t, `
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(11)
shapes = [(5, 80), (80, 7), (2, 3, 4), (4, 1, 3, 2), (13,), (), (0, 80)]
names = []
for dt in ["<f4", ">f4", "<f8", ">f8", "<f2", ">f2", "<i2", ">i4"]:
    for fortran in (False, True):
        for si, shape in enumerate(shapes):
            if dt[1] == "i":
                a = rng.integers(-30000, 30000, shape).astype(dt)
            else:
                a = (rng.standard_normal(shape) * 3).astype(dt)
            if fortran:
                a = np.asfortranarray(a)
            name = "%s/%s_%s_%d" % (d, dt[1:] + ("be" if dt[0] == ">" else "le"), "F" if fortran else "C", si)
            if si == 0 and fortran:
                with open(name + ".npy", "wb") as f:
                    np.lib.format.write_array(f, a, version=(2, 0))
            else:
                np.save(name + ".npy", a)
            np.ascontiguousarray(a).astype("<f4").tofile(name + ".f32")
            names.append("%s %s" % (name, ",".join(map(str, a.shape))))  # asfortranarray makes 0-d 1-d
print("\n".join(names))
`, dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8*2*7 {
		t.Fatalf("python produced %d files", len(lines))
	}
	for _, line := range lines {
		name, shapeStr, _ := strings.Cut(line, " ")
		var wantShape []int
		if shapeStr != "" {
			for _, s := range strings.Split(shapeStr, ",") {
				var d int
				fmt.Sscan(s, &d)
				wantShape = append(wantShape, d)
			}
		}
		data, shape, err := ReadNPY(name + ".npy")
		if err != nil {
			t.Fatal(err)
		}
		if len(shape) != len(wantShape) || !slices.Equal(shape, wantShape) {
			t.Fatalf("%s: shape %v, want %v", name, shape, wantShape)
		}
		raw, err := os.ReadFile(name + ".f32")
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, len(raw)/4)
		binary.Read(bytes.NewReader(raw), binary.LittleEndian, want)
		equalF32(t, filepath.Base(name), data, want)
	}
}

// Go writes, numpy loads: values against a raw dump, header version 1.0 and
// 64-byte data alignment.
func TestNumpyReadsOurNPY(t *testing.T) {
	needPython(t, "numpy")
	dir := t.TempDir()
	var args []string
	for i, shape := range [][]int{{3, 4}, {5}, {}, {2, 3, 4}, {0, 80}, {1000, 80}} {
		n, _ := shapeProduct(shape)
		data := make([]float32, n)
		for j := range data {
			data[j] = float32(math.Sin(float64(j)*0.37)) * float32(j+1)
		}
		base := filepath.Join(dir, fmt.Sprint(i))
		if err := WriteNPY(base+".npy", data, shape); err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		binary.Write(&raw, binary.LittleEndian, data)
		os.WriteFile(base+".raw", raw.Bytes(), 0o644)
		s := make([]string, len(shape))
		for k, d := range shape {
			s[k] = fmt.Sprint(d)
		}
		args = append(args, base, strings.Join(s, ","))
	}
	out := runPython(t, `
import sys, numpy as np
a = sys.argv[1:]
for base, shp in zip(a[::2], a[1::2]):
    shape = tuple(int(s) for s in shp.split(",") if s)
    with open(base + ".npy", "rb") as f:
        assert np.lib.format.read_magic(f) == (1, 0)
        np.lib.format.read_array_header_1_0(f)
        assert f.tell() % 64 == 0, f.tell()
    x = np.load(base + ".npy")
    assert x.dtype == np.dtype("<f4") and x.flags.c_contiguous and x.shape == shape, (x.dtype, x.shape, shape)
    assert np.array_equal(x.ravel(), np.fromfile(base + ".raw", "<f4")), base
print("OK")
`, args...)
	if strings.TrimSpace(out) != "OK" {
		t.Fatalf("python: %s", out)
	}
}

func TestWriteNPYRejectsBadShape(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s.npy")
	for _, shape := range [][]int{{3, 5}, {-1, -12}, {1 << 62, 1 << 62}} {
		if err := WriteNPY(p, make([]float32, 12), shape); err == nil || !strings.HasPrefix(err.Error(), p+": ") {
			t.Fatalf("shape %v: err = %v", shape, err)
		}
	}
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatal("a file was created by a rejected write")
	}
}

// npyFile assembles a .npy from a header dict and data, padded like numpy.
func npyFile(dict string, data []byte) []byte {
	hl := len(dict) + 1
	hl += (64 - (10+hl)%64) % 64
	h := dict + strings.Repeat(" ", hl-len(dict)-1) + "\n"
	return cat([]byte("\x93NUMPY\x01\x00"), le16(len(h)), []byte(h), data)
}

func TestNPYErrors(t *testing.T) {
	f4 := func(shape string) string {
		return "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }"
	}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "not a .npy file: 0 bytes"},
		{"bad magic", []byte("\x93NUMPX\x01\x00\x10\x00{}              "), "bad magic"},
		{"version 9", []byte("\x93NUMPY\x09\x00\x10\x00{}              "), "unsupported .npy format version 9.0"},
		{"header past eof", []byte("\x93NUMPY\x01\x00\xff\xff{'descr'"), "declares 65535 header bytes, file has 8"},
		{"huge shape tiny file", npyFile(f4("(100000, 100000)"), make([]byte, 16)), "header declares shape [100000 100000] of <f4 (40000000000 data bytes) but the file has 16 data bytes"},
		{"short data", npyFile(f4("(3, 4)"), make([]byte, 44)), "(48 data bytes) but the file has 44"},
		{"trailing data", npyFile(f4("(3,)"), make([]byte, 16)), "(12 data bytes) but the file has 16"},
		{"overflow shape", npyFile(f4("(4294967296, 4294967296, 4294967296)"), nil), "is too large"},
		{"object", npyFile("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", make([]byte, 16)), `object arrays (dtype "|O") are not supported`},
		{"structured", npyFile("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", make([]byte, 8)), "structured dtypes are not supported"},
		{"complex", npyFile("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", make([]byte, 16)), `unsupported dtype "<c8"`},
		{"uint8", npyFile("{'descr': '|u1', 'fortran_order': False, 'shape': (2,), }", make([]byte, 2)), `unsupported dtype "|u1"`},
		{"missing shape", npyFile("{'descr': '<f4', 'fortran_order': False, }", nil), `missing key "shape"`},
		{"extra key", npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", make([]byte, 4)), `unexpected key "x"`},
		{"bad bool", npyFile("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", make([]byte, 4)), "fortran_order is not True or False"},
		{"negative dim", npyFile(f4("(-1,)"), nil), "shape: expected a non-negative integer"},
		{"no comma", npyFile(f4("(3)"), make([]byte, 12)), "1-element shape without trailing comma"},
		{"not a dict", npyFile("[1, 2]", nil), "expected '{'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, size := range []int64{int64(len(c.b)), -1} {
				_, _, err := DecodeNPY(bytes.NewReader(c.b), "m.npy", size)
				if err == nil {
					t.Fatalf("size %d: no error", size)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "m.npy: ") || strings.Contains(msg, "\n") {
					t.Fatalf("size %d: error %q does not start with the file name on one line", size, msg)
				}
				if size >= 0 && !strings.Contains(msg, c.want) {
					t.Fatalf("error %q does not contain %q", msg, c.want)
				}
			}
		})
	}
}

func TestNPYNoHugeAllocation(t *testing.T) {
	b := npyFile("{'descr': '<f8', 'fortran_order': True, 'shape': (100000, 100000), }", make([]byte, 64))
	for _, size := range []int64{int64(len(b)), -1} {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		_, _, err := DecodeNPY(bytes.NewReader(b), "m.npy", size)
		runtime.ReadMemStats(&m1)
		if err == nil {
			t.Fatalf("size %d: no error", size)
		}
		if d := m1.TotalAlloc - m0.TotalAlloc; d > 2<<20 {
			t.Fatalf("size %d: allocated %d bytes for a %d-byte file", size, d, len(b))
		}
	}
}

func TestReadMel(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []float32, shape ...int) string {
		p := filepath.Join(dir, name)
		if err := WriteNPY(p, data, shape); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// frames x mels: value 10*frame + mel.
	fm := []float32{0, 1, 2, 10, 11, 12}
	mf := []float32{0, 10, 1, 11, 2, 12} // the same spectrogram stored mels x frames
	for _, c := range []struct {
		p     string
		shape []int
	}{{write("fm.npy", fm, 2, 3), []int{2, 3}}, {write("mf.npy", mf, 3, 2), []int{3, 2}}} {
		mel, frames, transposed, err := ReadMel(c.p, 3, MelLayoutAuto)
		if err != nil {
			t.Fatal(err)
		}
		if frames != 2 || transposed != (c.shape[0] == 3) {
			t.Fatalf("%v: %d frames, transposed %v", c.shape, frames, transposed)
		}
		equalF32(t, fmt.Sprint(c.shape), mel, fm)
	}
	// A square array is read as the layout says.
	sq := []float32{0, 1, 2, 10, 11, 12, 20, 21, 22}
	sqp := write("square.npy", sq, 3, 3)
	if mel, frames, tr, err := ReadMel(sqp, 3, MelFramesMels); err != nil || frames != 3 || tr {
		t.Fatalf("square frames-mels: %d frames, transposed %v, %v", frames, tr, err)
	} else {
		equalF32(t, "square frames-mels", mel, sq)
	}
	if mel, frames, tr, err := ReadMel(sqp, 3, MelMelsFrames); err != nil || frames != 3 || !tr {
		t.Fatalf("square mels-frames: %d frames, transposed %v, %v", frames, tr, err)
	} else {
		equalF32(t, "square mels-frames", mel, []float32{0, 10, 20, 1, 11, 21, 2, 12, 22})
	}
	for _, n := range MelLayoutNames {
		if l, err := ParseMelLayout(n); err != nil || l.String() != n {
			t.Errorf("ParseMelLayout(%q) = %v, %v", n, l, err)
		}
	}
	if _, err := ParseMelLayout("time-first"); err == nil {
		t.Error("ParseMelLayout accepted an unknown name")
	}
	// A numpy-written big-endian float64 (mels=3, frames=4) fixture.
	mel, frames, _, err := ReadMel(filepath.Join("testdata", "c_f8_be.npy"), 3, MelLayoutAuto)
	if err != nil || frames != 4 {
		t.Fatalf("fixture: frames %d, err %v", frames, err)
	}
	equalF32(t, "fixture transposed", mel, []float32{-1.25, -0.25, 0.75, -1, 0, 1, -0.75, 0.25, 1.25, -0.5, 0.5, 1.5})

	nan := slices.Clone(fm)
	nan[4] = float32(math.NaN())
	inf := slices.Clone(mf)
	inf[5] = float32(math.Inf(-1))
	errCases := []struct {
		p, want string
	}{
		{write("sq.npy", make([]float32, 9), 3, 3), "shape [3 3] is square with 3 mels, so either axis could be time: say which with --mel-layout"},
		{filepath.Join("testdata", "c_i2.npy"), "integer data (dtype <i2)"},
		{write("none.npy", make([]float32, 8), 2, 4), "shape [2 4] has no axis of 3 mels"},
		{write("1d.npy", make([]float32, 3), 3), "mel must be a 2-D array, got shape [3]"},
		{write("3d.npy", make([]float32, 18), 2, 3, 3), "mel must be a 2-D array, got shape [2 3 3]"},
		{write("empty.npy", nil, 0, 3), "mel has 0 frames"},
		{write("nan.npy", nan, 2, 3), "value at frame 1, mel 1 is NaN"},
		{write("inf.npy", inf, 3, 2), "value at frame 1, mel 2 is -Inf"},
		{filepath.Join(dir, "missing.npy"), "no such file"},
	}
	for _, c := range errCases {
		_, _, _, err := ReadMel(c.p, 3, MelLayoutAuto)
		if err == nil || !strings.Contains(err.Error(), c.p) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q naming the file", filepath.Base(c.p), err, c.want)
		}
	}
	// A layout that contradicts the shape is refused.
	for _, c := range []struct {
		l    MelLayout
		p    string
		want string
	}{{MelFramesMels, write("mf2.npy", mf, 3, 2), "is not (frames, 3 mels)"}, {MelMelsFrames, write("fm2.npy", fm, 2, 3), "is not (3 mels, frames)"}} {
		if _, _, _, err := ReadMel(c.p, 3, c.l); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s as %v: err = %v, want %q", filepath.Base(c.p), c.l, err, c.want)
		}
	}
}

func FuzzReadNPY(f *testing.F) {
	entries, _ := os.ReadDir("testdata")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".npy") {
			b, _ := os.ReadFile(filepath.Join("testdata", e.Name()))
			f.Add(b)
		}
	}
	f.Add(npyFile("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3, 2), }", make([]byte, 48)))
	f.Add(npyFile("{'descr': '>f2', 'fortran_order': False, 'shape': (), }", []byte{0x3c, 0}))
	f.Add(npyFile("{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 100000), }", make([]byte, 8)))
	f.Add(npyFile("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", make([]byte, 8)))
	f.Add([]byte("\x93NUMPY\x02\x00\x08\x00\x00\x00{}      "))
	f.Fuzz(func(t *testing.T, b []byte) {
		data, shape, err := DecodeNPY(bytes.NewReader(b), "f.npy", int64(len(b)))
		data2, shape2, err2 := DecodeNPY(bytes.NewReader(b), "f.npy", -1)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("known size err %v, unknown size err %v", err, err2)
		}
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "f.npy: ") || strings.Contains(msg, "\n") {
				t.Fatalf("bad error text %q", msg)
			}
			return
		}
		n, ok := shapeProduct(shape)
		if !ok || n != len(data) || 2*n > len(b) {
			t.Fatalf("shape %v with %d values from %d bytes", shape, len(data), len(b))
		}
		if !slices.Equal(shape, shape2) || len(data2) != len(data) {
			t.Fatalf("known/unknown size disagree: %v vs %v", shape, shape2)
		}
		for i := range data {
			if math.Float32bits(data[i]) != math.Float32bits(data2[i]) {
				t.Fatalf("value %d: %v vs %v", i, data[i], data2[i])
			}
		}
	})
}

func benchNPY(b *testing.B, dt string, fortran bool) {
	// An 80-mel spectrogram of ~116 s (10000 frames at hop 256, 22050 Hz).
	const frames, mels = 10000, 80
	order := "False"
	if fortran {
		order = "True"
	}
	size := map[string]int{"<f4": 4, "<f8": 8, "<f2": 2}[dt]
	body := make([]byte, frames*mels*size)
	for i := range body {
		body[i] = byte(i*7) & 0x3f // keeps float16/32/64 finite
	}
	p := filepath.Join(b.TempDir(), "m.npy")
	file := npyFile(fmt.Sprintf("{'descr': '%s', 'fortran_order': %s, 'shape': (%d, %d), }", dt, order, frames, mels), body)
	if err := os.WriteFile(p, file, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := ReadNPY(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadNPY reads a 10000x80 float32 C-order mel from disk.
func BenchmarkReadNPY(b *testing.B)               { benchNPY(b, "<f4", false) }
func BenchmarkReadNPYFloat64Fortran(b *testing.B) { benchNPY(b, "<f8", true) }
func BenchmarkReadNPYFloat16(b *testing.B)        { benchNPY(b, "<f2", false) }

// BenchmarkWriteNPY writes a 10000x80 float32 mel atomically (includes fsync).
func BenchmarkWriteNPY(b *testing.B) {
	data := make([]float32, 10000*80)
	p := filepath.Join(b.TempDir(), "w.npy")
	b.SetBytes(int64(4 * len(data)))
	for b.Loop() {
		if err := WriteNPY(p, data, []int{10000, 80}); err != nil {
			b.Fatal(err)
		}
	}
}
