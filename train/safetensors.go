package train

// Safetensors reader/writer, F32 only.
//
// Why no library: the format is 8 bytes of header length, a JSON header and
// raw little-endian data, so a reader is ~200 lines; writing it here lets us be
// strict about exactly the things a checkpoint loader must refuse (holes,
// overlaps, duplicate names, absurd header lengths) and keeps the module's
// dependency list unchanged. Layout:
//
//	[8 bytes: N, uint64 little-endian]
//	[N bytes: JSON {name: {"dtype","shape","data_offsets":[b,e]}, "__metadata__": {str: str}},
//	          padded with spaces so 8+N is a multiple of 8]
//	[data: tensor bytes, offsets relative to the start of this section]

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strconv"
)

// Tensor is one named float32 array in row-major order; the names are the
// caller's (the model uses r9y9's PyTorch state_dict names so a PyTorch
// checkpoint maps 1:1).
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// maxElements bounds a tensor's element count so the byte size never
// overflows an int; real tensors are many orders of magnitude smaller.
const maxElements = 1 << 40

// NumElements returns the product of the shape (1 for a scalar), or -1 if a
// dimension is negative or the product exceeds maxElements.
func NumElements(shape []int) int {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > maxElements {
			return -1
		}
		n = int(lo)
	}
	return n
}

const (
	metadataKey = "__metadata__"
	// maxHeaderLen bounds the JSON header (same bound as the reference
	// implementation), so a corrupted length never drives a huge allocation.
	maxHeaderLen = 100 << 20
)

// WriteSafetensors writes tensors (in the given order, data contiguous) and
// string metadata to w. It refuses empty or duplicate names, the reserved
// name "__metadata__", and shapes that do not match the data length.
func WriteSafetensors(w io.Writer, tensors []Tensor, meta map[string]string) error {
	if err := validateTensors(tensors); err != nil {
		return err
	}
	var h bytes.Buffer
	h.WriteByte('{')
	first := true
	if len(meta) > 0 {
		mb, err := json.Marshal(meta) // map keys come out sorted: deterministic
		if err != nil {
			return err
		}
		h.WriteString(`"` + metadataKey + `":`)
		h.Write(mb)
		first = false
	}
	off := 0
	for _, t := range tensors {
		if !first {
			h.WriteByte(',')
		}
		first = false
		nb, _ := json.Marshal(t.Name)
		h.Write(nb)
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		sb, _ := json.Marshal(shape)
		end := off + 4*len(t.Data)
		fmt.Fprintf(&h, `:{"dtype":"F32","shape":%s,"data_offsets":[%d,%d]}`, sb, off, end)
		off = end
	}
	h.WriteByte('}')
	for (8+h.Len())%8 != 0 {
		h.WriteByte(' ')
	}
	var lenb [8]byte
	binary.LittleEndian.PutUint64(lenb[:], uint64(h.Len()))
	if _, err := w.Write(lenb[:]); err != nil {
		return err
	}
	if _, err := w.Write(h.Bytes()); err != nil {
		return err
	}
	buf := make([]byte, 0, 1<<16)
	for _, t := range tensors {
		for _, x := range t.Data {
			buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(x))
			if len(buf) == cap(buf) {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
	}
	if len(buf) > 0 {
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

func validateTensors(tensors []Tensor) error {
	seen := make(map[string]bool, len(tensors))
	for i, t := range tensors {
		switch {
		case t.Name == "":
			return fmt.Errorf("tensor %d has an empty name", i)
		case t.Name == metadataKey:
			return fmt.Errorf("tensor %d: name %q is reserved", i, metadataKey)
		case seen[t.Name]:
			return fmt.Errorf("duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		if n := NumElements(t.Shape); n != len(t.Data) {
			return fmt.Errorf("tensor %q: shape %v holds %d elements but data has %d", t.Name, t.Shape, n, len(t.Data))
		}
	}
	return nil
}

type stEntry struct {
	DType       string `json:"dtype"`
	Shape       []int  `json:"shape"`
	DataOffsets []int  `json:"data_offsets"`
}

// ParseSafetensors decodes a whole safetensors file held in memory. Tensors
// come back in data order. It is strict: only F32, no duplicate names, no
// overlapping, out-of-range or uncovered data bytes, no unknown header fields.
// Allocation is bounded by len(data).
func ParseSafetensors(data []byte) ([]Tensor, map[string]string, error) {
	if len(data) < 8 {
		return nil, nil, fmt.Errorf("file is %d bytes, shorter than the 8-byte header length", len(data))
	}
	n, err := headerLen(data[:8], int64(len(data)))
	if err != nil {
		return nil, nil, err
	}
	body := data[8+n:]
	hs, meta, err := parseHeader(data[8:8+n], len(body))
	if err != nil {
		return nil, nil, err
	}
	out := make([]Tensor, len(hs))
	for i, h := range hs {
		raw := body[h.Begin:h.End]
		d := make([]float32, len(raw)/4)
		for j := range d {
			d[j] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:]))
		}
		out[i] = Tensor{Name: h.Name, Shape: h.Shape, Data: d}
	}
	return out, meta, nil
}

// TensorHeader is one tensor as a safetensors header describes it, its
// data bytes at [Begin, End) of the data section: enough to compare a file
// with what a config implies before reading the data or building a model.
type TensorHeader struct {
	Name       string
	Shape      []int
	Begin, End int
}

// ReadSafetensorsHeader reads and checks only the header of a safetensors
// file of size bytes, with the same strictness as ParseSafetensors: the
// data offsets must tile the rest of the file exactly, so the header can
// claim no more than the file holds. Allocation is bounded by the header
// length (at most maxHeaderLen and the file size).
func ReadSafetensorsHeader(r io.ReaderAt, size int64) ([]TensorHeader, map[string]string, error) {
	if size < 8 {
		return nil, nil, fmt.Errorf("file is %d bytes, shorter than the 8-byte header length", size)
	}
	var lenb [8]byte
	if _, err := r.ReadAt(lenb[:], 0); err != nil {
		return nil, nil, fmt.Errorf("reading the header length: %w", err)
	}
	n, err := headerLen(lenb[:], size)
	if err != nil {
		return nil, nil, err
	}
	header := make([]byte, n)
	if _, err := r.ReadAt(header, 8); err != nil {
		return nil, nil, fmt.Errorf("reading the %d-byte header: %w", n, err)
	}
	return parseHeader(header, int(size-8-int64(n)))
}

// headerLen decodes the header length and checks it against the file size.
func headerLen(b []byte, size int64) (int, error) {
	n := binary.LittleEndian.Uint64(b)
	if n > maxHeaderLen || n > uint64(size-8) {
		return 0, fmt.Errorf("header length %d is impossible for a file of %d bytes", n, size)
	}
	return int(n), nil
}

// parseHeader decodes a JSON header and checks every entry against a data
// section of bodyLen bytes; the tensors come back in data order.
func parseHeader(header []byte, bodyLen int) ([]TensorHeader, map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(header))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, nil, fmt.Errorf("header is not a JSON object")
	}
	type rec struct {
		name string
		e    stEntry
	}
	var recs []rec
	var meta map[string]string
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("header: %v", err)
		}
		name, ok := tok.(string)
		if !ok {
			return nil, nil, fmt.Errorf("header: expected a tensor name, found %v", tok)
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("header: duplicate entry %q", name)
		}
		seen[name] = true
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, nil, fmt.Errorf("header: entry %q: %v", name, err)
		}
		if name == metadataKey {
			if err := strictUnmarshal(raw, &meta); err != nil {
				return nil, nil, fmt.Errorf("header: %s must map strings to strings: %v", metadataKey, err)
			}
			continue
		}
		var e stEntry
		if err := strictUnmarshal(raw, &e); err != nil {
			return nil, nil, fmt.Errorf("header: tensor %q: %v", name, err)
		}
		recs = append(recs, rec{name, e})
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, nil, fmt.Errorf("header: unterminated JSON object")
	}
	// Only padding may follow the object.
	rest := header[dec.InputOffset():]
	if len(bytes.Trim(rest, " \t\r\n")) != 0 {
		return nil, nil, fmt.Errorf("header: unexpected bytes after the JSON object")
	}

	for _, r := range recs {
		e := r.e
		if e.DType != "F32" {
			return nil, nil, fmt.Errorf("tensor %q: unsupported dtype %q (only F32)", r.name, e.DType)
		}
		if e.Shape == nil {
			return nil, nil, fmt.Errorf("tensor %q: missing shape", r.name)
		}
		if len(e.DataOffsets) != 2 {
			return nil, nil, fmt.Errorf("tensor %q: data_offsets must have 2 entries, has %d", r.name, len(e.DataOffsets))
		}
		b, en := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || en < b || en > bodyLen {
			return nil, nil, fmt.Errorf("tensor %q: data_offsets [%d,%d] outside the %d data bytes", r.name, b, en, bodyLen)
		}
		ne := NumElements(e.Shape)
		if ne < 0 || ne*4 != en-b {
			return nil, nil, fmt.Errorf("tensor %q: shape %v needs %d bytes but data_offsets span %d", r.name, e.Shape, ne*4, en-b)
		}
	}
	sort.SliceStable(recs, func(i, j int) bool {
		ei, ej := recs[i].e.DataOffsets, recs[j].e.DataOffsets
		if ei[0] != ej[0] {
			return ei[0] < ej[0]
		}
		return ei[1] < ej[1]
	})
	pos := 0
	for _, r := range recs {
		b, en := r.e.DataOffsets[0], r.e.DataOffsets[1]
		if b < pos {
			return nil, nil, fmt.Errorf("tensor %q: data_offsets [%d,%d] overlap the previous tensor (ends at %d)", r.name, b, en, pos)
		}
		if b > pos {
			return nil, nil, fmt.Errorf("tensor %q: data bytes [%d,%d) belong to no tensor", r.name, pos, b)
		}
		pos = en
	}
	if pos != bodyLen {
		return nil, nil, fmt.Errorf("data section is %d bytes but tensors cover %d", bodyLen, pos)
	}
	out := make([]TensorHeader, len(recs))
	for i, r := range recs {
		out[i] = TensorHeader{Name: r.name, Shape: append([]int{}, r.e.Shape...), Begin: r.e.DataOffsets[0], End: r.e.DataOffsets[1]}
	}
	return out, meta, nil
}

func strictUnmarshal(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// CheckTensors verifies that got holds exactly the tensors of want (name ->
// shape): none missing, none extra, no duplicates, every shape equal.
func CheckTensors(got []Tensor, want map[string][]int) error {
	seen := make(map[string]bool, len(got))
	for _, t := range got {
		if seen[t.Name] {
			return fmt.Errorf("duplicate tensor %q", t.Name)
		}
		seen[t.Name] = true
		ws, ok := want[t.Name]
		if !ok {
			return fmt.Errorf("unexpected tensor %q", t.Name)
		}
		if !slices.Equal(t.Shape, ws) {
			return fmt.Errorf("tensor %q: shape %v, want %v", t.Name, t.Shape, ws)
		}
	}
	var missing []string
	for name := range want {
		if !seen[name] {
			missing = append(missing, strconv.Quote(name))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return fmt.Errorf("missing tensor(s) %v", missing)
	}
	return nil
}
