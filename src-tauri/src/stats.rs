//! Live statistics for the console: listeners, outgoing bitrate, loss, round trip and per remote
//! speaker loss, from the room client's readings of the peer connection's own statistics
//! ([`LinkSample`], one a second) and the room state, with a 60-second history.
//!
//! Definitions (also in `docs/studio.md`, Live stats):
//! - *loss*: of the Studio's outgoing audio, as the SFU counts it in its RTCP receiver reports:
//!   the growth of the cumulative lost count over the growth of the extended highest sequence
//!   number, over the last [`LOSS_WINDOW`];
//! - *speaker loss*: of each remote speaker's stream as it reaches the Studio (this client's own
//!   receiver-report counters: lost over lost + received), over the same window;
//! - *bitrate*: RTP bytes (payload and RTP headers) sent over the last [`RATE_WINDOW`].

use std::collections::VecDeque;
use std::time::Duration;

use onmic_client::link_stats::LinkSample;
use onmic_room::RoomState;
use serde::Serialize;
use specta::Type;

/// The window the loss figures are computed over.
pub const LOSS_WINDOW: Duration = Duration::from_secs(10);
/// The window the bitrate is averaged over.
pub const RATE_WINDOW: Duration = Duration::from_secs(3);
/// How much history the graph shows (one point per reading, one reading a second).
pub const HISTORY: Duration = Duration::from_secs(60);
/// Fewer packets expected than this in the window: too few to give a loss figure.
const MIN_PACKETS: u64 = 25;

/// One remote speaker's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SpeakerStats {
    /// Who (the seat's occupant now).
    pub uid: String,
    /// The seat.
    pub seat: u16,
    /// Loss of its stream on the way to the Studio over the last 10 s, percent; `None` while
    /// too few packets arrived to tell.
    pub loss_percent: Option<f32>,
}

/// One point of the history graph.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct StatsPoint {
    /// Seconds before the newest point (0 for the newest, negative before).
    pub t: f32,
    /// Outgoing bitrate, kbit/s.
    pub bitrate_kbps: Option<f32>,
    /// Outgoing loss, percent.
    pub loss_percent: Option<f32>,
    /// Round trip, ms.
    pub rtt_ms: Option<f32>,
    /// Listeners.
    pub listeners: Option<u32>,
}

/// The live statistics as the console shows them. A `None` is a figure not known yet ("—").
#[derive(Clone, Debug, Default, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LiveStats {
    /// Members in the room who hold no seat.
    pub listeners: Option<u32>,
    /// Outgoing bitrate (RTP payload and headers), kbit/s.
    pub bitrate_kbps: Option<f32>,
    /// Loss of the outgoing audio the SFU reports, over the last 10 s, percent.
    pub loss_percent: Option<f32>,
    /// The fraction lost in the SFU's latest receiver report (its own ~1 s interval), percent.
    pub last_report_loss_percent: Option<f32>,
    /// Round trip to the SFU (ICE STUN checks on the selected pair), ms.
    pub rtt_ms: Option<f32>,
    /// Per remote speaker heard.
    pub speakers: Vec<SpeakerStats>,
    /// The last 60 s, oldest first, one point a second.
    pub history: Vec<StatsPoint>,
    /// Seconds between readings.
    pub interval_s: f32,
}

struct Reading {
    sample: LinkSample,
    point: StatsPoint,
}

/// Turns the client's readings into [`LiveStats`].
#[derive(Default)]
pub struct StatsTracker {
    readings: VecDeque<Reading>,
    listeners: Option<u32>,
}

impl std::fmt::Debug for StatsTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsTracker")
            .field("readings", &self.readings.len())
            .finish()
    }
}

/// Members without a seat.
pub fn listeners(room: &RoomState) -> u32 {
    let seated = room
        .seats
        .iter()
        .filter_map(|s| s.occupant())
        .filter(|uid| room.members.contains_key(*uid))
        .count();
    u32::try_from(room.members.len().saturating_sub(seated)).unwrap_or(u32::MAX)
}

fn percent(lost: f64, expected: f64) -> f32 {
    ((lost / expected).clamp(0.0, 1.0) * 100.0) as f32
}

impl StatsTracker {
    /// The room changed: a new listener count.
    pub fn set_listeners(&mut self, n: u32) {
        self.listeners = Some(n);
    }

    /// A new reading; `occupant` names the uid on a seat now.
    pub fn push(
        &mut self,
        sample: LinkSample,
        occupant: impl Fn(usize) -> Option<String>,
    ) -> LiveStats {
        let now = sample.at;
        while self
            .readings
            .front()
            .is_some_and(|r| now.duration_since(r.sample.at) > HISTORY)
        {
            self.readings.pop_front();
        }
        let window_start = self
            .readings
            .iter()
            .find(|r| now.duration_since(r.sample.at) <= LOSS_WINDOW + Duration::from_millis(200));
        // The bitrate over the last few readings: one reading's interval is noisy when a poll
        // runs late on a busy machine.
        let previous = self
            .readings
            .iter()
            .find(|r| now.duration_since(r.sample.at) <= RATE_WINDOW + Duration::from_millis(200));

        let bitrate_kbps = previous.and_then(|p| {
            let dt = now.duration_since(p.sample.at).as_secs_f64();
            let bytes = sample.sent_bytes.checked_sub(p.sample.sent_bytes)?;
            (dt > 0.2 && sample.sent_packets.is_some())
                .then(|| (bytes as f64 * 8.0 / dt / 1000.0) as f32)
        });
        let loss_percent = window_start.and_then(|w| {
            let (a, b) = (w.sample.reported?, sample.reported?);
            let expected = b.highest_seq.checked_sub(a.highest_seq)?;
            let lost = b.lost.checked_sub(a.lost)?;
            (expected >= MIN_PACKETS).then(|| percent(lost as f64, expected as f64))
        });
        let rtt_ms = sample.rtt_ms.map(|r| r as f32);
        let speakers = sample
            .inbound
            .iter()
            .filter_map(|s| {
                let uid = occupant(s.slot)?;
                let loss_percent = window_start.and_then(|w| {
                    let old = w.sample.inbound.iter().find(|o| o.ssrc == s.ssrc);
                    let (rx0, lost0) = old.map_or((0, 0), |o| (o.packets_received, o.packets_lost));
                    let received = s.packets_received.checked_sub(rx0)?;
                    let lost = u64::try_from((s.packets_lost - lost0).max(0)).ok()?;
                    let expected = received + lost;
                    (expected >= MIN_PACKETS).then(|| percent(lost as f64, expected as f64))
                });
                Some(SpeakerStats {
                    uid,
                    seat: u16::try_from(s.slot).unwrap_or(u16::MAX),
                    loss_percent,
                })
            })
            .collect();
        let point = StatsPoint {
            t: 0.0,
            bitrate_kbps,
            loss_percent,
            rtt_ms,
            listeners: self.listeners,
        };
        self.readings.push_back(Reading { sample, point });
        LiveStats {
            listeners: self.listeners,
            bitrate_kbps,
            loss_percent,
            last_report_loss_percent: self
                .readings
                .back()
                .and_then(|r| r.sample.reported)
                .map(|r| (r.fraction_lost * 100.0) as f32),
            rtt_ms,
            speakers,
            history: self
                .readings
                .iter()
                .map(|r| StatsPoint {
                    t: -(now.duration_since(r.sample.at).as_secs_f32()),
                    ..r.point.clone()
                })
                .collect(),
            interval_s: onmic_client::link_stats::LINK_STATS_INTERVAL.as_secs_f32(),
        }
    }
}

/// Unix time now, ms (with the fraction).
pub fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// Feeds one reading with the room as the client knows it now.
pub fn update(tracker: &mut StatsTracker, sample: LinkSample, room: &RoomState) -> LiveStats {
    tracker.set_listeners(listeners(room));
    tracker.push(sample, |slot| {
        room.seats
            .get(slot)
            .and_then(|s| s.occupant())
            .map(|u| u.as_str().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use onmic_client::link_stats::{InboundSample, ReceiverReport};
    use std::time::Instant;

    fn sample(at: Instant, secs: u64, seq: u64, lost: u64, rx: u64, rx_lost: i64) -> LinkSample {
        LinkSample {
            at: at + Duration::from_secs(secs),
            sent_packets: Some(seq),
            sent_bytes: seq * 330,
            reported: Some(ReceiverReport {
                highest_seq: 1000 + seq,
                lost,
                fraction_lost: 0.1,
            }),
            rtt_ms: Some(12.5),
            inbound: vec![InboundSample {
                slot: 1,
                ssrc: 7,
                packets_received: rx,
                packets_lost: rx_lost,
            }],
        }
    }

    #[test]
    fn loss_is_the_growth_of_the_reports_over_the_window_and_unknown_before() {
        let t0 = Instant::now();
        let mut t = StatsTracker::default();
        t.set_listeners(3);
        let first = t.push(sample(t0, 0, 0, 0, 0, 0), |_| Some("guest".into()));
        assert_eq!(first.loss_percent, None, "one reading gives no window");
        assert_eq!(first.bitrate_kbps, None);
        assert_eq!(first.speakers[0].loss_percent, None);
        let mut last = first;
        // 50 packets a second, 5 of them lost each second on both paths; 20 s.
        for s in 1..=20 {
            last = t.push(sample(t0, s, 50 * s, 5 * s, 45 * s, 5 * s as i64), |_| {
                Some("guest".into())
            });
        }
        assert_eq!(last.loss_percent, Some(10.0));
        assert_eq!(last.speakers[0].loss_percent, Some(10.0));
        assert_eq!(last.speakers[0].uid, "guest");
        // 50 packets × 330 bytes a second.
        assert!((last.bitrate_kbps.unwrap() - 132.0).abs() < 0.01);
        assert_eq!(last.rtt_ms, Some(12.5));
        assert_eq!(last.listeners, Some(3));
        assert_eq!(last.history.len(), 21);
        assert_eq!(last.history.last().unwrap().t, 0.0);
    }

    #[test]
    fn history_keeps_sixty_seconds_and_loss_follows_the_last_ten() {
        let t0 = Instant::now();
        let mut t = StatsTracker::default();
        let mut lost = 0;
        let mut last = LiveStats::default();
        for s in 0..100 {
            // No loss for 80 s, then 20 %.
            if s > 80 {
                lost += 10;
            }
            last = t.push(sample(t0, s, 50 * s, lost, 50 * s, 0), |_| None);
        }
        assert!(last.history.len() <= 61, "{}", last.history.len());
        assert!(last.history.first().unwrap().t >= -60.0);
        assert_eq!(last.loss_percent, Some(20.0));
        assert!(
            last.speakers.is_empty(),
            "a slot with nobody on it is not a speaker"
        );
    }

    #[test]
    fn a_quiet_sender_gives_no_loss_figure() {
        let t0 = Instant::now();
        let mut t = StatsTracker::default();
        let mut last = LiveStats::default();
        for s in 0..15 {
            // DTX: a couple of packets a second.
            last = t.push(sample(t0, s, 2 * s, 0, 0, 0), |_| None);
        }
        assert_eq!(last.loss_percent, None);
    }
}
