#!/usr/bin/python3
"""Times a PyTorch CPU training step of the reference WaveNet, the
counterpart of bench.BenchmarkTrainStepReference.

One step = zero_grad, forward, backward of loss = sum(out * R), Adam update
(lr 1e-3, betas 0.9/0.999, eps 1e-8). The model is wavenet_ref.WaveNet (the
module tree that bench/pytorch_test.go checks against wavecat) with the
reference shape: 24 layers in 4 stacks, 128/256/128 channels, kernel 3,
80 mels with cin_pad 2, upsampling 4x4x4x4, scalar input, weight norm, and
30 output channels (a 10-component mixture-of-logistics head's size). The loss
is the fixed random projection sum(out * R), not the MoL likelihood: the Go
benchmark feeds the same dout = R, so both time the network, not a head.

Prints every step's time, then best and median samples/s and the peak RSS.

Usage: /usr/bin/python3 bench/pytorch/train_step.py [--threads 2] [--steps 5]
       [--batch 1] [--T 10240] [--config reference|small] [--checkpoint DIR]
       [--dtype float32] [--device cpu|cuda] [--tf32]

With --device cuda the model and tensors live on the GPU, each timed step
ends with torch.cuda.synchronize(), and the peak figure is the GPU's
(torch.cuda.max_memory_allocated); the counterpart is
bench.BenchmarkTrainStepCUDA.
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wavenet_ref  # noqa: E402

REFERENCE = {
    "layers": 24, "stacks": 4,
    "residual_channels": 128, "gate_channels": 256, "skip_out_channels": 128,
    "kernel_size": 3, "cin_channels": 80, "cin_pad": 2, "upsample_scales": [4, 4, 4, 4],
    "in_channels": 1, "out_channels": 30, "dropout": 0, "weight_normalization": True,
}
# Half the reference in depth and width, as bench.smallBenchConfig.
SMALL = dict(REFERENCE, layers=12, stacks=2, residual_channels=64, gate_channels=128, skip_out_channels=64)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--T", type=int, default=10240)
    ap.add_argument("--config", choices=["reference", "small"], default="reference")
    ap.add_argument("--checkpoint", help="wavecat checkpoint directory (overrides --config)")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 matmuls and convolutions (GPU)")
    args = ap.parse_args()
    dev = torch.device(args.device)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32
        torch.backends.cudnn.benchmark = True
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    if args.checkpoint:
        model, cfg = wavenet_ref.load_model(args.checkpoint, dtype)
    else:
        cfg = REFERENCE if args.config == "reference" else SMALL
        model = wavenet_ref.WaveNet(cfg).to(dtype)
    model = model.to(dev)
    hop = wavenet_ref.hop_size(cfg)
    if args.T % hop:
        sys.exit(f"train_step.py: T = {args.T} is not a multiple of the hop size {hop}")
    B, T = args.batch, args.T
    x = (torch.rand(B, wavenet_ref.first_inputs(cfg), T, dtype=dtype) * 2 - 1).to(dev)
    mel = torch.randn(B, cfg["cin_channels"], T // hop + 2 * cfg["cin_pad"], dtype=dtype).to(dev)
    r = torch.randn(B, cfg["out_channels"], T, dtype=dtype).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    nparams = sum(p.numel() for p in model.parameters())
    env = " ".join(f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS")
                   if k in os.environ)
    where = f"{torch.cuda.get_device_name()} tf32={args.tf32}" if args.device == "cuda" else f"{torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, {args.dtype}, "
          f"{nparams} parameters, batch {B} x {T} {env}".rstrip())

    def step():
        opt.zero_grad(set_to_none=True)
        loss = (model(x, mel) * r).sum()
        loss.backward()
        opt.step()
        if args.device == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: allocator, oneDNN/OpenBLAS buffers
    times = []
    for i in range(args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        # CPU time of all threads: moves less than wall time on a shared
        # machine, though spinning OpenMP threads inflate it.
        cpu = time.process_time() - c0
        print(f"step {i + 1}: {times[-1]:.3f} s ({B * T / times[-1]:.0f} samples/s), cpu {cpu:.2f} s")
    best, med = min(times), statistics.median(times)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    peak = f"peak RSS {rss_mb:.0f} MiB"
    if args.device == "cuda":
        peak = f"peak GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    print(f"best {B * T / best:.0f} samples/s ({best:.4f} s/step), median {B * T / med:.0f} samples/s "
          f"({med:.4f} s/step), {peak}")


if __name__ == "__main__":
    main()
