//! The input meter's callback half (`LevelAccumulator::push_interleaved`, the only thing the
//! meter's cpal callback runs) never allocates, also when the ring is full and blocks drop.

use onmic_audio::meter::level_meter;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, allocations, count_here};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_meter_callback_never_allocates() {
    let (mut acc, mut reader) = level_meter(2, 480, 8);
    let f32_period: Vec<f32> = (0..960).map(|n| ((n as f32) * 0.01).sin() * 0.5).collect();
    let i16_period: Vec<i16> = (0..882).map(|n| (n as i16).wrapping_mul(37)).collect();
    let handle = std::thread::spawn(move || {
        count_here(true);
        // Ten seconds of 10 ms periods at 48 kHz, in two sample formats; the 8-block ring fills
        // after 80 ms, so most blocks take the drop path.
        for _ in 0..1000 {
            acc.push_interleaved(&f32_period, 2);
            acc.push_interleaved(&i16_period, 2);
        }
        count_here(false);
        acc
    });
    let _acc = handle.join().expect("the callback thread finished");
    assert_eq!(allocations(), 0, "the meter callback allocated");
    assert_the_counter_sees_an_allocation();
    let reading = reader.read().expect("blocks were published");
    assert_eq!(
        reading.frames,
        8 * 480,
        "the ring kept eight blocks and dropped the rest"
    );
    assert!(
        reading.channels[0].rms_dbfs > -20.0,
        "it measured something: {reading:?}"
    );
}

/// The proof above is only as good as the counter: an allocation on a counting thread shows.
/// (Called from the test itself: the counter is global, so a parallel test would disturb it.)
fn assert_the_counter_sees_an_allocation() {
    let counted = std::thread::spawn(|| {
        let before = allocations();
        count_here(true);
        let v = std::hint::black_box(vec![1u8; 64]);
        drop(v);
        count_here(false);
        allocations() - before
    })
    .join()
    .expect("thread finished");
    assert!(
        counted >= 2,
        "an allocation and a free were counted: {counted}"
    );
}
