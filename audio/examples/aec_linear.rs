//! What the AEC's linear filter alone does on `scripts/voice_eval` material (the suppressor
//! off): `cargo run --release -p onmic-audio --example aec_linear -- DIR...` with DIR a
//! condition's directory (far.wav, mic.wav, echo.wav, near.wav, meta.json). Prints, per
//! condition, the linear filter's echo reduction after 2 s (the echo's power over the echo's
//! power left in the output, the near end and the floor taken out exactly) over the
//! far-end-only part and over the double-talk part, and the clock drift the canceller
//! estimated at the end. `DUMP=DIR` keeps the suppressor on and writes the linear filter's
//! output and the suppressed output of each condition to DIR as raw little-endian f32
//! (`NAME.lin.f32`, `NAME.aec.f32`) for a per-segment study (the echo figures printed stay the
//! linear filter's); `PF_NEAR=X` sets the suppressor's over-subtraction in the near-end state;
//! `LINEAR_ONLY=1` with `DUMP` switches the suppressor off as without `DUMP` (the linear
//! filter adapts exactly as in the printed figures; `NAME.aec.f32` is then the delayed error);
//! `TRACE=1` prints, every `TRACE_N` blocks (50: 0.5 s), the delay the filter is aligned to,
//! the drift estimate, the reference's lag, the linear filter's echo reduction over those
//! blocks and how many of them were in the suppressor's near-end state (to stderr);
//! `DELAY_HINT=MS` tells the canceller the device delay first (`set_stream_delay_ms`).

use onmic_audio::aec::Aec;
use onmic_audio::offline::read_wav;
use onmic_audio::{BLOCK_FRAMES, Block, Processor, StreamSpec};

/// The file's first channel (the material is mono, 48 kHz).
fn read(path: &std::path::Path) -> Vec<f32> {
    let audio = read_wav(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    audio.channels.into_iter().next().unwrap_or_default()
}

fn db(a: f64, b: f64) -> f64 {
    10.0 * (a / (b + 1e-20)).log10()
}

fn main() {
    for dir in std::env::args().skip(1) {
        let d = std::path::Path::new(&dir);
        let far = read(&d.join("far.wav"));
        let mic = read(&d.join("mic.wav"));
        let echo = read(&d.join("echo.wav"));
        let near = read(&d.join("near.wav"));
        // The material's true drift, printed beside the estimate.
        let true_ppm = std::fs::read_to_string(d.join("meta.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|m| m.get("drift_ppm").and_then(serde_json::Value::as_f64))
            .map_or_else(|| "?".to_owned(), |v| format!("{v:.1}"));
        let mut aec = Aec::new();
        // DUMP=DIR: the suppressor stays on and both outputs are written to DIR as raw f32
        // (NAME.lin.f32: the linear filter's, NAME.aec.f32: after the suppressor).
        let dump = std::env::var_os("DUMP").map(std::path::PathBuf::from);
        let (mut lin_out, mut aec_out) = (Vec::new(), Vec::new());
        if let Some(x) = std::env::var("PF_NEAR").ok().and_then(|t| t.parse().ok()) {
            aec.postfilter_near = x;
        }
        if dump.is_none() || std::env::var_os("LINEAR_ONLY").is_some() {
            aec.postfilter = 0.0;
        }
        aec.drift_tracking = std::env::var_os("NO_DRIFT").is_none();
        if let Some(t) = std::env::var("TRANSITION")
            .ok()
            .and_then(|t| t.parse().ok())
        {
            aec.transition = t;
        }
        if let Some(t) = std::env::var("TRANSITION_NEAR")
            .ok()
            .and_then(|t| t.parse().ok())
        {
            aec.transition_near = t;
        }
        aec.prepare(StreamSpec {
            channels: 1,
            ..StreamSpec::default()
        })
        .expect("prepare");
        if let Some(h) = std::env::var("DELAY_HINT")
            .ok()
            .and_then(|t| t.parse().ok())
        {
            aec.set_stream_delay_ms(h);
        }
        let blocks = mic.len().min(far.len()) / BLOCK_FRAMES;
        let (mut e_fe, mut r_fe, mut e_dt, mut r_dt) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        // Echo and what is left of it over the last 4 s of the file.
        let (mut e_end, mut r_end) = (0.0f64, 0.0f64);
        let end = (blocks * BLOCK_FRAMES).saturating_sub(4 * 48_000);
        let has_near = near.iter().any(|&v| v != 0.0);
        let trace = std::env::var_os("TRACE").is_some();
        let tr_n: usize = std::env::var("TRACE_N")
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(50);
        let (mut seg_e, mut seg_r, mut seg_near) = (0.0f64, 0.0f64, 0u32);
        let mut fb = Block::silent(1);
        let mut mb = Block::silent(1);
        for b in 0..blocks {
            let s = b * BLOCK_FRAMES;
            fb.channel_mut(0).copy_from_slice(&far[s..s + BLOCK_FRAMES]);
            mb.channel_mut(0).copy_from_slice(&mic[s..s + BLOCK_FRAMES]);
            aec.analyze_render(&fb);
            aec.process(&mut mb);
            if trace {
                for i in 0..BLOCK_FRAMES {
                    let ec = echo[s + i] as f64;
                    let left = aec.linear_output()[i] as f64 - (mic[s + i] as f64 - ec);
                    seg_e += ec * ec;
                    seg_r += left * left;
                }
                seg_near += u32::from(aec.near_end_active());
            }
            if trace && b % tr_n == tr_n - 1 {
                eprintln!(
                    "t {:5.1} s delay {} ms drift {:7.1} ppm lag {:7.2} linear {:5.1} dB near {:2}",
                    (s + BLOCK_FRAMES) as f64 / 48_000.0,
                    aec.delay_ms(),
                    aec.drift_ppm(),
                    aec.lag_samples(),
                    db(seg_e, seg_r),
                    seg_near
                );
                (seg_e, seg_r, seg_near) = (0.0, 0.0, 0);
            }
            if dump.is_some() {
                lin_out.extend_from_slice(aec.linear_output());
                aec_out.extend_from_slice(mb.channel(0));
            }
            if s < 2 * 48_000 {
                continue;
            }
            for i in 0..BLOCK_FRAMES {
                let (ec, m) = (echo[s + i] as f64, mic[s + i] as f64);
                // Output = mic − estimate; what is left of the echo = output − near − floor.
                let left = aec.linear_output()[i] as f64 - (m - ec);
                if s >= end {
                    e_end += ec * ec;
                    r_end += left * left;
                }
                if has_near && s >= 4 * 48_000 {
                    e_dt += ec * ec;
                    r_dt += left * left;
                } else {
                    e_fe += ec * ec;
                    r_fe += left * left;
                }
            }
        }
        let name = d.file_name().map(|n| n.to_string_lossy().into_owned());
        if let (Some(dir), Some(n)) = (&dump, &name) {
            for (ext, v) in [("lin", &lin_out), ("aec", &aec_out)] {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                std::fs::write(dir.join(format!("{n}.{ext}.f32")), bytes).expect("write dump");
            }
        }
        println!(
            "{:18} linear {:6.1} dB far end alone, {:6} dB in double talk, {:6.1} dB in the last 4 s; drift {:>7.1} ppm est, {} true; delay {} ms",
            name.unwrap_or_default(),
            db(e_fe, r_fe),
            if e_dt > 0.0 {
                format!("{:6.1}", db(e_dt, r_dt))
            } else {
                "-".into()
            },
            db(e_end, r_end),
            aec.drift_ppm(),
            true_ppm,
            aec.delay_ms()
        );
    }
}
