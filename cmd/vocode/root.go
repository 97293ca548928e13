package main

import "github.com/spf13/cobra"

var quiet bool

var rootCmd = &cobra.Command{
	Use:           "vocode",
	Short:         "WaveNet vocoder: mel spectrograms to waveforms, and waveforms to mel spectrograms",
	SilenceUsage:  true,
	SilenceErrors: true,
}

func init() {
	rootCmd.PersistentFlags().BoolVarP(&quiet, "quiet", "q", false, "no progress bars or summaries")
}
