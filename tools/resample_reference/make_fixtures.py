#!/usr/bin/env python3
"""Make the fixtures of tests/audio/resample_quality.rs: 1 s speech excerpts at 8, 16,
24, 44.1 and 48 kHz, and the same speech resampled by two independent resamplers,
sox (`rate -v -L`: very high quality, linear phase) and scipy
(`resample_poly`, its default Kaiser window), to and from 24 kHz.

Needs sox on PATH and `pip install numpy scipy`. Run from the repository root:
    python3 tools/resample_reference/make_fixtures.py
Every file is 24-bit PCM mono, 1 s long (the input excerpts) or that resampled.
"""
import math
import pathlib
import subprocess
import sys

import numpy as np
from scipy.io import wavfile
from scipy.signal import resample_poly

ROOT = pathlib.Path(__file__).resolve().parents[2]
CLIPS = ROOT / "tests/fixtures/audio"
OUT = ROOT / "tests/fixtures/resample"
RATES = [8000, 16000, 44100, 48000]
MODEL = 24000


def read(path):
    rate, x = wavfile.read(path)
    x = x.astype(np.float64) / 32768.0
    if x.ndim == 2:
        x = x.mean(axis=1)
    return rate, x


def write24(path, rate, x):
    """24-bit PCM WAV, rounded (no dither)."""
    q = np.clip(np.round(x * 8388608.0), -8388608, 8388607).astype(np.int32)
    b = q.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    hdr = b"RIFF" + (36 + len(b)).to_bytes(4, "little") + b"WAVEfmt "
    hdr += (16).to_bytes(4, "little") + (1).to_bytes(2, "little") + (1).to_bytes(2, "little")
    hdr += rate.to_bytes(4, "little") + (rate * 3).to_bytes(4, "little") + (3).to_bytes(2, "little") + (24).to_bytes(2, "little")
    hdr += b"data" + len(b).to_bytes(4, "little")
    path.write_bytes(hdr + b)


def read24(path):
    rate, x = wavfile.read(path)
    return rate, x.astype(np.float64) / 2147483648.0  # scipy widens 24-bit to int32


def loudest_second(rate, x):
    n = rate
    starts = range(0, len(x) - n, rate // 10)
    s = max(starts, key=lambda i: float(np.sum(x[i:i + n] ** 2)))
    y = x[s:s + n] - np.mean(x[s:s + n])
    y = y * (0.5 / np.max(np.abs(y)))
    fade = rate // 50  # 20 ms raised-cosine fades: the edges are not under test
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade) / fade)
    y[:fade] *= ramp
    y[-fade:] *= ramp[::-1]
    return y


def sox(src, dst, rate):
    effect = ["rate", "-v", "-L", str(rate)]
    subprocess.run(["sox", "-D", str(src), "-b", "24", str(dst)] + effect, check=True)


def poly(x, rate_in, rate_out):
    g = math.gcd(rate_in, rate_out)
    return resample_poly(x, rate_out // g, rate_in // g)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    # Inputs as devices deliver them: recordings at their own rate (48 and 16 kHz),
    # and the usual sox conversions of them for 44.1 and 8 kHz (sox's default
    # quality keeps 95% of the band, as a phone link or a converter would).
    rate, x = read(CLIPS / "interrupt_48k_stereo.wav")
    assert rate == 48000
    write24(OUT / "speech_48k.wav", 48000, loudest_second(48000, x))
    rate, x = read(CLIPS / "count_16k_mono.wav")
    assert rate == 16000
    write24(OUT / "speech_16k.wav", 16000, loudest_second(16000, x))
    subprocess.run(["sox", "-D", str(OUT / "speech_48k.wav"), "-b", "24", str(OUT / "speech_44k1.wav"), "rate", "44100"], check=True)
    subprocess.run(["sox", "-D", str(OUT / "speech_16k.wav"), "-b", "24", str(OUT / "speech_8k.wav"), "rate", "8000"], check=True)
    # The model's own voice for the other direction: a 24 kHz recording.
    rate, x = read(CLIPS / "hello_24k_mono.wav")
    assert rate == MODEL
    write24(OUT / "speech_24k.wav", MODEL, loudest_second(MODEL, x))
    for r in RATES:
        src = OUT / f"speech_{name(r)}.wav"
        sox(src, OUT / f"sox_{name(r)}_to_24k.wav", MODEL)
        sox(OUT / "speech_24k.wav", OUT / f"sox_24k_to_{name(r)}.wav", r)
        _, xr = read24(src)
        write24(OUT / f"scipy_{name(r)}_to_24k.wav", MODEL, poly(xr, r, MODEL))
        _, x24 = read24(OUT / "speech_24k.wav")
        write24(OUT / f"scipy_24k_to_{name(r)}.wav", r, poly(x24, MODEL, r))
    # How far the two references agree with each other (what "good" looks like).
    for r in RATES:
        for a, b in [(f"sox_{name(r)}_to_24k", f"scipy_{name(r)}_to_24k"), (f"sox_24k_to_{name(r)}", f"scipy_24k_to_{name(r)}")]:
            _, ya = read24(OUT / f"{a}.wav")
            _, yb = read24(OUT / f"{b}.wav")
            n = min(len(ya), len(yb))
            e = ya[300:n - 300] - yb[300:n - 300]
            snr = 10 * np.log10(np.sum(ya[300:n - 300] ** 2) / np.sum(e ** 2))
            print(f"{a} vs {b}: {snr:.1f} dB ({len(ya)} / {len(yb)} samples)", file=sys.stderr)


def name(r):
    return "44k1" if r == 44100 else f"{r // 1000}k"


if __name__ == "__main__":
    main()
