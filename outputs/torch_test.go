package outputs

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Independent reference: PyTorch autograd in float64 (Debian's python3-torch
// at /usr/bin/python3; the first python3 on PATH has no numpy/torch).
//   - MoL: the r9y9 discretized_mix_logistic_loss formula (reduce=False).
//   - AdaCat: the smoothed loss written directly with cumsum/clamp, so
//     autograd differentiates through the bin edges; this cross-checks the
//     hand-derived edge terms.
const torchScript = `
import json, sys, math
import torch
import torch.nn.functional as F
torch.set_default_dtype(torch.float64)
d = json.load(open(sys.argv[1]))
out = {}

m = d["mol"]
M, Q, lsmin = m["M"], m["Q"], m["lsmin"]
z = torch.tensor(m["z"], requires_grad=True)          # [T, 3M]
y = torch.tensor(m["y"]).unsqueeze(1).expand(-1, M)   # [T, M]
lp = z[:, :M]; mu = z[:, M:2*M]; ls = torch.clamp(z[:, 2*M:], min=lsmin)
cy = y - mu
inv = torch.exp(-ls)
pin = inv * (cy + 1.0/(Q-1)); nin = inv * (cy - 1.0/(Q-1))
cdf_delta = torch.sigmoid(pin) - torch.sigmoid(nin)
log_cdf_plus = pin - F.softplus(pin)
log_1m_cdf_min = -F.softplus(nin)
mid = inv * cy
log_pdf_mid = mid - ls - 2.0 * F.softplus(mid)
c_in = (cdf_delta > 1e-5).double()
inner_inner = c_in * torch.log(torch.clamp(cdf_delta, min=1e-12)) + (1 - c_in) * (log_pdf_mid - math.log((Q-1)/2))
c_hi = (y > 0.999).double()
inner = c_hi * log_1m_cdf_min + (1 - c_hi) * inner_inner
c_lo = (y < -0.999).double()
lprob = c_lo * log_cdf_plus + (1 - c_lo) * inner + F.log_softmax(lp, -1)
loss = -torch.logsumexp(lprob, -1)
loss.sum().backward()
out["mol_loss"] = loss.tolist(); out["mol_grad"] = z.grad.tolist()

a = d["adacat"]
out["ada_loss"] = []; out["ada_grad"] = []
for case in a:
    k, lam = case["k"], case["lambda"]
    z = torch.tensor(case["z"], requires_grad=True)  # [T, 2k]
    x = torch.tensor(case["x"]).unsqueeze(1)
    lw = F.log_softmax(z[:, :k], -1); lh = F.log_softmax(z[:, k:], -1)
    c = torch.cat([torch.zeros(z.shape[0], 1), torch.cumsum(torch.exp(lw), -1)], -1)
    lo = torch.clamp(x - lam, min=0.0); hi = torch.clamp(x + lam, max=1.0)
    Fz = torch.clamp((c - lo) / (hi - lo), 0.0, 1.0)
    mass = Fz[:, 1:] - Fz[:, :-1]
    loss = -(mass * (lh - lw)).sum(-1)
    loss.sum().backward()
    out["ada_loss"].append(loss.tolist()); out["ada_grad"].append(z.grad.tolist())
json.dump(out, open(sys.argv[2], "w"))
`

func TestAgainstTorch(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		t.Skip("no /usr/bin/python3: cannot compare with the PyTorch reference")
	}
	if err := exec.Command(py, "-c", "import torch").Run(); err != nil {
		t.Skip("python3-torch not importable by /usr/bin/python3: cannot compare with the PyTorch reference")
	}
	rng := rand.New(rand.NewPCG(77, 78))

	// MoL: 10 components, all branches (edges, tiny mass, clamped scales).
	const M, Q, T = 10, 65536, 60
	mol, _ := NewMoL(M, Q, -16)
	var mz [][]float64
	var my []float64
	for i := 0; i < T; i++ {
		z := make([]float64, 3*M)
		for j := 0; j < M; j++ {
			z[j] = rng.NormFloat64()
			z[M+j] = 0.9 * (2*rng.Float64() - 1)
			z[2*M+j] = -9 + 8*rng.Float64()
			if rng.IntN(8) == 0 {
				z[2*M+j] = -17 - rng.Float64()
			}
		}
		y := []float64{-1, 1, -0.9995, 0.9995, 0}[i%5]
		if i >= 10 {
			y = clamp(0.5*rng.NormFloat64(), -1, 1)
			z[M] = y + 1e-5*rng.NormFloat64() // one component right on the target
			z[2*M] = -9
		}
		mz = append(mz, z)
		my = append(my, y)
	}

	// AdaCat: lambda over a bin, a few bins and tiny; x at 0, 1, edges.
	type adaCase struct {
		K      int         `json:"k"`
		Lambda float64     `json:"lambda"`
		Z      [][]float64 `json:"z"`
		X      []float64   `json:"x"`
	}
	var ada []adaCase
	for _, lam := range []float64{1e-4, 0.05, 0.6} {
		c := adaCase{K: 8, Lambda: lam}
		for i := 0; i < 12; i++ {
			z := randLogits(rng, 16, 1.5)
			e := refEdges(z[:8])
			x := []float64{0, 1, e[1], e[4], e[4] + lam/2, e[7] - lam/3}[i%6]
			if i >= 6 {
				x = rng.Float64()
			}
			c.Z = append(c.Z, z)
			c.X = append(c.X, clamp(x, 0, 1))
		}
		ada = append(ada, c)
	}

	dir := t.TempDir()
	in, outp, script := filepath.Join(dir, "in.json"), filepath.Join(dir, "out.json"), filepath.Join(dir, "ref.py")
	data, _ := json.Marshal(map[string]any{
		"mol":    map[string]any{"M": M, "Q": Q, "lsmin": -16.0, "z": mz, "y": my},
		"adacat": ada,
	})
	if err := os.WriteFile(in, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(script, []byte(torchScript), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(py, script, in, outp)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("torch reference failed: %v\n%s", err, stderr.String())
	}
	var ref struct {
		MolLoss []float64     `json:"mol_loss"`
		MolGrad [][]float64   `json:"mol_grad"`
		AdaLoss [][]float64   `json:"ada_loss"`
		AdaGrad [][][]float64 `json:"ada_grad"`
	}
	raw, err := os.ReadFile(outp)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	close := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

	g := make([]float64, 3*M)
	s := make([]float64, mol.scratchLen())
	for i := range mz {
		l := mol.lossStep(mz[i], my[i], g, s)
		if !close(l, ref.MolLoss[i]) {
			t.Errorf("mol t=%d y=%g: loss %v, torch %v", i, my[i], l, ref.MolLoss[i])
		}
		for c := range g {
			if !close(g[c], ref.MolGrad[i][c]) {
				t.Errorf("mol t=%d y=%g: grad[%d] %v, torch %v", i, my[i], c, g[c], ref.MolGrad[i][c])
			}
		}
	}
	for ci, c := range ada {
		h, _ := NewAdaCat(c.K, c.Lambda)
		g := make([]float64, 2*c.K)
		s := make([]float64, h.scratchLen())
		for i := range c.Z {
			l := adacatLoss(c.K, c.Lambda, c.Z[i], c.X[i], g, s)
			if !close(l, ref.AdaLoss[ci][i]) {
				t.Errorf("adacat lambda=%g x=%v: loss %v, torch %v", c.Lambda, c.X[i], l, ref.AdaLoss[ci][i])
			}
			for j := range g {
				if math.Abs(g[j]-ref.AdaGrad[ci][i][j]) > 1e-8*math.Max(1, math.Abs(g[j])) {
					t.Errorf("adacat lambda=%g x=%v: grad[%d] %v, torch %v", c.Lambda, c.X[i], j, g[j], ref.AdaGrad[ci][i][j])
				}
			}
		}
	}
}
