package train

import (
	"fmt"
	"io"
	"slices"

	"github.com/wavecat/wavecat/wavenet"
)

// initFrom loads the weights of checkpoint path (its EMA weights when it
// has them) into m. Every tensor of m must exist in the checkpoint with the
// same shape, except first_conv's input axis, which may have grown: a model
// that adds excitation channels to a trained one starts with zero weights
// on them, so at step 0 it computes exactly what the trained model did
// (with weight norm, zero columns leave the norm g/||v|| unchanged).
func initFrom(m *wavenet.Model, path string, log io.Writer) error {
	dir, err := ResolveCheckpoint(path)
	if err != nil {
		return err
	}
	ck, err := Load(dir)
	if err != nil {
		return err
	}
	src, which := ck.EMA, "EMA"
	if src == nil {
		src, which = ck.Weights, "raw"
	}
	byName := map[string]Tensor{}
	for _, t := range src {
		byName[t.Name] = t
	}
	own := m.ExportTensors()
	grown := 0
	for i, t := range own {
		s, ok := byName[t.Name]
		switch {
		case !ok:
			return fmt.Errorf("%s has no tensor %s", dir, t.Name)
		case slices.Equal(s.Shape, t.Shape):
			own[i].Data = s.Data
		case isFirstConv(t.Name) && len(t.Shape) == 3 && len(s.Shape) == 3 &&
			s.Shape[0] == t.Shape[0] && s.Shape[2] == t.Shape[2] && s.Shape[1] < t.Shape[1]:
			// [out][in][1]: copy the old input columns, zero the new ones.
			out, in, oldIn := t.Shape[0], t.Shape[1], s.Shape[1]
			d := make([]float32, len(t.Data))
			for o := 0; o < out; o++ {
				copy(d[o*in:o*in+oldIn], s.Data[o*oldIn:(o+1)*oldIn])
			}
			own[i].Data = d
			grown++
		default:
			return fmt.Errorf("%s: tensor %s has shape %v, the model wants %v", dir, t.Name, s.Shape, t.Shape)
		}
	}
	if err := m.ImportTensors(own); err != nil {
		return err
	}
	fmt.Fprintf(log, "train: weights from %s (%s weights, step %d); %d tensor(s) grown with zero inputs\n", dir, which, ck.Config.Step, grown)
	return nil
}

func isFirstConv(name string) bool {
	return name == "first_conv.weight" || name == "first_conv.weight_v"
}
