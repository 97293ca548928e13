package listening

import (
	"bytes"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/internal/atomicfile"
)

// System names the export adds on its own.
const (
	GroundTruth = "ground_truth"
	Anchor      = "anchor_3.5khz"
)

// Layout of an export directory. Only MOSDir goes to raters; the key, the
// webMUSHRA config and the plots name the systems and stay with the
// experimenter.
const (
	MOSDir     = "mos"     // index.html + audio/, the package raters get
	AudioDir   = "audio"   // inside MOSDir
	KeyFile    = "key.csv" // stimulus,system,utterance
	MushraFile = "mushra.yaml"
	PlotDir    = "plots"
)

// Rendition is one system's audio for an utterance.
type Rendition struct {
	System string
	Audio  []float32
}

// Item is one utterance: the ground truth audio and each system's version.
type Item struct {
	ID        string
	Reference []float32
	Systems   []Rendition
}

// ExportOptions configure Export.
type ExportOptions struct {
	Dir        string
	SampleRate int
	// LUFS is the integrated loudness every stimulus is normalised to.
	LUFS float64
	// Anchor adds the 3.5 kHz low-passed reference as a system.
	Anchor bool
	// TestName titles the MOS page and the webMUSHRA test.
	TestName string
	// MushraAudioPrefix is the directory mushra.yaml points its audio at,
	// relative to the webMUSHRA installation (copy MOSDir/audio there).
	MushraAudioPrefix string
	// Plots writes a spectrogram PNG per utterance (ground truth vs each
	// system) into PlotDir.
	Plots bool
	// Random is the source of the stimulus names and the page order;
	// crypto/rand when nil. Names must not be predictable from the systems.
	Random io.Reader
}

// Stimulus is one row of the key.
type Stimulus struct {
	File      string // base name in MOSDir/audio
	System    string
	Utterance string
}

// Export writes a listening test for items into opt.Dir (which must not
// already hold one). Every stimulus of an utterance gets the reference's
// length (synthesis output is cut or zero-padded to it) and the same
// integrated loudness, and is written as 16-bit mono WAV at one rate, so a
// file's size reveals only the utterance's duration. Names are random hex,
// and the files are written in a random order with one shared modification
// time.
//
// The test is assembled in a staging folder and moved into opt.Dir only once
// complete, so an export that fails half way (a full disk, say) leaves
// opt.Dir as it was and can simply be run again. When opt.Dir does not exist
// the staging folder is its hidden sibling ".NAME.export-partial", renamed to
// opt.Dir in one step; otherwise it is opt.Dir/.export-partial and its
// entries are moved up, key.csv last. A failed export removes its staging
// folder; one left by a killed process is removed by the next export into
// opt.Dir (two exports into one directory at once are not supported).
// It returns the key, sorted by file name.
func Export(items []Item, opt ExportOptions) (key []Stimulus, err error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("listening test: no utterances to export")
	}
	if opt.SampleRate <= 0 {
		return nil, fmt.Errorf("listening test: sample rate %d", opt.SampleRate)
	}
	if opt.TestName == "" {
		opt.TestName = "Speech quality test"
	}
	if opt.MushraAudioPrefix == "" {
		opt.MushraAudioPrefix = "configs/resources/audio/wavecat"
	}
	rnd := opt.Random
	if rnd == nil {
		rnd = rand.Reader
	}
	st, err := stageExport(opt.Dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.abort()
		}
	}()
	out := st.dir // everything is written here and moved into opt.Dir at the end
	audioDir := filepath.Join(out, MOSDir, AudioDir)
	if err := os.MkdirAll(audioDir, 0o755); err != nil {
		return nil, err
	}
	fs := float64(opt.SampleRate)
	used := map[string]bool{}
	audioOf := map[string][]float32{} // written at the end, in random order
	type page struct {
		id        string
		reference string
		stimuli   []Stimulus
	}
	var pages []page
	for _, it := range items {
		n := len(it.Reference)
		renditions := append([]Rendition{{GroundTruth, it.Reference}}, it.Systems...)
		if opt.Anchor {
			lp, err := LowPass(it.Reference, fs, AnchorCutoff)
			if err != nil {
				return nil, err
			}
			renditions = append(renditions, Rendition{Anchor, lp})
		}
		var pg page
		pg.id = it.ID
		var plotted []Rendition
		for _, r := range renditions {
			y := make([]float32, n)
			copy(y, r.Audio)
			y, _, err := Normalize(y, fs, opt.LUFS)
			if err != nil {
				return nil, fmt.Errorf("utterance %s, system %s: %w", it.ID, r.System, err)
			}
			name, err := randomName(rnd, used)
			if err != nil {
				return nil, err
			}
			audioOf[name] = y
			s := Stimulus{File: name, System: r.System, Utterance: it.ID}
			key = append(key, s)
			if r.System == GroundTruth {
				pg.reference = name
			} else {
				pg.stimuli = append(pg.stimuli, s)
			}
			plotted = append(plotted, Rendition{r.System, y})
		}
		pages = append(pages, pg)
		if opt.Plots {
			if err := os.MkdirAll(filepath.Join(out, PlotDir), 0o755); err != nil {
				return nil, err
			}
			if err := PlotSpectrograms(filepath.Join(out, PlotDir, safeName(it.ID)+".png"), it.ID, plotted, opt.SampleRate); err != nil {
				return nil, err
			}
		}
	}
	sort.Slice(key, func(i, j int) bool { return key[i].File < key[j].File })

	// Write the stimuli in a random order and give them all one modification
	// time, so neither timestamps nor creation order (which survive zipping)
	// group them by system.
	names := make([]string, len(key))
	for i, s := range key {
		names[i] = s.File
	}
	if err := shuffle(names, rnd); err != nil {
		return nil, err
	}
	stamp := time.Now().Truncate(time.Second)
	for _, name := range names {
		p := filepath.Join(audioDir, name)
		if err := writeWAV16(p, audioOf[name], opt.SampleRate); err != nil {
			return nil, err
		}
		delete(audioOf, name)
	}
	for _, name := range names {
		if err := os.Chtimes(filepath.Join(audioDir, name), stamp, stamp); err != nil {
			return nil, err
		}
	}

	// The MOS page lists every stimulus once, in a random order (each rater
	// then gets their own order, seeded by their id).
	files := make([]string, len(key))
	for i, s := range key {
		files[i] = AudioDir + "/" + s.File
	}
	if err := shuffle(files, rnd); err != nil {
		return nil, err
	}
	html, err := MOSPage(opt.TestName, files)
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteBytes(filepath.Join(out, MOSDir, "index.html"), html, 0o644); err != nil {
		return nil, err
	}

	var y bytes.Buffer
	fmt.Fprintf(&y, "# webMUSHRA experiment written by vocode listening-test export.\n")
	fmt.Fprintf(&y, "# Copy %s/%s/*.wav to %s/ in the webMUSHRA installation.\n", MOSDir, AudioDir, opt.MushraAudioPrefix)
	fmt.Fprintf(&y, "# The reference of each page is the ground truth; the anchor (if any) is one of the stimuli.\n")
	fmt.Fprintf(&y, "testname: %s\n", yamlString(opt.TestName))
	fmt.Fprintf(&y, "testId: %s\n", yamlString("wavecat_"+randomHexOr(rnd, "test")))
	fmt.Fprintf(&y, "bufferSize: 2048\nstopOnErrors: true\nshowButtonPreviousPage: true\nremoteService: service/write.php\n\npages:\n")
	fmt.Fprintf(&y, "    - type: generic\n      id: welcome\n      name: Welcome\n      content: %s\n", yamlString("Please use headphones in a quiet room. On each page, rate how close each sample is to the reference (0-100). One of the samples is the hidden reference itself."))
	for i, pg := range pages {
		fmt.Fprintf(&y, "    - type: mushra\n      id: %s\n      name: %s\n      content: %s\n", yamlString(fmt.Sprintf("trial%d", i+1)), yamlString(fmt.Sprintf("Sentence %d of %d", i+1, len(pages))), yamlString("Rate the quality of each sample against the reference."))
		fmt.Fprintf(&y, "      showWaveform: false\n      enableLooping: true\n      reference: %s\n      createAnchor35: false\n      createAnchor70: false\n      stimuli:\n", yamlString(opt.MushraAudioPrefix+"/"+pg.reference))
		for _, s := range pg.stimuli {
			// Quoted: an all-digit or digits-e-digits hex name would
			// otherwise load as a number.
			fmt.Fprintf(&y, "          %s: %s\n", yamlString(strings.TrimSuffix(s.File, ".wav")), yamlString(opt.MushraAudioPrefix+"/"+s.File))
		}
	}
	fmt.Fprintf(&y, "    - type: finish\n      name: Thank you\n      content: Thank you for taking part.\n      showResults: false\n      writeResults: true\n")
	if err := atomicfile.WriteBytes(filepath.Join(out, MushraFile), y.Bytes(), 0o644); err != nil {
		return nil, err
	}

	// The key last: its presence marks a complete export. System names and
	// utterance ids come from the user, and the key is a CSV the
	// experimenter may open in a spreadsheet: csvCell keeps them text.
	err = atomicfile.Write(filepath.Join(out, KeyFile), 0o644, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		cw.Write([]string{"stimulus", "system", "utterance"})
		for _, s := range key {
			cw.Write([]string{csvCell(s.File), csvCell(s.System), csvCell(s.Utterance)})
		}
		cw.Flush()
		return cw.Error()
	})
	if err != nil {
		return nil, err
	}
	if err = st.commit(); err != nil {
		return nil, err
	}
	return key, nil
}

// writeWAV16 writes a stimulus; tests replace it to fail like a full disk.
var writeWAV16 = audio.WriteWAV16

// stagingName is the staging folder inside an existing export directory; a
// new one gets the sibling "."+base+stagingName.
const stagingName = ".export-partial"

// exportStage is where an export is assembled before it is moved to final.
type exportStage struct {
	dir, final string
	whole      bool // dir is final's sibling and becomes final by one rename
}

// CheckExportDir reports whether an export into dir would be refused because
// dir already holds a listening test (or part of one), so a caller can check
// before the slow synthesis.
func CheckExportDir(dir string) error {
	if dir == "" {
		return fmt.Errorf("listening test: no output directory")
	}
	if _, err := os.Stat(filepath.Join(dir, KeyFile)); err == nil {
		return fmt.Errorf("%s already holds a listening test (%s exists); export into a new directory so keys and stimuli are never mixed", dir, KeyFile)
	}
	for _, f := range []string{MOSDir, MushraFile, PlotDir} {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			return fmt.Errorf("%s already holds %s but no %s: part of a listening test, perhaps from an export interrupted before exports were staged; remove it or export into a new directory", dir, f, KeyFile)
		}
	}
	return nil
}

// stageExport checks dir, removes a stale staging folder and creates a fresh
// one.
func stageExport(dir string) (*exportStage, error) {
	if err := CheckExportDir(dir); err != nil {
		return nil, err
	}
	final := filepath.Clean(dir)
	abs, err := filepath.Abs(final)
	if err != nil {
		return nil, err
	}
	var sibling string // "" where final has no parent to stage beside it
	if parent := filepath.Dir(abs); parent != abs {
		sibling = filepath.Join(parent, "."+filepath.Base(abs)+stagingName)
	}
	inside := filepath.Join(final, stagingName)
	fi, err := os.Stat(final)
	st := &exportStage{final: final}
	switch {
	case err == nil && !fi.IsDir():
		return nil, fmt.Errorf("%s: not a directory", final)
	case err == nil:
		st.dir = inside
		if sibling != "" {
			os.RemoveAll(sibling) // left by a killed export when final did not exist yet
		}
	case errors.Is(err, fs.ErrNotExist) && sibling != "":
		st.dir, st.whole = sibling, true
		if err := os.MkdirAll(filepath.Dir(sibling), 0o755); err != nil {
			return nil, err
		}
	default:
		return nil, err
	}
	if err := os.RemoveAll(st.dir); err != nil {
		return nil, fmt.Errorf("%s: removing the staging folder of an earlier, unfinished export: %w", st.dir, err)
	}
	if err := os.Mkdir(st.dir, 0o755); err != nil {
		return nil, err
	}
	return st, nil
}

// commit moves the finished export into place.
func (st *exportStage) commit() error {
	if st.whole {
		if err := os.Rename(st.dir, st.final); err != nil {
			return fmt.Errorf("%s: moving the finished export into place: %w", st.final, err)
		}
		atomicfile.SyncDir(filepath.Dir(st.dir))
		return nil
	}
	ents, err := os.ReadDir(st.dir)
	if err != nil {
		return err
	}
	// The key last: until it is there, the directory is not a complete test.
	sort.SliceStable(ents, func(i, j int) bool { return ents[j].Name() == KeyFile && ents[i].Name() != KeyFile })
	for _, e := range ents {
		if err := os.Rename(filepath.Join(st.dir, e.Name()), filepath.Join(st.final, e.Name())); err != nil {
			return fmt.Errorf("%s: moving the finished export into place: %w", filepath.Join(st.final, e.Name()), err)
		}
	}
	atomicfile.SyncDir(st.final)
	return os.Remove(st.dir)
}

// abort removes the staging folder of a failed export.
func (st *exportStage) abort() { os.RemoveAll(st.dir) }

// randomName draws a fresh 16-hex-digit WAV name.
func randomName(r io.Reader, used map[string]bool) (string, error) {
	for {
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return "", fmt.Errorf("listening test: random names: %w", err)
		}
		name := hex.EncodeToString(b[:]) + ".wav"
		if !used[name] {
			used[name] = true
			return name, nil
		}
	}
}

func randomHexOr(r io.Reader, fallback string) string {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fallback
	}
	return hex.EncodeToString(b[:])
}

// shuffle is Fisher-Yates driven by r.
func shuffle(s []string, r io.Reader) error {
	var seed [32]byte
	if _, err := io.ReadFull(r, seed[:]); err != nil {
		return fmt.Errorf("listening test: shuffle: %w", err)
	}
	rng := mrand.New(mrand.NewChaCha8(seed))
	rng.Shuffle(len(s), func(i, j int) { s[i], s[j] = s[j], s[i] })
	return nil
}

// yamlString quotes s as a YAML double-quoted scalar (JSON strings are valid
// YAML).
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// safeName keeps an utterance id usable as a file name.
func safeName(id string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, id)
}
