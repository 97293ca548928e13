#!/usr/bin/python3
"""PyTorch CPU incremental WaveNet generator: the baseline for wavecat's
BenchmarkGenerate (wavenet/generate_bench_test.go).

Written from REFERENCE.md §3 (r9y9/wavenet_vocoder's fast generation), not
copied: every layer keeps an input buffer of its last (K-1)*d+1 inputs that
shifts by one each step; the K dilated taps are read from it and multiplied
by the conv weight flattened to [G, K*R] (one F.linear); the conditioning
network runs once per utterance and every layer's 1x1 conditioning
projection is precomputed for the whole utterance; residual and skip 1x1
convs are two F.linear; the head (ReLU, 1x1, ReLU, 1x1) feeds a MoL sampler
(Gumbel-max component, logistic sample, clamp) whose sample is the next
input. Weights are random (timing does not depend on them), float32, no
autograd, torch.set_num_threads(--threads).

--check first verifies on a short sequence that the incremental outputs
equal a parallel causal forward (F.conv1d with left padding) over the same
generated sequence to 1e-4, so the timed loop is known to compute the model.

Prints one JSON line per batch size:
  {"batch": B, "samples": N, "seconds": s, "samples_per_s": N/s, ...}

Usage: generate.py [--batches 1,16] [--samples 2048] [--threads 2] [--check]
"""
import argparse
import json
import math
import platform
import sys
import time

import torch
import torch.nn.functional as F


def make_model(L=24, stacks=4, R=128, G=256, S=128, K=3, C=80, out=30, seed=0):
    g = torch.Generator().manual_seed(seed)

    def kaiming(o, i, k=1):
        return torch.randn(o, i, k, generator=g) * math.sqrt(2.0 / (i * k))

    layers = []
    per = L // stacks
    for l in range(L):
        layers.append(dict(
            d=2 ** (l % per),
            conv=kaiming(G, R, K), conv_b=torch.randn(G, generator=g) * 0.1,
            cond=kaiming(G, C),
            out=kaiming(R, G // 2), out_b=torch.randn(R, generator=g) * 0.1,
            skip=kaiming(S, G // 2), skip_b=torch.randn(S, generator=g) * 0.1))
    return dict(L=L, R=R, G=G, S=S, K=K, C=C, O=out, layers=layers,
                first=kaiming(R, 1), first_b=torch.zeros(R),
                last1=kaiming(S, S), last1_b=torch.zeros(S),
                last2=kaiming(out, S), last2_b=torch.zeros(out))


def sample_mol(y, gen):
    """y [B, 3M]: logits, means, log-scales -> samples [B] in [-1, 1]."""
    M = y.shape[1] // 3
    logit, mean, logs = y[:, :M], y[:, M:2 * M], torch.clamp(y[:, 2 * M:], min=-16.0)
    u = torch.rand(logit.shape, generator=gen) * (1 - 2e-5) + 1e-5
    k = torch.argmax(logit - torch.log(-torch.log(u)), dim=1, keepdim=True)
    mu, ls = mean.gather(1, k)[:, 0], logs.gather(1, k)[:, 0]
    v = torch.rand(mu.shape, generator=gen) * (1 - 2e-5) + 1e-5
    return torch.clamp(mu + torch.exp(ls) * (torch.log(v) - torch.log(1 - v)), -1, 1)


def generate(m, c, gen, trace=None):
    """c [B, C, T] upsampled conditioning -> samples [B, T]."""
    B, _, T = c.shape
    R, G, S, K, L = m["R"], m["G"], m["S"], m["K"], m["L"]
    H = G // 2
    # Precomputed conditioning projections: [T, B, G] per layer.
    cproj = [torch.einsum("gc,bct->tbg", ly["cond"][:, :, 0], c).contiguous() for ly in m["layers"]]
    # Conv weights flattened to [G, K*R], tap-major, matching the buffer read.
    wlin = [ly["conv"].permute(0, 2, 1).reshape(G, K * R).contiguous() for ly in m["layers"]]
    bufs = [torch.zeros(B, (K - 1) * ly["d"] + 1, R) for ly in m["layers"]]
    first = m["first"][:, :, 0]
    x = torch.zeros(B, 1)
    ys = torch.empty(B, T)
    for t in range(T):
        h = F.linear(x, first, m["first_b"])
        skip = None
        for l, ly in enumerate(m["layers"]):
            buf = bufs[l]
            buf[:, :-1] = buf[:, 1:].clone()
            buf[:, -1] = h
            taps = buf[:, 0::ly["d"], :].reshape(B, K * R)
            a = F.linear(taps, wlin[l], ly["conv_b"]) + cproj[l][t]
            z = torch.tanh(a[:, :H]) * torch.sigmoid(a[:, H:])
            s = F.linear(z, ly["skip"][:, :, 0], ly["skip_b"])
            skip = s if skip is None else skip + s
            if l < L - 1:
                h = (F.linear(z, ly["out"][:, :, 0], ly["out_b"]) + h) * math.sqrt(0.5)
        a1 = F.relu(skip * math.sqrt(1.0 / L))
        a2 = F.relu(F.linear(a1, m["last1"][:, :, 0], m["last1_b"]))
        y = F.linear(a2, m["last2"][:, :, 0], m["last2_b"])
        if trace is not None:
            trace.append(y.clone())
        s = sample_mol(y, gen)
        ys[:, t] = s
        x = s[:, None]
    return ys


def parallel(m, c, xs):
    """Causal parallel forward over inputs xs [B, T] -> outputs [B, O, T]."""
    L, K = m["L"], m["K"]
    h = F.conv1d(xs[:, None, :], m["first"], m["first_b"])
    skip = 0
    for l, ly in enumerate(m["layers"]):
        d = ly["d"]
        a = F.conv1d(F.pad(h, ((K - 1) * d, 0)), ly["conv"], ly["conv_b"], dilation=d)
        a = a + F.conv1d(c, ly["cond"])
        H = a.shape[1] // 2
        z = torch.tanh(a[:, :H]) * torch.sigmoid(a[:, H:])
        skip = skip + F.conv1d(z, ly["skip"], ly["skip_b"])
        if l < L - 1:
            h = (F.conv1d(z, ly["out"], ly["out_b"]) + h) * math.sqrt(0.5)
    a1 = F.relu(skip * math.sqrt(1.0 / L))
    a2 = F.relu(F.conv1d(a1, m["last1"], m["last1_b"]))
    return F.conv1d(a2, m["last2"], m["last2_b"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--samples", type=int, default=2048, help="samples per utterance")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_grad_enabled(False)
    m = make_model()
    if a.check:
        T = 300
        c = torch.randn(2, m["C"], T, generator=torch.Generator().manual_seed(5))
        trace = []
        ys = generate(m, c, torch.Generator().manual_seed(1), trace)
        inc = torch.stack(trace, dim=2)  # [B, O, T]
        xs = torch.cat([torch.zeros(2, 1), ys[:, :-1]], dim=1)
        ref = parallel(m, c, xs)
        err = (inc - ref).abs().max().item() / max(1.0, ref.abs().max().item())
        if err > 1e-4:
            print(f"generate.py: incremental and parallel outputs differ by {err:.3g}", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"check": "incremental == parallel", "max_rel_err": err}), flush=True)
    for B in [int(b) for b in a.batches.split(",")]:
        c = torch.randn(B, m["C"], a.samples, generator=torch.Generator().manual_seed(B))
        t0 = time.perf_counter()
        generate(m, c, torch.Generator().manual_seed(0))
        sec = time.perf_counter() - t0
        n = B * a.samples
        print(json.dumps({"batch": B, "samples": n, "seconds": round(sec, 3), "samples_per_s": round(n / sec, 1),
                          "threads": a.threads, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
                          "config": "24 layers/4 stacks, 128/256/128, k=3, MoL 30 channels"}), flush=True)


if __name__ == "__main__":
    main()
