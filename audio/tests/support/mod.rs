//! Shared helpers for the integration tests: speech from espeak-ng, echo paths, measurements.
#![allow(dead_code, clippy::needless_range_loop)]

use std::path::{Path, PathBuf};
use std::process::Command;

use onmic_audio::resample::resample_planar;

/// Sentences for a test talker.
pub const FAR_TEXT: &str = "The quick brown fox jumps over the lazy dog. \
    A voice chat room lets the host talk with guests on the mic seats in real time. \
    Echo cancellation removes the remote voices that the microphone picks up from the speakers. \
    Noise suppression keeps the voice and removes the fan, the keyboard and the street. \
    Automatic gain control brings a quiet speaker and a loud one to the same level.";

/// A second talker's text.
pub const NEAR_TEXT: &str = "Hello everyone, welcome to my room tonight. \
    I will sing a song and then we can chat about music and travel. \
    Please send a gift if you enjoy the show and apply for a seat to join me.";

/// Speech at 48 kHz mono from espeak-ng, normalised to a peak of 0.5, at least `min_secs` long
/// (the text is repeated). Fails the test with a clear message if espeak-ng is missing.
pub fn speech(text: &str, voice: &str, min_secs: f32, dir: &Path) -> Vec<f32> {
    let wav = dir.join(format!("speech-{voice}-{}.wav", text.len()));
    let status = Command::new("espeak-ng")
        .args(["-v", voice, "-s", "165", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("espeak-ng must be installed (Debian package espeak-ng, see xtask/apt/audio.txt)");
    assert!(status.success(), "espeak-ng failed");
    let mut reader = hound::WavReader::open(&wav).expect("espeak wav");
    let spec = reader.spec();
    let x: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")) / 32768.0)
        .collect();
    let mut y = resample_planar(&[x], spec.sample_rate, 48_000)
        .expect("resample")
        .remove(0);
    let peak = y.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    for s in y.iter_mut() {
        *s *= 0.5 / peak.max(1e-6);
    }
    let one = y.clone();
    while (y.len() as f32) < min_secs * 48_000.0 {
        y.extend_from_slice(&one);
    }
    y.truncate(y.len() / 480 * 480);
    y
}

/// A synthetic echo path: `delay_ms` pure delay, then a short decaying room response
/// (`rir_ms` long, deterministic), scaled to `gain_db` overall.
pub fn echo_path(x: &[f32], delay_ms: f32, rir_ms: f32, gain_db: f32) -> Vec<f32> {
    let delay = (delay_ms * 48.0) as usize;
    let taps = (rir_ms * 48.0) as usize;
    let mut noise = onmic_audio::test_signals::Noise::new(99);
    let mut rir: Vec<f32> = (0..taps)
        .map(|i| noise.next_sample() * (-(i as f32) / (taps as f32 / 5.0)).exp())
        .collect();
    rir[0] = 1.0;
    let energy: f32 = rir.iter().map(|v| v * v).sum::<f32>().sqrt();
    let g = 10f32.powf(gain_db / 20.0) / energy;
    for v in rir.iter_mut() {
        *v *= g;
    }
    let mut y = vec![0.0f32; x.len()];
    for n in 0..x.len() {
        if n < delay {
            continue;
        }
        let m = n - delay;
        let mut acc = 0.0;
        for (k, h) in rir.iter().enumerate() {
            if k > m {
                break;
            }
            acc += h * x[m - k];
        }
        y[n] = acc;
    }
    y
}

/// Energy (sum of squares).
pub fn energy(x: &[f32]) -> f64 {
    x.iter().map(|v| f64::from(*v) * f64::from(*v)).sum()
}

/// dB of an energy ratio.
pub fn db(ratio: f64) -> f64 {
    10.0 * ratio.max(1e-30).log10()
}

/// Mask of 10 ms blocks where `reference` is active speech (within 30 dB of its loudest block).
pub fn active_blocks(reference: &[f32]) -> Vec<bool> {
    let e: Vec<f64> = reference.chunks(480).map(energy).collect();
    let max = e.iter().cloned().fold(0.0, f64::max);
    e.iter().map(|v| *v > max * 1e-3).collect()
}

/// RMS in dBFS of `x` over the blocks where `mask` is true, from block `from_block` on.
pub fn masked_rms_dbfs(x: &[f32], mask: &[bool], from_block: usize) -> f64 {
    let mut e = 0.0;
    let mut n = 0usize;
    for (i, (chunk, m)) in x.chunks(480).zip(mask).enumerate() {
        if i >= from_block && *m {
            e += energy(chunk);
            n += chunk.len();
        }
    }
    db(e / n.max(1) as f64)
}

/// Magnitude spectrogram: Hann frames of 960 (20 ms), hop 480.
pub fn spectrogram(x: &[f32]) -> Vec<Vec<f32>> {
    use rustfft::{FftPlanner, num_complex::Complex};
    let n = 960;
    let fft = FftPlanner::<f32>::new().plan_fft_forward(n);
    let win: Vec<f32> = (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos())
        .collect();
    let mut out = Vec::new();
    let mut buf = vec![Complex::new(0.0, 0.0); n];
    let mut start = 0;
    while start + n <= x.len() {
        for i in 0..n {
            buf[i] = Complex::new(x[start + i] * win[i], 0.0);
        }
        fft.process(&mut buf);
        out.push(buf[..n / 2 + 1].iter().map(|c| c.norm()).collect());
        start += 480;
    }
    out
}

/// Magnitude-domain SNR of `y` against the clean reference `c` (same length, aligned):
/// signal Σ|C|², noise Σ(|Y|−|C|)² over all time–frequency bins. Insensitive to the phase
/// shifts a band-split suppressor introduces, which a waveform SNR would count as noise.
pub fn spectral_snr_db(c: &[f32], y: &[f32]) -> f64 {
    let (sc, sy) = (spectrogram(c), spectrogram(y));
    let (mut s, mut n) = (0.0f64, 0.0f64);
    for (fc, fy) in sc.iter().zip(&sy) {
        for (a, b) in fc.iter().zip(fy) {
            s += f64::from(*a) * f64::from(*a);
            n += (f64::from(*b) - f64::from(*a)).powi(2);
        }
    }
    db(s / n.max(1e-30))
}

/// Share of `near`'s energy found in `y`, counting per time–frequency bin at most the near-end's
/// own energy (so residual echo cannot make up for suppressed speech).
pub fn spectral_energy_kept(near: &[f32], y: &[f32]) -> f64 {
    let (sn, sy) = (spectrogram(near), spectrogram(y));
    let (mut kept, mut total) = (0.0f64, 0.0f64);
    for (fn_, fy) in sn.iter().zip(&sy) {
        for (a, b) in fn_.iter().zip(fy) {
            let (a2, b2) = (f64::from(*a).powi(2), f64::from(*b).powi(2));
            kept += a2.min(b2);
            total += a2;
        }
    }
    kept / total.max(1e-30)
}

/// ITU-T G.160-style SNR improvement, segmented by the clean reference: speech power is measured
/// in blocks where the reference talks (minus the noise power), noise power in blocks where it
/// is silent (pauses between sentences). Returns (SNR in, SNR out, speech level change), in dB.
/// `x` is the noisy input, `y` the output, both aligned with `clean`.
pub fn g160_snr(clean: &[f32], x: &[f32], y: &[f32]) -> (f64, f64, f64) {
    let e: Vec<f64> = clean.chunks(480).map(energy).collect();
    let max = e.iter().cloned().fold(0.0, f64::max);
    let measure = |z: &[f32]| {
        let (mut sp, mut ns_, mut n_sp, mut n_ns) = (0.0, 0.0, 0usize, 0usize);
        for (chunk, ce) in z.chunks(480).zip(&e) {
            if *ce > max * 1e-3 {
                sp += energy(chunk);
                n_sp += 1;
            } else if *ce < max * 1e-7 {
                ns_ += energy(chunk);
                n_ns += 1;
            }
        }
        let noise = ns_ / n_ns.max(1) as f64;
        let speech = (sp / n_sp.max(1) as f64 - noise).max(1e-30);
        (speech, noise.max(1e-30))
    };
    let (s_in, n_in) = measure(x);
    let (s_out, n_out) = measure(y);
    (db(s_in / n_in), db(s_out / n_out), db(s_out / s_in))
}

/// The workspace root of the checkout `cargo test` runs in (CARGO_MANIFEST_DIR at run time; the
/// compiled-in one names the checkout the binary was built in, which cargo reuses across
/// checkouts of the same source that share a build directory).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into()),
    )
    .join("..")
}

/// The voice-chain yardstick's Python (`ONMIC_VOICE_EVAL_PYTHON`, else the venv `cargo xtask
/// setup` makes); fails the test if it is missing.
pub fn voice_eval_python() -> PathBuf {
    let py = std::env::var_os("ONMIC_VOICE_EVAL_PYTHON").map_or_else(
        || {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".cache/onmic/voice-eval/venv/bin/python3")
        },
        PathBuf::from,
    );
    assert!(
        py.exists(),
        "{} is missing: run `cargo xtask setup` (installs scripts/voice_eval/requirements.txt \
         into a venv)",
        py.display()
    );
    py
}

/// Runs `scripts/voice_eval/SCRIPT` with `args` on [`voice_eval_python`] and returns what it
/// printed; fails the test with its standard error if it fails.
pub fn run_voice_eval(script: &str, args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let out = Command::new(voice_eval_python())
        .arg(workspace_root().join("scripts/voice_eval").join(script))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// This machine's cores (2 when it cannot say).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Busy threads at normal priority (the same as PulseAudio's clients, a game's or an encoder's),
/// spinning until the value is dropped.
pub struct Busy {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    hogs: Vec<std::thread::JoinHandle<()>>,
}

impl Busy {
    /// Starts `threads` busy threads.
    pub fn threads(threads: usize) -> Busy {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hogs = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) + 1);
                    }
                })
            })
            .collect();
        Busy { stop, hogs }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in self.hogs.drain(..) {
            let _ = h.join();
        }
    }
}
