#!/usr/bin/python3
"""Independent numpy reference for evaluate.Quality (REFERENCE.md section 5).

Written from the specification, not from the Go code, and computed by
different routes where there is a choice:
  * frames: one fancy-indexing gather of the zero-padded signal (hop 256,
    1024-sample frames centred at f*256, 1 + len//256 frames);
  * speech frames: frame RMS within 40 dB of the loudest frame, in dB;
  * pitch: the autocorrelation of each mean-removed frame through a
    zero-padded FFT (2048 points, so no circular wrap), normalised per lag by
    sqrt(energy of x[:N-lag] * energy of x[lag:]) from cumulative sums;
    lags floor(sr/400)..ceil(sr/60); peak = the maximum; the chosen lag is
    the shortest local maximum whose parabolic vertex height is within 0.02
    of the highest vertex (the Go OctaveTolerance: a period's multiples
    correlate nearly as well as the period); the parabola through the
    chosen lag and its neighbours refines it; f0 = sr / lag;
  * voiced = speech frame of the reference and peak > 0.45;
  * band MCD: Blackman-windowed 1024-point power spectra, log magnitude
    0.5*ln(max(P, 1e-10)) set to 0.5*ln(1e-10) outside 125-7600 Hz, turned
    into a 25-coefficient mel-cepstrum (alpha 0.41) by evaluating the
    minimum-phase cepstral series at the all-pass-warped frequencies of a
    fine uniform grid in the warped domain and cosine-transforming it
    (numerical integration instead of the freqt recursion);
  * log-mel: the melspec reference's own numpy mel
    (testdata/reference/make_reference.py), log10, float32;
  * 16-bit full scale: the encoding round-half-away(v*32768) clipped to
    [-32768, 32767] lands on an end of the range.

Usage:
  quality_ref.py --ref REF.npy --test TEST.npy [--sr 22050] [--out OUT.json]
REF and TEST are 1-D float32 .npy files; the JSON (measures and per-frame
data) goes to OUT or stdout. Needs /usr/bin/python3 with numpy (and scipy,
which the mel reference imports).
"""
import argparse
import json
import math
import os
import sys

import numpy as np

HOP = 256
FRAME = 1024
SPEECH_DB = 40.0
F0_MIN, F0_MAX = 60.0, 400.0
VOICING = 0.45
GROSS = 0.2
OCTAVE_TOL = 0.02
ORDER, ALPHA, NFFT, EPS = 24, 0.41, 1024, 1e-10
BAND = (125.0, 7600.0)


def framed(y):
    """frames x FRAME float64 matrix of the zero-padded signal."""
    n = len(y)
    count = 1 + n // HOP
    padded = np.zeros(n + FRAME)
    padded[FRAME // 2:FRAME // 2 + n] = y
    idx = HOP * np.arange(count)[:, None] + np.arange(FRAME)[None, :]
    return padded[idx]


def speech_mask(ref):
    rms = np.sqrt(np.mean(framed(ref) ** 2, axis=1))
    top = rms.max()
    if top == 0:
        return np.zeros(len(rms), dtype=bool)
    with np.errstate(divide="ignore"):
        db = 20 * np.log10(rms / top)
    return db >= -SPEECH_DB


def pitch(y, sr):
    x = framed(y)
    x = x - x.mean(axis=1, keepdims=True)
    lo, hi = math.floor(sr / F0_MAX), math.ceil(sr / F0_MIN)
    lags = np.arange(lo, hi + 1)
    spec = np.fft.rfft(x, n=2 * FRAME, axis=1)
    acf = np.fft.irfft(np.abs(spec) ** 2, n=2 * FRAME, axis=1)[:, lo:hi + 1]
    sq = x ** 2
    head = np.concatenate([np.zeros((len(x), 1)), np.cumsum(sq, axis=1)], axis=1)  # head[:, i] = sum sq[:, :i]
    tail = np.cumsum(sq[:, ::-1], axis=1)[:, ::-1]  # tail[:, i] = sum sq[:, i:]
    e_first = head[:, FRAME - lags]
    e_second = tail[:, lags]
    den = np.sqrt(e_first * e_second)
    r = np.zeros_like(acf)
    ok = den > 0
    r[ok] = acf[ok] / den[ok]

    peak = r.max(axis=1)
    # Local maxima; the height of each is the vertex of the parabola through
    # it and its two neighbours (the raw value at the ends of the range).
    rows, width = r.shape
    lft = np.concatenate([np.full((rows, 1), -np.inf), r[:, :-1]], axis=1)
    rgt = np.concatenate([r[:, 1:], np.full((rows, 1), -np.inf)], axis=1)
    is_peak = (r >= lft) & (r >= rgt)
    lft0 = np.concatenate([np.zeros((rows, 1)), r[:, :-1]], axis=1)
    rgt0 = np.concatenate([r[:, 1:], np.zeros((rows, 1))], axis=1)
    bend = lft0 - 2 * r + rgt0
    bent = (bend < 0)
    bent[:, 0] = False
    bent[:, -1] = False
    safe = np.where(bent, bend, -1.0)
    offset = np.where(bent, 0.5 * (lft0 - rgt0) / safe, 0.0)
    height = np.where(bent, r - (lft0 - rgt0) ** 2 / (8 * safe), r)
    height = np.where(is_peak, height, -np.inf)
    top = height.max(axis=1)
    k = np.argmax(height >= top[:, None] - OCTAVE_TOL, axis=1)  # shortest
    lag = lo + k + offset[np.arange(rows), k]
    f0 = np.where(peak > 0, sr / lag, 0.0)
    return f0, peak


def warp_operator(sr):
    """Linear map from a one-sided log-magnitude spectrum (NFFT/2+1 bins)
    to mel-cepstral coefficients c~_0..c~_ORDER."""
    nb = NFFT // 2 + 1
    # Real cepstrum of each unit log spectrum; minimum-phase weights.
    ceps = np.fft.irfft(np.eye(nb), n=NFFT, axis=1).T[:nb]  # (quefrency, bin)
    w = np.full(nb, 2.0)
    w[0] = 1.0
    w[-1] = 1.0
    ceps = ceps * w[:, None]
    # log|H(w)| = sum_m c_m cos(m w). The warped axis beta relates to w by
    # e^{-jw} = (e^{-jbeta} + alpha) / (1 + alpha e^{-jbeta}).
    grid = 1 << 15
    beta = 2 * np.pi * np.arange(grid) / grid
    zb = np.exp(-1j * beta)
    omega = -np.angle((zb + ALPHA) / (1 + ALPHA * zb))
    series = np.cos(np.outer(omega, np.arange(nb)))  # (grid, quefrency)
    m = np.arange(ORDER + 1)
    proj = np.cos(np.outer(m, beta)) * (2.0 / grid)
    proj[0] /= 2
    return proj @ series @ ceps  # (ORDER+1, bins)


def band_mcep(y, sr, op):
    x = framed(y) * np.blackman(FRAME)[None, :]
    power = np.abs(np.fft.rfft(x, n=NFFT, axis=1)) ** 2
    logmag = 0.5 * np.log(np.maximum(power, EPS))
    hz = np.arange(NFFT // 2 + 1) * sr / NFFT
    outside = (hz < BAND[0]) | (hz > BAND[1])
    logmag[:, outside] = 0.5 * np.log(EPS)
    return logmag @ op.T


def log_mel_frames(ref, test, sr):
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "..", "testdata", "reference"))
    import make_reference as mr
    cfg = dict(mr.DEFAULT, sample_rate=sr)
    fb = mr.mel_filterbank(cfg)
    a = mr.log_mel(ref, cfg, fb).astype(np.float64)
    b = mr.log_mel(test, cfg, fb).astype(np.float64)
    return np.mean(np.abs(a - b), axis=1)


def mean_or_none(v):
    return float(np.mean(v)) if len(v) else None


def measures(ref, test, sr):
    n = min(len(ref), len(test))
    if n == 0:
        raise SystemExit("empty waveform")
    ref = ref[:n].astype(np.float64)
    test = test[:n].astype(np.float64)
    sp = speech_mask(ref)
    f0r, pkr = pitch(ref, sr)
    f0t, pkt = pitch(test, sr)
    vr = sp & (pkr > VOICING)
    vt = sp & (pkt > VOICING)
    both = vr & vt
    rel = np.abs(f0t - f0r) / np.where(both, f0r, 1)
    gross = both & (rel > GROSS)
    fine = both & ~gross
    cents = 1200 * np.log2(f0t[fine] / f0r[fine])

    op = warp_operator(sr)
    d = band_mcep(ref, sr, op)[:, 1:] - band_mcep(test, sr, op)[:, 1:]
    mcd = 10 / np.log(10) * np.sqrt(2 * np.sum(d ** 2, axis=1))
    mel = log_mel_frames(ref.astype(np.float32), test.astype(np.float32), sr)

    def dbfs(y):
        return 20 * np.log10(max(np.sqrt(np.mean(y ** 2)), 1e-10))

    scaled = test * 32768
    q = np.clip(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5), -32768, 32767)
    out = dict(
        voicing_agreement=mean_or_none((vr == vt)[sp]),
        gross_pitch_error=mean_or_none(gross[both]),
        f0_rmse_cents=float(np.sqrt(np.mean(cents ** 2))) if len(cents) else None,
        periodicity=mean_or_none(pkt[vr]),
        level_diff_db=float(dbfs(test) - dbfs(ref)),
        clipped_fraction=float(np.mean((q == 32767) | (q == -32768))),
        dc_offset=float(np.mean(test)),
        band_mcd_db=mean_or_none(mcd[sp]),
        log_mel_l1_speech=mean_or_none(mel[sp]),
        frames=int(len(sp)),
        speech_frames=int(sp.sum()),
        voiced_ref=int(vr.sum()),
        voiced_test=int(vt.sum()),
        voiced_both=int(both.sum()),
    )
    per_frame = dict(
        speech=sp.tolist(), f0_ref=f0r.tolist(), f0_test=f0t.tolist(),
        peak_ref=pkr.tolist(), peak_test=pkt.tolist(),
        voiced_ref=vr.tolist(), voiced_test=vt.tolist(),
        band_mcd=mcd.tolist(), log_mel_l1=mel.tolist(),
    )
    return dict(measures=out, frames=per_frame)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--sr", type=int, default=22050)
    ap.add_argument("--out")
    a = ap.parse_args()
    ref = np.load(a.ref).astype(np.float32).ravel()
    test = np.load(a.test).astype(np.float32).ravel()
    text = json.dumps(measures(ref, test, a.sr))
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
