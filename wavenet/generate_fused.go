package wavenet

import (
	"errors"
	"fmt"
	"math"

	"github.com/wavecat/wavecat/compute"
)

// The one-launch step (wf_step in generate.cu) for small batches: the
// network part of a sample in one kernel whose blocks exchange results
// through tagged words, so a step is 3 launches (wf_step, sampling, advance)
// instead of L+5. It needs a module that says how many blocks run at once
// (compute.CoResident); the layered kernels remain for larger batches and
// as the fallback.

const (
	fusedMaxBatch = 32 // WF_BMAX in generate.cu
	// fusedAutoMaxBatch is the largest batch GPUStepAuto runs on the
	// one-launch step: up to 4 it was measured faster than the layered
	// kernels (H200, docs/benchmarks.md); batches of 5 to 32 take it only
	// when asked (GPUStepFused, vocode --gpu-step fused) until
	// scripts/gpu-check.sh has measured them.
	fusedAutoMaxBatch = 4
	fusedMaxBlock     = 256 // __launch_bounds__ of wf_step: its block size, so the prologue has 8 warps
	// fusedMaxShared is the dynamic shared memory wf_step may use: CUDA's
	// default limit per block (no opt-in attribute is set), 48 KiB for
	// static and dynamic together, less a reserve for wf_step's static
	// __shared__ word. Asking the driver for the whole 48 KiB dynamic made
	// it answer 0 blocks, so the H200 never built the step for the
	// reference config.
	fusedMaxShared = 48<<10 - 256
	fusedHeader    = 16 // FHDR
	fusedPerRound  = 12 // FPER
)

// errNotCoResident reports that wf_step's blocks waited too long for each
// other: they were not all running (the GPU's SMs were shared). The group
// is rerun with the layered kernels.
var errNotCoResident = errors.New("wavenet: GPU generator: the one-launch step's blocks did not all run at once")

// GPUStep selects the GPU generator's step kernels (GenerateOptions).
type GPUStep int

const (
	// GPUStepAuto: the one-launch step for batches up to
	// fusedAutoMaxBatch where the backend can say how many blocks run at
	// once (fusedByDefault), else the layered kernels; a group whose
	// blocks stall is rerun layered. (The cluster step only with
	// clusterByDefault, off until it is measured on a GPU.)
	GPUStepAuto GPUStep = iota
	// GPUStepLayered: L+5 launches per sample, any batch.
	GPUStepLayered
	// GPUStepFused: the one-launch step, up to fusedMaxBatch utterances;
	// Generate fails where it is not available (larger batches, shared
	// memory, a backend without compute.CoResident).
	GPUStepFused
	// GPUStepCluster: the one-launch step on thread-block clusters
	// (generate_cluster.go), up to clusterMaxBatch utterances per
	// cluster; Generate fails where clusters cannot run.
	GPUStepCluster
)

// ParseGPUStep reads auto, layered, fused or cluster.
func ParseGPUStep(s string) (GPUStep, error) {
	switch s {
	case "auto", "":
		return GPUStepAuto, nil
	case "layered":
		return GPUStepLayered, nil
	case "fused":
		return GPUStepFused, nil
	case "cluster":
		return GPUStepCluster, nil
	}
	return 0, fmt.Errorf("GPU step %q: want auto, layered, fused or cluster", s)
}

// fusedStep is wf_step's weights, table and launch shape.
type fusedStep struct {
	w, tab    compute.Buffer
	nb, block int
	words     int // exchange words per utterance
	shared    int // dynamic shared floats per utterance (fusedShared)
}

// fusedShared is the dynamic shared memory (floats per utterance) of a
// block of wf_step on nb blocks: two past-tap sums per gate pair it owns
// and layer, a running sum per skip row it owns, and the longest round
// input.
func fusedShared(p *Generator, nb int) int {
	c := func(n int) int { return (n + nb - 1) / nb }
	return 2*p.L*c(p.H) + c(p.S) + max(p.Cin, p.R+p.H, p.S)
}

// newFusedStep builds wf_step's weights for the plan's folded weights w
// (genOffsets) and sizes its grid (fusedGrid). ringOff is each layer's
// ring offset per utterance, then the total. It returns nil when the
// module cannot say how many blocks run at once. nb > 0 sets the grid
// instead (tests).
func newFusedStep(be compute.Backend, mod compute.Module, p *Generator, w []float32, ringOff []int, nb int) *fusedStep {
	if nb <= 0 {
		cr, ok := mod.(compute.CoResident)
		if !ok {
			return nil
		}
		if nb = fusedGrid(p, cr); nb < 1 {
			return nil
		}
	}
	f := &fusedStep{nb: nb, block: fusedMaxBlock, words: p.L*(p.R+p.H) + 2*p.S, shared: fusedShared(p, nb)}
	f.w, f.tab = uploadFused(be, p, w, nb, ringOff)
	return f
}

// uploadFused lays out the rounds' weights and table for nb blocks
// (fusedWeights) in device buffers: wf_step's, or wcl_step's with nb the
// cluster size.
func uploadFused(be compute.Backend, p *Generator, w []float32, nb int, ringOff []int) (fw, tab compute.Buffer) {
	hw, ht := fusedWeights(p, w, nb, ringOff)
	tf := intTable(ht)
	fw, tab = be.Alloc(len(hw)), be.Alloc(len(tf))
	be.Upload(compute.V(fw), hw)
	be.Upload(compute.V(tab), tf)
	return fw, tab
}

// fusedGrid is the number of wf_step blocks to launch: one per row of the
// widest round, or fewer when fewer run at once. A block's shared memory
// grows as the grid shrinks (each block owns more rows), so the grid is
// the largest nb whose blocks, each with the shared memory of a grid of nb
// (fusedGridShared), all run at once: start from the widest round and take
// the driver's answer until it holds. 0 when no block fits.
func fusedGrid(p *Generator, cr compute.CoResident) int {
	nb := max(p.H, p.R, p.S, p.O)
	for nb > 0 {
		n := cr.CoResidentBlocks("wf_step", fusedMaxBlock, fusedGridShared(p, nb))
		if n >= nb {
			return nb
		}
		nb = n // fewer blocks than rows: recheck with their larger shared memory
	}
	return 0
}

// fusedGridShared is the dynamic shared memory (bytes) fusedGrid asks
// about for a grid of nb blocks: nb blocks' share at fusedMaxBatch
// utterances, at most fusedMaxShared (useFused refuses larger batches).
func fusedGridShared(p *Generator, nb int) int {
	return min(4*fusedMaxBatch*fusedShared(p, nb), fusedMaxShared)
}

func (f *fusedStep) free(be compute.Backend) {
	be.Free(f.w)
	be.Free(f.tab)
}

// fusedWeights lays out wf_step's rounds (see generate.cu) in float64
// arithmetic: per round a matrix of rows over the round's input vector and
// a constant per row, and for the layer rounds the past-tap rows of the
// dilated conv. With a = sqrt(0.5), Wcur_l the current-tap block of layer
// l's conv, cb_l its bias and (Wr, br), Ws the residual and skip 1x1s:
//
//	round 0 (input enc):               gate  Wcur_0 Wf | Wcur_0 bf + cb_0
//	                                   res   Wf | bf
//	round l in 1..L-1 ([x_{l-1}, z_{l-1}]): gate  a Wcur_l, a Wcur_l Wr_{l-1} | a Wcur_l br_{l-1} + cb_l
//	                                   res   a I, a Wr_{l-1} | a br_{l-1}
//	                                   skip  0, Ws_{l-1} | (l = 1: every layer's skip bias)
//	round L ([x_{L-1}, z_{L-1}]):     skip  0, Ws_{L-1} | (L = 1: the skip bias)
//	round L+1 (a1), L+2 (a2):          W1 | b1, W2 | b2
func fusedWeights(p *Generator, w []float32, nb int, ringOff []int) ([]float32, []int) {
	R, G, H, S, O, K, L, Cin := p.R, p.G, p.H, p.S, p.O, p.K, p.L, p.Cin
	o := &p.offs
	a := math.Sqrt(0.5)
	var fw []float32
	tab := make([]int, fusedHeader+(L+3)*fusedPerRound)
	copy(tab, []int{R, H, S, O, K, L, Cin, gpuChunk, nb, max(ringOff[L], 1)})
	at := func(i int) float64 { return float64(w[i]) }
	// wcur(l, g, i) is Wcur_l[g][i]; wr(l, r, h), ws(l, s, h) the 1x1s.
	wcur := func(l, g, i int) float64 { return at(o.conv[l] + g*K*R + (K-1)*R + i) }
	wr := func(l, r, h int) float64 { return at(o.rs[l] + r*H + h) }
	ws := func(l, s, h int) float64 { return at(o.rs[l] + R*H + s*H + h) }
	region := func(r int) (off, n int) { // exchange region r, per utterance
		if r < L {
			return r * (R + H), R + H
		}
		return L*(R+H) + (r-L)*S, S
	}
	for r := 0; r < L+3; r++ {
		flen := R + H
		switch {
		case r == 0:
			flen = Cin
		case r > L:
			flen = S
		}
		var rows [][]float64
		var cst []float64
		row := func() []float64 { v := make([]float64, flen); rows = append(rows, v); cst = append(cst, 0); return v }
		if r < L {
			l := r
			for g := 0; g < G; g++ {
				v := row()
				c := float64(w[o.condB+l*G+g])
				if l == 0 {
					for ci := 0; ci < Cin; ci++ {
						for i := 0; i < R; i++ {
							v[ci] += wcur(0, g, i) * at(o.first+i*Cin+ci)
						}
					}
					for i := 0; i < R; i++ {
						c += wcur(0, g, i) * at(o.firstB+i)
					}
				} else {
					for i := 0; i < R; i++ {
						v[i] = a * wcur(l, g, i)
					}
					for i := 0; i < R; i++ {
						c := a * wcur(l, g, i)
						for h := 0; h < H; h++ {
							v[R+h] += c * wr(l-1, i, h)
						}
					}
					for i := 0; i < R; i++ {
						c += a * wcur(l, g, i) * at(o.rsB[l-1]+i)
					}
				}
				cst[len(cst)-1] = c
			}
			for i := 0; i < R; i++ {
				v := row()
				if l == 0 {
					for ci := 0; ci < Cin; ci++ {
						v[ci] = at(o.first + i*Cin + ci)
					}
					cst[len(cst)-1] = at(o.firstB + i)
				} else {
					v[i] = a
					for h := 0; h < H; h++ {
						v[R+h] = a * wr(l-1, i, h)
					}
					cst[len(cst)-1] = a * at(o.rsB[l-1]+i)
				}
			}
		}
		if r >= 1 && r <= L {
			for s := 0; s < S; s++ {
				v := row()
				for h := 0; h < H; h++ {
					v[R+h] = ws(r-1, s, h)
				}
				if r == 1 {
					cst[len(cst)-1] = float64(p.skipBias[s])
				}
			}
		}
		if r == L+1 || r == L+2 {
			n, wOff, bOff := S, o.last1, o.last1B
			if r == L+2 {
				n, wOff, bOff = O, o.last2, o.last2B
			}
			for i := 0; i < n; i++ {
				v := row()
				for k := 0; k < S; k++ {
					v[k] = at(wOff + i*S + k)
				}
				cst[len(cst)-1] = at(bOff + i)
			}
		}
		e := fusedHeader + r*fusedPerRound
		tab[e+0] = len(fw)
		for _, v := range rows {
			for _, x := range v {
				fw = append(fw, float32(x))
			}
		}
		tab[e+1] = len(fw)
		for _, x := range cst {
			fw = append(fw, float32(x))
		}
		tab[e+2] = len(fw)
		if r < L && K > 1 {
			for g := 0; g < G; g++ {
				fw = append(fw, w[o.conv[r]+g*K*R:o.conv[r]+g*K*R+(K-1)*R]...)
			}
		}
		tab[e+3] = flen
		if r >= 1 {
			tab[e+4], tab[e+5] = region(min(r-1, L+1))
		}
		if r <= L+1 {
			tab[e+6], tab[e+7] = region(r)
		}
		if r < L {
			tab[e+8], tab[e+9], tab[e+10] = ringOff[r], p.dil[r], (K-1)*p.dil[r]
		}
	}
	return fw, tab
}

// fusedLaunch queues wf_step for st's slots.
func (g *GPUGenerator) fusedLaunch(st *gpuState) {
	f, p := g.fused, g.plan
	g.mod.Launch("wf_step", f.nb, f.block, 4*f.shared*st.B, whole(f.w), whole(f.tab), whole(st.xch), whole(st.ring), whole(st.proj), whole(st.enc),
		whole(st.out), whole(st.tbuf), whole(st.status), compute.Int(st.B), compute.Float(p.skipNorm))
}
