//go:build race

package wavenet

// raceEnabled: the race detector makes values escape, so allocation counts
// mean nothing under it.
const raceEnabled = true
