//! Acceptance item 10 (peer comparison): the offline chain on a 60 s file against the equivalent
//! GStreamer pipeline (Debian's `webrtcdsp` + `webrtcechoprobe` and `opusenc`) on the same
//! files, in the same run; prints both wall times and the ratio.
//!
//! Run: `cargo bench -p onmic-audio --bench offline_vs_gstreamer` (needs espeak-ng and
//! gstreamer1.0-tools, -plugins-base, -plugins-bad; see xtask/apt/audio.txt).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use onmic_audio::chain::Mode;
use onmic_audio::offline::{OfflineJob, WavFormat, process};
use onmic_audio::test_signals::Noise;

fn write_wav(path: &Path, x: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for s in x {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .expect("sample");
    }
    w.finalize().expect("finalize");
}

fn gst(args: &str) -> f64 {
    let t = Instant::now();
    let st = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(args.split_whitespace())
        .status()
        .expect("gst-launch-1.0 must be installed (gstreamer1.0-tools)");
    assert!(st.success(), "gstreamer pipeline failed: {args}");
    t.elapsed().as_secs_f64()
}

fn best_of<F: FnMut() -> f64>(n: usize, mut f: F) -> f64 {
    (0..n).map(|_| f()).fold(f64::INFINITY, f64::min)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // 60 s: far-end speech, near end = other speech + echo of the far end + noise.
    let far = support::speech(support::FAR_TEXT, "en-us", 60.0, d);
    let near_talk = support::speech(support::NEAR_TEXT, "en+f3", 60.0, d);
    let echo = support::echo_path(&far, 40.0, 30.0, -10.0);
    let mut noise = Noise::new(9);
    let n = 60 * 48_000;
    let mic: Vec<f32> = (0..n)
        .map(|i| 0.5 * near_talk[i] + echo[i] + 0.01 * noise.next_sample())
        .collect();
    let (mic_path, ref_path) = (d.join("mic.wav"), d.join("ref.wav"));
    write_wav(&mic_path, &mic);
    write_wav(&ref_path, &far[..n]);
    let out_ours = d.join("ours.opus");
    let out_gst = d.join("gst.opus");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "\nload average at start: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Voice: AEC + NS + AGC + Opus voice (ours adds AI-NS and the limiter).
    let ours_voice = best_of(3, || {
        let t = Instant::now();
        let job = OfflineJob {
            input: mic_path.clone(),
            output: out_ours.clone(),
            mode: Mode::Voice,
            aec_ref: Some(ref_path.clone()),
            debug_tap: None,
            effects: Default::default(),
            wav_format: WavFormat::F32,
            off: Default::default(),
            ns_level: None,
            aec_components: None,
        };
        process(&job, |_, _| {}).expect("offline chain");
        t.elapsed().as_secs_f64()
    });
    let gst_voice = best_of(3, || {
        gst(&format!(
            "filesrc location={r} ! wavparse ! audioconvert ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! webrtcechoprobe ! fakesink sync=false \
             filesrc location={m} ! wavparse ! audioconvert ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! \
             webrtcdsp echo-cancel=true noise-suppression=true noise-suppression-level=high gain-control=true ! \
             audioconvert ! opusenc bitrate=48000 complexity=10 dtx=true inband-fec=true ! oggmux ! filesink location={o}",
            r = ref_path.display(),
            m = mic_path.display(),
            o = out_gst.display()
        ))
    });
    // Sound card: limiter + Opus 128 kbps stereo vs opusenc alone.
    let ours_sc = best_of(3, || {
        let t = Instant::now();
        let job = OfflineJob {
            input: mic_path.clone(),
            output: out_ours.clone(),
            mode: Mode::Soundcard,
            aec_ref: None,
            debug_tap: None,
            effects: Default::default(),
            wav_format: WavFormat::F32,
            off: Default::default(),
            ns_level: None,
            aec_components: None,
        };
        process(&job, |_, _| {}).expect("offline chain");
        t.elapsed().as_secs_f64()
    });
    let gst_sc = best_of(3, || {
        gst(&format!(
            "filesrc location={m} ! wavparse ! audioconvert ! audio/x-raw,format=S16LE,rate=48000,channels=2 ! \
             opusenc bitrate=128000 complexity=10 inband-fec=true ! oggmux ! filesink location={o}",
            m = mic_path.display(),
            o = out_gst.display()
        ))
    });
    println!("60 s file, best of 3 wall-clock runs (file decode + chain + Opus + Ogg write):");
    println!(
        "{:<58} {:>8} {:>8} {:>7}",
        "", "ours s", "gst s", "ours/gst"
    );
    println!(
        "{:<58} {:>8.2} {:>8.2} {:>7.2}",
        "voice: AEC+AI-NS+NS+AGC+limiter+Opus 48k vs webrtcdsp+opusenc",
        ours_voice,
        gst_voice,
        ours_voice / gst_voice
    );
    println!(
        "{:<58} {:>8.2} {:>8.2} {:>7.2}",
        "sound card: limiter+Opus 128k stereo vs opusenc",
        ours_sc,
        gst_sc,
        ours_sc / gst_sc
    );
}
