//! The SFU's RTCP receiver reports on this member's audio, for the application.
//!
//! webrtc-rs 0.21 does not feed inbound RTCP into its own statistics (its `remote-inbound-rtp`
//! entry keeps its defaults: loss 0, no sequence number), and inbound RTCP stops at the end of
//! the interceptor chain unless an interceptor marks it for the application. [`ReportForwarder`]
//! sits last in the chain and marks the receiver reports (RR, and the report blocks of an SR);
//! [`watch_reports`] reads them from the local track and keeps the latest block about this
//! member's SSRC. The pattern is webrtc-rs's own `rtcp-processing` example.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport as RtcpRr;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport as RtcpSr;
use rtc::sansio::Protocol;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};

use crate::link_stats::ReceiverReport;

/// The latest report, shared between the reader task and the statistics poll.
pub(crate) type LatestReport = Arc<Mutex<Option<ReceiverReport>>>;

fn is_report(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<RtcpRr>() || any.is::<RtcpSr>()
}

/// Marks inbound receiver and sender reports for the application; passes everything else on
/// unmarked (the other interceptors have already acted on it).
#[derive(Default)]
pub(crate) struct ReportForwarder {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for ReportForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let reports: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| is_report(p.as_ref()))
                .cloned()
                .collect();
            if reports.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(reports);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for ReportForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

fn block_about(p: &dyn rtc::rtcp::Packet, ssrc: u32) -> Option<ReceptionReport> {
    let any = p.as_any();
    let blocks = if let Some(rr) = any.downcast_ref::<RtcpRr>() {
        &rr.reports
    } else if let Some(sr) = any.downcast_ref::<RtcpSr>() {
        &sr.reports
    } else {
        return None;
    };
    blocks.iter().find(|b| b.ssrc == ssrc).cloned()
}

/// Reads the RTCP the forwarder marked for `track` until it closes, keeping the latest report
/// block about `ssrc` in `latest`.
pub(crate) async fn watch_reports(track: Arc<dyn TrackLocal>, ssrc: u32, latest: LatestReport) {
    while let Some(ev) = track.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = ev else {
            continue;
        };
        for p in &packets {
            if let Some(b) = block_about(p.as_ref(), ssrc)
                && let Ok(mut slot) = latest.lock()
            {
                *slot = Some(ReceiverReport {
                    highest_seq: u64::from(b.last_sequence_number),
                    lost: u64::from(b.total_lost),
                    fraction_lost: f64::from(b.fraction_lost) / 256.0,
                });
            }
        }
    }
}
