//! Acceptance item 9: the `onmic-audio process` CLI on a 60 s file (ffprobe reads the output) and
//! on bad input (a clear message, a non-zero exit, never a panic).

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_onmic-audio");

fn write_stereo_wav(path: &Path, secs: u32, rate: u32) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for i in 0..secs * rate {
        let t = i as f32 / rate as f32;
        let l = (2.0 * std::f32::consts::PI * 440.0 * t).sin() * 0.4;
        let r = (2.0 * std::f32::consts::PI * 660.0 * t).sin() * 0.4;
        w.write_sample((l * 32767.0) as i16).expect("sample");
        w.write_sample((r * 32767.0) as i16).expect("sample");
    }
    w.finalize().expect("finalize");
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("run onmic-audio")
}

fn ffprobe(path: &Path) -> String {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,channels,sample_rate:format=duration",
            "-of",
            "default=nw=1",
        ])
        .arg(path)
        .output()
        .expect("ffprobe must be installed (Debian package ffmpeg, see xtask/apt/audio.txt)");
    assert!(
        out.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn duration(probe: &str) -> f64 {
    probe
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .and_then(|d| d.parse().ok())
        .expect("duration in ffprobe output")
}

#[test]
fn sixty_seconds_to_ogg_opus_and_wav_read_by_ffprobe() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.wav");
    write_stereo_wav(&input, 60, 44_100);
    let opus = dir.path().join("out.opus");
    let o = run(&[
        "process",
        input.to_str().expect("utf8"),
        "--mode",
        "soundcard",
        "--out",
        opus.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = ffprobe(&opus);
    assert!(
        p.contains("codec_name=opus")
            && p.contains("channels=2")
            && p.contains("sample_rate=48000"),
        "{p}"
    );
    assert!((duration(&p) - 60.0).abs() < 0.05, "{p}");
    // Decode it back with ffmpeg: the sides keep their tones.
    let back = dir.path().join("back.wav");
    let st = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&opus)
        .args(["-c:a", "pcm_f32le"])
        .arg(&back)
        .status()
        .expect("ffmpeg");
    assert!(st.success());
    let mut r = hound::WavReader::open(&back).expect("decoded wav");
    let s: Vec<f32> = r.samples::<f32>().map(|x| x.expect("sample")).collect();
    let l: Vec<f32> = s
        .iter()
        .step_by(2)
        .skip(48_000)
        .take(48_000)
        .copied()
        .collect();
    let rr: Vec<f32> = s
        .iter()
        .skip(1)
        .step_by(2)
        .skip(48_000)
        .take(48_000)
        .copied()
        .collect();
    use onmic_audio::test_signals::dominant_frequency;
    assert!((dominant_frequency(&l, 300.0, 800.0, 5.0) - 440.0).abs() < 1.0);
    assert!((dominant_frequency(&rr, 300.0, 800.0, 5.0) - 660.0).abs() < 1.0);

    let wav = dir.path().join("out.wav");
    let o = run(&[
        "process",
        input.to_str().expect("utf8"),
        "--mode",
        "voice",
        "--out",
        wav.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = ffprobe(&wav);
    assert!(
        p.contains("channels=1") && p.contains("sample_rate=48000"),
        "{p}"
    );
    assert!((duration(&p) - 60.0).abs() < 0.01, "{p}");
    assert!(p.contains("codec_name=pcm_f32le"), "{p}");

    // `--format s16`: 16-bit PCM that common tools read, same length, same sound card path.
    let s16 = dir.path().join("out16.wav");
    let o = run(&[
        "process",
        input.to_str().expect("utf8"),
        "--mode",
        "soundcard",
        "--format",
        "s16",
        "--out",
        s16.to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = ffprobe(&s16);
    assert!(
        p.contains("codec_name=pcm_s16le") && p.contains("channels=2"),
        "{p}"
    );
    assert!((duration(&p) - 60.0).abs() < 0.01, "{p}");
    let mut r = hound::WavReader::open(&s16).expect("s16 wav");
    assert_eq!(r.spec().bits_per_sample, 16);
    let s: Vec<i16> = r.samples::<i16>().map(|x| x.expect("sample")).collect();
    let l: Vec<f32> = s
        .iter()
        .step_by(2)
        .skip(48_000)
        .take(48_000)
        .map(|&x| f32::from(x) / 32768.0)
        .collect();
    assert!((dominant_frequency(&l, 300.0, 800.0, 5.0) - 440.0).abs() < 1.0);
    let o = run(&[
        "process",
        input.to_str().expect("utf8"),
        "--format",
        "s24",
        "--out",
        s16.to_str().expect("utf8"),
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("s16"),
        "the error names the valid formats"
    );
}

fn assert_clean_failure(o: &Output, expect: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "expected failure, stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    assert!(err.contains(expect), "message {err:?} lacks {expect:?}");
}

#[test]
fn bad_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = |n: &str| dir.path().join(n).to_str().expect("utf8").to_owned();
    let out = d("out.wav");
    std::fs::write(d("text.wav"), b"this is not audio at all").expect("write");
    assert_clean_failure(
        &run(&["process", &d("text.wav"), "--out", &out]),
        "is not a WAV file",
    );

    write_stereo_wav(Path::new(&d("full.wav")), 2, 48_000);
    let bytes = std::fs::read(d("full.wav")).expect("read");
    std::fs::write(d("trunc.wav"), &bytes[..bytes.len() / 2]).expect("write");
    assert_clean_failure(
        &run(&["process", &d("trunc.wav"), "--out", &out]),
        "truncated",
    );

    std::fs::write(d("song.ogg"), b"OggS\0\x02rest of an ogg page").expect("write");
    assert_clean_failure(
        &run(&["process", &d("song.ogg"), "--out", &out]),
        "unsupported format",
    );
    let spec = hound::WavSpec {
        channels: 4,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(d("quad.wav"), spec).expect("create");
    for _ in 0..4800 {
        w.write_sample(0i16).expect("sample");
    }
    w.finalize().expect("finalize");
    assert_clean_failure(
        &run(&["process", &d("quad.wav"), "--out", &out]),
        "unsupported format",
    );

    assert_clean_failure(
        &run(&["process", &d("missing.wav"), "--out", &out]),
        "cannot open",
    );
    assert_clean_failure(
        &run(&["process", &d("full.wav"), "--out", &d("x.mp3")]),
        "must end in",
    );
    assert_clean_failure(
        &run(&[
            "process",
            &d("full.wav"),
            "--aec-ref",
            &d("missing.wav"),
            "--out",
            &out,
        ]),
        "cannot open",
    );
}

#[test]
fn debug_tap_writes_three_wavs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("in.wav");
    write_stereo_wav(&input, 1, 48_000);
    let tap = dir.path().join("tap");
    let o = run(&[
        "process",
        input.to_str().expect("utf8"),
        "--mode",
        "voice",
        "--aec-ref",
        input.to_str().expect("utf8"),
        "--debug-tap",
        tap.to_str().expect("utf8"),
        "--out",
        dir.path().join("o.wav").to_str().expect("utf8"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in ["raw.wav", "reference.wav", "processed.wav"] {
        let r = hound::WavReader::open(tap.join(f)).expect("tap wav");
        assert_eq!(r.duration(), 48_000, "{f}");
    }
}

/// `--near-component` / `--aec-components` (docs/voice-chain.md, "The split"): the output is the
/// same with and without them, the components file holds the AEC stage's output and its
/// near-end part, then the output and its near-end part, at the input's length; misuse fails
/// with a message.
#[test]
fn aec_components_split_without_changing_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = |n: &str| dir.path().join(n).to_str().expect("utf8").to_owned();
    // Far end and near end: two white noises (a fixed LCG each); the microphone: the far end's
    // echo (half, 3 ms later) and the near end from the second half on, 6 dB over the echo.
    let len = 2 * 48_000usize;
    let noise = |seed: u32, gain: f32| -> Vec<f32> {
        let mut x = seed;
        (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (x >> 8) as f32 / (1u32 << 24) as f32 * 2.0 * gain - gain
            })
            .collect()
    };
    let far = noise(1, 0.4);
    let near: Vec<f32> = noise(2, 0.4)
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i < len / 2 { 0.0 } else { v })
        .collect();
    let mic: Vec<f32> = (0..len)
        .map(|i| near[i] + i.checked_sub(144).map_or(0.0, |j| 0.5 * far[j]))
        .collect();
    let write = |name: &str, x: &[f32], frames: usize| {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(p(name), spec).expect("create");
        for v in &x[..frames] {
            w.write_sample(*v).expect("sample");
        }
        w.finalize().expect("finalize");
    };
    write("far.wav", &far, len);
    write("mic.wav", &mic, len);
    write("near.wav", &near, len);
    write("short.wav", &near, len - 480);
    let base = ["process", &p("mic.wav") as &str, "--aec-ref", &p("far.wav")];
    let o = run(&[&base[..], &["--out", &p("plain.wav")]].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&[
        &base[..],
        &[
            "--out",
            &p("split.wav"),
            "--near-component",
            &p("near.wav"),
            "--aec-components",
            &p("aec.wav"),
        ],
    ]
    .concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read = |name: &str| -> (u16, Vec<f32>) {
        let mut r = hound::WavReader::open(p(name)).expect("open");
        let ch = r.spec().channels;
        (ch, r.samples::<f32>().map(|s| s.expect("sample")).collect())
    };
    assert_eq!(
        read("plain.wav"),
        read("split.wav"),
        "the output must not change"
    );
    let (ch, both) = read("aec.wav");
    assert_eq!(
        (ch, both.len()),
        (4, 4 * len),
        "four channels at the input's length (the voice chain's defaults split end to end)"
    );
    let (_, plain) = read("plain.wav");
    for (i, v) in plain.iter().enumerate() {
        assert_eq!(
            v.to_bits(),
            both[4 * i + 2].to_bits(),
            "channel 2 is the output"
        );
    }
    // Before the near end starts (after the filter's first 0.3 s) its part is silence; after it,
    // the near end's part carries the near end.
    let power = |from: usize, to: usize, c: usize| -> f32 {
        (from..to).map(|i| both[4 * i + c].powi(2)).sum::<f32>() / (to - from) as f32
    };
    assert!(
        power(14_400, len / 2, 1) < 1e-12,
        "near part before the near end"
    );
    let near_in = near[len / 2..].iter().map(|v| v * v).sum::<f32>() / (len / 2) as f32;
    let near_out = power(len / 2 + 4_800, len, 1);
    assert!(
        near_out > 0.25 * near_in,
        "near part {near_out} of {near_in}"
    );
    let left = (len / 2 + 4_800..len)
        .map(|i| (both[4 * i] - both[4 * i + 1]).powi(2))
        .sum::<f32>()
        / (len / 2 - 4_800) as f32;
    assert!(
        left < 0.1 * near_out,
        "echo left {left} beside the near part {near_out}"
    );

    assert_clean_failure(
        &run(&[
            "process",
            &p("mic.wav"),
            "--out",
            &p("x.wav"),
            "--near-component",
            &p("near.wav"),
            "--aec-components",
            &p("a.wav"),
        ]),
        "needs the echo canceller",
    );
    assert_clean_failure(
        &run(&[
            &base[..],
            &[
                "--out",
                &p("x.wav"),
                "--near-component",
                &p("short.wav"),
                "--aec-components",
                &p("a.wav"),
            ],
        ]
        .concat()),
        "must be as long",
    );
    assert_clean_failure(
        &run(&[
            &base[..],
            &["--out", &p("x.wav"), "--near-component", &p("near.wav")],
        ]
        .concat()),
        "--aec-components",
    );
}
