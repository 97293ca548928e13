//go:build !amd64

package cpu

func addConstVec(x []float32, v float32) int            { return 0 }
func scaleVec(x []float32, a float32) int               { return 0 }
func addScaledVec(d, a, b []float32, alpha float32) int { return 0 }
func sumVec(x []float32) (float32, int)                 { return 0, 0 }
