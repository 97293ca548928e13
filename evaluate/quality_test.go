package evaluate

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/wavecat/wavecat/audio"
	"github.com/wavecat/wavecat/melspec"
)

func qualityExtractor(t testing.TB) *melspec.Extractor {
	t.Helper()
	ex, err := melspec.NewExtractor(melspec.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	return ex
}

func TestQualitySelf(t *testing.T) {
	ref, _ := qualityPair()
	r, err := Quality(ref, ref, qsr, qualityExtractor(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.VoicingAgreement != 1 || r.GrossPitchError != 0 || r.F0RMSECents != 0 || r.BandMCD != 0 ||
		r.LevelDiffDB != 0 || r.LogMelL1Speech != 0 {
		t.Errorf("ref against itself: %+v; want agreement 1 and zero GPE, cents, band MCD, level diff, log-mel L1", r)
	}
	if r.SpeechFrames == 0 || r.VoicedBoth == 0 || r.VoicedBoth != r.VoicedRef {
		t.Errorf("ref against itself: %d speech, %d voiced in ref, %d in both; want every voiced frame shared", r.SpeechFrames, r.VoicedRef, r.VoicedBoth)
	}
	// The designed reference has an unvoiced noise burst and quiet edges.
	if r.VoicedRef >= r.SpeechFrames || r.SpeechFrames >= r.Frames {
		t.Errorf("frames %d, speech %d, voiced %d: want frames > speech > voiced", r.Frames, r.SpeechFrames, r.VoicedRef)
	}
}

func TestQualityPitchShiftIsGross(t *testing.T) {
	vib := func(base float64) func(float64) float64 {
		return func(t float64) float64 { return base * (1 + 0.02*math.Sin(2*math.Pi*5*t)) }
	}
	ref := qualityTone(qsr, vib(140), qualityConst(0.3))
	test := qualityTone(qsr, vib(210), qualityConst(0.3))
	r, err := Quality(ref, test, qsr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.GrossPitchError != 1 || !math.IsNaN(r.F0RMSECents) || r.VoicedBoth < r.Frames-4 {
		t.Errorf("1.5x pitch: GPE %g, cents %g, %d of %d frames voiced in both; want GPE 1, cents NaN, all but the edges voiced",
			r.GrossPitchError, r.F0RMSECents, r.VoicedBoth, r.Frames)
	}
	// +2% (34.3 cents) is not gross and shows up in the RMSE.
	test = qualityTone(qsr, vib(140*1.02), qualityConst(0.3))
	r, err = Quality(ref, test, qsr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1200 * math.Log2(1.02); r.GrossPitchError != 0 || math.Abs(r.F0RMSECents-want) > 1 {
		t.Errorf("+2%% pitch: GPE %g, F0 RMSE %.2f cents; want 0 and %.2f", r.GrossPitchError, r.F0RMSECents, want)
	}
}

// Energy above BandHiHz is invisible to the band MCD but not to the
// full-band MCD; energy inside the band is seen by both.
func TestBandMCDIgnoresOutOfBandEnergy(t *testing.T) {
	ref, _ := qualityPair()
	ref = ref[:qsr+qsr/2]
	add := func(hz ...float64) []float32 {
		y := make([]float32, len(ref))
		for i := range y {
			v := float64(ref[i])
			for _, f := range hz {
				v += 0.03 * math.Sin(2*math.Pi*f*float64(i)/qsr)
			}
			y[i] = float32(v)
		}
		return y
	}
	high := add(8300, 9100, 10000)
	inBand := add(2500)
	r, err := Quality(ref, high, qsr, nil)
	if err != nil {
		t.Fatal(err)
	}
	full, err := MCD(ref, high, DefaultMCepConfig())
	if err != nil {
		t.Fatal(err)
	}
	r2, err := Quality(ref, inBand, qsr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tones above 7.6 kHz: band MCD %.4f dB, full-band MCD %.3f dB; a 2.5 kHz tone: band MCD %.3f dB", r.BandMCD, full, r2.BandMCD)
	if r.BandMCD > 0.02 || full < 1 || r2.BandMCD < 0.5 {
		t.Errorf("band MCD %g dB (want < 0.02), full-band MCD %g dB (want > 1), in-band tone band MCD %g (want > 0.5)", r.BandMCD, full, r2.BandMCD)
	}
}

func TestQualityLevelClipDC(t *testing.T) {
	ref, _ := qualityPair()
	half := make([]float32, len(ref))
	for i, v := range ref {
		half[i] = 0.5 * v
	}
	r, err := Quality(ref, half, qsr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := 20 * math.Log10(0.5); math.Abs(r.LevelDiffDB-want) > 1e-9 {
		t.Errorf("x0.5: level diff %.6f dB, want %.6f", r.LevelDiffDB, want)
	}
	if r.VoicingAgreement != 1 || r.GrossPitchError != 0 || r.F0RMSECents != 0 {
		t.Errorf("x0.5: agreement %g, GPE %g, cents %g; want 1, 0, 0 (voicing is scale-free)", r.VoicingAgreement, r.GrossPitchError, r.F0RMSECents)
	}
	// A gain is not invisible to the band MCD: it moves the in-band log
	// spectrum by ln(0.5) but not the shared constant outside the band, so
	// every frame's log-spectral difference is ln(0.5) times the band's
	// indicator, whose mel-cepstrum has c1..c24 != 0.
	cfg := DefaultMCepConfig()
	diff := make([]float64, cfg.FFTSize/2+1)
	for k := range diff {
		if hz := float64(k) * qsr / float64(cfg.FFTSize); hz >= BandLoHz && hz <= BandHiHz {
			diff[k] = math.Log(0.5)
		}
	}
	c := Freqt(MinPhaseCepstrum(diff, cfg.FFTSize/2), cfg.Order, cfg.Alpha)
	want := 10 / math.Ln10 * math.Sqrt(2) * CepDistance(c, make([]float64, len(c)))
	t.Logf("x0.5: band MCD %.6f dB, predicted from the band's indicator %.6f dB", r.BandMCD, want)
	if math.Abs(r.BandMCD-want) > 1e-9 {
		t.Errorf("x0.5: band MCD %.9f dB, want %.9f", r.BandMCD, want)
	}

	// Clipping: the samples the 16-bit WAV encoder saturates, including the
	// rounding edges either side of the thresholds (7 of the 10 edges do:
	// +-1, beyond, 32766.5/32768, 32767/32768 and -32767.5/32768).
	edges := []float32{1, -1, 32766.5 / 32768, math.Nextafter32(32766.5/32768, 0),
		-32767.5 / 32768, math.Nextafter32(-32767.5/32768, 0), 1.5, -2, 0.25, 32767.0 / 32768}
	test := make([]float32, len(ref))
	for i := range test {
		test[i] = 0.1 + 0.01*float32(math.Sin(float64(i)))
	}
	for i, v := range edges {
		test[1000*i] = v
	}
	var buf bytes.Buffer
	if err := audio.EncodeWAV16(&buf, test, qsr, 1); err != nil {
		t.Fatal(err)
	}
	pcm := buf.Bytes()[buf.Len()-2*len(test):]
	var saturated int
	var sum float64
	for i := range test {
		s := int16(binary.LittleEndian.Uint16(pcm[2*i:]))
		if s == 32767 || s == -32768 {
			saturated++
		}
		sum += float64(test[i])
	}
	r, err = Quality(ref, test, qsr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := float64(saturated) / float64(len(test)); r.ClippedFraction != want || saturated != 7 {
		t.Errorf("clipped fraction %g, the WAV encoder saturates %d samples (%g); want 7", r.ClippedFraction, saturated, want)
	}
	if want := sum / float64(len(test)); math.Abs(r.DCOffset-want) > 1e-12 || math.Abs(r.DCOffset-0.1) > 1e-3 {
		t.Errorf("DC offset %g, want %g", r.DCOffset, want)
	}
}

func TestSpeechFramesFortyDB(t *testing.T) {
	// Three 0.5 s stretches of the same tone at 0, -30 and -50 dB.
	n := qsr / 2
	y := qualityTone(3*n, qualityConst(150), qualityConst(0.3))
	for i := n; i < 3*n; i++ {
		g := math.Pow(10, -30.0/20)
		if i >= 2*n {
			g = math.Pow(10, -50.0/20)
		}
		y[i] *= float32(g)
	}
	sp := SpeechFrames(y)
	mid := func(s int) int { return (s + n/2) / QualityHop }
	if !sp[mid(0)] || !sp[mid(n)] || sp[mid(2*n)] {
		t.Errorf("speech at 0/-30/-50 dB: %v %v %v, want true true false", sp[mid(0)], sp[mid(n)], sp[mid(2*n)])
	}
	if got := SpeechFrames(make([]float32, 1000)); len(got) != 4 || got[0] || got[3] {
		t.Errorf("silence: speech frames %v, want 4 false", got)
	}
}

func TestQualityErrors(t *testing.T) {
	y := make([]float32, 5000)
	ex := qualityExtractor(t)
	for _, c := range []struct {
		name      string
		ref, test []float32
		sr        int
		ex        *melspec.Extractor
		want      string
	}{
		{"empty ref", nil, y, qsr, ex, "empty"},
		{"empty test", y, y[:0], qsr, ex, "empty"},
		{"zero rate", y, y, 0, nil, "sample rate"},
		{"rate too high", y, y, 96000, nil, "sample rate"},
		{"extractor rate", y, y, 16000, ex, "22050 Hz"},
	} {
		if _, err := Quality(c.ref, c.test, c.sr, c.ex); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	cfg := melspec.DefaultConfig()
	cfg.Hop = 275
	ex2, err := melspec.NewExtractor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Quality(y, y, qsr, ex2); err == nil || !strings.Contains(err.Error(), "hop") {
		t.Errorf("hop-275 extractor: error %v, want a hop mismatch", err)
	}
}

// A silent reference has no speech frames: the frame measures are NaN and
// the report still encodes (as null) and decodes (as NaN).
func TestQualityReportJSONNaN(t *testing.T) {
	ref := make([]float32, 3000)
	test := qualityTone(3000, qualityConst(200), qualityConst(0.1))
	r, err := Quality(ref, test, qsr, qualityExtractor(t))
	if err != nil {
		t.Fatal(err)
	}
	if r.SpeechFrames != 0 || !math.IsNaN(r.VoicingAgreement) || !math.IsNaN(r.BandMCD) || !math.IsNaN(r.LogMelL1Speech) {
		t.Errorf("silent ref: %+v; want no speech frames and NaN frame measures", r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"band_mcd_db":null`) || !strings.HasPrefix(string(b), `{"voicing_agreement":null,`) {
		t.Errorf("JSON %s: want null for NaN measures, fields in struct order", b)
	}
	var back QualityReport
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(back.BandMCD) || back.LevelDiffDB != r.LevelDiffDB || back.Frames != r.Frames {
		t.Errorf("round trip: %+v, want %+v", back, r)
	}
}

// TestQuality5sTiming reports the cost of Quality on a 5 s clip (two pitch
// tracks, two band mel-cepstra, two log-mels).
func BenchmarkQuality5s(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 9))
	ref := speechLike(5*qsr, rng)
	test := make([]float32, len(ref))
	for i, v := range ref {
		test[i] = v + float32(0.01*rng.NormFloat64())
	}
	ex := qualityExtractor(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Quality(ref, test, qsr, ex); err != nil {
			b.Fatal(err)
		}
	}
}

// TestStatJSON: a Stat with no value (NaN) is written as null and read
// back as NaN, so a table with an empty measure still encodes; finite
// values round-trip.
func TestStatJSON(t *testing.T) {
	b, err := json.Marshal(QualityStats{GrossPitchError: Stat{math.NaN(), math.NaN()}, LevelDiffDB: Stat{-6.5, 0.25}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"gross_pitch_error":{"mean":null,"se":null}`) || !strings.Contains(string(b), `"level_diff_db":{"mean":-6.5,"se":0.25}`) {
		t.Fatalf("encoded %s", b)
	}
	var q QualityStats
	if err := json.Unmarshal(b, &q); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(q.GrossPitchError.Mean) || !math.IsNaN(q.GrossPitchError.SE) || q.LevelDiffDB != (Stat{-6.5, 0.25}) {
		t.Errorf("decoded %+v", q)
	}
	md := Markdown([]Row{{Checkpoint: "x", Utterances: 1, Quality: &q}})
	if !strings.Contains(md, "| - |") || strings.Contains(md, "NaN") || !strings.Contains(md, "-6.5 ± 0.2") {
		t.Errorf("markdown:\n%s", md)
	}
}
