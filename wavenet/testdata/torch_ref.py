"""Independent PyTorch model of the r9y9 WaveNet vocoder structure, used by
torch_test.go. Reads a JSON job (config, state_dict in PyTorch layout,
inputs, loss weights), loads the state_dict strictly (so every name and
shape must match the module tree), runs forward and autograd backward in
float64 and writes output, parameter gradients and the mel gradient as JSON.

The module tree is bench/pytorch/wavenet_ref.py's (one PyTorch model of the
architecture for the whole project); this script only adds the JSON job I/O
that the float64 gradient test uses.

Usage: torch_ref.py job.json result.json
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "pytorch"))
from wavenet_ref import WaveNet  # noqa: E402


def main():
    job = json.load(open(sys.argv[1]))
    cfg = job["config"]
    torch.set_default_dtype(torch.float64)
    model = WaveNet(cfg)
    sd = {t["Name"]: torch.tensor(t["Data"], dtype=torch.float64).reshape(t["Shape"]) for t in job["tensors"]}
    model.load_state_dict(sd, strict=True)
    B, T = job["B"], job["T"]
    x = torch.tensor(job["x"], dtype=torch.float64).reshape(B, cfg["in_channels"], T)
    mel = torch.tensor(job["mel"], dtype=torch.float64).reshape(B, cfg["cin_channels"], -1).requires_grad_(True)
    r = torch.tensor(job["r"], dtype=torch.float64).reshape(B, cfg["out_channels"], T)
    out = model(x, mel)
    (out * r).sum().backward()
    grads = {n: (p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).tolist()
             for n, p in model.named_parameters()}
    json.dump({"out": out.detach().reshape(-1).tolist(), "grads": grads,
               "dmel": mel.grad.reshape(-1).tolist()}, open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
