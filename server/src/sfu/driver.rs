//! The SFU's network driver: one thread per shard (default: one per core), each with its own UDP
//! socket and its own peers (one str0m `Rtc` per member's peer connection, in RTP mode), and a
//! [`Router`] per room and shard that decides about every packet of that shard's publishers.
//!
//! Media layout, fixed at connect time so that seat changes never need renegotiation: the
//! client's offer has one `sendonly` audio m-line (its microphone; a listener may leave it out)
//! and then one `recvonly` audio m-line per *slot*. Slot `i` carries whoever holds seat `i` (seat 0
//! is the owner's), so a client maps what it hears to seats with the room state it already has.
//!
//! Authorisation: the driver subscribes to each room's events; before every packet it applies the
//! events already committed (seat, mute, floor and membership changes) by asking the hub again
//! ([`Hub::may_publish`]), so a packet that arrives after a kick or mute is not forwarded.
//! Audio from anyone else is dropped and reported ([`Hub::report_bombing`]); a member who left or
//! was kicked loses its peer connection.
//!
//! Shards: the publisher's shard judges a packet once and relays it, judged, to the other shards
//! (a channel and a one-byte doorbell datagram); each forwards it to its own subscribers. The
//! room's home shard (`home_shard`) reports volumes and runs the recording tap.
//!
//! Hot path, per forwarded copy: no allocation, lock or log of ours (the payload is one shared
//! `Arc<[u8]>`); str0m allocates the encrypted datagram. Per forwarded packet: the target list,
//! and per other shard one relay message (room and uid strings) and its doorbell. Copies go to
//! the kernel with `sendmmsg` (see `sendmmsg.rs`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use onmic_room::protocol::SpeakerVolume;
use onmic_room::{Action, BombingAction, Command, EventKind, RoomId, Uid};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{DatagramSend, Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{broadcast, oneshot};

use super::level::VolumeGate;
use super::router::{BombingPolicy, Decision, DropReason, PeerId, Router, StreamId};
use super::sendmmsg::{MAX_BATCH, SendBatch};
use crate::hub::{Frame, Hub};
use crate::recording::{self, Recording, RecordingError};

/// The Opus payload type the SFU offers (Chromium's choice too).
/// Largest datagram read from the socket.
const MAX_DATAGRAM: usize = 2000;
/// Sent audio packets str0m keeps per stream for resending. Audio is not resent (no NACK/RTX;
/// Opus in-band FEC covers loss), so keep few: str0m's default of 50 cost ~60 KiB per listener.
const AUDIO_SEND_BUFFER: usize = 4;
/// Receive and send buffer asked for on the media socket.
const SOCKET_BUFFER: usize = 4 << 20;
/// A room whose packets only came relayed from other shards is forgotten after this long without
/// one.
const RELAY_ROOM_IDLE: Duration = Duration::from_secs(10);
/// The loop wakes at least this often to look at commands.
const IDLE_WAKE: Duration = Duration::from_millis(20);
/// A subscriber polled only up to its forwarded packet (see [`Driver::fan_out`]) is polled until
/// it has nothing more to say at most this much later: its RTCP reports, ICE checks and next
/// timeout wait at most this long, the forwarded audio not at all.
const DRAIN_EVERY: Duration = Duration::from_millis(50);

/// Whether an (SRTP) datagram is RTP of payload type `pt`, not RTCP (RFC 5761: RTCP packet
/// types 192–223 share the second byte with marker + payload type).
fn is_rtp_of(datagram: &[u8], pt: u8) -> bool {
    datagram.len() > 12
        && (128..192).contains(&datagram[0])
        && !(192..224).contains(&datagram[1])
        && datagram[1] & 0x7f == pt
}

/// Why connecting a peer failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SfuError {
    /// The uid is not a member of the room (join over the WebSocket first).
    #[error("not a member of the room; join over the WebSocket first")]
    NotMember,
    /// No such room.
    #[error("no such room")]
    NoSuchRoom,
    /// The SDP offer could not be parsed or accepted.
    #[error("bad SDP offer: {0}")]
    BadOffer(String),
    /// The SFU thread is gone (the server is stopping).
    #[error("the media service is not running")]
    Stopped,
}

impl SfuError {
    /// The wire error code.
    pub fn code(&self) -> &'static str {
        match self {
            SfuError::NotMember => "not_member",
            SfuError::NoSuchRoom => "no_such_room",
            SfuError::BadOffer(_) => "bad_sdp",
            SfuError::Stopped => "internal",
        }
    }
}

/// Settings of the SFU.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// UDP address for all media (port 0: any free port). Its IP is the host candidate
    /// advertised, so it must be an address clients reach (not `0.0.0.0`).
    pub udp: SocketAddr,
    /// What to do with audio from members who may not publish.
    pub bombing: BombingPolicy,
    /// How often volume levels are computed.
    pub volume_interval: Duration,
    /// Driver threads (shards), each with its own socket and its own peers; 0: one per core.
    pub shards: usize,
}

/// Counters of the SFU, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Peers connected now.
    pub peers: usize,
    /// Peers whose connection is up (ICE and DTLS done).
    pub connected: usize,
    /// Packets received from publishers and forwarded (once per packet, not per subscriber).
    pub forwarded_in: u64,
    /// Packet copies written to subscribers.
    pub forwarded_out: u64,
    /// Authorised packets taken from other shards (to forward to this shard's subscribers).
    pub relayed_in: u64,
    /// Packets dropped by the router.
    pub dropped: u64,
    /// Bombing reports raised.
    pub bombings: u64,
    /// Peer timers that fired (str0m timeouts handled outside of a packet).
    pub timer_fires: u64,
    /// Datagrams received on the media socket.
    pub datagrams_in: u64,
    /// Of those, Opus RTP (payload type 111, before decryption or any judgement).
    pub opus_rtp_in: u64,
    /// Datagrams sent.
    pub datagrams_out: u64,
}

enum Cmd {
    Connect {
        room: RoomId,
        uid: Uid,
        offer: SdpOffer,
        reply: oneshot::Sender<Result<SdpAnswer, SfuError>>,
    },
    Stats(oneshot::Sender<SfuStats>),
    StartRecording {
        room: RoomId,
        reply: oneshot::Sender<recording::Finished>,
    },
    StopRecording {
        room: RoomId,
        reply: oneshot::Sender<Result<JoinHandle<recording::Finished>, RecordingError>>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// A running SFU; dropping it stops its threads.
#[derive(Debug)]
pub struct Sfu {
    shards: Vec<ShardHandle>,
}

/// One driver thread as seen from the outside.
#[derive(Debug)]
struct ShardHandle {
    tx: Option<std_mpsc::Sender<Cmd>>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// Binds a media socket with buffers for a fan-out.
fn media_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_read_timeout(Some(IDLE_WAKE))?;
    // One socket carries the handshakes and the audio of every peer of its shard; while the
    // thread fans a packet out to thousands of listeners, arrivals queue here. The default buffer
    // (~200 datagrams) overflowed at 1,000 listeners (lost speaker packets and DTLS flights); the
    // kernel caps the request at net.core.rmem_max / wmem_max.
    let sock = socket2::SockRef::from(&socket);
    let _ = sock.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = sock.set_send_buffer_size(SOCKET_BUFFER);
    tracing::debug!(
        recv = ?sock.recv_buffer_size(),
        send = ?sock.send_buffer_size(),
        "media socket buffers"
    );
    Ok(socket)
}

/// A stable index in `0..n` for `key` (the same in every run).
fn bucket(key: impl std::hash::Hash, n: usize) -> usize {
    use std::hash::Hasher;
    let mut h = std::hash::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % n.max(1) as u64) as usize
}

impl Sfu {
    /// Binds the UDP sockets and starts the media threads (shards). Shard 0 binds `config.udp`,
    /// the others the same IP on any free port.
    pub fn start(hub: Arc<Hub>, config: SfuConfig) -> std::io::Result<Sfu> {
        let n = match config.shards {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let mut sockets = Vec::with_capacity(n);
        for i in 0..n {
            let bind = if i == 0 {
                config.udp
            } else {
                SocketAddr::new(config.udp.ip(), 0)
            };
            let socket = media_socket(bind)?;
            let addr = socket.local_addr()?;
            sockets.push((socket, addr));
        }
        let (relay_txs, relay_rxs): (Vec<_>, Vec<_>) =
            (0..n).map(|_| std_mpsc::channel::<Relay>()).unzip();
        let addrs: Vec<SocketAddr> = sockets.iter().map(|(_, a)| *a).collect();
        let mut shards = Vec::with_capacity(n);
        for (i, ((socket, addr), relays)) in sockets.into_iter().zip(relay_rxs).enumerate() {
            let siblings: Vec<Sibling> = (0..n)
                .filter(|j| *j != i)
                .map(|j| Sibling {
                    tx: relay_txs[j].clone(),
                    addr: addrs[j],
                })
                .collect();
            let shard = Shard {
                index: i,
                count: n,
                siblings,
                relays,
            };
            let (tx, rx) = std_mpsc::channel();
            let (hub, config) = (hub.clone(), config.clone());
            let thread = std::thread::Builder::new()
                .name(format!("onmic-sfu-{i}"))
                .spawn(move || Driver::new(hub, socket, addr, config, shard).run(rx))?;
            shards.push(ShardHandle {
                tx: Some(tx),
                addr,
                thread: Some(thread),
            });
        }
        tracing::info!(addrs = ?addrs, "media (SFU) listening");
        Ok(Sfu { shards })
    }

    /// The UDP address of the first shard (each shard has its own; a peer is told its shard's in
    /// the SDP answer).
    pub fn local_addr(&self) -> SocketAddr {
        self.shards[0].addr
    }

    /// How many driver threads (shards) run.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    fn send(&self, shard: usize, cmd: Cmd) -> Result<(), SfuError> {
        let tx = self
            .shards
            .get(shard)
            .and_then(|s| s.tx.as_ref())
            .ok_or(SfuError::Stopped)?;
        tx.send(cmd).map_err(|_| SfuError::Stopped)
    }

    /// The shard of a member's peer connections: always the same one, so a new offer replaces
    /// the member's old peer there.
    fn shard_of(&self, room: &RoomId, uid: &Uid) -> usize {
        bucket((room, uid), self.shards.len())
    }

    /// Connects a member's peer connection: takes its SDP offer, answers.
    pub async fn connect(
        &self,
        room: RoomId,
        uid: Uid,
        offer: SdpOffer,
    ) -> Result<SdpAnswer, SfuError> {
        let (reply, answer) = oneshot::channel();
        let shard = self.shard_of(&room, &uid);
        self.send(
            shard,
            Cmd::Connect {
                room,
                uid,
                offer,
                reply,
            },
        )?;
        answer.await.map_err(|_| SfuError::Stopped)?
    }

    /// Starts recording `room`'s mix; answers with the new recording's listing.
    pub async fn start_recording(&self, room: RoomId) -> recording::Finished {
        let (reply, answer) = oneshot::channel();
        let home = home_shard(&room, self.shards.len());
        self.send(home, Cmd::StartRecording { room, reply })
            .map_err(|_| RecordingError::Stopped)?;
        answer.await.map_err(|_| RecordingError::Stopped)?
    }

    /// Stops recording `room`; answers once the file is complete, with its final listing.
    pub async fn stop_recording(&self, room: RoomId) -> recording::Finished {
        let (reply, answer) = oneshot::channel();
        let home = home_shard(&room, self.shards.len());
        self.send(home, Cmd::StopRecording { room, reply })
            .map_err(|_| RecordingError::Stopped)?;
        let thread = answer.await.map_err(|_| RecordingError::Stopped)??;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(|_| RecordingError::Stopped)?
            .map_err(|_| RecordingError::Io(std::io::Error::other("the recorder panicked")))?
    }

    /// Stops every recording (files finalised) and the media threads; later calls fail with
    /// [`SfuError::Stopped`].
    pub async fn shutdown(&self) {
        for i in 0..self.shards.len() {
            let (reply, done) = oneshot::channel();
            if self.send(i, Cmd::Shutdown(reply)).is_ok() {
                let _ = done.await;
            }
        }
    }

    /// The counters of each shard.
    pub async fn shard_stats(&self) -> Result<Vec<SfuStats>, SfuError> {
        let mut replies = Vec::with_capacity(self.shards.len());
        for i in 0..self.shards.len() {
            let (reply, stats) = oneshot::channel();
            self.send(i, Cmd::Stats(reply))?;
            replies.push(stats);
        }
        let mut out = Vec::with_capacity(replies.len());
        for r in replies {
            out.push(r.await.map_err(|_| SfuError::Stopped)?);
        }
        Ok(out)
    }

    /// The SFU's counters, summed over its shards.
    pub async fn stats(&self) -> Result<SfuStats, SfuError> {
        let mut total = SfuStats::default();
        for s in self.shard_stats().await? {
            total.peers += s.peers;
            total.connected += s.connected;
            total.forwarded_in += s.forwarded_in;
            total.forwarded_out += s.forwarded_out;
            total.relayed_in += s.relayed_in;
            total.dropped += s.dropped;
            total.bombings += s.bombings;
            total.timer_fires += s.timer_fires;
            total.datagrams_in += s.datagrams_in;
            total.opus_rtp_in += s.opus_rtp_in;
            total.datagrams_out += s.datagrams_out;
        }
        Ok(total)
    }
}

impl Drop for Sfu {
    fn drop(&mut self) {
        // Closing the channels ends the loops within IDLE_WAKE.
        for s in &mut self.shards {
            s.tx.take();
        }
        for s in &mut self.shards {
            if let Some(t) = s.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The shard that does a room's once-per-room work: volume indication and recording.
fn home_shard(room: &RoomId, shards: usize) -> usize {
    bucket(room, shards)
}

/// An authorised packet handed from the publisher's shard to the others, which forward it to
/// their own subscribers. The publisher's shard judged it; nobody judges it again.
struct Relay {
    room: RoomId,
    from: PeerId,
    uid: Uid,
    slot: usize,
    frame: Forwarded,
}

/// One authorised packet as the driver forwards it. The SFU's peers run in str0m's RTP mode: the
/// payload is shared by every copy (no allocation per copy), each copy gets the subscriber's own
/// payload type, SSRC and sequence number; the publisher's RTP time, marker and audio level go
/// through unchanged (as str0m's frame API did).
#[derive(Clone)]
struct Forwarded {
    payload: Arc<[u8]>,
    /// The publisher's RTP timestamp (48 kHz).
    rtp_time: u32,
    /// The same, extended (for the recorder).
    time: MediaTime,
    marker: bool,
    audio_level: Option<i8>,
    voice_activity: Option<bool>,
    /// When it reached the SFU (the wall clock of the copies' sender reports).
    arrival: Instant,
}

/// Another shard, as one shard sees it.
struct Sibling {
    tx: std_mpsc::Sender<Relay>,
    /// Its socket: a one-byte datagram from us wakes it to take its relays.
    addr: SocketAddr,
}

/// A driver's place among the shards.
struct Shard {
    index: usize,
    count: usize,
    siblings: Vec<Sibling>,
    relays: std_mpsc::Receiver<Relay>,
}

/// The room's own anti-bombing setting wins over the server's default.
fn room_bombing_policy(
    server: &BombingPolicy,
    settings: &onmic_room::RoomSettings,
) -> BombingPolicy {
    let kick_and_ban = match settings.bombing {
        None => server.kick_and_ban,
        Some(BombingAction::ReportOnly) => None,
        Some(BombingAction::KickAndBan { ban }) => Some(ban),
    };
    BombingPolicy {
        kick_and_ban,
        ..server.clone()
    }
}

struct Peer {
    room: RoomId,
    rtc: Rtc,
    /// The client's microphone m-line (we receive on it).
    publish_mid: Option<Mid>,
    /// Our send m-lines, one per slot, in offer order.
    slots: Vec<Mid>,
    /// The next RTP sequence number of each slot's outgoing stream.
    slot_seq: Vec<u64>,
    /// The payload type this peer negotiated for Opus (media in and out).
    opus_pt: Option<Pt>,
    timeout: Instant,
    /// Polled only up to a forwarded packet since its last full poll: it may hold more output
    /// and its `timeout` may be stale until the next drain.
    undrained: bool,
}

struct RoomMedia {
    router: Router,
    events: broadcast::Receiver<Frame>,
    /// Slot (seat index) of each member allowed to publish.
    slot_of: HashMap<Uid, usize>,
    /// Which volume reports are pushed to the room's members.
    volume_gate: VolumeGate,
    /// When another shard last relayed a packet of this room (a room may have no peer here).
    last_relay: Option<Instant>,
}

/// A room being recorded: the recorder and the room's events (to stop on dismiss).
struct ActiveRecording {
    recording: Recording,
    events: broadcast::Receiver<Frame>,
}

struct Driver {
    hub: Arc<Hub>,
    recordings: HashMap<RoomId, ActiveRecording>,
    /// Stopped recordings still finishing their files.
    finishing: Vec<JoinHandle<recording::Finished>>,
    socket: UdpSocket,
    addr: SocketAddr,
    config: SfuConfig,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    peers: HashMap<PeerId, Peer>,
    rooms: HashMap<RoomId, RoomMedia>,
    by_source: HashMap<SocketAddr, PeerId>,
    /// Peer timeouts, earliest first; entries whose time no longer matches the peer are stale.
    timers: BinaryHeap<Reverse<(Instant, PeerId)>>,
    next_reap: Instant,
    next_peer: u64,
    stats: SfuStats,
    shard: Shard,
    /// Datagrams str0m produced since the last [`Driver::flush`]: a fan-out goes to the kernel in
    /// `sendmmsg` batches instead of one `sendto` per copy.
    outbox: Outbox,
    /// The subscribers of the packet being fanned out (reused: no allocation per packet).
    fan_targets: Vec<PeerId>,
    /// Peers polled only up to a forwarded packet, to be polled fully at `next_drain`.
    undrained: Vec<PeerId>,
    next_drain: Instant,
}

/// Datagrams waiting to be sent, and the reused `sendmmsg` headers.
struct Outbox {
    datagrams: Vec<(SocketAddr, DatagramSend)>,
    batch: SendBatch,
}

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            datagrams: Vec::with_capacity(MAX_BATCH),
            batch: SendBatch::new(),
        }
    }

    /// Sends every queued datagram with as few `sendmmsg` calls as the batch size allows.
    /// Returns how many the kernel took. A datagram the kernel refuses is dropped (as a failed
    /// `sendto` was), the rest are still sent.
    fn flush(&mut self, socket: &UdpSocket) -> u64 {
        let mut sent = 0u64;
        let mut start = 0;
        while start < self.datagrams.len() {
            match self.batch.send(socket, &self.datagrams[start..]) {
                Ok(n) if n > 0 => {
                    sent += n as u64;
                    start += n;
                }
                Ok(_) => start += 1,
                Err(e) => {
                    // ICMP errors from a vanished peer surface on Linux; skip that datagram.
                    tracing::debug!(%e, "media socket send");
                    start += 1;
                }
            }
        }
        self.datagrams.clear();
        sent
    }
}

impl Driver {
    fn new(
        hub: Arc<Hub>,
        socket: UdpSocket,
        addr: SocketAddr,
        config: SfuConfig,
        shard: Shard,
    ) -> Driver {
        Driver {
            hub,
            recordings: HashMap::new(),
            finishing: Vec::new(),
            socket,
            addr,
            config,
            crypto: Arc::new(str0m::crypto::from_feature_flags()),
            peers: HashMap::new(),
            rooms: HashMap::new(),
            by_source: HashMap::new(),
            timers: BinaryHeap::new(),
            next_reap: Instant::now(),
            // Peer ids are unique across shards: shard i hands out i+1, i+1+n, ...
            next_peer: shard.index as u64 + 1,
            stats: SfuStats::default(),
            shard,
            outbox: Outbox::new(),
            fan_targets: Vec::new(),
            undrained: Vec::new(),
            next_drain: Instant::now(),
        }
    }

    fn run(mut self, rx: std_mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            loop {
                match rx.try_recv() {
                    Ok(Cmd::Shutdown(reply)) => {
                        self.stop_all_recordings();
                        let _ = reply.send(());
                        return;
                    }
                    Ok(cmd) => self.command(cmd),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                    Err(std_mpsc::TryRecvError::Disconnected) => {
                        self.stop_all_recordings();
                        return;
                    }
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
                // Forget the fired time so that `drive` re-arms even an unchanged timeout.
                p.timeout = now + Duration::from_secs(86_400);
                self.stats.timer_fires += 1;
                let _ = p.rtc.handle_input(Input::Timeout(now));
                self.drive(id);
            }
            if now >= self.next_drain {
                self.next_drain = now + DRAIN_EVERY;
                self.drain_all();
            }
            self.flush();
            self.push_volumes(now);
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
                    // A sibling's doorbell: it queued relays for us.
                    self.take_relays();
                    self.flush();
                }
                Ok((n, source)) => {
                    self.stats.datagrams_in += 1;
                    if n > 12 && (128..192).contains(&buf[0]) && buf[1] & 0x7f == super::OPUS_PT {
                        self.stats.opus_rtp_in += 1;
                    }
                    self.datagram(&buf[..n], source);
                    self.flush();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => {
                    // ICMP errors from a vanished peer surface here on Linux; keep serving.
                    tracing::debug!(%e, "media socket read");
                }
            }
            if Instant::now() >= self.next_reap {
                self.next_reap = Instant::now() + Duration::from_millis(100);
                // Room events also take effect when nobody speaks (a kicked listener's peer is
                // closed within 100 ms, not at the room's next packet).
                let rooms: Vec<RoomId> = self.rooms.keys().cloned().collect();
                for room in rooms {
                    self.apply_room_events(&room);
                }
                self.reap();
                self.check_recordings();
            }
        }
    }

    /// Hands the queued datagrams to the kernel.
    fn flush(&mut self) {
        self.stats.datagrams_out += self.outbox.flush(&self.socket);
    }

    /// Volume indication: each room's levels every interval, to its members over the WebSocket.
    fn push_volumes(&mut self, now: Instant) {
        for (room, media) in &mut self.rooms {
            if home_shard(room, self.shard.count) != self.shard.index {
                continue; // the room's home shard reports every publisher's level
            }
            let Some(reports) = media.router.poll_volumes(now) else {
                continue;
            };
            if let Some(reports) = media.volume_gate.filter(reports) {
                let speakers = reports
                    .into_iter()
                    .map(|r| SpeakerVolume {
                        uid: r.uid,
                        volume: r.volume,
                        speaking: r.speaking,
                    })
                    .collect();
                let _ = self.hub.push_volumes(room, speakers);
            }
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Connect {
                room,
                uid,
                offer,
                reply,
            } => {
                let _ = reply.send(self.connect(room, uid, offer));
            }
            Cmd::Stats(reply) => {
                self.stats.peers = self.peers.len();
                self.stats.connected = self.peers.values().filter(|p| p.rtc.is_connected()).count();
                let _ = reply.send(self.stats);
            }
            Cmd::StartRecording { room, reply } => self.start_recording(room, reply),
            Cmd::StopRecording { room, reply } => {
                let stopped = match self.recordings.remove(&room) {
                    Some(active) if !active.recording.is_finished() => {
                        Ok(active.recording.stop("request"))
                    }
                    Some(active) => {
                        self.finishing.push(active.recording.stop("request"));
                        Err(RecordingError::NotRecording)
                    }
                    None => Err(RecordingError::NotRecording),
                };
                let _ = reply.send(stopped);
            }
            Cmd::Shutdown(reply) => {
                self.stop_all_recordings();
                let _ = reply.send(());
            }
        }
    }

    fn start_recording(&mut self, room: RoomId, reply: oneshot::Sender<recording::Finished>) {
        let snapshot = match self.hub.snapshot(&room) {
            Ok(s) => s,
            Err(_) => {
                let _ = reply.send(Err(RecordingError::NoSuchRoom));
                return;
            }
        };
        if snapshot.dismissed {
            let _ = reply.send(Err(RecordingError::Dismissed));
            return;
        }
        if let Some(active) = self.recordings.get(&room) {
            if !active.recording.is_finished() {
                let _ = reply.send(Err(RecordingError::AlreadyRecording));
                return;
            }
            // It failed on its own; make room for a new one.
            if let Some(old) = self.recordings.remove(&room) {
                self.finishing.push(old.recording.stop("failed"));
            }
        }
        let Ok(events) = self.hub.subscribe(&room) else {
            let _ = reply.send(Err(RecordingError::NoSuchRoom));
            return;
        };
        let dir = self.hub.config().data_dir.join("recordings");
        // The recorder answers `reply` itself once its file exists.
        match Recording::start(self.hub.clone(), room.clone(), dir, reply) {
            Ok(recording) => {
                self.recordings
                    .insert(room, ActiveRecording { recording, events });
            }
            Err(e) => tracing::error!(%e, "cannot start a recorder thread"),
        }
    }

    /// Stops recordings of dismissed rooms and collects finished recorder threads.
    fn check_recordings(&mut self) {
        let mut dismissed = Vec::new();
        for (room, active) in &mut self.recordings {
            loop {
                match active.events.try_recv() {
                    Ok(frame) if matches!(frame.event.kind, EventKind::Dismissed) => {
                        dismissed.push(room.clone());
                        break;
                    }
                    Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                    Err(broadcast::error::TryRecvError::Closed) => {
                        dismissed.push(room.clone());
                        break;
                    }
                    Err(broadcast::error::TryRecvError::Empty) => break,
                }
            }
        }
        for room in dismissed {
            if let Some(active) = self.recordings.remove(&room) {
                self.finishing.push(active.recording.stop("dismissed"));
            }
        }
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.finishing)
            .into_iter()
            .partition(|t| t.is_finished());
        self.finishing = running;
        for t in done {
            let _ = t.join();
        }
    }

    /// Stops every recording and waits for their files to be complete.
    fn stop_all_recordings(&mut self) {
        for (_, active) in self.recordings.drain() {
            self.finishing.push(active.recording.stop("shutdown"));
        }
        for t in self.finishing.drain(..) {
            let _ = t.join();
        }
    }

    fn connect(&mut self, room: RoomId, uid: Uid, offer: SdpOffer) -> Result<SdpAnswer, SfuError> {
        // Events committed before this offer (a `member_left` of this uid's previous session,
        // say) must act on the old peers now, not on the new one at the next packet.
        self.apply_room_events(&room);
        let snapshot = self.hub.snapshot(&room).map_err(|_| SfuError::NoSuchRoom)?;
        if !snapshot.members.contains_key(&uid) {
            return Err(SfuError::NotMember);
        }
        let now = Instant::now();
        let mut rtc = super::opus_rtc_config()
            .set_crypto_provider(self.crypto.clone())
            .set_send_buffer_audio(AUDIO_SEND_BUFFER)
            // RTP in, RTP out: no depacketiser and no payloader per copy (see `Forwarded`).
            .set_rtp_mode(true)
            .build(now);
        let candidate = Candidate::host(self.addr, "udp")
            .map_err(|e| SfuError::BadOffer(format!("host candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| SfuError::BadOffer(e.to_string()))?;
        let opus_pt = rtc
            .codec_config()
            .params()
            .iter()
            .find(|p| p.spec().codec == Codec::Opus)
            .map(|p| p.pt());
        let id = PeerId(self.next_peer);
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
        self.peers.insert(
            id,
            Peer {
                room: room.clone(),
                rtc,
                publish_mid: None,
                slots: Vec::new(),
                slot_seq: Vec::new(),
                opus_pt,
                timeout: now,
                undrained: false,
            },
        );
        self.timers.push(Reverse((now, id)));
        self.refresh_room(&room);
        Ok(answer)
    }

    /// The room's media state, created (subscribed to the room's events) if this shard has none.
    fn room_media(
        &mut self,
        room: &RoomId,
        settings: Option<&onmic_room::RoomSettings>,
    ) -> Option<&mut RoomMedia> {
        match self.rooms.entry(room.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut()),
            std::collections::hash_map::Entry::Vacant(v) => {
                let events = self.hub.subscribe(room).ok()?;
                let policy = match settings {
                    Some(settings) => room_bombing_policy(&self.config.bombing, settings),
                    None => {
                        let snapshot = self.hub.snapshot(room).ok()?;
                        room_bombing_policy(&self.config.bombing, &snapshot.settings)
                    }
                };
                Some(v.insert(RoomMedia {
                    router: Router::new(policy, self.config.volume_interval),
                    events,
                    slot_of: HashMap::new(),
                    volume_gate: VolumeGate::default(),
                    last_relay: None,
                }))
            }
        }
    }

    /// Asks the hub again who may publish in `room` and on which slot.
    fn refresh_room(&mut self, room: &RoomId) {
        let Some(media) = self.rooms.get_mut(room) else {
            return;
        };
        let Ok(snapshot) = self.hub.snapshot(room) else {
            return;
        };
        let now = Instant::now();
        media.slot_of.clear();
        for uid in media.router.uids() {
            // Only a seated member may publish; ask the room's own rule about those alone.
            let seat = snapshot.seat_of(&uid);
            let allowed = seat.is_some() && self.hub.may_publish(room, &uid);
            if allowed && let Some(seat) = seat {
                media.slot_of.insert(uid.clone(), usize::from(seat.index.0));
            }
            media.router.set_authorized(now, &uid, allowed);
        }
        // Levels relayed by other shards stop counting the moment their publisher may not
        // publish (as a local publisher's meter is reset).
        for uid in media.router.remote_uids() {
            let seated = snapshot.seat_of(&uid).is_some();
            if !(seated && self.hub.may_publish(room, &uid)) {
                media.router.forget_remote_level(&uid);
            }
        }
    }

    /// Applies the room events committed so far: re-checks authorisation, drops peers of members
    /// who left.
    fn apply_room_events(&mut self, room: &RoomId) {
        let mut refresh = false;
        let mut gone: Vec<Uid> = Vec::new();
        let mut dismissed = false;
        if let Some(media) = self.rooms.get_mut(room) {
            loop {
                match media.events.try_recv() {
                    Ok(frame) => match &frame.event.kind {
                        EventKind::SeatChanged { .. }
                        | EventKind::RoleChanged { .. }
                        | EventKind::FloorGranted { .. }
                        | EventKind::FloorRevoked { .. } => refresh = true,
                        EventKind::MemberLeft { uid, .. } => {
                            gone.push(uid.clone());
                            refresh = true;
                        }
                        EventKind::Dismissed => dismissed = true,
                        _ => {}
                    },
                    Err(broadcast::error::TryRecvError::Lagged(_)) => refresh = true,
                    Err(_) => break,
                }
            }
        }
        if dismissed {
            let all: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| &p.room == room)
                .map(|(id, _)| *id)
                .collect();
            for p in all {
                self.remove_peer(p);
            }
            return;
        }
        for uid in gone {
            let ids: Vec<PeerId> = self
                .rooms
                .get(room)
                .map(|m| m.router.peers_of(&uid).collect())
                .unwrap_or_default();
            for p in ids {
                self.remove_peer(p);
            }
        }
        if refresh {
            self.refresh_room(room);
        }
    }

    fn remove_peer(&mut self, id: PeerId) {
        if let Some(mut peer) = self.peers.remove(&id) {
            peer.rtc.disconnect();
            if let Some(media) = self.rooms.get_mut(&peer.room) {
                media.router.remove_peer(id);
                if media.router.peer_count() == 0 {
                    self.rooms.remove(&peer.room);
                }
            }
            self.by_source.retain(|_, p| *p != id);
        }
    }

    fn reap(&mut self) {
        // Rooms this shard only knew from relays, quiet for a while.
        let now = Instant::now();
        self.rooms.retain(|_, m| {
            m.router.peer_count() > 0
                || m.last_relay
                    .is_some_and(|t| now.saturating_duration_since(t) < RELAY_ROOM_IDLE)
        });
        let dead: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.rtc.is_alive())
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.remove_peer(id);
        }
    }

    fn datagram(&mut self, data: &[u8], source: SocketAddr) {
        // Garbage (not STUN, DTLS, RTP or RTCP) is dropped here.
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.addr,
                contents,
            },
        );
        let id = match self.by_source.get(&source) {
            Some(id) if self.peers.get(id).is_some_and(|p| p.rtc.accepts(&input)) => *id,
            _ => {
                let Some(id) = self
                    .peers
                    .iter()
                    .find(|(_, p)| p.rtc.accepts(&input))
                    .map(|(id, _)| *id)
                else {
                    return;
                };
                self.by_source.insert(source, id);
                id
            }
        };
        if let Some(p) = self.peers.get_mut(&id)
            && let Err(e) = p.rtc.handle_input(input)
        {
            tracing::debug!(peer = id.0, %e, "peer input failed; disconnecting");
            p.rtc.disconnect();
        }
        self.drive(id);
    }

    /// Polls a peer until it has nothing more to say; forwards the media it received.
    fn drive(&mut self, id: PeerId) {
        self.poll(id, None);
    }

    /// Polls every peer that [`Driver::fan_out`] left with output possibly pending.
    fn drain_all(&mut self) {
        let mut ids = std::mem::take(&mut self.undrained);
        for &id in &ids {
            if self.peers.get(&id).is_some_and(|p| p.undrained) {
                self.drive(id);
            }
        }
        ids.clear();
        // A nested fan-out may have queued more meanwhile; keep both (no allocation when the
        // list was empty, which is the steady state).
        ids.append(&mut self.undrained);
        self.undrained = ids;
    }

    /// Polls a peer and forwards the media it received. With `until_rtp` (the payload type of a
    /// packet just written to it), stops after the first RTP datagram of that type instead of
    /// polling until the peer has nothing more to say: a full poll walks every part of the peer
    /// connection (ICE, DTLS, SCTP, RTCP timers) a second time, which measured as a large share
    /// of a forwarded copy's cost. The peer is then marked undrained and fully polled within
    /// [`DRAIN_EVERY`]. str0m hands out RTCP before RTP, so the loop passes reports on.
    fn poll(&mut self, id: PeerId, until_rtp: Option<u8>) {
        let mut media_in: VecDeque<RtpPacket> = VecDeque::new();
        {
            let Some(peer) = self.peers.get_mut(&id) else {
                return;
            };
            loop {
                if !peer.rtc.is_alive() {
                    break;
                }
                match peer.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        peer.undrained = false;
                        if peer.timeout != t {
                            peer.timeout = t;
                            self.timers.push(Reverse((t, id)));
                        }
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        let forwarded = until_rtp.is_some_and(|pt| is_rtp_of(&t.contents, pt));
                        self.outbox.datagrams.push((t.destination, t.contents));
                        if self.outbox.datagrams.len() >= MAX_BATCH {
                            self.stats.datagrams_out += self.outbox.flush(&self.socket);
                        }
                        if forwarded {
                            if !peer.undrained {
                                peer.undrained = true;
                                self.undrained.push(id);
                            }
                            break;
                        }
                    }
                    Ok(Output::Event(e)) => match e {
                        Event::MediaAdded(m) if m.kind == MediaKind::Audio => match m.direction {
                            Direction::RecvOnly | Direction::SendRecv
                                if peer.publish_mid.is_none() =>
                            {
                                peer.publish_mid = Some(m.mid)
                            }
                            Direction::SendOnly | Direction::SendRecv => {
                                peer.slots.push(m.mid);
                                peer.slot_seq.push(1);
                            }
                            _ => {}
                        },
                        Event::RtpPacket(p) => media_in.push_back(p),
                        Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                            // Kept: ICE may recover, or the client restarts ICE. The presence
                            // timeout of the room decides when the member is gone.
                        }
                        _ => {}
                    },
                    Err(e) => {
                        tracing::debug!(peer = id.0, %e, "peer failed; disconnecting");
                        peer.rtc.disconnect();
                        break;
                    }
                }
            }
        }
        while let Some(d) = media_in.pop_front() {
            self.media(id, d);
        }
    }

    fn media(&mut self, from: PeerId, packet: RtpPacket) {
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        // Only Opus on the peer's own microphone m-line.
        let mid = peer
            .rtc
            .direct_api()
            .stream_rx(&packet.header.ssrc)
            .map(|s| s.mid());
        if mid.is_none()
            || mid != peer.publish_mid
            || Some(packet.header.payload_type) != peer.opus_pt
        {
            self.stats.dropped += 1;
            return;
        }
        let room = peer.room.clone();
        // Every committed seat/mute/kick takes effect before this packet is judged.
        self.apply_room_events(&room);
        let Some(media) = self.rooms.get_mut(&room) else {
            return;
        };
        let now = Instant::now();
        let level = packet.header.ext_vals.audio_level.map(|l| l.unsigned_abs());
        let decision = media.router.handle_rtp(now, from, StreamId(from.0), level);
        match decision {
            Decision::Forward => {}
            Decision::Drop(DropReason::Bombing(b)) => {
                self.stats.dropped += 1;
                self.stats.bombings += 1;
                tracing::warn!(room = %room, uid = %b.uid.as_str(), "bombing: audio without an unmuted seat");
                if let Err(e) = self.hub.report_bombing(&room, &b.uid, &b.detail) {
                    tracing::error!(%e, "reporting bombing failed");
                }
                if let Some(ban) = b.kick_and_ban {
                    let kick = Action::Kick {
                        uid: b.uid.clone(),
                        ban,
                    };
                    if let Err(e) = self.hub.execute(&room, Command::system(kick)) {
                        tracing::warn!(%e, "kicking a bomber failed");
                    }
                    self.apply_room_events(&room);
                }
                return;
            }
            Decision::Drop(_) => {
                self.stats.dropped += 1;
                return;
            }
        }
        let Some(media) = self.rooms.get(&room) else {
            return;
        };
        let Some(uid) = media.router.uid_of(from) else {
            return;
        };
        let Some(&slot) = media.slot_of.get(uid) else {
            self.stats.dropped += 1;
            return;
        };
        let uid = uid.clone();
        self.stats.forwarded_in += 1;
        let frame = Forwarded {
            rtp_time: packet.header.timestamp,
            time: packet.time,
            marker: packet.header.marker,
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            arrival: packet.timestamp,
            payload: packet.payload,
        };
        for sibling in &self.shard.siblings {
            let relay = Relay {
                room: room.clone(),
                from,
                uid: uid.clone(),
                slot,
                frame: frame.clone(),
            };
            if sibling.tx.send(relay).is_ok() {
                self.outbox
                    .datagrams
                    .push((sibling.addr, DatagramSend::from(vec![0u8])));
            }
        }
        self.fan_out(&room, from, slot, &frame, now);
    }

    /// Takes the packets other shards relayed and forwards them to this shard's subscribers.
    fn take_relays(&mut self) {
        while let Ok(relay) = self.shard.relays.try_recv() {
            self.stats.relayed_in += 1;
            let now = Instant::now();
            if home_shard(&relay.room, self.shard.count) == self.shard.index {
                // This shard reports the room's volumes, the relayed publisher's too.
                self.apply_room_events(&relay.room);
                if let Some(media) = self.room_media(&relay.room, None) {
                    media.last_relay = Some(now);
                    if let Some(level) = relay.frame.audio_level {
                        media
                            .router
                            .observe_remote_level(&relay.uid, level.unsigned_abs());
                    }
                }
            }
            self.fan_out(&relay.room, relay.from, relay.slot, &relay.frame, now);
        }
    }

    /// Writes one authorised packet to this shard's subscribers of `room` on `slot`, and offers
    /// it to the room's recording if this shard runs it.
    fn fan_out(
        &mut self,
        room: &RoomId,
        from: PeerId,
        slot: usize,
        data: &Forwarded,
        now: Instant,
    ) {
        // Recording tap: a copy for the room's recorder, never blocking (see `recording`).
        if let Some(active) = self.recordings.get(room) {
            let ts = data.time.rebase(Frequency::FORTY_EIGHT_KHZ).numer();
            if !active.recording.offer(from.0, ts, &data.payload)
                && let Some(gone) = self.recordings.remove(room)
            {
                self.finishing.push(gone.recording.stop("failed"));
            }
        }
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
            let Some(&mid) = peer.slots.get(slot) else {
                continue;
            };
            if !peer.rtc.is_connected() {
                continue;
            }
            let (Some(pt), Some(seq)) = (peer.opus_pt, peer.slot_seq.get_mut(slot)) else {
                continue;
            };
            let mut api = peer.rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            let ext_vals = ExtensionValues {
                audio_level: data.audio_level,
                voice_activity: data.voice_activity,
                ..ExtensionValues::default()
            };
            stream.write_rtp(
                RtpWrite::new(
                    pt,
                    SeqNo::from(*seq),
                    data.rtp_time,
                    data.arrival,
                    data.payload.clone(),
                )
                .marker(data.marker)
                .ext_vals(ext_vals),
            );
            *seq += 1;
            self.stats.forwarded_out += 1;
            // str0m sends queued media when time advances; without this the copy would wait
            // for the subscriber's next timer (measured in benches/sfu_stacks.rs).
            let _ = peer.rtc.handle_input(Input::Timeout(now));
            // A subscriber that also publishes may fan out from here: that nested fan-out finds
            // the buffer taken and uses its own.
            self.poll(to, Some(*pt));
        }
        self.fan_targets = targets;
    }
}

#[cfg(test)]
mod tests {
    use super::is_rtp_of;

    fn datagram(first: u8, second: u8) -> Vec<u8> {
        let mut d = vec![0u8; 40];
        d[0] = first;
        d[1] = second;
        d
    }

    #[test]
    fn a_forwarded_opus_packet_is_told_from_rtcp_stun_and_dtls() {
        assert!(is_rtp_of(&datagram(0x80, 111), 111));
        assert!(
            is_rtp_of(&datagram(0x90, 0x80 | 111), 111),
            "marker, extension"
        );
        assert!(!is_rtp_of(&datagram(0x80, 96), 111), "another payload type");
        // RTCP sender/receiver reports: 200 & 0x7f = 72, so a payload type of 72 must not match.
        assert!(!is_rtp_of(&datagram(0x80, 200), 72));
        assert!(!is_rtp_of(&datagram(0x81, 201), 73));
        assert!(!is_rtp_of(&datagram(0x00, 0x01), 1), "STUN");
        assert!(!is_rtp_of(&datagram(22, 254), 126), "DTLS");
        assert!(
            !is_rtp_of(&[0x80, 111, 0, 1], 111),
            "shorter than an RTP header"
        );
    }
}
