#!/usr/bin/python3
"""PyTorch reference of the r9y9/wavenet_vocoder WaveNet, for cross-checking
wavecat checkpoints (bench/pytorch_test.go) and timing (train_step.py).

The network is written from the architecture description (REFERENCE.md §3):
module names are r9y9's, so a wavecat model.safetensors (r9y9 state_dict
names, weight_norm's weight_g/weight_v) loads with load_state_dict(strict=True)
and any missing, extra or misshapen tensor is an error.

Usage:
  wavenet_ref.py CHECKPOINT_DIR --x x.npy --mel mel.npy --r r.npy --out OUTDIR
                 [--dtype float32|float64|float64,float32] [--weights model.safetensors]

CHECKPOINT_DIR is a wavecat checkpoint directory (config.json with a "model"
section, model.safetensors, checksums.json). Inputs: x [B, in_channels, T],
mel [B, cin_channels, T/hop + 2*cin_pad], r [B, out_channels, T]. The script
runs out = model(x, mel) and backward of loss = sum(out * r), then writes to
OUTDIR: out.npy, dmel.npy (d loss / d mel) and grads/<state_dict name>.npy for
every parameter, all in the computation dtype (with several dtypes, into
OUTDIR/<dtype>/ each, sparing a torch start-up per dtype).

Only numpy and torch are needed: the safetensors file is parsed here (an
8-byte little-endian header length, a JSON header, raw little-endian data).
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import weight_norm

SAFETENSORS_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}


def fail(msg):
    print("wavenet_ref.py: " + msg, file=sys.stderr)
    sys.exit(1)


def read_safetensors(path):
    """Returns {name: numpy array} from a safetensors file, checking that the
    header's offsets stay inside the file and match the shapes."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail(f"{path}: {len(data)} bytes, too short for a safetensors header")
    n = int.from_bytes(data[:8], "little")
    if 8 + n > len(data):
        fail(f"{path}: header length {n} runs past the end of the file ({len(data)} bytes)")
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError as e:
        fail(f"{path}: malformed JSON header: {e}")
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        dt = SAFETENSORS_DTYPES.get(info.get("dtype"))
        if dt is None:
            fail(f"{path}: tensor {name}: unsupported dtype {info.get('dtype')!r}")
        shape = [int(s) for s in info["shape"]]
        b, e = info["data_offsets"]
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= b <= e and base + e <= len(data)) or e - b != count * np.dtype(dt).itemsize:
            fail(f"{path}: tensor {name}: data_offsets {b}..{e} do not fit shape {shape} in a {len(data)}-byte file")
        out[name] = np.frombuffer(data, dtype=dt, count=count, offset=base + b).reshape(shape)
    return out


def verify_checksum(ckdir, name):
    """Checks name against checksums.json when the checkpoint has one, so a
    damaged file is refused here as wavecat refuses it."""
    man_path = os.path.join(ckdir, "checksums.json")
    if not os.path.exists(man_path):
        return
    with open(man_path) as f:
        man = json.load(f)
    entry = man.get("files", {}).get(name)
    if entry is None:
        fail(f"{man_path}: does not list {name}")
    with open(os.path.join(ckdir, name), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != entry["sha256"]:
        fail(f"{os.path.join(ckdir, name)}: SHA-256 mismatch with checksums.json (corrupted file)")


def load_config(ckdir):
    path = os.path.join(ckdir, "config.json")
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")
    cfg = meta.get("model")
    if not isinstance(cfg, dict):
        fail(f"{path}: no \"model\" section")
    if cfg.get("dropout", 0):
        fail(f"{path}: dropout {cfg['dropout']} is not supported (the reference trains without it)")
    return cfg


def conv(cin, cout, k, wn, bias=True, dilation=1):
    m = nn.Conv1d(cin, cout, k, dilation=dilation, bias=bias)
    return weight_norm(m) if wn else m


class ResidualConv1dGLU(nn.Module):
    """One gated residual block: dilated causal conv R->G, conditioning 1x1
    (no bias) added to both halves, z = tanh(a)*sigmoid(b), skip 1x1(z),
    residual (1x1(z) + x) * sqrt(0.5)."""

    def __init__(self, cfg, dilation):
        super().__init__()
        R, G, S = cfg["residual_channels"], cfg["gate_channels"], cfg["skip_out_channels"]
        k, wn = cfg["kernel_size"], cfg["weight_normalization"]
        self.left_pad = (k - 1) * dilation
        self.conv = conv(R, G, k, wn, dilation=dilation)
        self.conv1x1c = conv(cfg["cin_channels"], G, 1, wn, bias=False)
        self.conv1x1_out = conv(G // 2, R, 1, wn)
        self.conv1x1_skip = conv(G // 2, S, 1, wn)

    def forward(self, x, c):
        h = self.conv(F.pad(x, (self.left_pad, 0)))  # causal: pad the past only
        h = h + self.conv1x1c(c)
        a, b = torch.chunk(h, 2, dim=1)
        z = torch.tanh(a) * torch.sigmoid(b)
        return (self.conv1x1_out(z) + x) * math.sqrt(0.5), self.conv1x1_skip(z)


class Stretch2d(nn.Module):
    """Nearest-neighbour stretch along time by s (no parameters)."""

    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, c):
        return torch.repeat_interleave(c, self.s, dim=-1)


class UpsampleNetwork(nn.Module):
    def __init__(self, scales, wn):
        super().__init__()
        layers = []
        for s in scales:
            c = nn.Conv2d(1, 1, (1, 2 * s + 1), padding=(0, s), bias=False)
            layers += [Stretch2d(s), weight_norm(c) if wn else c]
        self.up_layers = nn.ModuleList(layers)

    def forward(self, c):
        c = c.unsqueeze(1)  # [B, 1, cin, frames]: Conv2d over (mel bin, time)
        for f in self.up_layers:
            c = f(c)
        return c.squeeze(1)


class ConvInUpsampleNetwork(nn.Module):
    """conv_in (kernel 2*cin_pad+1, no padding: frames+2*pad -> frames, plain
    conv without weight norm as in r9y9) then the stretch/conv stages."""

    def __init__(self, cfg):
        super().__init__()
        C = cfg["cin_channels"]
        self.conv_in = nn.Conv1d(C, C, 2 * cfg["cin_pad"] + 1, bias=False)
        self.upsample = UpsampleNetwork(cfg["upsample_scales"], cfg["weight_normalization"])

    def forward(self, c):
        return self.upsample(self.conv_in(c))


class WaveNet(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        L, stacks = cfg["layers"], cfg["stacks"]
        if L % stacks:
            fail(f"layers {L} not divisible by stacks {stacks}")
        per, wn, S = L // stacks, cfg["weight_normalization"], cfg["skip_out_channels"]
        # wavecat's excitation channels are more first_conv inputs after
        # the waveform's (absent: none, as in r9y9).
        self.first_conv = conv(first_inputs(cfg), cfg["residual_channels"], 1, wn)
        self.conv_layers = nn.ModuleList(ResidualConv1dGLU(cfg, 2 ** (l % per)) for l in range(L))
        self.last_conv_layers = nn.ModuleList(
            [nn.ReLU(inplace=True), conv(S, S, 1, wn), nn.ReLU(inplace=True), conv(S, cfg["out_channels"], 1, wn)]
        )
        self.upsample_net = ConvInUpsampleNetwork(cfg)

    def forward(self, x, mel):
        c = self.upsample_net(mel)
        if c.size(-1) != x.size(-1):
            raise ValueError(f"conditioning has {c.size(-1)} samples, input {x.size(-1)}")
        x = self.first_conv(x)
        skips = 0
        for f in self.conv_layers:
            x, s = f(x, c)
            skips = skips + s
        x = skips * math.sqrt(1.0 / len(self.conv_layers))
        for f in self.last_conv_layers:
            x = f(x)
        return x


def hop_size(cfg):
    return int(np.prod(cfg["upsample_scales"]))


def first_inputs(cfg):
    """first_conv's input channels: the waveform's, the excitation's, the lag taps'."""
    return cfg["in_channels"] + cfg.get("excitation_channels", 0) + cfg.get("lag_taps", 0)


def load_model(ckdir, dtype, weights="model.safetensors"):
    """Builds the WaveNet of a wavecat checkpoint and loads its weights
    strictly, in dtype."""
    cfg = load_config(ckdir)
    verify_checksum(ckdir, weights)
    sd = read_safetensors(os.path.join(ckdir, weights))
    model = WaveNet(cfg).to(dtype)
    state = {k: torch.from_numpy(np.array(v, dtype=np.float64)).to(dtype) for k, v in sd.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        fail(f"{os.path.join(ckdir, weights)} does not match the architecture of config.json: {e}")
    return model, cfg


def load_npy(path, shape, dtype):
    a = np.load(path)
    if list(a.shape) != list(shape):
        fail(f"{path}: shape {list(a.shape)}, want {list(shape)}")
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(dtype)


def run(args, dtype, outdir):
    """Forward and backward of sum(out * r) in dtype; writes the results."""
    model, cfg = load_model(args.checkpoint, dtype, args.weights)
    x = np.load(args.x)
    if x.ndim != 3:
        fail(f"{args.x}: want [B, in_channels, T], got shape {list(x.shape)}")
    B, T = x.shape[0], x.shape[2]
    hop = hop_size(cfg)
    if T % hop:
        fail(f"{args.x}: T = {T} is not a multiple of the hop size {hop}")
    x = load_npy(args.x, [B, first_inputs(cfg), T], dtype)
    mel = load_npy(args.mel, [B, cfg["cin_channels"], T // hop + 2 * cfg["cin_pad"]], dtype).requires_grad_(True)
    r = load_npy(args.r, [B, cfg["out_channels"], T], dtype)

    out = model(x, mel)
    (out * r).sum().backward()

    npdt = np.float32 if dtype == torch.float32 else np.float64
    os.makedirs(os.path.join(outdir, "grads"), exist_ok=True)
    np.save(os.path.join(outdir, "out.npy"), out.detach().numpy().astype(npdt))
    np.save(os.path.join(outdir, "dmel.npy"), mel.grad.numpy().astype(npdt))
    for name, p in model.named_parameters():
        g = p.grad if p.grad is not None else torch.zeros_like(p)
        np.save(os.path.join(outdir, "grads", name + ".npy"), g.numpy().astype(npdt))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--x", required=True)
    ap.add_argument("--mel", required=True)
    ap.add_argument("--r", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", default="float32",
                    help="float32, float64, or a comma-separated list (then OUTDIR/<dtype>/ each)")
    ap.add_argument("--weights", default="model.safetensors")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtypes = args.dtype.split(",")
    for d in dtypes:
        if d not in ("float32", "float64"):
            fail(f"--dtype {d!r}: want float32 or float64")
    for d in dtypes:
        run(args, getattr(torch, d), args.out if len(dtypes) == 1 else os.path.join(args.out, d))


if __name__ == "__main__":
    main()
