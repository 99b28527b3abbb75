#!/usr/bin/env python3
"""Wake-word fixtures: reference takes of each built-in persona's name, and a long mix
of other speech and noise with the names said in several voices and speeds at known
times.

    python3 tools/wake_fixtures/make.py OUT [--minutes 10] [--seed 7]

writes OUT/refs/<name>/take-{1,2,3}.wav (the "user": espeak-ng en-us, three speeds),
OUT/mix.wav (24 kHz mono) and OUT/truth.json (every name's start and end, its voice
and speed). Everything is made by espeak-ng with a seeded generator, so the same
arguments give the same files. `assistant wake test OUT/mix.wav --refs OUT/refs --json`
is then scored against truth.json by score.py.
"""
import argparse
import io
import json
import os
import subprocess
import wave

import numpy as np

RATE = 24_000
NAMES = {
    "jarvis": "Jarvis",
    "friday": "Friday",
    "hal": "Hal",
    "glados": "GLaDOS",
    "moshi": "Moshi",
    "sage": "Sage",
}
# espeak-ng spells some names better phonetically.
SAY = {"glados": "glad oss", "hal": "hal", "moshi": "moshee"}
REF_VOICE = "en-us"
REF_SPEEDS = [150, 170, 190]
# The names in the mix: two in three by the enrolled user (REF_VOICE at other speeds
# and pitches than the takes), the rest by voices that never enrolled (reported apart:
# a spotter built from one person's takes is meant for that person).
USER_SHARE = 2 / 3
OTHER_VOICES = ["en-us+m3", "en-us+f2", "en-gb", "en-gb-x-rp+m1", "en-029+f4"]
TEST_SPEEDS = [135, 160, 185, 210]
USER_PITCHES = [35, 50, 65]
BED_VOICES = ["en-us+m1", "en-gb+f3", "en-us+m7", "en-gb-scotland", "en-us+f1", "en-029"]
BED_TEXT = """The committee met on Tuesday to talk about the harbour and the new bridge.
Most of the rain fell in the hills, so the river rose before anyone noticed.
She bought a jar of honey, a loaf of bread and some apples at the market.
Remember to water the plants and to lock the back door before you leave.
The train to the city leaves at seven fifteen from the second platform.
His garage is full of bicycles, old radios and boxes of letters.
We could try the other restaurant, the one with the garden and the fountain.
The price of fuel went up again, and the buses are running late.
Sometimes a quiet afternoon is the best part of the whole week.
Marshall said the service would start after the music.
The weather for Saturday's match looks dry, with a light wind from the west.
Harvest festivals are held all over the valley in the autumn.
A mosquito kept the whole family awake for most of the night.
The glass door at the end of the hall was left open again.
Could you pass me the salt and the pepper, please.
The museum opens at ten and closes early on Sundays.
Jars of paint were stacked on the shelves beside the window.
The gardener planted roses and thyme along the fence.
Everyone agreed the plan was good, but nobody wanted to start it.
The ship's captain ordered the crew to raise the anchor at dawn.""".split("\n")


def espeak(text, voice, speed, pitch=None):
    cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout"]
    if pitch is not None:
        cmd += ["-p", str(pitch)]
    wav = subprocess.run(cmd + [text], check=True, capture_output=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64) / 32768
    # Linear interpolation to 24 kHz is enough for speech from a 22.05 kHz synthesiser.
    n = int(round(len(x) * RATE / rate))
    t = np.arange(n) * rate / RATE
    y = np.interp(t, np.arange(len(x)), x)
    # espeak pads with silence; cut it so the recorded times are the word's own.
    loud = np.flatnonzero(np.abs(y) > 0.01)
    return y[loud[0]:loud[-1] + 1] if len(loud) else y


def write(path, x):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pcm = (np.clip(x, -1, 1) * 32767).astype(np.int16)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(pcm.tobytes())


def pink(rng, n):
    # Voss-like pink noise by filtering white noise in the frequency domain.
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec))
    spec[1:] /= np.sqrt(f[1:])
    spec[0] = 0
    x = np.fft.irfft(spec, n)
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--names", default=",".join(NAMES))
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    names = a.names.split(",")

    silence = lambda s: np.zeros(int(s * RATE))
    for key in names:
        for i, speed in enumerate(REF_SPEEDS):
            take = np.concatenate([silence(0.4), 0.5 * espeak(SAY.get(key, NAMES[key]), REF_VOICE, speed), silence(0.4)])
            write(f"{a.out}/refs/{key}/take-{i + 1}.wav", take)

    total = int(a.minutes * 60 * RATE)
    mix = np.zeros(total)
    # The bed: sentences in other voices, back to back with short pauses. None holds a
    # name; some hold words near one ("jars", "Marshall", "mosquito", "glass").
    pos = 0
    bed = []
    while pos < total:
        line = BED_TEXT[rng.integers(len(BED_TEXT))]
        voice = BED_VOICES[rng.integers(len(BED_VOICES))]
        x = 0.35 * espeak(line, voice, int(rng.integers(140, 200)))
        n = min(len(x), total - pos)
        mix[pos:pos + n] += x[:n]
        bed.append({"start": pos / RATE, "end": (pos + n) / RATE, "voice": voice, "text": line})
        pos += n + int(rng.uniform(0.3, 2.0) * RATE)
    # The names: about one every 10 s, alone or before a question, over the bed or in
    # a gap of their own, never within 3 s of each other.
    truth = []
    t = 2.0
    while True:
        t += rng.uniform(5.0, 11.0)
        if t > a.minutes * 60 - 4:
            break
        key = names[rng.integers(len(names))]
        user = rng.random() < USER_SHARE
        voice = REF_VOICE if user else OTHER_VOICES[rng.integers(len(OTHER_VOICES))]
        pitch = int(USER_PITCHES[rng.integers(len(USER_PITCHES))]) if user else None
        speed = TEST_SPEEDS[rng.integers(len(TEST_SPEEDS))]
        hey = rng.random() < 0.3
        word = espeak(("hey " if hey else "") + SAY.get(key, NAMES[key]), voice, speed, pitch)
        gain = 10 ** (rng.uniform(-6, 0) / 20) * 0.6
        start = int(t * RATE)
        n = min(len(word), total - start)
        # Duck the bed under the name so it is said over a pause, as people do.
        mix[start - RATE // 5:start + n + RATE // 5] *= 0.2
        mix[start:start + n] += gain * word[:n]
        truth.append({"name": key, "start": start / RATE, "end": (start + n) / RATE,
                      "voice": voice, "enrolled": bool(user), "pitch": pitch,
                      "speed": int(speed), "hey": bool(hey)})
    noise_db = rng.uniform(-42, -32)
    mix += 10 ** (noise_db / 20) * pink(rng, total)
    write(f"{a.out}/mix.wav", mix)
    with open(f"{a.out}/truth.json", "w") as f:
        json.dump({"seed": a.seed, "minutes": a.minutes, "noise_dbfs": round(noise_db, 1),
                   "ref_voice": REF_VOICE, "names": truth, "bed": bed}, f, indent=1)
    print(f"{a.out}: {len(truth)} names in {a.minutes} min, noise {noise_db:.1f} dBFS")


if __name__ == "__main__":
    main()
