package ljspeech

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sync"

	"github.com/wavecat/wavecat/melspec"
)

// Batch is one training batch of random crops.
type Batch struct {
	B      int // items
	T      int // samples per item (maxTimeSteps)
	Cin    int // mel channels
	Frames int // mel frames per item: T/hop + 2*cinPad
	// Wave is [B][T]: the target waveform (gained, pre-emphasised).
	Wave []float32
	// Mel is [B][Cin][Frames], channel-major as the model consumes it,
	// normalised with the dump's stats. Frame CinPad+j conditions samples
	// [j*hop, (j+1)*hop) of the wave crop; the CinPad frames each side are
	// context for the upsampler's first convolution.
	Mel []float32
	// IDs and Starts name each item's utterance and the first frame of its
	// crop (without context): the wave crop starts at sample Starts[i]*hop.
	IDs    []string
	Starts []int
	// Items are the crops' global item numbers k (see Batcher): the same
	// crop has the same k whatever the world size, so whatever is drawn
	// per crop (training's input noise) is seeded by it.
	Items []int
}

// Batcher draws training batches of random crops from one split of a dump.
// Batch(step) is a pure function of (seed, step), so a resumed run that
// restarts at step s sees exactly the batches it would have seen.
//
// Sampling: items are numbered k = step*B + i; item k is utterance
// perm_e[k mod N] where e = k / N and perm_e is a shuffle of the N eligible
// utterances drawn from (seed, e), so each epoch visits every utterance
// once. The crop start is drawn from (seed, k) uniformly among the positions
// whose cinPad context frames exist in the utterance (as the reference's
// collate does), so no edge padding is ever needed in training.
type Batcher struct {
	d      *Dump
	ids    []string
	frames []int
	// Skipped lists the split's utterances shorter than a crop plus
	// context (maxTimeSteps/hop + 2*cinPad frames); the reference skips
	// them too.
	Skipped []string

	b, t, f, cinPad, hop, cin int
	seed                      uint64
	// rank's share of a global batch of world*b items (Shard); world 0
	// means 1.
	rank, world int

	mu    sync.Mutex
	perms map[int][]int // at most two epochs cached
	offs  map[string]int64
}

// Stream constants keep the epoch-shuffle and crop generators apart.
const (
	permStream = 1 << 63
)

// NewBatcher opens the dump directory and prepares batches of batchSize
// crops of maxTimeSteps samples from split ("train", "dev" or "eval").
// maxTimeSteps must be a multiple of hop, and hop must be the dump's.
func NewBatcher(dump, split string, batchSize, maxTimeSteps, cinPad, hop int, seed uint64) (*Batcher, error) {
	d, err := OpenDump(dump)
	if err != nil {
		return nil, err
	}
	return d.NewBatcher(split, batchSize, maxTimeSteps, cinPad, hop, seed)
}

// NewBatcher is NewBatcher on an opened dump.
func (d *Dump) NewBatcher(split string, batchSize, maxTimeSteps, cinPad, hop int, seed uint64) (*Batcher, error) {
	switch {
	case batchSize <= 0:
		return nil, fmt.Errorf("ljspeech: batch size %d must be positive", batchSize)
	case hop != d.Params.Mel.Hop:
		return nil, fmt.Errorf("ljspeech: hop %d does not match the dump's hop %d (%s)", hop, d.Params.Mel.Hop, d.Dir)
	case maxTimeSteps <= 0 || maxTimeSteps%hop != 0:
		return nil, fmt.Errorf("ljspeech: max time steps %d must be a positive multiple of the hop %d", maxTimeSteps, hop)
	case cinPad < 0:
		return nil, fmt.Errorf("ljspeech: cin_pad %d must not be negative", cinPad)
	}
	ids, err := d.Split.Subset(split)
	if err != nil {
		return nil, err
	}
	bt := &Batcher{d: d, b: batchSize, t: maxTimeSteps, f: maxTimeSteps / hop, cinPad: cinPad, hop: hop,
		cin: d.Params.Mel.NMels, seed: seed, perms: map[int][]int{}, offs: map[string]int64{}}
	need := bt.f + 2*cinPad
	for _, id := range ids {
		u, _ := d.Utt(id)
		if u.Frames < need {
			bt.Skipped = append(bt.Skipped, id)
			continue
		}
		bt.ids = append(bt.ids, id)
		bt.frames = append(bt.frames, u.Frames)
	}
	if len(bt.ids) == 0 {
		return nil, fmt.Errorf("ljspeech: no %s utterance in %s is long enough for a crop of %d frames plus %d context each side (%d utterances, all shorter)",
			split, d.Dir, bt.f, cinPad, len(ids))
	}
	return bt, nil
}

// Shard makes Batch(step) return rank's share of a global batch of
// world*B items: global items (step*world + rank)*B + i for i < B. The
// global batch is the one a single process at batch world*B draws, so N
// ranks at batch B see exactly its crops, disjoint and in its order, and a
// run is reproducible for a given global batch. Shard(0, 1) is the default.
func (bt *Batcher) Shard(rank, world int) error {
	if world < 1 || rank < 0 || rank >= world {
		return fmt.Errorf("ljspeech: shard %d of %d: want 0 <= rank < world", rank, world)
	}
	bt.rank, bt.world = rank, world
	return nil
}

// IDs are the utterances the batcher draws from (all ranks' shares).
func (bt *Batcher) IDs() []string { return append([]string(nil), bt.ids...) }

// Len is the number of utterances batches are drawn from.
func (bt *Batcher) Len() int { return len(bt.ids) }

// Dump returns the opened dump.
func (bt *Batcher) Dump() *Dump { return bt.d }

// perm returns epoch e's shuffle of the eligible utterances.
func (bt *Batcher) perm(e int) []int {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	if p, ok := bt.perms[e]; ok {
		return p
	}
	p := make([]int, len(bt.ids))
	for i := range p {
		p[i] = i
	}
	r := rand.New(rand.NewPCG(bt.seed, permStream|uint64(e)))
	r.Shuffle(len(p), func(i, j int) { p[i], p[j] = p[j], p[i] })
	if len(bt.perms) >= 2 {
		clear(bt.perms)
	}
	bt.perms[e] = p
	return p
}

// pick returns the utterance index and crop start frame of global item k.
func (bt *Batcher) pick(k int) (utt, start int) {
	n := len(bt.ids)
	utt = bt.perm(k / n)[k%n]
	lo := bt.cinPad
	hi := bt.frames[utt] - bt.f - bt.cinPad // inclusive
	r := rand.New(rand.NewPCG(bt.seed, uint64(k)&^permStream))
	return utt, lo + r.IntN(hi-lo+1)
}

// Batch returns the batch of training step step (>= 0). It reads only the
// crops from disk, so memory does not grow with the corpus. Safe for
// concurrent use (e.g. a prefetching goroutine).
func (bt *Batcher) Batch(step int) (Batch, error) {
	if step < 0 {
		return Batch{}, fmt.Errorf("ljspeech: negative step %d", step)
	}
	ff := bt.f + 2*bt.cinPad
	out := Batch{B: bt.b, T: bt.t, Cin: bt.cin, Frames: ff,
		Wave: make([]float32, bt.b*bt.t), Mel: make([]float32, bt.b*bt.cin*ff),
		IDs: make([]string, bt.b), Starts: make([]int, bt.b), Items: make([]int, bt.b)}
	rows := make([]float32, ff*bt.cin)
	first := (step*max(bt.world, 1) + bt.rank) * bt.b
	for i := 0; i < bt.b; i++ {
		u, s := bt.pick(first + i)
		id := bt.ids[u]
		out.IDs[i], out.Starts[i], out.Items[i] = id, s, first+i
		if err := bt.readRange(WavePath(bt.d.Dir, id), int64(bt.frames[u]*bt.hop), int64(s*bt.hop), out.Wave[i*bt.t:(i+1)*bt.t]); err != nil {
			return Batch{}, err
		}
		if err := bt.readRange(FeatsPath(bt.d.Dir, id), int64(bt.frames[u]*bt.cin), int64((s-bt.cinPad)*bt.cin), rows); err != nil {
			return Batch{}, err
		}
		toChannelMajor(out.Mel[i*bt.cin*ff:(i+1)*bt.cin*ff], rows, ff, bt.cin, bt.d.Stats.Mean, bt.d.Stats.Std)
	}
	return out, nil
}

// toChannelMajor normalises frames x cin rows into cin x frames dst.
func toChannelMajor(dst, rows []float32, frames, cin int, mean, std []float64) {
	for c := 0; c < cin; c++ {
		m, inv := mean[c], 1/std[c]
		d := dst[c*frames : (c+1)*frames]
		for t := range d {
			d[t] = float32((float64(rows[t*cin+c]) - m) * inv)
		}
	}
}

// readRange reads len(dst) float32 values starting at element off of a
// 1-D or 2-D float32 .npy of total elements written by this package.
func (bt *Batcher) readRange(path string, total, off int64, dst []float32) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("ljspeech: %w", err)
	}
	defer f.Close()
	bt.mu.Lock()
	data, ok := bt.offs[path]
	bt.mu.Unlock()
	if !ok {
		if data, err = npyDataOffset(f, path, total); err != nil {
			return err
		}
		bt.mu.Lock()
		bt.offs[path] = data
		bt.mu.Unlock()
	}
	buf := make([]byte, 4*len(dst))
	if _, err := f.ReadAt(buf, data+4*off); err != nil {
		return fmt.Errorf("ljspeech: %s: reading %d values at %d: %w", path, len(dst), off, err)
	}
	for i := range dst {
		dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(buf[4*i:]))
	}
	return nil
}

// npyDataOffset checks that f is a little-endian float32 C-order .npy of
// exactly total elements and returns where its data starts.
func npyDataOffset(f *os.File, path string, total int64) (int64, error) {
	var pre [12]byte
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, 12), pre[:]); err != nil || !bytes.Equal(pre[:6], []byte("\x93NUMPY")) {
		return 0, fmt.Errorf("ljspeech: %s: not a .npy file", path)
	}
	var hlen, start int64
	switch pre[6] {
	case 1:
		hlen, start = int64(binary.LittleEndian.Uint16(pre[8:])), 10
	case 2, 3:
		hlen, start = int64(binary.LittleEndian.Uint32(pre[8:])), 12
	default:
		return 0, fmt.Errorf("ljspeech: %s: unsupported .npy version %d", path, pre[6])
	}
	hdr := make([]byte, hlen)
	if _, err := f.ReadAt(hdr, start); err != nil {
		return 0, fmt.Errorf("ljspeech: %s: short .npy header: %w", path, err)
	}
	if !bytes.Contains(hdr, []byte("'descr': '<f4'")) || !bytes.Contains(hdr, []byte("'fortran_order': False")) {
		return 0, fmt.Errorf("ljspeech: %s: not a little-endian float32 C-order array: %s", path, bytes.TrimSpace(hdr))
	}
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("ljspeech: %w", err)
	}
	if want := start + hlen + 4*total; st.Size() != want {
		return 0, fmt.Errorf("ljspeech: %s: %d bytes, want %d for %d values (stale or truncated dump? rerun preprocess)", path, st.Size(), want, total)
	}
	return start + hlen, nil
}

// Utterance is a whole utterance for validation and evaluation.
type Utterance struct {
	ID     string
	Wave   []float32 // Frames*hop samples
	Frames int       // mel frames without padding
	Cin    int
	CinPad int
	// Mel is [Cin][Frames+2*CinPad] channel-major, normalised, with the
	// first and last frames replicated CinPad times (the reference's
	// inference padding).
	Mel []float32
	// Excitation is [channels][len(Wave)] for a model that takes an
	// excitation signal; the dump does not hold it (train.AddExcitation
	// derives it from the mel).
	Excitation []float32
	// Period is the pitch period in samples of each sample, from the same
	// track as Excitation, for a model with lag taps (else nil).
	Period []float32
}

// LoadUtterance loads id whole with the batcher's cinPad.
func (bt *Batcher) LoadUtterance(id string) (*Utterance, error) {
	return bt.d.LoadUtterance(id, bt.cinPad)
}

// LoadUtterance loads id whole, its mel padded with cinPad replicated edge
// frames each side and normalised with the dump's statistics.
func (d *Dump) LoadUtterance(id string, cinPad int) (*Utterance, error) {
	return d.LoadUtteranceNormalized(id, cinPad, d.Stats)
}

// LoadUtteranceNormalized is LoadUtterance with the mel normalised by st:
// a model's own statistics, to score it on a dump it was not trained on.
func (d *Dump) LoadUtteranceNormalized(id string, cinPad int, st *melspec.Normalizer) (*Utterance, error) {
	u, ok := d.Utt(id)
	if !ok {
		return nil, fmt.Errorf("ljspeech: %s is not in %s", id, d.Dir)
	}
	if cinPad < 0 {
		return nil, fmt.Errorf("ljspeech: cin_pad %d must not be negative", cinPad)
	}
	cin := d.Params.Mel.NMels
	mel, frames, err := readFeats(d.Dir, id, cin)
	if err != nil {
		return nil, err
	}
	wave, err := readWave(d.Dir, id)
	if err != nil {
		return nil, err
	}
	if frames != u.Frames || len(wave) != u.Samples {
		return nil, fmt.Errorf("ljspeech: %s: files have %d frames and %d samples, index says %d and %d (stale dump? rerun preprocess)", id, frames, len(wave), u.Frames, u.Samples)
	}
	ff := frames + 2*cinPad
	rows := make([]float32, ff*cin)
	for t := 0; t < ff; t++ {
		src := min(max(t-cinPad, 0), frames-1)
		copy(rows[t*cin:(t+1)*cin], mel[src*cin:(src+1)*cin])
	}
	out := &Utterance{ID: id, Wave: wave, Frames: frames, Cin: cin, CinPad: cinPad, Mel: make([]float32, cin*ff)}
	if st.Dim() != cin {
		return nil, fmt.Errorf("ljspeech: %s: statistics of %d dimensions for %d mels", id, st.Dim(), cin)
	}
	toChannelMajor(out.Mel, rows, ff, cin, st.Mean, st.Std)
	return out, nil
}
