#!/usr/bin/env python3
"""Runs the voice chain's offline CLI (and GStreamer's webrtcdsp beside it) over every condition
of material.py and prints one table.

Measures (near-end judged against the near-end component at the microphone, 16 kHz for PESQ):

* ERLE2: echo-only conditions, 10 log10(mic power / output power) after the first 2 s.
* PESQ: wideband PESQ (ITU-T P.862.2, `pesq` package); for double talk over the double-talk
  part, for noise also the unprocessed input's (``in``), for clean speech against the input.
* STOI: `pystoi`, output against the near-end component (time-aligned by cross-correlation).
* EchoDT: double talk, how far the echo-to-near-end ratio fell from input to output (the near
  end is projected out of the output frame by frame, what is left counts as echo — so whatever
  the chain does to the near end's spectrum within a frame counts as echo too).
* EchoOut: the same fall with the output split exactly into the near end's part and what is
  left of the echo: the CLI is given the microphone's near-end part (the microphone less the
  echo added to it; `--near-component`) and carries it through every stage's own gains beside
  the microphone (`--aec-components`; docs/voice-chain.md, "The split"). This is what
  acceptance 2's "echo 20 dB down in double talk" is read on.
* EchoAEC: the same, on the AEC stage's output of the same run (what the stages after it do
  is EchoOut − EchoAEC).
* Pause: noise conditions, how far the noise in speech pauses fell relative to the speech
  (so the AGC's gain does not count as noise).
* Level: clean speech, the output's active-speech level (AGC target -18 dBFS).

Usage: report.py [--subset] [--json OUT] [--bin PATH] [--no-gst] [--off STAGES] [--only PREFIX]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from pesq import pesq
from pystoi import stoi
from scipy.io import wavfile
from scipy.signal import resample_poly

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import material  # noqa: E402

FS = material.FS
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def default_bin():
    """Builds the offline CLI with cargo and returns the executable cargo reports."""
    r = subprocess.run(
        ["cargo", "build", "-p", "onmic-audio", "--bin", "onmic-audio", "--message-format=json"],
        cwd=ROOT, capture_output=True, text=True,
    )
    if r.returncode != 0:
        sys.exit(f"building onmic-audio failed:\n{r.stderr[-3000:]}")
    for line in r.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") and msg["target"]["name"] == "onmic-audio":
            return msg["executable"]
    sys.exit("cargo did not report the onmic-audio executable")


def run_onmic(binary, d, out, off=None, ns_level=None, components=None):
    args = [binary, "process", os.path.join(d, "mic.wav"), "--mode", "voice", "--quiet", "--out", out]
    if ns_level:
        args += ["--ns-level", ns_level]
    if off:
        args += ["--off", off]
    if os.path.exists(os.path.join(d, "far.wav")):
        args += ["--aec-ref", os.path.join(d, "far.wav")]
    if components:
        args += ["--near-component", components[0], "--aec-components", components[1]]
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"onmic-audio failed on {d}: {r.stderr}")


def run_gst(d, out):
    """webrtcdsp (Debian's WebRTC APM): NS high + AGC, and AEC fed by webrtcechoprobe."""
    mic = os.path.join(d, "mic.wav")
    far = os.path.join(d, "far.wav")
    caps = "audio/x-raw,format=S16LE,rate=48000,channels=1"
    if os.path.exists(far):
        pipe = (
            f"filesrc location={far} ! wavparse ! audioconvert ! {caps} ! webrtcechoprobe ! fakesink sync=false "
            f"filesrc location={mic} ! wavparse ! audioconvert ! {caps} ! webrtcdsp echo-cancel=true "
        )
    else:
        pipe = f"filesrc location={mic} ! wavparse ! audioconvert ! {caps} ! webrtcdsp echo-cancel=false "
    pipe += f"noise-suppression=true noise-suppression-level=high gain-control=true ! audioconvert ! wavenc ! filesink location={out}"
    try:
        r = subprocess.run(["gst-launch-1.0", "-q"] + pipe.split(), capture_output=True, text=True)
    except FileNotFoundError:
        sys.exit("gst-launch-1.0 is missing: `cargo xtask setup` installs gstreamer1.0-tools and -plugins-bad")
    if r.returncode != 0:
        sys.exit(f"webrtcdsp pipeline failed on {d}: {r.stderr}")


def align(ref, out, max_lag=FS // 5):
    """`out` shifted so it lines up with `ref` (lag 0..max_lag found by cross-correlation)."""
    n = min(len(ref), len(out))
    r, o = ref[:n], out[:n]
    spec = np.fft.rfft(o, 2 * n) * np.conj(np.fft.rfft(r, 2 * n))
    cc = np.fft.irfft(spec)[: max_lag + 1]
    lag = int(np.argmax(np.abs(cc)))
    o = np.concatenate([out[lag:], np.zeros(lag)])[:n]
    return r, o


def to16(x):
    return resample_poly(x, 1, 3)


def wb_pesq(ref, deg):
    try:
        return float(pesq(16000, to16(ref), to16(deg), "wb"))
    except Exception as e:  # noqa: BLE001 - pesq raises for no utterance found etc.
        print(f"pesq failed: {e}", file=sys.stderr)
        return float("nan")


def power_db(x):
    return 10 * np.log10(np.mean(x**2) + 1e-20)


def frames(x, f=960):
    n = len(x) // f
    return x[: n * f].reshape(n, f)


def near_part(d, path):
    """The microphone's near-end part: the microphone less the echo added to it (the near end
    and the microphone's own noise floor)."""
    mic, _ = material.read_wav(os.path.join(d, "mic.wav"))
    echo, _ = material.read_wav(os.path.join(d, "echo.wav"))
    material.write(path, mic - echo)


def projected_fall(ratio_in, r, o):
    """EchoDT (above): how far the echo-to-near-end ratio fell from `ratio_in` (the input's) to
    the output `o`, the near end `r` it is aligned to projected out of it per frame."""
    fr, fo = frames(r), frames(o)
    alpha = np.sum(fr * fo, axis=1) / (np.sum(fr * fr, axis=1) + 1e-12)
    resid = fo - alpha[:, None] * fr
    near_out = np.sum((alpha[:, None] * fr) ** 2)
    ratio_out = np.sum(resid**2) / (near_out + 1e-20)
    return 10 * np.log10(ratio_in / (ratio_out + 1e-20))


def split_falls(ratio_in, parts_path, s):
    """EchoAEC and EchoOut (above) from the CLI's `--aec-components` file, over the double talk
    from sample `s`: channels 0/1 the AEC stage's output and its near-end part, 2/3 (when the
    split follows the whole chain) the output and its near-end part."""
    _, parts = wavfile.read(parts_path)
    parts = parts.astype(np.float64)
    res = {}
    for key, ch in (("echo_aec", 0), ("echo_out", 2)):
        if parts.shape[1] < ch + 2:
            continue
        out, near_out = parts[s:, ch], parts[s:, ch + 1]
        ratio_out = np.sum((out - near_out) ** 2) / (np.sum(near_out**2) + 1e-20)
        res[key] = 10 * np.log10(ratio_in / (ratio_out + 1e-20))
    return res


def measure(name, d, out_path, parts_path=None):
    """The measures of one engine's output `out_path` on condition `name` (directory `d`);
    `parts_path`: the CLI's split of a double-talk run (`--aec-components`), for EchoAEC and
    EchoOut."""
    meta = json.load(open(os.path.join(d, "meta.json")))
    out, _ = material.read_wav(out_path)
    mic, _ = material.read_wav(os.path.join(d, "mic.wav"))
    near, _ = material.read_wav(os.path.join(d, "near.wav"))
    n = min(len(out), len(mic))
    out, mic, near = out[:n], mic[:n], near[:n]
    res = {}
    if name.startswith("echo-"):
        s = 2 * FS
        res["erle"] = power_db(mic[s:]) - power_db(out[s:])
    elif name.startswith("dt-"):
        s = int(meta["dt_start_s"] * FS)
        echo, _ = material.read_wav(os.path.join(d, "echo.wav"))
        r, o = align(near[s:], out[s:])
        res["pesq"] = wb_pesq(r, o)
        res["stoi"] = float(stoi(r, o, FS, extended=False))
        ratio_in = np.sum(echo[s:] ** 2) / (np.sum(near[s:] ** 2) + 1e-20)
        # Per 20 ms frame, the near end's share of the output by least squares; the rest is echo
        # (plus distortion, so this under-states the echo's reduction).
        res["echo_dt"] = projected_fall(ratio_in, r, o)
        if parts_path:
            res.update(split_falls(ratio_in, parts_path, s))
    elif name.startswith("noise-"):
        r, o = align(near, out)
        res["pesq"] = wb_pesq(r, o)
        res["pesq_in"] = wb_pesq(near, mic)
        res["stoi"] = float(stoi(r, o, FS, extended=False))
        res["stoi_in"] = float(stoi(near, mic, FS, extended=False))
        pc = np.mean(frames(r) ** 2, axis=1)
        pause = pc < 10 ** (-70 / 10)
        speech = pc > pc.max() * 1e-3
        noise_in = np.mean(frames(mic - near) ** 2, axis=1)
        po = np.mean(frames(o) ** 2, axis=1)
        fo, fr = frames(o), frames(r)
        gain = np.sum(fo[speech] * fr[speech]) / np.sum(fr[speech] ** 2)  # the speech's gain
        res["pause_db"] = 10 * np.log10(np.mean(noise_in[: len(pause)][pause]) * gain**2 / (np.mean(po[pause]) + 1e-20))
    elif name.startswith("clean-"):
        r, o = align(near, out)
        res["pesq"] = wb_pesq(r, o)
        res["level"] = 20 * np.log10(material.active_rms(o) + 1e-12)
    return res


def fmt(v, w=6, p=2):
    if v is None:
        return " " * (w - 1) + "-"
    return f"{v:{w}.{p}f}"


def main():
    ap = argparse.ArgumentParser(description="voice chain report")
    ap.add_argument("--subset", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--bin")
    ap.add_argument("--no-gst", action="store_true")
    ap.add_argument("--off", help="stages of the Onmic chain to switch off, e.g. ns,agc")
    ap.add_argument("--ns-level", help="the classic NS level (low, moderate, high, very-high)")
    ap.add_argument("--only", help="only conditions whose name starts with this")
    args = ap.parse_args()
    binary = args.bin or default_bin()
    conds = material.ensure(args.subset)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, d in conds:
            if args.only and not name.startswith(args.only):
                continue
            o = os.path.join(tmp, name + "-onmic.wav")
            # Double talk: the near end's part is given too, and beside the (unchanged) output
            # the CLI writes the AEC stage's output and the chain's, each split into near end
            # and echo.
            split = name.startswith("dt-") and not (args.off and "aec" in args.off.split(","))
            comp = (os.path.join(tmp, name + "-near.wav"), os.path.join(tmp, name + "-aec.wav"))
            if split:
                near_part(d, comp[0])
            run_onmic(binary, d, o, args.off, args.ns_level, components=comp if split else None)
            results[name] = {
                "onmic": measure(name, d, o, comp[1] if split else None),
                "meta": json.load(open(os.path.join(d, "meta.json"))),
            }
            if not args.no_gst:
                g = os.path.join(tmp, name + "-gst.wav")
                run_gst(d, g)
                results[name]["webrtcdsp"] = measure(name, d, g)
    cols = [("erle", "ERLE2", 1), ("echo_dt", "EchoDT", 1), ("echo_out", "EchoOut", 1), ("echo_aec", "EchoAEC", 1), ("pesq_in", "PESQin", 2), ("pesq", "PESQ", 2),
            ("stoi_in", "STOIin", 3), ("stoi", "STOI", 3), ("pause_db", "Pause", 1), ("level", "Level", 1)]
    widths = [max(6, len(c[1])) for c in cols]
    print(f"{'condition':18} {'engine':9} " + " ".join(f"{c[1]:>{w}}" for c, w in zip(cols, widths)))
    for name, r in results.items():
        for eng in ("onmic", "webrtcdsp"):
            if eng not in r:
                continue
            m = r[eng]
            print(f"{name:18} {eng:9} " + " ".join(fmt(m.get(k), w, p) for (k, _, p), w in zip(cols, widths)))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
