//! Fuzz target: the recorder's per-publisher jitter buffer and Opus decoding (packet
//! validation, RTP-timestamp ordering, FEC/PLC on gaps).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    onmic_server::recording::source::fuzz_packets(data);
});
