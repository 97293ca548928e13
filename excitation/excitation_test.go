package excitation

import (
	"math"
	"testing"

	"github.com/wavecat/wavecat/melspec"
)

// harmonicTone is a 10-harmonic tone at f0 Hz with a falling spectrum, the
// shape of a voiced vowel, between silence.
func harmonicTone(f0 float64, sr, n, on, off int) []float32 {
	y := make([]float32, n)
	for t := on; t < off; t++ {
		var s float64
		for h := 1; h <= 10; h++ {
			s += math.Sin(2*math.Pi*f0*float64(h*t)/float64(sr)) / float64(h)
		}
		y[t] = float32(0.2 * s)
	}
	return y
}

// TestTrackFromMelFindsPitch: the pitch read from a tone's mel (through
// Griffin-Lim) is the tone's, voiced where the tone sounds and unvoiced in
// the silence around it, for a low voice whose fundamental lies below the
// mel's 125 Hz floor and for a high one.
func TestTrackFromMelFindsPitch(t *testing.T) {
	cfg := melspec.DefaultConfig()
	ex, err := melspec.NewExtractor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	est, err := NewEstimator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sr := cfg.SampleRate
	n := sr
	on, off := n/4, 3*n/4
	for _, f0 := range []float64{95, 220} {
		y := harmonicTone(f0, sr, n, on, off)
		mel, frames := ex.Compute(y)
		tr, err := est.Track(mel, frames)
		if err != nil {
			t.Fatal(err)
		}
		var inside, voicedInside, outside, voicedOutside int
		for i, f := range tr.F0 {
			c := i * tr.Hop
			switch {
			case c > on+1024 && c < off-1024:
				inside++
				if f > 0 {
					voicedInside++
					if math.Abs(f/f0-1) > 0.02 {
						t.Errorf("f0 %g: frame %d tracked %.1f Hz", f0, i, f)
					}
				}
			case c < on-1024 || c > off+1024:
				outside++
				if f > 0 {
					voicedOutside++
				}
			}
		}
		if voicedInside < inside*9/10 {
			t.Errorf("f0 %g: %d of %d frames inside the tone voiced", f0, voicedInside, inside)
		}
		if voicedOutside != 0 {
			t.Errorf("f0 %g: %d of %d silent frames voiced", f0, voicedOutside, outside)
		}
	}
}

// TestFillIsOneSignal: the excitation of a crop equals the same samples of
// the whole utterance's (training crops and synthesis see one signal), its
// zero crossings come at F0, and it is silent where unvoiced.
func TestFillIsOneSignal(t *testing.T) {
	sr := 22050
	// 40 frames: unvoiced, a glide 100 -> 200 Hz, unvoiced.
	f0 := make([]float64, 40)
	for i := 8; i < 32; i++ {
		f0[i] = 100 + 100*float64(i-8)/23
	}
	tr := newTrack(f0, 256, sr)
	n := 40 * 256
	whole := tr.Signal(n)
	for _, start := range []int{0, 1, 255, 256, 3000, 7777} {
		m := min(1000, n-start)
		part := make([]float32, 2*m)
		tr.Fill(part, m, start, m)
		for k := 0; k < Channels; k++ {
			for j := 0; j < m; j++ {
				if d := math.Abs(float64(part[k*m+j] - whole[k*n+start+j])); d > 1e-5 {
					t.Fatalf("start %d: channel %d sample %d differs by %g", start, k, j, d)
				}
			}
		}
	}
	// Zero crossings (upward) of the sine channel over frames 12..14,
	// where F0 is about 117-126 Hz: periods of sr/F0 samples.
	var ups []int
	for s := 12 * 256; s < 15*256; s++ {
		if whole[s-1] < 0 && whole[s] >= 0 {
			ups = append(ups, s)
		}
	}
	if len(ups) < 3 {
		t.Fatalf("%d upward crossings", len(ups))
	}
	for i := 1; i < len(ups); i++ {
		mid := (ups[i] + ups[i-1]) / 2
		f, _ := tr.at(mid)
		want := float64(sr) / f
		if got := float64(ups[i] - ups[i-1]); math.Abs(got-want) > 1.5 {
			t.Errorf("period %g samples at sample %d, want %.1f", got, mid, want)
		}
	}
	for s := 0; s < 7*256; s++ {
		if whole[s] != 0 || whole[n+s] != 0 {
			t.Fatalf("unvoiced sample %d is %g, %g", s, whole[s], whole[n+s])
		}
	}
	// Voicing is the amplitude of the sine and cosine pair, 0 unvoiced.
	v := tr.Voicing(n)
	ramp := 0
	for s := range v {
		amp := math.Hypot(float64(whole[s]), float64(whole[n+s]))
		if math.Abs(float64(v[s])-amp) > 1e-5 {
			t.Fatalf("sample %d: voicing %g, excitation amplitude %g", s, v[s], amp)
		}
		if v[s] > 0 && v[s] < 1 {
			ramp++
		}
	}
	if v[0] != 0 || v[20*256] != 1 || ramp == 0 {
		t.Errorf("voicing %g unvoiced, %g voiced, %d samples ramping", v[0], v[20*256], ramp)
	}
}

// TestAlignToFollowsTheRecording: aligned to a recording whose fundamental
// leads the running phase by 0.7 rad (and carries a harmonic), the
// excitation's sine channel is that fundamental's phase.
func TestAlignToFollowsTheRecording(t *testing.T) {
	sr := 22050
	f0 := make([]float64, 40)
	for i := range f0 {
		f0[i] = 150 + float64(i)
	}
	tr := newTrack(f0, 256, sr)
	n := 40 * 256
	plain := tr.Signal(n)
	wave := make([]float32, n)
	for s := range wave {
		sn, cs := float64(plain[s]), float64(plain[n+s])
		fund := sn*math.Cos(0.7) + cs*math.Sin(0.7) // sin(phi + 0.7)
		sn2 := 2 * sn * cs                          // sin(2 phi)
		wave[s] = float32(0.5*fund + 0.2*sn2)
	}
	al := tr.AlignTo(wave).Signal(n)
	worst := 0.0
	for s := 4 * 256; s < 36*256; s++ {
		sn, cs := float64(plain[s]), float64(plain[n+s])
		want := sn*math.Cos(0.7) + cs*math.Sin(0.7)
		worst = max(worst, math.Abs(float64(al[s])-want))
	}
	if worst > 0.05 {
		t.Errorf("aligned sine differs from the recording's fundamental by up to %.3f", worst)
	}
}
