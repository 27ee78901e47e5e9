//! A forwarding driver on rtc 0.21 (the sans-IO core under webrtc-rs), **for measurement only**:
//! built with the `bench-rtc` feature and chosen with `ONMIC_SFU_STACK=rtc` (see
//! [`crate::sfu::stack`]), so that `benches/sfu_capacity.rs` can run the same harness against
//! either stack (issue 5). The product runs the str0m driver (`driver/`).
//!
//! What it does is the str0m driver's hot path, and only that: it answers the offer of
//! `POST /rtc/offer` (one `sendonly` microphone m-line, then one `recvonly` m-line per slot),
//! runs ICE (full, controlled, as str0m does), DTLS and SRTP with one `RTCPeerConnection` per
//! peer, accepts Opus RTP only from members the room's [`Router`] authorises (the room's events
//! applied before every packet, as in `driver/`), and writes each authorised packet to every
//! subscriber on the publisher's slot with that subscriber's own SSRC and sequence number (the
//! payload is one shared `Bytes`). Shards, relays between them with a doorbell datagram, and
//! `sendmmsg` batches are as in `driver/`.
//!
//! Left out: recording (its commands answer "not running"), volume indication, shedding late audio
//! (`stamped.rs`), and the RFC 6464 level header extension on forwarded packets. Bombing is
//! reported (and kicked, per the room's setting) as by the str0m driver, off the forwarding path.
//! Interceptors: RTCP sender and receiver reports only (str0m sends reports too; no NACK buffers or
//! TWCC, which the str0m driver does not run for audio either).
//!
//! Checked with the SFU's own tests: `ONMIC_SFU_STACK=rtc cargo test -p onmic-server --features
//! bench-rtc --test sfu_forwarding --test sfu_bad_input --test sfu_bombing_setting` pass, but for
//! the shedding test (this driver does not shed late audio).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use onmic_room::{RoomId, Uid};
use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::configure_rtcp_reports;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
use rtc::peer_connection::event::RTCPeerConnectionEvent;
use rtc::peer_connection::message::RTCMessage;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::RTCRtpSenderId;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio::sync::broadcast;

use super::{
    Cmd, IDLE_WAKE, MAX_DATAGRAM, Sfu, SfuConfig, SfuError, SfuStats, Shard, ShardStart, Sibling,
    start_shards,
};
use crate::hub::{Frame, Hub};
use crate::recording::RecordingError;
use crate::sfu::OPUS_PT;
use crate::sfu::room_sync::{RoomChanges, act_on_bombing, open_room, refresh_authorisation};
use crate::sfu::router::{Decision, DropReason, PeerId, Router, StreamId};
use crate::sfu::sendmmsg::{MAX_BATCH, SendBatch};

/// The name [`crate::sfu::stack`] reports for this driver.
pub(crate) const STACK: &str = "rtc 0.21";

/// A room whose packets only came relayed from other shards is forgotten after this long.
const RELAY_ROOM_IDLE: Duration = Duration::from_secs(10);

/// Starts one rtc driver thread per shard; the returned [`Sfu`] is driven exactly like the str0m
/// one (same commands, same counters).
pub(super) fn start(hub: Arc<Hub>, config: SfuConfig) -> std::io::Result<Sfu> {
    start_shards(
        config.shards,
        config.udp,
        STACK,
        move |start: ShardStart<Relay>| {
            let driver = RtcDriver {
                hub: hub.clone(),
                socket: start.socket,
                addr: start.addr,
                config: config.clone(),
                next_peer: start.shard.index as u64 + 1,
                shard: start.shard,
                peers: HashMap::new(),
                rooms: HashMap::new(),
                by_source: HashMap::new(),
                by_ufrag: HashMap::new(),
                timers: BinaryHeap::new(),
                next_reap: Instant::now(),
                stats: SfuStats::default(),
                outbox: Vec::with_capacity(MAX_BATCH),
                batch: SendBatch::new(),
                fan_targets: Vec::new(),
            };
            driver.run(start.commands)
        },
    )
    .map(|(sfu, _)| sfu)
}

/// An authorised packet handed to the other shards (judged once, by the publisher's shard).
struct Relay {
    room: RoomId,
    from: PeerId,
    slot: usize,
    packet: Forwarded,
}

/// What every copy of a forwarded packet shares.
#[derive(Clone)]
struct Forwarded {
    payload: Bytes,
    timestamp: u32,
    marker: bool,
}

struct Peer {
    room: RoomId,
    pc: RTCPeerConnection,
    /// Our ICE username fragment (the first half of the USERNAME of the client's STUN checks).
    ufrag: String,
    /// Per slot: our sender and its SSRC.
    slots: Vec<(RTCRtpSenderId, u32)>,
    /// The next RTP sequence number of each slot's outgoing stream.
    slot_seq: Vec<u16>,
    /// The payload type the peer negotiated for Opus.
    opus_pt: u8,
    connected: bool,
    dead: bool,
    timeout: Instant,
}

struct RoomMedia {
    router: Router,
    events: broadcast::Receiver<Frame>,
    /// Slot (seat index) of each member allowed to publish.
    slot_of: HashMap<Uid, usize>,
    last_relay: Option<Instant>,
}

struct RtcDriver {
    hub: Arc<Hub>,
    socket: UdpSocket,
    addr: SocketAddr,
    config: SfuConfig,
    shard: Shard<Relay>,
    peers: HashMap<PeerId, Peer>,
    rooms: HashMap<RoomId, RoomMedia>,
    by_source: HashMap<SocketAddr, PeerId>,
    by_ufrag: HashMap<String, PeerId>,
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    next_reap: Instant,
    next_peer: u64,
    stats: SfuStats,
    /// Datagrams waiting for the next `sendmmsg`.
    outbox: Vec<(SocketAddr, BytesMut)>,
    batch: SendBatch,
    fan_targets: Vec<PeerId>,
}

/// The Opus codec as Onmic negotiates it (`opus_rtc_config` on the str0m side).
fn opus_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: OPUS_PT,
    }
}

/// The local ICE username fragment of a STUN message's USERNAME attribute
/// (`"<ours>:<theirs>"`), or `None` if `data` is not a STUN message with one.
fn stun_local_ufrag(data: &[u8]) -> Option<&str> {
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
    const USERNAME: u16 = 0x0006;
    if data.len() < 20 || data[0] & 0xc0 != 0 || data.get(4..8)? != MAGIC_COOKIE {
        return None;
    }
    let mut rest = data.get(20..)?;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
        let value = rest.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attributes are padded to 4 bytes.
        rest = rest.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}

/// The value of the first `a=<name>:` line of an SDP.
fn sdp_attribute<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines().find_map(|l| {
        l.trim_end()
            .strip_prefix("a=")?
            .strip_prefix(name)?
            .strip_prefix(':')
    })
}

/// The payload type an SDP maps to Opus (`a=rtpmap:<pt> opus/48000...`).
fn sdp_opus_pt(sdp: &str) -> Option<u8> {
    sdp.lines().find_map(|l| {
        let (pt, codec) = l.trim_end().strip_prefix("a=rtpmap:")?.split_once(' ')?;
        codec
            .to_ascii_lowercase()
            .starts_with("opus/48000")
            .then(|| pt.parse().ok())?
    })
}

/// A new peer connection: the rtc configuration for Onmic's one codec.
fn peer_connection(addr: SocketAddr) -> Result<RTCPeerConnection, SfuError> {
    let bad = |e: rtc::shared::error::Error| SfuError::BadOffer(e.to_string());
    let mut media = MediaEngine::default();
    media
        .register_codec(opus_codec(), RtpCodecKind::Audio)
        .map_err(bad)?;
    let registry = configure_rtcp_reports(Registry::new());
    let mut pc = RTCPeerConnectionBuilder::new()
        .with_media_engine(media)
        .with_interceptor_registry(registry)
        .build(Instant::now())
        .map_err(bad)?;
    let candidate = CandidateHostConfig {
        base_config: CandidateConfig {
            network: "udp".to_owned(),
            address: addr.ip().to_string(),
            port: addr.port(),
            component: 1,
            ..Default::default()
        },
        ..Default::default()
    }
    .new_candidate_host()
    .map_err(bad)?;
    let init = RTCIceCandidate::from(&candidate).to_json().map_err(bad)?;
    pc.add_local_candidate(init).map_err(bad)?;
    Ok(pc)
}

/// A peer connection that answered an offer, and what the driver needs to know about it.
struct Answered {
    pc: RTCPeerConnection,
    slots: Vec<(RTCRtpSenderId, u32)>,
    ufrag: String,
    opus_pt: u8,
    answer: SdpAnswer,
}

/// Answers a client's offer with a new peer connection whose host candidate is `addr`. Any
/// offer rtc refuses is [`SfuError::BadOffer`].
fn answer_offer(
    addr: SocketAddr,
    id: PeerId,
    offer_sdp: String,
    now: Instant,
) -> Result<Answered, SfuError> {
    let bad = |e: rtc::shared::error::Error| SfuError::BadOffer(e.to_string());
    let mut pc = peer_connection(addr)?;
    let offer = RTCSessionDescription::offer(offer_sdp).map_err(bad)?;
    pc.set_remote_description(now, offer).map_err(bad)?;
    // The remote's m-lines, in order: its microphone is `recvonly` here, the slots
    // `sendonly`. `add_track` fills the first audio transceiver without a sender, so every
    // transceiver gets one in order and the microphone's is turned back to receive-only.
    let transceivers: Vec<usize> = pc.get_transceivers().collect();
    let mut slots = Vec::new();
    for (k, t) in transceivers.into_iter().enumerate() {
        let Some(direction) = pc.rtp_transceiver(t).map(|t| t.direction()) else {
            continue;
        };
        let ssrc = (id.0 as u32).wrapping_mul(64).wrapping_add(k as u32) | 0x4000_0000;
        let track = MediaStreamTrack::new(
            format!("onmic-{}", id.0),
            format!("slot-{}-{k}", id.0),
            format!("slot-{k}"),
            RtpCodecKind::Audio,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: opus_codec().rtp_codec,
                ..Default::default()
            }],
        );
        let sender = pc.add_track(track).map_err(bad)?;
        match direction {
            RTCRtpTransceiverDirection::Sendonly => slots.push((sender, ssrc)),
            _ => {
                if let Some(mut t) = pc.rtp_transceiver(t) {
                    t.set_direction(direction);
                }
            }
        }
    }
    let answer = pc.create_answer(None).map_err(bad)?;
    pc.set_local_description(now, answer).map_err(bad)?;
    let sdp = pc
        .local_description()
        .map(|d| d.sdp)
        .ok_or_else(|| SfuError::BadOffer("no local description".into()))?;
    let ufrag = sdp_attribute(&sdp, "ice-ufrag")
        .ok_or_else(|| SfuError::BadOffer("answer without ice-ufrag".into()))?
        .to_owned();
    let opus_pt = sdp_opus_pt(&sdp).unwrap_or(OPUS_PT);
    let answer = SdpAnswer::from_sdp_string(&sdp)
        .map_err(|e| SfuError::BadOffer(format!("rtc's answer: {e}")))?;
    Ok(Answered {
        pc,
        slots,
        ufrag,
        opus_pt,
        answer,
    })
}

impl RtcDriver {
    fn run(mut self, rx: std_mpsc::Receiver<Cmd>) {
        tracing::debug!(shard = self.shard.index, "rtc 0.21 driver thread started");
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            loop {
                match rx.try_recv() {
                    Ok(Cmd::Shutdown(reply)) => {
                        let _ = reply.send(());
                        return;
                    }
                    Ok(cmd) => self.command(cmd),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => return,
                }
            }
            self.take_relays();
            let now = Instant::now();
            while let Some(Reverse((at, id))) = self.timers.peek().copied() {
                if at > now {
                    break;
                }
                self.timers.pop();
                let Some(p) = self.peers.get_mut(&id) else {
                    continue;
                };
                if p.timeout != at {
                    continue; // stale: the peer was driven since
                }
                p.timeout = now + Duration::from_secs(86_400);
                self.stats.timer_fires += 1;
                if p.pc.handle_timeout(now).is_err() {
                    p.dead = true;
                }
                self.drive(id);
            }
            self.flush();
            let next = self
                .timers
                .peek()
                .map(|Reverse((at, _))| *at)
                .unwrap_or(now + IDLE_WAKE)
                .min(now + IDLE_WAKE);
            let wait = next
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let _ = self.socket.set_read_timeout(Some(wait));
            match self.socket.recv_from(&mut buf) {
                Ok((_, source)) if self.shard.siblings.iter().any(|s| s.addr == source) => {
                    self.take_relays();
                    self.flush();
                }
                Ok((n, source)) => {
                    self.stats.datagrams_in += 1;
                    if n > 12 && (128..192).contains(&buf[0]) && buf[1] & 0x7f == OPUS_PT {
                        self.stats.opus_rtp_in += 1;
                    }
                    self.datagram(&buf[..n], source);
                    self.flush();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => tracing::debug!(%e, "media socket read"),
            }
            if Instant::now() >= self.next_reap {
                self.next_reap = Instant::now() + Duration::from_millis(100);
                let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
                for room in rooms {
                    self.apply_room_events(&room);
                }
                self.reap();
            }
        }
    }

    /// Hands the queued datagrams to the kernel (as the str0m driver's `Outbox::flush`).
    fn flush(&mut self) {
        let mut start = 0;
        while start < self.outbox.len() {
            match self.batch.send(&self.socket, &self.outbox[start..]) {
                Ok(n) if n > 0 => {
                    self.stats.datagrams_out += n as u64;
                    start += n;
                }
                Ok(_) => start += 1,
                Err(e) => {
                    tracing::debug!(%e, "media socket send");
                    start += 1;
                }
            }
        }
        self.outbox.clear();
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            // Nor relays (issue 16): a relayed listener is refused.
            Cmd::Connect {
                relayed: true,
                reply,
                ..
            } => {
                let _ = reply.send(Err(SfuError::Stopped));
            }
            Cmd::Connect {
                room,
                uid,
                offer,
                reply,
                ..
            } => {
                let _ = reply.send(self.connect(room, uid, offer));
            }
            Cmd::Stats(reply) => {
                self.stats.peers = self.peers.len();
                self.stats.connected = self.peers.values().filter(|p| p.connected).count();
                self.stats.read_at = Some(Instant::now());
                let _ = reply.send(self.stats);
            }
            Cmd::StartRecording { reply, .. } => {
                let _ = reply.send(Err(RecordingError::Stopped));
            }
            Cmd::StopRecording { reply, .. } => {
                let _ = reply.send(Err(RecordingError::Stopped));
            }
            Cmd::Shutdown(reply) => {
                let _ = reply.send(());
            }
            Cmd::Stall(pause) => std::thread::sleep(pause),
            Cmd::SlowRelays(_) => {} // the str0m driver's test support only
            // This comparison driver (the `bench-rtc` feature) feeds no CDN push: the tap is
            // dropped, and a push started on it sends silence.
            Cmd::SetPushTap { .. } => {}
            // Nor relays: the relay commands are ignored.
            Cmd::RoomPeers { reply, .. } => {
                let _ = reply.send(0);
            }
            Cmd::CloseRelayed { .. } | Cmd::SetRelayTap { .. } => {}
        }
    }

    fn connect(&mut self, room: RoomId, uid: Uid, offer: SdpOffer) -> Result<SdpAnswer, SfuError> {
        self.apply_room_events(&room);
        let snapshot = self.hub.snapshot(&room).map_err(|_| SfuError::NoSuchRoom)?;
        if !snapshot.members.contains_key(&uid) {
            return Err(SfuError::NotMember);
        }
        let now = Instant::now();
        let id = PeerId(self.next_peer);
        let Answered {
            pc,
            slots,
            ufrag,
            opus_pt,
            answer,
        } = answer_offer(self.addr, id, offer.to_sdp_string(), now)?;
        self.next_peer += self.shard.count as u64;
        // Replace the member's older peer connections (a reconnect).
        let old: Vec<PeerId> = self
            .rooms
            .get(&room)
            .map(|m| m.router.peers_of(&uid).collect())
            .unwrap_or_default();
        for p in old {
            self.remove_peer(p);
        }
        let media = self
            .room_media(&room, Some(&snapshot.settings))
            .ok_or(SfuError::NoSuchRoom)?;
        media.router.add_peer(id, uid, false);
        self.by_ufrag.insert(ufrag.clone(), id);
        let slot_seq = vec![1u16; slots.len()];
        self.peers.insert(
            id,
            Peer {
                room: room.clone(),
                pc,
                ufrag,
                slots,
                slot_seq,
                opus_pt,
                connected: false,
                dead: false,
                timeout: now,
            },
        );
        self.timers.push(Reverse((now, id)));
        self.refresh_room(&room);
        Ok(answer)
    }

    fn room_media(
        &mut self,
        room: &RoomId,
        settings: Option<&onmic_room::RoomSettings>,
    ) -> Option<&mut RoomMedia> {
        match self.rooms.entry(room.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                let (router, events) = open_room(
                    &self.hub,
                    room,
                    settings,
                    &self.config.bombing,
                    self.config.volume_interval,
                )?;
                Some(v.insert(RoomMedia {
                    router,
                    events,
                    slot_of: HashMap::new(),
                    last_relay: None,
                }))
            }
        }
    }

    /// Asks the hub again who may publish in `room` and on which slot (as the str0m driver).
    fn refresh_room(&mut self, room: &RoomId) {
        if let Some(media) = self.rooms.get_mut(room) {
            refresh_authorisation(&self.hub, room, &mut media.router, &mut media.slot_of);
        }
    }

    /// Applies the room events committed so far (as the str0m driver).
    fn apply_room_events(&mut self, room: &RoomId) {
        let Some(media) = self.rooms.get_mut(room) else {
            return;
        };
        let changes = RoomChanges::drain(&mut media.events);
        changes.apply_policy(&mut media.router, &self.config.bombing);
        for p in changes.departed_peers(&media.router) {
            self.remove_peer(p);
        }
        if changes.refresh && !changes.dismissed {
            self.refresh_room(room);
        }
    }

    fn remove_peer(&mut self, id: PeerId) {
        if let Some(mut peer) = self.peers.remove(&id) {
            let _ = peer.pc.close();
            while let Some(out) = peer.pc.poll_write() {
                self.outbox.push((out.transport.peer_addr, out.message));
            }
            if let Some(media) = self.rooms.get_mut(&peer.room) {
                media.router.remove_peer(id);
                if media.router.peer_count() == 0 {
                    self.rooms.remove(&peer.room);
                }
            }
            self.by_ufrag.remove(&peer.ufrag);
            self.by_source.retain(|_, p| *p != id);
        }
    }

    fn reap(&mut self) {
        let now = Instant::now();
        self.rooms.retain(|_, m| {
            m.router.peer_count() > 0
                || m.last_relay
                    .is_some_and(|t| now.saturating_duration_since(t) < RELAY_ROOM_IDLE)
        });
        let dead: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.dead)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.remove_peer(id);
        }
    }

    fn datagram(&mut self, data: &[u8], source: SocketAddr) {
        // A STUN check names the peer by our ufrag (and may come from a new address); anything
        // else belongs to the peer that address was last seen checking for.
        let id = match stun_local_ufrag(data).and_then(|u| self.by_ufrag.get(u)) {
            Some(&id) => {
                self.by_source.insert(source, id);
                id
            }
            None => match self.by_source.get(&source) {
                Some(&id) => id,
                None => return,
            },
        };
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let input = TaggedBytesMut {
            now: Instant::now(),
            transport: TransportContext {
                local_addr: self.addr,
                peer_addr: source,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(data),
        };
        if let Err(e) = peer.pc.handle_read(input) {
            // Bad input for this peer (a malformed packet, a failed decryption): dropped, as
            // str0m's driver does with what `handle_input` refuses; the peer stays up.
            tracing::trace!(peer = id.0, %e, "peer input refused");
        }
        self.drive(id);
    }

    /// Polls a peer until it has nothing more to say; forwards the RTP it received.
    fn drive(&mut self, id: PeerId) {
        let mut media_in: VecDeque<rtc::rtp::Packet> = VecDeque::new();
        {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            while let Some(out) = peer.pc.poll_write() {
                self.outbox.push((out.transport.peer_addr, out.message));
            }
            while let Some(event) = peer.pc.poll_event() {
                if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) = event {
                    match state {
                        RTCPeerConnectionState::Connected => peer.connected = true,
                        RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                            peer.connected = false;
                            peer.dead = true;
                        }
                        _ => {}
                    }
                }
            }
            while let Some(msg) = peer.pc.poll_read() {
                if let RTCMessage::RtpPacket(_, packet) = msg.message {
                    media_in.push_back(packet);
                }
            }
            // Reading may have queued more to send (RTCP answers, DTLS flights).
            while let Some(out) = peer.pc.poll_write() {
                self.outbox.push((out.transport.peer_addr, out.message));
            }
            Self::rearm(&mut self.timers, id, peer);
        }
        if self.outbox.len() >= MAX_BATCH {
            self.flush();
        }
        while let Some(packet) = media_in.pop_front() {
            self.media(id, packet);
        }
    }

    fn rearm(timers: &mut BinaryHeap<Reverse<(Instant, PeerId)>>, id: PeerId, peer: &mut Peer) {
        if let Some(t) = peer.pc.poll_timeout()
            && t != peer.timeout
        {
            peer.timeout = t;
            timers.push(Reverse((t, id)));
        }
    }

    fn media(&mut self, from: PeerId, packet: rtc::rtp::Packet) {
        let Some(peer) = self.peers.get(&from) else {
            return;
        };
        // Only Opus (rtc hands out RTP of the peer's receive-only m-line, its microphone, alone).
        if packet.header.payload_type != peer.opus_pt {
            self.stats.dropped += 1;
            return;
        }
        let room = peer.room.clone();
        self.apply_room_events(&room);
        let Some(media) = self.rooms.get_mut(&room) else {
            return;
        };
        let now = Instant::now();
        match media.router.handle_rtp(now, from, StreamId(from.0), None) {
            Decision::Forward => {}
            Decision::Drop(DropReason::Bombing(b)) => {
                // Reported and acted on as by the str0m driver, so that `sfu_forwarding` runs
                // on this driver too (`ONMIC_SFU_STACK=rtc`); never on the forwarding path.
                self.stats.dropped += 1;
                self.stats.bombings += 1;
                if act_on_bombing(&self.hub, &room, &b) {
                    self.apply_room_events(&room);
                }
                return;
            }
            Decision::Drop(_) => {
                self.stats.dropped += 1;
                return;
            }
        }
        let Some(uid) = media.router.uid_of(from) else {
            return;
        };
        let Some(&slot) = media.slot_of.get(uid) else {
            self.stats.dropped += 1;
            return;
        };
        self.stats.forwarded_in += 1;
        let forwarded = Forwarded {
            payload: packet.payload,
            timestamp: packet.header.timestamp,
            marker: packet.header.marker,
        };
        for Sibling { tx, addr } in &self.shard.siblings {
            let relay = Relay {
                room: room.clone(),
                from,
                slot,
                packet: forwarded.clone(),
            };
            if tx.send(relay).is_ok() {
                self.outbox.push((*addr, BytesMut::from(&[0u8][..])));
            }
        }
        self.fan_out(&room, from, slot, &forwarded, now);
    }

    fn take_relays(&mut self) {
        while let Ok(relay) = self.shard.relays.try_recv() {
            self.stats.relayed_in += 1;
            let now = Instant::now();
            if let Some(media) = self.rooms.get_mut(&relay.room) {
                media.last_relay = Some(now);
            }
            self.fan_out(&relay.room, relay.from, relay.slot, &relay.packet, now);
        }
    }

    /// Writes one authorised packet to this shard's subscribers of `room` on `slot`.
    fn fan_out(
        &mut self,
        room: &RoomId,
        from: PeerId,
        slot: usize,
        packet: &Forwarded,
        now: Instant,
    ) {
        let Some(media) = self.rooms.get(room) else {
            return;
        };
        let mut targets = std::mem::take(&mut self.fan_targets);
        targets.clear();
        targets.extend(media.router.subscribers_of(from));
        for &to in &targets {
            let Some(peer) = self.peers.get_mut(&to) else {
                continue;
            };
            if !peer.connected {
                continue;
            }
            let (Some(&(sender, ssrc)), Some(seq)) =
                (peer.slots.get(slot), peer.slot_seq.get_mut(slot))
            else {
                continue;
            };
            let rtp = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: packet.marker,
                    payload_type: peer.opus_pt,
                    sequence_number: *seq,
                    timestamp: packet.timestamp,
                    ssrc,
                    ..Default::default()
                },
                payload: packet.payload.clone(),
            };
            *seq = seq.wrapping_add(1);
            let Some(mut s) = peer.pc.rtp_sender(sender) else {
                continue;
            };
            if s.write_rtp(now, rtp).is_ok() {
                self.stats.forwarded_out += 1;
            }
            while let Some(out) = peer.pc.poll_write() {
                self.outbox.push((out.transport.peer_addr, out.message));
            }
            Self::rearm(&mut self.timers, to, peer);
            if self.outbox.len() >= MAX_BATCH {
                self.flush();
            }
        }
        self.fan_targets = targets;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_username_is_parsed_and_garbage_is_not() {
        // A binding request with USERNAME "abcd:efgh".
        let mut m = vec![0x00, 0x01, 0x00, 0x0c, 0x21, 0x12, 0xa4, 0x42];
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&[0x00, 0x06, 0x00, 0x09]);
        m.extend_from_slice(b"abcd:efgh\0\0\0");
        assert_eq!(stun_local_ufrag(&m), Some("abcd"));
        for n in 0..m.len() {
            let _ = stun_local_ufrag(&m[..n]);
        }
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None);
        let mut long = m.clone();
        long[22] = 0xff; // attribute length past the end
        assert_eq!(stun_local_ufrag(&long), None);
    }

    /// An offer as Onmic clients make it: a microphone and `slots` receive-only slots.
    fn client_offer(slots: usize) -> String {
        use str0m::media::{Direction, MediaKind};
        let now = Instant::now();
        let mut rtc = crate::sfu::opus_rtc_config().build(now);
        let addr: SocketAddr = "127.0.0.1:40000".parse().expect("address literal");
        rtc.add_local_candidate(str0m::Candidate::host(addr, "udp").expect("host candidate"));
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        for _ in 0..slots {
            api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
        }
        let (offer, _) = api.apply().expect("an offer");
        offer.to_sdp_string()
    }

    fn answer(sdp: String) -> Result<Answered, SfuError> {
        let addr: SocketAddr = "127.0.0.1:30000".parse().expect("address literal");
        answer_offer(addr, PeerId(1), sdp, Instant::now())
    }

    #[test]
    fn a_client_offer_is_answered_with_one_sender_per_slot() {
        let a = answer(client_offer(4)).expect("answered");
        assert_eq!(a.slots.len(), 4);
        assert_eq!(a.opus_pt, OPUS_PT);
        assert!(!a.ufrag.is_empty());
        let sdp = a.answer.to_sdp_string();
        assert_eq!(sdp.matches("a=sendonly").count(), 4, "{sdp}");
        assert_eq!(sdp.matches("a=recvonly").count(), 1, "{sdp}");
    }

    #[test]
    fn malformed_offers_are_errors_not_panics() {
        let good = client_offer(2);
        let without = |prefix: &str| {
            good.lines()
                .filter(|l| !l.starts_with(prefix))
                .map(|l| format!("{l}\r\n"))
                .collect::<String>()
        };
        for bad in [
            String::new(),
            "garbage".to_owned(),
            without("a=mid:"),
            without("a=fingerprint:"),
            without("a=ice-ufrag:"),
            without("a=ice-pwd:"),
        ] {
            assert!(answer(bad).is_err());
        }
        // Truncated anywhere: an error or an answer, never a panic.
        for n in (0..good.len()).step_by(97) {
            let _ = answer(good[..n].to_owned());
        }
    }

    #[test]
    fn sdp_helpers() {
        let sdp = "v=0\r\na=ice-ufrag:AbC\r\na=rtpmap:111 opus/48000/2\r\n";
        assert_eq!(sdp_attribute(sdp, "ice-ufrag"), Some("AbC"));
        assert_eq!(sdp_opus_pt(sdp), Some(111));
        assert_eq!(sdp_opus_pt("garbage"), None);
    }
}
