package audio

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Fixtures written by Python's wave module, scipy and sox (testdata/gen.py);
// expected values are derived by hand from the integers gen.py wrote.
func TestReadWAVFixtures(t *testing.T) {
	i24 := []float32{-1, -1.0 / (1 << 23), 1.0 / (1 << 23), 0.5, float32((1<<23 - 1) / float64(1<<23))}
	cases := []struct {
		file  string
		bits  int
		float bool
		rate  int
		want  []float32
	}{
		// go-audio/wav maps unsigned 8-bit to [0,2]; (v-128)/128 is [-1,1).
		{"pcm8.wav", 8, false, 8000, []float32{-1, -127.0 / 128, -0.5, 0, 0.5, 127.0 / 128}},
		{"pcm24.wav", 24, false, 8000, i24},
		// sox: WAVE_FORMAT_EXTENSIBLE, odd 15-byte data chunk plus pad byte.
		{"ext24.wav", 24, false, 8000, i24},
		{"pcm32.wav", 32, false, 8000, []float32{-1, -1.0 / (1 << 15), 0, 0.5, 1}}, // (2^31-1)/2^31 rounds to 1 in float32
		// go-audio/wav returns float WAV as raw integer bit patterns.
		{"float32.wav", 32, true, 16000, []float32{0.5, -0.25, 1.5, -1, 0}},
		{"float64.wav", 64, true, 16000, []float32{0.5, -0.25, 1.5, -1, float32(1e-3)}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			a, err := ReadWAV(filepath.Join("testdata", c.file), ReadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if a.BitsPerSample != c.bits || a.Float != c.float || a.SampleRate != c.rate || a.Channels != 1 {
				t.Fatalf("got %d bits float=%v %d Hz %d ch", a.BitsPerSample, a.Float, a.SampleRate, a.Channels)
			}
			equalF32(t, c.file, a.Samples, c.want)
		})
	}
}

func TestStereo(t *testing.T) {
	p := filepath.Join("testdata", "pcm16_stereo.wav") // frames (16384,-16384) (32767,-32768) (0,2)
	_, err := ReadWAV(p, ReadOptions{})
	if err == nil || !strings.HasPrefix(err.Error(), p+": 2 channels, expected mono") {
		t.Fatalf("stereo without downmix: err = %v", err)
	}
	a, err := ReadWAV(p, ReadOptions{Downmix: true})
	if err != nil {
		t.Fatal(err)
	}
	if a.Channels != 1 || a.Frames() != 3 {
		t.Fatalf("downmix: %d channels, %d frames", a.Channels, a.Frames())
	}
	equalF32(t, "downmix", a.Samples, []float32{0, -0.5 / 32768, 1.0 / 32768})
	a, err = ReadWAV(p, ReadOptions{KeepChannels: true})
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, "interleaved", a.Samples, []float32{0.5, -0.5, 32767.0 / 32768, -1, 0, 2.0 / 32768})
	if a.Channels != 2 || a.Frames() != 3 {
		t.Fatalf("keep: %d channels, %d frames", a.Channels, a.Frames())
	}
}

// go-audio/wav returns float WAV as integer bit patterns; here a hand-built
// WAVE_FORMAT_EXTENSIBLE float file (the form multichannel float takes) must
// give back the stored floats.
func TestExtensibleFloatAndPCM(t *testing.T) {
	vals := []float32{0.125, -0.75, 1, -1e-6}
	a, err := decodeBytes(wavFile(extFmtBody(3, 1, 44100, 32), f32bytes(vals...)), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Float || a.SampleRate != 44100 {
		t.Fatalf("float=%v rate=%d", a.Float, a.SampleRate)
	}
	equalF32(t, "extensible float", a.Samples, vals)

	a, err = decodeBytes(wavFile(extFmtBody(1, 1, 8000, 16), pcm16(-32768, 8192)), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, "extensible pcm", a.Samples, []float32{-1, 0.25})
}

// go-audio/wav maps 8-bit WAV (unsigned, silence at 128) to [0,2]; every
// code must land on (v-128)/128 in [-1, 127/128].
func Test8BitUnsignedCentred(t *testing.T) {
	data := make([]byte, 256)
	want := make([]float32, 256)
	for v := range data {
		data[v] = byte(v)
		want[v] = float32(v-128) / 128
	}
	a, err := decodeBytes(wavFile(fmtBody(1, 1, 8000, 8), data), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, "8-bit", a.Samples, want)
	if a.Samples[0] != -1 || a.Samples[128] != 0 || a.Samples[255] != 127.0/128 {
		t.Fatalf("ends: %v %v %v", a.Samples[0], a.Samples[128], a.Samples[255])
	}
}

// go-audio/wav returns a short read with err == nil for a truncated file.
func TestTruncatedDataIsError(t *testing.T) {
	fm := fmtBody(1, 1, 44100, 16)
	b := cat(riff(chunk("fmt ", 16, fm)), []byte("data"), le32(88200), make([]byte, 1000))
	want := "x.wav: truncated data chunk: header says 88200 bytes, file has 1000"
	if _, err := decodeBytes(b, ReadOptions{}); err == nil || err.Error() != want {
		t.Fatalf("known size: err = %v, want %q", err, want)
	}
	// Same message when the size is unknown and the shortfall is found by
	// reading.
	if _, err := DecodeWAV(bytes.NewReader(b), "x.wav", -1, ReadOptions{}); err == nil || err.Error() != want {
		t.Fatalf("unknown size: err = %v, want %q", err, want)
	}
	// And through ReadWAV on a real file cut short.
	p := filepath.Join(t.TempDir(), "cut.wav")
	if err := WriteWAV16(p, make([]float32, 44100), 44100); err != nil {
		t.Fatal(err)
	}
	full, _ := os.ReadFile(p)
	os.WriteFile(p, full[:len(full)-10], 0o644)
	_, err := ReadWAV(p, ReadOptions{})
	if want := p + ": truncated data chunk: header says 88200 bytes, file has 88190"; err == nil || err.Error() != want {
		t.Fatalf("cut file: err = %v, want %q", err, want)
	}
}

func TestWAVErrors(t *testing.T) {
	good := fmtBody(1, 1, 8000, 16)
	badAlign := cat(le16(1), le16(2), le32(8000), le32(8000*4), le16(2), le16(16))
	badRate := cat(le16(1), le16(1), le32(8000), le32(1234), le16(2), le16(16))
	zeroRate := fmtBody(1, 1, 0, 16)
	nanData := f32bytes(0.5, float32(math.NaN()))
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "not a WAV file: 0 bytes"},
		{"rifx", []byte("RIFX\x00\x00\x00\x00WAVEfmt "), "big-endian RIFX"},
		{"garbage", []byte("hello world, this is text"), "not a WAV file: no RIFF magic"},
		{"not wave", cat([]byte("RIFF"), le32(4), []byte("AVI ")), `RIFF form type is "AVI "`},
		{"no chunks", riff(), "no fmt chunk"},
		{"no data", riff(chunk("fmt ", 16, good)), "no data chunk"},
		{"data first", riff(chunk("data", 2, pcm16(1)), chunk("fmt ", 16, good)), "data chunk before fmt chunk"},
		{"short fmt", riff(chunk("fmt ", 14, good[:14]), chunk("data", 2, pcm16(1))), "fmt chunk is 14 bytes"},
		{"dup fmt", riff(chunk("fmt ", 16, good), chunk("fmt ", 16, good), chunk("data", 2, pcm16(1))), "duplicate fmt chunk"},
		{"a-law", wavFile(fmtBody(6, 1, 8000, 8), []byte{1, 2}), "unsupported WAV encoding A-law (format tag 0x0006)"},
		{"adpcm", wavFile(fmtBody(2, 1, 8000, 4), []byte{1, 2}), "unsupported WAV encoding Microsoft ADPCM"},
		{"ext a-law", wavFile(extFmtBody(6, 1, 8000, 8), []byte{1, 2}), "unsupported WAV encoding A-law"},
		{"ext bad guid", wavFile(cat(extFmtBody(1, 1, 8000, 16)[:39], []byte{0x72}), pcm16(1)), "unsupported WAVE_FORMAT_EXTENSIBLE subformat GUID"},
		{"ext short", wavFile(extFmtBody(1, 1, 8000, 16)[:24], pcm16(1)), "WAVE_FORMAT_EXTENSIBLE fmt chunk is 24 bytes"},
		{"12-bit", wavFile(fmtBody(1, 1, 8000, 12), pcm16(1)), "unsupported PCM bit depth 12"},
		{"16-bit float", wavFile(fmtBody(3, 1, 8000, 16), pcm16(1)), "unsupported IEEE float bit depth 16"},
		{"block align", wavFile(badAlign, pcm16(1, 2)), "inconsistent header: block align 2, expected 4 for 2 channels x 16 bits"},
		{"byte rate", wavFile(badRate, pcm16(1)), "inconsistent header: byte rate 1234, expected 16000"},
		{"zero rate", wavFile(zeroRate, pcm16(1)), "sample rate is 0"},
		{"zero channels", wavFile(fmtBody(1, 0, 8000, 16), pcm16(1)), "0 channels"},
		{"partial frame", wavFile(good, []byte{1, 2, 3}), "data chunk is 3 bytes, not a whole number of 2-byte frames"},
		{"huge list", riff(chunk("fmt ", 16, good), cat([]byte("LIST"), le32(1<<30), []byte("ab"))), `truncated "LIST" chunk: header says 1073741824 bytes, file has 2`},
		{"cut chunk header", cat(riff(chunk("fmt ", 16, good)), []byte("dat")), "truncated chunk header at offset 36"},
		{"nan float", wavFile(fmtBody(3, 1, 8000, 32), nanData), "sample 1 is NaN"},
		{"streaming size", cat(riff(chunk("fmt ", 16, good)), []byte("data"), le32(0xFFFFFFFF), pcm16(1, 2)), "truncated data chunk: header says 4294967295 bytes, file has 4"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, size := range []int64{int64(len(c.b)), -1} {
				_, err := DecodeWAV(bytes.NewReader(c.b), "x.wav", size, ReadOptions{})
				if err == nil {
					t.Fatalf("size %d: no error", size)
				}
				msg := err.Error()
				if !strings.HasPrefix(msg, "x.wav: ") || strings.Contains(msg, "\n") {
					t.Fatalf("size %d: error %q does not start with the file name on one line", size, msg)
				}
				if size >= 0 && !strings.Contains(msg, c.want) {
					t.Fatalf("error %q does not contain %q", msg, c.want)
				}
			}
		})
	}
}

// Odd-sized chunks before the data carry a pad byte that must be skipped.
func TestOddChunkPadding(t *testing.T) {
	b := riff(chunk("fmt ", 16, fmtBody(1, 1, 8000, 16)), chunk("note", 3, []byte("abc")),
		chunk("data", 4, pcm16(16384, -16384)), chunk("LIST", 5, []byte("trail")))
	a, err := decodeBytes(b, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, "after padded chunk", a.Samples, []float32{0.5, -0.5})
	// 8-bit odd data chunk with no pad byte at the end of the file.
	b = riff(chunk("fmt ", 16, fmtBody(1, 1, 8000, 8)), cat([]byte("data"), le32(3), []byte{128, 255, 0}))
	a, err = decodeBytes(b, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	equalF32(t, "unpadded tail", a.Samples, []float32{0, 127.0 / 128, -1})
}

// A tiny file that declares a huge data chunk must fail before allocating
// anything near the declared size, with and without a known size.
func TestNoHugeAllocationFromTinyFile(t *testing.T) {
	b := cat(riff(chunk("fmt ", 16, fmtBody(3, 2, 8000, 64))), []byte("data"), le32(0xFFFFFFF0), make([]byte, 64))
	for _, size := range []int64{int64(len(b)), -1} {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		_, err := DecodeWAV(bytes.NewReader(b), "x.wav", size, ReadOptions{Downmix: true})
		runtime.ReadMemStats(&m1)
		if err == nil || !strings.Contains(err.Error(), "truncated data chunk") {
			t.Fatalf("size %d: err = %v", size, err)
		}
		if d := m1.TotalAlloc - m0.TotalAlloc; d > 2<<20 {
			t.Fatalf("size %d: allocated %d bytes for a %d-byte file", size, d, len(b))
		}
	}
}

// go-audio/wav's encoder wraps out-of-range values; ours clips.
func TestWriteWAV16ClipsAndRounds(t *testing.T) {
	in := []float32{1.5, -1.5, 1, -1, 0.5, -0.5, 100, 0.25 / 32768, 0.75 / 32768, -0.75 / 32768, 0}
	want := []int16{32767, -32768, 32767, -32768, 16384, -16384, 32767, 0, 1, -1, 0}
	p := filepath.Join(t.TempDir(), "c.wav")
	if err := WriteWAV16(p, in, 22050); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 44+2*len(in) || string(b[36:40]) != "data" {
		t.Fatalf("unexpected layout: %d bytes", len(b))
	}
	for i, w := range want {
		if got := int16(binary.LittleEndian.Uint16(b[44+2*i:])); got != w {
			t.Fatalf("sample %d (%v): wrote %d, want %d", i, in[i], got, w)
		}
	}
}

func TestWriteRejectsNonFinite(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		p := filepath.Join(dir, "n.wav")
		err := WriteWAV16(p, []float32{0, v}, 8000)
		if err == nil || !strings.HasPrefix(err.Error(), p+": sample 1 is") {
			t.Fatalf("WriteWAV16(%v): err = %v", v, err)
		}
		if err := WriteWAVFloat32(p, []float32{v}, 8000); err == nil {
			t.Fatalf("WriteWAVFloat32(%v): no error", v)
		}
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Fatalf("a file was left behind after a failed write")
		}
	}
	if err := WriteWAV16(filepath.Join(dir, "r.wav"), []float32{0}, 0); err == nil {
		t.Fatal("rate 0 accepted")
	}
	if err := EncodeWAV16(io.Discard, []float32{0, 0, 0}, 8000, 2); err == nil {
		t.Fatal("3 samples accepted as 2-channel frames")
	}
}

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	n := 1000
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(int16(i*7919%65536-32768)) / 32768 // every value exactly representable in 16 bits
	}
	p := filepath.Join(dir, "a.wav")
	if err := WriteWAV16(p, s, 22050); err != nil {
		t.Fatal(err)
	}
	a, err := ReadWAV(p, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.SampleRate != 22050 || a.BitsPerSample != 16 || a.Float {
		t.Fatalf("header: %+v", *a)
	}
	equalF32(t, "int16 round trip", a.Samples, s)

	f := []float32{0.1, -0.3, 1.25, -2, 1e-30}
	if err := WriteWAVFloat32(p, f, 48000); err != nil {
		t.Fatal(err)
	}
	if a, err = ReadWAV(p, ReadOptions{}); err != nil {
		t.Fatal(err)
	}
	if !a.Float || a.SampleRate != 48000 {
		t.Fatalf("header: %+v", *a)
	}
	equalF32(t, "float round trip", a.Samples, f)

	var buf bytes.Buffer
	if err := EncodeWAVFloat32(&buf, []float32{0.5, -0.5, 0.25, 0}, 8000, 2); err != nil {
		t.Fatal(err)
	}
	if a, err = decodeBytes(buf.Bytes(), ReadOptions{Downmix: true}); err != nil {
		t.Fatal(err)
	}
	equalF32(t, "stereo float downmix", a.Samples, []float32{0, 0.125})
}

type countingReader struct {
	r     io.Reader
	calls int
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.calls++
	return c.r.Read(p)
}

// go-audio/wav's FullPCMBuffer reads one sample per call; decoding 60 s of
// audio here must take a few dozen large reads, not ~1.3 million.
func TestDecodeReadsInBulk(t *testing.T) {
	var buf bytes.Buffer
	if err := EncodeWAV16(&buf, make([]float32, 60*22050), 22050, 1); err != nil {
		t.Fatal(err)
	}
	size := buf.Len()
	cr := &countingReader{r: &buf}
	a, err := DecodeWAV(cr, "bulk.wav", int64(size), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Frames() != 60*22050 {
		t.Fatalf("%d frames", a.Frames())
	}
	if limit := size/(32<<10) + 16; cr.calls > limit {
		t.Fatalf("%d Read calls for %d bytes (limit %d)", cr.calls, size, limit)
	}
}

// Python's wave module (with numpy) writes random PCM at every width; the
// expected floats are computed in numpy from the same integers.
func TestReadPythonWrittenWAV(t *testing.T) {
	needPython(t, "numpy", "wave")
	dir := t.TempDir()
	runPython(t, `
import sys, wave, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(7)
for width in (1, 2, 3, 4):
    for ch in (1, 2):
        n = 1001
        if width == 1:
            ints = rng.integers(0, 256, n * ch)
            exp = (ints - 128) / 128.0
            raw = ints.astype(np.uint8).tobytes()
        else:
            bits = 8 * width
            ints = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), n * ch)
            ints[:4] = [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, 0, -1][:4]
            exp = ints / float(2 ** (bits - 1))
            le = ints.astype("<i8").view(np.uint8).reshape(-1, 8)[:, :width]
            raw = le.tobytes()
        name = "%s/w%d_c%d" % (d, width, ch)
        with wave.open(name + ".wav", "wb") as w:
            w.setnchannels(ch); w.setsampwidth(width); w.setframerate(22050)
            w.writeframes(raw)
        np.save(name + "_exp.npy", exp.reshape(n, ch).mean(axis=1) if ch > 1 else exp)
`, dir)
	for _, width := range []int{1, 2, 3, 4} {
		for _, ch := range []int{1, 2} {
			base := filepath.Join(dir, "w"+string(rune('0'+width))+"_c"+string(rune('0'+ch)))
			a, err := ReadWAV(base+".wav", ReadOptions{Downmix: true})
			if err != nil {
				t.Fatal(err)
			}
			exp, _, err := ReadNPY(base + "_exp.npy") // float64 -> float32, rounded once
			if err != nil {
				t.Fatal(err)
			}
			if a.BitsPerSample != 8*width || a.SampleRate != 22050 || len(a.Samples) != len(exp) {
				t.Fatalf("%s: %d bits %d Hz %d samples, want %d", base, a.BitsPerSample, a.SampleRate, len(a.Samples), len(exp))
			}
			for i := range exp {
				// Mono values are exact; a stereo average may differ by the
				// float32 rounding of the channel sum.
				if d := math.Abs(float64(a.Samples[i] - exp[i])); d > 0 && (ch == 1 || d > 2e-7) {
					t.Fatalf("%s: sample %d = %v, numpy says %v", base, i, a.Samples[i], exp[i])
				}
			}
		}
	}
}

// Go writes, Python reads: numpy computes the expected 16-bit codes with the
// documented rule (clip, scale by 32768, round half away from zero,
// saturate at 32767) and scipy checks the float32 file bit for bit.
func TestPythonReadsOurWAV(t *testing.T) {
	needPython(t, "numpy", "wave", "scipy.io.wavfile")
	dir := t.TempDir()
	in := filepath.Join(dir, "in.npy")
	runPython(t, `
import sys, numpy as np
rng = np.random.default_rng(3)
x = (rng.standard_normal(20000) * 0.6).astype(np.float32)
x[:8] = [1.5, -1.5, 1, -1, 0.5 / 32768, -0.5 / 32768, 1.5 / 32768, 0]
np.save(sys.argv[1], x)
`, in)
	x, _, err := ReadNPY(in)
	if err != nil {
		t.Fatal(err)
	}
	p16, pf := filepath.Join(dir, "o16.wav"), filepath.Join(dir, "of.wav")
	if err := WriteWAV16(p16, x, 24000); err != nil {
		t.Fatal(err)
	}
	if err := WriteWAVFloat32(pf, x, 24000); err != nil {
		t.Fatal(err)
	}
	out := runPython(t, `
import sys, wave, numpy as np, scipy.io.wavfile as sw
x = np.load(sys.argv[1]).astype(np.float64)
with wave.open(sys.argv[2]) as w:
    assert w.getnchannels() == 1 and w.getsampwidth() == 2 and w.getframerate() == 24000
    got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
y = np.clip(x, -1, 1) * 32768
exp = np.clip(np.sign(y) * np.floor(np.abs(y) + 0.5), -32768, 32767).astype(np.int16)
assert got.shape == exp.shape, (got.shape, exp.shape)
bad = np.nonzero(got != exp)[0]
assert bad.size == 0, ("int16 mismatch", bad[:5], got[bad[:5]], exp[bad[:5]])
rate, f = sw.read(sys.argv[3])
assert rate == 24000 and f.dtype == np.float32, (rate, f.dtype)
assert np.array_equal(f, x.astype(np.float32))
print("OK")
`, in, p16, pf)
	if strings.TrimSpace(out) != "OK" {
		t.Fatalf("python: %s", out)
	}
}

// sox writes WAVE_FORMAT_EXTENSIBLE for 3-channel 24/32-bit PCM (float stays
// plain format 3); its own float32 conversion of the same file is the
// reference.
func TestSoxExtensible(t *testing.T) {
	if _, err := exec.LookPath("sox"); err != nil {
		t.Skip("cross-check skipped: sox not installed")
	}
	dir := t.TempDir()
	for _, enc := range [][]string{{"-e", "signed", "-b", "24"}, {"-e", "floating-point", "-b", "32"}, {"-e", "signed", "-b", "32"}} {
		w := filepath.Join(dir, "s.wav")
		raw := filepath.Join(dir, "s.f32")
		args := append([]string{"-D", "-n", "-r", "16000", "-c", "3"}, enc...)
		args = append(args, w, "synth", "0.05", "sine", "440", "sine", "1000", "whitenoise", "vol", "0.9")
		if out, err := exec.Command("sox", args...).CombinedOutput(); err != nil {
			t.Fatalf("sox %v: %v\n%s", args, err, out)
		}
		if out, err := exec.Command("sox", "-D", w, "-t", "f32", "-e", "floating-point", "-b", "32", "--endian", "little", raw).CombinedOutput(); err != nil {
			t.Fatalf("sox to raw: %v\n%s", err, out)
		}
		hdr, _ := os.ReadFile(w)
		if enc[1] == "signed" && binary.LittleEndian.Uint16(hdr[20:]) != 0xFFFE {
			t.Fatalf("%v: sox did not write WAVE_FORMAT_EXTENSIBLE; test premise broken", enc)
		}
		a, err := ReadWAV(w, ReadOptions{KeepChannels: true})
		if err != nil {
			t.Fatal(err)
		}
		rb, _ := os.ReadFile(raw)
		if a.Channels != 3 || len(a.Samples)*4 != len(rb) {
			t.Fatalf("%v: %d channels, %d samples, sox gives %d", enc, a.Channels, len(a.Samples), len(rb)/4)
		}
		for i, v := range a.Samples {
			want := math.Float32frombits(binary.LittleEndian.Uint32(rb[4*i:]))
			// 24-bit and float must match exactly; sox's own 32-bit
			// int-to-float conversion is off by up to ~2^-27 (numpy's
			// exact v/2^31 agrees with ours in TestReadPythonWrittenWAV).
			tol := 0.0
			if enc[3] == "32" && enc[1] == "signed" {
				tol = 1.0 / (1 << 24)
			}
			if math.Abs(float64(v-want)) > tol {
				t.Fatalf("%v: sample %d = %v, sox says %v", enc, i, v, want)
			}
		}
	}
}

func FuzzReadWAV(f *testing.F) {
	entries, _ := os.ReadDir("testdata")
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".wav") {
			b, _ := os.ReadFile(filepath.Join("testdata", e.Name()))
			f.Add(b, false)
		}
	}
	good := fmtBody(1, 2, 8000, 16)
	f.Add(wavFile(good, pcm16(1, 2, 3, 4)), true)
	f.Add(wavFile(extFmtBody(3, 1, 8000, 32), f32bytes(0.5)), false)
	f.Add(cat(riff(chunk("fmt ", 16, good)), []byte("data"), le32(88200), make([]byte, 10)), false)
	f.Add(riff(chunk("fmt ", 16, fmtBody(1, 1, 8000, 8)), chunk("odd!", 1, []byte{9}), chunk("data", 1, []byte{200})), false)
	f.Add([]byte("RIFF\xff\xff\xff\xffWAVE"), false)
	f.Fuzz(func(t *testing.T, b []byte, downmix bool) {
		opt := ReadOptions{Downmix: downmix, KeepChannels: true}
		a, err := DecodeWAV(bytes.NewReader(b), "f.wav", int64(len(b)), opt)
		a2, err2 := DecodeWAV(bytes.NewReader(b), "f.wav", -1, opt)
		if (err == nil) != (err2 == nil) {
			t.Fatalf("known size err %v, unknown size err %v", err, err2)
		}
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "f.wav: ") || strings.Contains(msg, "\n") {
				t.Fatalf("bad error text %q", msg)
			}
			return
		}
		if len(a.Samples) > len(b) || a.Channels < 1 || a.SampleRate < 1 {
			t.Fatalf("%d samples from %d bytes, %d channels, %d Hz", len(a.Samples), len(b), a.Channels, a.SampleRate)
		}
		if len(a.Samples) != len(a2.Samples) {
			t.Fatalf("known/unknown size disagree: %d vs %d samples", len(a.Samples), len(a2.Samples))
		}
		for i, v := range a.Samples {
			if math.Float32bits(v) != math.Float32bits(a2.Samples[i]) {
				t.Fatalf("sample %d: %v vs %v", i, v, a2.Samples[i])
			}
			if !a.Float && (v < -1 || v > 1) {
				t.Fatalf("PCM sample %d = %v outside [-1,1]", i, v)
			}
		}
	})
}

func writeBench60s(b *testing.B) (string, int64) {
	p := filepath.Join(b.TempDir(), "60s.wav")
	s := make([]float32, 60*22050)
	for i := range s {
		s[i] = float32(math.Sin(float64(i) * 0.0627))
	}
	if err := WriteWAV16(p, s, 22050); err != nil {
		b.Fatal(err)
	}
	st, _ := os.Stat(p)
	return p, st.Size()
}

// BenchmarkReadWAV60s reads a 60 s, 22050 Hz, 16-bit mono file from disk.
func BenchmarkReadWAV60s(b *testing.B) {
	p, size := writeBench60s(b)
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ReadWAV(p, ReadOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeWAV60s24bitStereo decodes 60 s of 24-bit stereo from memory
// with downmix.
func BenchmarkDecodeWAV60s24bitStereo(b *testing.B) {
	n := 60 * 22050 * 2
	data := make([]byte, 3*n)
	for i := range data {
		data[i] = byte(i * 31)
	}
	file := wavFile(fmtBody(1, 2, 22050, 24), data)
	b.SetBytes(int64(len(file)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeBytes(file, ReadOptions{Downmix: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWriteWAV16_60s writes 60 s of 22050 Hz audio atomically (includes
// fsync, so it mostly measures the disk).
func BenchmarkWriteWAV16_60s(b *testing.B) {
	p := filepath.Join(b.TempDir(), "w.wav")
	s := make([]float32, 60*22050)
	b.SetBytes(int64(2 * len(s)))
	for b.Loop() {
		if err := WriteWAV16(p, s, 22050); err != nil {
			b.Fatal(err)
		}
	}
}
