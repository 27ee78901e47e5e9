//! Going live: the Studio joins a room with the room client (`onmic-client`), takes the owner's
//! seat, publishes the audio engine's Opus and plays every seated member through the engine.
//!
//! Threads: the client lives in the async runtime; the engine and its devices live on one
//! `onmic-session` thread (some audio backends want a stream dropped where it was made), which
//! also applies remote streams to the engine and polls the devices. The engine's packets ring is
//! handed to the client's publisher, which drains it every 5 ms.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use onmic_audio::engine::{self, Control, EngineConfig};
use onmic_audio::streams::{EngineDevices, StreamRequest};
use onmic_client::{ClientConfig, ClientEvent, ConnectionState, RemoteChange, RoomClient};
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::error::{AppError, AppErrorKind};

/// What the Studio asks to join.
#[derive(Clone, Debug, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The room id.
    pub room: String,
    /// A room token; `None` in the local room, where the Studio signs its own as the owner.
    pub token: Option<String>,
}

/// One seat as the UI shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SeatView {
    /// Seat index (0 is the owner's).
    pub index: u16,
    /// Who sits there.
    pub uid: Option<String>,
    /// Muted by the host or by its occupant.
    pub muted: bool,
    /// Locked by the host.
    pub locked: bool,
    /// The occupant's loudest level in the last indication, 0–255.
    pub volume: u8,
    /// The occupant is speaking (the seat ripples).
    pub speaking: bool,
}

/// The live session as the UI shows it; streamed to the UI whenever it changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RoomStatus {
    /// The room id.
    pub room: String,
    /// This member's uid.
    pub uid: String,
    /// `connecting`, `connected`, `mediaReconnecting`, `rejoining` or `closed`.
    pub state: String,
    /// Whether the Studio's audio is sent now (on an unmuted seat).
    pub publishing: bool,
    /// The seats.
    pub seats: Vec<SeatView>,
    /// Members in the room.
    pub members: u32,
    /// Opus packets sent so far (saturates at `u32::MAX`, ~2.7 years of audio).
    pub packets_sent: u32,
    /// Packets received from others so far (saturates likewise).
    pub packets_received: u32,
    /// Why the session ended, when `state` is `closed`.
    pub ended: Option<String>,
}

enum SessionCommand {
    Remote(RemoteChange),
    /// The loss the listeners report, for the encoder's FEC.
    ExpectedLoss(u8),
    Stop,
}

/// The last volume indication: who speaks, how loud.
type Volumes = std::collections::HashMap<String, (u8, bool)>;

struct Session {
    client: Arc<tokio::sync::Mutex<Option<RoomClient>>>,
    status: Arc<Mutex<RoomStatus>>,
    commands: mpsc::Sender<SessionCommand>,
    engine_thread: Option<JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Runs at most one live session.
#[derive(Default)]
pub struct RoomSessionService {
    session: tokio::sync::Mutex<Option<Session>>,
}

impl std::fmt::Debug for RoomSessionService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomSessionService").finish_non_exhaustive()
    }
}

/// Where to join and with which token.
pub struct Target {
    /// The server's base URL.
    pub server_url: String,
    /// The room id.
    pub room: String,
    /// The token.
    pub token: String,
}

impl RoomSessionService {
    /// The session's status, if one runs.
    pub async fn status(&self) -> Option<RoomStatus> {
        let session = self.session.lock().await;
        session.as_ref().map(|s| snapshot(&s.status))
    }

    /// Joins `target`, takes the owner's seat if this member owns the room, starts the engine on
    /// `input` (the default input when `None`) and the default output, and publishes.
    /// `on_change` hears every status change.
    pub async fn join(
        &self,
        target: Target,
        input: Option<String>,
        on_change: impl Fn(&RoomStatus) + Send + Sync + 'static,
    ) -> Result<RoomStatus, AppError> {
        self.leave().await;
        let mut session = self.session.lock().await;
        let mut client = RoomClient::connect(ClientConfig::new(
            target.server_url.clone(),
            target.room.clone(),
            target.token,
        ))
        .await
        .map_err(|e| AppError::new(AppErrorKind::Room, e.to_string()))?;
        let is_owner = client.room().owner == client.uid();
        if is_owner && client.room().seat_of(&client.uid()).is_none() {
            client.take_seat(0).await.map_err(|e| {
                AppError::new(
                    AppErrorKind::Room,
                    format!("Joined, but the owner's seat could not be taken: {e}"),
                )
            })?;
        }

        // The engine and its devices, on their own thread.
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (cmd_tx, cmd_rx) = mpsc::channel::<SessionCommand>();
        let engine_thread = std::thread::Builder::new()
            .name("onmic-session".into())
            .spawn(move || run_engine(input, ready_tx, cmd_rx))
            .map_err(|e| AppError::new(AppErrorKind::Internal, format!("no thread: {e}")))?;
        let packets = match ready_rx.recv() {
            Ok(Ok(packets)) => packets,
            Ok(Err(e)) => {
                client.close().await;
                return Err(e);
            }
            Err(_) => {
                client.close().await;
                return Err(AppError::new(
                    AppErrorKind::Internal,
                    "The audio engine stopped while starting.",
                ));
            }
        };
        let publish = client.publisher().spawn_from_engine(packets);

        let status = Arc::new(Mutex::new(RoomStatus {
            room: target.room,
            uid: client.uid().as_str().to_owned(),
            state: "connecting".into(),
            publishing: false,
            seats: Vec::new(),
            members: 0,
            packets_sent: 0,
            packets_received: 0,
            ended: None,
        }));
        let events =
            std::mem::replace(&mut client.events, tokio::sync::mpsc::unbounded_channel().1);
        let mut remotes = std::mem::replace(
            &mut client.remotes,
            tokio::sync::mpsc::unbounded_channel().1,
        );
        refresh(&status, &client, &Volumes::new());
        let client = Arc::new(tokio::sync::Mutex::new(Some(client)));
        let on_change = Arc::new(on_change);

        let remote_task = {
            let cmd_tx = cmd_tx.clone();
            tokio::spawn(async move {
                while let Some(change) = remotes.recv().await {
                    if cmd_tx.send(SessionCommand::Remote(change)).is_err() {
                        return;
                    }
                }
            })
        };
        let event_task = tokio::spawn(watch(
            events,
            cmd_tx.clone(),
            Arc::clone(&client),
            Arc::clone(&status),
            Arc::clone(&on_change),
        ));
        let view = snapshot(&status);
        on_change(&view);
        *session = Some(Session {
            client,
            status,
            commands: cmd_tx,
            engine_thread: Some(engine_thread),
            tasks: vec![publish, remote_task, event_task],
        });
        Ok(view)
    }

    /// Leaves the room (if in one) and stops the engine.
    pub async fn leave(&self) {
        let Some(mut session) = self.session.lock().await.take() else {
            return;
        };
        if let Some(client) = session.client.lock().await.take() {
            client.close().await;
        }
        for task in session.tasks.drain(..) {
            task.abort();
        }
        let _ = session.commands.send(SessionCommand::Stop);
        if let Some(thread) = session.engine_thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn snapshot(status: &Mutex<RoomStatus>) -> RoomStatus {
    status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Copies what the UI shows from the client's view of the room and the last volume indication.
fn refresh(status: &Mutex<RoomStatus>, client: &RoomClient, volumes: &Volumes) {
    let room = client.room();
    let stats = client.stats();
    let mut s = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    s.publishing = client.may_publish();
    s.members = u32::try_from(room.members.len()).unwrap_or(u32::MAX);
    s.seats = room
        .seats
        .iter()
        .map(|seat| {
            let uid = seat.occupant().map(|u| u.as_str().to_owned());
            let (volume, speaking) = uid
                .as_ref()
                .and_then(|u| volumes.get(u))
                .copied()
                .unwrap_or((0, false));
            SeatView {
                index: seat.index.0,
                uid,
                muted: seat.host_muted || seat.self_muted,
                locked: matches!(seat.state, onmic_room::SeatState::Locked),
                volume,
                speaking,
            }
        })
        .collect();
    let count = |n: &std::sync::atomic::AtomicU64| {
        u32::try_from(n.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(u32::MAX)
    };
    s.packets_sent = count(&stats.packets_sent);
    s.packets_received = count(&stats.packets_received);
}

fn state_name(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Connecting => "connecting",
        ConnectionState::Connected => "connected",
        ConnectionState::MediaReconnecting => "mediaReconnecting",
        ConnectionState::Rejoining => "rejoining",
        ConnectionState::Closed => "closed",
    }
}

/// Applies client events to the status and tells the UI; also refreshes the counters once a
/// second while nothing else happens.
async fn watch(
    mut events: tokio::sync::mpsc::UnboundedReceiver<ClientEvent>,
    engine: mpsc::Sender<SessionCommand>,
    client: Arc<tokio::sync::Mutex<Option<RoomClient>>>,
    status: Arc<Mutex<RoomStatus>>,
    on_change: Arc<impl Fn(&RoomStatus) + Send + Sync + 'static>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    let mut volumes = Volumes::new();
    loop {
        let event = tokio::select! {
            e = events.recv() => match e {
                Some(e) => Some(e),
                None => return,
            },
            _ = every.tick() => None,
        };
        {
            let mut s = status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match &event {
                Some(ClientEvent::State(state)) => s.state = state_name(*state).into(),
                Some(ClientEvent::Closed { message, .. }) => {
                    s.state = "closed".into();
                    s.ended = Some(message.clone());
                }
                // Each indication lists everyone heard; whoever is missing went quiet.
                Some(ClientEvent::Volumes(speakers)) => {
                    volumes = speakers
                        .iter()
                        .map(|v| (v.uid.as_str().to_owned(), (v.volume, v.speaking)))
                        .collect();
                }
                Some(ClientEvent::SendLoss(percent)) => {
                    let _ = engine.send(SessionCommand::ExpectedLoss(*percent));
                }
                _ => {}
            }
        }
        if let Some(c) = client.lock().await.as_ref() {
            refresh(&status, c, &volumes);
        }
        let view = snapshot(&status);
        on_change(&view);
    }
}

/// The session thread: owns the engine and the devices.
fn run_engine(
    input: Option<String>,
    ready: std::sync::mpsc::Sender<Result<rtrb::Consumer<onmic_audio::opus::OpusPacket>, AppError>>,
    commands: mpsc::Receiver<SessionCommand>,
) {
    let config = EngineConfig::default();
    let (mut handle, io) = match engine::start(config) {
        Ok(started) => started,
        Err(e) => {
            let _ = ready.send(Err(AppError::new(
                AppErrorKind::Internal,
                format!("The audio engine could not start: {e}"),
            )));
            return;
        }
    };
    let devices = EngineDevices::open(
        io,
        config.capture_channels,
        StreamRequest {
            id: input,
            ..StreamRequest::default()
        },
        StreamRequest::default(),
    );
    let mut devices = match devices {
        Ok(d) => d,
        Err(e) => {
            let _ = ready.send(Err(AppError::from(e)));
            return;
        }
    };
    // The publisher drains the packets; the engine keeps a ring nobody reads in its place.
    let packets = std::mem::replace(&mut handle.packets, rtrb::RingBuffer::new(1).1);
    if ready.send(Ok(packets)).is_err() {
        return;
    }
    loop {
        match commands.recv_timeout(Duration::from_millis(200)) {
            Ok(SessionCommand::Remote(RemoteChange::Added { stream, key, .. })) => {
                // A full control ring is retried on the next message; the stream is dropped
                // here (off the DSP thread) if the engine refuses it.
                if let Err(e) = handle.send(Control::AddRemote(stream)) {
                    tracing::warn!(key, "remote not added to the engine: {e}");
                }
            }
            Ok(SessionCommand::Remote(RemoteChange::Removed { key, .. })) => {
                if let Err(e) = handle.send(Control::RemoveRemote(key)) {
                    tracing::warn!(key, "remote not removed from the engine: {e}");
                }
            }
            Ok(SessionCommand::ExpectedLoss(percent)) => {
                if let Err(e) = handle.send(Control::SetExpectedLoss(percent)) {
                    tracing::warn!(percent, "expected loss not applied: {e}");
                }
            }
            Ok(SessionCommand::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        for event in devices.poll(&mut handle) {
            tracing::info!(?event, "session audio device");
        }
        handle.collect_garbage();
    }
    handle.stop();
}
