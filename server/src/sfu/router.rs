//! The forwarding decision of one room, sans-IO: who is connected (peers), which incoming stream
//! belongs to which peer, who may publish right now, and what to do with each incoming RTP packet.
//!
//! Drive contract:
//! - [`Router::add_peer`] when a member's peer connection is set up, [`Router::remove_peer`] when
//!   it goes away (or the member leaves / is kicked).
//! - [`Router::set_authorized`] whenever the room may have changed the member's right to
//!   publish (seat taken or lost, host mute, self mute, floor, membership). The driver applies the
//!   room's events *before* it hands the router the next packet, so a packet that arrives after a
//!   kick or mute was committed is never forwarded ("within one packet").
//! - [`Router::handle_rtp`] for every incoming audio RTP packet: [`Decision::Forward`] means "send
//!   it to [`Router::subscribers_of`]"; a drop says why, and a [`Bombing`] in it must be reported
//!   to the room (event + webhook) and, if the room wants it, the sender kicked and banned.
//! - [`Router::poll_volumes`] whenever convenient: every `volume_interval` it yields the speakers'
//!   levels from the RFC 6464 header extension (volume indication, speaking ripples).
//!
//! Time is an argument everywhere (`Instant`), so tests are deterministic.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use onmic_room::Uid;

use super::level::{LevelMeter, VolumeReport};

/// A peer connection in the SFU (one per member and connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// An incoming audio stream: its SSRC when the driver sees RTP, or the driver's own key for a
/// (peer, m-line) when the WebRTC stack hands it depacketized frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId(pub u64);

/// How the router treats audio from members who may not publish.
#[derive(Debug, Clone, PartialEq)]
pub struct BombingPolicy {
    /// After a member loses the right to publish (mute, seat loss), its packets are dropped
    /// silently for this long: they were in flight, or its client has not heard yet.
    pub grace: Duration,
    /// At most one report per member within this window (a bomber sends 50 packets/s).
    pub report_every: Duration,
    /// Kick the sender and ban it for this long (the room's setting); `None`: report only.
    pub kick_and_ban: Option<Duration>,
}

impl Default for BombingPolicy {
    fn default() -> Self {
        BombingPolicy {
            grace: Duration::from_secs(2),
            report_every: Duration::from_secs(10),
            kick_and_ban: None,
        }
    }
}

/// Audio seen from a member who may not publish: report it to the room.
#[derive(Debug, Clone, PartialEq)]
pub struct Bombing {
    /// The sender.
    pub uid: Uid,
    /// The stream it used.
    pub stream: StreamId,
    /// Human-readable detail for the event and webhook.
    pub detail: String,
    /// Kick and ban the sender for this long (from the policy).
    pub kick_and_ban: Option<Duration>,
}

/// Why a packet was not forwarded.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum DropReason {
    /// The packet came from a peer the router does not know (already removed).
    UnknownPeer,
    /// The stream already belongs to another peer (spoofing or a collision).
    StreamIdTaken {
        /// The peer that owns it.
        owner: PeerId,
    },
    /// The member may not publish; within the grace period or already reported recently.
    NotAuthorized,
    /// The member may not publish and this is news: report it.
    Bombing(Bombing),
}

/// What to do with one RTP packet.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Decision {
    /// Send it to every peer of [`Router::subscribers_of`] the sender.
    Forward,
    /// Drop it.
    Drop(DropReason),
}

/// Packet counters of one peer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Packets from this peer that were forwarded.
    pub forwarded: u64,
    /// Packets from this peer that were dropped.
    pub dropped: u64,
}

#[derive(Debug)]
struct Peer {
    uid: Uid,
    authorized: bool,
    /// When the right to publish was last taken away.
    revoked_at: Option<Instant>,
    last_report: Option<Instant>,
    counters: PeerCounters,
    level: LevelMeter,
    streams: Vec<StreamId>,
}

/// The forwarding state of one room.
#[derive(Debug)]
pub struct Router {
    policy: BombingPolicy,
    peers: HashMap<PeerId, Peer>,
    /// Every peer, in join order: the fan-out list.
    order: Vec<PeerId>,
    /// The peers of each member.
    by_uid: HashMap<Uid, Vec<PeerId>>,
    sources: HashMap<StreamId, PeerId>,
    volume_interval: Duration,
    next_volume: Option<Instant>,
    /// Levels of publishers whose peer lives in another driver shard, heard in the packets that
    /// shard judged and relayed (the room's volumes are reported by one shard).
    remote_levels: HashMap<Uid, LevelMeter>,
}

impl Router {
    /// An empty room; volume reports every `volume_interval` (500 ms in the product).
    pub fn new(policy: BombingPolicy, volume_interval: Duration) -> Router {
        Router {
            policy,
            peers: HashMap::new(),
            order: Vec::new(),
            by_uid: HashMap::new(),
            sources: HashMap::new(),
            volume_interval,
            next_volume: None,
            remote_levels: HashMap::new(),
        }
    }

    /// The bombing policy.
    pub fn policy(&self) -> &BombingPolicy {
        &self.policy
    }

    /// Replaces the bombing policy (the owner changed the room's rules).
    pub fn set_policy(&mut self, policy: BombingPolicy) {
        self.policy = policy;
    }

    /// A member's peer connection is up; `authorized` is the room's current answer to "may it
    /// publish". Replaces a previous peer with the same id.
    pub fn add_peer(&mut self, id: PeerId, uid: Uid, authorized: bool) {
        self.remove_peer(id);
        self.by_uid.entry(uid.clone()).or_default().push(id);
        self.peers.insert(
            id,
            Peer {
                uid,
                authorized,
                revoked_at: None,
                last_report: None,
                counters: PeerCounters::default(),
                level: LevelMeter::default(),
                streams: Vec::new(),
            },
        );
        self.order.push(id);
    }

    /// A peer is gone; its streams are freed. Returns its uid if it was known.
    pub fn remove_peer(&mut self, id: PeerId) -> Option<Uid> {
        let peer = self.peers.remove(&id)?;
        self.order.retain(|p| *p != id);
        if let Some(ids) = self.by_uid.get_mut(&peer.uid) {
            ids.retain(|p| *p != id);
            if ids.is_empty() {
                self.by_uid.remove(&peer.uid);
            }
        }
        for stream in &peer.streams {
            self.sources.remove(stream);
        }
        Some(peer.uid)
    }

    /// Every peer in the room.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// The peers of a member (normally one).
    pub fn peers_of<'a>(&'a self, uid: &'a Uid) -> impl Iterator<Item = PeerId> + 'a {
        self.by_uid.get(uid).into_iter().flatten().copied()
    }

    /// The uid of a peer.
    pub fn uid_of(&self, id: PeerId) -> Option<&Uid> {
        self.peers.get(&id).map(|p| &p.uid)
    }

    /// Every distinct member with a peer here.
    pub fn uids(&self) -> Vec<Uid> {
        self.by_uid.keys().cloned().collect()
    }

    /// The room says whether `uid` may publish now. Takes effect for the very next packet.
    pub fn set_authorized(&mut self, now: Instant, uid: &Uid, authorized: bool) {
        let Some(ids) = self.by_uid.get(uid) else {
            return;
        };
        for id in ids {
            let Some(peer) = self.peers.get_mut(id) else {
                continue;
            };
            if peer.authorized && !authorized {
                peer.revoked_at = Some(now);
                peer.level.reset();
            }
            peer.authorized = authorized;
        }
    }

    /// Whether a peer's audio is forwarded now.
    pub fn is_authorized(&self, id: PeerId) -> bool {
        self.peers.get(&id).is_some_and(|p| p.authorized)
    }

    /// The counters of a peer.
    pub fn counters(&self, id: PeerId) -> Option<PeerCounters> {
        self.peers.get(&id).map(|p| p.counters)
    }

    /// Which peer sends this stream.
    pub fn source(&self, stream: StreamId) -> Option<PeerId> {
        self.sources.get(&stream).copied()
    }

    /// Decides about one incoming audio RTP packet. `audio_level` is the RFC 6464 level
    /// (0 = loudest, 127 = silence, in -dBov) when the packet carries the extension.
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        from: PeerId,
        stream: StreamId,
        audio_level: Option<u8>,
    ) -> Decision {
        let Some(peer) = self.peers.get_mut(&from) else {
            return Decision::Drop(DropReason::UnknownPeer);
        };
        match self.sources.get(&stream) {
            Some(owner) if *owner != from => {
                peer.counters.dropped += 1;
                return Decision::Drop(DropReason::StreamIdTaken { owner: *owner });
            }
            Some(_) => {}
            None => {
                // Bound the table: a peer may not claim streams without end.
                if peer.streams.len() >= MAX_STREAMS_PER_PEER {
                    peer.counters.dropped += 1;
                    return Decision::Drop(DropReason::NotAuthorized);
                }
                self.sources.insert(stream, from);
                peer.streams.push(stream);
            }
        }
        if !peer.authorized {
            peer.counters.dropped += 1;
            let in_grace = peer
                .revoked_at
                .is_some_and(|t| now.saturating_duration_since(t) < self.policy.grace);
            let reported_recently = peer
                .last_report
                .is_some_and(|t| now.saturating_duration_since(t) < self.policy.report_every);
            if in_grace || reported_recently {
                return Decision::Drop(DropReason::NotAuthorized);
            }
            peer.last_report = Some(now);
            return Decision::Drop(DropReason::Bombing(Bombing {
                uid: peer.uid.clone(),
                stream,
                detail: format!(
                    "RTP (stream {}) from a member without an unmuted seat",
                    stream.0
                ),
                kick_and_ban: self.policy.kick_and_ban,
            }));
        }
        peer.counters.forwarded += 1;
        if let Some(level) = audio_level {
            peer.level.observe(level);
        }
        Decision::Forward
    }

    /// The peers a packet from `from` goes to: everyone else in the room.
    pub fn subscribers_of(&self, from: PeerId) -> impl Iterator<Item = PeerId> + '_ {
        self.order.iter().copied().filter(move |p| *p != from)
    }

    /// How many peers are in the room.
    pub fn peer_count(&self) -> usize {
        self.order.len()
    }

    /// Every `volume_interval`: the level of each authorized publisher heard in the interval.
    pub fn poll_volumes(&mut self, now: Instant) -> Option<Vec<VolumeReport>> {
        match self.next_volume {
            None => {
                self.next_volume = Some(now + self.volume_interval);
                return None;
            }
            Some(t) if now < t => return None,
            Some(_) => {}
        }
        self.next_volume = Some(now + self.volume_interval);
        let mut out = Vec::new();
        for id in &self.order {
            if let Some(peer) = self.peers.get_mut(id)
                && peer.authorized
                && let Some(report) = peer.level.take(&peer.uid)
            {
                out.push(report);
            }
        }
        // Remote publishers heard in this interval; the silent ones are forgotten.
        self.remote_levels
            .retain(|uid, meter| match meter.take(uid) {
                Some(report) => {
                    out.push(report);
                    true
                }
                None => false,
            });
        Some(out)
    }

    /// A level heard in a packet of `uid` that another shard judged and forwarded; it is
    /// reported by [`Router::poll_volumes`] like a local publisher's.
    pub fn observe_remote_level(&mut self, uid: &Uid, level: u8) {
        match self.remote_levels.get_mut(uid) {
            Some(meter) => meter.observe(level),
            None => {
                let mut meter = LevelMeter::default();
                meter.observe(level);
                self.remote_levels.insert(uid.clone(), meter);
            }
        }
    }

    /// The members whose levels came from other shards.
    pub fn remote_uids(&self) -> Vec<Uid> {
        self.remote_levels.keys().cloned().collect()
    }

    /// Forgets what was heard from a member on another shard (it may no longer publish).
    pub fn forget_remote_level(&mut self, uid: &Uid) {
        self.remote_levels.remove(uid);
    }

    /// When [`Router::poll_volumes`] next has something to say.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_volume
    }
}

/// A peer sends one audio stream; a few allow for a restart or an RTX stream.
pub const MAX_STREAMS_PER_PEER: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(BombingPolicy::default(), Duration::from_millis(500))
    }

    #[test]
    fn forwards_only_authorized_members_to_everyone_else() {
        let t0 = Instant::now();
        let mut r = router();
        r.add_peer(PeerId(1), Uid::from("host"), true);
        r.add_peer(PeerId(2), Uid::from("listener"), false);
        r.add_peer(PeerId(3), Uid::from("guest"), true);
        assert_eq!(
            r.handle_rtp(t0, PeerId(1), StreamId(11), Some(30)),
            Decision::Forward
        );
        let to: Vec<_> = r.subscribers_of(PeerId(1)).collect();
        assert_eq!(to, vec![PeerId(2), PeerId(3)]);
        assert_eq!(r.source(StreamId(11)), Some(PeerId(1)));
        assert_eq!(r.counters(PeerId(1)).map(|c| c.forwarded), Some(1));
    }

    #[test]
    fn a_mute_stops_forwarding_at_the_next_packet_without_a_bombing_report() {
        let t0 = Instant::now();
        let mut r = router();
        let guest = Uid::from("guest");
        r.add_peer(PeerId(1), guest.clone(), true);
        r.add_peer(PeerId(2), Uid::from("listener"), false);
        assert_eq!(
            r.handle_rtp(t0, PeerId(1), StreamId(7), None),
            Decision::Forward
        );
        r.set_authorized(t0, &guest, false);
        // In flight / client not told yet: dropped quietly during the grace period.
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!(
            r.handle_rtp(t1, PeerId(1), StreamId(7), None),
            Decision::Drop(DropReason::NotAuthorized)
        );
        // Still sending long after: that is bombing.
        let t2 = t0 + Duration::from_secs(3);
        assert!(matches!(
            r.handle_rtp(t2, PeerId(1), StreamId(7), None),
            Decision::Drop(DropReason::Bombing(b)) if b.uid == guest
        ));
        r.set_authorized(t2, &guest, true);
        assert_eq!(
            r.handle_rtp(t2, PeerId(1), StreamId(7), None),
            Decision::Forward
        );
        assert_eq!(
            r.counters(PeerId(1)),
            Some(PeerCounters {
                forwarded: 2,
                dropped: 2
            })
        );
    }

    #[test]
    fn a_member_never_seated_is_reported_at_once_then_rate_limited() {
        let t0 = Instant::now();
        let policy = BombingPolicy {
            kick_and_ban: Some(Duration::from_secs(600)),
            ..BombingPolicy::default()
        };
        let mut r = Router::new(policy, Duration::from_millis(500));
        r.add_peer(PeerId(5), Uid::from("intruder"), false);
        let Decision::Drop(DropReason::Bombing(b)) = r.handle_rtp(t0, PeerId(5), StreamId(1), None)
        else {
            panic!("first packet is reported");
        };
        assert_eq!(b.uid.as_str(), "intruder");
        assert_eq!(b.kick_and_ban, Some(Duration::from_secs(600)));
        for i in 1..500u64 {
            let t = t0 + Duration::from_millis(20 * i);
            assert_eq!(
                r.handle_rtp(t, PeerId(5), StreamId(1), None),
                Decision::Drop(DropReason::NotAuthorized),
                "packet {i}: one report per 10 s"
            );
        }
        assert!(matches!(
            r.handle_rtp(t0 + Duration::from_secs(10), PeerId(5), StreamId(1), None),
            Decision::Drop(DropReason::Bombing(_))
        ));
    }

    #[test]
    fn stream_spoofing_and_unknown_peers_are_dropped() {
        let t0 = Instant::now();
        let mut r = router();
        r.add_peer(PeerId(1), Uid::from("a"), true);
        r.add_peer(PeerId(2), Uid::from("b"), true);
        assert_eq!(
            r.handle_rtp(t0, PeerId(1), StreamId(9), None),
            Decision::Forward
        );
        assert_eq!(
            r.handle_rtp(t0, PeerId(2), StreamId(9), None),
            Decision::Drop(DropReason::StreamIdTaken { owner: PeerId(1) })
        );
        assert_eq!(
            r.handle_rtp(t0, PeerId(3), StreamId(10), None),
            Decision::Drop(DropReason::UnknownPeer)
        );
        // A peer cannot fill the stream table.
        for s in 100..200 {
            let _ = r.handle_rtp(t0, PeerId(2), StreamId(s), None);
        }
        assert_eq!(r.peers[&PeerId(2)].streams.len(), MAX_STREAMS_PER_PEER);
        // Removing a peer frees its streams.
        assert_eq!(r.remove_peer(PeerId(1)), Some(Uid::from("a")));
        assert_eq!(r.source(StreamId(9)), None);
        assert_eq!(r.subscribers_of(PeerId(2)).count(), 0);
    }

    #[test]
    fn volumes_come_every_interval_for_authorized_speakers() {
        let t0 = Instant::now();
        let mut r = router();
        let talker = Uid::from("talker");
        r.add_peer(PeerId(1), talker.clone(), true);
        r.add_peer(PeerId(2), Uid::from("quiet"), true);
        assert_eq!(r.poll_volumes(t0), None, "the first call arms the timer");
        for i in 0..25u64 {
            let t = t0 + Duration::from_millis(20 * i);
            assert_eq!(
                r.handle_rtp(t, PeerId(1), StreamId(1), Some(6)),
                Decision::Forward
            );
            assert_eq!(
                r.handle_rtp(t, PeerId(2), StreamId(2), Some(127)),
                Decision::Forward
            );
        }
        assert_eq!(r.poll_volumes(t0 + Duration::from_millis(499)), None);
        let v = r
            .poll_volumes(t0 + Duration::from_millis(500))
            .expect("due");
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].uid, talker);
        assert!(v[0].speaking && v[0].volume > 100, "{v:?}");
        assert!(!v[1].speaking && v[1].volume == 0, "{v:?}");
        // Nothing heard in the next interval: no reports.
        let v = r.poll_volumes(t0 + Duration::from_secs(1)).expect("due");
        assert!(v.is_empty(), "{v:?}");
    }
}

#[cfg(test)]
mod remote_levels {
    use super::*;

    #[test]
    fn levels_relayed_by_another_shard_are_reported_until_forgotten() {
        let t0 = Instant::now();
        let mut r = Router::new(BombingPolicy::default(), Duration::from_millis(500));
        let far = Uid::from("far");
        assert_eq!(r.poll_volumes(t0), None, "the first call arms the timer");
        r.observe_remote_level(&far, 40);
        r.observe_remote_level(&far, 6);
        let v = r
            .poll_volumes(t0 + Duration::from_millis(500))
            .expect("due");
        assert_eq!(v.len(), 1);
        assert!(v[0].uid == far && v[0].speaking, "{v:?}");
        // Silent for an interval: nothing, and the meter is dropped.
        let v = r.poll_volumes(t0 + Duration::from_secs(1)).expect("due");
        assert!(v.is_empty() && r.remote_uids().is_empty(), "{v:?}");
        r.observe_remote_level(&far, 6);
        r.forget_remote_level(&far);
        let v = r
            .poll_volumes(t0 + Duration::from_millis(1500))
            .expect("due");
        assert!(v.is_empty(), "a forgotten publisher is not reported: {v:?}");
    }
}

#[cfg(test)]
mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Add(u8, u8, bool),
        Remove(u8),
        Authorize(u8, bool),
        Rtp(u8, u8),
        Wait(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6u8, 0..4u8, any::<bool>()).prop_map(|(p, u, a)| Op::Add(p, u, a)),
            (0..6u8).prop_map(Op::Remove),
            (0..4u8, any::<bool>()).prop_map(|(u, a)| Op::Authorize(u, a)),
            (0..6u8, 0..8u8).prop_map(|(p, s)| Op::Rtp(p, s)),
            (0..5000u16).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Whatever happens, a packet is forwarded only from a known peer whose member the room
        /// last said may publish, on a stream no other peer owns, and never back to its sender.
        #[test]
        fn only_authorized_members_are_ever_forwarded(ops in proptest::collection::vec(op(), 1..200)) {
            let mut now = Instant::now();
            let mut r = Router::new(BombingPolicy::default(), Duration::from_millis(500));
            let mut allowed: HashMap<Uid, bool> = HashMap::new();
            for op in ops {
                match op {
                    Op::Add(p, u, a) => {
                        let uid = Uid::from(format!("u{u}").as_str());
                        r.add_peer(PeerId(p.into()), uid.clone(), a);
                        // The room's answer is per member; keep every peer of it in line.
                        r.set_authorized(now, &uid, a);
                        allowed.insert(uid, a);
                    }
                    Op::Remove(p) => { r.remove_peer(PeerId(p.into())); }
                    Op::Authorize(u, a) => {
                        let uid = Uid::from(format!("u{u}").as_str());
                        r.set_authorized(now, &uid, a);
                        allowed.insert(uid, a);
                    }
                    Op::Rtp(p, s) => {
                        let from = PeerId(p.into());
                        let owner_before = r.source(StreamId(s.into()));
                        let d = r.handle_rtp(now, from, StreamId(s.into()), Some(s));
                        if d == Decision::Forward {
                            let uid = r.uid_of(from).cloned();
                            prop_assert!(uid.as_ref().is_some_and(|u| allowed.get(u) == Some(&true)));
                            prop_assert!(owner_before.is_none() || owner_before == Some(from));
                            prop_assert!(r.subscribers_of(from).all(|to| to != from));
                        }
                    }
                    Op::Wait(ms) => now += Duration::from_millis(ms.into()),
                }
            }
        }
    }
}
