package main

import (
	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/internal/cliutil"
)

// quiet silences progress bars (set by the persistent --quiet flag).
var quiet bool

// rootCmd is the train-wavenet command. Subcommands register themselves on
// it: the data commands in newRootCmd below; the training command from
// train.go with
//
//	func init() { rootCmd.AddCommand(trainCmd) }
var rootCmd = newRootCmd()

// newRootCmd builds a fresh command tree (tests use one per run so that
// flag values do not leak between runs).
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "train-wavenet",
		Short: "Prepare LJSpeech-format data for and train WaveNet vocoders",
		Long: `train-wavenet turns an LJSpeech-format corpus (metadata.csv + wavs/) into a
preprocessed dump (waveform targets, log-mel features, split, statistics) and
trains WaveNet vocoders on it.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       cliutil.Version(),
	}
	root.PersistentFlags().BoolVarP(&quiet, "quiet", "q", false, "no progress bars")
	root.AddCommand(newPreprocessCmd(), newMakeCorpusCmd())
	// ---- The train command is registered by train.go (see rootCmd). ----
	return root
}
