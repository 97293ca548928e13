// Command vocode turns mel spectrograms into waveforms with a trained WaveNet,
// and extracts mel spectrograms from WAV files (`vocode mel`).
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "vocode:", err)
		os.Exit(1)
	}
}
