//! The engine core end to end without devices: publish packets with RTP timestamps, a remote
//! decoded through the jitter buffer into the output, per-remote volume 0 (silent but still
//! rippling), mute-all, and the ear monitor.

use onmic_audio::chain::{ChainConfig, Mode};
use onmic_audio::ear_monitor::{EarMonitorConfig, EarSource};
use onmic_audio::engine::{Control, EngineConfig, EngineCore};
use onmic_audio::opus::{OpusEncoder, OpusProfile};
use onmic_audio::playout::RemoteStream;
use onmic_audio::test_signals::{goertzel_power, sine_block};
use onmic_audio::volume_indication::{SourceId, VolumeReport};
use onmic_audio::{BLOCK_FRAMES, Block};

struct Run {
    out: Vec<f32>,
    reports: Vec<Vec<VolumeReport>>,
    packets: Vec<(u16, u32)>,
}

fn run(
    core: &mut EngineCore,
    remote: &mut (OpusEncoder, onmic_audio::playout::RemoteInput),
    from: u64,
    blocks: u64,
) -> Run {
    let mut r = Run {
        out: Vec::new(),
        reports: Vec::new(),
        packets: Vec::new(),
    };
    let mut out = Block::silent(2);
    for n in from..from + blocks {
        let rv = sine_block(500.0, 0.3, n, 2);
        if let Some(p) = remote.0.push_block(&rv).expect("encode") {
            remote
                .1
                .push(p.sequence, p.rtp_timestamp, p.payload())
                .expect("push");
        }
        let mut mic = sine_block(300.0, 0.2, n, 2);
        let (o, g) = core.process(&mut mic, None, &mut out);
        assert!(g.is_none());
        if let Some(p) = o.packet {
            r.packets.push((p.sequence, p.rtp_timestamp));
        }
        if let Some(rep) = o.reports {
            r.reports.push(rep.to_vec());
        }
        r.out.extend_from_slice(out.channel(0));
    }
    r
}

fn level(reports: &[VolumeReport], source: SourceId) -> u8 {
    reports
        .iter()
        .find(|r| r.source == source)
        .map(|r| r.level)
        .expect("report for source")
}

#[test]
fn remote_playout_volume_ripple_and_publish_packets() {
    let cfg = EngineConfig {
        chain: ChainConfig::for_mode(Mode::Soundcard),
        ..EngineConfig::default()
    };
    let mut core = EngineCore::new(&cfg).expect("core");
    let (stream, input) = RemoteStream::new(42, 2).expect("remote");
    assert!(core.apply(Control::AddRemote(Box::new(stream))).is_none());
    let mut remote = (
        OpusEncoder::new(OpusProfile::voice(), 0, 0).expect("enc"),
        input,
    );

    let a = run(&mut core, &mut remote, 0, 100);
    // Publish: one packet per 20 ms, RTP timestamps step 960.
    assert_eq!(a.packets.len(), 50);
    assert!(
        a.packets
            .windows(2)
            .all(|w| w[1].0 == w[0].0.wrapping_add(1) && w[1].1 == w[0].1 + 960)
    );
    // Output: the remote's 500 Hz, not the local mic (ear monitor off).
    let tail = &a.out[a.out.len() - 9600..];
    assert!(goertzel_power(tail, 500.0) > 1e4, "remote not heard");
    assert!(
        goertzel_power(tail, 300.0) < goertzel_power(tail, 500.0) * 1e-4,
        "mic leaks into output"
    );
    // Indication every 500 ms; both sources speaking.
    assert_eq!(a.reports.len(), 2);
    let last = a.reports.last().expect("report");
    assert!(level(last, SourceId::Local) > 20 && level(last, SourceId::Remote(42)) > 20);

    // Volume 0: hear nothing from the remote, still see its ripple.
    core.apply(Control::SetRemoteVolume(42, 0.0));
    let b = run(&mut core, &mut remote, 100, 100);
    let tail = &b.out[BLOCK_FRAMES..];
    assert!(tail.iter().all(|s| *s == 0.0), "volume 0 still audible");
    assert!(level(b.reports.last().expect("r"), SourceId::Remote(42)) > 20);

    // Mute all remotes, then the ear monitor brings the host's own voice.
    core.apply(Control::SetRemoteVolume(42, 1.0));
    core.apply(Control::SetAllRemotesMuted(true));
    core.apply(Control::SetEarMonitor(EarMonitorConfig {
        enabled: true,
        source: EarSource::Raw,
        volume: 1.5,
    }));
    let c = run(&mut core, &mut remote, 200, 50);
    let tail = &c.out[BLOCK_FRAMES..];
    assert!(goertzel_power(tail, 500.0) < 1.0, "muted remote audible");
    // Raw ear monitor at 150 %: the 0.2 mic tone comes back at 0.3 peak.
    let peak = tail.iter().fold(0.0f32, |m, s| m.max(s.abs()));
    assert!((peak - 0.3).abs() < 0.01, "ear monitor peak {peak}");
    assert_eq!(core.ear_monitor_latency().get(), 0);
}

#[test]
fn mode_switch_keeps_rtp_continuous() {
    let cfg = EngineConfig {
        chain: ChainConfig::for_mode(Mode::Soundcard),
        ..EngineConfig::default()
    };
    let mut core = EngineCore::new(&cfg).expect("core");
    let (stream, input) = RemoteStream::new(1, 2).expect("remote");
    core.apply(Control::AddRemote(Box::new(stream)));
    let mut remote = (
        OpusEncoder::new(OpusProfile::voice(), 0, 0).expect("enc"),
        input,
    );
    let a = run(&mut core, &mut remote, 0, 20);
    let chain = onmic_audio::chain::Chain::new(ChainConfig::for_mode(Mode::Voice)).expect("chain");
    assert!(core.apply(Control::ReplaceChain(Box::new(chain))).is_none());
    let enc = OpusEncoder::new(OpusProfile::voice(), 0, 0).expect("enc");
    assert!(core.apply(Control::ReplaceEncoder(Box::new(enc))).is_some());
    let mut out = Block::silent(2);
    let mut mic = sine_block(300.0, 0.2, 20, 2);
    let (_, garbage) = core.process(&mut mic, None, &mut out);
    assert!(
        matches!(garbage, Some(onmic_audio::engine::Garbage::Chain(_))),
        "old chain handed back"
    );
    let b = run(&mut core, &mut remote, 21, 19);
    let all: Vec<(u16, u32)> = a.packets.iter().chain(&b.packets).copied().collect();
    assert!(
        all.windows(2)
            .all(|w| w[1].0 == w[0].0 + 1 && w[1].1 == w[0].1 + 960),
        "{all:?}"
    );
}

#[test]
fn input_gain_scales_what_is_metered_and_published_without_a_step() {
    let cfg = EngineConfig {
        chain: ChainConfig::for_mode(Mode::Soundcard),
        ..EngineConfig::default()
    };
    let mut core = EngineCore::new(&cfg).expect("core");
    let mut out = Block::silent(2);
    let mut published = Vec::new();
    for (gain, from) in [(1.0f32, 0u64), (0.5, 20), (2.0, 40)] {
        core.apply(Control::SetInputGain(gain));
        for n in from..from + 20 {
            let mut mic = sine_block(300.0, 0.2, n, 2);
            core.process(&mut mic, None, &mut out);
            published.extend_from_slice(mic.channel(0));
        }
        // The last block is at the new gain: the meters see 0.2 × gain.
        let peak = core.meters().input.peak.amplitude();
        assert!(
            (peak - 0.2 * gain).abs() < 0.01,
            "gain {gain}: input peak {peak}"
        );
    }
    // No click: the ramp keeps every sample-to-sample step within a 300 Hz sine's own slope at
    // the largest amplitude (0.4), plus the ramp's share.
    let max_step = published
        .windows(2)
        .map(|w| (w[1] - w[0]).abs())
        .fold(0.0f32, f32::max);
    let sine_slope = 0.4 * 2.0 * std::f32::consts::PI * 300.0 / 48_000.0;
    assert!(
        max_step < sine_slope * 1.2,
        "step {max_step} vs {sine_slope}"
    );
    // Nonsense gains are refused to something safe, never NaN in the publish bus.
    core.apply(Control::SetInputGain(f32::NAN));
    let mut mic = sine_block(300.0, 0.2, 60, 2);
    core.process(&mut mic, None, &mut out);
    assert!(mic.channel(0).iter().all(|s| s.is_finite()));
}

#[test]
fn a_full_control_ring_hands_the_message_back() {
    let (mut handle, _io) =
        onmic_audio::engine::start(EngineConfig::default()).expect("engine starts");
    // A stopped DSP thread drains nothing: the ring (64 slots) fills, and the message it cannot
    // take comes back to the caller.
    handle.stop();
    let mut returned = None;
    for i in 0..100u32 {
        if let Err(c) = handle.try_send(Control::SetExpectedLoss((i % 100) as u8)) {
            returned = Some(c);
            break;
        }
    }
    match returned {
        Some(Control::SetExpectedLoss(_)) => {}
        other => panic!("the refused message should come back, got {other:?}"),
    }
}

/// Peak of channel 0 of the publish bus over `blocks` blocks: the microphone plays `mic_amp` of
/// 300 Hz, the raw music input 0.4 of 1 kHz.
fn published_peaks(core: &mut EngineCore, from: u64, blocks: u64, mic_amp: f32) -> Vec<f32> {
    let mut out = Block::silent(2);
    (from..from + blocks)
        .map(|n| {
            let mut mic = sine_block(300.0, mic_amp, n, 2);
            let music = sine_block(1_000.0, 0.4, n, 2);
            core.process(&mut mic, Some(&music), &mut out);
            mic.channel(0).iter().fold(0.0f32, |m, s| m.max(s.abs()))
        })
        .collect()
}

/// What the host set survives a mode change, from its first sample: the published music volume
/// (it went back to 100 % before), the voice mute and the send mute, across every pair of modes,
/// and with the control arriving before the new chain has taken over.
#[test]
fn a_mode_change_keeps_the_published_music_volume_and_the_mutes() {
    for (from, to) in [
        (Mode::Soundcard, Mode::Voice),
        (Mode::Voice, Mode::Soundcard),
        (Mode::Soundcard, Mode::Soundcard),
    ] {
        let case = format!("{from:?} -> {to:?}");
        let new_chain =
            || Box::new(onmic_audio::chain::Chain::new(ChainConfig::for_mode(to)).expect("chain"));
        let start = |music_volume: f32| {
            let mut core = EngineCore::new(&EngineConfig {
                chain: ChainConfig::for_mode(from),
                ..EngineConfig::default()
            })
            .expect("core");
            core.apply(Control::SetPublishMusicVolume(music_volume));
            core
        };

        // Music at 25 %, voice muted: the published stream is the music alone at 0.1.
        let mut core = start(0.25);
        core.apply(Control::SetVoiceMuted(true));
        let before = published_peaks(&mut core, 0, 50, 0.2);
        assert!(
            (before[49] - 0.1).abs() < 0.005,
            "{case}: music at 25 % publishes {:.3}",
            before[49]
        );
        core.apply(Control::ReplaceChain(new_chain()));
        let after = published_peaks(&mut core, 50, 50, 0.2);
        let worst = after.iter().fold(0.0f32, |m, &p| m.max((p - 0.1).abs()));
        assert!(
            worst < 0.005,
            "{case}: across the change the music (and nothing of the muted voice) stays at 0.1; \
             peaks {:.3?}",
            &after[..6]
        );

        // The volume changed while the new chain waits to take over.
        let mut core = start(1.0);
        core.apply(Control::SetVoiceMuted(true));
        published_peaks(&mut core, 0, 10, 0.2);
        core.apply(Control::ReplaceChain(new_chain()));
        core.apply(Control::SetPublishMusicVolume(0.5));
        let after = published_peaks(&mut core, 10, 30, 0.2);
        assert!(
            after[2..].iter().all(|p| (p - 0.2).abs() < 0.005),
            "{case}: a volume set before the swap reaches the new chain; peaks {:.3?}",
            &after[..6]
        );

        // Everything sent muted: silence through the change.
        let mut core = start(1.0);
        core.apply(Control::SetSendMuted(true));
        published_peaks(&mut core, 0, 10, 0.2);
        core.apply(Control::ReplaceChain(new_chain()));
        let after = published_peaks(&mut core, 10, 20, 0.2);
        assert!(
            after.iter().all(|&p| p < 1e-4),
            "{case}: send muted, yet {:.4?} published",
            &after[..6]
        );
    }
}

/// The music bus plays at most `MAX_VOICES`: a voice beyond them is refused, and the refusal is
/// counted where the sender can see it (the Studio's music panel turns it into a message) rather
/// than a source that shows "receiving" while nothing of it is heard. A slot freed by a voice
/// that ends takes the next one.
#[test]
fn a_music_voice_beyond_the_bus_is_refused_and_counted() {
    use onmic_audio::music::{MAX_VOICES, PcmInjector};
    let (mut handle, io) =
        onmic_audio::engine::start(EngineConfig::default()).expect("engine starts");
    let mut capture = io.capture;
    let mut injectors = Vec::new();
    let feed = |capture: &mut rtrb::Producer<f32>, blocks: usize| {
        for _ in 0..blocks * BLOCK_FRAMES * 2 {
            let _ = capture.push(0.0);
        }
    };
    let wait_for = |handle: &onmic_audio::engine::EngineHandle, refused: u64| {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while handle
            .stats()
            .music_refused
            .load(std::sync::atomic::Ordering::Relaxed)
            != refused
            && std::time::Instant::now() < until
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        handle
            .stats()
            .music_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    for _ in 0..MAX_VOICES + 2 {
        let (injector, voice) = PcmInjector::new(false);
        injectors.push(injector);
        handle.send(Control::AddMusic(voice)).expect("control ring");
    }
    feed(&mut capture, 5);
    assert_eq!(
        wait_for(&handle, 2),
        2,
        "two voices beyond {MAX_VOICES} refused"
    );
    // One source stops: its voice ends and leaves the bus; the next one fits.
    drop(injectors.remove(0));
    feed(&mut capture, 20);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (injector, voice) = PcmInjector::new(false);
    injectors.push(injector);
    handle.send(Control::AddMusic(voice)).expect("control ring");
    feed(&mut capture, 5);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        wait_for(&handle, 2),
        2,
        "a freed slot takes the next voice without a refusal"
    );
    handle.stop();
}
