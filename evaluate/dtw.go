package evaluate

import (
	"fmt"
	"math"
)

// DTW aligns sequences a and b (frames of equal dimension) with the standard
// symmetric dynamic time warping: steps (1,0), (0,1) and (1,1), each costing
// the Euclidean distance between the frames it lands on, both ends anchored.
// It returns the path as index pairs from (0,0) to (len(a)-1, len(b)-1) and
// its total cost under dist.
func DTW(a, b [][]float64, dist func(x, y []float64) float64) (path [][2]int, cost float64, err error) {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		return nil, 0, fmt.Errorf("dtw: empty sequence (%d and %d frames)", n, m)
	}
	acc := make([]float64, n*m)
	for i := 0; i < n; i++ {
		for j := 0; j < m; j++ {
			d := dist(a[i], b[j])
			best := math.Inf(1)
			switch {
			case i == 0 && j == 0:
				best = 0
			default:
				if i > 0 {
					best = math.Min(best, acc[(i-1)*m+j])
				}
				if j > 0 {
					best = math.Min(best, acc[i*m+j-1])
				}
				if i > 0 && j > 0 {
					best = math.Min(best, acc[(i-1)*m+j-1])
				}
			}
			acc[i*m+j] = best + d
		}
	}
	// Backtrack, preferring the diagonal on ties so equal sequences align
	// one to one.
	i, j := n-1, m-1
	path = append(path, [2]int{i, j})
	for i > 0 || j > 0 {
		switch {
		case i == 0:
			j--
		case j == 0:
			i--
		default:
			diag, up, left := acc[(i-1)*m+j-1], acc[(i-1)*m+j], acc[i*m+j-1]
			if diag <= up && diag <= left {
				i, j = i-1, j-1
			} else if up <= left {
				i--
			} else {
				j--
			}
		}
		path = append(path, [2]int{i, j})
	}
	for l, r := 0, len(path)-1; l < r; l, r = l+1, r-1 {
		path[l], path[r] = path[r], path[l]
	}
	return path, acc[n*m-1], nil
}

// CepDistance is the Euclidean distance over c1..cN (c0, the frame energy,
// is left out as MCD does).
func CepDistance(x, y []float64) float64 {
	var s float64
	for d := 1; d < len(x) && d < len(y); d++ {
		e := x[d] - y[d]
		s += e * e
	}
	return math.Sqrt(s)
}
