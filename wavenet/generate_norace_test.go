//go:build !race

package wavenet

const raceEnabled = false
