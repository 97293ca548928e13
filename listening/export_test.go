package listening

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/wavecat/wavecat/audio"
)

// seeded is a deterministic io.Reader standing in for crypto/rand, so the
// statistical checks below cannot flake.
type seeded struct{ r *rand.ChaCha8 }

func (s seeded) Read(p []byte) (int, error) { return s.r.Read(p) }

func newSeeded(i uint64) seeded {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], i)
	return seeded{rand.NewChaCha8(seed)}
}

// voice is a harmonic test signal of n samples at 22050 Hz.
func voice(n int, f0 float64, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 0))
	y := make([]float32, n)
	for i := range y {
		var s float64
		for h := 1; h <= 20; h++ {
			s += math.Sin(2*math.Pi*f0*float64(h)*float64(i)/22050) / float64(h)
		}
		y[i] = float32(0.2*s + 0.01*rng.NormFloat64())
	}
	return y
}

// testItems has two utterances of different lengths and two systems: a noisy
// copy and a short (cut) rendition that must be padded to the reference.
func testItems() []Item {
	var items []Item
	for u, n := range []int{22050, 30000} {
		ref := voice(n, 110+30*float64(u), uint64(u))
		noisy := make([]float32, n)
		rng := rand.New(rand.NewPCG(9, uint64(u)))
		for i, v := range ref {
			noisy[i] = v + float32(0.05*rng.NormFloat64())
		}
		items = append(items, Item{ID: []string{"LJ050-0001", "LJ050-0002"}[u], Reference: ref, Systems: []Rendition{
			{"wavenet_adacat", noisy}, {"wavenet_mol", ref[:n-300]},
		}})
	}
	return items
}

func TestExportLayoutAndLoudness(t *testing.T) {
	dir := t.TempDir()
	key, err := Export(testItems(), ExportOptions{Dir: dir, SampleRate: 22050, LUFS: -23, Anchor: true, Plots: true, TestName: "Vocoder <test> & co"})
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != 2*4 {
		t.Fatalf("%d stimuli, want 2 utterances x (ground truth, 2 systems, anchor)", len(key))
	}
	name := regexp.MustCompile(`^[0-9a-f]{16}\.wav$`)
	sizes := map[string]map[int64]bool{}
	var header []byte
	var mtime time.Time
	for i, s := range key {
		if !name.MatchString(s.File) {
			t.Errorf("stimulus name %q is not 16 random hex digits", s.File)
		}
		if i > 0 && key[i-1].File >= s.File {
			t.Errorf("key not sorted by file name at %d", i)
		}
		p := filepath.Join(dir, MOSDir, AudioDir, s.File)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if sizes[s.Utterance] == nil {
			sizes[s.Utterance] = map[int64]bool{}
		}
		sizes[s.Utterance][st.Size()] = true
		if mtime == (time.Time{}) {
			mtime = st.ModTime()
		} else if !st.ModTime().Equal(mtime) {
			t.Errorf("%s: modified %v, others %v (timestamps would order the systems)", s.File, st.ModTime(), mtime)
		}
		raw, _ := os.ReadFile(p)
		// Same format for every file: the header bytes that do not hold a
		// length (RIFF id, WAVE, fmt chunk) are identical.
		h := append(append([]byte{}, raw[:4]...), raw[8:40]...)
		if header == nil {
			header = h
		} else if !bytes.Equal(h, header) {
			t.Errorf("%s: header %x differs from %x", s.File, h, header)
		}
		a, err := audio.ReadWAV(p, audio.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if a.SampleRate != 22050 || a.BitsPerSample != 16 || a.Float {
			t.Errorf("%s: %d Hz, %d bits, float %v", s.File, a.SampleRate, a.BitsPerSample, a.Float)
		}
		l, err := Loudness(a.Samples, 22050)
		if err != nil || math.Abs(l+23) > 0.05 {
			t.Errorf("%s (%s): %.3f LUFS, want -23 (%v)", s.File, s.System, l, err)
		}
	}
	for u, s := range sizes {
		if len(s) != 1 {
			t.Errorf("utterance %s: stimuli of %d different sizes, want one", u, len(s))
		}
	}
	if sizes["LJ050-0001"] == nil || len(sizes) != 2 {
		t.Errorf("utterances %v", sizes)
	}
	// The key on disk says the same.
	k2, err := ReadKey(filepath.Join(dir, KeyFile))
	if err != nil || len(k2) != len(key) {
		t.Fatalf("key.csv: %v, %d entries", err, len(k2))
	}
	for _, s := range key {
		if k2[s.File] != s {
			t.Errorf("key.csv has %+v for %s, want %+v", k2[s.File], s.File, s)
		}
	}
	// The rater's package holds nothing but the page and the stimuli.
	var shipped []string
	filepath.Walk(filepath.Join(dir, MOSDir), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			rel, _ := filepath.Rel(filepath.Join(dir, MOSDir), p)
			shipped = append(shipped, rel)
		}
		return nil
	})
	if len(shipped) != len(key)+1 {
		t.Errorf("rater package holds %v", shipped)
	}
	page, _ := os.ReadFile(filepath.Join(dir, MOSDir, "index.html"))
	for _, s := range key {
		if !bytes.Contains(page, []byte(`"audio/`+s.File+`"`)) {
			t.Errorf("page does not list %s", s.File)
		}
	}
	for _, leak := range []string{"wavenet", "ground_truth", "anchor", "LJ050", "<test>"} {
		if bytes.Contains(page, []byte(leak)) {
			t.Errorf("page contains %q", leak)
		}
	}
	for _, u := range []string{"LJ050-0001", "LJ050-0002"} {
		if b, err := os.ReadFile(filepath.Join(dir, PlotDir, u+".png")); err != nil || string(b[1:4]) != "PNG" {
			t.Errorf("spectrogram of %s: %v", u, err)
		}
	}
	if _, err := Export(testItems(), ExportOptions{Dir: dir, SampleRate: 22050, LUFS: -23}); err == nil || !strings.Contains(err.Error(), "already holds") {
		t.Errorf("export over an existing test: %v", err)
	}
	checkMushraYAML(t, dir, key)
}

// checkMushraYAML parses mushra.yaml with PyYAML and checks webMUSHRA's
// schema: one mushra page per utterance whose reference is its ground truth
// and whose stimuli are the other renditions, keyed by name.
func checkMushraYAML(t *testing.T, dir string, key []Stimulus) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import yaml").Run(); err != nil {
		t.Skip("skipping the mushra.yaml parse: /usr/bin/python3 with PyYAML (python3-yaml) not available")
	}
	script := `
import sys, yaml, json
c = yaml.safe_load(open(sys.argv[1]))
out = {"testname": c["testname"], "pages": []}
for p in c["pages"]:
    assert "type" in p and "name" in p, p
    if p["type"] == "mushra":
        assert p["createAnchor35"] is False and p["createAnchor70"] is False
        assert all(isinstance(k, str) for k in p["stimuli"]), p["stimuli"]
        out["pages"].append({"reference": p["reference"], "stimuli": p["stimuli"]})
assert c["pages"][0]["type"] == "generic" and c["pages"][-1]["type"] == "finish"
print(json.dumps(out))
`
	out, err := exec.Command(py, "-c", script, filepath.Join(dir, MushraFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("mushra.yaml: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, `"testname": "Vocoder <test> & co"`) {
		t.Errorf("testname lost: %s", s)
	}
	byUtt := map[string][]Stimulus{}
	for _, k := range key {
		byUtt[k.Utterance] = append(byUtt[k.Utterance], k)
	}
	for _, ks := range byUtt {
		for _, k := range ks {
			path := "configs/resources/audio/wavecat/" + k.File
			if k.System == GroundTruth {
				if !strings.Contains(s, `"reference": "`+path+`"`) {
					t.Errorf("no page with reference %s: %s", path, s)
				}
			} else if !strings.Contains(s, `"`+strings.TrimSuffix(k.File, ".wav")+`": "`+path+`"`) {
				t.Errorf("stimulus %s (%s) missing: %s", k.File, k.System, s)
			}
		}
	}
	if n := strings.Count(s, `"reference"`); n != len(byUtt) {
		t.Errorf("%d mushra pages, want %d", n, len(byUtt))
	}
}

// Over many exports the names carry no information about the system: the
// ground truth's rank among the sorted names, and its position in the page's
// order, take every value.
func TestExportNamesNotGuessable(t *testing.T) {
	items := testItems()[:1]
	items[0].Reference = items[0].Reference[:9000]
	items[0].Systems[0].Audio = items[0].Systems[0].Audio[:9000]
	items[0].Systems[1].Audio = items[0].Systems[1].Audio[:8000]
	ranks := map[int]int{}
	pagePos := map[int]int{}
	firstBytes := map[string]map[byte]bool{}
	runs := 40
	if testing.Short() {
		runs = 25
	}
	for i := 0; i < runs; i++ {
		dir := t.TempDir()
		key, err := Export(items, ExportOptions{Dir: dir, SampleRate: 22050, LUFS: -23, Anchor: true, Random: newSeeded(uint64(i))})
		if err != nil {
			t.Fatal(err)
		}
		page, _ := os.ReadFile(filepath.Join(dir, MOSDir, "index.html"))
		var order []int // page positions of key entries
		for r, s := range key {
			order = append(order, bytes.Index(page, []byte(s.File)))
			b, _ := hex.DecodeString(s.File[:2])
			if firstBytes[s.System] == nil {
				firstBytes[s.System] = map[byte]bool{}
			}
			firstBytes[s.System][b[0]>>6] = true
			if s.System == GroundTruth {
				ranks[r]++
			}
		}
		sorted := append([]int{}, order...)
		sort.Ints(sorted)
		for r, s := range key {
			if s.System == GroundTruth {
				pagePos[sort.SearchInts(sorted, order[r])]++
			}
		}
	}
	for r := 0; r < 4; r++ {
		if ranks[r] == 0 || pagePos[r] == 0 {
			t.Errorf("ground truth never at sorted rank %d (%v) or page position %d (%v) in %d exports", r, ranks, r, pagePos, runs)
		}
	}
	for s, q := range firstBytes {
		if len(q) < 3 {
			t.Errorf("system %s names start in only %d of 4 quarters of the hex range", s, len(q))
		}
	}
}
