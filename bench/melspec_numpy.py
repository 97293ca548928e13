#!/usr/bin/python3
"""numpy timing of the same log-mel as melspec.BenchmarkMel10s.

10 s of 22050 Hz noise, n_fft 1024, hop 256, periodic Hann, reflect padding,
Slaney mel (80 bands, 125-7600 Hz), log10(max(mel, 1e-10)); fully vectorised
(one rfft over all frames, one matmul), window and filterbank precomputed,
one thread. Prints x-real-time (median and best of 20) for float64 (what melspec computes) and float32
(librosa's default dtype). Run: /usr/bin/python3 bench/melspec_numpy.py
"""
import os

for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"  # single core, like the Go benchmark

import sys
import time

import numpy as np
import scipy.signal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testdata", "reference"))
from make_reference import DEFAULT, mel_filterbank  # noqa: E402


def make_logmel(c, dtype):
    n_fft, hop = c["n_fft"], c["hop"]
    window = scipy.signal.get_window("hann", c["win_length"], fftbins=True).astype(dtype)
    fbT = np.ascontiguousarray(mel_filterbank(c).astype(dtype).T)

    def logmel(y):
        yp = np.pad(y.astype(dtype), n_fft // 2, mode="reflect")
        frames = np.lib.stride_tricks.sliding_window_view(yp, n_fft)[::hop]
        mag = np.abs(np.fft.rfft(frames * window, axis=1))
        return np.log10(np.maximum(mag.astype(dtype) @ fbT, 1e-10)).astype(np.float32)

    return logmel


def main():
    c = dict(DEFAULT)
    seconds = 10.0
    y = (0.1 * np.random.default_rng(7).standard_normal(int(seconds * c["sample_rate"]))).astype(np.float32)
    for name, dtype in (("float64", np.float64), ("float32", np.float32)):
        f = make_logmel(c, dtype)
        f(y)  # warm up
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            f(y)
            times.append(time.perf_counter() - t0)
        med, best = float(np.median(times)), min(times)
        # the median is the figure to compare with go test -bench's mean
        print(f"numpy {np.__version__} log-mel {name}: median {med * 1e3:.1f} ms per 10 s = "
              f"{seconds / med:.0f} x_realtime (best {seconds / best:.0f}; 20 runs, 1 thread)", flush=True)


if __name__ == "__main__":
    main()
