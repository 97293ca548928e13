// Package audio reads and writes the files a vocoder pipeline exchanges: WAV
// waveforms and .npy arrays (mel spectrograms).
//
// It exists because the general-purpose Go readers silently return wrong
// data on inputs we meet in practice (float WAV, 8-bit WAV, truncated files,
// float16/float64 .npy) and are slow without careful buffering. Here every
// reader is strict (a malformed or unsupported file is a one-line error that
// names the file and the problem, and allocations are bounded by the real
// file size), decodes in bulk, and every writer replaces its output
// atomically via internal/atomicfile.
package audio
