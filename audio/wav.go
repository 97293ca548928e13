package audio

// WAV is parsed here rather than with github.com/go-audio/wav because v1.1.0
// of that library silently returns wrong data (REFERENCE.md §4): 32-bit float
// WAV comes back as raw integer bit patterns with no error, truncated data
// is a short read with err == nil, 8-bit (unsigned) audio maps to [0,2], the
// encoder wraps out-of-range values instead of clipping, and FullPCMBuffer
// does one read per sample. A strict RIFF parser plus bulk encoding/binary
// decoding is shorter than wrapping and patching all of that.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"

	"github.com/wavecat/wavecat/internal/atomicfile"
)

// Audio is a decoded waveform.
type Audio struct {
	// Samples in [-1,1] (float files may exceed it), interleaved by frame
	// when Channels > 1.
	Samples []float32
	// SampleRate in Hz.
	SampleRate int
	// Channels in Samples: 1 after ReadOptions.Downmix, whatever the file had.
	Channels int
	// BitsPerSample of the file's container (8, 16, 24, 32 or 64).
	BitsPerSample int
	// Float is true when the file stored IEEE float samples.
	Float bool
}

// Frames returns the number of sample frames (samples per channel).
func (a *Audio) Frames() int {
	if a.Channels <= 0 {
		return 0
	}
	return len(a.Samples) / a.Channels
}

// ReadOptions controls how multichannel files are handled. By default only
// mono files are accepted, so a stereo file fed to a mono pipeline is an
// error rather than a silently interleaved (double-length) signal.
type ReadOptions struct {
	// Downmix averages all channels into one.
	Downmix bool
	// KeepChannels returns multichannel audio interleaved instead of failing.
	// Downmix takes precedence.
	KeepChannels bool
}

const (
	wavFormatPCM        = 0x0001
	wavFormatFloat      = 0x0003
	wavFormatExtensible = 0xFFFE
)

// extensibleGUIDTail is bytes 2..15 of the KSDATAFORMAT_SUBTYPE GUIDs; the
// first two bytes carry the classic format tag.
var extensibleGUIDTail = []byte{0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71}

// wavFormatNames names common unsupported format tags for error messages.
var wavFormatNames = map[uint16]string{
	0x0002: "Microsoft ADPCM",
	0x0006: "A-law",
	0x0007: "mu-law",
	0x0011: "IMA ADPCM",
	0x0031: "GSM 6.10",
	0x0050: "MPEG",
	0x0055: "MP3",
}

// ReadWAV reads a WAV file; see DecodeWAV for what is accepted.
func ReadWAV(path string, opt ReadOptions) (*Audio, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return DecodeWAV(bufio.NewReaderSize(f, 64<<10), path, st.Size(), opt)
}

// DecodeWAV decodes a RIFF/WAVE stream of 8-bit unsigned, 16/24/32-bit
// signed PCM or 32/64-bit IEEE float (plain or WAVE_FORMAT_EXTENSIBLE) into
// float32: 8-bit as (v-128)/128, n-bit signed as v/2^(n-1). name is used in
// error messages; size is the stream length in bytes, or -1 when unknown (a
// known size lets truncation be reported before any large allocation; with
// an unknown size memory still only grows with the bytes actually read).
// Chunks after the data chunk are not read. It does not use go-audio/wav,
// which silently mis-decodes float, 8-bit and truncated files (see the
// comment at the top of this file).
func DecodeWAV(r io.Reader, name string, size int64, opt ReadOptions) (*Audio, error) {
	p := &wavParser{r: r, name: name, size: size}
	return p.decode(opt)
}

type wavParser struct {
	r    io.Reader
	name string
	size int64 // -1 when unknown
	off  int64 // bytes consumed so far
}

type wavFmt struct {
	tag, channels, bits, align int
	rate                       int
}

func (p *wavParser) errf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{p.name}, args...)...)
}

// avail returns the bytes left in the stream, or -1 when unknown.
func (p *wavParser) avail() int64 {
	if p.size < 0 {
		return -1
	}
	return max(p.size-p.off, 0)
}

func (p *wavParser) readFull(b []byte) (int, error) {
	n, err := io.ReadFull(p.r, b)
	p.off += int64(n)
	return n, err
}

func (p *wavParser) decode(opt ReadOptions) (*Audio, error) {
	var hdr [12]byte
	if n, err := p.readFull(hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, p.errf("not a WAV file: %d bytes, shorter than a RIFF header", n)
		}
		return nil, p.errf("%v", err)
	}
	switch string(hdr[0:4]) {
	case "RIFF":
	case "RIFX":
		return nil, p.errf("big-endian RIFX WAV is not supported")
	case "RF64":
		return nil, p.errf("RF64 (64-bit WAV) is not supported")
	default:
		return nil, p.errf("not a WAV file: no RIFF magic")
	}
	if string(hdr[8:12]) != "WAVE" {
		return nil, p.errf("not a WAV file: RIFF form type is %q, not \"WAVE\"", hdr[8:12])
	}
	var f *wavFmt
	for {
		var ch [8]byte
		n, err := p.readFull(ch[:])
		if err != nil {
			if n == 0 && errors.Is(err, io.EOF) {
				if f == nil {
					return nil, p.errf("no fmt chunk")
				}
				return nil, p.errf("no data chunk")
			}
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, p.errf("truncated chunk header at offset %d", p.off-int64(n))
			}
			return nil, p.errf("%v", err)
		}
		id := string(ch[0:4])
		sz := int64(binary.LittleEndian.Uint32(ch[4:8]))
		switch id {
		case "fmt ":
			if f != nil {
				return nil, p.errf("duplicate fmt chunk")
			}
			if f, err = p.readFmt(sz); err != nil {
				return nil, err
			}
			if err := p.skipPad(sz); err != nil {
				return nil, err
			}
		case "data":
			if f == nil {
				return nil, p.errf("data chunk before fmt chunk")
			}
			return p.readData(f, sz, opt)
		default:
			if a := p.avail(); a >= 0 && sz > a {
				return nil, p.errf("truncated %q chunk: header says %d bytes, file has %d", id, sz, a)
			}
			if err := p.skip(sz + sz&1); err != nil {
				if errors.Is(err, io.EOF) {
					// Missing pad byte or short chunk at the very end:
					// there is no data chunk after it either way.
					return nil, p.errf("no data chunk")
				}
				return nil, p.errf("%v", err)
			}
		}
	}
}

func (p *wavParser) skip(n int64) error {
	got, err := io.CopyN(io.Discard, p.r, n)
	p.off += got
	return err
}

// skipPad consumes the pad byte after an odd-sized chunk; a pad byte missing
// at the end of the stream is left to the next chunk-header read to report.
func (p *wavParser) skipPad(sz int64) error {
	if sz&1 == 0 {
		return nil
	}
	if err := p.skip(1); err != nil && !errors.Is(err, io.EOF) {
		return p.errf("%v", err)
	}
	return nil
}

func (p *wavParser) readFmt(sz int64) (*wavFmt, error) {
	if sz < 16 {
		return nil, p.errf("fmt chunk is %d bytes, need at least 16", sz)
	}
	if a := p.avail(); a >= 0 && sz > a {
		return nil, p.errf("truncated fmt chunk: header says %d bytes, file has %d", sz, a)
	}
	if sz > 1<<16 {
		return nil, p.errf("fmt chunk size %d is implausibly large", sz)
	}
	b := make([]byte, sz)
	if n, err := p.readFull(b); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, p.errf("truncated fmt chunk: header says %d bytes, file has %d", sz, n)
		}
		return nil, p.errf("%v", err)
	}
	le := binary.LittleEndian
	f := &wavFmt{
		tag:      int(le.Uint16(b[0:2])),
		channels: int(le.Uint16(b[2:4])),
		rate:     int(le.Uint32(b[4:8])),
		align:    int(le.Uint16(b[12:14])),
		bits:     int(le.Uint16(b[14:16])),
	}
	byteRate := int64(le.Uint32(b[8:12]))
	if f.tag == wavFormatExtensible {
		if sz < 40 {
			return nil, p.errf("WAVE_FORMAT_EXTENSIBLE fmt chunk is %d bytes, need 40", sz)
		}
		if cb := le.Uint16(b[16:18]); cb < 22 {
			return nil, p.errf("WAVE_FORMAT_EXTENSIBLE extension is %d bytes, need 22", cb)
		}
		if valid := int(le.Uint16(b[18:20])); valid > f.bits {
			return nil, p.errf("inconsistent header: %d valid bits in a %d-bit container", valid, f.bits)
		}
		guid := b[24:40]
		if !bytes.Equal(guid[2:], extensibleGUIDTail) {
			return nil, p.errf("unsupported WAVE_FORMAT_EXTENSIBLE subformat GUID %x", guid)
		}
		f.tag = int(le.Uint16(guid[0:2]))
	}
	switch f.tag {
	case wavFormatPCM:
		if f.bits != 8 && f.bits != 16 && f.bits != 24 && f.bits != 32 {
			return nil, p.errf("unsupported PCM bit depth %d (want 8, 16, 24 or 32)", f.bits)
		}
	case wavFormatFloat:
		if f.bits != 32 && f.bits != 64 {
			return nil, p.errf("unsupported IEEE float bit depth %d (want 32 or 64)", f.bits)
		}
	default:
		nm := wavFormatNames[uint16(f.tag)]
		if nm == "" {
			nm = "unknown format"
		}
		return nil, p.errf("unsupported WAV encoding %s (format tag 0x%04x); only PCM and IEEE float are supported", nm, f.tag)
	}
	if f.channels == 0 {
		return nil, p.errf("inconsistent header: 0 channels")
	}
	if f.rate == 0 {
		return nil, p.errf("inconsistent header: sample rate is 0")
	}
	if want := f.channels * f.bits / 8; f.align != want {
		return nil, p.errf("inconsistent header: block align %d, expected %d for %d channels x %d bits", f.align, want, f.channels, f.bits)
	}
	if want := int64(f.rate) * int64(f.align); byteRate != want {
		return nil, p.errf("inconsistent header: byte rate %d, expected %d (%d Hz x %d-byte frames)", byteRate, want, f.rate, f.align)
	}
	return f, nil
}

func (p *wavParser) readData(f *wavFmt, sz int64, opt ReadOptions) (*Audio, error) {
	if f.channels > 1 && !opt.Downmix && !opt.KeepChannels {
		return nil, p.errf("%d channels, expected mono", f.channels)
	}
	if a := p.avail(); a >= 0 && sz > a {
		return nil, p.errf("truncated data chunk: header says %d bytes, file has %d", sz, a)
	}
	if sz%int64(f.align) != 0 {
		return nil, p.errf("data chunk is %d bytes, not a whole number of %d-byte frames", sz, f.align)
	}
	bps := f.bits / 8
	nSamples := sz / int64(bps)
	capSamples := nSamples
	if p.size < 0 {
		// Unknown length: let memory grow with what actually arrives.
		capSamples = min(capSamples, 1<<16)
	}
	out := make([]float32, 0, capSamples)
	chunk := int64(max(f.align, (64<<10)/f.align*f.align))
	buf := make([]byte, min(chunk, sz))
	dec := decoderFor(f)
	var read int64
	for read < sz {
		n := min(int64(len(buf)), sz-read)
		got, err := p.readFull(buf[:n])
		read += int64(got)
		whole := got - got%bps
		out = slices.Grow(out, whole/bps)
		k := len(out)
		out = out[:k+whole/bps]
		dec(out[k:], buf[:whole])
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, p.errf("truncated data chunk: header says %d bytes, file has %d", sz, read)
			}
			return nil, p.errf("%v", err)
		}
	}
	if f.tag == wavFormatFloat {
		for i, v := range out {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, p.errf("sample %d is %v", i, v)
			}
		}
	}
	a := &Audio{Samples: out, SampleRate: f.rate, Channels: f.channels, BitsPerSample: f.bits, Float: f.tag == wavFormatFloat}
	if f.channels > 1 && opt.Downmix {
		a.Samples = downmix(out, f.channels)
		a.Channels = 1
	}
	return a, nil
}

// downmix averages interleaved frames in place.
func downmix(s []float32, ch int) []float32 {
	n := len(s) / ch
	inv := 1 / float32(ch)
	for i := range n {
		var sum float32
		for _, v := range s[i*ch : i*ch+ch] {
			sum += v
		}
		s[i] = sum * inv
	}
	return s[:n:n]
}

func decoderFor(f *wavFmt) func(dst []float32, src []byte) {
	if f.tag == wavFormatFloat {
		if f.bits == 32 {
			return decodeF32
		}
		return decodeF64
	}
	switch f.bits {
	case 8:
		return decodeU8
	case 16:
		return decodeS16
	case 24:
		return decodeS24
	}
	return decodeS32
}

func decodeU8(dst []float32, src []byte) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = float32(int(v)-128) * (1.0 / 128)
	}
}

func decodeS16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = float32(int16(binary.LittleEndian.Uint16(src[2*i:]))) * (1.0 / 32768)
	}
}

func decodeS24(dst []float32, src []byte) {
	src = src[:3*len(dst)]
	for i := range dst {
		b := src[3*i : 3*i+3]
		v := int32(uint32(b[0])<<8|uint32(b[1])<<16|uint32(b[2])<<24) >> 8
		dst[i] = float32(v) * (1.0 / (1 << 23))
	}
}

func decodeS32(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = float32(int32(binary.LittleEndian.Uint32(src[4*i:]))) * (1.0 / (1 << 31))
	}
}

func decodeF32(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
	}
}

func decodeF64(dst []float32, src []byte) {
	src = src[:8*len(dst)]
	for i := range dst {
		dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
	}
}

// WriteWAV16 atomically writes mono 16-bit PCM. Samples are clipped to
// [-1,1] and rounded to v*32768 (1.0 becomes 32767), so out-of-range values
// saturate instead of wrapping and 16-bit input read by ReadWAV round-trips
// exactly. NaN or Inf samples are an error.
func WriteWAV16(path string, samples []float32, rate int) error {
	if err := checkWAVWrite(samples, rate, 1, 2); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		return encodeWAV(w, samples, rate, 1, false)
	})
}

// WriteWAVFloat32 atomically writes mono 32-bit IEEE float WAV (values are
// stored as given, not clipped). NaN or Inf samples are an error.
func WriteWAVFloat32(path string, samples []float32, rate int) error {
	if err := checkWAVWrite(samples, rate, 1, 4); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		return encodeWAV(w, samples, rate, 1, true)
	})
}

// EncodeWAV16 writes interleaved 16-bit PCM to w, converting as WriteWAV16.
func EncodeWAV16(w io.Writer, samples []float32, rate, channels int) error {
	if err := checkWAVWrite(samples, rate, channels, 2); err != nil {
		return err
	}
	return encodeWAV(w, samples, rate, channels, false)
}

// EncodeWAVFloat32 writes interleaved 32-bit float WAV to w.
func EncodeWAVFloat32(w io.Writer, samples []float32, rate, channels int) error {
	if err := checkWAVWrite(samples, rate, channels, 4); err != nil {
		return err
	}
	return encodeWAV(w, samples, rate, channels, true)
}

func checkWAVWrite(samples []float32, rate, channels, bps int) error {
	if channels < 1 || channels > math.MaxUint16/bps {
		return fmt.Errorf("cannot write WAV with %d channels", channels)
	}
	if rate <= 0 || int64(rate)*int64(channels*bps) > math.MaxUint32 {
		return fmt.Errorf("cannot write WAV with sample rate %d", rate)
	}
	if len(samples)%channels != 0 {
		return fmt.Errorf("%d samples is not a whole number of %d-channel frames", len(samples), channels)
	}
	if int64(len(samples))*int64(bps) > math.MaxUint32-64 {
		return fmt.Errorf("%d samples exceed the 4 GiB WAV size limit", len(samples))
	}
	for i, v := range samples {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("sample %d is %v", i, v)
		}
	}
	return nil
}

func encodeWAV(w io.Writer, samples []float32, rate, channels int, float bool) error {
	le := binary.LittleEndian
	bps := 2
	if float {
		bps = 4
	}
	dataLen := uint32(len(samples) * bps)
	align := uint16(channels * bps)
	var h []byte
	h = append(h, "RIFF"...)
	if float {
		// Non-PCM formats carry cbSize and a fact chunk (frame count).
		h = le.AppendUint32(h, 4+(8+18)+(8+4)+(8+dataLen))
	} else {
		h = le.AppendUint32(h, 4+(8+16)+(8+dataLen))
	}
	h = append(h, "WAVEfmt "...)
	if float {
		h = le.AppendUint32(h, 18)
		h = le.AppendUint16(h, wavFormatFloat)
	} else {
		h = le.AppendUint32(h, 16)
		h = le.AppendUint16(h, wavFormatPCM)
	}
	h = le.AppendUint16(h, uint16(channels))
	h = le.AppendUint32(h, uint32(rate))
	h = le.AppendUint32(h, uint32(rate)*uint32(align))
	h = le.AppendUint16(h, align)
	h = le.AppendUint16(h, uint16(8*bps))
	if float {
		h = le.AppendUint16(h, 0) // cbSize
		h = append(h, "fact"...)
		h = le.AppendUint32(h, 4)
		h = le.AppendUint32(h, uint32(len(samples)/channels))
	}
	h = append(h, "data"...)
	h = le.AppendUint32(h, dataLen)
	if _, err := w.Write(h); err != nil {
		return err
	}
	const block = 16 << 10
	buf := make([]byte, block*bps)
	for start := 0; start < len(samples); start += block {
		s := samples[start:min(start+block, len(samples))]
		b := buf[:len(s)*bps]
		if float {
			for i, v := range s {
				le.PutUint32(b[4*i:], math.Float32bits(v))
			}
		} else {
			for i, v := range s {
				le.PutUint16(b[2*i:], uint16(floatToInt16(v)))
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// floatToInt16 clips to [-1,1] and rounds v*32768 half away from zero,
// saturating at 32767.
func floatToInt16(v float32) int16 {
	x := math.Round(float64(v) * 32768)
	if x >= 32767 {
		return 32767
	}
	if x <= -32768 {
		return -32768
	}
	return int16(x)
}
