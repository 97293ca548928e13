package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

// BenchmarkSynthesisAnchors measures wavecat's CPU synthesis against its two
// anchors in one run, alternating round by round so a loaded machine slows
// all of them alike: the C loop over OpenBLAS (bench/cloop, the roofline
// anchor: the same step as plain sgemv / sgemm calls, 1 OpenBLAS thread)
// and PyTorch (bench/pytorch/generate.py, 1 thread, its best setting), for
// batch 1 and batch 16 (the default, bit-identical to batch 1; --wide is
// the same computation where MulVecs runs in assembly). Each
// round runs every contender for about anchorSeconds (wavecat: whole
// Generate calls, PyTorch: 512 samples per utterance); the reported ratios
// are medians of the per-round ratios (wavecat / anchor), the rates medians
// too. Reference config, MoL head, 16-frame utterances (4,096 samples:
// wavecat's per-call buffers, 14 MB a slot touched for the first time, are
// in its time, the C loop's setup is not), conditioning included on both
// sides (the C loop's per-chunk projections; wavecat's upsampler too). Run with -benchtime 1x; rounds via
// WAVECAT_ANCHOR_ROUNDS (default 8: on a shared machine the load changes
// over seconds, so many short rounds beat a few long ones).
// Skips without gcc or libopenblas; PyTorch columns only where
// /usr/bin/python3 imports torch.
func BenchmarkSynthesisAnchors(b *testing.B) {
	if testing.Short() {
		b.Skip("anchor comparison skipped in -short")
	}
	cloop := filepath.Join(b.TempDir(), "cloop")
	if out, err := exec.Command("sh", "cloop/build.sh", cloop).CombinedOutput(); err != nil {
		b.Skipf("cannot build the C loop (gcc, libopenblas): %v\n%s", err, out)
	}
	torch := exec.Command(python, "-c", "import torch").Run() == nil
	rounds := 8
	if s := os.Getenv("WAVECAT_ANCHOR_ROUNDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			rounds = n
		}
	}
	be, err := cpu.New(cpu.Options{Threads: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer cpu.New(cpu.Options{})
	h, err := outputs.New("mol --mixtures 10 --levels 65536")
	if err != nil {
		b.Fatal(err)
	}
	m, err := wavenet.New(wavenet.ReferenceConfig(h.Channels(), h.InputChannels()), be, 1)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Free()
	g, err := wavenet.NewGenerator(m, h)
	if err != nil {
		b.Fatal(err)
	}
	defer g.Free()
	b.Logf("%s; MulVecs in assembly: %v; OPENBLAS_CORETYPE=%q", be.Describe(), cpu.MulVecsAccelerated(), os.Getenv("OPENBLAS_CORETYPE"))
	rng := rand.New(rand.NewPCG(1, 1))
	utts := make([]wavenet.Utterance, 16)
	for i := range utts {
		mel := make([]float32, 16*80)
		for j := range mel {
			mel[j] = float32(rng.NormFloat64())
		}
		utts[i] = wavenet.Utterance{Mel: mel, Seed: uint64(i)}
	}
	const anchorSeconds = 2
	wavecat := func(batch int, wide bool) float64 {
		samples, t0 := 0, time.Now()
		for time.Since(t0) < anchorSeconds*time.Second {
			outs, err := g.Generate(utts[:batch], wavenet.GenerateOptions{Batch: batch, Wide: wide})
			if err != nil {
				b.Fatal(err)
			}
			for _, o := range outs {
				samples += len(o)
			}
		}
		return float64(samples) / time.Since(t0).Seconds()
	}
	cLoop := func(args ...string) float64 {
		out, err := exec.Command(cloop, append(args, "--seconds", strconv.Itoa(anchorSeconds))...).Output()
		if err != nil {
			b.Fatalf("cloop %v: %v", args, err)
		}
		v, err := strconv.ParseFloat(strings.TrimPrefix(strings.TrimSpace(string(out)), "samples/s "), 64)
		if err != nil {
			b.Fatalf("cloop %v: output %q", args, out)
		}
		return v
	}
	pyTorch := func(batch int) float64 {
		if !torch {
			return 0
		}
		out, err := exec.Command(python, "pytorch/generate.py", "--batches", strconv.Itoa(batch),
			"--samples", "512", "--threads", "1").Output()
		if err != nil {
			b.Fatalf("generate.py: %v", err)
		}
		var r struct {
			SamplesPerS float64 `json:"samples_per_s"`
		}
		if err := json.Unmarshal(bytes.TrimSpace(out), &r); err != nil {
			b.Fatalf("generate.py output %q: %v", out, err)
		}
		return r.SamplesPerS
	}
	type row struct {
		name                string
		us, cl, pt          []float64
		run                 func() float64
		anchor, torchAnchor func() float64
	}
	rows := []*row{
		{name: "batch1", run: func() float64 { return wavecat(1, false) },
			anchor: func() float64 { return cLoop("--batch", "1") }, torchAnchor: func() float64 { return pyTorch(1) }},
		{name: "batch16", run: func() float64 { return wavecat(16, false) },
			anchor: func() float64 { return cLoop("--batch", "16", "--gemm") }, torchAnchor: func() float64 { return pyTorch(16) }},
	}
	for r := 0; r < rounds; r++ {
		for _, rw := range rows {
			us := rw.run()
			rw.us = append(rw.us, us)
			line := fmt.Sprintf("round %d %-8s wavecat %8.1f", r+1, rw.name, us)
			rw.cl = append(rw.cl, rw.anchor())
			line += fmt.Sprintf("  C loop %8.1f  x%.2f", rw.cl[r], us/rw.cl[r])
			if torch {
				rw.pt = append(rw.pt, rw.torchAnchor())
				line += fmt.Sprintf("  PyTorch %8.1f  x%.2f", rw.pt[r], us/rw.pt[r])
			}
			// Printed as it goes (b.Log keeps only a benchmark's first lines).
			fmt.Println(line)
		}
	}
	median := func(v []float64) float64 {
		s := slices.Clone(v)
		slices.Sort(s)
		if len(s)%2 == 1 {
			return s[len(s)/2]
		}
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	ratios := func(a, c []float64) []float64 {
		r := make([]float64, len(a))
		for i := range a {
			r[i] = a[i] / c[i]
		}
		return r
	}
	for _, rw := range rows {
		b.ReportMetric(median(rw.us), rw.name+"-samples/s")
		b.ReportMetric(median(rw.cl), rw.name+"-cloop-samples/s")
		b.ReportMetric(median(ratios(rw.us, rw.cl)), rw.name+"-x-cloop")
		if torch {
			b.ReportMetric(median(rw.pt), rw.name+"-pytorch-samples/s")
			b.ReportMetric(median(ratios(rw.us, rw.pt)), rw.name+"-x-pytorch")
		}
	}
}
