// Package listening prepares and scores subjective listening tests of
// vocoders: it writes anonymised, loudness-matched stimuli with a hidden key,
// a webMUSHRA experiment config and a self-contained MOS test page, and turns
// the raters' CSV results back into MOS with confidence intervals.
package listening
