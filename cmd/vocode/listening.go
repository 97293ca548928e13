package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/evaluate"
	"github.com/wavecat/wavecat/internal/atomicfile"
	"github.com/wavecat/wavecat/listening"
	"github.com/wavecat/wavecat/ljspeech"
)

var listeningCmd = &cobra.Command{
	Use:   "listening-test",
	Short: "Prepare a listening test (MOS page and webMUSHRA config) and score its results",
}

var listeningExportOpts struct {
	checkpoints evalPathList
	names       evalPathList
	data        string
	split       string
	out         string
	maxUtts     int
	lufs        float64
	noAnchor    bool
	plots       bool
	title       string
	mushraAudio string
	seed        uint64
}

var listeningExportCmd = &cobra.Command{
	Use:   "export --checkpoint RUN... --data DUMP [--split eval] -o DIR",
	Short: "Synthesise utterances with every system and write an anonymised, loudness-matched listening test",
	Long: `Synthesise each chosen utterance of a dump's split with every checkpoint, add
the ground truth (the dump's waveform target turned back into audio) and a
3.5 kHz low-passed ground truth as the MUSHRA anchor, normalise every stimulus
to the same integrated loudness (ITU-R BS.1770-4, -23 LUFS by default) and
write them as 16-bit WAVs with random names. DIR then holds:
  mos/index.html, mos/audio/   the MOS test: send this folder to raters (it
                               works opened from disk; ratings are saved as CSV)
  key.csv                      which stimulus is which system (keep it private)
  mushra.yaml                  a webMUSHRA experiment over the same stimuli
  plots/                       with --plots: spectrograms, ground truth vs systems
Score the returned CSVs with 'vocode listening-test score'.`,
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, args []string) error {
		return runListeningExport(cmd.OutOrStdout(), cmd.ErrOrStderr())
	},
}

var listeningScoreOpts struct {
	key   string
	plot  string
	table string
	json  string
}

var listeningScoreCmd = &cobra.Command{
	Use:   "score RESULTS.csv... --key DIR/key.csv",
	Short: "MOS ± 95% confidence interval per system from the raters' CSVs",
	Long: `Read the ratings CSVs (rater,stimulus,rating,timestamp) the MOS page saved,
check every row against the export's key (unknown stimuli, ratings outside
1-5, missing columns and repeated ratings are errors), and print per system the
MOS with its 95% confidence interval from the t-distribution, once over all
ratings and once over per-rater means. A bar chart with error bars is written
to --plot (default: mos.png next to the key).`,
	Args: cobra.MinimumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return runListeningScore(cmd.OutOrStdout(), args)
	},
}

func init() {
	f := listeningExportCmd.Flags()
	f.Var(&listeningExportOpts.checkpoints, "checkpoint", "checkpoint or run directory of a system (repeat for several)")
	f.Var(&listeningExportOpts.names, "name", "system name for the key, one per --checkpoint in order (default: the checkpoint's directory name)")
	f.StringVar(&listeningExportOpts.data, "data", "", "preprocessed dump directory (required)")
	f.StringVar(&listeningExportOpts.split, "split", "eval", "subset of the dump: train, dev, eval or all (a held-out corpus preprocessed on its own)")
	f.StringVarP(&listeningExportOpts.out, "out", "o", "", "new output directory (required)")
	f.IntVar(&listeningExportOpts.maxUtts, "max-utterances", 0, "use only the first N utterances of the split (0 = all)")
	f.Float64Var(&listeningExportOpts.lufs, "lufs", -23, "integrated loudness of every stimulus (LUFS)")
	f.BoolVar(&listeningExportOpts.noAnchor, "no-anchor", false, "leave out the 3.5 kHz low-pass anchor")
	f.BoolVar(&listeningExportOpts.plots, "plots", false, "write spectrogram PNGs (ground truth vs each system) per utterance")
	f.StringVar(&listeningExportOpts.title, "title", "Speech quality test", "title shown to raters")
	f.StringVar(&listeningExportOpts.mushraAudio, "mushra-audio-prefix", "configs/resources/audio/wavecat", "where mushra.yaml expects the WAVs inside the webMUSHRA installation")
	f.Uint64Var(&listeningExportOpts.seed, "seed", 1, "sampling seed for synthesis")
	// The same setting vocode eval synthesises with (one variable).
	f.StringVar(&evalOpts.postfilter, "postfilter", "comb+envelope", "after synthesis, as vocode: comb+envelope, envelope, comb or none (the network's raw output)")
	listeningExportCmd.MarkFlagRequired("checkpoint")
	listeningExportCmd.MarkFlagRequired("data")
	listeningExportCmd.MarkFlagRequired("out")

	g := listeningScoreCmd.Flags()
	g.StringVar(&listeningScoreOpts.key, "key", "", "key.csv of the export (required)")
	g.StringVar(&listeningScoreOpts.plot, "plot", "", "bar chart PNG (default: mos.png next to the key)")
	g.StringVarP(&listeningScoreOpts.table, "out", "o", "", "also write the markdown table here")
	g.StringVar(&listeningScoreOpts.json, "json", "", "also write the scores as JSON here")
	listeningScoreCmd.MarkFlagRequired("key")

	listeningCmd.AddCommand(listeningExportCmd, listeningScoreCmd)
	rootCmd.AddCommand(listeningCmd)
}

// listeningSystemNames returns one distinct name per checkpoint.
func listeningSystemNames(cks, names []string) ([]string, error) {
	if len(names) > 0 && len(names) != len(cks) {
		return nil, fmt.Errorf("%d --name for %d --checkpoint; give one per checkpoint or none", len(names), len(cks))
	}
	out := make([]string, len(cks))
	seen := map[string]bool{}
	for i, ck := range cks {
		n := filepath.Base(filepath.Clean(ck))
		if len(names) > 0 {
			n = names[i]
		}
		if n == "" || strings.ContainsAny(n, ",\"\n") {
			return nil, fmt.Errorf("system name %q: empty or has a comma, quote or newline", n)
		}
		if n == listening.GroundTruth || n == listening.Anchor {
			return nil, fmt.Errorf("system name %q is reserved; choose another with --name", n)
		}
		base := n
		for k := 2; seen[n]; k++ {
			n = fmt.Sprintf("%s-%d", base, k)
		}
		seen[n] = true
		out[i] = n
	}
	return out, nil
}

func runListeningExport(stdout, stderr io.Writer) error {
	if listeningExportOpts.maxUtts < 0 {
		return fmt.Errorf("--max-utterances %d < 0", listeningExportOpts.maxUtts)
	}
	listeningNames, err := listeningSystemNames(listeningExportOpts.checkpoints, listeningExportOpts.names)
	if err != nil {
		return err
	}
	// Before the synthesis, which can take long: an export over an existing
	// test would be refused only at the end.
	if err := listening.CheckExportDir(listeningExportOpts.out); err != nil {
		return err
	}
	if _, err := postfilterOptions(evalOpts.postfilter); err != nil {
		return err
	}
	d, ids, err := evalSplitIDs(listeningExportOpts.data, listeningExportOpts.split, listeningExportOpts.maxUtts)
	if err != nil {
		return err
	}
	items := make([]listening.Item, len(ids))
	// The ground truth, from the dump.
	utts := make([]*ljspeech.Utterance, len(ids))
	mels := make([][]float32, len(ids))
	frames := make([]int, len(ids))
	for j, id := range ids {
		if utts[j], err = d.LoadUtterance(id, 0); err != nil {
			return err
		}
		items[j] = listening.Item{ID: id, Reference: evaluate.Postprocess(utts[j].Wave, d.Params)}
	}
	for i, ck := range listeningExportOpts.checkpoints {
		mi, err := evalModelInfo(ck)
		if err != nil {
			return err
		}
		load, err := evalLoader(ck, mi, d, stderr)
		if err != nil {
			return err
		}
		for j, id := range ids {
			u, err := load(id)
			if err != nil {
				return err
			}
			mels[j], frames[j] = u.Mel, u.Frames
		}
		if !quiet {
			fmt.Fprintf(stderr, "synthesising %d utterances with %s (%s)\n", len(ids), listeningNames[i], ck)
		}
		syn, free, err := evalSynthesizerFor(ck, true, listeningExportOpts.seed, 1, "cpu")
		if err != nil {
			return err
		}
		ys, err := syn(mels, frames)
		free()
		if err != nil {
			return fmt.Errorf("%s: %w", ck, err)
		}
		for j := range ids {
			items[j].Systems = append(items[j].Systems, listening.Rendition{System: listeningNames[i], Audio: evaluate.Postprocess(ys[j], mi.Preprocess)})
		}
	}
	key, err := listening.Export(items, listening.ExportOptions{
		Dir: listeningExportOpts.out, SampleRate: d.Params.SampleRate, LUFS: listeningExportOpts.lufs, Anchor: !listeningExportOpts.noAnchor,
		TestName: listeningExportOpts.title, MushraAudioPrefix: listeningExportOpts.mushraAudio, Plots: listeningExportOpts.plots,
	})
	if err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintf(stdout, "%d stimuli (%d utterances x %d systems) at %g LUFS in %s\n", len(key), len(ids), len(key)/len(ids), listeningExportOpts.lufs, listeningExportOpts.out)
		fmt.Fprintf(stdout, "send %s to raters; keep %s private\n", filepath.Join(listeningExportOpts.out, listening.MOSDir), filepath.Join(listeningExportOpts.out, listening.KeyFile))
	}
	return nil
}

func runListeningScore(stdout io.Writer, files []string) error {
	key, err := listening.ReadKey(listeningScoreOpts.key)
	if err != nil {
		return err
	}
	// Streamed: memory grows with raters and stimuli, not with the files.
	tally := listening.NewTally(key)
	for _, f := range files {
		if err := tally.AddFile(f); err != nil {
			return err
		}
	}
	scores := tally.Scores()
	md := listening.ScoreMarkdown(scores)
	fmt.Fprint(stdout, md)
	if listeningScoreOpts.table != "" {
		if err := atomicfile.WriteBytes(listeningScoreOpts.table, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if listeningScoreOpts.json != "" {
		js, err := json.MarshalIndent(scores, "", "  ")
		if err != nil {
			return err
		}
		if err := atomicfile.WriteBytes(listeningScoreOpts.json, append(js, '\n'), 0o644); err != nil {
			return err
		}
	}
	plot := listeningScoreOpts.plot
	if plot == "" {
		plot = filepath.Join(filepath.Dir(listeningScoreOpts.key), "mos.png")
	}
	return listening.PlotScores(plot, scores)
}
