package listening

import (
	"math"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/audio"
)

// The 48 kHz coefficients tabulated in ITU-R BS.1770-4 (Tables 1 and 2).
func TestKWeightingReproducesStandardTable(t *testing.T) {
	shelf, hp := KWeighting(48000)
	check := func(what string, got, want float64) {
		if math.Abs(got-want) > 1e-8 {
			t.Errorf("%s = %.14f, standard %.14f", what, got, want)
		}
	}
	check("shelf b0", shelf.B0, 1.53512485958697)
	check("shelf b1", shelf.B1, -2.69169618940638)
	check("shelf b2", shelf.B2, 1.19839281085285)
	check("shelf a1", shelf.A1, -1.69065929318241)
	check("shelf a2", shelf.A2, 0.73248077421585)
	check("hp b0", hp.B0, 1)
	check("hp b1", hp.B1, -2)
	check("hp b2", hp.B2, 1)
	check("hp a1", hp.A1, -1.99004745483398)
	check("hp a2", hp.A2, 0.99007225036621)
}

func sineAt(fs, f, amp, seconds float64) []float32 {
	y := make([]float32, int(fs*seconds))
	for i := range y {
		y[i] = float32(amp * math.Sin(2*math.Pi*f*float64(i)/fs))
	}
	return y
}

// A 1 kHz sine at -20 dBFS peak reads -23.01 LUFS (0 dBFS reads -3.01: the
// -0.691 offset cancels the K-weighting's +0.691 dB at 1 kHz), at the
// standard's rate and at ours.
func TestLoudnessOfSine(t *testing.T) {
	for _, fs := range []float64{48000, 22050} {
		for _, c := range []struct{ amp, want float64 }{{0.1, -23.01}, {1, -3.01}} {
			got, err := Loudness(sineAt(fs, 1000, c.amp, 5), fs)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(got-c.want) > 0.1 {
				t.Errorf("%g Hz, amplitude %g: %.3f LUFS, want %.2f", fs, c.amp, got, c.want)
			}
		}
	}
}

// Gating: appended digital silence is below the absolute gate and leaves the
// loudness (nearly) unchanged, while a quiet tail 20 dB down falls under the
// relative gate, where a plain average over all blocks would have lowered it
// by about 3 dB.
func TestLoudnessGating(t *testing.T) {
	fs := 22050.0
	tone := sineAt(fs, 1000, 0.1, 4)
	ref, _ := Loudness(tone, fs)
	withSilence := append(append([]float32{}, tone...), make([]float32, int(4*fs))...)
	l, _ := Loudness(withSilence, fs)
	// Blocks straddling the edge are partly silent: 3 of them pass the
	// relative gate and pull the value down a little.
	if math.Abs(l-ref) > 0.3 {
		t.Errorf("with silence %.3f LUFS, alone %.3f", l, ref)
	}
	quiet := sineAt(fs, 1000, 0.01, 4)
	l2, _ := Loudness(append(append([]float32{}, tone...), quiet...), fs)
	if math.Abs(l2-ref) > 0.3 {
		t.Errorf("with a -20 dB tail %.3f LUFS, alone %.3f", l2, ref)
	}
	if l, err := Loudness(make([]float32, int(fs)), fs); err != nil || !math.IsInf(l, -1) {
		t.Errorf("silence: %g, %v; want -Inf", l, err)
	}
	if _, err := Loudness(make([]float32, 100), fs); err == nil {
		t.Error("a signal shorter than a block was accepted")
	}
}

func TestNormalize(t *testing.T) {
	fs := 22050.0
	y := sineAt(fs, 440, 0.5, 3)
	out, _, err := Normalize(y, fs, -23)
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := Loudness(out, fs); math.Abs(l+23) > 1e-6 {
		t.Errorf("after normalising: %g LUFS, want -23", l)
	}
	if _, _, err := Normalize(y, fs, 0); err == nil {
		t.Error("a gain that clips was accepted")
	}
	if _, _, err := Normalize(make([]float32, int(fs)), fs, -23); err == nil {
		t.Error("silence was normalised")
	}
}

// An independent numpy/scipy implementation (the standard's tabulated 48 kHz
// coefficients through scipy.signal.lfilter, gating written out with numpy)
// on a signal with loud, quiet and silent stretches, which exercises both
// gates.
func TestLoudnessMatchesNumpy(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import numpy, scipy.signal").Run(); err != nil {
		t.Skip("skipping the numpy cross-check: /usr/bin/python3 with numpy and scipy not available")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "x.npy")
	script := `
import sys, numpy as np
from scipy.signal import lfilter
fs = 48000
rng = np.random.default_rng(5)
n = 7 * fs
t = np.arange(n) / fs
env = np.where(t < 2, 0.3, np.where(t < 3.5, 0.02, np.where(t < 4.5, 0.0, 0.15 * (1 + np.sin(2 * np.pi * 0.7 * t)))))
x = (env * rng.standard_normal(n)).astype(np.float32)
np.save(sys.argv[1], x)
y = lfilter([1.53512485958697, -2.69169618940638, 1.19839281085285], [1.0, -1.69065929318241, 0.73248077421585], x.astype(np.float64))
y = lfilter([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621], y)
blk, step = int(0.4 * fs), int(0.1 * fs)
z = np.array([np.mean(y[j:j + blk] ** 2) for j in range(0, len(y) - blk + 1, step)])
l = -0.691 + 10 * np.log10(z)
z1 = z[l > -70]
gate = -0.691 + 10 * np.log10(z1.mean()) - 10
z2 = z[(l > -70) & (l > gate)]
print(repr(-0.691 + 10 * np.log10(z2.mean())))
`
	out, err := exec.Command(py, "-c", script, path).Output()
	if err != nil {
		t.Fatalf("numpy reference: %v", err)
	}
	want, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil {
		t.Fatal(err)
	}
	x, _, err := audio.ReadNPY(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Loudness(x, 48000)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(got-want) > 1e-4 {
		t.Errorf("loudness %.6f LUFS, numpy %.6f", got, want)
	}
}

func BenchmarkLoudness10s(b *testing.B) {
	y := sineAt(22050, 440, 0.3, 10)
	for i := 0; i < b.N; i++ {
		Loudness(y, 22050)
	}
}
