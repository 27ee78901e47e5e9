//! Software prefetch for the SFU's fan-out (`driver::forward`): a copy's cost is mostly waiting
//! for each subscriber's cold state (its str0m `Rtc`, send stream, SRTP context), so the fan-out
//! asks for the next subscribers' cache lines while it writes to this one.
//!
//! Unsafe only because the intrinsic is: a prefetch is a hint that never faults and changes
//! nothing a program can observe, whatever the address (x86-64 `PREFETCHT0`). Elsewhere a no-op.
#![cfg_attr(target_arch = "x86_64", allow(unsafe_code))]

/// Asks for the cache line holding `p` (into every cache level).
#[inline(always)]
pub fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint; it neither faults nor reads memory architecturally, for any
    // address, valid or not.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The address of a value, for [`prefetch`].
#[inline(always)]
pub fn line<T: ?Sized>(v: &T) -> *const u8 {
    std::ptr::from_ref(v).cast::<u8>()
}
