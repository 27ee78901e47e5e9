//! A device that disappears: the engine reports it, keeps running on silence (remotes and music
//! still play), and re-opens the device when it returns. Uses the private PulseAudio server that
//! `cargo xtask test` starts: the test loads its own null sink `onmic_hot`, then unloads and
//! reloads it with `pactl`.

use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use onmic_audio::chain::{ChainConfig, Mode};
use onmic_audio::devices::Direction;
use onmic_audio::engine::{EngineConfig, start};
use onmic_audio::list_devices;
use onmic_audio::streams::{DeviceEvent, EngineDevices, StreamRequest};

fn pactl(args: &[&str]) -> String {
    let out = Command::new("pactl")
        .args(args)
        .output()
        .expect("pactl (pulseaudio-utils) must be installed");
    assert!(
        out.status.success(),
        "pactl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn load_sink() -> String {
    pactl(&[
        "load-module",
        "module-null-sink",
        "sink_name=onmic_hot",
        "rate=48000",
        "channels=2",
    ])
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn input_device_loss_is_reported_survived_and_reopened() {
    assert!(
        std::env::var_os("ONMIC_TEST_AUDIO").is_some(),
        "this test needs the PulseAudio server that `cargo xtask test` starts (ONMIC_TEST_AUDIO=1)"
    );
    let module = load_sink();
    let id = |l: &onmic_audio::DeviceList| {
        l.inputs
            .iter()
            .find(|d| d.id.ends_with("onmic_hot.monitor"))
            .map(|d| d.id.clone())
    };
    let mut input_id = None;
    wait_for("onmic_hot.monitor to be listed", || {
        input_id = list_devices().ok().as_ref().and_then(id);
        input_id.is_some()
    });
    let output_id = list_devices()
        .expect("list")
        .outputs
        .iter()
        .find(|d| d.id.ends_with("onmic_b"))
        .map(|d| d.id.clone());
    let config = EngineConfig {
        chain: ChainConfig::for_mode(Mode::Soundcard),
        capture_channels: 2,
        ..EngineConfig::default()
    };
    let (mut handle, io) = start(config).expect("engine");
    let mut devices = EngineDevices::open(
        io,
        2,
        StreamRequest {
            id: input_id.clone(),
            ..StreamRequest::default()
        },
        StreamRequest {
            id: output_id,
            ..StreamRequest::default()
        },
    )
    .expect("open devices");
    let blocks = |h: &onmic_audio::engine::EngineHandle| h.stats().blocks.load(Ordering::Relaxed);
    let starved = |h: &onmic_audio::engine::EngineHandle| {
        h.stats().capture_starved_blocks.load(Ordering::Relaxed)
    };
    wait_for("capture to flow", || blocks(&handle) > 30);

    pactl(&["unload-module", &module]);
    let mut events = Vec::new();
    wait_for("the loss to be reported", || {
        events.extend(devices.poll(&mut handle));
        events.iter().any(|e| {
            matches!(
                e,
                DeviceEvent::Lost {
                    direction: Direction::Input,
                    ..
                }
            )
        })
    });
    // The engine keeps running on silence.
    let (b0, s0) = (blocks(&handle), starved(&handle));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        blocks(&handle) >= b0 + 20,
        "engine stopped after the input was lost"
    );
    assert!(starved(&handle) > s0, "engine did not fall back to silence");

    let module2 = load_sink();
    wait_for("the device to be re-opened", || {
        events.extend(devices.poll(&mut handle));
        events.iter().any(|e| {
            matches!(
                e,
                DeviceEvent::Reopened {
                    direction: Direction::Input,
                    ..
                }
            )
        })
    });
    // Capture flows again: blocks advance while the starved count stays put.
    std::thread::sleep(Duration::from_millis(300));
    let s1 = starved(&handle);
    let b1 = blocks(&handle);
    std::thread::sleep(Duration::from_millis(500));
    assert!(blocks(&handle) >= b1 + 20);
    assert!(
        starved(&handle) <= s1 + 2,
        "capture did not resume after re-opening"
    );
    println!("events: {events:?}");
    drop(devices);
    handle.stop();
    pactl(&["unload-module", &module2]);
}
