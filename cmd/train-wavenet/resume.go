package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/wavecat/wavecat/train"
)

// resumeFlags reconciles the flags of `--resume` with the run's newest
// checkpoint. A run-defining flag may be repeated with the value the run
// has; a different value is an error that names the saved one. The run's
// settings (--steps, intervals, --keep, validation) are the saved ones
// unless given, and every one given with another value is printed, so a
// resumed run never silently changes how often it saves or what it keeps.
// Checkpoints written before settings were saved keep the flags' defaults.
//
// The checkpoint is the newest one that verifies completely
// (train.PrepareResume): a damaged newer one is moved aside and named, with
// the reason, rather than stopping the run or being passed over in silence.
//
// world is the number of ranks that will train (1, --gpus N, or the
// launcher's world size): --batch-size is per rank, so it is checked
// against the run's global batch split over them. A rank other than 0
// (readOnly) only reads the run directory: rank 0 prepares it, and ranks
// that all took its lock would shut one another out.
func resumeFlags(f *pflag.FlagSet, o *trainOpts, log io.Writer, world int, readOnly bool) error {
	prepare := train.PrepareResume
	if readOnly {
		prepare = train.FindResume
	}
	ck, skipped, err := prepare(o.out)
	if errors.Is(err, train.ErrNoCheckpoint) {
		return nil // train.Run reports the missing checkpoint
	}
	if err != nil {
		return fmt.Errorf("--resume: %w", err)
	}
	if readOnly {
		skipped = nil // rank 0 reports them
	}
	for _, u := range skipped {
		fmt.Fprintf(log, "train-wavenet: --resume: skipping %s: %v; moved it to %s\n", u.Dir, u.Err, u.MovedTo)
	}
	if len(skipped) > 0 {
		fmt.Fprintf(log, "train-wavenet: --resume: resuming from %s, the newest checkpoint that verifies\n", ck)
	}
	data, err := os.ReadFile(filepath.Join(ck, train.ConfigFile))
	if err != nil {
		return err
	}
	meta, err := train.ParseMeta(data)
	if err != nil {
		return fmt.Errorf("%s: %w", ck, err)
	}
	mi, err := train.ParseModelInfo(meta)
	if err != nil {
		return fmt.Errorf("%s: %w", ck, err)
	}
	rs, err := train.ReadRunState(meta)
	if err != nil {
		return fmt.Errorf("%s: %w", ck, err)
	}
	batch, err := train.PerRankBatch(rs, world)
	if err != nil {
		return fmt.Errorf("--resume %s: %w", ck, err)
	}
	saved := map[string]string{
		"layers": strconv.Itoa(mi.Model.Layers), "stacks": strconv.Itoa(mi.Model.Stacks),
		"residual-channels": strconv.Itoa(mi.Model.ResidualChannels), "gate-channels": strconv.Itoa(mi.Model.GateChannels),
		"skip-channels": strconv.Itoa(mi.Model.SkipChannels), "kernel-size": strconv.Itoa(mi.Model.KernelSize),
		"batch-size": strconv.Itoa(batch), "max-time-steps": strconv.Itoa(rs.MaxTimeSteps),
		"lr": fmtG(meta.Schedule.Init), "lr-decay-steps": strconv.FormatInt(meta.Schedule.StepSize, 10),
		"lr-gamma": fmtG(meta.Schedule.Gamma), "ema-decay": fmtG(meta.EMADecay), "clip-norm": fmtG(rs.ClipNorm), "input-noise": fmtG(rs.InputNoise),
		"excitation-align": strconv.FormatBool(rs.AlignExc),
		"seed":             strconv.FormatUint(meta.Seed, 10), "excitation": strconv.FormatBool(mi.Model.ExcitationChannels > 0),
		"lag-taps": strconv.Itoa(mi.Model.LagTaps),
	}
	head := strings.Fields(mi.Head)
	saved["head"] = head[0]
	for i := 1; i+1 < len(head); i += 2 {
		saved[strings.TrimPrefix(head[i], "--")] = head[i+1]
	}
	var bad []string
	for _, n := range runDefining {
		if !f.Changed(n) {
			continue
		}
		given := f.Lookup(n).Value.String()
		if n == "preset" {
			if msg := presetMismatch(given, mi, f); msg != "" {
				bad = append(bad, msg)
			}
			continue
		}
		want, ok := saved[n]
		if !ok { // an option of another head
			bad = append(bad, fmt.Sprintf("--%s (the run's head is %q)", n, mi.Head))
		} else if !sameValue(given, want) {
			bad = append(bad, fmt.Sprintf("--%s %s (the run has %s)", n, given, want))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("--resume continues %s with the settings saved in its checkpoint; these cannot change (start a new --out instead): %s",
			o.out, strings.Join(bad, ", "))
	}
	s := rs.Settings
	if s == nil {
		fmt.Fprintf(log, "train-wavenet: %s predates saved run settings; --steps, intervals and --keep are the flags' values\n", ck)
		return nil
	}
	for _, st := range []struct {
		flag  string
		dst   any
		saved any
	}{
		{"steps", &o.steps, s.Steps}, {"log-interval", &o.logEvery, s.LogInterval}, {"eval-interval", &o.evalEvery, s.EvalInterval},
		{"checkpoint-interval", &o.ckptEvery, s.CheckpointInterval}, {"keep", &o.keep, s.Keep}, {"eval-split", &o.evalSplit, s.EvalSplit},
		{"eval-max-samples", &o.evalMax, s.EvalMaxSamples}, {"eval-utterances", &o.evalUtts, s.EvalMaxUtterances},
	} {
		if !f.Changed(st.flag) {
			switch d := st.dst.(type) {
			case *int64:
				*d = st.saved.(int64)
			case *int:
				*d = st.saved.(int)
			case *string:
				*d = st.saved.(string)
			}
			continue
		}
		if given, was := f.Lookup(st.flag).Value.String(), fmt.Sprint(st.saved); given != was {
			fmt.Fprintf(log, "train-wavenet: resuming with --%s %s (the run had %s)\n", st.flag, given, was)
		}
	}
	return nil
}

// presetMismatch says why --preset name does not describe the saved run
// (its shape, with the shape flags also given, and its head unless --head
// is given), or "" when it does.
func presetMismatch(name string, mi train.ModelInfo, f *pflag.FlagSet) string {
	p, err := train.LookupPreset(name)
	if err != nil {
		return fmt.Sprintf("--preset %s (%v)", name, err)
	}
	m := p.Model
	for _, ov := range []struct {
		flag string
		dst  *int
	}{{"layers", &m.Layers}, {"stacks", &m.Stacks}, {"residual-channels", &m.ResidualChannels},
		{"gate-channels", &m.GateChannels}, {"skip-channels", &m.SkipChannels}, {"kernel-size", &m.KernelSize}} {
		if f.Changed(ov.flag) {
			*ov.dst, _ = strconv.Atoi(f.Lookup(ov.flag).Value.String())
		}
	}
	s := mi.Model
	if m.Layers != s.Layers || m.Stacks != s.Stacks || m.ResidualChannels != s.ResidualChannels || m.GateChannels != s.GateChannels ||
		m.SkipChannels != s.SkipChannels || m.KernelSize != s.KernelSize {
		return fmt.Sprintf("--preset %s (the run's model is %d layers in %d stacks, %d/%d/%d, kernel %d)", name,
			s.Layers, s.Stacks, s.ResidualChannels, s.GateChannels, s.SkipChannels, s.KernelSize)
	}
	if !f.Changed("head") && strings.Fields(p.Head)[0] != strings.Fields(mi.Head)[0] {
		return fmt.Sprintf("--preset %s (its head is %q, the run's %q)", name, p.Head, mi.Head)
	}
	return ""
}

// sameValue compares two flag values as numbers when both are, else as text.
func sameValue(a, b string) bool {
	x, err1 := strconv.ParseFloat(a, 64)
	y, err2 := strconv.ParseFloat(b, 64)
	if err1 == nil && err2 == nil {
		return x == y
	}
	return a == b
}

func fmtG(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }
