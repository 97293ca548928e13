package train

import "fmt"

// Spec places one named tensor inside a flat parameter buffer: elements
// [Offset, Offset+NumElements(Shape)). The model owns the table; checkpoints
// and the optimizer use it to turn flat buffers into named tensors and back.
type Spec struct {
	Name   string
	Shape  []int
	Offset int
}

// Pack lays tensors of the given names and shapes out contiguously in order
// and returns the table and the total element count.
func Pack(names []string, shapes [][]int) ([]Spec, int, error) {
	if len(names) != len(shapes) {
		return nil, 0, fmt.Errorf("pack: %d names for %d shapes", len(names), len(shapes))
	}
	out := make([]Spec, len(names))
	off := 0
	for i := range names {
		n := NumElements(shapes[i])
		if n < 0 {
			return nil, 0, fmt.Errorf("pack: tensor %q has invalid shape %v", names[i], shapes[i])
		}
		out[i] = Spec{Name: names[i], Shape: append([]int{}, shapes[i]...), Offset: off}
		off += n
	}
	return out, off, nil
}

func checkSpec(s Spec, flatLen int) (int, error) {
	n := NumElements(s.Shape)
	if n < 0 {
		return 0, fmt.Errorf("tensor %q has invalid shape %v", s.Name, s.Shape)
	}
	if s.Offset < 0 || s.Offset+n > flatLen {
		return 0, fmt.Errorf("tensor %q [%d,%d) lies outside a flat buffer of %d", s.Name, s.Offset, s.Offset+n, flatLen)
	}
	return n, nil
}

// Split copies each tensor of layout out of flat.
func Split(flat []float32, layout []Spec) ([]Tensor, error) {
	out := make([]Tensor, len(layout))
	for i, s := range layout {
		n, err := checkSpec(s, len(flat))
		if err != nil {
			return nil, err
		}
		out[i] = Tensor{Name: s.Name, Shape: append([]int{}, s.Shape...), Data: append([]float32{}, flat[s.Offset:s.Offset+n]...)}
	}
	return out, nil
}

// Join copies tensors into flat at their layout positions. The tensors must be
// exactly those of layout (any order), with the layout's shapes.
func Join(flat []float32, tensors []Tensor, layout []Spec) error {
	want := make(map[string][]int, len(layout))
	for _, s := range layout {
		want[s.Name] = s.Shape
	}
	if err := CheckTensors(tensors, want); err != nil {
		return err
	}
	by := make(map[string]Tensor, len(tensors))
	for _, t := range tensors {
		by[t.Name] = t
	}
	for _, s := range layout {
		n, err := checkSpec(s, len(flat))
		if err != nil {
			return err
		}
		t := by[s.Name]
		if len(t.Data) != n {
			return fmt.Errorf("tensor %q has %d elements, shape %v needs %d", s.Name, len(t.Data), s.Shape, n)
		}
		copy(flat[s.Offset:s.Offset+n], t.Data)
	}
	return nil
}
