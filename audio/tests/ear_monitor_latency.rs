//! Acceptance item 7: the ear monitor's added latency inside the engine (the devices' own buffers
//! excluded) is at most one device period. A thread plays the part of a duplex device with a
//! 10 ms period in real time: each period it hands the engine one period of capture (with a click
//! now and then) and, half a period later, takes one period of output through the same
//! [`OutputReader`] the real output callback uses. The click's delay from capture to the output
//! callback that plays it is measured in frames.
//!
//! Once, 1.5 s in, the capture of a period arrives a period late (as when the OS delays a capture
//! callback): the output plays silence for it and the late audio would stay a period behind for
//! good; the reader must give that period back within two of its windows. An underrun the
//! machine causes by itself (the engine thread descheduled on a loaded machine) is the same
//! event, so clicks within the recovery time after any underrun are reported, not held to the
//! one-period bound, and so are clicks after repeated underruns made the reader raise its margin;
//! every other click is (at least four). The engine's thread and the device's run at real-time
//! priority where the OS allows, as in the Studio, which makes such underruns rare.

use std::time::{Duration, Instant};

use onmic_audio::chain::{ChainConfig, Mode};
use onmic_audio::ear_monitor::{EarMonitorConfig, EarSource};
use onmic_audio::engine::{EngineConfig, start};
use onmic_audio::output_reader::OutputReader;

const PERIOD: usize = 480;
/// The reader decides every 0.5 s; a backlog is gone by the end of the second clean window.
const RECOVERY_FRAMES: usize = 48_000 * 5 / 2;

#[test]
fn raw_ear_monitor_adds_at_most_one_period() {
    let config = EngineConfig {
        chain: ChainConfig::for_mode(Mode::Soundcard),
        ear: EarMonitorConfig {
            enabled: true,
            source: EarSource::Raw,
            volume: 1.0,
        },
        capture_channels: 2,
        // As the Studio runs it.
        realtime: true,
        ..EngineConfig::default()
    };
    let (mut handle, mut io) = start(config).expect("engine");
    // This thread plays the device; device threads run at real-time priority (CoreAudio's,
    // ALSA's and WASAPI's with cpal's `realtime`, the sound server's), so it asks too. Where
    // the OS refuses (no CAP_SYS_NICE or rtprio limit), both run at normal priority and the
    // machine's own underruns are more likely: the checks below allow for them.
    let device_rt =
        audio_thread_priority::promote_current_thread_to_real_time(PERIOD as u32, 48_000);
    // The device starts once the engine's thread is ready (its caches filled, its priority
    // set): a first period played before that is a slow start, not the steady state measured.
    let ready = Instant::now();
    while handle.stats().realtime().is_none() && ready.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let phase = Duration::from_millis(5); // the output callback runs half a period after capture
    let periods = 600;
    let click_every = 23; // periods; not a multiple of anything in the engine
    let late_capture = 150; // this period's capture arrives with the next one
    let mut clicks_in = Vec::new();
    let mut out: Vec<f32> = Vec::with_capacity(periods * PERIOD);
    let mut capture = vec![0.0f32; PERIOD * 2];
    let mut held = Vec::new();
    let mut reader = OutputReader::new(2);
    let mut underruns_at = Vec::new(); // output frame index of each underrun
    let mut trimmed = 0;
    let mut margins = Vec::with_capacity(periods); // the reader's margin after each period
    let mut backlog_at_hiccup = 0; // samples in the output ring when the late period was due
    let t0 = Instant::now();
    for k in 0..periods {
        let due = t0 + Duration::from_millis(10 * k as u64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        capture.fill(0.0);
        if k % click_every == 5 {
            let at = 123 + k % 7 * 40; // the click moves within the period
            capture[at * 2] = 0.8;
            capture[at * 2 + 1] = 0.8;
            clicks_in.push(k * PERIOD + at);
        }
        held.extend_from_slice(&capture);
        if k != late_capture {
            let chunk = io
                .capture
                .write_chunk_uninit(held.len())
                .expect("capture ring");
            chunk.fill_from_iter(held.drain(..));
        }
        std::thread::sleep(phase);
        // The output callback: one period, silence for whatever is not there yet.
        let mut got = vec![0.0f32; PERIOD * 2];
        if k == late_capture {
            backlog_at_hiccup = io.output.slots();
        }
        let r = reader.read(&mut io.output, &mut got);
        if r.from_ring < got.len() {
            underruns_at.push(out.len());
        }
        trimmed += r.trimmed_frames;
        margins.push(reader.margin_frames());
        out.extend(got.iter().step_by(2));
    }
    let after_hiccup = late_capture * PERIOD;
    // The late capture underruns the output at its period (or, if the engine was already late
    // the period before on a loaded machine, that underrun absorbed it). If the machine caused
    // an underrun of its own shortly before and its backlog was not given back yet, the ring
    // still held that extra period when the late one was due, and the late capture only used it
    // up: no underrun is due then, and the recovery below is measured from the machine's one.
    let underran_at_hiccup = underruns_at
        .iter()
        .any(|u| (after_hiccup.saturating_sub(2 * PERIOD)..=after_hiccup).contains(u));
    let absorbed = backlog_at_hiccup >= PERIOD * 2
        && underruns_at
            .iter()
            .any(|u| *u < after_hiccup && after_hiccup < u + RECOVERY_FRAMES);
    println!(
        "device thread real-time: {}; DSP thread: {:?}",
        device_rt.is_ok(),
        handle.stats().realtime()
    );
    println!(
        "at the late period the output ring held {} frames; underrun there: {underran_at_hiccup}",
        backlog_at_hiccup / 2
    );
    assert!(
        underran_at_hiccup || absorbed,
        "the late capture must cause an underrun at frame {after_hiccup}, unless an earlier \
         underrun's backlog absorbed it: underruns {underruns_at:?}, ring held {} frames",
        backlog_at_hiccup / 2
    );
    handle.stop();
    let phase_frames = phase.as_secs_f64() * 48_000.0;
    let mut worst_steady = 0.0f64;
    let mut held_to_bound = 0;
    let mut recovered_after = None;
    for &c in &clicks_in {
        let found = out[c..]
            .iter()
            .position(|s| *s > 0.4)
            .map(|d| c + d)
            .expect("click never came out");
        // Frames between capture and the output callback that played it: the position shift in
        // the output stream plus the callback's phase after capture.
        let added = (found - c) as f64 + phase_frames;
        let recovering = underruns_at
            .iter()
            .any(|u| *u <= found && found < u + RECOVERY_FRAMES);
        // Repeated underruns soon after trims make the reader keep more in the ring (its
        // margin doubles): by design, reported, not held to the one-period bound.
        let margin_raised = margins[(found / PERIOD).min(margins.len() - 1)] > margins[0];
        if !recovering && !margin_raised {
            worst_steady = worst_steady.max(added);
            held_to_bound += 1;
        }
        if found > after_hiccup && added <= PERIOD as f64 && recovered_after.is_none() {
            // From the last underrun before it: on a loaded machine another underrun can follow
            // the forced one, and recovery counts from the last.
            let last = underruns_at.iter().filter(|u| **u <= found).max();
            recovered_after = last.map(|u| found - u);
        }
        println!(
            "click at {c}: out at {found}, engine-added {added:.0} frames ({:.2} ms){}",
            added / 48.0,
            if recovering {
                " (recovering from an underrun)"
            } else if margin_raised {
                " (margin raised after repeated underruns)"
            } else {
                ""
            }
        );
    }
    println!(
        "underruns at output frames {underruns_at:?}; trimmed {trimmed} frames; \
         back within one period {} after the last underrun before it",
        recovered_after.map_or("never".into(), |f| format!("{:.2} s", f as f64 / 48_000.0))
    );
    println!(
        "worst engine-added ear-monitor latency outside recovery {worst_steady:.0} frames \
         over {held_to_bound} clicks, device period {PERIOD}"
    );
    assert!(trimmed > 0, "the late period was never given back");
    assert!(
        recovered_after.is_some_and(|f| f <= RECOVERY_FRAMES),
        "latency not back within one period {RECOVERY_FRAMES} frames after an underrun"
    );
    assert!(
        held_to_bound >= 4,
        "too few clicks outside recovery: {held_to_bound}"
    );
    assert!(
        worst_steady <= PERIOD as f64,
        "ear monitor added {worst_steady:.0} frames > one period ({PERIOD})"
    );
}
