//! Virtual sound devices: a PulseAudio null sink per test, and tones played into it.

use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A PulseAudio null sink that exists while this value lives. Its monitor is an input device.
pub struct NullSink {
    /// The sink's name (`pactl` / `paplay --device`).
    pub name: String,
    /// What device lists show for it.
    pub description: String,
    module: String,
}

impl NullSink {
    /// Creates a 48 kHz stereo null sink named `name` whose description is `description`
    /// (no spaces: PulseAudio's module arguments are whitespace-separated).
    pub fn create(name: &str, description: &str) -> Self {
        Self::create_with_channels(name, description, 2)
    }

    /// Like [`NullSink::create`], with `channels` channels (front left/right, then rear
    /// left/right, then aux: a multi-channel sound card's inputs on its monitor).
    pub fn create_with_channels(name: &str, description: &str, channels: u16) -> Self {
        crate::required_env("PULSE_SERVER");
        let positions = ["front-left", "front-right", "rear-left", "rear-right"];
        let map: Vec<String> = (0..usize::from(channels))
            .map(|i| {
                positions.get(i).map_or_else(
                    || format!("aux{}", i - positions.len()),
                    |p| (*p).to_owned(),
                )
            })
            .collect();
        let out = Command::new("pactl")
            .args([
                "load-module",
                "module-null-sink",
                &format!("sink_name={name}"),
                "rate=48000",
                &format!("channels={channels}"),
                &format!("channel_map={}", map.join(",")),
                &format!("sink_properties=device.description={description}"),
            ])
            .output()
            .expect("pactl runs");
        assert!(
            out.status.success(),
            "pactl load-module failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let module = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        Self {
            name: name.to_owned(),
            description: description.to_owned(),
            module,
        }
    }

    /// How many capture streams (PulseAudio source outputs) read this sink's monitor now, or
    /// an error naming what `pactl` said.
    pub fn monitor_readers(&self) -> anyhow::Result<usize> {
        let short = |what: &str| -> anyhow::Result<String> {
            let out = Command::new("pactl")
                .args(["list", "short", what])
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "pactl list short {what}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        let monitor = format!("{}.monitor", self.name);
        let sources = short("sources")?;
        let index = sources
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|cols| cols.get(1) == Some(&monitor.as_str()))
            .and_then(|cols| cols.first().map(|c| (*c).to_owned()))
            .ok_or_else(|| anyhow::anyhow!("no source {monitor} in:\n{sources}"))?;
        // Index, source index, client, driver, sample spec.
        Ok(short("source-outputs")?
            .lines()
            .filter(|l| l.split('\t').nth(1) == Some(index.as_str()))
            .count())
    }
}

impl Drop for NullSink {
    fn drop(&mut self) {
        let _ = Command::new("pactl")
            .args(["unload-module", &self.module])
            .status();
    }
}

/// Writes a stereo 48 kHz 16-bit WAV sine of `freq` Hz at linear peak `amplitude`.
pub fn write_tone(path: &Path, freq: f32, amplitude: f32, seconds: f32) {
    write_stereo_tone(path, [freq, freq], amplitude, seconds);
}

/// Writes a stereo 48 kHz 16-bit WAV with a sine of `freqs[0]` Hz on the left and `freqs[1]` Hz
/// on the right, both at linear peak `amplitude`.
pub fn write_stereo_tone(path: &Path, freqs: [f32; 2], amplitude: f32, seconds: f32) {
    let frames = (48_000.0 * seconds) as u32;
    write_stereo_wav(
        path,
        (0..frames).map(|n| {
            freqs.map(|freq| {
                amplitude * (2.0 * std::f32::consts::PI * freq * n as f32 / 48_000.0).sin()
            })
        }),
    );
}

/// Writes stereo 48 kHz 16-bit frames (`[left, right]`, linear, ±1 full scale) to a WAV file.
pub fn write_stereo_wav(path: &Path, frames: impl IntoIterator<Item = [f32; 2]>) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("the WAV file can be written");
    for frame in frames {
        for x in frame {
            w.write_sample((x * f32::from(i16::MAX)).round() as i16)
                .expect("write a sample");
        }
    }
    w.finalize().expect("the WAV file is finalised");
}

/// The RMS level in dBFS of a sine of linear peak `amplitude`.
pub fn sine_rms_dbfs(amplitude: f32) -> f32 {
    20.0 * (amplitude / std::f32::consts::SQRT_2).log10()
}

/// Plays `wav` into `sink` with `paplay`; the tone stops when the value is dropped.
pub struct Playback(Child);

impl Playback {
    /// Starts playing.
    pub fn start(sink: &NullSink, wav: &Path) -> Self {
        let child = Command::new("paplay")
            .arg(format!("--device={}", sink.name))
            .arg(wav)
            .stdout(Stdio::null())
            .spawn()
            .expect("paplay starts");
        Self(child)
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Tone bursts ([`write_bursts`]): each lasts this long ...
pub const BURST_MS: usize = 300;
/// ... and one starts every this many milliseconds.
pub const BURST_PERIOD_MS: usize = 1_500;

/// Writes `seconds` of tone bursts as a stereo 48 kHz 16-bit WAV: 300 ms of 1 kHz at peak 0.3
/// with 5 ms raised-cosine ramps, one every 1.5 s, silence between.
pub fn write_bursts(path: &Path, seconds: usize) {
    const RATE: usize = 48_000;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("burst file");
    let period = RATE * BURST_PERIOD_MS / 1000;
    let burst = RATE * BURST_MS / 1000;
    let ramp = RATE / 200;
    for n in 0..seconds * RATE {
        let k = n % period;
        let x = if k < burst {
            let env = (k.min(burst - 1 - k) as f32 / ramp as f32).min(1.0);
            let env = 0.5 - 0.5 * (std::f32::consts::PI * env).cos();
            0.3 * env * (2.0 * std::f32::consts::PI * 1000.0 * n as f32 / RATE as f32).sin()
        } else {
            0.0
        };
        let s = (x * f32::from(i16::MAX)).round() as i16;
        w.write_sample(s).expect("sample");
        w.write_sample(s).expect("sample");
    }
    w.finalize().expect("burst file written");
}

fn db(x: f32) -> f32 {
    20.0 * x.max(1e-9).log10()
}

fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt()
}

/// One burst found in a recording by [`burst_tails`].
#[derive(Debug, Clone, Copy)]
pub struct BurstTail {
    /// The burst's RMS level, dBFS (its middle, 50 ms in from each end).
    pub level_db: f32,
    /// The level 80–400 ms after the burst, relative to the burst, dB.
    pub tail_db: f32,
    /// The sounding time, ms: the 10 ms windows within 50 dB of the burst's level in the 1.4 s
    /// from its onset.
    pub sounding_ms: f32,
}

/// The bursts as the tests print them: "level dBFS/tail dB/sounding ms" each, comma-separated.
pub fn describe_tails(tails: &[BurstTail]) -> String {
    tails
        .iter()
        .map(|b| {
            format!(
                "{:.1} dBFS/{:.1} dB/{:.0} ms",
                b.level_db, b.tail_db, b.sounding_ms
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every burst of [`write_bursts`] found in `x` (48 kHz mono): an onset is a 10 ms window
/// within 12 dB of the recording's loudest after 400 ms below that, so the path's latency does
/// not matter.
pub fn burst_tails(x: &[f32]) -> Vec<BurstTail> {
    const WIN: usize = 480;
    let env: Vec<f32> = x.chunks_exact(WIN).map(rms).collect();
    let loudest = env.iter().copied().fold(0.0, f32::max);
    let threshold = loudest * 10f32.powf(-12.0 / 20.0);
    let quiet = 40; // 400 ms below the threshold before an onset
    let burst = BURST_MS / 10;
    let mut out = Vec::new();
    let mut i = quiet;
    while i + burst + 40 < env.len() {
        if env[i] > threshold && env[i - quiet..i].iter().all(|e| *e <= threshold) {
            let level = rms(&x[(i + 5) * WIN..(i + burst - 5) * WIN]);
            let tail = rms(&x[(i + burst + 8) * WIN..(i + burst + 40) * WIN]);
            let sounding = env[i..(i + 140).min(env.len())]
                .iter()
                .filter(|e| db(**e) > db(level) - 50.0)
                .count();
            out.push(BurstTail {
                level_db: db(level),
                tail_db: db(tail) - db(level),
                sounding_ms: sounding as f32 * 10.0,
            });
            i += burst;
        } else {
            i += 1;
        }
    }
    out
}

/// The median of `v` (the upper one of an even count); NaN when empty.
pub fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}
