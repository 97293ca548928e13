package wavenet

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// havePyTorch reports whether /usr/bin/python3 with torch is available.
func havePyTorch(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		t.Skip("skipping: /usr/bin/python3 not found (needed for the PyTorch reference)")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import torch").Run(); err != nil {
		t.Skip("skipping: python3 module torch not available (apt install python3-torch)")
	}
}

// TestMatchesPyTorch builds an independent PyTorch module tree with r9y9's
// structure and names (bench/pytorch/wavenet_ref.py, driven by
// testdata/torch_ref.py), loads our exported tensors
// with load_state_dict(strict=True) — so every name, shape and the
// tap-major <-> [out][in][K] conversion must be right — and compares the
// output, every parameter gradient and the mel gradient from autograd in
// float64 with the model on the float64 reference backend.
func TestMatchesPyTorch(t *testing.T) {
	havePyTorch(t)
	cases := []struct {
		name string
		cfg  Config
		B, T int
	}{
		{"scalar_k3_wn", smallConfig(1, 3, true), 2, 24},
		{"onehot_k2_plain", smallConfig(5, 2, false), 2, 18},
	}
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newGradFixture(t, tc.cfg, tc.B, tc.T, uint64(300+ci))
			// Round the parameters to float32 so both sides see the same values.
			ts := f.m.ExportTensors()
			if err := f.m.ImportTensors(ts); err != nil {
				t.Fatal(err)
			}
			f.analytic()
			nx := tc.B * tc.cfg.InputChannels * tc.T
			nm := tc.B * tc.cfg.CinChannels * (tc.T/tc.cfg.HopSize() + 2*tc.cfg.CinPad)
			no := tc.B * tc.cfg.OutChannels * tc.T
			// float64 copies: encoding/json writes float32 in its shortest
			// float32 form, which Python would read as a different float64.
			type t64 struct {
				Name  string
				Shape []int
				Data  []float64
			}
			jts := make([]t64, len(ts))
			for i, tt := range ts {
				jts[i] = t64{Name: tt.Name, Shape: tt.Shape, Data: make([]float64, len(tt.Data))}
				for j, v := range tt.Data {
					jts[i].Data[j] = float64(v)
				}
			}
			job := map[string]any{
				"config": tc.cfg, "tensors": jts, "B": tc.B, "T": tc.T,
				"x": f64(f.x)[:nx], "mel": f64(f.mel)[:nm], "r": f.r,
			}
			dir := t.TempDir()
			jobPath, resPath := filepath.Join(dir, "job.json"), filepath.Join(dir, "res.json")
			data, err := json.Marshal(job)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(jobPath, data, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/usr/bin/python3", "testdata/torch_ref.py", jobPath, resPath)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("torch_ref.py: %v\n%s", err, out)
			}
			var res struct {
				Out   []float64
				Grads map[string][]float64
				Dmel  []float64
			}
			raw, err := os.ReadFile(resPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(raw, &res); err != nil {
				t.Fatalf("%s: %v", resPath, err)
			}
			cmp := func(what string, got, want []float64) {
				t.Helper()
				if len(got) != len(want) {
					t.Fatalf("%s: %d values, PyTorch has %d", what, len(got), len(want))
				}
				var diff, scale float64
				for i := range want {
					diff = math.Max(diff, math.Abs(got[i]-want[i]))
					scale = math.Max(scale, math.Abs(want[i]))
				}
				// Both sides compute in float64, but the backend interface
				// passes scalars (sqrt(0.5), sqrt(1/L)) as float32, a
				// relative change of ~1e-8; structural mistakes give O(1).
				if diff > 1e-6*math.Max(scale, 1) {
					t.Errorf("%s: max abs diff %.3g (scale %.3g) vs PyTorch", what, diff, scale)
				}
			}
			cmp("output", f64(f.ws.Out())[:no], res.Out)
			cmp("dmel", f64(f.dmel)[:nm], res.Dmel)
			g := f64(f.m.Grads())
			if len(res.Grads) != len(f.m.tensors) {
				t.Errorf("PyTorch model has %d parameters, ours %d", len(res.Grads), len(f.m.tensors))
			}
			for _, ti := range f.m.tensors {
				want, ok := res.Grads[ti.Name]
				if !ok {
					t.Errorf("tensor %s missing from the PyTorch model", ti.Name)
					continue
				}
				// Gradients in PyTorch layout: convert ours.
				got := make([]float64, ti.Size)
				copy(got, g[ti.Offset:ti.Offset+ti.Size])
				if ti.TapMajor {
					out, in, k := ti.Shape[0], ti.Shape[1], ti.Shape[2]
					for tap := 0; tap < k; tap++ {
						for o := 0; o < out; o++ {
							for i := 0; i < in; i++ {
								got[(o*in+i)*k+tap] = g[ti.Offset+(tap*out+o)*in+i]
							}
						}
					}
				}
				cmp("grad "+ti.Name, got, want)
			}
		})
	}
}
