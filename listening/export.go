package listening

import (
	"bytes"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
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
// It returns the key, sorted by file name.
func Export(items []Item, opt ExportOptions) ([]Stimulus, error) {
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
	for _, f := range []string{KeyFile, MOSDir} {
		if _, err := os.Stat(filepath.Join(opt.Dir, f)); err == nil {
			return nil, fmt.Errorf("%s already holds a listening test (%s exists); export into a new directory so keys and stimuli are never mixed", opt.Dir, f)
		}
	}
	audioDir := filepath.Join(opt.Dir, MOSDir, AudioDir)
	if err := os.MkdirAll(audioDir, 0o755); err != nil {
		return nil, err
	}
	fs := float64(opt.SampleRate)
	used := map[string]bool{}
	audioOf := map[string][]float32{} // written at the end, in random order
	var key []Stimulus
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
			if err := os.MkdirAll(filepath.Join(opt.Dir, PlotDir), 0o755); err != nil {
				return nil, err
			}
			if err := PlotSpectrograms(filepath.Join(opt.Dir, PlotDir, safeName(it.ID)+".png"), it.ID, plotted, opt.SampleRate); err != nil {
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
		if err := audio.WriteWAV16(p, audioOf[name], opt.SampleRate); err != nil {
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
	if err := atomicfile.WriteBytes(filepath.Join(opt.Dir, MOSDir, "index.html"), html, 0o644); err != nil {
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
	if err := atomicfile.WriteBytes(filepath.Join(opt.Dir, MushraFile), y.Bytes(), 0o644); err != nil {
		return nil, err
	}

	// The key last: its presence marks a complete export.
	err = atomicfile.Write(filepath.Join(opt.Dir, KeyFile), 0o644, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		cw.Write([]string{"stimulus", "system", "utterance"})
		for _, s := range key {
			cw.Write([]string{s.File, s.System, s.Utterance})
		}
		cw.Flush()
		return cw.Error()
	})
	return key, err
}

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
