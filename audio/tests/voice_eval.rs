//! The voice chain on material nobody tuned it to (issue 11): image-source rooms, device delays,
//! clock drift, espeak voices and five noises from `scripts/voice_eval/material.py`, judged by
//! `scripts/voice_eval/report.py` (ERLE, wideband PESQ, STOI, noise in pauses) beside GStreamer's
//! `webrtcdsp` on the same files. Runs the suite's subset (13 conditions; the material is cached
//! under ~/.cache/onmic/voice-eval, about 4 minutes to generate on a cold cache).
//!
//! What is asserted, on the subset's conditions: the bars of acceptances 1, 2, 3 and 4 in full
//! (acceptance 2's echo bar on the output split exactly into near end and echo, `EchoOut`), and
//! that it is never worse than `webrtcdsp` in ERLE, PESQ and STOI (acceptance 5).

mod support;

use std::process::Command;

use support::{run_voice_eval, voice_eval_python, workspace_root};

struct Row<'a>(&'a serde_json::Value);

impl Row<'_> {
    fn get(&self, engine: &str, key: &str) -> f64 {
        self.0[engine][key]
            .as_f64()
            .unwrap_or_else(|| panic!("{engine}.{key} missing in {}", self.0))
    }
}

#[test]
fn voice_chain_in_real_rooms() {
    let (root, py) = (workspace_root(), voice_eval_python());
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("report.json");
    let out = Command::new(&py)
        .arg(root.join("scripts/voice_eval/report.py"))
        .args([
            "--subset",
            "--bin",
            env!("CARGO_BIN_EXE_onmic-audio"),
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("run report.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "report.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&json).expect("report json");
    let all: serde_json::Value = serde_json::from_str(&text).expect("json");
    let rows = all.as_object().expect("object");
    let mut checked = 0;
    let mut noise_gains = Vec::new();
    for (name, v) in rows {
        let r = Row(v);
        let meta = &v["meta"];
        let rt60 = meta["rt60"].as_f64().unwrap_or(0.0);
        let delay = meta["delay_ms"].as_f64().unwrap_or(0.0);
        if name.starts_with("echo-") {
            let erle = r.get("onmic", "erle");
            // The chain never sends the room back louder (the AGC holds on echo).
            assert!(erle > 0.0, "{name}: ERLE {erle:.1} dB: echo got louder");
            // Acceptance 5 for echo: at least webrtcdsp's ERLE. (Its echo probe runs with
            // sync=false offline, so its alignment, and its ERLE, change from run to run by a
            // few dB; it stays far under ours on every room of the sweep.)
            let peer = r.get("webrtcdsp", "erle");
            assert!(
                erle >= peer,
                "{name}: ERLE {erle:.1} dB below webrtcdsp's {peer:.1} dB"
            );
            if rt60 <= 0.6 && delay <= 200.0 {
                // Acceptance 1.
                assert!(erle >= 35.0, "{name}: ERLE {erle:.1} dB < 35 dB");
            } else {
                // Acceptance 1 at RT60 0.8 s / 300 ms.
                assert!(erle >= 25.0, "{name}: ERLE {erle:.1} dB < 25 dB");
            }
            checked += 1;
        } else if name.starts_with("dt-") {
            let stoi = r.get("onmic", "stoi");
            assert!(
                stoi >= r.get("webrtcdsp", "stoi")
                    && r.get("onmic", "pesq") >= r.get("webrtcdsp", "pesq"),
                "{name}: near end worse than webrtcdsp's"
            );
            if rt60 <= 0.6 && delay <= 200.0 {
                // Acceptance 2 in full: STOI (every room it covers since the drift round), PESQ
                // (since the aec8 round) and the echo 20 dB down, read on the output split
                // exactly into near end and echo (EchoOut; docs/voice-chain.md, "The split").
                assert!(stoi >= 0.85, "{name}: near-end STOI {stoi:.3} < 0.85");
                let pesq = r.get("onmic", "pesq");
                assert!(pesq >= 2.0, "{name}: near-end PESQ {pesq:.3} < 2.0");
                let echo = r.get("onmic", "echo_out");
                assert!(
                    echo >= 20.0,
                    "{name}: echo {echo:.2} dB down in double talk < 20 dB"
                );
            }
            assert!(
                r.get("onmic", "echo_dt") > 3.0,
                "{name}: echo in double talk not reduced"
            );
            checked += 1;
        } else if name.starts_with("noise-") {
            // Acceptance 3 in full (the mean PESQ gain is checked after the loop).
            let (pesq, pesq_in) = (r.get("onmic", "pesq"), r.get("onmic", "pesq_in"));
            noise_gains.push(pesq - pesq_in);
            let peer = r.get("webrtcdsp", "pesq");
            assert!(
                pesq >= peer,
                "{name}: PESQ {pesq:.3} below webrtcdsp's {peer:.3}"
            );
            let (stoi, stoi_in) = (r.get("onmic", "stoi"), r.get("onmic", "stoi_in"));
            assert!(
                stoi >= stoi_in - 0.01,
                "{name}: STOI {stoi:.3} vs input {stoi_in:.3}"
            );
            assert!(
                stoi >= r.get("webrtcdsp", "stoi"),
                "{name}: STOI below webrtcdsp's"
            );
            let pause = r.get("onmic", "pause_db");
            if name == "noise-babble" {
                // Babble: not louder in pauses than it came in.
                assert!(
                    pause >= 0.0,
                    "{name}: babble in pauses {pause:.1} dB: louder than the input"
                );
            } else {
                assert!(
                    pause >= 20.0,
                    "{name}: noise in pauses only {pause:.1} dB down"
                );
            }
            checked += 1;
        } else if name.starts_with("clean-") {
            // Acceptance 4 in full.
            let pesq = r.get("onmic", "pesq");
            let level = r.get("onmic", "level");
            assert!(pesq >= 4.0, "{name}: clean-speech PESQ {pesq:.2} < 4.0");
            assert!(
                (level + 18.0).abs() <= 2.0,
                "{name}: level {level:.1} dBFS, target −18"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 13, "the subset has 13 conditions");
    assert_eq!(noise_gains.len(), 5, "five noises");
    let mean = noise_gains.iter().sum::<f64>() / noise_gains.len() as f64;
    assert!(
        mean >= 0.4,
        "PESQ gain over the noises {mean:+.3} < +0.4 ({noise_gains:.2?})"
    );
}

/// `scripts/voice_eval/listener_ns.py`'s measure of the noise in speech pauses (issue 10's
/// acceptance 2, at a Chromium listener) on recordings made from the material with a known fall
/// (15, 25 and 35 dB), a level and an offset drawn at random, and 0-12 of a jitter buffer's
/// stretches (2.5-15 ms cut out or played twice): the block-by-block alignment reads the fall
/// within 1 dB in every case. With one lag for the whole recording (printed for comparison)
/// the stretches took up to 16 dB off.
#[test]
fn listener_pause_measure_follows_a_jitter_buffer_stretching_time() {
    let out = run_voice_eval("listener_ns.py", &["selftest".as_ref()]);
    let cases: Vec<serde_json::Value> =
        serde_json::from_slice(&out).expect("listener_ns.py selftest prints JSON");
    assert_eq!(cases.len(), 12, "{cases:?}");
    let mut bad = Vec::new();
    for c in &cases {
        let f = |k: &str| c[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "fall {:.0} dB, {} stretches: block by block {:.2} dB, one lag {:.2} dB",
            f("truth"),
            c["stretches"],
            f("fall"),
            f("fall_one_lag")
        );
        // NaN (a measure that failed) counts as off.
        let err = (f("fall") - f("truth")).abs();
        if err.is_nan() || err > 1.0 {
            bad.push(c.to_string());
        }
    }
    assert!(bad.is_empty(), "measured off the truth: {bad:?}");
}
