// Command train-wavenet prepares data for and trains WaveNet vocoders:
//
//	train-wavenet make-corpus --out DIR      # synthetic LJSpeech-format corpus (espeak-ng)
//	train-wavenet preprocess --data LJSpeech-1.1 --out dump
//	train-wavenet train ...                  # (registered by train.go)
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := rootCmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "train-wavenet:", err)
		os.Exit(exitStatus(err))
	}
}
