#!/usr/bin/python3
"""Independent numpy reference for melspec.GriffinLim (no librosa).

Written from the definitions (REFERENCE.md sections 3 and 5):
  * Slaney mel filterbank (htk=False, norm='slaney'), computed in float64 and
    stored as float32 as librosa does;
  * linear magnitude S = max(pinv(fb) @ 10**logmel, 0), pinv by
    numpy.linalg.pinv with rcond = max(fb.shape) * eps;
  * centred STFT: reflect padding by n_fft//2, periodic Hann of win_length
    centred in n_fft, numpy.fft.rfft, in float64;
  * inverse STFT: numpy.fft.irfft, multiply by the window, overlap-add,
    divide by the summed squared window where it exceeds the smallest normal
    float, drop the n_fft//2 centre padding, cut or zero-pad to a length;
  * fast Griffin-Lim with momentum (Perraudin et al., the update librosa's
    griffinlim makes): rebuilt = stft(istft(S*angles)),
    angles = rebuilt - momentum/(1+momentum) * previous rebuilt,
    angles /= |angles| + tiny; finally istft(S*angles).
  * Length convention of the Go code: iterations on (frames-1)*hop samples
    (so the re-analysis has exactly `frames` frames), the final inverse STFT
    cut to the requested length (frames*hop).

Usage: griffinlim_ref.py DIR
  reads  DIR/params.json  {"config": {sample_rate, n_fft, hop, win_length,
                           n_mels, fmin, fmax}, "iterations": N,
                           "momentum": M, "length": L}
         DIR/logmel.npy   frames x n_mels (log10 mel, not normalised)
         DIR/phase.npy    optional frames x bins initial phases in radians
                          (absent: zero phase, librosa's init=None)
  writes DIR/magnitude.npy  frames x bins float64 (S, transposed)
         DIR/audio.npy      L float64 samples
Needs only numpy.
"""
import json
import os
import sys

import numpy as np

TINY = np.finfo(np.float64).tiny


def hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-300) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    lin = m * (200.0 / 3)
    log = 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0))
    return np.where(m >= 15.0, log, lin)


def filterbank(c):
    """n_mels x bins: triangles between mel-equispaced points, area 1 in Hz."""
    bins = 1 + c["n_fft"] // 2
    f = np.arange(bins) * (c["sample_rate"] / c["n_fft"])
    edges = mel_to_hz(np.linspace(hz_to_mel(c["fmin"]), hz_to_mel(c["fmax"]), c["n_mels"] + 2))
    fb = np.empty((c["n_mels"], bins))
    for m in range(c["n_mels"]):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rise = (f - lo) / (mid - lo)
        fall = (hi - f) / (hi - mid)
        fb[m] = np.clip(np.minimum(rise, fall), 0, None) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


def window(c):
    n, w = c["n_fft"], c["win_length"]
    k = np.arange(w)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * k / w)  # periodic
    out = np.zeros(n)
    off = (n - w) // 2
    out[off:off + w] = hann
    return out


def stft(y, c, win):
    """bins x frames, frames = 1 + len(y)//hop."""
    n, hop = c["n_fft"], c["hop"]
    yp = np.pad(y, n // 2, mode="reflect")
    frames = 1 + len(y) // hop
    idx = np.arange(frames)[:, None] * hop + np.arange(n)[None, :]
    return np.fft.rfft(yp[idx] * win[None, :], n=n, axis=1).T


def istft(X, c, win, length):
    n, hop = c["n_fft"], c["hop"]
    frames = X.shape[1]
    seg = np.fft.irfft(X.T, n=n, axis=1) * win[None, :]
    total = n + hop * (frames - 1)
    y = np.zeros(total)
    wss = np.zeros(total)
    for t in range(frames):
        y[t * hop:t * hop + n] += seg[t]
        wss[t * hop:t * hop + n] += win ** 2
    nz = wss > TINY
    y[nz] /= wss[nz]
    y = y[n // 2:n // 2 + length]
    return np.pad(y, (0, length - len(y)))


def griffinlim(logmel, c, iterations, momentum, length, phase=None):
    fb = filterbank(c).astype(np.float64)
    pinv = np.linalg.pinv(fb, rcond=max(fb.shape) * np.finfo(np.float64).eps)
    S = np.maximum(pinv @ (10.0 ** logmel.astype(np.float64).T), 0)  # bins x frames
    win = window(c)
    frames = S.shape[1]
    if phase is None:
        angles = np.ones(S.shape, dtype=np.complex128)
    else:
        angles = np.exp(1j * phase.T.astype(np.float64))
    inner = (frames - 1) * c["hop"]
    tprev = np.zeros(S.shape, dtype=np.complex128)
    for _ in range(iterations):
        rebuilt = stft(istft(S * angles, c, win, inner), c, win)
        assert rebuilt.shape == S.shape
        angles = rebuilt - (momentum / (1 + momentum)) * tprev
        tprev = rebuilt
        angles = angles / (np.abs(angles) + TINY)
    return S, istft(S * angles, c, win, length)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    d = sys.argv[1]
    with open(os.path.join(d, "params.json")) as f:
        p = json.load(f)
    logmel = np.load(os.path.join(d, "logmel.npy"))
    phase_path = os.path.join(d, "phase.npy")
    phase = np.load(phase_path) if os.path.exists(phase_path) else None
    S, y = griffinlim(logmel, p["config"], p["iterations"], p["momentum"], p["length"], phase)
    np.save(os.path.join(d, "magnitude.npy"), np.ascontiguousarray(S.T))
    np.save(os.path.join(d, "audio.npy"), y)


if __name__ == "__main__":
    main()
