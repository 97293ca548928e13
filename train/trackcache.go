package train

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/wavecat/wavecat/excitation"
	"github.com/wavecat/wavecat/internal/atomicfile"
)

// TrackCacheFile is where a dump keeps the pitch contours of its mels, so
// that a run (or a resumed one) does not spend half a second of CPU per
// utterance on Griffin-Lim again: minutes for a corpus of hundreds.
const TrackCacheFile = "excitation-tracks.json"

// trackCache is TrackCacheFile's content. Each contour is keyed by its
// utterance and the SHA-256 of that utterance's mel values, so a mel that
// changed (a corpus preprocessed again) is never paired with an old
// contour; Version ties them to how contours are derived.
type trackCache struct {
	Version string                 `json:"version"`
	Tracks  map[string]cachedTrack `json:"tracks"`
}

type cachedTrack struct {
	Mel        string    `json:"mel_sha256"`
	SampleRate int       `json:"sample_rate"`
	F0         []float64 `json:"f0"`
}

// melDigest is the hex SHA-256 of a mel's float32 values (little-endian).
func melDigest(mel []float32) string {
	h := sha256.New()
	var b [4]byte
	for _, v := range mel {
		binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
		h.Write(b[:])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// readTrackCache returns dir's cached contours, empty when there is no
// cache, it is unreadable, or it was made by another excitation.Version.
func readTrackCache(dir string) trackCache {
	c := trackCache{Version: excitation.Version, Tracks: map[string]cachedTrack{}}
	data, err := os.ReadFile(filepath.Join(dir, TrackCacheFile))
	if err != nil {
		return c
	}
	var got trackCache
	if json.Unmarshal(data, &got) != nil || got.Version != excitation.Version || got.Tracks == nil {
		return c
	}
	return got
}

// lookup is the cached track of id when its mel digest and rate match.
func (c trackCache) lookup(id, digest string, sampleRate int) (excitation.Track, bool) {
	t, ok := c.Tracks[id]
	if !ok || t.Mel != digest || t.SampleRate != sampleRate {
		return excitation.Track{}, false
	}
	for _, f := range t.F0 {
		if !(f >= 0) || math.IsInf(f, 0) {
			return excitation.Track{}, false
		}
	}
	return excitation.FromF0(t.F0, sampleRate), true
}

// write stores c in dir atomically; a failure (a read-only dump) is only
// reported to log, since the contours can always be derived again.
func (c trackCache) write(dir string, log io.Writer) {
	err := atomicfile.Write(filepath.Join(dir, TrackCacheFile), 0o644, func(w io.Writer) error {
		return json.NewEncoder(w).Encode(c)
	})
	if err != nil {
		fmt.Fprintf(log, "train: warning: pitch contours not cached: %v\n", err)
	}
}
