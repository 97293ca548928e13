//go:build !amd64

package cpu

func adamVec(p, g, m, v []float32, k *adamConsts) int { return 0 }
