//! Issue 12, acceptance items 1–5: voice effects measured on their output — reverb presets' RT60
//! from the CLI's impulse response, wet = 0 bit-transparent, the voice changer's pitch on a
//! harmonic tone and its duration, intelligibility of espeak-ng speech through each preset,
//! virtual stereo / 3D voice correlation and loudness, 3D voice's period, no clicks when presets
//! switch or parameters move, the gate, the compressor's static curve and the EQ's response.
//! The bounds are the ones `docs/effects.md` documents.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use onmic_audio::effects::dynamics::{
    Compressor, CompressorSettings, DeEsser, DeEsserSettings, GateSettings, NoiseGate,
};
use onmic_audio::effects::eq::{EQ_BANDS, EqSettings, GraphicEq};
use onmic_audio::effects::reverb::{Reverb, ReverbSettings};
use onmic_audio::effects::spatial::Rotate3dSettings;
use onmic_audio::effects::{
    ChangerPreset, Effect, EffectError, EffectRack, EffectSettings, EffectsSlot, RoomPreset,
};
use onmic_audio::test_signals::{Noise, goertzel_power};
use onmic_audio::{BLOCK_FRAMES, Block, Processor};

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_onmic-audio"))
}

fn write_wav(path: &Path, channels: &[Vec<f32>]) {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("wav");
    for i in 0..channels[0].len() {
        for c in channels {
            w.write_sample(c[i]).expect("sample");
        }
    }
    w.finalize().expect("finalize");
}

fn read_wav(path: &Path) -> Vec<Vec<f32>> {
    let mut r = hound::WavReader::open(path).expect("wav");
    let ch = usize::from(r.spec().channels);
    let inter: Vec<f32> = r.samples::<f32>().map(|s| s.expect("s")).collect();
    (0..ch)
        .map(|c| inter.iter().skip(c).step_by(ch).copied().collect())
        .collect()
}

/// Runs the CLI in sound-card mode (processing off, limiter idle below −1 dBFS) with `effects`.
fn run_cli(input: &Path, out: &Path, effects: &[&str]) -> Vec<Vec<f32>> {
    let mut cmd = cli();
    cmd.arg("process")
        .arg(input)
        .args(["--mode", "soundcard", "--quiet", "--out"])
        .arg(out);
    for e in effects {
        cmd.args(["--effect", e]);
    }
    let o = cmd.output().expect("run onmic-audio");
    assert!(
        o.status.success(),
        "onmic-audio {effects:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    read_wav(out)
}

/// Runs `rack` over mono `x` block by block; returns the output channels (1 or 2).
fn run_rack(rack: &mut EffectRack, x: &[f32]) -> Vec<Vec<f32>> {
    let mut out: Vec<Vec<f32>> = vec![Vec::new(), Vec::new()];
    let mut channels = 1;
    for chunk in x.chunks(BLOCK_FRAMES) {
        let mut b = Block::silent(1);
        b.channel_mut(0)[..chunk.len()].copy_from_slice(chunk);
        rack.process(&mut b);
        channels = b.channels();
        for (c, o) in out.iter_mut().enumerate() {
            o.extend_from_slice(&b.channel(c.min(b.channels() - 1))[..chunk.len()]);
        }
    }
    out.truncate(channels);
    out
}

fn rack(specs: &[&str]) -> EffectRack {
    EffectRack::new(&EffectSettings::parse(specs).expect("parse")).expect("rack")
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn db(x: f64) -> f64 {
    20.0 * x.max(1e-12).log10()
}

/// RT60 from an impulse response: Schroeder backward integration of the energy (all channels),
/// a least-squares line through the −5 … −25 dB part (T20), extrapolated to 60 dB.
fn rt60(ir: &[Vec<f32>], start: usize) -> f64 {
    let n = ir[0].len();
    let e: Vec<f64> = (start..n)
        .map(|i| ir.iter().map(|c| f64::from(c[i]).powi(2)).sum())
        .collect();
    let mut acc = 0.0;
    let mut sch = vec![0.0; e.len()];
    for i in (0..e.len()).rev() {
        acc += e[i];
        sch[i] = acc;
    }
    let total = sch[0];
    let pts: Vec<(f64, f64)> = sch
        .iter()
        .enumerate()
        .map(|(i, s)| (i as f64 / 48_000.0, 10.0 * (s / total).log10()))
        .filter(|(_, d)| (-25.0..=-5.0).contains(d))
        .collect();
    assert!(pts.len() > 100, "impulse response too short to fit");
    let m = pts.len() as f64;
    let (sx, sy) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / m, sy / m);
    let (num, den) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    -60.0 / (num / den)
}

/// A click at 0.1 s, then silence long enough for a tail of `secs`.
fn click_file(dir: &Path, secs: f64) -> PathBuf {
    let n = ((0.1 + secs) * 48_000.0) as usize;
    let mut x = vec![0.0f32; n];
    x[4800] = 0.25;
    let p = dir.join(format!("click-{n}.wav"));
    write_wav(&p, &[x]);
    p
}

#[test]
fn reverb_presets_rt60_in_documented_range() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut report = Vec::new();
    for p in RoomPreset::ALL {
        let (lo, hi) = p.rt60_range();
        let click = click_file(dir.path(), f64::from(hi) * 1.6 + 0.3);
        let ir = run_cli(
            &click,
            &dir.path().join(format!("{}.wav", p.name())),
            &[p.name()],
        );
        assert_eq!(ir.len(), 2);
        // From 2 ms after the click: the direct sound is not part of the decay.
        let t = rt60(&ir, 4800 + 96);
        report.push(format!("{} {t:.2} s in [{lo:.2}, {hi:.2}]", p.name()));
        assert!(
            (f64::from(lo)..=f64::from(hi)).contains(&t),
            "{}: RT60 {t:.2} s outside {lo:.2}–{hi:.2} s",
            p.name()
        );
    }
    // The custom reverb over its room-size range: RT60 follows the documented decay time.
    for size in [0.1f32, 0.4, 0.7, 0.95] {
        let s = ReverbSettings {
            room_size: size,
            ..ReverbSettings::default()
        };
        let d = s.decay_s();
        let click = click_file(dir.path(), f64::from(d) * 1.8 + 0.3);
        let spec = format!("reverb:size={size},wet=0.5");
        let ir = run_cli(&click, &dir.path().join("custom.wav"), &[&spec]);
        let t = rt60(&ir, 4800 + 96);
        report.push(format!("reverb size {size}: {t:.2} s (decay {d:.2} s)"));
        let (lo, hi) = s.rt60_range();
        assert!(
            (f64::from(lo)..=f64::from(hi)).contains(&t),
            "reverb size {size}: RT60 {t:.2} s outside {lo:.2}–{hi:.2} s (decay time {d:.2} s)"
        );
    }
    println!("{}", report.join("\n"));
}

#[test]
fn reverb_wet_zero_is_bit_transparent() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut noise = Noise::new(5);
    let l: Vec<f32> = (0..48_000).map(|_| noise.next_sample() * 0.3).collect();
    let r: Vec<f32> = (0..48_000).map(|_| noise.next_sample() * 0.3).collect();
    let input = dir.path().join("noise.wav");
    write_wav(&input, &[l.clone(), r.clone()]);
    for spec in [
        "reverb:wet=0",
        "reverb:wet=0,size=0.9,predelay=50,width=0.3",
    ] {
        let out = run_cli(&input, &dir.path().join("out.wav"), &[spec]);
        for (a, b) in out.iter().zip([&l, &r]) {
            assert_eq!(a.len(), b.len());
            assert!(
                a.iter()
                    .zip(b.iter())
                    .all(|(x, y)| x.to_bits() == y.to_bits()),
                "{spec} changed the signal"
            );
        }
    }
    // And with wet > 0 it does change it (the check above can fail).
    let out = run_cli(&input, &dir.path().join("out.wav"), &["reverb:wet=0.01"]);
    assert!(out[0].iter().zip(&l).any(|(x, y)| x != y));
    // The stage itself, mono in: both outputs are the input, bit for bit.
    let mut rev = Reverb::new(ReverbSettings {
        wet: 0.0,
        ..ReverbSettings::default()
    });
    let mut b = Block::silent(1);
    b.channel_mut(0).copy_from_slice(&l[..BLOCK_FRAMES]);
    rev.process(&mut b);
    for c in 0..2 {
        assert!(
            b.channel(c)
                .iter()
                .zip(&l[..BLOCK_FRAMES])
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
    }
}

/// A 220 Hz tone with six harmonics (1/k amplitudes), `on` seconds after 0.3 s of silence, then
/// 0.5 s of silence.
fn harmonic_burst(f0: f64, on: f64) -> Vec<f32> {
    let n = ((0.8 + on) * 48_000.0) as usize;
    let (a, b) = (14_400usize, 14_400 + (on * 48_000.0) as usize);
    (0..n)
        .map(|i| {
            if i < a || i >= b {
                return 0.0;
            }
            let t = i as f64 / 48_000.0;
            let s: f64 = (1..=6)
                .map(|k| (std::f64::consts::TAU * f0 * k as f64 * t).sin() / k as f64)
                .sum();
            (0.15 * s) as f32
        })
        .collect()
}

/// The fundamental of a harmonic signal: the candidate whose first five harmonics hold the
/// most energy (coarse 1 Hz grid, then 0.05 Hz around the best).
fn fundamental(x: &[f32], lo: f64, hi: f64) -> f64 {
    let score = |f: f64| -> f64 {
        (1..=5)
            .map(|k| goertzel_power(x, (f * k as f64) as f32))
            .sum()
    };
    let mut best = (lo, 0.0);
    let mut f = lo;
    while f <= hi {
        let s = score(f);
        if s > best.1 {
            best = (f, s);
        }
        f += 1.0;
    }
    let mut fine = best;
    let mut f = best.0 - 1.0;
    while f <= best.0 + 1.0 {
        let s = score(f);
        if s > fine.1 {
            fine = (f, s);
        }
        f += 0.05;
    }
    fine.0
}

/// First and last sample whose 2.5 ms RMS is at least half (−6 dB) the plateau (the median of
/// the frames above a tenth of the loudest): the duration at half amplitude.
fn extent(x: &[f32]) -> (usize, usize) {
    let frames: Vec<f64> = x.chunks(120).map(rms).collect();
    let peak = frames.iter().cloned().fold(0.0, f64::max);
    let mut loud: Vec<f64> = frames.iter().cloned().filter(|r| *r > peak * 0.1).collect();
    loud.sort_by(f64::total_cmp);
    let plateau = loud[loud.len() / 2];
    let on: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, r)| **r >= plateau * 0.5)
        .map(|(i, _)| i)
        .collect();
    (on[0] * 120, (on[on.len() - 1] + 1) * 120)
}

#[test]
fn voice_changer_moves_pitch_by_its_semitones_and_keeps_duration() {
    let x = harmonic_burst(220.0, 1.5);
    let (x0, x1) = extent(&x);
    let mut report = Vec::new();
    let f_in = fundamental(&x[x0 + 24_000..x0 + 48_000], 80.0, 600.0);
    assert!(
        (f_in - 220.0).abs() < 0.5,
        "the estimator reads the input as {f_in:.2} Hz"
    );
    let mut failures = Vec::new();
    let mut presets: Vec<(String, f32, EffectRack)> = ChangerPreset::ALL
        .iter()
        .map(|p| {
            (
                p.name().to_string(),
                p.parameters().0,
                EffectRack::new(&EffectSettings {
                    effects: vec![Effect::VoiceChanger { preset: *p }],
                })
                .expect("rack"),
            )
        })
        .collect();
    // The pitch control over its range.
    for st in [-12.0f32, -5.0, 0.0, 1.0, 7.0, 12.0] {
        presets.push((
            format!("pitch {st:+}"),
            st,
            rack(&[&format!("pitch:semitones={st}")]),
        ));
    }
    for (name, st, mut r) in presets {
        let y = run_rack(&mut r, &x);
        let y = &y[0];
        let expected = 220.0 * 2f64.powf(f64::from(st) / 12.0);
        // The middle 0.5 s of the burst, past the shifter's latency.
        let lat = r.latency().get();
        let seg = &y[x0 + lat + 24_000..x0 + lat + 48_000];
        let f = fundamental(seg, 80.0, 600.0);
        let (y0, y1) = extent(y);
        let dur_in = (x1 - x0) as i64;
        let dur_out = (y1 - y0) as i64;
        report.push(format!(
            "{name}: {f:.2} Hz (expected {expected:.2}), duration {dur_out} vs {dur_in} frames, latency {lat}"
        ));
        if (f / expected - 1.0).abs() >= 0.02 {
            failures.push(format!(
                "{name}: fundamental {f:.2} Hz, expected {expected:.2} Hz"
            ));
        }
        if (dur_out - dur_in).abs() > BLOCK_FRAMES as i64 {
            failures.push(format!("{name}: duration {dur_out} frames, input {dur_in}"));
        }
    }
    println!("{}", report.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Envelope correlation: 10 ms RMS envelopes in dB (floored 50 dB below the peak) of the input
/// and of the output aligned by `lag` frames; Pearson correlation.
fn envelope_correlation(x: &[f32], y: &[f32], lag: usize) -> f64 {
    let env = |s: &[f32]| -> Vec<f64> {
        let e: Vec<f64> = s.chunks(480).map(|c| db(rms(c))).collect();
        let peak = e.iter().cloned().fold(-300.0, f64::max);
        e.iter().map(|v| v.max(peak - 50.0)).collect()
    };
    let a = env(&x[..x.len() - lag]);
    let b = env(&y[lag..]);
    let n = a.len().min(b.len());
    let (ma, mb) = (
        a[..n].iter().sum::<f64>() / n as f64,
        b[..n].iter().sum::<f64>() / n as f64,
    );
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma).powi(2);
        sbb += (b[i] - mb).powi(2);
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn speech_through_every_voice_preset_stays_intelligible() {
    let dir = tempfile::tempdir().expect("tmp");
    let x = support::speech(support::NEAR_TEXT, "en", 6.0, dir.path());
    // The check can fail: the same speech against a time-reversed copy correlates poorly.
    let rev: Vec<f32> = x.iter().rev().copied().collect();
    let control = envelope_correlation(&x, &rev, 0);
    assert!(control < 0.5, "control correlation {control:.2}");
    let mut names: Vec<&str> = ChangerPreset::ALL.iter().map(|p| p.name()).collect();
    names.extend(["magnetic", "fresh", "vital", "pitch:semitones=5"]);
    let mut report = Vec::new();
    for name in names {
        let mut r = rack(&[name]);
        let y = run_rack(&mut r, &x);
        let mono: Vec<f32> = if y.len() == 2 {
            y[0].iter().zip(&y[1]).map(|(a, b)| 0.5 * (a + b)).collect()
        } else {
            y[0].clone()
        };
        let c = envelope_correlation(&x, &mono, r.latency().get());
        report.push(format!("{name}: envelope correlation {c:.3}"));
    }
    println!("{}", report.join("\n"));
    for r in &report {
        let c: f64 = r
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(c >= 0.8, "{r} < 0.8");
    }
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len().min(b.len());
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]), f64::from(b[i]));
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn virtual_stereo_and_3d_voice_decorrelate_and_keep_loudness() {
    let dir = tempfile::tempdir().expect("tmp");
    let x = support::speech(support::FAR_TEXT, "en", 20.0, dir.path());
    let in_db = db(rms(&x));
    for name in ["virtual_stereo", "3d_voice", "3d_voice:period=4"] {
        let y = run_rack(&mut rack(&[name]), &x);
        assert_eq!(y.len(), 2, "{name} is stereo");
        let c = correlation(&y[0], &y[1]);
        let (l, r) = (db(rms(&y[0])), db(rms(&y[1])));
        println!("{name}: L/R correlation {c:.3}, L {l:.2} dB, R {r:.2} dB, input {in_db:.2} dB");
        assert!(c < 0.8, "{name}: correlation {c:.3}");
        assert!((l - r).abs() < 2.0, "{name}: L {l:.2} dB vs R {r:.2} dB");
        assert!(
            (l - in_db).abs() < 2.0 && (r - in_db).abs() < 2.0,
            "{name}: L {l:.2} / R {r:.2} dB vs input {in_db:.2} dB"
        );
    }
    // Control: a plain mono reverb preset keeps the channels correlated.
    let y = run_rack(&mut rack(&["studio"]), &x);
    assert!(correlation(&y[0], &y[1]) > 0.8);
}

#[test]
fn voice_3d_balance_cycles_with_the_period() {
    let mut noise = Noise::new(11);
    let x: Vec<f32> = (0..48_000 * 24)
        .map(|_| noise.next_sample() * 0.2)
        .collect();
    for period in [2.0f32, 3.0, 5.5] {
        let mut r = EffectRack::new(&EffectSettings {
            effects: vec![Effect::Room {
                preset: RoomPreset::Voice3d,
                rotate: Rotate3dSettings {
                    period_s: period,
                    depth: 0.9,
                },
            }],
        })
        .expect("rack");
        let y = run_rack(&mut r, &x);
        // Balance (L − R, dB) every 20 ms.
        let bal: Vec<f64> = y[0]
            .chunks(960)
            .zip(y[1].chunks(960))
            .map(|(l, r)| db(rms(l)) - db(rms(r)))
            .collect();
        // Upward zero crossings of the balance (with 1 dB hysteresis), in seconds.
        let mut ups = Vec::new();
        let mut low = false;
        for (i, b) in bal.iter().enumerate() {
            if *b < -1.0 {
                low = true;
            } else if *b > 1.0 && low {
                low = false;
                ups.push(i as f64 * 0.02);
            }
        }
        assert!(ups.len() >= 3, "period {period}: {} cycles", ups.len());
        let measured = (ups[ups.len() - 1] - ups[0]) / (ups.len() - 1) as f64;
        let swing = bal.iter().cloned().fold(f64::MIN, f64::max)
            - bal.iter().cloned().fold(f64::MAX, f64::min);
        println!("3d period {period} s: measured {measured:.3} s, balance swing {swing:.1} dB");
        assert!(
            (measured / f64::from(period) - 1.0).abs() < 0.03,
            "period {period}: measured {measured:.3} s"
        );
        assert!(swing > 12.0, "balance swing {swing:.1} dB");
    }
}

/// The click bound `docs/effects.md` documents: during a switch the largest sample-to-sample step
/// is at most 1.25 × the largest step of the steady output before or after it, plus 0.005.
fn assert_no_click(y: &[Vec<f32>], switch_at: usize, label: &str) {
    let step = |c: &[f32], a: usize, b: usize| {
        (a.max(1)..b)
            .map(|i| (c[i] - c[i - 1]).abs())
            .fold(0.0f32, f32::max)
    };
    for c in y {
        let steady = step(c, switch_at - 14_400, switch_at - 2_400).max(step(
            c,
            switch_at + 9_600,
            switch_at + 24_000,
        ));
        let during = step(c, switch_at - 2_400, switch_at + 9_600);
        assert!(
            during <= 1.25 * steady + 0.005,
            "{label}: step {during:.4} during the switch, steady {steady:.4}"
        );
    }
}

/// Runs a 440 Hz sine through a slot, switching to each rack in turn every 0.5 s.
fn switch_through(racks: Vec<(String, EffectRack)>) {
    let mut slot = EffectsSlot::default();
    let mut out: Vec<Vec<f32>> = vec![Vec::new(), Vec::new()];
    let mut n = 0u64;
    let mut block = |slot: &mut EffectsSlot, out: &mut Vec<Vec<f32>>| {
        let mut b = Block::silent(1);
        for (i, s) in b.channel_mut(0).iter_mut().enumerate() {
            let t = (n * BLOCK_FRAMES as u64 + i as u64) as f64 / 48_000.0;
            *s = 0.3 * (std::f64::consts::TAU * 440.0 * t).sin() as f32;
        }
        n += 1;
        slot.process(&mut b);
        b.set_channels(2);
        out[0].extend_from_slice(b.channel(0));
        out[1].extend_from_slice(b.channel(1));
        drop(slot.take_retired());
    };
    for _ in 0..60 {
        block(&mut slot, &mut out);
    }
    let mut switches = Vec::new();
    for (name, r) in racks {
        switches.push((name, out[0].len()));
        drop(slot.set(Box::new(r)));
        for _ in 0..60 {
            block(&mut slot, &mut out);
        }
    }
    for (name, at) in switches {
        // The steady window after the switch ends before the next one.
        if at + 24_000 <= out[0].len() {
            assert_no_click(&out, at, &name);
        }
    }
}

#[test]
fn switching_presets_and_moving_parameters_makes_no_click() {
    // Every preset, one after the other (each switch crossfades from the previous one).
    let mut racks: Vec<(String, EffectRack)> = onmic_audio::effects::EFFECT_NAMES
        .iter()
        .map(|n| (n.to_string(), rack(&[n])))
        .collect();
    // Parameter moves, each a small step from the previous setting.
    let moves = [
        "reverb:wet=0.2",
        "reverb:wet=0.5",
        "reverb:wet=0.5,size=0.8",
        "reverb:wet=0.5,size=0.8,damping=0.1",
        "reverb:wet=0.5,size=0.8,damping=0.1,predelay=80",
        "reverb:wet=0.5,size=0.8,damping=0.1,predelay=80,width=0.2",
        "eq:1k=6",
        "eq:1k=6,500=-12",
        "eq:1k=6,500=-12,preamp=3",
        "pitch:semitones=1",
        "pitch:semitones=3",
        "pitch:semitones=3,formant=1.3",
        "compressor:threshold=-20",
        "compressor:threshold=-20,ratio=20",
        "gate:open=-20,close=-30",
        "gate:open=-5,close=-6",
        "deesser:freq=3000,threshold=-40",
        "3d_voice:period=2",
        "3d_voice:period=8",
        "none",
    ];
    racks.extend(moves.iter().map(|m| (m.to_string(), rack(&[m]))));
    switch_through(racks);
}

#[test]
fn a_hard_switch_would_click() {
    // The click check can fail: the same switch without the slot's crossfade clicks.
    let mut a = rack(&["none"]);
    let mut b = rack(&["vocal_concert"]);
    let mut out: Vec<Vec<f32>> = vec![Vec::new(), Vec::new()];
    for n in 0..120u64 {
        let mut blk = Block::silent(1);
        for (i, s) in blk.channel_mut(0).iter_mut().enumerate() {
            let t = (n * BLOCK_FRAMES as u64 + i as u64) as f64 / 48_000.0;
            *s = 0.3 * (std::f64::consts::TAU * 440.0 * t).sin() as f32;
        }
        let mut other = blk.clone();
        b.process(&mut other);
        if n >= 60 {
            blk = other;
        } else {
            a.process(&mut blk);
        }
        blk.set_channels(2);
        out[0].extend_from_slice(blk.channel(0));
        out[1].extend_from_slice(blk.channel(1));
    }
    let r = std::panic::catch_unwind(|| assert_no_click(&out, 60 * BLOCK_FRAMES, "hard"));
    assert!(r.is_err(), "a hard switch passed the click check");
}

fn sine(freq: f64, amp_db: f64, secs: f64) -> Vec<f32> {
    let a = 10f64.powf(amp_db / 20.0);
    (0..(secs * 48_000.0) as usize)
        .map(|i| (a * (std::f64::consts::TAU * freq * i as f64 / 48_000.0).sin()) as f32)
        .collect()
}

fn run_stage<P: Processor>(p: &mut P, x: &[f32]) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for chunk in x.chunks(BLOCK_FRAMES) {
        let mut b = Block::silent(1);
        b.channel_mut(0)[..chunk.len()].copy_from_slice(chunk);
        p.process(&mut b);
        y.extend_from_slice(&b.channel(0)[..chunk.len()]);
    }
    y
}

#[test]
fn gate_attenuates_40_db_below_threshold_and_opens_within_attack() {
    for (close, open, attack) in [
        (-32.0f32, -26.0f32, 25.0f32),
        (-50.0, -40.0, 5.0),
        (-20.0, -20.0, 100.0),
    ] {
        let s = GateSettings {
            close_threshold_db: close,
            open_threshold_db: open,
            attack_ms: attack,
            hold_ms: 200.0,
            release_ms: 150.0,
        };
        // Below the close threshold: at least 40 dB down (after the first block).
        let quiet = sine(300.0, f64::from(close) - 6.0, 1.0);
        let y = run_stage(&mut NoiseGate::new(s), &quiet);
        let att = db(rms(&quiet[4800..])) - db(rms(&y[4800..]));
        assert!(att >= 40.0, "gate {close}/{open}: attenuation {att:.1} dB");
        // Silence, then a tone above the open threshold: fully open within the attack time.
        let mut x = vec![0.0f32; 24_000];
        x.extend(sine(300.0, f64::from(open) + 6.0, 1.0));
        let y = run_stage(&mut NoiseGate::new(s), &x);
        // Gain = |y| / |x| on the tone's peaks; the first sample at full gain.
        let full = (24_000..x.len())
            .find(|&i| {
                x[i].abs() > 0.5 * x[24_000..].iter().fold(0.0f32, |m, v| m.max(v.abs()))
                    && (y[i] / x[i]) > 0.999
            })
            .expect("gate never opened");
        let took_ms = (full - 24_000) as f32 / 48.0;
        println!(
            "gate {close}/{open} attack {attack} ms: {att:.0} dB below, open after {took_ms:.1} ms"
        );
        assert!(
            took_ms <= attack + 1.0,
            "opened after {took_ms:.1} ms, attack {attack} ms"
        );
        assert!(
            took_ms >= attack * 0.8,
            "opened after {took_ms:.1} ms: faster than the attack {attack} ms"
        );
    }
}

#[test]
fn compressor_static_curve_matches_its_ratio() {
    for (ratio, threshold) in [
        (2.0f32, -18.0f32),
        (4.0, -30.0),
        (10.0, -18.0),
        (20.0, -40.0),
    ] {
        for gain in [0.0f32, 6.0] {
            let s = CompressorSettings {
                ratio,
                threshold_db: threshold,
                attack_ms: 6.0,
                release_ms: 60.0,
                output_gain_db: gain,
            };
            let mut input_db = f64::from(threshold) - 10.0;
            while input_db <= (f64::from(threshold) + 24.0).min(-1.0) {
                let x = sine(1000.0, input_db, 1.0);
                let y = run_stage(&mut Compressor::new(s), &x);
                let peak = |v: &[f32]| v.iter().fold(0.0f32, |m, s| m.max(s.abs()));
                let out_db = db(f64::from(peak(&y[24_000..])));
                let over = (input_db - f64::from(threshold)).max(0.0);
                let expected = input_db - over + over / f64::from(ratio) + f64::from(gain);
                assert!(
                    (out_db - expected).abs() <= 1.0,
                    "ratio {ratio} threshold {threshold} gain {gain}: in {input_db:.1} dB out {out_db:.2} dB, expected {expected:.2}"
                );
                input_db += 4.0;
            }
        }
    }
}

#[test]
fn eq_measured_response_matches_the_set_bands() {
    let mut seed = 0x1234_5678u64;
    let mut rnd = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((seed >> 33) as f32 / (1u64 << 31) as f32) * 24.0 - 12.0
    };
    let mut sets: Vec<[f32; 10]> = vec![
        [0.0; 10],
        [
            12.0, -12.0, 12.0, -12.0, 12.0, -12.0, 12.0, -12.0, 12.0, -12.0,
        ],
    ];
    for _ in 0..4 {
        let mut b = [0.0; 10];
        for g in b.iter_mut() {
            *g = rnd();
        }
        sets.push(b);
    }
    for bands in sets {
        let mut eq = GraphicEq::new(EqSettings {
            bands_db: bands,
            preamp_db: 0.0,
        });
        for (k, f) in EQ_BANDS.iter().enumerate() {
            let x = sine(*f, -20.0, 1.0);
            eq.reset();
            let y = run_stage(&mut eq, &x);
            let g = 10.0
                * (goertzel_power(&y[24_000..], *f as f32)
                    / goertzel_power(&x[24_000..], *f as f32))
                .log10();
            assert!(
                (g - f64::from(bands[k])).abs() <= 1.0,
                "{f} Hz: measured {g:.2} dB, set {} dB ({bands:?})",
                bands[k]
            );
        }
    }
}

#[test]
fn deesser_reduces_sibilance_and_leaves_the_voice() {
    let s = DeEsserSettings::default();
    let low = sine(300.0, -12.0, 1.0);
    let y = run_stage(&mut DeEsser::new(s), &low);
    assert!((db(rms(&y[9600..])) - db(rms(&low[9600..]))).abs() < 0.1);
    let hiss = sine(8000.0, -12.0, 1.0);
    let y = run_stage(&mut DeEsser::new(s), &hiss);
    let red = db(rms(&hiss[9600..])) - db(rms(&y[9600..]));
    assert!(red > 6.0, "sibilance reduced by {red:.1} dB only");
}

#[test]
fn effect_names_and_parameters_are_checked() {
    for bad in [
        "karaoke",
        "ktv:wet=1",
        "pitch:semitone=3",
        "pitch:semitones=three",
        "pitch:semitones",
        "eq:3k=1",
        "reverb:size=NaN",
        "reverb:size=inf",
        "gate:open=-10,,",
        "",
    ] {
        let e = Effect::parse(bad);
        assert!(e.is_err(), "{bad:?} was accepted: {e:?}");
    }
    assert!(matches!(
        Effect::parse("ktv:wet=1"),
        Err(EffectError::UnknownParameter { .. })
    ));
    let many: Vec<&str> = std::iter::repeat_n("ktv", 17).collect();
    assert_eq!(EffectSettings::parse(&many), Err(EffectError::TooMany(17)));
    // Out-of-range values are clamped, never a panic.
    for spec in [
        "pitch:semitones=99,formant=100",
        "reverb:size=-5,wet=7,predelay=10000",
        "gate:open=-200,close=50,attack=-1",
        "compressor:ratio=0,threshold=20",
        "3d_voice:period=0",
        "eq:1k=90,preamp=-90",
    ] {
        let mut r = rack(&[spec]);
        let y = run_rack(&mut r, &sine(440.0, -10.0, 0.2));
        assert!(y.iter().flatten().all(|s| s.is_finite()), "{spec}");
    }
    // The CLI: a bad effect is a clear error, not a panic.
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in.wav");
    write_wav(&input, &[sine(440.0, -10.0, 0.1)]);
    let o = cli()
        .arg("process")
        .arg(&input)
        .args(["--effect", "karaoke", "--out"])
        .arg(dir.path().join("o.wav"))
        .output()
        .expect("run");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("unknown effect \"karaoke\"") && err.contains("onmic-audio effects"),
        "{err}"
    );
    // The listing names every preset with its parameters.
    let o = cli().arg("effects").output().expect("run");
    assert!(o.status.success());
    let list = String::from_utf8_lossy(&o.stdout);
    for n in onmic_audio::effects::EFFECT_NAMES
        .iter()
        .filter(|n| **n != "none")
    {
        assert!(
            list.lines().any(|l| l.starts_with(n)),
            "{n} missing from:\n{list}"
        );
    }
    assert!(list.contains("RT60") && list.contains("semitones"));
}

#[test]
fn settings_round_trip_through_json() {
    let s = EffectSettings::parse(&[
        "gate",
        "hulk",
        "eq:1k=3,8k=-2",
        "3d_voice:period=4",
        "reverb:wet=0.4",
    ])
    .expect("parse");
    let json = serde_json::to_string(&s).expect("json");
    let back: EffectSettings = serde_json::from_str(&json).expect("back");
    assert_eq!(s, back);
    assert!(
        serde_json::from_str::<EffectSettings>(r#"{"effects":[{"kind":"room","preset":"disco"}]}"#)
            .is_err()
    );
}

#[test]
fn voice_mode_publishes_stereo_effects_through_the_cli() {
    let dir = tempfile::tempdir().expect("tmp");
    let input = dir.path().join("in.wav");
    write_wav(&input, &[sine(440.0, -10.0, 0.5)]);
    let out = dir.path().join("o.wav");
    let o = cli()
        .arg("process")
        .arg(&input)
        .args(["--mode", "voice", "--effect", "virtual_stereo", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_wav(&out).len(), 2);
}

#[test]
fn voice_changer_eq_is_applied_in_the_vocoder() {
    // The changer's EQ runs on the vocoder's spectrum: a 1 kHz sine through a 0-semitone shift
    // with the 1 kHz band at +9 dB and one at 250 Hz with the 1 kHz band at −6 dB.
    for (gain, f) in [(9.0f32, 1000.0f64), (-6.0, 1000.0), (6.0, 250.0)] {
        let mut bands = [0.0; 10];
        let k = EQ_BANDS.iter().position(|b| *b == f).expect("band");
        bands[k] = gain;
        let eq = GraphicEq::new(EqSettings {
            bands_db: bands,
            preamp_db: 0.0,
        });
        let mut p = onmic_audio::effects::pitch::PitchShift::new(0.0, 1.0).with_eq(&eq);
        let x = sine(f, -20.0, 1.0);
        let y = run_stage(&mut p, &x);
        let g = 10.0
            * (goertzel_power(&y[24_000..], f as f32) / goertzel_power(&x[24_000..], f as f32))
                .log10();
        assert!(
            (g - f64::from(gain)).abs() <= 1.0,
            "{f} Hz band at {gain} dB: measured {g:.2} dB"
        );
    }
}
