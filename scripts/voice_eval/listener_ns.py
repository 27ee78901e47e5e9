#!/usr/bin/env python3
"""Noise suppression as a Chromium listener hears it (issue 10, acceptance 2): the voice chain's
yardstick (report.py's wideband PESQ and speech-pause measure) applied to what the listener page
recorded, with the Studio's NS off and then on.

    listener_ns.py prepare OUT.wav [PERIODS]
        writes material.py's `noise-white` condition (speech and white noise at 5 dB SNR, 10 s)
        PERIODS times over (default 12: two minutes, longer than the test's three recordings
        with the measuring between them) as a stereo float WAV to play into the Studio's input;
        prints JSON {"period_s": 10.0, "periods": 12, "dir": ...}
    listener_ns.py measure OFF.wav ON.wav
        each a recording (stereo float, 48 kHz, at least one period long) made at the listener;
        aligns each with the material by circular cross-correlation, then prints JSON
        {"pesq_off", "pesq_on", "pesq_in", "pause_off_db", "pause_on_db", ...}

pause_*_db is report.py's "Pause": how far the noise in speech pauses lies below the input's
noise, relative to the speech's gain through the whole path (so a level change does not count);
it needs the recording aligned with the material throughout. pause_depth_db_* needs no
alignment: the loudest tenth of 100 ms windows (speech) over the quietest tenth (pauses), dB.
"""

import json
import os
import sys

import numpy as np
from scipy.io import wavfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import material  # noqa: E402
import report  # noqa: E402

CONDITION = "noise-white"


def condition_dir():
    root = material.cache_dir()
    d = os.path.join(root, CONDITION)
    if not os.path.exists(os.path.join(d, "meta.json")):
        work = os.path.join(root, "speech")
        os.makedirs(work, exist_ok=True)
        material.make(CONDITION, d, work)
    return d


def prepare(out, periods=12):
    d = condition_dir()
    mic, fs = material.read_wav(os.path.join(d, "mic.wav"))
    x = np.tile(mic, periods).astype(np.float32)
    wavfile.write(out, fs, np.stack([x, x], axis=1))
    print(json.dumps({"period_s": len(mic) / fs, "periods": periods, "dir": d}))


def measure_one(path, near, mic):
    fs, rec = wavfile.read(path)
    if rec.ndim > 1:
        rec = rec[:, 0]
    rec = rec.astype(np.float64)
    n = len(near)
    if len(rec) < n:
        sys.exit(f"{path}: {len(rec)} samples, shorter than the material's {n}")
    o = rec[:n]
    cc = np.fft.irfft(np.fft.rfft(o) * np.conj(np.fft.rfft(near)), n)
    lag = int(np.argmax(cc))
    r = np.roll(near, lag)
    m = np.roll(mic, lag)
    pc = np.mean(report.frames(r) ** 2, axis=1)
    pause = pc < 10 ** (-70 / 10)
    speech = pc > pc.max() * 1e-3
    noise_in = np.mean(report.frames(m - r) ** 2, axis=1)
    fo, fr = report.frames(o), report.frames(r)
    po = np.mean(fo**2, axis=1)
    gain = np.sum(fo[speech] * fr[speech]) / np.sum(fr[speech] ** 2)
    pause_db = 10 * np.log10(np.mean(noise_in[pause]) * gain**2 / (np.mean(po[pause]) + 1e-20))
    # Alignment-free as well (the listener's jitter buffer stretches time, which a single
    # alignment over 10 s does not follow): the quietest tenth of 100 ms windows (the pauses)
    # below the loudest tenth (speech), in dB.
    w = np.sqrt(np.mean(report.frames(o, 4800) ** 2, axis=1)) + 1e-10
    wdb = 20 * np.log10(w)
    return {
        "pause_depth_db": float(np.percentile(wdb, 90) - np.percentile(wdb, 10)),
        "pesq": report.wb_pesq(r, o),
        "pause_db": float(pause_db),
        "lag": lag,
        "gain_db": float(20 * np.log10(abs(gain) + 1e-20)),
        "pause_frames": int(pause.sum()),
        "level_pause_dbfs": float(10 * np.log10(np.mean(po[pause]) + 1e-20)),
    }


def measure(off, on):
    d = condition_dir()
    near, _ = material.read_wav(os.path.join(d, "near.wav"))
    mic, _ = material.read_wav(os.path.join(d, "mic.wav"))
    a = measure_one(off, near, mic)
    b = measure_one(on, near, mic)
    out = {f"{k}_off": v for k, v in a.items()}
    out.update({f"{k}_on": v for k, v in b.items()})
    out["pesq_in"] = report.wb_pesq(near, mic)
    # JSON has no NaN or infinity (a silent recording gives both): null instead.
    print(json.dumps({k: (v if np.isfinite(v) else None) for k, v in out.items()}))


def main():
    if len(sys.argv) in (3, 4) and sys.argv[1] == "prepare":
        prepare(sys.argv[2], *(int(a) for a in sys.argv[3:]))
    elif len(sys.argv) == 4 and sys.argv[1] == "measure":
        measure(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
