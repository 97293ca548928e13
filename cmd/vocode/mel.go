package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/internal/outdir"
	"github.com/wavecat/wavecat/melspec"
)

var melOpts struct {
	out     string
	cfg     melspec.Config
	workers int
	downmix bool
}

var melCmd = &cobra.Command{
	Use:   "mel IN.wav... -o OUT.npy|DIR",
	Short: "Extract log10 mel spectrograms (frames x n_mels float32 .npy), as the reference vocoder does",
	Long: `Extract the reference vocoder's log-mel spectrogram from WAV files: STFT with
centre reflect padding, periodic Hann window, magnitude, librosa's Slaney mel
filterbank, log10(max(S, 1e-10)), saved as a frames x n_mels float32 .npy.
With one input, -o may name the .npy file; with several, -o is a directory
and each output is named after its input. Files are processed in parallel.`,
	Args: cobra.MinimumNArgs(1),
	RunE: func(cmd *cobra.Command, args []string) error {
		return runMel(cmd, args)
	},
}

func init() {
	d := melspec.DefaultConfig()
	f := melCmd.Flags()
	f.StringVarP(&melOpts.out, "out", "o", "", "output .npy file (one input) or directory (required)")
	f.IntVar(&melOpts.cfg.SampleRate, "sample-rate", d.SampleRate, "expected sample rate of the inputs (Hz)")
	f.IntVar(&melOpts.cfg.NFFT, "n-fft", d.NFFT, "FFT size")
	f.IntVar(&melOpts.cfg.Hop, "hop", d.Hop, "hop size (samples)")
	f.IntVar(&melOpts.cfg.WinLength, "win", d.WinLength, "window length (samples)")
	f.IntVar(&melOpts.cfg.NMels, "n-mels", d.NMels, "number of mel bands")
	f.Float64Var(&melOpts.cfg.FMin, "fmin", d.FMin, "lowest mel band edge (Hz)")
	f.Float64Var(&melOpts.cfg.FMax, "fmax", d.FMax, "highest mel band edge (Hz)")
	f.IntVar(&melOpts.workers, "workers", 0, "parallel files (0 = number of CPUs)")
	f.BoolVar(&melOpts.downmix, "downmix", false, "average the channels of a stereo (or wider) WAV")
	melCmd.MarkFlagRequired("out")
	rootCmd.AddCommand(melCmd)
}

func runMel(cmd *cobra.Command, ins []string) (err error) {
	cfg := melOpts.cfg
	if err := cfg.Validate(); err != nil {
		return err
	}
	outs, err := outputPaths(ins, melOpts.out, ".npy", "")
	if err != nil {
		return err
	}
	dir := melOpts.out
	if strings.HasSuffix(strings.ToLower(dir), ".npy") {
		dir = filepath.Dir(dir)
	}
	dirs, err := outdir.Prepare(dir)
	if err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	defer func() {
		if err != nil {
			dirs.Undo() // a failed run leaves no empty folder
		}
	}()
	type summary struct {
		frames  int
		seconds float64
		lo, hi  float32
	}
	sums := make([]summary, len(ins))
	bar := cliutil.NewBar(int64(len(ins)), "mel", cmd.ErrOrStderr(), quiet || len(ins) < 8)
	err = cliutil.ForEach(len(ins), melOpts.workers, func(i int) error {
		a, err := audio.ReadWAV(ins[i], audio.ReadOptions{Downmix: melOpts.downmix})
		if err != nil {
			return withDownmixHint(err)
		}
		if a.SampleRate != cfg.SampleRate {
			return fmt.Errorf("%s: sample rate %d Hz, expected %d Hz (resample it, or pass --sample-rate %d)", ins[i], a.SampleRate, cfg.SampleRate, a.SampleRate)
		}
		if len(a.Samples) == 0 {
			return fmt.Errorf("%s: no samples", ins[i])
		}
		ex, err := melspec.NewExtractor(cfg)
		if err != nil {
			return err
		}
		mel, frames := ex.Compute(a.Samples)
		if err := audio.WriteNPY(outs[i], mel, []int{frames, cfg.NMels}); err != nil {
			return err
		}
		s := summary{frames: frames, seconds: float64(len(a.Samples)) / float64(a.SampleRate), lo: mel[0], hi: mel[0]}
		for _, v := range mel {
			s.lo, s.hi = min(s.lo, v), max(s.hi, v)
		}
		sums[i] = s
		return nil
	}, func() { bar.Add(1) })
	bar.Finish()
	if !quiet {
		w := cmd.OutOrStdout()
		for i := range ins {
			if sums[i].frames == 0 {
				continue
			}
			fmt.Fprintf(w, "%s -> %s: %.2f s, %d frames x %d mels, log10 range [%.2f, %.2f]\n",
				ins[i], outs[i], sums[i].seconds, sums[i].frames, cfg.NMels, sums[i].lo, sums[i].hi)
		}
	}
	if err != nil {
		var n int
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			n = len(j.Unwrap())
		}
		if n > 1 {
			return fmt.Errorf("%d of %d files failed:\n%w", n, len(ins), err)
		}
		return err
	}
	return nil
}
