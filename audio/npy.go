package audio

// The .npy header is parsed here rather than with codeberg.org/sbinet/npyio
// because npyio v0.14.0 refuses float16 and float64 data into []float32
// (mel files from Python tools are often float64), returns Fortran-order
// arrays in file order, and is ~45x slower unless the caller adds a
// bufio.Reader (REFERENCE.md §4). The format is a magic string, a Python
// dict literal with three keys, and raw data: small enough to own, and owning
// it lets the declared size be checked against the file before allocating.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/wavecat/wavecat/internal/atomicfile"
)

const npyMagic = "\x93NUMPY"

// maxNPYHeader bounds the header we are willing to buffer (numpy itself
// refuses headers over 10000 bytes by default).
const maxNPYHeader = 1 << 20

// ReadNPY reads a .npy file into float32 in C (row-major) order with its
// shape; see DecodeNPY.
func ReadNPY(path string) (data []float32, shape []int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	return DecodeNPY(bufio.NewReaderSize(f, 64<<10), path, st.Size())
}

// DecodeNPY decodes a .npy stream (format versions 1-3) holding float16,
// float32, float64, int16 or int32 data, little or big endian, C or Fortran
// order, into float32 in C order (Fortran arrays are transposed). Integers
// are converted by value, not rescaled. name is used in error messages; size
// is the stream length or -1 if unknown. With a known size the data length
// implied by the header must match the file exactly. It does not use npyio,
// which refuses float16/float64 into []float32 (see the top of this file).
func DecodeNPY(r io.Reader, name string, size int64) (data []float32, shape []int, err error) {
	data, shape, _, err = decodeNPY(r, name, size)
	return data, shape, err
}

// decodeNPY is DecodeNPY that also returns the stored dtype (numpy's descr,
// e.g. "<i2"), which callers that must refuse integer data need.
func decodeNPY(r io.Reader, name string, size int64) (data []float32, shape []int, descr string, err error) {
	errf := func(format string, args ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{name}, args...)...)
	}
	var pre [10]byte
	if n, err := io.ReadFull(r, pre[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, "", errf("not a .npy file: %d bytes, shorter than the header", n)
		}
		return nil, nil, "", errf("%v", err)
	}
	if string(pre[:6]) != npyMagic {
		return nil, nil, "", errf("not a .npy file: bad magic %q", pre[:6])
	}
	major, minor := pre[6], pre[7]
	off := int64(10)
	var hlen int64
	switch major {
	case 1:
		hlen = int64(binary.LittleEndian.Uint16(pre[8:10]))
	case 2, 3:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return nil, nil, "", errf("truncated .npy header")
		}
		hlen = int64(binary.LittleEndian.Uint32(append(pre[8:10:10], ext[:]...)))
		off += 2
	default:
		return nil, nil, "", errf("unsupported .npy format version %d.%d", major, minor)
	}
	if size >= 0 && off+hlen > size {
		return nil, nil, "", errf("truncated or corrupt .npy header: declares %d header bytes, file has %d", hlen, max(size-off, 0))
	}
	if hlen > maxNPYHeader {
		return nil, nil, "", errf("corrupt .npy header: declares %d header bytes, limit is %d", hlen, maxNPYHeader)
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, nil, "", errf("truncated .npy header: declares %d bytes", hlen)
	}
	off += hlen
	h, err := parseNPYHeader(string(hb))
	if err != nil {
		return nil, nil, "", errf("bad .npy header: %v", err)
	}
	dt, err := parseNPYDtype(h.descr)
	if err != nil {
		return nil, nil, "", errf("%v", err)
	}
	n, ok := shapeProduct(h.shape)
	overflow, nBytes := bits.Mul64(uint64(n), uint64(dt.size))
	if !ok || overflow != 0 || nBytes > math.MaxInt64/2 {
		return nil, nil, "", errf("shape %v is too large", h.shape)
	}
	if size >= 0 && size-off != int64(nBytes) {
		return nil, nil, "", errf("header declares shape %v of %s (%d data bytes) but the file has %d data bytes", h.shape, h.descr, nBytes, size-off)
	}
	capN := n
	if size < 0 {
		capN = min(capN, 1<<16)
	}
	out := make([]float32, 0, capN)
	buf := make([]byte, min(int64(64<<10)/int64(dt.size)*int64(dt.size), int64(nBytes)))
	var read int64
	for read < int64(nBytes) {
		m := min(int64(len(buf)), int64(nBytes)-read)
		got, err := io.ReadFull(r, buf[:m])
		read += int64(got)
		whole := got - got%dt.size
		b := buf[:whole]
		if dt.bigEndian {
			swapBytes(b, dt.size)
		}
		out = slices.Grow(out, whole/dt.size)
		k := len(out)
		out = out[:k+whole/dt.size]
		dt.decode(out[k:], b)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, nil, "", errf("truncated data: header declares %d bytes, file has %d", nBytes, read)
			}
			return nil, nil, "", errf("%v", err)
		}
	}
	if size < 0 {
		// Unknown size: still insist there is nothing after the data.
		var one [1]byte
		if m, _ := io.ReadFull(r, one[:]); m != 0 {
			return nil, nil, "", errf("trailing bytes after the %d data bytes the header declares", nBytes)
		}
	}
	if h.fortran && len(h.shape) > 1 {
		out = fortranToC(out, h.shape)
	}
	return out, h.shape, h.descr, nil
}

type npyHeader struct {
	descr   string
	fortran bool
	shape   []int
}

// parseNPYHeader parses the Python dict literal numpy writes, e.g.
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 80), }
func parseNPYHeader(s string) (npyHeader, error) {
	var h npyHeader
	p := &dictParser{s: s}
	seen := map[string]bool{}
	p.ws()
	if !p.eat('{') {
		return h, errors.New("expected '{'")
	}
	for {
		p.ws()
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return h, err
		}
		if seen[key] {
			return h, fmt.Errorf("duplicate key %q", key)
		}
		seen[key] = true
		p.ws()
		if !p.eat(':') {
			return h, fmt.Errorf("expected ':' after %q", key)
		}
		p.ws()
		switch key {
		case "descr":
			if p.peek() == '[' {
				return h, errors.New("structured dtypes are not supported")
			}
			if h.descr, err = p.str(); err != nil {
				return h, fmt.Errorf("descr: %v", err)
			}
		case "fortran_order":
			switch {
			case strings.HasPrefix(p.s[p.i:], "True"):
				h.fortran, p.i = true, p.i+4
			case strings.HasPrefix(p.s[p.i:], "False"):
				h.fortran, p.i = false, p.i+5
			default:
				return h, errors.New("fortran_order is not True or False")
			}
		case "shape":
			if h.shape, err = p.tuple(); err != nil {
				return h, fmt.Errorf("shape: %v", err)
			}
		default:
			return h, fmt.Errorf("unexpected key %q", key)
		}
		p.ws()
		if p.eat('}') {
			break
		}
		if !p.eat(',') {
			return h, errors.New("expected ',' or '}'")
		}
	}
	if strings.TrimRight(p.s[p.i:], " \t\r\n\x00") != "" {
		return h, errors.New("unexpected text after the dict")
	}
	for _, k := range []string{"descr", "fortran_order", "shape"} {
		if !seen[k] {
			return h, fmt.Errorf("missing key %q", k)
		}
	}
	return h, nil
}

type dictParser struct {
	s string
	i int
}

func (p *dictParser) ws() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n' || p.s[p.i] == '\r') {
		p.i++
	}
}

func (p *dictParser) peek() byte {
	if p.i < len(p.s) {
		return p.s[p.i]
	}
	return 0
}

func (p *dictParser) eat(c byte) bool {
	if p.peek() == c {
		p.i++
		return true
	}
	return false
}

func (p *dictParser) str() (string, error) {
	q := p.peek()
	if q != '\'' && q != '"' {
		return "", errors.New("expected a quoted string")
	}
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", errors.New("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return v, nil
}

func (p *dictParser) tuple() ([]int, error) {
	if !p.eat('(') {
		return nil, errors.New("expected '('")
	}
	shape := []int{}
	for {
		p.ws()
		if p.eat(')') {
			return shape, nil
		}
		j := p.i
		for j < len(p.s) && p.s[j] >= '0' && p.s[j] <= '9' {
			j++
		}
		if j == p.i {
			return nil, errors.New("expected a non-negative integer")
		}
		d, err := strconv.ParseInt(p.s[p.i:j], 10, 64)
		if err != nil || d > math.MaxInt32*int64(1<<16) {
			return nil, fmt.Errorf("dimension %s is too large", p.s[p.i:j])
		}
		p.i = j
		p.eat('L') // Python 2 long suffix
		shape = append(shape, int(d))
		if len(shape) > 32 {
			return nil, errors.New("more than 32 dimensions")
		}
		p.ws()
		if p.eat(')') {
			if len(shape) == 1 {
				// (n) is an int in Python, not a tuple; numpy writes (n,).
				return nil, errors.New("1-element shape without trailing comma")
			}
			return shape, nil
		}
		if !p.eat(',') {
			return nil, errors.New("expected ',' or ')'")
		}
	}
}

// shapeProduct multiplies dims, reporting false on overflow.
func shapeProduct(shape []int) (int, bool) {
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, false
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = lo
	}
	return int(n), true
}

type npyDtype struct {
	size      int
	bigEndian bool
	decode    func(dst []float32, src []byte) // src little endian
}

func parseNPYDtype(descr string) (npyDtype, error) {
	if descr == "O" || descr == "|O" || strings.HasSuffix(descr, "O") || strings.HasSuffix(descr, "O8") {
		return npyDtype{}, fmt.Errorf("object arrays (dtype %q) are not supported", descr)
	}
	if len(descr) != 3 || (descr[0] != '<' && descr[0] != '>') {
		return npyDtype{}, fmt.Errorf("unsupported dtype %q (want float16/32/64 or int16/32, little or big endian)", descr)
	}
	dt := npyDtype{bigEndian: descr[0] == '>'}
	switch descr[1:] {
	case "f2":
		dt.size, dt.decode = 2, decodeF16
	case "f4":
		dt.size, dt.decode = 4, decodeF32
	case "f8":
		dt.size, dt.decode = 8, decodeF64
	case "i2":
		dt.size, dt.decode = 2, decodeI16Value
	case "i4":
		dt.size, dt.decode = 4, decodeI32Value
	default:
		return npyDtype{}, fmt.Errorf("unsupported dtype %q (want float16/32/64 or int16/32, little or big endian)", descr)
	}
	return dt, nil
}

// swapBytes reverses each size-byte element of b in place.
func swapBytes(b []byte, size int) {
	switch size {
	case 2:
		for i := 0; i+1 < len(b); i += 2 {
			binary.LittleEndian.PutUint16(b[i:], binary.BigEndian.Uint16(b[i:]))
		}
	case 4:
		for i := 0; i+3 < len(b); i += 4 {
			binary.LittleEndian.PutUint32(b[i:], binary.BigEndian.Uint32(b[i:]))
		}
	case 8:
		for i := 0; i+7 < len(b); i += 8 {
			binary.LittleEndian.PutUint64(b[i:], binary.BigEndian.Uint64(b[i:]))
		}
	}
}

func decodeF16(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = halfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
	}
}

func decodeI16Value(dst []float32, src []byte) {
	src = src[:2*len(dst)]
	for i := range dst {
		dst[i] = float32(int16(binary.LittleEndian.Uint16(src[2*i:])))
	}
}

func decodeI32Value(dst []float32, src []byte) {
	src = src[:4*len(dst)]
	for i := range dst {
		dst[i] = float32(int32(binary.LittleEndian.Uint32(src[4*i:])))
	}
}

// halfToFloat32 converts IEEE 754 binary16 bits exactly (every half value
// is representable in float32).
func halfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h & 0x3ff)
	switch exp {
	case 0: // zero or subnormal: man * 2^-24
		f := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			f = -f
		}
		return f
	case 31: // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | man<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | man<<13)
}

// fortranToC returns the column-major data of the given shape in row-major
// order.
func fortranToC(src []float32, shape []int) []float32 {
	dst := make([]float32, len(src))
	if len(src) == 0 {
		return dst
	}
	if len(shape) == 2 {
		rows, cols := shape[0], shape[1]
		// src[j*rows+i] = A[i][j]; blocked for cache locality.
		const bs = 32
		for i0 := 0; i0 < rows; i0 += bs {
			for j0 := 0; j0 < cols; j0 += bs {
				for i := i0; i < min(i0+bs, rows); i++ {
					row := dst[i*cols : i*cols+cols]
					for j := j0; j < min(j0+bs, cols); j++ {
						row[j] = src[j*rows+i]
					}
				}
			}
		}
		return dst
	}
	nd := len(shape)
	stride := make([]int, nd) // Fortran strides
	s := 1
	for k := range nd {
		stride[k] = s
		s *= shape[k]
	}
	idx := make([]int, nd)
	off := 0
	for c := range dst {
		dst[c] = src[off]
		// Advance the C-order odometer (last axis fastest).
		for k := nd - 1; k >= 0; k-- {
			idx[k]++
			off += stride[k]
			if idx[k] < shape[k] {
				break
			}
			off -= stride[k] * shape[k]
			idx[k] = 0
		}
	}
	return dst
}

// WriteNPY atomically writes data as a little-endian float32 C-order .npy
// (format 1.0, header padded so the data starts 64-byte aligned).
func WriteNPY(path string, data []float32, shape []int) error {
	if err := checkNPYShape(data, shape); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return atomicfile.Write(path, 0o644, func(w io.Writer) error {
		return encodeNPY(w, data, shape)
	})
}

// EncodeNPY writes data as WriteNPY does, to w.
func EncodeNPY(w io.Writer, data []float32, shape []int) error {
	if err := checkNPYShape(data, shape); err != nil {
		return err
	}
	return encodeNPY(w, data, shape)
}

func checkNPYShape(data []float32, shape []int) error {
	n, ok := shapeProduct(shape)
	if !ok {
		return fmt.Errorf("invalid shape %v", shape)
	}
	if n != len(data) {
		return fmt.Errorf("shape %v holds %d values, data has %d", shape, n, len(data))
	}
	return nil
}

func encodeNPY(w io.Writer, data []float32, shape []int) error {
	var sb strings.Builder
	sb.WriteString("{'descr': '<f4', 'fortran_order': False, 'shape': (")
	for i, d := range shape {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString(strconv.Itoa(d))
	}
	if len(shape) == 1 {
		sb.WriteByte(',')
	}
	sb.WriteString("), }")
	hdr := sb.String()
	total := 10 + len(hdr) + 1
	pad := (64 - total%64) % 64
	hlen := len(hdr) + pad + 1
	if hlen > math.MaxUint16 {
		return fmt.Errorf("shape %v: header too long for .npy 1.0", shape)
	}
	var b bytes.Buffer
	b.WriteString(npyMagic)
	b.Write([]byte{1, 0})
	b.Write(binary.LittleEndian.AppendUint16(nil, uint16(hlen)))
	b.WriteString(hdr)
	b.WriteString(strings.Repeat(" ", pad))
	b.WriteByte('\n')
	if _, err := w.Write(b.Bytes()); err != nil {
		return err
	}
	const block = 16 << 10
	buf := make([]byte, 4*block)
	for start := 0; start < len(data); start += block {
		s := data[start:min(start+block, len(data))]
		for i, v := range s {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		if _, err := w.Write(buf[:4*len(s)]); err != nil {
			return err
		}
	}
	return nil
}

// MelLayout says which axis of a 2-D mel array is time.
type MelLayout int

const (
	// MelLayoutAuto takes the axis whose length is the mel count as the mel
	// axis, and refuses a square array (it could be either).
	MelLayoutAuto MelLayout = iota
	// MelFramesMels is (frames, n_mels): wavecat's and r9y9's layout.
	MelFramesMels
	// MelMelsFrames is (n_mels, frames): librosa's layout.
	MelMelsFrames
)

// MelLayoutNames are the spellings ParseMelLayout accepts.
var MelLayoutNames = []string{"auto", "frames-mels", "mels-frames"}

// ParseMelLayout reads one of MelLayoutNames.
func ParseMelLayout(s string) (MelLayout, error) {
	for i, n := range MelLayoutNames {
		if s == n {
			return MelLayout(i), nil
		}
	}
	return 0, fmt.Errorf("mel layout %q: want one of %s", s, strings.Join(MelLayoutNames, ", "))
}

func (l MelLayout) String() string {
	if l < 0 || int(l) >= len(MelLayoutNames) {
		return fmt.Sprintf("MelLayout(%d)", int(l))
	}
	return MelLayoutNames[l]
}

// ReadMel reads a mel spectrogram stored as (frames, nMels) or (nMels,
// frames), as layout says, and returns it as frames x nMels row-major, with
// transposed true when the file held (nMels, frames). The array must be
// non-empty, of a floating-point dtype (integer data is audio or a quantised
// mel, never the log10 mel the model wants) and every value finite.
func ReadMel(path string, nMels int, layout MelLayout) (mel []float32, frames int, transposed bool, err error) {
	if nMels <= 0 {
		return nil, 0, false, fmt.Errorf("%s: invalid mel count %d", path, nMels)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, false, err
	}
	data, shape, descr, err := decodeNPY(bufio.NewReaderSize(f, 64<<10), path, st.Size())
	if err != nil {
		return nil, 0, false, err
	}
	if len(descr) == 3 && descr[1] == 'i' {
		return nil, 0, false, fmt.Errorf("%s: integer data (dtype %s): a mel spectrogram here is float log10 magnitudes; is this audio samples or a quantised mel?", path, descr)
	}
	if len(shape) != 2 {
		return nil, 0, false, fmt.Errorf("%s: mel must be a 2-D array, got shape %v", path, shape)
	}
	r, c := shape[0], shape[1]
	switch layout {
	case MelLayoutAuto:
		switch {
		case r == nMels && c == nMels:
			return nil, 0, false, fmt.Errorf("%s: shape %v is square with %d mels, so either axis could be time: say which with --mel-layout frames-mels or mels-frames", path, shape, nMels)
		case c == nMels:
			transposed = false
		case r == nMels:
			transposed = true
		default:
			return nil, 0, false, fmt.Errorf("%s: shape %v has no axis of %d mels", path, shape, nMels)
		}
	case MelFramesMels:
		if c != nMels {
			return nil, 0, false, fmt.Errorf("%s: shape %v is not (frames, %d mels) as --mel-layout frames-mels says", path, shape, nMels)
		}
	case MelMelsFrames:
		if r != nMels {
			return nil, 0, false, fmt.Errorf("%s: shape %v is not (%d mels, frames) as --mel-layout mels-frames says", path, shape, nMels)
		}
		transposed = true
	default:
		return nil, 0, false, fmt.Errorf("%s: unknown mel layout %d", path, layout)
	}
	frames = r
	if transposed {
		frames = c
		data = fortranToC(data, []int{c, r}) // (nMels, frames) C order is (frames, nMels) Fortran order
	}
	if frames == 0 {
		return nil, 0, false, fmt.Errorf("%s: mel has 0 frames", path)
	}
	for i, v := range data {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, 0, false, fmt.Errorf("%s: value at frame %d, mel %d is %v", path, i/nMels, i%nMels, v)
		}
	}
	return data, frames, transposed, nil
}
