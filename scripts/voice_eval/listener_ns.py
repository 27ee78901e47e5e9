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
        aligns each with the material by circular cross-correlation, block by block (the
        listener's jitter buffer moves the lag within a recording), then prints JSON
        {"pesq_off", "pesq_on", "pesq_in", "pause_db_off", "pause_db_on", "lag_moves_ms_off", ...}

pause_*_db is report.py's "Pause": how far the noise in speech pauses lies below the input's
noise, relative to the speech's gain through the whole path (so a level change does not count);
it needs the recording aligned with the material throughout (lag_moves_ms_*: how far the
blocks' lags spread). pause_depth_db_* needs no
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


# The listener's jitter buffer (NetEq) stretches and shrinks time as it goes: within one
# recording the lag to the material moves by a few ms at a time (seen: 0, +5.4, -0.9, +4.3 ms
# in four stretches of 11 s). One lag for the whole recording then lets speech onsets into the
# "pauses" and lowers the speech gain, both of which lower pause_db (a run read 16.2 dB where
# the alignment-free depth did not move). So each BLOCK of the recording is aligned on its own,
# within SEARCH of the whole recording's lag.
BLOCK = 24000
SEARCH = 2400
# A block whose best correlation with the material is weaker than this (little speech in it,
# or a jump inside it) keeps the lag of the block before.
MIN_SCORE = 0.5


def block_lags(o, ref, lag):
    """The lag of each BLOCK samples of `o` against the circular `ref` (o[i] ~ ref[i - lag]),
    searched within SEARCH of `lag`; one per block, the last block covering the rest."""
    n = len(ref)
    ext = np.concatenate([ref, ref, ref])
    lags = []
    cur = lag
    for b0 in range(0, n, BLOCK):
        seg = o[b0 : min(b0 + BLOCK, n)]
        k = len(seg)
        s = (b0 - lag - SEARCH) % n + n
        win = ext[s : s + k + 2 * SEARCH]
        size = 1 << int(np.ceil(np.log2(len(win) + k)))
        c = np.fft.irfft(np.fft.rfft(win, size) * np.conj(np.fft.rfft(seg, size)), size)
        c = c[: 2 * SEARCH + 1]
        d = int(np.argmax(c))
        energy = np.sqrt(np.sum(seg**2) * np.sum(win[d : d + k] ** 2)) + 1e-20
        if c[d] / energy >= MIN_SCORE:
            cur = lag + SEARCH - d
        lags.append(cur)
    return np.array(lags)


def follow(x, lags):
    """`x` (circular) laid out as the recording heard it: block b is x[i - lags[b]]."""
    n = len(x)
    i = np.arange(n)
    return x[(i - np.repeat(lags, BLOCK)[:n]) % n]


def measure_one(path, near, mic):
    fs, rec = wavfile.read(path)
    if rec.ndim > 1:
        rec = rec[:, 0]
    rec = rec.astype(np.float64)
    n = len(near)
    if len(rec) < n:
        sys.exit(f"{path}: {len(rec)} samples, shorter than the material's {n}")
    return measure_rec(rec[:n], near, mic)


def measure_rec(o, near, mic, blockwise=True, pesq=True):
    """The measures of one recording `o` (as long as the material), aligned block by block or
    (blockwise=False, for the self-test's comparison) with one lag throughout; PESQ null
    unless `pesq`."""
    n = len(near)
    cc = np.fft.irfft(np.fft.rfft(o) * np.conj(np.fft.rfft(near)), n)
    lag = int(np.argmax(cc))
    lags = block_lags(o, near, lag) if blockwise else np.full((n + BLOCK - 1) // BLOCK, lag)
    r = follow(near, lags)
    m = follow(mic, lags)
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
        "pesq": report.wb_pesq(r, o) if pesq else float("nan"),
        "pause_db": float(pause_db),
        "lag": lag,
        "lag_moves_ms": float((lags.max() - lags.min()) * 1000 / report.FS),
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


def stretch(x, rng, events):
    """`x` as a jitter buffer might play it: at `events` random places a pitch-period-long piece
    (2.5-15 ms) is cut out (NetEq's accelerate) or played twice (its preemptive expand)."""
    at = np.sort(rng.choice(np.arange(BLOCK // 4, len(x) - 1000), events, replace=False))
    out, prev = [], 0
    for p in at:
        d = int(rng.integers(120, 721))
        out.append(x[prev:p])
        if rng.random() < 0.5:
            prev = p + d
        else:
            out.append(x[p - d : p])
            prev = p
    out.append(x[prev:])
    return np.concatenate(out)


def selftest():
    """The measure on recordings made from the material with a known pause fall, a level, an
    offset and a jitter buffer's stretches, swept; prints JSON, a list of cases each with the
    truth, the fall measured block by block and with one lag."""
    d = condition_dir()
    near, _ = material.read_wav(os.path.join(d, "near.wav"))
    mic, _ = material.read_wav(os.path.join(d, "mic.wav"))
    near = near.astype(np.float64)
    mic = mic.astype(np.float64)
    noise = mic - near
    n = len(near)
    rng = np.random.default_rng(20261206)
    cases = []
    for fall in (15.0, 25.0, 35.0):
        for events in (0, 2, 6, 12):
            gain = 10 ** (rng.uniform(-4, 2) / 20)
            start = int(rng.integers(0, n))
            seed = int(rng.integers(1 << 31))

            def heard(x):
                # The same stretches in both recordings (the same seed).
                tiled = np.roll(np.tile(x, 3), -start)
                y = stretch(tiled, np.random.default_rng(seed), events) if events else tiled
                return gain * y[:n]

            off = heard(mic)
            on = heard(near + noise * 10 ** (-fall / 20))
            a = {b: measure_rec(off, near, mic, b, False)["pause_db"] for b in (True, False)}
            b = {b: measure_rec(on, near, mic, b, False)["pause_db"] for b in (True, False)}
            cases.append(
                {
                    "truth": fall,
                    "stretches": events,
                    "fall": b[True] - a[True],
                    "fall_one_lag": b[False] - a[False],
                }
            )
    print(json.dumps(cases))


def main():
    if len(sys.argv) in (3, 4) and sys.argv[1] == "prepare":
        prepare(sys.argv[2], *(int(a) for a in sys.argv[3:]))
    elif len(sys.argv) == 2 and sys.argv[1] == "selftest":
        selftest()
    elif len(sys.argv) == 4 and sys.argv[1] == "measure":
        measure(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
