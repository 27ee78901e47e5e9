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
//! room's home shard (`home_shard`) reports volumes and runs the recording and CDN push taps.
//!
//! Hot path, per forwarded copy: no allocation, lock or log (the payload is one shared
//! `Arc<[u8]>`; the patched str0m's `Rtc::send_rtp_now` writes and encrypts the copy at once
//! into a buffer recycled from an earlier `sendmmsg` batch, see `Outbox`). Per forwarded packet:
//! the target list, and per other shard one relay message (room and uid strings) and its
//! doorbell. Copies go to the kernel with `sendmmsg` (see `sendmmsg.rs`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use onmic_room::protocol::SpeakerVolume;
use onmic_room::{EventKind, RoomId, Uid};
use rustc_hash::FxHashMap;
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::format::Codec;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{DatagramSend, Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::sync::{broadcast, oneshot};

use super::level::VolumeGate;
use super::room_sync::{RoomChanges, act_on_bombing, open_room, refresh_authorisation};
use super::router::{BombingPolicy, Decision, DropReason, PeerId, Router, StreamId};
use super::sendmmsg::{MAX_BATCH, SendBatch};
use super::stamped::{SHED_AFTER, StampedRecv};
use crate::hub::{Frame, Hub};
use crate::recording::{self, Recording, RecordingError};

mod forward;
mod recordings;
mod shard;

use forward::DRAIN_EVERY;

/// The rtc 0.21 driver, for the capacity bench only (a child module: it drives the same `Sfu`).
#[cfg(feature = "bench-rtc")]
#[path = "../driver_rtc.rs"]
mod driver_rtc;

/// The Opus payload type the SFU offers (Chromium's choice too).
/// Largest datagram read from the socket.
const MAX_DATAGRAM: usize = 2000;
/// Sent audio packets str0m keeps per stream for resending. Audio is not resent (no NACK/RTX;
/// Opus in-band FEC covers loss, and the driver writes copies as not nackable, so str0m never
/// caches one): str0m's default of 50 cost ~60 KiB per listener. 1, not 0: the patched str0m
/// allocates this many slots per send stream up front (`vendor/str0m/ONMIC-PATCH.md`), each
/// a few hundred bytes, for every slot carrying audio to every listener.
const AUDIO_SEND_BUFFER: usize = 1;
/// How long str0m would keep a sent packet for resending (its default; nothing is resent).
const AUDIO_RESEND_WINDOW: Duration = Duration::from_secs(3);
/// Receive and send buffer asked for on the media socket.
const SOCKET_BUFFER: usize = 4 << 20;
/// A room whose packets only came relayed from other shards is forgotten after this long without
/// one.
const RELAY_ROOM_IDLE: Duration = Duration::from_secs(10);
/// The loop wakes at least this often to look at commands.
const IDLE_WAKE: Duration = Duration::from_millis(20);
/// One turn of a shard's loop spends at most about this long forwarding other shards' relays
/// before it reads its socket, fires its timers and answers commands again (and as long reading
/// its socket). Without the bound a shard whose relays came faster than it could fan them out
/// never left the relay queue: its own peers' STUN, DTLS and audio waited in the socket, its
/// timers and commands starved (issue 15's livelock at 1,500 listeners).
const TURN_BUDGET: Duration = Duration::from_millis(20);
/// Most datagrams read from the socket in one turn of the loop.
const READ_BATCH: usize = 256;
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
    /// Authorised packets not forwarded because they waited longer than `SHED_AFTER` (500 ms) in
    /// the shard's socket or relay queue: the shard had fallen behind.
    pub shed: u64,
    /// Slot send streams removed after carrying no audio for `SLOT_IDLE` (3 s; a seat left or
    /// muted). A slot's stream exists in str0m only while audio flows on it.
    pub slots_parked: u64,
    /// When the shard read these counters (the latest shard's, for a sum). A shard that answers
    /// late was busy: rates over a window use each shard's own span between two readings.
    pub read_at: Option<Instant>,
}

enum Cmd {
    /// `relayed`: a listener of a room held by another node (the origin), placed here by the
    /// origin (`crate::cluster::relay`): no membership check (the origin vouched), never
    /// publishes.
    Connect {
        room: RoomId,
        uid: Uid,
        offer: SdpOffer,
        relayed: bool,
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
    /// Installs (or, with `None`, removes) the room's CDN push tap (`crate::push`).
    SetPushTap {
        room: RoomId,
        tap: Option<crate::push::PushTap>,
    },
    Shutdown(oneshot::Sender<()>),
    /// Test support: the shard stops for this long, as on an overloaded machine.
    Stall(Duration),
    /// Test support: each relayed packet costs the shard this much more, as a fan-out to
    /// thousands of listeners does.
    SlowRelays(Duration),
    /// Closes the peers of a relayed room: every one, or `uid`'s.
    CloseRelayed {
        room: RoomId,
        uid: Option<Uid>,
    },
    /// How many peers of `room` this shard holds.
    RoomPeers {
        room: RoomId,
        reply: oneshot::Sender<usize>,
    },
    /// Installs (or, with `None`, removes) the room's relay-link tap on its home shard: every
    /// packet judged "forward" is offered to the room's relays (`crate::cluster::relay`).
    SetRelayTap {
        room: RoomId,
        tap: Option<crate::cluster::relay::RelayTap>,
    },
}

/// A running SFU; dropping it stops its threads.
#[derive(Debug)]
pub struct Sfu {
    shards: Vec<ShardHandle>,
    /// Each shard's relay channel, for audio fed from a relay link (`Sfu::feed`); empty on the
    /// bench-only rtc driver.
    feeds: Vec<std_mpsc::Sender<Relay>>,
    /// The socket that rings a shard's doorbell after a fed packet (its address is known to
    /// every shard as a doorbell's source).
    bell: Option<UdpSocket>,
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
        #[cfg(feature = "bench-rtc")]
        if super::stack() == driver_rtc::STACK {
            return driver_rtc::start(hub, config);
        }
        let (mut sfu, feeds) = start_shards(
            config.shards,
            config.udp,
            "str0m 0.25",
            move |start: ShardStart<Relay>| {
                Driver::new(
                    hub.clone(),
                    start.socket,
                    start.addr,
                    config.clone(),
                    start.shard,
                )
                .run(start.commands)
            },
        )?;
        sfu.feeds = feeds;
        Ok(sfu)
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
        self.connect_peer(room, uid, offer, false).await
    }

    async fn connect_peer(
        &self,
        room: RoomId,
        uid: Uid,
        offer: SdpOffer,
        relayed: bool,
    ) -> Result<SdpAnswer, SfuError> {
        let (reply, answer) = oneshot::channel();
        let shard = self.shard_of(&room, &uid);
        self.send(
            shard,
            Cmd::Connect {
                room,
                uid,
                offer,
                relayed,
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

    /// Installs the room's CDN push tap on its home shard (`None` removes it). The shard offers
    /// it every forwarded packet of the room without blocking.
    pub fn set_push_tap(
        &self,
        room: RoomId,
        tap: Option<crate::push::PushTap>,
    ) -> Result<(), SfuError> {
        let home = home_shard(&room, self.shards.len());
        self.send(home, Cmd::SetPushTap { room, tap })
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
            total.shed += s.shed;
            total.slots_parked += s.slots_parked;
            total.read_at = total.read_at.max(s.read_at);
        }
        Ok(total)
    }

    /// Test support: stops every shard thread for `pause` (from when each takes the command),
    /// as a machine too busy to run them would. What arrives meanwhile waits in the sockets.
    #[doc(hidden)]
    pub fn stall(&self, pause: Duration) -> Result<(), SfuError> {
        for i in 0..self.shards.len() {
            self.send(i, Cmd::Stall(pause))?;
        }
        Ok(())
    }

    /// Test support: stops one shard thread for `pause`, as a machine that runs the other
    /// shards but not this one would. What arrives meanwhile waits in its socket and relay queue.
    #[doc(hidden)]
    pub fn stall_shard(&self, shard: usize, pause: Duration) -> Result<(), SfuError> {
        self.send(shard, Cmd::Stall(pause))
    }

    /// Test support: from now on each packet relayed to `shard` costs it `cost` more (a sleep),
    /// as a fan-out to thousands of listeners on a slow machine does.
    #[doc(hidden)]
    pub fn slow_relays(&self, shard: usize, cost: Duration) -> Result<(), SfuError> {
        self.send(shard, Cmd::SlowRelays(cost))
    }

    /// Connects a listener of `room`, a room held by another node (the origin), whose packets
    /// come over a relay link ([`Sfu::feed`]). The origin checked the member; this peer never
    /// publishes (what it sends is dropped: a relay forwards nothing local).
    pub async fn connect_relayed(
        &self,
        room: RoomId,
        uid: Uid,
        offer: SdpOffer,
    ) -> Result<SdpAnswer, SfuError> {
        self.connect_peer(room, uid, offer, true).await
    }

    /// Closes the relayed room's peers on every shard (`uid`'s only, when given).
    pub fn close_relayed(&self, room: &RoomId, uid: Option<&Uid>) {
        for i in 0..self.shards.len() {
            let _ = self.send(
                i,
                Cmd::CloseRelayed {
                    room: room.clone(),
                    uid: uid.cloned(),
                },
            );
        }
    }

    /// How many peer connections of `room` the SFU holds (over its shards).
    pub async fn room_peers(&self, room: &RoomId) -> Result<usize, SfuError> {
        let mut replies = Vec::with_capacity(self.shards.len());
        for i in 0..self.shards.len() {
            let (reply, count) = oneshot::channel();
            self.send(
                i,
                Cmd::RoomPeers {
                    room: room.clone(),
                    reply,
                },
            )?;
            replies.push(count);
        }
        let mut total = 0;
        for r in replies {
            total += r.await.map_err(|_| SfuError::Stopped)?;
        }
        Ok(total)
    }

    /// Installs the room's relay-link tap on its home shard (`None` removes it).
    pub fn set_relay_tap(
        &self,
        room: RoomId,
        tap: Option<crate::cluster::relay::RelayTap>,
    ) -> Result<(), SfuError> {
        let home = home_shard(&room, self.shards.len());
        self.send(home, Cmd::SetRelayTap { room, tap })
    }

    /// Hands one packet that a room's origin judged "forward" (received over a relay link) to
    /// every shard, which writes it to its listeners of the room on `slot`. Never blocks.
    pub fn feed(&self, room: &RoomId, packet: crate::cluster::relay::LinkAudio) -> bool {
        let Some(bell) = &self.bell else {
            return false;
        };
        let now = Instant::now();
        let frame = Forwarded {
            rtp_time: packet.rtp_time,
            time: MediaTime::new(u64::from(packet.rtp_time), Frequency::FORTY_EIGHT_KHZ),
            marker: packet.marker,
            audio_level: packet.audio_level,
            voice_activity: None,
            arrival: now,
            payload: packet.payload,
        };
        let mut fed = false;
        for (tx, shard) in self.feeds.iter().zip(&self.shards) {
            let relay = Relay {
                room: room.clone(),
                // Nobody's peer here: every listener of the room subscribes.
                from: FED_PEER,
                uid: packet.uid.clone(),
                slot: usize::from(packet.slot),
                frame: frame.clone(),
                fed: true,
            };
            if tx.send(relay).is_ok() {
                let _ = bell.send_to(&[0u8], shard.addr);
                fed = true;
            }
        }
        fed
    }

    /// Test support: the shard that holds `uid`'s peer connections in `room`.
    #[doc(hidden)]
    pub fn shard_of_member(&self, room: &RoomId, uid: &Uid) -> usize {
        self.shard_of(room, uid)
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
    /// Fed from a relay link (`Sfu::feed`): the origin node judged it, not a shard here.
    fed: bool,
}

/// The publisher of packets fed from a relay link: no peer of this node (peer ids count up
/// from 1, so none reaches it).
pub(super) const FED_PEER: PeerId = PeerId(u64::MAX);

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

/// Another shard, as one shard sees it (`R`: what the driver relays).
struct Sibling<R = Relay> {
    tx: std_mpsc::Sender<R>,
    /// Its socket: a one-byte datagram from us wakes it to take its relays.
    addr: SocketAddr,
}

/// A driver's place among the shards.
struct Shard<R = Relay> {
    index: usize,
    count: usize,
    siblings: Vec<Sibling<R>>,
    relays: std_mpsc::Receiver<R>,
    /// The source address of a doorbell rung by `Sfu::feed`.
    bell: Option<SocketAddr>,
}

/// What a shard's thread is started with.
struct ShardStart<R> {
    socket: UdpSocket,
    addr: SocketAddr,
    shard: Shard<R>,
    commands: std_mpsc::Receiver<Cmd>,
}

/// Binds one socket per shard (`shards`, 0: one per core; shard 0 on `udp`, the others on the
/// same IP and any free port), wires every shard's relay channel to the others and starts the shard threads
/// (`onmic-sfu-<i>`), each running `run`. Shared by the str0m driver and the bench-only rtc one.
fn start_shards<R: Send + 'static>(
    shards: usize,
    udp: SocketAddr,
    stack: &str,
    run: impl Fn(ShardStart<R>) + Clone + Send + 'static,
) -> std::io::Result<(Sfu, Vec<std_mpsc::Sender<R>>)> {
    let n = match shards {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let mut sockets = Vec::with_capacity(n);
    for i in 0..n {
        let bind = if i == 0 {
            udp
        } else {
            SocketAddr::new(udp.ip(), 0)
        };
        let socket = media_socket(bind)?;
        let addr = socket.local_addr()?;
        sockets.push((socket, addr));
    }
    let (relay_txs, relay_rxs): (Vec<_>, Vec<_>) = (0..n).map(|_| std_mpsc::channel::<R>()).unzip();
    let addrs: Vec<SocketAddr> = sockets.iter().map(|(_, a)| *a).collect();
    let bell = UdpSocket::bind(SocketAddr::new(udp.ip(), 0))?;
    let bell_addr = bell.local_addr()?;
    let mut shards = Vec::with_capacity(n);
    for (i, ((socket, addr), relays)) in sockets.into_iter().zip(relay_rxs).enumerate() {
        let siblings = (0..n)
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
            bell: Some(bell_addr),
        };
        let (tx, commands) = std_mpsc::channel();
        let run = run.clone();
        // The driver is built on its own thread: its `sendmmsg` headers are not `Send`.
        let thread = std::thread::Builder::new()
            .name(format!("onmic-sfu-{i}"))
            .spawn(move || {
                run(ShardStart {
                    socket,
                    addr,
                    shard,
                    commands,
                })
            })?;
        shards.push(ShardHandle {
            tx: Some(tx),
            addr,
            thread: Some(thread),
        });
    }
    tracing::info!(addrs = ?addrs, stack, "media (SFU) listening");
    Ok((
        Sfu {
            shards,
            feeds: Vec::new(),
            bell: Some(bell),
        },
        relay_txs,
    ))
}

struct Peer {
    room: RoomId,
    rtc: Rtc,
    /// The client's microphone m-line (we receive on it).
    publish_mid: Option<Mid>,
    /// Our send m-lines, one per slot, in offer order, each with its send stream.
    slots: Vec<SlotTx>,
    /// The payload type this peer negotiated for Opus (media in and out).
    opus_pt: Option<Pt>,
    timeout: Instant,
    /// Polled only up to a forwarded packet since its last full poll: it may hold more output
    /// and its `timeout` may be stale until the next drain.
    undrained: bool,
}

/// One slot of a peer (a send m-line) and its str0m send stream, which exists only while audio
/// flows on the slot. str0m makes a send stream for every send m-line of the SDP, and every
/// `handle_timeout` of the peer walks all of them (send queue snapshots for the pacer, RTCP
/// timing), once per forwarded copy: with one speaker and `seat_count + 1` slots, three of a
/// listener's four streams cost instructions on every copy and carried nothing. The stream is
/// therefore removed when the m-line is added (its SSRC, already announced in the answer's
/// `a=ssrc` line, is kept), declared again with the same SSRC at the slot's first packet, and
/// removed again after [`SLOT_IDLE`] without audio. The sequence numbers are the slot's own and
/// go on across a pause, so the receiver sees one stream with a gap.
struct SlotTx {
    mid: Mid,
    /// The stream's SSRC and RTX SSRC from the SDP (none: str0m made no stream; the slot is
    /// never written).
    ssrc: Option<(Ssrc, Option<Ssrc>)>,
    /// Whether the send stream is declared in str0m now.
    live: bool,
    /// When the slot last carried a packet.
    last_write: Instant,
    /// The next RTP sequence number of the slot's stream.
    seq: u64,
}

/// A slot's send stream is removed after this long without audio (a seat left, a mute); see
/// [`SlotTx`]. Only while its sequence numbers have not wrapped (the rollover counter is 0): a
/// stream declared again with a non-zero rollover counter would make str0m log a warning for
/// every listener, so after ~22 minutes of audio on a slot its stream stays.
pub(super) const SLOT_IDLE: Duration = Duration::from_secs(3);

struct RoomMedia {
    router: Router,
    events: broadcast::Receiver<Frame>,
    /// Slot (seat index) of each member allowed to publish.
    slot_of: HashMap<Uid, usize>,
    /// Which volume reports are pushed to the room's members.
    volume_gate: VolumeGate,
    /// When another shard last relayed a packet of this room (a room may have no peer here).
    last_relay: Option<Instant>,
    /// A room held by another node, whose listeners this node serves as a relay: its audio
    /// comes fed from the relay link, its peers never publish, and it has no events here.
    relayed: bool,
}

/// A room being recorded: the recorder and the room's events (to stop on dismiss).
struct ActiveRecording {
    recording: Recording,
    events: broadcast::Receiver<Frame>,
}

struct Driver {
    hub: Arc<Hub>,
    recordings: HashMap<RoomId, ActiveRecording>,
    /// CDN push taps of this shard's home rooms (see `crate::push`).
    push_taps: HashMap<RoomId, crate::push::PushTap>,
    /// Relay-link taps of this shard's home rooms (see `crate::cluster::relay`).
    relay_taps: HashMap<RoomId, crate::cluster::relay::RelayTap>,
    /// Stopped recordings still finishing their files.
    finishing: Vec<JoinHandle<recording::Finished>>,
    socket: UdpSocket,
    addr: SocketAddr,
    config: SfuConfig,
    crypto: Arc<str0m::crypto::CryptoProvider>,
    /// The shard's DTLS certificate, shared by all its peers (see [`Driver::new`]).
    dtls_cert: Option<str0m::config::DtlsCert>,
    /// Boxed: a `Peer` holds str0m's `Rtc` inline (~10 KiB), and a map of inline peers kept up
    /// to twice that per peer in empty buckets (heaptrack of the capacity bench).
    /// FxHash: the keys are this shard's own ids (no outside input chooses them), and the map is
    /// looked up several times per forwarded copy (SipHash measured ~3 % of the instructions).
    peers: FxHashMap<PeerId, Box<Peer>>,
    rooms: HashMap<RoomId, RoomMedia>,
    /// Which peer a source address belongs to, learned from the first datagram a peer accepted
    /// from it.
    by_source: HashMap<SocketAddr, PeerId>,
    /// Each peer's local ICE username fragment: a STUN request from an address not yet known
    /// names its peer in its USERNAME (`ours:theirs`), so finding the peer is one lookup, not a
    /// walk over every peer of the shard.
    by_ufrag: HashMap<String, PeerId>,
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
    /// Receives with the kernel's arrival stamp.
    recv: StampedRecv,
    /// The datagram being handled waited longer than [`SHED_AFTER`] in the socket: media in it
    /// is judged (bombing is still seen) but not forwarded.
    stale: bool,
    /// Test support ([`Cmd::SlowRelays`]): extra cost of each relayed packet.
    relay_cost: Duration,
    /// Whether the fan-out prefetches the next subscribers' state (see `Driver::fan_out`);
    /// `ONMIC_SFU_PREFETCH=0` turns it off, to measure what it buys.
    prefetch: bool,
}

/// Datagrams waiting to be sent, and the reused `sendmmsg` headers.
struct Outbox {
    datagrams: Vec<(SocketAddr, DatagramSend)>,
    batch: SendBatch,
    /// Buffers of datagrams already sent, for the next copies to be encrypted into
    /// (`Rtc::send_rtp_now`): a forwarded copy then costs no allocation and no free (~600 of
    /// its ~7,000 instructions, callgrind). At most [`MAX_BATCH`] are kept.
    spare: Vec<Vec<u8>>,
}

/// A sent datagram's buffer is kept for reuse if its capacity is within this range (an
/// encrypted Opus copy is ~360 bytes; doorbells are 1 byte, DTLS flights can be large).
const SPARE_CAPACITY: std::ops::RangeInclusive<usize> = 64..=2048;

impl Outbox {
    fn new() -> Outbox {
        Outbox {
            datagrams: Vec::with_capacity(MAX_BATCH),
            batch: SendBatch::new(),
            spare: Vec::with_capacity(MAX_BATCH),
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
        for (_, datagram) in self.datagrams.drain(..) {
            if self.spare.len() >= MAX_BATCH {
                break;
            }
            let buf = Vec::from(datagram);
            if SPARE_CAPACITY.contains(&buf.capacity()) {
                self.spare.push(buf);
            }
        }
        self.datagrams.clear();
        sent
    }
}
