package cpu

import "math"

// tanhf is tanh in float32.
func tanhf(x float32) float32 { return float32(math.Tanh(float64(x))) }

// sigmoidf is 1/(1+exp(-x)) in float32.
func sigmoidf(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }
