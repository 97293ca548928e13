package ljspeech

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/melspec"
)

// Dump directory layout (all files written atomically):
//
//	preprocess.json      Params used (written first; a rerun with other
//	                     parameters is refused)
//	<id>-wave.npy        float32 [samples]: target waveform after gain and
//	                     pre-emphasis, samples = frames*hop
//	<id>-feats.npy       float32 [frames, n_mels]: log10 mel, unnormalised
//	<id>-done.json       per-utterance marker, written LAST: its presence
//	                     means both .npy files are complete (or that the
//	                     utterance was dropped, with the reason); it holds
//	                     the source recording's size, mtime and SHA-256
//	                     and the parameters' hash, and is reused only when
//	                     both still match
//	.wavecat.lock        held by the process preprocessing into the dump
//	index.json           Index: every kept utterance (id, frames, samples,
//	                     text) and every dropped one, in metadata order
//	split.json           Split: sorted ids of train, dev, eval
//	stats.json           melspec.Normalizer: per-dimension mel mean/std of
//	                     the training split only
const (
	ParamsFile = "preprocess.json"
	IndexFile  = "index.json"
	SplitFile  = "split.json"
	StatsFile  = "stats.json"
)

// WavePath, FeatsPath and DonePath name an utterance's files in dump dir.
func WavePath(dir, id string) string  { return filepath.Join(dir, id+"-wave.npy") }
func FeatsPath(dir, id string) string { return filepath.Join(dir, id+"-feats.npy") }
func DonePath(dir, id string) string  { return filepath.Join(dir, id+"-done.json") }

// Utt is one kept utterance in the index.
type Utt struct {
	ID      string `json:"id"`
	Frames  int    `json:"frames"`
	Samples int    `json:"samples"`
	Text    string `json:"text"`
	Norm    string `json:"norm"`
}

// DroppedUtt is an utterance the recipe discarded, with why.
type DroppedUtt struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// Index lists the dump's contents.
type Index struct {
	Utterances []Utt        `json:"utterances"`
	Dropped    []DroppedUtt `json:"dropped"`
}

// doneMarker is the per-utterance completion record.
type doneMarker struct {
	ID      string  `json:"id"`
	Frames  int     `json:"frames"`
	Samples int     `json:"samples"`
	MaxAbs  float64 `json:"max_abs"`
	Dropped string  `json:"dropped,omitempty"`
	// Source and Params key the reuse: a rerun recomputes the utterance
	// when its recording or the parameters are not those it was made from.
	Source *SourceKey `json:"source,omitempty"`
	Params string     `json:"params,omitempty"`
}

// SourceKey identifies the recording an utterance was computed from.
type SourceKey struct {
	Size    int64  `json:"size"`
	ModTime string `json:"mtime"` // RFC 3339, informative: copies change it, content does not
	SHA256  string `json:"sha256"`
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return fmt.Errorf("ljspeech: encoding %s: %w", path, err)
	}
	return atomicfile.WriteBytes(path, append(data, '\n'), 0o644)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("ljspeech: %w", err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("ljspeech: %s: %w", path, err)
	}
	return nil
}

// Dump is an opened preprocessed dump directory.
type Dump struct {
	Dir    string
	Params Params
	Index  Index
	Split  Split
	Stats  *melspec.Normalizer
	byID   map[string]int
}

// OpenDump reads a dump's preprocess.json, index.json, split.json and
// stats.json and checks they agree with each other.
func OpenDump(dir string) (*Dump, error) {
	d := &Dump{Dir: dir}
	if err := readJSON(filepath.Join(dir, ParamsFile), &d.Params); err != nil {
		return nil, fmt.Errorf("%w (is %s a dump made by train-wavenet preprocess?)", err, dir)
	}
	if err := d.Params.Validate(); err != nil {
		return nil, fmt.Errorf("ljspeech: %s: %w", filepath.Join(dir, ParamsFile), err)
	}
	if err := readJSON(filepath.Join(dir, IndexFile), &d.Index); err != nil {
		return nil, fmt.Errorf("%w (preprocessing did not finish? rerun it)", err)
	}
	if err := readJSON(filepath.Join(dir, SplitFile), &d.Split); err != nil {
		return nil, err
	}
	st, err := melspec.LoadNormalizer(filepath.Join(dir, StatsFile))
	if err != nil {
		return nil, err
	}
	if st.Dim() != d.Params.Mel.NMels {
		return nil, fmt.Errorf("ljspeech: %s has %d dimensions, the dump's mel has %d", filepath.Join(dir, StatsFile), st.Dim(), d.Params.Mel.NMels)
	}
	d.Stats = st
	d.byID = make(map[string]int, len(d.Index.Utterances))
	for i, u := range d.Index.Utterances {
		if u.Samples != u.Frames*d.Params.Mel.Hop {
			return nil, fmt.Errorf("ljspeech: %s: %s has %d samples, want frames*hop = %d", filepath.Join(dir, IndexFile), u.ID, u.Samples, u.Frames*d.Params.Mel.Hop)
		}
		d.byID[u.ID] = i
	}
	for _, sub := range [][]string{d.Split.Train, d.Split.Dev, d.Split.Eval} {
		for _, id := range sub {
			if _, ok := d.byID[id]; !ok {
				return nil, fmt.Errorf("ljspeech: %s names %s, which is not in %s", filepath.Join(dir, SplitFile), id, IndexFile)
			}
		}
	}
	return d, nil
}

// Utt returns the index entry of id.
func (d *Dump) Utt(id string) (Utt, bool) {
	i, ok := d.byID[id]
	if !ok {
		return Utt{}, false
	}
	return d.Index.Utterances[i], true
}

// LoadFeats returns id's log10 mel as preprocessing wrote it (frames x
// n_mels, not normalised), e.g. for Griffin-Lim.
func (d *Dump) LoadFeats(id string) (mel []float32, frames int, err error) {
	u, ok := d.Utt(id)
	if !ok {
		return nil, 0, fmt.Errorf("ljspeech: %s is not in %s", id, d.Dir)
	}
	if mel, frames, err = readFeats(d.Dir, id, d.Params.Mel.NMels); err == nil && frames != u.Frames {
		err = fmt.Errorf("ljspeech: %s: %d frames, index says %d (stale dump? rerun preprocess)", FeatsPath(d.Dir, id), frames, u.Frames)
	}
	return mel, frames, err
}

// readFeats reads id's frames x nMels mel. (audio.ReadMel is not used: it
// refuses a square array, which an 80-frame utterance would be.)
func readFeats(dir, id string, nMels int) ([]float32, int, error) {
	path := FeatsPath(dir, id)
	mel, shape, err := audio.ReadNPY(path)
	if err != nil {
		return nil, 0, err
	}
	if len(shape) != 2 || shape[1] != nMels {
		return nil, 0, fmt.Errorf("ljspeech: %s: shape %v, want [frames %d]", path, shape, nMels)
	}
	return mel, shape[0], nil
}

// readWave reads id's waveform target.
func readWave(dir, id string) ([]float32, error) {
	path := WavePath(dir, id)
	w, shape, err := audio.ReadNPY(path)
	if err != nil {
		return nil, err
	}
	if len(shape) != 1 {
		return nil, fmt.Errorf("ljspeech: %s: shape %v, want a 1-D waveform", path, shape)
	}
	return w, nil
}
