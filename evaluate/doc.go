// Package evaluate computes the objective numbers the AdaCat paper compares
// vocoders by (REFERENCE.md §2): teacher-forced test bits per sample under a
// head's exact density, and after synthesis the mel-cepstral distortion (MCD,
// 25th order, alpha 0.41, DTW-aligned) and the log-mel L1 distance against the
// ground truth.
//
// The mel-cepstrum is the frequency-warped cepstrum of each frame's log
// magnitude spectrum: the real cepstrum is turned into the minimum-phase
// cepstrum and then warped onto the mel scale with the first-order all-pass
// transform (the "freqt" recursion of Oppenheim and Johnson). This is the
// non-iterative route to a mel-cepstrum; the iterative Fukada/Tokuda "mcep"
// analysis, which minimises an unbiased log-spectral criterion, gives slightly
// different low-order values on peaky spectra. Both are used for MCD in the
// literature; the warped cepstrum is exact on the analytic test cases and is
// deterministic (no convergence threshold).
package evaluate
