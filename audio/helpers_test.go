package audio

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// systemPython is Debian's interpreter; the pyenv python3 first on PATH has
// no numpy.
const systemPython = "/usr/bin/python3"

// needPython skips unless systemPython can import every module in mods.
func needPython(t testing.TB, mods ...string) {
	t.Helper()
	if _, err := os.Stat(systemPython); err != nil {
		t.Skipf("cross-check skipped: %s not found", systemPython)
	}
	imp := "import " + strings.Join(mods, ", ")
	if out, err := exec.Command(systemPython, "-c", imp).CombinedOutput(); err != nil {
		t.Skipf("cross-check skipped: %s cannot %q: %s", systemPython, imp, bytes.TrimSpace(out))
	}
}

// runPython runs script with args and fails the test on a non-zero exit.
func runPython(t testing.TB, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command(systemPython, append([]string{"-c", script}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python failed: %v\n%s", err, out)
	}
	return string(out)
}

// Hand-assembled RIFF pieces, written from the WAVE spec independently of
// the reader.

func le16(v int) []byte { return binary.LittleEndian.AppendUint16(nil, uint16(v)) }
func le32(v int) []byte { return binary.LittleEndian.AppendUint32(nil, uint32(v)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// chunk returns id, declared size and body, plus a pad byte if body is odd.
func chunk(id string, declared int, body []byte) []byte {
	b := cat([]byte(id), le32(declared), body)
	if len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

// fmtBody is a 16-byte fmt chunk body with consistent align and byte rate.
func fmtBody(tag, ch, rate, bits int) []byte {
	align := ch * bits / 8
	return cat(le16(tag), le16(ch), le32(rate), le32(rate*align), le16(align), le16(bits))
}

// extFmtBody is a 40-byte WAVE_FORMAT_EXTENSIBLE fmt body with subformat sub.
func extFmtBody(sub, ch, rate, bits int) []byte {
	guid := cat(le16(sub), []byte{0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71})
	return cat(fmtBody(0xFFFE, ch, rate, bits), le16(22), le16(bits), le32(0), guid)
}

func riff(chunks ...[]byte) []byte {
	body := cat(append([][]byte{[]byte("WAVE")}, chunks...)...)
	return cat([]byte("RIFF"), le32(len(body)), body)
}

func wavFile(fmtb, data []byte) []byte {
	return riff(chunk("fmt ", len(fmtb), fmtb), chunk("data", len(data), data))
}

func pcm16(vals ...int) []byte {
	var b []byte
	for _, v := range vals {
		b = append(b, le16(v)...)
	}
	return b
}

func f32bytes(vals ...float32) []byte {
	var b []byte
	for _, v := range vals {
		b, _ = binary.Append(b, binary.LittleEndian, v)
	}
	return b
}

func decodeBytes(b []byte, opt ReadOptions) (*Audio, error) {
	return DecodeWAV(bytes.NewReader(b), "x.wav", int64(len(b)), opt)
}

func equalF32(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d values %v, want %d %v", what, len(got), got, len(want), want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: [%d] = %v, want %v (all: %v)", what, i, got[i], want[i], got)
		}
	}
}
