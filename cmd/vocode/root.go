package main

import (
	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/internal/cliutil"
)

var quiet bool

var rootCmd = &cobra.Command{
	Use:           "vocode",
	Short:         "WaveNet vocoder: mel spectrograms to waveforms, and waveforms to mel spectrograms",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	rootCmd.Version = cliutil.Version()
	rootCmd.PersistentFlags().BoolVarP(&quiet, "quiet", "q", false, "no progress bars or summaries")
}
