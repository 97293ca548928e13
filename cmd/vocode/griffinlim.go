package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/internal/cliutil"
	"github.com/wavecat/wavecat/melspec"
)

// runGriffinLim is vocode --griffin-lim: a waveform per input from the mel
// alone (melspec.GriffinLim), with the mel parameters of the model vocode
// would otherwise use (its weights are not loaded). The mel was computed
// before the training gain and pre-emphasis, so the result is written as it
// comes, clipped to 16 bits.
func runGriffinLim(cmd *cobra.Command, args, outs []string) (err error) {
	stderr, o := cmd.ErrOrStderr(), synthOpts
	path, source, cleanup, err := resolveModel(o.checkpoint)
	if err != nil {
		return err
	}
	defer cleanup()
	info, err := evalModelInfo(path)
	if err != nil {
		return fmt.Errorf("mel parameters from %s: %w", source, err)
	}
	opt := melspec.DefaultGriffinLimOptions()
	opt.Iterations = o.glIterations
	pp := info.Preprocess
	fmt.Fprintf(stderr, "vocode: Griffin-Lim, no neural model (%d iterations, momentum %g); mel parameters from %s (%d mels, hop %d, %d Hz)\n",
		opt.Iterations, opt.Momentum, source, pp.Mel.NMels, pp.Mel.Hop, pp.SampleRate)
	gl, err := melspec.NewGriffinLim(pp.MelConfig())
	if err != nil {
		return err
	}
	ins, err := readInputs(args, info, true, stderr)
	if err != nil {
		return err
	}
	dirs, err := prepareOutputs(o.out, len(ins))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			dirs.Undo()
		}
	}()
	bar := cliutil.NewBar(int64(len(ins)), "griffin-lim", stderr, quiet)
	defer bar.Finish()
	for i, in := range ins {
		opt.Seed = o.seed + uint64(i)
		y, err := gl.Synthesize(in.mel, in.frames, opt)
		if err != nil {
			return fmt.Errorf("%s: %w", in.path, err)
		}
		if err := audio.WriteWAV16(outs[i], y, pp.SampleRate); err != nil {
			return fmt.Errorf("%s: %w", outs[i], err)
		}
		bar.Add(1)
	}
	if !quiet {
		for i, in := range ins {
			fmt.Fprintf(cmd.OutOrStdout(), "%s -> %s: %d frames, %.2f s of audio (Griffin-Lim)\n", in.path, outs[i], in.frames,
				float64(in.frames*pp.Mel.Hop)/float64(pp.SampleRate))
		}
	}
	return nil
}
