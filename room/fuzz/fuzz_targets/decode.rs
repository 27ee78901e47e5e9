//! Fuzz target: the client message decoder and the room actions it yields.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    onmic_room::protocol::fuzz_decode(data);
});
