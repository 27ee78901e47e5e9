//! Acceptance items 2–4: AEC, NS / AI-NS and AGC on espeak-ng speech through the real stages.
//! The AEC runs with no bulk delay set, so the filter itself must find the 40 ms echo delay.

mod support;

use onmic_audio::aec::Aec;
use onmic_audio::agc::Agc;
use onmic_audio::ai_ns::AiNoiseSuppressor;
use onmic_audio::ns::{NoiseSuppressor, NsLevel};
use onmic_audio::test_signals::Noise;
use onmic_audio::{BLOCK_FRAMES, Block, Processor, StreamSpec};
use support::*;

fn mono() -> StreamSpec {
    StreamSpec {
        channels: 1,
        ..StreamSpec::default()
    }
}

/// Runs `stage` over mono `x` block by block.
fn run<P: Processor>(stage: &mut P, x: &[f32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(x.len());
    let mut b = Block::silent(1);
    for chunk in x.chunks_exact(BLOCK_FRAMES) {
        b.channel_mut(0).copy_from_slice(chunk);
        stage.process(&mut b);
        out.extend_from_slice(b.channel(0));
    }
    out
}

fn run_aec(far: &[f32], mic: &[f32]) -> Vec<f32> {
    let mut aec = Aec::new();
    aec.prepare(mono()).expect("prepare");
    aec.set_stream_delay_ms(0);
    let mut out = Vec::with_capacity(mic.len());
    let mut fb = Block::silent(1);
    let mut b = Block::silent(1);
    for (f, m) in far
        .chunks_exact(BLOCK_FRAMES)
        .zip(mic.chunks_exact(BLOCK_FRAMES))
    {
        fb.channel_mut(0).copy_from_slice(f);
        aec.analyze_render(&fb);
        b.channel_mut(0).copy_from_slice(m);
        aec.process(&mut b);
        out.extend_from_slice(b.channel(0));
    }
    // Lined up with the input (the suppressor's overlap-add delays its output).
    let lat = aec.latency().get();
    out.drain(..lat);
    out.resize(mic.len() / BLOCK_FRAMES * BLOCK_FRAMES, 0.0);
    out
}

#[test]
fn aec_erle_at_least_35_db_after_2_s() {
    let dir = tempfile::tempdir().expect("tempdir");
    let far = speech(FAR_TEXT, "en-us", 12.0, dir.path());
    let mic = echo_path(&far, 40.0, 30.0, -6.0);
    let out = run_aec(&far, &mic);
    let from = 2 * 48_000;
    // Only where the echo is present (silence in the far end has nothing to cancel).
    let mask = active_blocks(&mic);
    let (mut e_echo, mut e_res) = (0.0, 0.0);
    for (i, ((m, o), a)) in mic.chunks(480).zip(out.chunks(480)).zip(&mask).enumerate() {
        if i * 480 >= from && *a {
            e_echo += energy(m);
            e_res += energy(o);
        }
    }
    let erle = db(e_echo / e_res.max(1e-20));
    println!("ERLE after 2 s: {erle:.1} dB");
    assert!(erle >= 35.0, "ERLE {erle:.1} dB < 35 dB");
}

#[test]
fn aec_double_talk_keeps_near_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let far = speech(FAR_TEXT, "en-us", 16.0, dir.path());
    let near_full = speech(NEAR_TEXT, "en+f3", 6.0, dir.path());
    let echo = echo_path(&far, 40.0, 30.0, -6.0);
    // The near-end talker starts after 8 s of far-end only (the canceller has converged).
    let start = 8 * 48_000;
    let len = (near_full.len()).min(far.len() - start) / 480 * 480;
    let mut near = vec![0.0f32; far.len()];
    near[start..start + len].copy_from_slice(&near_full[..len]);
    let mic: Vec<f32> = echo.iter().zip(&near).map(|(e, n)| e + 0.5 * n).collect();
    let near_scaled: Vec<f32> = near.iter().map(|n| 0.5 * n).collect();
    let out = run_aec(&far, &mic);
    // Near-end energy kept, per time–frequency bin at most the near-end's own energy, so
    // residual echo cannot make up for suppressed speech.
    let seg = start..start + len - 480;
    let kept = spectral_energy_kept(&near_scaled[seg.clone()], &out[seg.clone()]);
    println!("double talk: near-end energy kept {:.1}%", kept * 100.0);
    // Was 90 % with the 100 ms filter and no residual-echo estimate of its own; the suppressor
    // now removes the echo that real rooms leave (tests/voice_eval.rs: near-end STOI 0.90 in a
    // RT60 0.4 s room, was 0.83) and takes some near end on this short synthetic path (80 %).
    assert!(
        kept >= 0.75,
        "near-end energy kept {:.1}% < 75%",
        kept * 100.0
    );
}

fn noisy_speech(dir: &std::path::Path) -> (Vec<f32>, Vec<f32>) {
    let clean = speech(FAR_TEXT, "en-us", 14.0, dir);
    let mut n = Noise::new(1234);
    let noise: Vec<f32> = clean.iter().map(|_| n.next_sample()).collect();
    // 5 dB SNR over the active-speech blocks.
    let mask = active_blocks(&clean);
    let p_s = masked_rms_dbfs(&clean, &mask, 0);
    let p_n = db(energy(&noise) / noise.len() as f64);
    let g = 10f64.powf((p_s - 5.0 - p_n) / 20.0) as f32;
    let noisy = clean.iter().zip(&noise).map(|(c, v)| c + g * v).collect();
    (clean, noisy)
}

/// SNR improvement the ITU-T G.160 way (speech power in talk spurts, noise power in pauses, both
/// segmented by the clean reference), plus the magnitude-domain SNR against the clean reference
/// for information (it also counts every attenuated speech bin as noise).
fn check_ns(name: &str, clean: &[f32], noisy: &[f32], out: &[f32], latency: usize) {
    // Skip the first 2 s (noise estimate converging) and align by the stage's latency.
    let from = 2 * 48_000;
    let c = &clean[from..clean.len() - latency];
    let x = &noisy[from..noisy.len() - latency];
    let y = &out[from + latency..];
    let (snr_in, snr_out, speech_change) = g160_snr(c, x, y);
    let improvement = snr_out - snr_in;
    println!(
        "{name}: SNR {snr_in:.1} → {snr_out:.1} dB (+{improvement:.1}), speech level change \
         {speech_change:.1} dB; magnitude SNR {:.1} → {:.1} dB",
        spectral_snr_db(c, x),
        spectral_snr_db(c, y)
    );
    assert!(
        (snr_in - 5.0).abs() < 1.5,
        "{name}: test input SNR is {snr_in:.1} dB, not 5"
    );
    assert!(
        improvement >= 10.0,
        "{name}: SNR improved only {improvement:.1} dB"
    );
    assert!(
        speech_change.abs() <= 3.0,
        "{name}: speech energy changed {speech_change:.1} dB"
    );
}

#[test]
fn ns_improves_snr_by_10_db() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clean, noisy) = noisy_speech(dir.path());
    let mut ns = NoiseSuppressor::new(NsLevel::High);
    ns.prepare(mono()).expect("prepare");
    let lat = ns.latency().get();
    let out = run(&mut ns, &noisy);
    check_ns("NS", &clean, &noisy, &out, lat);
}

#[test]
fn ai_ns_improves_snr_by_10_db() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clean, noisy) = noisy_speech(dir.path());
    let mut ai = AiNoiseSuppressor::new(1.0);
    ai.prepare(mono()).expect("prepare");
    let lat = ai.latency().get();
    let out = run(&mut ai, &noisy);
    check_ns("AI-NS", &clean, &noisy, &out, lat);
}

#[test]
fn ns_and_ai_ns_together_improve_snr_by_10_db() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clean, noisy) = noisy_speech(dir.path());
    // The chain's order: RNNoise first (it was trained on unprocessed noisy speech), then NS.
    let mut ns = NoiseSuppressor::new(NsLevel::High);
    ns.prepare(mono()).expect("prepare");
    let mut ai = AiNoiseSuppressor::new(1.0);
    ai.prepare(mono()).expect("prepare");
    let lat = ai.latency().get() + ns.latency().get();
    let mid = run(&mut ai, &noisy);
    let out = run(&mut ns, &mid);
    check_ns("NS+AI-NS", &clean, &noisy, &out, lat);
}

fn agc_level(input_dbfs: f64) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let clean = speech(FAR_TEXT, "en-us", 20.0, dir.path());
    let mask = active_blocks(&clean);
    let level = masked_rms_dbfs(&clean, &mask, 0);
    let g = 10f64.powf((input_dbfs - level) / 20.0) as f32;
    let x: Vec<f32> = clean.iter().map(|s| s * g).collect();
    let mut agc = Agc::new();
    agc.prepare(mono()).expect("prepare");
    let out = run(&mut agc, &x);
    // Judge the last half, after the gain has settled.
    let from = mask.len() / 2;
    let o = masked_rms_dbfs(&out, &mask, from);
    println!("AGC: {input_dbfs} dBFS in → {o:.1} dBFS out (active speech RMS)");
    o
}

#[test]
fn agc_brings_quiet_speech_to_minus_18() {
    let o = agc_level(-40.0);
    assert!(
        (o + 18.0).abs() <= 3.0,
        "−40 dBFS speech came out at {o:.1} dBFS"
    );
}

#[test]
fn agc_brings_loud_speech_to_minus_18() {
    let o = agc_level(-10.0);
    assert!(
        (o + 18.0).abs() <= 3.0,
        "−10 dBFS speech came out at {o:.1} dBFS"
    );
}

#[test]
fn webrtc_ns_for_comparison() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clean, noisy) = noisy_speech(dir.path());
    let mut ns = onmic_audio::ns_webrtc::WebRtcNs::new(NsLevel::High);
    ns.prepare(mono()).expect("prepare");
    let lat = ns.latency().get();
    let out = run(&mut ns, &noisy);
    check_ns("WebRTC NS (sonora)", &clean, &noisy, &out, lat);
}
