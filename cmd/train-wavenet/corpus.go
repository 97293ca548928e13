package main

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/internal/cliutil"
)

// sentence is a transcript and its normalised (spoken) form, as the two
// text columns of LJSpeech's metadata.csv.
type sentence struct{ text, norm string }

// sentences were written for this project (no third-party text). Some carry
// quotes, numbers and abbreviations so the corpus exercises the same parsing
// paths as LJSpeech: a '"' is literal text, and the normalised column spells
// out what is said. They are ordered short to long.
var sentences = []sentence{
	{"The rain stopped.", "The rain stopped."},
	{"Open the window, please.", "Open the window, please."},
	{"She left at 9.", "She left at nine."},
	{"Bread is on the table.", "Bread is on the table."},
	{"The dog barked twice.", "The dog barked twice."},
	{"We walked home slowly.", "We walked home slowly."},
	{"\"Wait,\" he said.", "\"Wait,\" he said."},
	{"The lamp was still warm.", "The lamp was still warm."},
	{"Dr. Hale arrived early.", "Doctor Hale arrived early."},
	{"Snow covered the hills.", "Snow covered the hills."},
	{"The train was late again.", "The train was late again."},
	{"I found 3 old coins.", "I found three old coins."},
	{"Birds sang before dawn.", "Birds sang before dawn."},
	{"The river ran cold.", "The river ran cold."},
	{"Turn left at the mill.", "Turn left at the mill."},
	{"A bell rang far away.", "A bell rang far away."},
	{"The door creaked open.", "The door creaked open."},
	{"Mr. Reed kept bees.", "Mister Reed kept bees."},
	{"The tea had gone cold.", "The tea had gone cold."},
	{"Wind moved the tall grass.", "Wind moved the tall grass."},
	{"The clock struck 12.", "The clock struck twelve."},
	{"Her letter came on Monday.", "Her letter came on Monday."},
	{"They sold apples and pears.", "They sold apples and pears."},
	{"The path was steep.", "The path was steep."},
	{"\"Not yet,\" she replied.", "\"Not yet,\" she replied."},
	{"A cat slept by the fire.", "A cat slept by the fire."},
	{"The boat drifted to shore.", "The boat drifted to shore."},
	{"Light fell across the floor.", "Light fell across the floor."},
	{"The market opened at 6.", "The market opened at six."},
	{"He counted the steps aloud.", "He counted the steps aloud."},
	{"The bridge was built of stone.", "The bridge was built of stone."},
	{"Fog rolled in from the sea.", "Fog rolled in from the sea."},
	{"The old farmer mended the fence before the first frost of the year.", "The old farmer mended the fence before the first frost of the year."},
	{"By the time the guests arrived, the soup had been simmering for 2 hours.", "By the time the guests arrived, the soup had been simmering for two hours."},
	{"A narrow lane led from the church to the river, lined with crooked houses.", "A narrow lane led from the church to the river, lined with crooked houses."},
	{"The committee met on the 3rd of May and agreed to repair the school roof.", "The committee met on the third of May and agreed to repair the school roof."},
	{"\"We shall see,\" said the captain, folding the map and looking out to sea.", "\"We shall see,\" said the captain, folding the map and looking out to sea."},
	{"The library kept its rarest books in a cool room behind a heavy oak door.", "The library kept its rarest books in a cool room behind a heavy oak door."},
	{"Every morning the baker lit the ovens long before the town was awake.", "Every morning the baker lit the ovens long before the town was awake."},
	{"The survey counted 140 houses, 2 inns and a single blacksmith's forge.", "The survey counted one hundred forty houses, two inns and a single blacksmith's forge."},
	{"She wrote down every bird she saw, with the date, the weather and the hour.", "She wrote down every bird she saw, with the date, the weather and the hour."},
	{"The engineer explained that the pump would need a new valve before winter.", "The engineer explained that the pump would need a new valve before winter."},
	{"When the storm passed, the children ran out to look at the fallen branches.", "When the storm passed, the children ran out to look at the fallen branches."},
	{"The ferry carried carts, cattle and passengers across the wide brown river.", "The ferry carried carts, cattle and passengers across the wide brown river."},
	{"Mrs. Grant told the court that she had heard nothing unusual that night.", "Missus Grant told the court that she had heard nothing unusual that night."},
	{"The lighthouse keeper trimmed the wick and polished the great glass lens.", "The lighthouse keeper trimmed the wick and polished the great glass lens."},
	{"In 1850 the town had no railway, and letters took a week to arrive.", "In eighteen fifty the town had no railway, and letters took a week to arrive."},
	{"The orchestra tuned their instruments while the hall slowly filled with people.", "The orchestra tuned their instruments while the hall slowly filled with people."},
	{"He kept a small notebook in which he recorded the price of every meal.", "He kept a small notebook in which he recorded the price of every meal."},
	{"The garden wall had stood for a century, though ivy had loosened many stones.", "The garden wall had stood for a century, though ivy had loosened many stones."},
	{"\"Quickly, now,\" whispered the guide, \"before the tide comes in.\"", "\"Quickly, now,\" whispered the guide, \"before the tide comes in.\""},
	{"The printer set each line of type by hand and checked it twice for errors.", "The printer set each line of type by hand and checked it twice for errors."},
	{"A report of the meeting was sent to all 7 members of the council.", "A report of the meeting was sent to all seven members of the council."},
	{"Across the valley, smoke rose from the chimneys of a dozen small farms.", "Across the valley, smoke rose from the chimneys of a dozen small farms."},
	{"The surgeon washed his hands carefully and asked for more light over the table.", "The surgeon washed his hands carefully and asked for more light over the table."},
	{"The schoolmaster rang the bell, and the pupils filed in without a word.", "The schoolmaster rang the bell, and the pupils filed in without a word."},
	{"They reached the summit at noon and rested in the shelter of a large rock.", "They reached the summit at noon and rested in the shelter of a large rock."},
	{"The clerk copied the will in a neat hand and sealed it with red wax.", "The clerk copied the will in a neat hand and sealed it with red wax."},
	{"At the far end of the pier an old man sat mending a fishing net.", "At the far end of the pier an old man sat mending a fishing net."},
	{"The factory whistle blew at 5, and the workers poured out into the street.", "The factory whistle blew at five, and the workers poured out into the street."},
	{"Nobody could remember when the well had last run dry in the summer.", "Nobody could remember when the well had last run dry in the summer."},
	{"The stationmaster checked his watch, frowned, and walked to the end of the platform.", "The stationmaster checked his watch, frowned, and walked to the end of the platform."},
	{"Her brother sent word from the city that he would return before the harvest.", "Her brother sent word from the city that he would return before the harvest."},
	{"The gardener planted rows of beans, onions and potatoes along the southern wall.", "The gardener planted rows of beans, onions and potatoes along the southern wall."},
}

// voices are espeak-ng English voices that synthesise at 22050 Hz (the
// mbrola ones run at 16 kHz and are not used): six accents, each plain and
// with a male and a female variant of espeak-ng's voice tract (+mN, +fN),
// so a model hears many voices, not six.
var voices = []string{
	"en-us", "en-us+m3", "en-us+f1",
	"en-gb", "en-gb+m2", "en-gb+f5",
	"en-gb-x-rp", "en-gb-x-rp+m4", "en-gb-x-rp+f1",
	"en-gb-scotland", "en-gb-scotland+m6", "en-gb-scotland+f5",
	"en-029", "en-029+m7", "en-029+f1",
	"en-us-nyc", "en-us-nyc+m1", "en-us-nyc+f5",
}

// heldOutSentences and heldOutVoices make the --held-out corpus: sentences
// and voices that no training corpus from make-corpus contains (two accents
// it never uses, and voice-tract variants f2, f3, f4 and m5 that it never
// uses with any accent), so a model trained on one is scored on speech it
// never heard.
var heldOutSentences = []sentence{
	{"The harbour lights came on one by one.", "The harbour lights came on one by one."},
	{"Mia painted the gate a pale shade of green.", "Mia painted the gate a pale shade of green."},
	{"Four geese flew low over the frozen pond.", "Four geese flew low over the frozen pond."},
	{"\"Is anyone there?\" called the night porter.", "\"Is anyone there?\" called the night porter."},
	{"The violin teacher hummed the melody again.", "The violin teacher hummed the melody again."},
	{"On the 2nd day the supplies ran short.", "On the second day the supplies ran short."},
	{"Yellow leaves gathered in the quiet courtyard.", "Yellow leaves gathered in the quiet courtyard."},
	{"Jonas measured the flour and warmed the milk.", "Jonas measured the flour and warmed the milk."},
	{"The museum closed early because of the heavy rain.", "The museum closed early because of the heavy rain."},
	{"Every window of the mill shone in the evening sun.", "Every window of the mill shone in the evening sun."},
	{"Nora asked whether the owls would return in spring.", "Nora asked whether the owls would return in spring."},
	{"A young fox watched us from the edge of the wood.", "A young fox watched us from the edge of the wood."},
}

var heldOutVoices = []string{"en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us+f3", "en-gb+f2", "en-us+m5", "en-029+f4"}

// corpusItem is one utterance to synthesise.
type corpusItem struct {
	id    string
	s     sentence
	voice string
	speed int // words per minute
	pitch int // 0..99
}

// planCorpus picks n utterances deterministically from seed: sentences
// (each used once before any repeats, restricted to at most maxWords words
// when maxWords > 0), voices, speeds and pitches. Ids follow LJSpeech:
// LJ<chapter>-<number>, 50 per chapter.
func planCorpus(n int, seed uint64, maxWords int, heldOut bool) ([]corpusItem, error) {
	src, vs := sentences, voices
	if heldOut {
		src, vs = heldOutSentences, heldOutVoices
	}
	var pool []sentence
	for _, s := range src {
		if maxWords <= 0 || len(strings.Fields(s.norm)) <= maxWords {
			pool = append(pool, s)
		}
	}
	if len(pool) == 0 {
		return nil, fmt.Errorf("make-corpus: no sentence has at most %d words", maxWords)
	}
	r := rand.New(rand.NewPCG(seed, 0x636f72707573))
	var order []int
	items := make([]corpusItem, n)
	for i := range items {
		if len(order) == 0 {
			order = r.Perm(len(pool))
		}
		k := order[0]
		order = order[1:]
		items[i] = corpusItem{
			id:    fmt.Sprintf("LJ%03d-%04d", 1+i/50, 1+i%50),
			s:     pool[k],
			voice: vs[r.IntN(len(vs))],
			speed: 140 + r.IntN(51),
			pitch: 30 + r.IntN(41),
		}
	}
	return items, nil
}

const espeakInstall = "espeak-ng is needed to synthesise the corpus and was not found on PATH; install it with `apt-get install espeak-ng` (Debian/Ubuntu), `dnf install espeak-ng` (Fedora) or `brew install espeak-ng` (macOS)"

func newMakeCorpusCmd() *cobra.Command {
	var (
		out      string
		n        int
		seed     uint64
		maxWords int
		workers  int
		heldOut  bool
		floorDB  float64
		force    bool
	)
	cmd := &cobra.Command{
		Use:   "make-corpus --out DIR",
		Short: "Synthesise a small LJSpeech-format corpus with espeak-ng",
		Long: `make-corpus writes DIR/metadata.csv and DIR/wavs/<id>.wav exactly in the
LJSpeech-1.1 format (id|text|normalised text; 16-bit mono 22050 Hz), speaking
sentences written for this project with several espeak-ng English voices,
speeds and pitches. It is for trying the pipeline without downloading
LJSpeech; the result is deterministic for a given --seed.

Like a microphone recording, every file carries a noise floor: white
Gaussian noise at --noise-floor-db dBFS RMS (default -75, about 6 LSB of
16-bit audio), seeded per utterance, added before the 16-bit rounding.
espeak-ng itself writes exact digital silence between words (about 12% of
the samples), which no recording has: it lets a model drive its predicted
scale towards zero and distorts likelihoods. --noise-floor-db 0 keeps the
raw espeak-ng output. The floor stays below preprocess's 60 dB silence trim
for espeak-ng's levels (peak frames near -14 dBFS), so trimming is as before.

--held-out speaks other sentences with other voices (accents and voice
variants that no corpus without it contains): an evaluation set for a model
trained on a make-corpus corpus, held out in both text and speaker.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("make-corpus: --out is required")
			}
			if n <= 0 || n > 99*50 {
				return fmt.Errorf("make-corpus: --n %d must be in [1, %d]", n, 99*50)
			}
			if !force {
				if entries, err := os.ReadDir(out); err == nil && len(entries) > 0 {
					return fmt.Errorf("make-corpus: %s is not empty (it holds %s); refusing to overwrite a corpus: choose another --out, or --force to write into it", out, entries[0].Name())
				}
			}
			espeak, err := exec.LookPath("espeak-ng")
			if err != nil {
				return errors.New("make-corpus: " + espeakInstall)
			}
			items, err := planCorpus(n, seed, maxWords, heldOut)
			if err != nil {
				return err
			}
			if floorDB > 0 || math.IsNaN(floorDB) {
				return fmt.Errorf("make-corpus: --noise-floor-db %g: want a level below 0 dBFS (or 0 for none)", floorDB)
			}
			return makeCorpus(espeak, out, items, workers, floorDB, seed, quiet, cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "", "corpus directory to write (metadata.csv and wavs/)")
	f.IntVar(&n, "n", 60, "number of utterances")
	f.Uint64Var(&seed, "seed", 1, "seed for sentence order, voices, speeds and pitches")
	f.IntVar(&maxWords, "max-words", 0, "use only sentences of at most this many words (0: all)")
	f.IntVar(&workers, "workers", 0, "espeak-ng processes in parallel (0: one per CPU)")
	f.Float64Var(&floorDB, "noise-floor-db", -75, "noise floor added to every file, dBFS RMS (0: none, espeak-ng's digital silence)")
	f.BoolVar(&force, "force", false, "write into a non-empty --out (files with the same ids are replaced)")
	f.BoolVar(&heldOut, "held-out", false, "sentences and voices that no corpus without this flag contains (an evaluation set)")
	return cmd
}

// corpusRate is LJSpeech's sample rate, which espeak-ng's own voices use.
const corpusRate = 22050

// addNoiseFloor adds white Gaussian noise of RMS level dB (dBFS) to y,
// drawn from a stream of its own per (seed, item).
func addNoiseFloor(y []float32, dB float64, seed uint64, item int) {
	if dB == 0 {
		return
	}
	sd := math.Pow(10, dB/20)
	r := rand.New(rand.NewPCG(seed, 0x6e6f697365+uint64(item)))
	for i := range y {
		y[i] += float32(sd * r.NormFloat64())
	}
}

func makeCorpus(espeak, out string, items []corpusItem, workers int, floorDB float64, seed uint64, quiet bool, cmd *cobra.Command) error {
	wavs := filepath.Join(out, "wavs")
	if err := os.MkdirAll(wavs, 0o755); err != nil {
		return fmt.Errorf("make-corpus: %w", err)
	}
	tmp, err := os.MkdirTemp(out, ".espeak-")
	if err != nil {
		return fmt.Errorf("make-corpus: %w", err)
	}
	defer os.RemoveAll(tmp)
	bar := cliutil.NewBar(int64(len(items)), "synthesising", cmd.ErrOrStderr(), quiet)
	err = cliutil.ForEach(len(items), workers, func(i int) error {
		it := items[i]
		raw := filepath.Join(tmp, it.id+".wav")
		c := exec.Command(espeak, "-v", it.voice, "-s", strconv.Itoa(it.speed), "-p", strconv.Itoa(it.pitch), "-w", raw, "--", it.s.norm)
		if msg, err := c.CombinedOutput(); err != nil {
			return fmt.Errorf("make-corpus: espeak-ng -v %s for %s: %v: %s", it.voice, it.id, err, strings.TrimSpace(string(msg)))
		}
		a, err := audio.ReadWAV(raw, audio.ReadOptions{})
		if err != nil {
			return fmt.Errorf("make-corpus: espeak-ng output for %s: %w", it.id, err)
		}
		// We do not resample: a voice at another rate is a setup error.
		if a.SampleRate != corpusRate {
			return fmt.Errorf("make-corpus: espeak-ng voice %s wrote %d Hz, want %d Hz", it.voice, a.SampleRate, corpusRate)
		}
		if len(a.Samples) == 0 {
			return fmt.Errorf("make-corpus: espeak-ng wrote no audio for %s", it.id)
		}
		addNoiseFloor(a.Samples, floorDB, seed, i)
		// Re-encode through our writer: a clean 16-bit header and an
		// atomic replace of the final file.
		return audio.WriteWAV16(filepath.Join(wavs, it.id+".wav"), a.Samples, a.SampleRate)
	}, func() { bar.Add(1) })
	bar.Finish()
	if err != nil {
		return err
	}
	sorted := slices.Clone(items)
	slices.SortFunc(sorted, func(a, b corpusItem) int { return strings.Compare(a.id, b.id) })
	var b strings.Builder
	for _, it := range sorted {
		fmt.Fprintf(&b, "%s|%s|%s\n", it.id, it.s.text, it.s.norm)
	}
	if err := atomicfile.WriteBytes(filepath.Join(out, "metadata.csv"), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("make-corpus: %w", err)
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: %d utterances (metadata.csv, wavs/)\n", out, len(items))
	return nil
}
