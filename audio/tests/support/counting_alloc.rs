//! A global allocator for allocation-free proofs: it counts every allocation, reallocation and
//! free made on a thread while that thread has opted in with [`count_here`]. Include it with
//! `#[path = "support/counting_alloc.rs"] mod counting_alloc;` and install [`Counting`] as the
//! test binary's `#[global_allocator]`. `ONMIC_ALLOC_TRACE=1` prints a backtrace for the first
//! three counted allocations.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counting allocator.
pub struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
static ALLOCS: AtomicU64 = AtomicU64::new(0);

/// Starts (`true`) or stops (`false`) counting on the calling thread.
pub fn count_here(on: bool) {
    COUNTING.with(|c| c.set(on));
}

/// Allocations, reallocations and frees counted so far, on every thread.
pub fn allocations() -> u64 {
    ALLOCS.load(Ordering::Relaxed)
}

fn counting() -> bool {
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

fn record() {
    let n = ALLOCS.fetch_add(1, Ordering::Relaxed);
    if n < 3 {
        // Debug aid: show who allocates, with counting paused while looking and printing.
        count_here(false);
        if std::env::var_os("ONMIC_ALLOC_TRACE").is_some() {
            eprintln!(
                "allocation #{n}:\n{}",
                std::backtrace::Backtrace::force_capture()
            );
        }
        count_here(true);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged; the extra work
// (an atomic add and a const thread-local read) does not allocate, and the rare trace path
// pauses counting before it allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            record();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if counting() {
            record();
        }
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            record();
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
