// Package bench holds cross-checks and benchmarks that compare wavecat with
// outside implementations: the PyTorch reference of the WaveNet in
// bench/pytorch (agreement of outputs and gradients on real checkpoints,
// training-step speed) and numpy timings. Everything here is in tests and
// benchmarks; see README.md for how to rerun them.
package bench
