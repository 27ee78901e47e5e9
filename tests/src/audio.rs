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
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("tone file can be written");
    let frames = (48_000.0 * seconds) as u32;
    for n in 0..frames {
        for freq in freqs {
            let x = amplitude * (2.0 * std::f32::consts::PI * freq * n as f32 / 48_000.0).sin();
            w.write_sample((x * f32::from(i16::MAX)).round() as i16)
                .expect("write a sample");
        }
    }
    w.finalize().expect("tone file finalised");
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
