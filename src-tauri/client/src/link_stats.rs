//! One reading of the peer connection's own statistics (webrtc-rs `get_stats`): what this member
//! sent, what the SFU's receiver reports say about it, the ICE round trip, and what arrives from
//! each seat. The client takes one every [`LINK_STATS_INTERVAL`] while the media is connected
//! and hands it to the application as [`crate::ClientEvent::Link`]; rates and windows are the
//! application's business (the Studio's `stats.rs`).

use std::time::{Duration, Instant};

use rtc::statistics::report::{RTCStatsReport, RTCStatsReportEntry};

/// How often the client reads the peer connection's statistics.
pub const LINK_STATS_INTERVAL: Duration = Duration::from_secs(1);

/// The SFU's latest RTCP receiver report on this member's audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReceiverReport {
    /// The extended highest sequence number the SFU received (cumulative: 16-bit cycles
    /// included).
    pub highest_seq: u64,
    /// Packets the SFU counts as lost since the stream began (cumulative).
    pub lost: u64,
    /// The fraction lost in the report's own interval, 0–1.
    pub fraction_lost: f64,
}

/// What arrives on one seat's m-line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InboundSample {
    /// The seat (slot) the stream arrives on.
    pub slot: usize,
    /// Its SSRC (a new SSRC is a new stream: counters restart).
    pub ssrc: u32,
    /// RTP packets received (cumulative).
    pub packets_received: u64,
    /// Packets lost as this client's own receiver reports count them (cumulative; updated when
    /// a report is sent).
    pub packets_lost: i64,
}

/// One reading.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkSample {
    /// When it was taken.
    pub at: Instant,
    /// RTP packets of this member's audio sent (cumulative), `None` before any.
    pub sent_packets: Option<u64>,
    /// RTP bytes sent, payload and RTP headers (cumulative).
    pub sent_bytes: u64,
    /// The SFU's latest receiver report on it, `None` before the first.
    pub reported: Option<ReceiverReport>,
    /// The round trip to the SFU measured by ICE's STUN checks on the selected pair, ms.
    pub rtt_ms: Option<f64>,
    /// Per seat.
    pub inbound: Vec<InboundSample>,
}

impl LinkSample {
    /// Reads `report`; `slot_of_mid` maps an m-line's `mid` to its seat; `own_ssrc` is this
    /// member's audio.
    pub fn from_report(
        at: Instant,
        report: &RTCStatsReport,
        own_ssrc: u32,
        slot_of_mid: impl Fn(&str) -> Option<usize>,
    ) -> LinkSample {
        let mut sample = LinkSample {
            at,
            sent_packets: None,
            sent_bytes: 0,
            reported: None,
            rtt_ms: None,
            inbound: Vec::new(),
        };
        for entry in report.iter() {
            match entry {
                RTCStatsReportEntry::OutboundRtp(o)
                    if o.sent_rtp_stream_stats.rtp_stream_stats.ssrc == own_ssrc =>
                {
                    let sent = &o.sent_rtp_stream_stats;
                    sample.sent_packets = Some(sent.packets_sent);
                    sample.sent_bytes = sent.bytes_sent + o.header_bytes_sent;
                }
                RTCStatsReportEntry::RemoteInboundRtp(r)
                    if r.received_rtp_stream_stats.rtp_stream_stats.ssrc == own_ssrc =>
                {
                    let rx = &r.received_rtp_stream_stats;
                    // webrtc-rs 0.21 stores the report's extended highest sequence number in
                    // `packets_received`; zero means no report arrived yet.
                    if rx.packets_received > 0 {
                        sample.reported = Some(ReceiverReport {
                            highest_seq: rx.packets_received,
                            lost: u64::try_from(rx.packets_lost.max(0)).unwrap_or(0),
                            fraction_lost: r.fraction_lost.clamp(0.0, 1.0),
                        });
                    }
                }
                RTCStatsReportEntry::InboundRtp(i) => {
                    let rx = &i.received_rtp_stream_stats;
                    if let Some(slot) = slot_of_mid(&i.mid)
                        && rx.packets_received > 0
                    {
                        sample.inbound.push(InboundSample {
                            slot,
                            ssrc: rx.rtp_stream_stats.ssrc,
                            packets_received: rx.packets_received,
                            packets_lost: rx.packets_lost,
                        });
                    }
                }
                RTCStatsReportEntry::IceCandidatePair(p)
                    if p.nominated && p.responses_received > 0 =>
                {
                    sample.rtt_ms = Some(p.current_round_trip_time * 1000.0);
                }
                _ => {}
            }
        }
        sample
    }
}
