#!/usr/bin/env python3
"""Test material for the voice chain that nobody tuned the chain to.

Rooms are image-source shoeboxes from pyroomacoustics (``inverse_sabine`` hits the target RT60),
voices come from espeak-ng, noises are synthesised here. Everything is deterministic by seed and
cached under ``$ONMIC_VOICE_EVAL_CACHE`` (default ``~/.cache/onmic/voice-eval``) in a directory
named after a hash of this file, so editing the script regenerates the material.

Conditions (each a directory with ``mic.wav``, ``far.wav`` when there is an echo, ``near.wav``
= the near-end component the output is judged against, and ``meta.json``):

* ``echo-*``: far-end speech only, through a room (RT60 0.2-0.8 s, loudspeaker-mic 0.3-2 m),
  after a bulk device delay (0-300 ms) and with a slow clock drift between playout and capture.
* ``dt-*``: double talk - the far end alone for 4 s, then a near-end talker at the same level.
* ``noise-*``: a talker at -26 dBFS plus white, pink, babble, fan hum or keyboard clicks at 5 dB SNR.
* ``clean-*``: a talker at -26 or -10 dBFS, nothing else.

Usage: ``material.py [--subset] [--print-dir]`` (prints the cache directory).
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pyroomacoustics as pra
from scipy.io import wavfile
from scipy.signal import lfilter, resample_poly

FS = 48_000
SCRIPT_HASH = hashlib.sha256(open(__file__, "rb").read()).hexdigest()[:16]

VOICES = ["en-us", "en+f3", "en-gb+m3", "en+f4", "en-us+m5", "en+f2"]
TEXTS = [
    "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. "
    "It is easy to tell the depth of a well. These days a chicken leg is a rare dish. "
    "Rice is often served in round bowls. The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck. The hogs were fed chopped corn and garbage. "
    "Four hours of steady work faced us. A large size in stockings is hard to sell. "
    "The boy was there when the sun rose. A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring. Kick the ball straight and follow through. "
    "Help the woman get back to her feet. A pot of tea helps to pass the evening. "
    "Smoky fires lack flame and heat. The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea. The girl at the booth sold fifty bonds. "
    "The small pup gnawed a hole in the sock. The fish twisted and turned on the bent hook. "
    "Press the pants and sew a button on the vest. The swan dive was far short of perfect.",
]

# Full sweep and the subset the test suite runs (acceptance bars asserted on the subset).
ECHO_RT60 = [0.2, 0.4, 0.6, 0.8]
ECHO_DELAY_MS = [0, 60, 200, 300]
DT_RT60 = [0.2, 0.4, 0.6]
DT_DELAY_MS = [0, 60, 200]
NOISES = ["white", "pink", "babble", "fan", "keyboard"]
DISTANCES = [0.3, 0.7, 1.2, 2.0]

SUBSET = {
    "echo-rt0.2-d0",
    "echo-rt0.6-d200",
    "echo-rt0.4-d60",
    "echo-rt0.8-d300",
    "dt-rt0.4-d60",
    "dt-rt0.6-d200",
    "noise-white",
    "noise-pink",
    "noise-babble",
    "noise-fan",
    "noise-keyboard",
    "clean-26",
    "clean-10",
}


def cache_dir():
    base = os.environ.get("ONMIC_VOICE_EVAL_CACHE") or os.path.expanduser("~/.cache/onmic/voice-eval")
    return os.path.join(base, SCRIPT_HASH)


def speech(voice, text, secs, work):
    """espeak-ng speech at 48 kHz, repeated to at least `secs` seconds."""
    path = os.path.join(work, f"{voice}-{hashlib.md5(text.encode()).hexdigest()[:8]}.wav")
    if not os.path.exists(path):
        try:
            subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", path, text], check=True)
        except FileNotFoundError:
            sys.exit("espeak-ng is missing: install it with `cargo xtask setup` (Debian package espeak-ng)")
    x, fs = read_wav(path)
    y = resample_poly(x, FS, fs)
    one = y
    while len(y) < secs * FS:
        y = np.concatenate([y, np.zeros(int(0.3 * FS)), one])
    return y[: int(secs * FS)]


def active_rms(x):
    """RMS over 20 ms frames within 40 dB of the loudest (active speech level, P.56-like)."""
    f = 960
    n = len(x) // f
    p = np.mean(x[: n * f].reshape(n, f) ** 2, axis=1)
    act = p > p.max() * 1e-4
    return float(np.sqrt(np.mean(p[act]))) if act.any() else 0.0


def set_level(x, dbfs):
    return x * (10 ** (dbfs / 20) / max(active_rms(x), 1e-12))


def rir(rng, rt60, distance):
    """An image-source shoebox RIR (source at `distance` from the mic) hitting `rt60`."""
    dims = np.array([rng.uniform(4.5, 7.0), rng.uniform(3.5, 5.5), rng.uniform(2.6, 3.2)])
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    room = pra.ShoeBox(dims, fs=FS, materials=pra.Material(absorption), max_order=min(max_order, 60))
    mic = np.array([dims[0] * 0.45, dims[1] * 0.5, 1.2])
    for _ in range(100):
        ang = rng.uniform(0, 2 * np.pi)
        src = mic + distance * np.array([np.cos(ang), np.sin(ang), rng.uniform(-0.15, 0.15)])
        if np.all(src > 0.3) and np.all(src < dims - 0.3):
            break
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    h = np.array(room.rir[0][0])
    return h / np.max(np.abs(h))


def drift(x, ppm):
    """`x` as played by a clock `ppm` faster than the capture clock (linear interpolation)."""
    t = np.arange(len(x)) * (1 + ppm * 1e-6)
    return np.interp(t, np.arange(len(x)), x, right=0.0)


def noise(kind, n, rng, work):
    if kind == "white":
        return rng.standard_normal(n)
    if kind == "pink":
        # Voss-McCartney-like via the standard 1/f IIR approximation (Kellet).
        b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
        a = [1, -2.494956002, 2.017265875, -0.522189400]
        return lfilter(b, a, rng.standard_normal(n))
    if kind == "babble":
        y = np.zeros(n)
        for i, v in enumerate(VOICES[:5]):
            s = speech(v, TEXTS[(i + 1) % len(TEXTS)], n / FS + 3, work)
            s = np.roll(s, int(rng.integers(0, FS * 3)))[:n]
            y += set_level(s, -30)
        return y
    if kind == "fan":
        t = np.arange(n) / FS
        f0 = 100.0 * (1 + 0.002 * np.sin(2 * np.pi * 0.2 * t))
        hum = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / FS + rng.uniform(0, 6)) / k for k in range(1, 8))
        air = lfilter([1.0], [1, -0.95], rng.standard_normal(n)) * 0.05
        return hum + air
    if kind == "keyboard":
        y = np.zeros(n)
        pos = 0
        while True:
            pos += int(rng.uniform(0.08, 0.35) * FS)
            if pos + 2000 >= n:
                break
            k = np.arange(1500)
            click = rng.standard_normal(1500) * np.exp(-k / rng.uniform(80, 250))
            click = lfilter([1, -0.9], [1], click)
            y[pos : pos + 1500] += click * rng.uniform(0.5, 1.5)
        return y + 0.003 * rng.standard_normal(n)
    raise ValueError(kind)


def write(path, x):
    wavfile.write(path, FS, np.clip(x, -1, 1).astype(np.float32))


def read_wav(path):
    """(samples as float64 in -1..1, rate) from a 16-bit PCM or float WAV; first channel."""
    fs, x = wavfile.read(path)
    if x.ndim > 1:
        x = x[:, 0]
    if x.dtype == np.int16:
        x = x / 32768.0
    elif x.dtype == np.int32:
        x = x / 2147483648.0
    return x.astype(np.float64), fs


def seed_of(name):
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)


def make(name, out, work):
    rng = np.random.default_rng(seed_of(name))
    os.makedirs(out, exist_ok=True)
    meta = {"name": name}
    def floor(n):  # the microphone's own noise, -65 dBFS
        return 10 ** (-65 / 20) * rng.standard_normal(n)

    if name.startswith(("echo-", "dt-")):
        kind, rt, d = name.split("-")
        rt60, delay_ms = float(rt[2:]), int(d[1:])
        secs = 12.0 if kind == "echo" else 16.0
        vi = seed_of(name) % len(VOICES)
        far = set_level(speech(VOICES[vi], TEXTS[vi % len(TEXTS)], secs, work), -16)
        dist = DISTANCES[seed_of(name + "d") % len(DISTANCES)]
        ppm = float(rng.uniform(-80, 80))
        h = rir(rng, rt60, dist)
        echo = np.convolve(drift(far, ppm), h)[: len(far)]
        echo = np.concatenate([np.zeros(delay_ms * FS // 1000), echo])[: len(far)]
        echo = set_level(echo, -20)
        mic = echo + floor(len(far))
        meta.update(rt60=rt60, delay_ms=delay_ms, distance_m=dist, drift_ppm=ppm)
        near = np.zeros(len(far))
        if kind == "dt":
            nv = VOICES[(vi + 1) % len(VOICES)]
            s = speech(nv, TEXTS[(vi + 2) % len(TEXTS)], secs - 4, work)
            hn = rir(rng, rt60, 0.3 if rng.uniform() < 0.5 else 0.5)
            s = set_level(np.convolve(s, hn)[: len(s)], -20)
            near[4 * FS :] = s[: len(far) - 4 * FS]
            mic = mic + near
            meta.update(dt_start_s=4.0)
        write(os.path.join(out, "far.wav"), far)
        write(os.path.join(out, "mic.wav"), mic)
        write(os.path.join(out, "echo.wav"), echo)
        write(os.path.join(out, "near.wav"), near)
    elif name.startswith("noise-"):
        kind = name.split("-")[1]
        vi = seed_of(name) % len(VOICES)
        clean = set_level(speech(VOICES[vi], TEXTS[vi % len(TEXTS)], 10.0, work), -26)
        nz = noise(kind, len(clean), rng, work)
        nz = nz * (10 ** (-31 / 20) / np.sqrt(np.mean(nz**2)))  # 5 dB below the speech's level
        write(os.path.join(out, "near.wav"), clean)
        write(os.path.join(out, "mic.wav"), clean + nz + floor(len(clean)))
        meta.update(noise=kind, snr_db=5.0)
    elif name.startswith("clean-"):
        level = -int(name.split("-")[1])
        vi = seed_of(name) % len(VOICES)
        clean = set_level(speech(VOICES[vi], TEXTS[vi % len(TEXTS)], 10.0, work), level)
        write(os.path.join(out, "near.wav"), clean)
        write(os.path.join(out, "mic.wav"), clean)
        meta.update(level_dbfs=level)
    else:
        raise ValueError(name)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f)


def all_conditions():
    names = [f"echo-rt{r}-d{d}" for r in ECHO_RT60 for d in ECHO_DELAY_MS]
    names += [f"dt-rt{r}-d{d}" for r in DT_RT60 for d in DT_DELAY_MS]
    names += [f"noise-{k}" for k in NOISES]
    names += ["clean-26", "clean-10"]
    return names


def ensure(subset=False):
    """Generates what is missing; returns [(name, dir)]."""
    root = cache_dir()
    work = os.path.join(root, "speech")
    os.makedirs(work, exist_ok=True)
    out = []
    for name in all_conditions():
        if subset and name not in SUBSET:
            continue
        d = os.path.join(root, name)
        if not os.path.exists(os.path.join(d, "meta.json")):
            make(name, d, work)
        out.append((name, d))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--subset", action="store_true", help="only the suite's subset")
    args = ap.parse_args()
    for name, d in ensure(args.subset):
        print(name, d)


if __name__ == "__main__":
    main()
