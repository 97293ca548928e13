package main

import (
	"fmt"

	"github.com/spf13/cobra"
	"github.com/wavecat/wavecat/ljspeech"
)

func newPreprocessCmd() *cobra.Command {
	opt := ljspeech.Options{Dev: 10, Eval: 10}
	cmd := &cobra.Command{
		Use:   "preprocess --data LJSpeech-1.1 --out DUMP",
		Short: "Compute waveform targets, log-mel features, split and statistics",
		Long: `preprocess reads an LJSpeech-format directory (metadata.csv + wavs/<id>.wav,
16-bit mono 22050 Hz) and writes the dump training reads: per utterance
<id>-wave.npy (target after gain and pre-emphasis) and <id>-feats.npy (log10
mel, frames x 80), plus index.json, split.json (sorted ids: last --eval are
eval, the --dev before them dev), stats.json (mel mean/std of the training
split) and preprocess.json (every parameter).

Every recording is checked first and all unusable ones are listed; use
--skip-bad to go on without them. Rerunning resumes: finished utterances are
kept, so an interrupted run can simply be started again.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opt.Data == "" || opt.Out == "" {
				return fmt.Errorf("preprocess: --data and --out are required")
			}
			opt.Quiet = quiet
			opt.Log = cmd.ErrOrStderr()
			rep, err := ljspeech.Preprocess(opt)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %d utterances (train %d, dev %d, eval %d); computed %d, reused %d, dropped %d, bad %d\n",
				opt.Out, len(rep.Split.Train)+len(rep.Split.Dev)+len(rep.Split.Eval), len(rep.Split.Train), len(rep.Split.Dev), len(rep.Split.Eval),
				rep.Processed, rep.Reused, len(rep.Dropped), len(rep.Bad))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&opt.Data, "data", "", "LJSpeech directory (holding metadata.csv and wavs/)")
	f.StringVar(&opt.Out, "out", "", "dump directory to create or resume")
	f.BoolVar(&opt.SkipBad, "skip-bad", false, "go on without unusable recordings (they are listed)")
	f.IntVar(&opt.Workers, "workers", 0, "files processed in parallel (0: one per CPU)")
	f.IntVar(&opt.Dev, "dev", opt.Dev, "dev utterances (scaled down on tiny corpora)")
	f.IntVar(&opt.Eval, "eval", opt.Eval, "eval utterances (scaled down on tiny corpora)")
	return cmd
}
