package evaluate

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/wavecat/wavecat/compute/cpu"
	"github.com/wavecat/wavecat/ljspeech"
	"github.com/wavecat/wavecat/outputs"
	"github.com/wavecat/wavecat/wavenet"
)

func randomUtterance(rng *rand.Rand, frames, hop, cin, pad int) *ljspeech.Utterance {
	u := &ljspeech.Utterance{ID: "LJ000-0001", Frames: frames, Cin: cin, CinPad: pad}
	u.Wave = make([]float32, frames*hop)
	for i := range u.Wave {
		u.Wave[i] = float32(0.5 * math.Sin(float64(i)*0.3) * (0.5 + 0.5*rng.Float64()))
	}
	u.Mel = make([]float32, cin*(frames+2*pad))
	for i := range u.Mel {
		u.Mel[i] = float32(rng.NormFloat64())
	}
	return u
}

// The chunked pass must give what one Forward over the whole utterance gives,
// with the input at t the previous sample (0 at t = 0), for a scalar-input and
// a one-hot-input head.
func TestTeacherForcedBitsMatchesOnePass(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(9, 9))
	for _, spec := range []string{"gaussian", "mulaw --bins 16", "adacat --components 4 --lambda 0.001"} {
		head, err := outputs.New(spec)
		if err != nil {
			t.Fatal(err)
		}
		cfg := wavenet.TinyConfig(head.Channels(), head.InputChannels(), 6)
		m, err := wavenet.New(cfg, be, 3)
		if err != nil {
			t.Fatal(err)
		}
		hop, F := cfg.HopSize(), 23
		utt := randomUtterance(rng, F, hop, cfg.CinChannels, cfg.CinPad)

		T := F * hop
		ws, err := m.NewWorkspace(1, T)
		if err != nil {
			t.Fatal(err)
		}
		Q := head.InputChannels()
		x := make([]float32, Q*T)
		enc := make([]float32, Q)
		for tt := 0; tt < T; tt++ {
			var prev float32
			if tt > 0 {
				prev = utt.Wave[tt-1]
			}
			head.EncodeInput(prev, enc)
			for q := range enc {
				x[q*T+tt] = enc[q]
			}
		}
		be.Upload(ws.X(), x)
		be.Upload(ws.Mel(), utt.Mel)
		logits := make([]float32, head.Channels()*T)
		be.Download(logits, m.Forward(ws, ws.X(), ws.Mel()))
		want := make([]float64, T)
		head.Bits(logits, T, T, utt.Wave, want)
		ws.Free()

		for _, chunk := range []int{1, 3, 7, 100} {
			got, err := TeacherForcedBits(m, head, utt, BitsOptions{ChunkFrames: chunk})
			if err != nil {
				t.Fatal(err)
			}
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-3*(1+math.Abs(want[i])) {
					t.Fatalf("%s chunk %d: sample %d: %g bits, one pass %g", spec, chunk, i, got[i], want[i])
				}
			}
		}
		bad := *utt
		bad.Wave = bad.Wave[:len(bad.Wave)-1]
		if _, err := TeacherForcedBits(m, head, &bad, BitsOptions{}); err == nil {
			t.Errorf("%s: wave/frames mismatch accepted", spec)
		}
		m.Free()
	}
}

func TestMeanSE(t *testing.T) {
	// 2, 4, 6: mean 4, s = 2, se = 2/sqrt(3).
	m, se := MeanSE([]float64{2, 4, 6})
	if m != 4 || math.Abs(se-2/math.Sqrt(3)) > 1e-15 {
		t.Errorf("MeanSE = %g, %g; want 4, %g", m, se, 2/math.Sqrt(3))
	}
	if m, se := MeanSE([]float64{5}); m != 5 || se != 0 {
		t.Errorf("single value: %g, %g", m, se)
	}
}

// Model scores every utterance, hands synthesis batches of SynthBatch and
// matches each returned waveform to its utterance (a perfect synthesiser
// scores MCD 0 and L1 0 on every one, including across batch boundaries).
func TestModelBatchesSynthesis(t *testing.T) {
	be, err := cpu.New(cpu.Options{})
	if err != nil {
		t.Fatal(err)
	}
	head, _ := outputs.New("gaussian")
	cfg := wavenet.TinyConfig(head.Channels(), head.InputChannels(), 5)
	m, err := wavenet.New(cfg, be, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	rng := rand.New(rand.NewPCG(6, 6))
	utts := map[string]*ljspeech.Utterance{}
	var ids []string
	byFrames := map[int][]float32{}
	for i, f := range []int{2400, 2600, 2800, 3000, 3200} { // 0.4-0.6 s at hop 4
		u := randomUtterance(rng, f, cfg.HopSize(), cfg.CinChannels, cfg.CinPad)
		u.ID = fmt.Sprintf("u%d", i)
		utts[u.ID], byFrames[f] = u, u.Wave
		ids = append(ids, u.ID)
	}
	var calls []int
	syn := func(mels [][]float32, frames []int) ([][]float32, error) {
		calls = append(calls, len(mels))
		out := make([][]float32, len(frames))
		for i, f := range frames {
			out[i] = byFrames[f]
		}
		return out, nil
	}
	p := ljspeech.DefaultParams()
	p.Mel.Hop = cfg.HopSize()
	row, err := Model(m, head, ids, func(id string) (*ljspeech.Utterance, error) { return utts[id], nil },
		Options{Synthesize: syn, SynthBatch: 2, MCep: DefaultMCepConfig(), Preprocess: p})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(calls) != "[2 2 1]" {
		t.Errorf("synthesis batches %v, want [2 2 1]", calls)
	}
	if len(row.PerUtt) != 5 || row.MCD == nil || row.MCD.Mean != 0 || row.LogMelL1.Mean != 0 {
		t.Fatalf("row %+v", row)
	}
	for i, u := range row.PerUtt {
		if u.ID != ids[i] || u.MCD == nil || *u.MCD != 0 || u.Samples != len(utts[u.ID].Wave) {
			t.Errorf("utterance %d: %+v", i, u)
		}
	}
	// The quality measures of a perfect synthesis (the log-mel L1 of speech
	// frames needs the 256-sample mel grid; this mel's hop is 4).
	if q := row.Quality; q == nil || q.BandMCD.Mean != 0 || q.LevelDiffDB.Mean != 0 || q.VoicingAgreement.Mean != 1 || !math.IsNaN(q.LogMelL1Speech.Mean) {
		t.Errorf("quality of a perfect synthesis: %+v", row.Quality)
	}
}
