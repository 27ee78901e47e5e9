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

use onmic_audio::Dbfs;
use onmic_audio::engine::{self, Control, EngineConfig, Realtime};
use onmic_audio::streams::{EngineDevices, StreamRequest};
use onmic_client::{
    ClientConfig, ClientEvent, ConnectionState, RemoteChange, RoomClient, remote_key,
};
use onmic_room::{Action, SeatIndex};
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::audio_settings::{AudioSettings, EngineChange};
use crate::error::{AppError, AppErrorKind};
use crate::room_view::{AlertView, RoomView, Volumes, alert, room_view};
use crate::stats::{LiveStats, StatsTracker};

/// What the Studio asks to join.
#[derive(Clone, Debug, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct JoinRequest {
    /// The room id.
    pub room: String,
    /// A room token; `None` in the local room, where the Studio signs its own as the owner.
    pub token: Option<String>,
}

/// The live session as the UI shows it; streamed to the UI whenever it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
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
    /// Seats, applications, audience, feed and leaderboard.
    pub view: RoomView,
    /// Members in the room.
    pub members: u32,
    /// Opus packets sent so far (saturates at `u32::MAX`, ~2.7 years of audio).
    pub packets_sent: u32,
    /// Packets received from others so far (saturates likewise).
    pub packets_received: u32,
    /// The loss the SFU reports for the Studio's outgoing audio, percent.
    pub send_loss: u8,
    /// Safety alerts not yet dismissed (audio from members who may not publish).
    pub alerts: Vec<AlertView>,
    /// Why the session ended, when `state` is `closed`.
    pub ended: Option<String>,
    /// The seat this member lost while its connection was down (no ghost mic: nothing is sent
    /// until it takes a seat again).
    pub lost_seat: Option<u16>,
    /// Live statistics (`stats.rs`), refreshed once a second.
    pub stats: LiveStats,
    /// Unix time in ms when the Studio sent this status to the UI (the UI measures its
    /// event-to-paint delay from it; `docs/studio.md`, Live stats).
    pub emitted_at_ms: f64,
    /// `true`: `view.audience` is left empty because the member list has not changed since the
    /// previous status on the same channel; the UI keeps the list it has. Statuses pushed while
    /// live (up to ~10 a second in a busy room) carry the list only when it changed, rather than
    /// a 2,000-member list to send, parse and render every time. Replies to commands always
    /// carry it.
    pub audience_unchanged: bool,
}

impl RoomStatus {
    /// A session's first status: `connecting`, nothing sent, received or known yet.
    pub fn connecting(room: String, uid: String) -> RoomStatus {
        RoomStatus {
            room,
            uid,
            state: "connecting".into(),
            publishing: false,
            view: RoomView::default(),
            members: 0,
            packets_sent: 0,
            packets_received: 0,
            send_loss: 0,
            alerts: Vec::new(),
            ended: None,
            lost_seat: None,
            stats: LiveStats::default(),
            emitted_at_ms: 0.0,
            audience_unchanged: false,
        }
    }
}

/// One level reading, dBFS.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LevelDb {
    /// The loudest 10 ms block's RMS since the previous frame.
    pub rms_dbfs: f32,
    /// Peak since the previous frame.
    pub peak_dbfs: f32,
    /// A sample reached full scale (≥ −0.1 dBFS).
    pub clipped: bool,
}

/// Where the delay from the host's mouth to a listener's ear (and back) goes, ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LatencyView {
    /// The input device: its measured latency, or its period when none is reported.
    pub input_ms: f32,
    /// The processing chain's look-ahead.
    pub chain_ms: f32,
    /// The Opus frame.
    pub encoder_ms: f32,
    /// The jitter buffer of the most-buffered speaker heard.
    pub jitter_ms: f32,
    /// The output device: its measured latency, or its period.
    pub output_ms: f32,
    /// The sum.
    pub total_ms: f32,
    /// What the ear monitor adds to the input's own path (the chain's delay up to its tap).
    pub ear_ms: f32,
    /// The audio thread runs at real-time priority (the OS granted it); false: at normal
    /// priority, where other programs' load can delay a block into a click (docs/platforms.md).
    pub realtime: bool,
}

/// The gain reduction of the effect rack's dynamics, dB (≤ 0): the deepest of each stage since
/// the previous frame; 0 when the stage is off or did not act (a closed gate reads −200).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct GainReductionDb {
    /// The noise gate.
    pub gate_db: f32,
    /// The compressor.
    pub compressor_db: f32,
    /// The de-esser (on its sibilance band only).
    pub deesser_db: f32,
}

/// The live meters, ~30 a second while on air.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LiveMeters {
    /// The input after the channel map and gain, before processing.
    pub input: LevelDb,
    /// What is published (after the chain and the limiter).
    pub published: LevelDb,
    /// The latency readout.
    pub latency: LatencyView,
    /// The output device in use.
    pub output_device: Option<String>,
    /// Control messages waiting because the engine's ring was full (sent on the next tick).
    pub pending_controls: u32,
    /// The effects panel's gain-reduction meters.
    pub gain_reduction: GainReductionDb,
}

/// A host's action in the room, as the console sends it (mapped to `onmic-room`'s own
/// [`Action`], which the client serialises).
#[derive(Clone, Debug, Deserialize, Type)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HostAction {
    /// Offer a seat to a member.
    Invite {
        /// Who.
        uid: String,
        /// Which seat (any free one when null).
        seat: Option<u16>,
    },
    /// Approve an application.
    Approve {
        /// The applicant.
        uid: String,
    },
    /// Reject an application.
    Reject {
        /// The applicant.
        uid: String,
    },
    /// Remove the occupant of a seat.
    KickFromSeat {
        /// The seat.
        seat: u16,
    },
    /// Mute a seat.
    MuteSeat {
        /// The seat.
        seat: u16,
    },
    /// Unmute a seat.
    UnmuteSeat {
        /// The seat.
        seat: u16,
    },
    /// Lock a seat.
    LockSeat {
        /// The seat.
        seat: u16,
    },
    /// Unlock a seat.
    UnlockSeat {
        /// The seat.
        seat: u16,
    },
    /// Move an occupant.
    MoveSeat {
        /// From.
        from: u16,
        /// To.
        to: u16,
    },
    /// Take a seat (the host's own).
    TakeSeat {
        /// The seat.
        seat: u16,
    },
    /// Leave the host's own seat.
    LeaveSeat,
    /// Mute or unmute the host's own seat.
    SetSelfMuted {
        /// Muted.
        muted: bool,
    },
    /// Appoint or remove an admin.
    SetAdmin {
        /// Who.
        uid: String,
        /// Admin or not.
        admin: bool,
    },
    /// Kick a member, banning it for `ban_minutes` (0: no ban).
    Kick {
        /// Who.
        uid: String,
        /// Ban length in minutes.
        #[serde(rename = "banMinutes")]
        ban_minutes: u32,
    },
    /// Lift a ban.
    Unban {
        /// Who.
        uid: String,
    },
    /// Forbid a member to chat (禁言) for `minutes`.
    MuteChat {
        /// Who.
        uid: String,
        /// Minutes.
        minutes: u32,
    },
    /// Lift a chat mute.
    UnmuteChat {
        /// Who.
        uid: String,
    },
    /// Say something in the chat.
    Chat {
        /// The text.
        text: String,
    },
    /// Set the room notice.
    Notice {
        /// The text.
        text: String,
    },
    /// Close the room for good.
    Dismiss,
    /// Change the room's safety (anti-bombing) and chat rules while it runs (owner).
    SetRules {
        /// The new rules.
        rules: crate::room_admin::RoomRules,
    },
}

impl HostAction {
    /// The room's own request type.
    pub fn into_action(self) -> Result<Action, AppError> {
        let minutes = |m: u32| Duration::from_secs(u64::from(m) * 60);
        let text = |t: String, what: &str| {
            let t = t.trim().to_owned();
            if t.is_empty() {
                Err(AppError::new(
                    AppErrorKind::InvalidInput,
                    format!("Write the {what} first."),
                ))
            } else {
                Ok(t)
            }
        };
        Ok(match self {
            HostAction::Invite { uid, seat } => Action::Invite {
                uid: uid.into(),
                seat: seat.map(SeatIndex),
            },
            HostAction::Approve { uid } => Action::Approve { uid: uid.into() },
            HostAction::Reject { uid } => Action::Reject { uid: uid.into() },
            HostAction::KickFromSeat { seat } => Action::KickFromSeat {
                seat: SeatIndex(seat),
            },
            HostAction::MuteSeat { seat } => Action::MuteSeat {
                seat: SeatIndex(seat),
            },
            HostAction::UnmuteSeat { seat } => Action::UnmuteSeat {
                seat: SeatIndex(seat),
            },
            HostAction::LockSeat { seat } => Action::LockSeat {
                seat: SeatIndex(seat),
            },
            HostAction::UnlockSeat { seat } => Action::UnlockSeat {
                seat: SeatIndex(seat),
            },
            HostAction::MoveSeat { from, to } => Action::MoveSeat {
                from: SeatIndex(from),
                to: SeatIndex(to),
            },
            HostAction::TakeSeat { seat } => Action::TakeSeat {
                seat: SeatIndex(seat),
            },
            HostAction::LeaveSeat => Action::LeaveSeat,
            HostAction::SetSelfMuted { muted: true } => Action::MuteSelf,
            HostAction::SetSelfMuted { muted: false } => Action::UnmuteSelf,
            HostAction::SetAdmin { uid, admin } => Action::SetAdmin {
                uid: uid.into(),
                admin,
            },
            HostAction::Kick { uid, ban_minutes } => Action::Kick {
                uid: uid.into(),
                ban: minutes(ban_minutes),
            },
            HostAction::Unban { uid } => Action::Unban { uid: uid.into() },
            HostAction::MuteChat { uid, minutes: m } => {
                if m == 0 {
                    return Err(AppError::new(
                        AppErrorKind::InvalidInput,
                        "Pick how long the chat mute lasts.",
                    ));
                }
                Action::MuteChat {
                    uid: uid.into(),
                    duration: minutes(m),
                }
            }
            HostAction::UnmuteChat { uid } => Action::UnmuteChat { uid: uid.into() },
            HostAction::Chat { text: t } => Action::Chat {
                text: text(t, "message")?,
            },
            HostAction::Notice { text: t } => Action::Notice {
                text: text(t, "notice")?,
            },
            HostAction::Dismiss => Action::Dismiss,
            HostAction::SetRules { rules } => {
                let (bombing, chat) = rules.to_room()?;
                Action::SetRules { bombing, chat }
            }
        })
    }
}

enum SessionCommand {
    Remote(RemoteChange),
    /// The loss the listeners report, for the encoder's FEC.
    ExpectedLoss(u8),
    /// New console settings: the engine thread applies what changed.
    Audio(Box<AudioSettings>),
    /// Engine controls from the effects and music panels, sent in order.
    Controls(Vec<Control>),
    Stop,
}

/// Sends engine controls to the live session's engine thread (the effects and music panels
/// build racks and music voices on their own threads and hand them over here).
#[derive(Clone, Debug)]
pub struct ControlSender(mpsc::Sender<SessionCommand>, Arc<engine::EngineStats>);

impl ControlSender {
    /// Queues `controls` for the engine; `false` once the session has ended.
    pub fn send(&self, controls: Vec<Control>) -> bool {
        self.0.send(SessionCommand::Controls(controls)).is_ok()
    }

    /// Music voices the engine refused so far in this session (its bus was full).
    pub fn music_refused(&self) -> u64 {
        self.1
            .music_refused
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl std::fmt::Debug for SessionCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCommand")
    }
}

struct Session {
    client: Arc<tokio::sync::Mutex<Option<RoomClient>>>,
    status: Arc<Mutex<RoomStatus>>,
    commands: mpsc::Sender<SessionCommand>,
    engine_stats: Arc<engine::EngineStats>,
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
    /// `input` (the default input when `None`) with the console settings `audio` (mode,
    /// processing, output device, ...), and publishes. `on_change` hears every status change,
    /// `on_meters` the live meters ~30 times a second.
    pub async fn join(
        &self,
        target: Target,
        input: Option<String>,
        audio: AudioSettings,
        on_change: impl Fn(&RoomStatus) + Send + Sync + 'static,
        on_meters: impl Fn(LiveMeters) + Send + 'static,
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
            .spawn(move || run_engine(input, audio, ready_tx, cmd_rx, on_meters))
            .map_err(|e| AppError::new(AppErrorKind::Internal, format!("no thread: {e}")))?;
        let (packets, engine_stats) = match ready_rx.recv() {
            Ok(Ok(started)) => started,
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

        let status = Arc::new(Mutex::new(RoomStatus::connecting(
            target.room,
            client.uid().as_str().to_owned(),
        )));
        let events =
            std::mem::replace(&mut client.events, tokio::sync::mpsc::unbounded_channel().1);
        let mut remotes = std::mem::replace(
            &mut client.remotes,
            tokio::sync::mpsc::unbounded_channel().1,
        );
        refresh(&status, &client, Some(&Volumes::new()));
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
            engine_stats,
            engine_thread: Some(engine_thread),
            tasks: vec![publish, remote_task, event_task],
        });
        Ok(view)
    }

    /// Sends a host action to the room and waits for the server's answer.
    pub async fn act(&self, action: HostAction) -> Result<RoomStatus, AppError> {
        let action = action.into_action()?;
        let retakes = matches!(action, Action::TakeSeat { .. });
        let session = self.session.lock().await;
        let Some(session) = session.as_ref() else {
            return Err(AppError::new(AppErrorKind::Room, "Go live first."));
        };
        if let Some(client) = session.client.lock().await.as_ref() {
            client
                .act(action)
                .await
                .map_err(|e| AppError::new(AppErrorKind::Room, e.to_string()))?;
            refresh(&session.status, client, None);
        }
        if retakes {
            session
                .status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .lost_seat = None;
        }
        Ok(snapshot(&session.status))
    }

    /// A sender of engine controls to the live session, if one runs.
    pub async fn control_sender(&self) -> Option<ControlSender> {
        let session = self.session.lock().await;
        session
            .as_ref()
            .map(|s| ControlSender(s.commands.clone(), Arc::clone(&s.engine_stats)))
    }

    /// Applies new console settings to the running engine (no-op when not live).
    pub async fn set_audio(&self, audio: &AudioSettings) {
        if let Some(session) = self.session.lock().await.as_ref() {
            let _ = session
                .commands
                .send(SessionCommand::Audio(Box::new(audio.clone())));
        }
    }

    /// Forgets a safety alert (the host dealt with it).
    pub async fn dismiss_alert(&self, version: u32) -> Option<RoomStatus> {
        let session = self.session.lock().await;
        let session = session.as_ref()?;
        let mut s = session
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.alerts.retain(|a| a.version != version);
        Some(s.clone())
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
    let mut s = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    s.emitted_at_ms = crate::stats::unix_ms();
    s
}

/// Copies what the UI shows from the client's view of the room and the last volume indication
/// (`None`: keep the speaking states shown now).
fn refresh(status: &Mutex<RoomStatus>, client: &RoomClient, volumes: Option<&Volumes>) {
    let room = client.room();
    let stats = client.stats();
    let mut s = status
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let kept: Volumes;
    let volumes = match volumes {
        Some(v) => v,
        None => {
            kept = s
                .view
                .seats
                .iter()
                .filter_map(|seat| Some((seat.uid.clone()?, (seat.volume, seat.speaking))))
                .collect();
            &kept
        }
    };
    s.publishing = client.may_publish();
    s.members = u32::try_from(room.members.len()).unwrap_or(u32::MAX);
    s.view = room_view(&room, volumes, now_ms());
    let count = |n: &std::sync::atomic::AtomicU64| {
        u32::try_from(n.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(u32::MAX)
    };
    s.packets_sent = count(&stats.packets_sent);
    s.packets_received = count(&stats.packets_received);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
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

/// At most this many queued client events are applied before one status goes to the UI.
const MAX_BATCH: usize = 256;

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
    let mut tracker = StatsTracker::default();
    // The member list the UI last received on the status channel: the join's first status
    // (sent before this task starts) carried the whole list.
    let mut last_audience = Some(snapshot(&status).view.audience);
    loop {
        let first = tokio::select! {
            e = events.recv() => match e {
                Some(e) => Some(e),
                None => return,
            },
            _ = every.tick() => None,
        };
        // Whatever else is already queued is applied before one refresh: under a burst (a busy
        // chat, a wave of joins) the UI gets one status per batch, not one per event.
        let mut batch: Vec<ClientEvent> = first.into_iter().collect();
        while batch.len() < MAX_BATCH
            && let Ok(e) = events.try_recv()
        {
            batch.push(e);
        }
        let mut link = None;
        {
            let mut s = status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for event in batch {
                match event {
                    ClientEvent::State(state) => s.state = state_name(state).into(),
                    ClientEvent::Closed { message, .. } => {
                        s.state = "closed".into();
                        s.ended = Some(message);
                    }
                    // Each indication lists everyone heard; whoever is missing went quiet.
                    ClientEvent::Volumes(speakers) => {
                        volumes = speakers
                            .iter()
                            .map(|v| (v.uid.as_str().to_owned(), (v.volume, v.speaking)))
                            .collect();
                    }
                    ClientEvent::LostSeat(lost) => s.lost_seat = Some(lost.seat.0),
                    ClientEvent::SendLoss(percent) => {
                        s.send_loss = percent;
                        let _ = engine.send(SessionCommand::ExpectedLoss(percent));
                    }
                    ClientEvent::Room(event) => {
                        // A sender who is gone (kicked, banned, left) needs no alert any more.
                        if let onmic_room::EventKind::MemberLeft { uid, .. }
                        | onmic_room::EventKind::Banned { uid, .. } = &event.kind
                        {
                            s.alerts.retain(|a| a.uid != uid.as_str());
                        }
                        if let Some(alert) = alert(&event) {
                            // The newest first; a flood from one sender is one alert per event,
                            // capped so the list stays readable.
                            s.alerts.insert(0, alert);
                            s.alerts.truncate(20);
                        }
                    }
                    ClientEvent::Link(sample) => link = Some(sample),
                    _ => {}
                }
            }
        }
        if let Some(c) = client.lock().await.as_ref() {
            refresh(&status, c, Some(&volumes));
            if let Some(sample) = link {
                let stats = crate::stats::update(&mut tracker, *sample, &c.room());
                status
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .stats = stats;
            }
        }
        let mut view = snapshot(&status);
        elide_unchanged_audience(&mut view, &mut last_audience);
        on_change(&view);
    }
}

/// Leaves the member list out of a pushed status when it equals the one sent before
/// ([`RoomStatus::audience_unchanged`]); `last` remembers what the UI has.
fn elide_unchanged_audience(
    view: &mut RoomStatus,
    last: &mut Option<Vec<crate::room_view::MemberView>>,
) {
    if last.as_ref() == Some(&view.view.audience) {
        view.view.audience = Vec::new();
        view.audience_unchanged = true;
    } else {
        *last = Some(view.view.audience.clone());
    }
}

/// How often the session checks that its devices are still there.
const DEVICE_POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What the session thread hands back once the engine runs: the packets to publish and the
/// engine's counters.
type EngineStarted = (
    rtrb::Consumer<onmic_audio::opus::OpusPacket>,
    Arc<engine::EngineStats>,
);

/// The session thread: owns the engine and the devices, applies settings and remotes, and
/// streams the meters.
fn run_engine(
    input: Option<String>,
    audio: AudioSettings,
    ready: std::sync::mpsc::Sender<Result<EngineStarted, AppError>>,
    commands: mpsc::Receiver<SessionCommand>,
    on_meters: impl Fn(LiveMeters),
) {
    let config = EngineConfig {
        realtime: true,
        ..EngineConfig::default()
    };
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
    let devices = EngineDevices::open_pick(
        io,
        config.capture_channels,
        StreamRequest {
            id: input,
            ..StreamRequest::default()
        },
        audio.input_pick(),
        StreamRequest {
            id: audio.output_device.clone(),
            ..StreamRequest::default()
        },
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
    if ready.send(Ok((packets, handle.shared_stats()))).is_err() {
        return;
    }
    let mut engine = EngineControls::new(&audio);
    engine.apply(&mut handle, &mut devices, audio.initial_changes());
    let mut current = audio;
    // The session ticks every FRAME_INTERVAL (held-back controls go out then); the meters go to
    // the UI every `meter_interval`, a whole number of ticks.
    let meter_interval = crate::render_mode::live_meter_interval(crate::render_mode::detect());
    let mut next_tick = std::time::Instant::now();
    let mut next_meter = next_tick;
    let mut next_device_poll = next_tick + DEVICE_POLL_INTERVAL;
    let mut scheduling_logged = false;
    loop {
        if !scheduling_logged && let Some(rt) = handle.stats().realtime() {
            scheduling_logged = true;
            log_scheduling(rt);
        }
        let wait = next_tick.saturating_duration_since(std::time::Instant::now());
        match commands.recv_timeout(wait) {
            Ok(SessionCommand::Remote(RemoteChange::Added {
                uid, stream, key, ..
            })) => {
                engine.push(Control::AddRemote(stream));
                if let Some(v) = current.speaker_volumes.get(uid.as_str()) {
                    engine.push(Control::SetRemoteVolume(key, v / 100.0));
                }
            }
            Ok(SessionCommand::Remote(RemoteChange::Removed { key, .. })) => {
                engine.push(Control::RemoveRemote(key));
            }
            Ok(SessionCommand::ExpectedLoss(percent)) => {
                engine.push(Control::SetExpectedLoss(percent));
            }
            Ok(SessionCommand::Audio(next)) => {
                let changes = next.changes_since(&current);
                engine.apply(&mut handle, &mut devices, changes);
                for (uid, v) in &next.speaker_volumes {
                    if current.speaker_volumes.get(uid) != Some(v) {
                        engine.push(Control::SetRemoteVolume(
                            remote_key(&uid.as_str().into()),
                            v / 100.0,
                        ));
                    }
                }
                current = *next;
            }
            Ok(SessionCommand::Controls(controls)) => {
                for c in controls {
                    engine.push(c);
                }
            }
            Ok(SessionCommand::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        engine.flush(&mut handle);
        let now = std::time::Instant::now();
        if now >= next_tick {
            next_tick = (next_tick + crate::meter_service::FRAME_INTERVAL).max(now);
            handle.collect_garbage();
        }
        if now >= next_meter {
            next_meter = (next_meter + meter_interval).max(now);
            on_meters(engine.meters(&handle, &devices));
        }
        // Listing the devices is costly (PulseAudio enumerates everything): 5 times a second
        // is enough to notice a device coming or going.
        if now >= next_device_poll {
            next_device_poll = now + DEVICE_POLL_INTERVAL;
            for event in devices.poll(&mut handle) {
                tracing::info!(?event, "session audio device");
            }
        }
    }
    handle.stop();
}

/// Says once per session how the OS scheduled the audio thread. A refusal is the usual case for
/// a desktop user without an `rtprio` limit, not a fault: INFO, with what would allow it.
fn log_scheduling(rt: &Realtime) {
    match rt {
        Realtime::Granted => tracing::info!("the audio thread runs at real-time priority"),
        Realtime::Refused(why) => tracing::info!(
            "the audio thread runs at normal priority: the OS refused real-time scheduling \
             ({why}); other programs' load can cause clicks. On Linux, an rtprio limit allows it \
             (docs/platforms.md, \"Real-time priority\")"
        ),
        Realtime::NotAsked => {}
    }
}

/// Sends controls to the engine in order; a control its ring cannot take now is kept (the ring
/// hands it back) and sent on the next tick, never dropped.
struct EngineControls {
    pending: std::collections::VecDeque<Control>,
    chain_latency: u32,
    encoder_frames: u32,
}

impl EngineControls {
    fn new(audio: &AudioSettings) -> Self {
        let mut me = Self {
            pending: std::collections::VecDeque::new(),
            chain_latency: 0,
            encoder_frames: 0,
        };
        me.note_mode(audio.chain_config());
        me
    }

    fn note_mode(&mut self, config: onmic_audio::chain::ChainConfig) {
        self.encoder_frames = u32::try_from(config.mode.opus_profile().frame.frames()).unwrap_or(0);
    }

    fn push(&mut self, c: Control) {
        self.pending.push_back(c);
    }

    fn flush(&mut self, handle: &mut engine::EngineHandle) {
        while let Some(c) = self.pending.pop_front() {
            if let Err(c) = handle.try_send(c) {
                self.pending.push_front(c);
                return;
            }
        }
    }

    fn apply(
        &mut self,
        handle: &mut engine::EngineHandle,
        devices: &mut EngineDevices,
        changes: Vec<EngineChange>,
    ) {
        for change in changes {
            match change {
                EngineChange::Control(c) => self.push(c),
                EngineChange::Mode(config) => {
                    // Built here, off the DSP thread (allocates); crossfaded in there.
                    let chain = onmic_audio::chain::Chain::new(config);
                    let encoder =
                        onmic_audio::opus::OpusEncoder::new(config.mode.opus_profile(), 0, 0);
                    match (chain, encoder) {
                        (Ok(chain), Ok(encoder)) => {
                            self.chain_latency = u32::try_from(chain.latency().get()).unwrap_or(0);
                            self.note_mode(config);
                            self.push(Control::ReplaceChain(Box::new(chain)));
                            self.push(Control::ReplaceEncoder(Box::new(encoder)));
                        }
                        (Err(e), _) => tracing::error!("the new mode's chain failed: {e}"),
                        (_, Err(e)) => tracing::error!("the new mode's encoder failed: {e}"),
                    }
                }
                EngineChange::Output(id) => {
                    // Earlier controls go first: the output switch sends its own.
                    self.flush(handle);
                    if let Err(e) = devices.switch_output(
                        handle,
                        StreamRequest {
                            id,
                            ..StreamRequest::default()
                        },
                    ) {
                        tracing::warn!("the output device could not be switched: {e}");
                    }
                }
                EngineChange::InputChannels(pick) => {
                    self.flush(handle);
                    // The command checked the pick against the input; a device that changed
                    // since keeps its channels.
                    if let Err(e) = devices.set_input_pick(handle, pick) {
                        tracing::warn!("the input channels could not be switched: {e}");
                    }
                }
            }
        }
        self.flush(handle);
    }

    fn meters(&self, handle: &engine::EngineHandle, devices: &EngineDevices) -> LiveMeters {
        let m = handle.stats().meters.take();
        let db = |a: f32| Dbfs::from_amplitude(a).0;
        let level = |rms: f32, peak: f32| LevelDb {
            rms_dbfs: db(rms),
            peak_dbfs: db(peak),
            clipped: peak >= 0.989,
        };
        let ms = |frames: u32| frames as f32 / 48.0;
        let device_ms = |s: Option<&onmic_audio::streams::DeviceStream>| {
            s.map_or(0.0, |s| {
                let measured = s.status.latency().as_secs_f32() * 1000.0;
                if measured > 0.0 {
                    measured
                } else {
                    s.opened.buffer_frames.map_or(0.0, ms)
                }
            })
        };
        let mut latency = LatencyView {
            input_ms: device_ms(devices.input()),
            chain_ms: ms(self.chain_latency),
            encoder_ms: ms(self.encoder_frames),
            jitter_ms: ms(m.jitter_frames),
            output_ms: device_ms(devices.output()),
            total_ms: 0.0,
            ear_ms: ms(self.chain_latency),
            realtime: matches!(handle.stats().realtime(), Some(Realtime::Granted)),
        };
        latency.total_ms = latency.input_ms
            + latency.chain_ms
            + latency.encoder_ms
            + latency.jitter_ms
            + latency.output_ms;
        LiveMeters {
            input: level(m.input_rms, m.input_peak),
            published: level(m.output_rms, m.output_peak),
            latency,
            output_device: devices.output().map(|s| s.opened.id.clone()),
            pending_controls: u32::try_from(self.pending.len()).unwrap_or(u32::MAX),
            gain_reduction: GainReductionDb {
                gate_db: m.gain_reduction.gate_db,
                compressor_db: m.gain_reduction.compressor_db,
                deesser_db: m.gain_reduction.deesser_db,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room_view::MemberView;

    fn member(uid: &str) -> MemberView {
        MemberView {
            uid: uid.into(),
            role: "audience".into(),
            seat: None,
            chat_muted_until: None,
        }
    }

    fn status(audience: Vec<MemberView>) -> RoomStatus {
        RoomStatus {
            state: "connected".into(),
            publishing: true,
            view: RoomView {
                audience,
                ..RoomView::default()
            },
            ..RoomStatus::connecting("r".into(), "host".into())
        }
    }

    #[test]
    fn a_pushed_status_carries_the_member_list_only_when_it_changed() {
        let list: Vec<MemberView> = (0..2_000).map(|i| member(&format!("l{i:04}"))).collect();
        let mut last = None;
        // The first carries it, the same list again does not, a change does.
        let mut s = status(list.clone());
        elide_unchanged_audience(&mut s, &mut last);
        assert!(!s.audience_unchanged && s.view.audience.len() == 2_000);
        let full = serde_json::to_string(&s).expect("json").len();
        let mut s = status(list.clone());
        elide_unchanged_audience(&mut s, &mut last);
        assert!(s.audience_unchanged && s.view.audience.is_empty());
        let elided = serde_json::to_string(&s).expect("json").len();
        println!("a status with 2,000 members: {full} bytes of JSON; without the list: {elided}");
        assert!(elided * 20 < full, "{elided} vs {full}");
        let mut changed = list;
        changed.pop();
        let mut s = status(changed);
        elide_unchanged_audience(&mut s, &mut last);
        assert!(!s.audience_unchanged && s.view.audience.len() == 1_999);
    }
}
