#!/usr/bin/python3
"""Independent numpy/scipy reference for wavecat's melspec package.

Re-implements, without librosa, the semantics the Go code must match:
  * librosa.stft(center=True, pad_mode='reflect', window='hann') magnitude,
    computed in float64 (np.fft.rfft on reflect-padded, periodic-Hann frames);
  * librosa.filters.mel(htk=False, norm='slaney'), stored float32 as librosa;
  * log10(max(mel, 1e-10));
  * librosa.effects.trim (feature.rms with centred frames, zero padding as in
    librosa >= 0.10, plus the older reflect padding; amplitude_to_db with
    ref=max and amin=1e-5; frames above -top_db are kept);
  * scipy.signal.firwin(255, 70, pass_zero=False, fs=sr) + lfilter(b, [1], x)
    (called directly: scipy is the reference for these).

Usage:
  make_reference.py [--out DIR]            # the committed fixtures (speech, chirp, noise)
  make_reference.py --out DIR --random SEED [--config JSON]
                                           # one fresh random signal (used by the live Go test)
Writes NAME_input.npy (float32), NAME_logmel.npy (frames x n_mels float32),
NAME_trim.npy / NAME_trim_reflect.npy (int64 [start, end]),
NAME_highpass.npy (float32), filterbank.npy (n_mels x bins float32) and
reference.json (config and signal names).
Needs only /usr/bin/python3 with numpy and scipy (and espeak-ng for speech).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import scipy.io.wavfile
import scipy.signal

DEFAULT = dict(sample_rate=22050, n_fft=1024, hop=256, win_length=1024,
               n_mels=80, fmin=125.0, fmax=7600.0)


def hz_to_mel(f):
    f = np.atleast_1d(np.asarray(f, dtype=np.float64))
    f_sp = 200.0 / 3
    mel = f / f_sp
    min_log_hz = 1000.0
    logstep = np.log(6.4) / 27.0
    hi = f >= min_log_hz
    mel[hi] = min_log_hz / f_sp + np.log(f[hi] / min_log_hz) / logstep
    return mel


def mel_to_hz(m):
    m = np.atleast_1d(np.asarray(m, dtype=np.float64))
    f_sp = 200.0 / 3
    hz = f_sp * m
    min_log_mel = 1000.0 / f_sp
    logstep = np.log(6.4) / 27.0
    hi = m >= min_log_mel
    hz[hi] = 1000.0 * np.exp(logstep * (m[hi] - min_log_mel))
    return hz


def mel_filterbank(c):
    nb = 1 + c["n_fft"] // 2
    fftfreqs = np.linspace(0, c["sample_rate"] / 2.0, nb)
    lo, hi = hz_to_mel(c["fmin"])[0], hz_to_mel(c["fmax"])[0]
    mel_f = mel_to_hz(np.linspace(lo, hi, c["n_mels"] + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    w = np.zeros((c["n_mels"], nb), dtype=np.float32)  # librosa's default dtype
    for i in range(c["n_mels"]):
        lower = -ramps[i] / fdiff[i]
        upper = ramps[i + 2] / fdiff[i + 1]
        w[i] = np.maximum(0, np.minimum(lower, upper))
    enorm = 2.0 / (mel_f[2:c["n_mels"] + 2] - mel_f[:c["n_mels"]])
    w *= enorm[:, np.newaxis]
    return w


def stft_magnitude(y, c):
    n_fft, hop, win = c["n_fft"], c["hop"], c["win_length"]
    window = scipy.signal.get_window("hann", win, fftbins=True)
    lpad = (n_fft - win) // 2
    window = np.pad(window, (lpad, n_fft - win - lpad))
    yp = np.pad(y.astype(np.float64), n_fft // 2, mode="reflect")
    frames = 1 + (len(yp) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    return np.abs(np.fft.rfft(yp[idx] * window, axis=1))  # frames x bins


def log_mel(y, c, fb):
    mel = stft_magnitude(y, c) @ fb.astype(np.float64).T
    return np.log10(np.maximum(mel, 1e-10)).astype(np.float32)


def trim(y, top_db=60.0, frame_length=2048, hop_length=512, pad_mode="constant"):
    p = frame_length // 2
    yp = np.pad(y.astype(np.float64), p, mode=pad_mode)
    frames = 1 + (len(yp) - frame_length) // hop_length
    idx = np.arange(frame_length)[None, :] + hop_length * np.arange(frames)[:, None]
    rms = np.sqrt(np.mean(yp[idx] ** 2, axis=1))
    amin = 1e-5
    db = 20 * np.log10(np.maximum(amin, rms)) - 20 * np.log10(max(amin, rms.max()))
    nz = np.flatnonzero(db > -top_db)
    if nz.size == 0:
        return np.array([0, 0], dtype=np.int64)
    start = int(nz[0] * hop_length)
    end = min(len(y), int((nz[-1] + 1) * hop_length))
    return np.array([start, end], dtype=np.int64)


def highpass(y, sr):
    b = scipy.signal.firwin(255, 70.0, pass_zero=False, fs=sr)
    return scipy.signal.lfilter(b, [1.0], y.astype(np.float64)).astype(np.float32)


def speech(sr):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.wav")
        subprocess.run(["espeak-ng", "-w", path,
                        "The quick brown fox jumps over the lazy dog."], check=True)
        rate, x = scipy.io.wavfile.read(path)
    if rate != sr:
        sys.exit(f"espeak-ng produced {rate} Hz, expected {sr}")
    return (x.astype(np.float64) / 32768.0).astype(np.float32)


def chirp(sr):
    rng = np.random.default_rng(1)
    t = np.arange(int(1.6 * sr)) / sr
    s = 0.5 * scipy.signal.chirp(t, f0=100, t1=t[-1], f1=8000, method="logarithmic")
    quiet = lambda n: 1e-4 * rng.standard_normal(n)  # -74 dB against the chirp
    y = np.concatenate([quiet(int(0.3 * sr)), s, quiet(int(0.25 * sr) + 77)])
    return y.astype(np.float32)


def noise(sr):
    rng = np.random.default_rng(2)
    n = int(2.0 * sr) + 131
    env = np.clip(np.linspace(-0.4, 1.6, n), 0, 1)  # silence, linear fade in, hold
    return (0.1 * env * rng.standard_normal(n)).astype(np.float32)


def random_signal(seed, sr):
    rng = np.random.default_rng(seed)
    parts = [np.zeros(int(rng.integers(0, sr // 2)))]
    for _ in range(int(rng.integers(1, 4))):
        n = int(rng.integers(sr // 10, sr // 2))
        parts.append(rng.uniform(0.01, 0.8) * rng.standard_normal(n)
                     * np.hanning(n) ** rng.uniform(0.1, 2))
        parts.append(1e-6 * rng.standard_normal(int(rng.integers(0, sr // 4))))
    parts.append(np.zeros(int(rng.integers(0, sr // 2))))
    return np.clip(np.concatenate(parts), -1, 1).astype(np.float32)


def write(out, name, y, c, fb):
    np.save(os.path.join(out, f"{name}_input.npy"), y)
    np.save(os.path.join(out, f"{name}_logmel.npy"), log_mel(y, c, fb))
    np.save(os.path.join(out, f"{name}_trim.npy"), trim(y))
    np.save(os.path.join(out, f"{name}_trim_reflect.npy"), trim(y, pad_mode="reflect"))
    np.save(os.path.join(out, f"{name}_highpass.npy"), highpass(y, c["sample_rate"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--random", type=int, help="write one random signal with this seed")
    ap.add_argument("--config", help="JSON object overriding the default mel config")
    a = ap.parse_args()
    c = dict(DEFAULT)
    if a.config:
        c.update(json.loads(a.config))
    os.makedirs(a.out, exist_ok=True)
    fb = mel_filterbank(c)
    np.save(os.path.join(a.out, "filterbank.npy"), fb)
    sr = c["sample_rate"]
    if a.random is not None:
        signals = {"random": random_signal(a.random, sr)}
    else:
        signals = {"speech": speech(sr), "chirp": chirp(sr), "noise": noise(sr)}
    for name, y in signals.items():
        write(a.out, name, y, c, fb)
    with open(os.path.join(a.out, "reference.json"), "w") as f:
        json.dump({"config": c, "signals": list(signals)}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
