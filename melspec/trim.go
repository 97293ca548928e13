package melspec

import (
	"fmt"
	"math"
)

// PadMode selects how Trim's centred RMS frames are padded at the edges.
type PadMode int

const (
	// PadConstant pads with zeros: librosa.feature.rms default since 0.10.
	PadConstant PadMode = iota
	// PadReflect mirrors the signal: the librosa <= 0.9 default, for
	// reproducing older preprocessed datasets.
	PadReflect
)

// TrimConfig holds the librosa.effects.trim parameters.
type TrimConfig struct {
	TopDB       float64 // frames quieter than max - TopDB dB are silence
	FrameLength int     // RMS frame length in samples
	HopLength   int     // RMS hop in samples
	Pad         PadMode
}

// DefaultTrimConfig is the reference recipe: top_db 60, frames of 2048 with
// hop 512, zero padding (librosa >= 0.10).
func DefaultTrimConfig() TrimConfig {
	return TrimConfig{TopDB: 60, FrameLength: 2048, HopLength: 512, Pad: PadConstant}
}

// Trim removes leading and trailing silence with librosa.effects.trim
// semantics and returns the kept slice of y (sharing its memory) and its
// bounds, y[start:end]. Frame RMS is taken over centred frames (padding of
// FrameLength/2 each side), converted to dB against the loudest frame with
// amin 1e-5 in amplitude; frames above -TopDB are non-silent. start is the
// first such frame times HopLength, end is (last+1) times HopLength clipped
// to len(y). As in librosa, an all-zero signal is kept whole (every frame is
// 0 dB relative to a zero reference); only TopDB <= 0 can return empty.
func Trim(y []float32, c TrimConfig) (kept []float32, start, end int, err error) {
	if c.FrameLength <= 0 || c.HopLength <= 0 {
		return nil, 0, 0, fmt.Errorf("melspec: trim frame length %d and hop %d must be positive", c.FrameLength, c.HopLength)
	}
	if len(y) == 0 {
		return y, 0, 0, nil
	}
	rms := FrameRMS(y, c.FrameLength, c.HopLength, c.Pad)
	const amin = 1e-5
	ref := 0.0
	for _, v := range rms {
		ref = math.Max(ref, v)
	}
	refDB := 20 * math.Log10(math.Max(amin, ref))
	first, last := -1, -1
	for i, v := range rms {
		if 20*math.Log10(math.Max(amin, v))-refDB > -c.TopDB {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return y[:0], 0, 0, nil
	}
	start = first * c.HopLength
	end = min(len(y), (last+1)*c.HopLength)
	return y[start:end], start, end, nil
}

// FrameRMS is librosa.feature.rms(y, frame_length, hop_length, center=True)
// computed in float64: sqrt(mean(frame^2)) over frames of the signal padded
// by frameLength/2 on both sides; 1 + (len(y) + 2*(frameLength/2) -
// frameLength)/hop frames.
func FrameRMS(y []float32, frameLength, hop int, pad PadMode) []float64 {
	n := len(y)
	p := frameLength / 2
	padded := n + 2*p
	if n == 0 || padded < frameLength {
		return nil
	}
	frames := 1 + (padded-frameLength)/hop
	out := make([]float64, frames)
	for t := range out {
		var acc float64
		for k := 0; k < frameLength; k++ {
			j := t*hop + k - p
			if j < 0 || j >= n {
				if pad == PadConstant {
					continue
				}
				j = reflect(j, n)
			}
			v := float64(y[j])
			acc += v * v
		}
		out[t] = math.Sqrt(acc / float64(frameLength))
	}
	return out
}
