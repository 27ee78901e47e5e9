//! Voice effects heard at a Chromium listener (issue 12, acceptance 8's listener half, and
//! acceptance 4 measured at the listener): the Studio (tauri-driver + WebKitWebDriver under Xvfb)
//! goes live in its local room with a PulseAudio null sink's monitor as its input; Debian's
//! Chromium opens the UI's share link (`&test`: the page's test hooks) inside a loopback-only
//! network namespace; what the listener hears is recorded inside the page (`onmicTestRecord`,
//! docs/decisions.md "What a Chromium listener hears").
//!
//! The Studio stays in sound-card mode (its default): every voice-chain process off, stereo Opus
//! at 128 kbps without DTX, so the tone reaches the effects rack as it was played. Voice mode
//! would run the noise suppressors and the AGC in front of the rack (made to take a steady sound
//! down as noise and to level it) and publish mono at 48 kbps with DTX; the rack is the same in
//! both modes (a voice changer shifts the mid of a stereo block).
//!
//! 1. Voice changer: a 220 Hz tone with six harmonics (1/k amplitudes, as `audio/tests/effects.rs`
//!    checks acceptance 2) plays into the input; the host picks *Girl* (+6 semitones) and then
//!    *Hulk* (−7) in the effects panel and finally *Off*. The listener's fundamental (the
//!    candidate 100–400 Hz whose first five harmonics hold the most energy, per 1 s of a 3 s
//!    recording, median) must be within 3 % of 220·2^(S/12) each time (and of 220 Hz with no
//!    preset, before and after).
//! 2. Room preset: tone bursts (300 ms of 1 kHz every 1.5 s) instead; without a preset and with
//!    *Vocal concert* the listener's 10 s recording gives each burst's sounding time (the ear
//!    monitor test's measure, `tests/e2e/studio_effects.rs`): the median at most 450 ms without,
//!    at least 600 ms with the preset.
//! 3. Acceptance 4 at the listener: a 440 Hz sine; 12 s recorded with no change (the control)
//!    and 14 s while the host switches room presets, voice changers, the pitch slider, an EQ
//!    band, the custom reverb and the compressor, one change every 0.6 s (18 changes). Bound: no
//!    sample-to-sample step larger than twice the largest step a clean sine at 622 Hz (the
//!    highest frequency these settings make of 440 Hz: *Girl*, +6 semitones) makes at the
//!    largest level within 50 ms. The page records the track's own 10 ms chunks
//!    (`MediaStreamTrackProcessor`: what the jitter buffer hands the page, with no Web Audio
//!    graph in between). A step over the bound is put down to the receiving path only where it
//!    lines up with a run of exact zeros at the recording's start (the stream not yet flowing),
//!    lies near a repair the receiver's own counters report (concealment, time-stretch; 200 ms
//!    after, 400 ms before, as the counters show it late) or within 200 ms of a stall of
//!    Chromium's audio thread (a chunk handed over more than 15 ms late). Any other step, in the
//!    control or while switching, is a click. The control is the path's baseline (printed);
//!    the switching run passes on the first of three attempts that is judged enough (at most
//!    half of it near repairs or stalls) and has no click, and fails when a click follows the
//!    same change in two attempts or no attempt passes (`console::judge_clicks`: under load the
//!    path also splices its output now and then where nothing shows it, at random times; a
//!    click the Studio makes follows its change every time). (The page's
//!    earlier `ScriptProcessorNode` tap had seams of its own every 16384 frames and splices on
//!    the stream's 10 ms grid that no counter showed, so this was printed, not asserted, until
//!    the tap changed: docs/effects.md, "No clicks".)
//!
//! Screenshots: `target/screenshots/effects-chromium-*.png` (the panel with *Girl*, with *Hulk*,
//! with *Vocal concert*); the listener's click recordings:
//! `target/screenshots/effects-chromium-{control,switching}.wav`.

use std::time::{Duration, Instant};

use onmic_e2e::audio::{
    BURST_MS, NullSink, Playback, burst_tails, describe_tails, median, write_bursts, write_tone,
};
use onmic_e2e::browser::Browser;
use onmic_e2e::console::{
    Capture, go_live, judge_clicks, launch_local_studio, open_listener, record_listener,
    report_clicks, rms_dbfs, set_range, share_link,
};
use onmic_e2e::netns::run_in_netns;
use onmic_e2e::studio::Studio;
use onmic_e2e::wait_for;

const WAIT: Duration = Duration::from_secs(20);
/// The harmonic tone's fundamental.
const F0: f64 = 220.0;
/// How far the listener's fundamental may be from the preset's, relative.
const PITCH_TOLERANCE: f64 = 0.03;
/// Without a preset, how long a burst may sound at the listener (its 300 ms, plus the partial
/// windows at its ends, the codec's and the jitter buffer's smear).
const MAX_DRY_SOUNDING_MS: f32 = 450.0;
/// With *Vocal concert* (RT60 1.24–1.90 s, wet 0.35), at least this long.
const MIN_WET_SOUNDING_MS: f32 = 600.0;
/// The click check's sine.
const SINE_HZ: f32 = 440.0;
const SINE_AMP: f32 = 0.25;
/// The highest frequency the switched settings make of the sine: *Girl*, +6 semitones.
const SWITCH_MAX_HZ: f32 = 622.25;

#[test]
fn a_chromium_listener_hears_the_voice_changer_and_the_room_preset() {
    run_in_netns(
        "a_chromium_listener_hears_the_voice_changer_and_the_room_preset",
        scenario,
    );
}

/// Writes `seconds` of the harmonic tone (220 Hz and five overtones, amplitudes 0.15/k) on both
/// channels of a 48 kHz 16-bit WAV.
fn write_harmonic(path: &std::path::Path, seconds: f64) {
    onmic_e2e::audio::write_stereo_wav(
        path,
        (0..(seconds * 48_000.0) as usize).map(|i| {
            let t = i as f64 / 48_000.0;
            let x: f64 = (1..=6)
                .map(|k| 0.15 * (std::f64::consts::TAU * F0 * k as f64 * t).sin() / k as f64)
                .sum();
            [x as f32; 2]
        }),
    );
}

fn mono(c: &Capture) -> Vec<f32> {
    c.left
        .iter()
        .zip(&c.right)
        .map(|(l, r)| 0.5 * (l + r))
        .collect()
}

fn goertzel_power(x: &[f32], freq: f64, rate: f64) -> f64 {
    let coeff = 2.0 * (std::f64::consts::TAU * freq / rate).cos();
    let (mut s1, mut s2) = (0f64, 0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0)
}

/// The fundamental of a harmonic signal (as `audio/tests/effects.rs` finds it): the candidate in
/// `lo..=hi` whose first five harmonics hold the most energy (1 Hz grid, then 0.05 Hz around
/// the best).
fn fundamental(x: &[f32], rate: f64, lo: f64, hi: f64) -> f64 {
    let score = |f: f64| -> f64 { (1..=5).map(|k| goertzel_power(x, f * k as f64, rate)).sum() };
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

/// Records 3 s at the listener; the fundamental of each second, their median, and the level.
async fn listener_pitch(browser: &Browser) -> anyhow::Result<(Vec<f64>, f64, f32)> {
    let c = record_listener(browser, 0, 3.0).await?;
    let x = mono(&c);
    let rate = f64::from(c.rate);
    let per_second: Vec<f64> = x
        .chunks_exact(c.rate as usize)
        .map(|s| fundamental(s, rate, 100.0, 400.0))
        .collect();
    let mid = f64::from(median(per_second.iter().map(|f| *f as f32).collect()));
    Ok((per_second, mid, rms_dbfs(&x)))
}

/// Picks the tile `preset` of the panel's `group` (`room`, `changer`) and waits for it to read
/// as picked.
async fn pick(studio: &Studio, group: &str, preset: &str) -> anyhow::Result<()> {
    let css = format!("#fx-{group} [data-preset='{preset}']");
    studio.click(&css).await?;
    wait_for(Duration::from_secs(5), &css, || async {
        studio
            .attr(&css, "aria-checked")
            .await
            .filter(|v| v == "true")
    })
    .await?;
    Ok(())
}

/// Clicks the switch `id` (a `Power` toggle of the panel) until it reads `on`.
async fn set_switch(studio: &Studio, id: &str, on: bool) -> anyhow::Result<()> {
    let css = format!("#{id}");
    let want = if on { "true" } else { "false" };
    if studio.attr(&css, "aria-checked").await.as_deref() != Some(want) {
        studio.click(&css).await?;
    }
    wait_for(Duration::from_secs(5), id, || async {
        studio
            .attr(&css, "aria-checked")
            .await
            .filter(|v| v == want)
    })
    .await?;
    Ok(())
}

async fn scroll_to(studio: &Studio, css: &str) -> anyhow::Result<()> {
    studio
        .client
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView({ block: 'center' });",
            vec![serde_json::json!(css)],
        )
        .await?;
    Ok(())
}

/// The host's 18 changes in the effects panel, one every 0.6 s after 0.9 s, each noted when it
/// was sent (s after `asked`); everything ends off as it began.
async fn switch_everything(
    studio: &Studio,
    asked: Instant,
) -> anyhow::Result<Vec<(&'static str, f32)>> {
    let mut at: Vec<(&'static str, f32)> = Vec::new();
    let mut step = async |what: &'static str| {
        at.push((what, asked.elapsed().as_secs_f32()));
        tokio::time::sleep(Duration::from_millis(600)).await;
        anyhow::Ok(())
    };
    tokio::time::sleep(Duration::from_millis(900)).await;
    for (group, preset) in [
        ("room", "ktv"),
        ("room", "vocal_concert"),
        ("room", "off"),
        ("changer", "uncle"),
        ("changer", "girl"),
        ("changer", "off"),
    ] {
        pick(studio, group, preset).await?;
        step(preset).await?;
    }
    for st in [3.0, -2.0, 0.0] {
        set_range(studio, "#fx-pitch", st).await?;
        step("pitch").await?;
    }
    set_switch(studio, "fx-eq-on", true).await?;
    step("eq on").await?;
    set_range(studio, "#fx-eq-4", 6.0).await?;
    step("eq 500 Hz +6").await?;
    set_range(studio, "#fx-eq-4", 0.0).await?;
    step("eq 500 Hz 0").await?;
    set_switch(studio, "fx-eq-on", false).await?;
    step("eq off").await?;
    set_switch(studio, "fx-reverb-on", true).await?;
    step("reverb on").await?;
    set_range(studio, "#fx-reverb-wet", 0.6).await?;
    step("reverb wet 0.6").await?;
    set_switch(studio, "fx-reverb-on", false).await?;
    step("reverb off").await?;
    // Back to the default wet (off, so unheard), for the next attempt's change to be one.
    set_range(studio, "#fx-reverb-wet", 0.3).await?;
    set_switch(studio, "fx-comp-on", true).await?;
    step("compressor on").await?;
    set_switch(studio, "fx-comp-on", false).await?;
    step("compressor off").await?;
    Ok(at)
}

async fn scenario() -> anyhow::Result<()> {
    let started = Instant::now();
    let input = NullSink::create("onmic_e2e_fxchr_in", "Onmic_E2E_FX_Chromium_In");
    let dir = tempfile::tempdir()?;
    let harmonic = dir.path().join("harmonic.wav");
    write_harmonic(&harmonic, 240.0);
    let playback = Playback::start(&input, &harmonic);
    let (studio, _url) = launch_local_studio(&input).await?;
    go_live(&studio).await?;
    assert_eq!(
        studio
            .attr("#mode-soundcard", "aria-checked")
            .await
            .as_deref(),
        Some("true"),
        "a new Studio starts in sound-card mode"
    );
    let link = share_link(&studio).await?;
    let browser = Browser::launch().await?;
    open_listener(&browser, &link).await?;
    studio.click("#tab-effects").await?;

    // 1. The voice changer at the listener.
    let (per_second, f, level) = wait_for(WAIT, "the host's tone at the listener", || async {
        let m = listener_pitch(&browser).await.ok()?;
        (m.2 > -40.0).then_some(m)
    })
    .await?;
    let mut pitches = vec![("off", 0.0, per_second, f, level)];
    for (preset, semitones) in [("girl", 6.0), ("hulk", -7.0), ("off", 0.0)] {
        pick(&studio, "changer", preset).await?;
        // The rack's warm-up and crossfade (tens of ms), the path and the jitter buffer.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let (per_second, f, level) = listener_pitch(&browser).await?;
        if preset != "off" {
            scroll_to(&studio, "#fx-changer").await?;
            studio
                .screenshot(&format!("effects-chromium-{preset}"))
                .await?;
        }
        pitches.push((preset, semitones, per_second, f, level));
    }
    let mut pitch_failures = Vec::new();
    for (preset, semitones, per_second, f, level) in &pitches {
        let want = F0 * 2f64.powf(semitones / 12.0);
        let off_by = f / want - 1.0;
        println!(
            "voice changer {preset} ({semitones:+} st): listener's fundamental {f:.2} Hz for {want:.2} Hz ({:+.2} %), per second {}; level {level:.1} dBFS",
            100.0 * off_by,
            per_second
                .iter()
                .map(|f| format!("{f:.2}"))
                .collect::<Vec<_>>()
                .join(" / ")
        );
        if off_by.abs() > PITCH_TOLERANCE || *level < -40.0 {
            pitch_failures.push(format!(
                "{preset}: {f:.2} Hz for {want:.2} Hz at {level:.1} dBFS"
            ));
        }
    }

    // 2. A room preset at the listener: the bursts' sounding time.
    drop(playback);
    let bursts = dir.path().join("bursts.wav");
    write_bursts(&bursts, 120);
    let playback = Playback::start(&input, &bursts);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let dry = burst_tails(&mono(&record_listener(&browser, 0, 10.0).await?));
    pick(&studio, "room", "vocal_concert").await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let wet = burst_tails(&mono(&record_listener(&browser, 0, 10.0).await?));
    scroll_to(&studio, "#fx-room").await?;
    studio.screenshot("effects-chromium-vocal-concert").await?;
    pick(&studio, "room", "off").await?;
    for (what, t) in [("off", &dry), ("vocal concert", &wet)] {
        println!(
            "listener, room preset {what}: {} bursts; burst level / tail 80-400 ms after / sounding: {}",
            t.len(),
            describe_tails(t)
        );
    }
    let dry_sounding = median(dry.iter().map(|b| b.sounding_ms).collect());
    let wet_sounding = median(wet.iter().map(|b| b.sounding_ms).collect());
    println!(
        "listener, median sounding time of a {BURST_MS} ms burst: off {dry_sounding:.0} ms, vocal concert {wet_sounding:.0} ms"
    );

    // 3. Acceptance 4 at the listener: a sine, a control recording and one while the host
    // switches presets and moves parameters every 0.6 s (14 s: the last change is heard about
    // 11.9 s after the recording is asked for). Steps near a repair or a stall of the receiving
    // path are not judged; when that leaves under half of a recording, both are made again (at
    // most three times), and every attempt's clicks count.
    drop(playback);
    let sine = dir.path().join("sine.wav");
    write_tone(&sine, SINE_HZ, SINE_AMP, 120.0);
    let _playback = Playback::start(&input, &sine);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let click_failures = judge_clicks("switching effects", SWITCH_MAX_HZ, async |attempt| {
        // The control: what the path does with no change at all (printed, not judged).
        let control = record_listener(&browser, 0, 12.0).await?;
        let shots = onmic_e2e::screenshot_dir();
        let _ = control.write_wav(&shots.join("effects-chromium-control.wav"));
        report_clicks::<&str>(
            &format!("control, no change (attempt {attempt})"),
            &control,
            SWITCH_MAX_HZ,
            &[],
        );
        let asked = Instant::now();
        let (switching, at) = tokio::join!(
            record_listener(&browser, 0, 14.0),
            switch_everything(&studio, asked)
        );
        let (switching, at) = (switching?, at?);
        let _ = switching.write_wav(&shots.join("effects-chromium-switching.wav"));
        println!(
            "attempt {attempt}: changes sent (s after the recording was asked for): {}",
            at.iter()
                .map(|(w, t)| format!("{w} {t:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok((
            switching,
            at.into_iter().map(|(w, t)| (w.to_owned(), t)).collect(),
        ))
    })
    .await?;

    println!("effects at the listener took {:?}", started.elapsed());
    browser.quit().await;
    studio.click("#leave-room").await?;
    studio.quit().await?;
    assert!(
        click_failures.is_empty(),
        "switching effects on air at the listener (recordings: target/screenshots/effects-chromium-{{control,switching}}.wav): {click_failures:?}"
    );
    assert!(
        pitch_failures.is_empty(),
        "the listener's fundamental off the voice changer's: {pitch_failures:?}"
    );
    assert!(
        dry.len() >= 3 && wet.len() >= 3,
        "the bursts reach the listener: {} without, {} with the preset",
        dry.len(),
        wet.len()
    );
    assert!(
        dry_sounding <= MAX_DRY_SOUNDING_MS,
        "without a preset the listener's burst stops with it (sounding {dry_sounding:.0} ms of a {BURST_MS} ms burst)"
    );
    assert!(
        wet_sounding >= MIN_WET_SOUNDING_MS,
        "with the reverb preset a tail follows each burst at the listener (sounding {wet_sounding:.0} ms of a {BURST_MS} ms burst)"
    );
    Ok(())
}
