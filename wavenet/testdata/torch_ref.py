"""Independent PyTorch model of the r9y9 WaveNet vocoder structure, used by
torch_test.go. Reads a JSON job (config, state_dict in PyTorch layout,
inputs, loss weights), loads the state_dict strictly (so every name and
shape must match the module tree), runs forward and autograd backward in
float64 and writes output, parameter gradients and the mel gradient as JSON.

Usage: torch_ref.py job.json result.json
"""
import json
import math
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import weight_norm


def conv1d(cin, cout, k, wn, bias=True, dilation=1, padding=0):
    m = nn.Conv1d(cin, cout, k, bias=bias, dilation=dilation, padding=padding)
    return weight_norm(m) if wn else m


class Block(nn.Module):
    def __init__(self, cfg, dilation):
        super().__init__()
        k, wn = cfg["kernel_size"], cfg["weight_normalization"]
        R, G, S = cfg["residual_channels"], cfg["gate_channels"], cfg["skip_out_channels"]
        self.conv = conv1d(R, G, k, wn, dilation=dilation, padding=(k - 1) * dilation)
        self.conv1x1c = conv1d(cfg["cin_channels"], G, 1, wn, bias=False)
        self.conv1x1_out = conv1d(G // 2, R, 1, wn)
        self.conv1x1_skip = conv1d(G // 2, S, 1, wn)

    def forward(self, x, c):
        res = x
        x = self.conv(x)[:, :, : res.size(-1)]  # causal: drop the right padding
        a, b = x.split(x.size(1) // 2, dim=1)
        ca, cb = self.conv1x1c(c).split(x.size(1) // 2, dim=1)
        z = torch.tanh(a + ca) * torch.sigmoid(b + cb)
        s = self.conv1x1_skip(z)
        out = (self.conv1x1_out(z) + res) * math.sqrt(0.5)
        return out, s


class Stretch(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return F.interpolate(x, scale_factor=(1, self.s), mode="nearest")


class Upsample(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        layers = []
        for s in cfg["upsample_scales"]:
            conv = nn.Conv2d(1, 1, (1, 2 * s + 1), padding=(0, s), bias=False)
            if cfg["weight_normalization"]:
                conv = weight_norm(conv)
            layers += [Stretch(s), conv]
        self.up_layers = nn.ModuleList(layers)

    def forward(self, c):
        c = c.unsqueeze(1)
        for f in self.up_layers:
            c = f(c)
        return c.squeeze(1)


class ConvInUpsample(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        C = cfg["cin_channels"]
        self.conv_in = nn.Conv1d(C, C, 2 * cfg["cin_pad"] + 1, bias=False)
        self.upsample = Upsample(cfg)

    def forward(self, c):
        return self.upsample(self.conv_in(c))


class WaveNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        wn, S = cfg["weight_normalization"], cfg["skip_out_channels"]
        per = cfg["layers"] // cfg["stacks"]
        self.first_conv = conv1d(cfg["in_channels"], cfg["residual_channels"], 1, wn)
        self.conv_layers = nn.ModuleList(Block(cfg, 2 ** (l % per)) for l in range(cfg["layers"]))
        self.last_conv_layers = nn.ModuleList(
            [nn.ReLU(), conv1d(S, S, 1, wn), nn.ReLU(), conv1d(S, cfg["out_channels"], 1, wn)]
        )
        self.upsample_net = ConvInUpsample(cfg)

    def forward(self, x, mel):
        c = self.upsample_net(mel)
        x = self.first_conv(x)
        skips = 0
        for f in self.conv_layers:
            x, h = f(x, c)
            skips = skips + h
        x = skips * math.sqrt(1.0 / len(self.conv_layers))
        for f in self.last_conv_layers:
            x = f(x)
        return x


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
