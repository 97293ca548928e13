// Package train holds the pieces the training loop calls: Adam and EMA over
// flat parameter buffers (the updates themselves are compute.Backend
// kernels, so they run where the parameters live), r9y9's learning-rate
// schedule, optional gradient-norm clipping, and crash-safe checkpoint
// directories of safetensors files with a SHA-256 manifest (see
// checkpoint.go for the on-disk layout and the atomic swap).
package train
