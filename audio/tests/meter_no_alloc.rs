//! The input meter's callback half (`LevelAccumulator::push_interleaved`, the only thing the
//! meter's cpal callback runs) never allocates, also when the ring is full and blocks drop.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

use onmic_audio::meter::level_meter;

struct Counting;

thread_local! {
    static COUNT_HERE: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

fn counting_here() -> bool {
    COUNT_HERE.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the extra work
// is an atomic increment and a const thread-local read, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting_here() {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn the_meter_callback_never_allocates() {
    let (mut acc, mut reader) = level_meter(2, 480, 8);
    let f32_period: Vec<f32> = (0..960).map(|n| ((n as f32) * 0.01).sin() * 0.5).collect();
    let i16_period: Vec<i16> = (0..882).map(|n| (n as i16).wrapping_mul(37)).collect();
    let handle = std::thread::spawn(move || {
        COUNT_HERE.with(|c| c.set(true));
        // Ten seconds of 10 ms periods at 48 kHz, in two sample formats; the 8-block ring fills
        // after 80 ms, so most blocks take the drop path.
        for _ in 0..1000 {
            acc.push_interleaved(&f32_period, 2);
            acc.push_interleaved(&i16_period, 2);
        }
        COUNT_HERE.with(|c| c.set(false));
        acc
    });
    let _acc = handle.join().expect("the callback thread finished");
    assert_eq!(
        ALLOCS.load(Ordering::Relaxed),
        0,
        "the meter callback allocated"
    );
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
