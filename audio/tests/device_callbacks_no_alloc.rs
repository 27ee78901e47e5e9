//! Acceptance item 6, device side: the input and output callbacks never allocate — at 48 kHz and
//! through the edge resamplers at 44.1 kHz — counted by a global allocator between the streams'
//! entry and exit probes. Needs the PulseAudio null sinks that `cargo xtask test` starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use onmic_audio::list_devices;
use onmic_audio::streams::{ChannelPick, StreamRequest, open_input_pick, open_live_output};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, allocations, count_here};

#[global_allocator]
static GLOBAL: Counting = Counting;

static CALLBACKS: AtomicU64 = AtomicU64::new(0);

fn probe(entering: bool) {
    if entering {
        CALLBACKS.fetch_add(1, Ordering::Relaxed);
    }
    count_here(entering);
}

#[test]
fn device_callbacks_never_allocate() {
    assert!(
        std::env::var_os("ONMIC_TEST_AUDIO").is_some(),
        "this test needs the PulseAudio null sinks that `cargo xtask test` starts (ONMIC_TEST_AUDIO=1)"
    );
    let list = list_devices().expect("devices");
    let out_id = list
        .outputs
        .iter()
        .find(|d| d.id.ends_with("onmic_a"))
        .expect("onmic_a")
        .id
        .clone();
    let in_id = list
        .inputs
        .iter()
        .find(|d| d.id.ends_with("onmic_a.monitor"))
        .expect("monitor")
        .id
        .clone();
    for rate in [None, Some(44_100)] {
        let (cap_p, mut cap_c) = rtrb::RingBuffer::<f32>::new(48_000 * 2);
        let (mut play_p, play_c) = rtrb::RingBuffer::<f32>::new(48_000 * 2 * 3);
        let tone: Vec<f32> = (0..48_000 * 2)
            .flat_map(|i| {
                let s = 0.3 * (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 48_000.0).sin();
                [s, s]
            })
            .collect();
        play_p
            .write_chunk_uninit(tone.len())
            .expect("room")
            .fill_from_iter(tone);
        let req = |id: &str| StreamRequest {
            id: Some(id.to_owned()),
            channels: Some(2),
            sample_rate: rate,
            buffer_frames: Some(480),
        };
        // 44.1 kHz runs the picking path too (channels 2 and 1 of the monitor, through the edge
        // resampler), as a multi-channel card's pick does.
        let pick = rate.map(|_| ChannelPick::new(1, 0).expect("pick"));
        let input = open_input_pick(&req(&in_id), pick, cap_p, Some(probe)).expect("input");
        // The engine's output (live): the tone filled ahead is a backlog it trims with a splice, so
        // the trim path runs in the real callback too.
        let output = open_live_output(&req(&out_id), play_c, Some(probe)).expect("output");
        let before = CALLBACKS.load(Ordering::Relaxed);
        let mut got = 0usize;
        for _ in 0..150 {
            std::thread::sleep(Duration::from_millis(10));
            while cap_c.pop().is_ok() {
                got += 1;
            }
        }
        let trimmed = output.status.trimmed_frames();
        drop(output);
        drop(input);
        let calls = CALLBACKS.load(Ordering::Relaxed) - before;
        println!("rate {rate:?}: {calls} callbacks, {got} samples captured, {trimmed} trimmed");
        assert!(trimmed > 0, "the trim path did not run");
        assert!(calls > 20, "callbacks did not run");
        assert!(got > 48_000, "nothing captured");
    }
    let allocs = allocations();
    assert_eq!(
        allocs, 0,
        "device callbacks allocated or freed {allocs} times"
    );
}
