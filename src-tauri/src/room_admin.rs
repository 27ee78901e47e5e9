//! The room's administration from the room bar: creating a room with its settings, the share
//! link a listener applies for a seat with, recordings, over the room server's REST API
//! (`docs/protocol.md`, REST). The same calls serve the embedded local room (its own per-install
//! credentials, on loopback) and a remote server (the operator's `customer_key:customer_secret`,
//! given in the room bar and kept in memory only, never written to disk).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use onmic_room::{BombingAction, ChatAllowed, ChatRules, RoomSettings};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use specta::Type;
use tauri::State;

use crate::Studio;
use crate::error::{AppError, AppErrorKind};

/// What the server does to a member who sends audio without an unmuted seat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum BombingRule {
    /// The server's own default (`bombing_ban_ms`).
    ServerDefault,
    /// Drop the audio and raise the alert only.
    ReportOnly,
    /// Also kick the sender and ban it for `banMinutes`.
    KickAndBan,
}

/// Who may chat in the room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum ChatWho {
    /// Every member.
    Everyone,
    /// Members on a seat, the owner and admins.
    Seated,
    /// The owner and admins only.
    Hosts,
}

/// The room's rules as the console edits them: the safety (anti-bombing) policy and chat rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RoomRules {
    /// The anti-bombing answer.
    pub bombing: BombingRule,
    /// Ban length for `kickAndBan`, in minutes (1 to 366 days).
    pub ban_minutes: u32,
    /// Who may chat.
    pub chat_who: ChatWho,
    /// Slow mode: seconds between two messages of one member (0: off, at most 3600).
    pub slow_mode_secs: u32,
}

impl Default for RoomRules {
    fn default() -> Self {
        RoomRules {
            bombing: BombingRule::ServerDefault,
            ban_minutes: 24 * 60,
            chat_who: ChatWho::Everyone,
            slow_mode_secs: 0,
        }
    }
}

/// Longest ban the console offers, in minutes (366 days, the protocol's limit).
pub const MAX_BAN_MINUTES: u32 = 366 * 24 * 60;

impl RoomRules {
    /// The room's own types; refuses out-of-range numbers with a message for the host.
    pub fn to_room(self) -> Result<(Option<BombingAction>, ChatRules), AppError> {
        let bombing = match self.bombing {
            BombingRule::ServerDefault => None,
            BombingRule::ReportOnly => Some(BombingAction::ReportOnly),
            BombingRule::KickAndBan => {
                if self.ban_minutes == 0 || self.ban_minutes > MAX_BAN_MINUTES {
                    return Err(invalid("The ban lasts 1 minute to 366 days."));
                }
                Some(BombingAction::KickAndBan {
                    ban: Duration::from_secs(u64::from(self.ban_minutes) * 60),
                })
            }
        };
        if self.slow_mode_secs > 3600 {
            return Err(invalid("Slow mode is at most one hour (3600 s)."));
        }
        let chat = ChatRules {
            who: match self.chat_who {
                ChatWho::Everyone => ChatAllowed::Everyone,
                ChatWho::Seated => ChatAllowed::Seated,
                ChatWho::Hosts => ChatAllowed::Hosts,
            },
            slow_mode: Duration::from_secs(u64::from(self.slow_mode_secs)),
        };
        Ok((bombing, chat))
    }

    /// The rules a room's settings hold.
    pub fn from_settings(s: &RoomSettings) -> RoomRules {
        let (bombing, ban_minutes) = match s.bombing {
            None => (BombingRule::ServerDefault, RoomRules::default().ban_minutes),
            Some(BombingAction::ReportOnly) => {
                (BombingRule::ReportOnly, RoomRules::default().ban_minutes)
            }
            Some(BombingAction::KickAndBan { ban }) => (
                BombingRule::KickAndBan,
                u32::try_from(ban.as_secs() / 60).unwrap_or(MAX_BAN_MINUTES),
            ),
        };
        RoomRules {
            bombing,
            ban_minutes,
            chat_who: match s.chat.who {
                ChatAllowed::Everyone => ChatWho::Everyone,
                ChatAllowed::Seated => ChatWho::Seated,
                ChatAllowed::Hosts => ChatWho::Hosts,
            },
            slow_mode_secs: u32::try_from(s.chat.slow_mode.as_secs()).unwrap_or(3600),
        }
    }
}

/// The boss seat as the creation dialog sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct BossSeatForm {
    /// Gifts within this many minutes count.
    pub window_minutes: u32,
    /// The boss keeps the seat this many minutes.
    pub hold_minutes: u32,
    /// The least gift value within the window to claim it.
    pub min_value: u32,
}

/// A room to create (the creation dialog).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct NewRoom {
    /// Room id.
    pub room: String,
    /// Title shown to listeners.
    pub title: String,
    /// Regular seats besides the owner's (1-64).
    pub seat_count: u16,
    /// The boss seat, if wanted.
    pub boss_seat: Option<BossSeatForm>,
    /// Safety and chat rules.
    pub rules: RoomRules,
}

/// One recording as the room bar lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RecordingView {
    /// Recording id.
    pub id: String,
    /// `recording`, `done`, `failed` or `interrupted`.
    pub status: String,
    /// Start, Unix ms.
    pub started_at: f64,
    /// Length in ms (when finished).
    pub duration_ms: Option<f64>,
    /// Size in bytes (when finished).
    pub bytes: Option<f64>,
    /// The server's file name.
    pub file: String,
}

impl RecordingView {
    fn from_json(v: &Value) -> RecordingView {
        let num = |k: &str| v[k].as_f64();
        RecordingView {
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            status: v["status"].as_str().unwrap_or_default().to_owned(),
            started_at: num("started_at").unwrap_or(0.0),
            duration_ms: num("duration_ms"),
            bytes: num("bytes"),
            file: v["file"].as_str().unwrap_or_default().to_owned(),
        }
    }
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::new(AppErrorKind::InvalidInput, message)
}

fn room_error(message: impl Into<String>) -> AppError {
    AppError::new(AppErrorKind::Room, message)
}

/// The remote server's REST credentials for this run (never written to disk).
static REMOTE_CREDENTIALS: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Where REST calls go and with what credentials.
#[derive(Clone, Debug)]
pub struct AdminApi {
    base: String,
    bearer: String,
    /// True for the embedded local room.
    pub local: bool,
}

impl AdminApi {
    /// The local room when it runs, else the configured server with the credentials the host
    /// gave; an error saying what to do when neither is there.
    pub async fn current(studio: &Studio) -> Result<AdminApi, AppError> {
        if let Some((base, key, secret)) = studio.local_room.admin().await {
            return Ok(AdminApi {
                base,
                bearer: format!("{key}:{secret}"),
                local: true,
            });
        }
        let creds = REMOTE_CREDENTIALS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match creds {
            Some((key, secret)) => Ok(AdminApi {
                base: studio.probe.url().trim_end_matches('/').to_owned(),
                bearer: format!("{key}:{secret}"),
                local: false,
            }),
            None => Err(room_error(
                "This needs the server's API key: enter the key and secret from your room's operator under “Server key”, or switch on “Local room”.",
            )),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AppError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| AppError::new(AppErrorKind::Internal, format!("HTTP client: {e}")))?;
        let mut req = client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.bearer);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(|e| {
            room_error(format!(
                "The room server at {} does not answer ({e}). Check the address and your network.",
                self.base
            ))
        })?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        let code = value["code"].as_str().unwrap_or("http_error");
        let message = value["message"].as_str().unwrap_or_default();
        Err(room_error(match code {
            "unauthorized" => {
                "The server refused the API key and secret; check them with your room's operator."
                    .to_owned()
            }
            "room_exists" => {
                "A room with this id exists already; pick another id, or go live in it.".to_owned()
            }
            "already_recording" => "The room is being recorded already.".to_owned(),
            "not_recording" => "The room is not being recorded.".to_owned(),
            "media_unavailable" => {
                "The server's media service is not running, so nothing can be recorded.".to_owned()
            }
            _ => format!("The server refused: {message} ({code})."),
        }))
    }

    /// Creates the room with its settings, owned by `owner`.
    pub async fn create_room(&self, new: &NewRoom, owner: &str) -> Result<Value, AppError> {
        let (bombing, chat) = new.rules.to_room()?;
        if new.seat_count == 0 || new.seat_count > 64 {
            return Err(invalid("A room has 1 to 64 seats besides yours."));
        }
        let mut body = json!({
            "id": new.room.trim(),
            "owner": owner,
            "title": new.title.trim(),
            "seat_count": new.seat_count,
            "chat": chat,
        });
        if let Some(bombing) = bombing {
            body["bombing"] = json!(bombing);
        }
        if let Some(boss) = new.boss_seat {
            if boss.window_minutes == 0 || boss.hold_minutes == 0 {
                return Err(invalid(
                    "The boss seat's window and hold are at least 1 minute.",
                ));
            }
            body["boss_seat"] = json!({
                "window": u64::from(boss.window_minutes) * 60_000,
                "hold": u64::from(boss.hold_minutes) * 60_000,
                "min_value": boss.min_value,
            });
        }
        self.call(reqwest::Method::POST, "/v1/rooms", Some(body))
            .await
    }

    /// A token for `uid` in `room` with `privileges`, valid 12 hours.
    pub async fn token(
        &self,
        room: &str,
        uid: &str,
        privileges: &[&str],
    ) -> Result<String, AppError> {
        let v = self
            .call(
                reqwest::Method::POST,
                "/v1/tokens",
                Some(json!({ "room": room, "uid": uid, "privileges": privileges, "ttl_secs": 12 * 3600 })),
            )
            .await?;
        v["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| room_error("The server's token answer had no token."))
    }

    /// The listener page's link for `room` with a fresh audience token that may apply for a seat.
    pub async fn share_link(&self, room: &str) -> Result<String, AppError> {
        let mut rnd = [0u8; 4];
        getrandom::fill(&mut rnd)
            .map_err(|e| AppError::new(AppErrorKind::Internal, format!("random: {e}")))?;
        let uid = format!("listener-{}", hex::encode(rnd));
        let token = self.token(room, &uid, &["join", "publish_audio"]).await?;
        Ok(format!("{}/listen/{room}?token={token}", self.base))
    }

    fn recording_path(room: &str, rest: &str) -> String {
        format!("/v1/rooms/{room}/{rest}")
    }

    /// Every recording of `room`, newest first.
    pub async fn recordings(&self, room: &str) -> Result<Vec<RecordingView>, AppError> {
        let v = self
            .call(
                reqwest::Method::GET,
                &Self::recording_path(room, "recordings"),
                None,
            )
            .await?;
        let mut list: Vec<RecordingView> = v["recordings"]
            .as_array()
            .map(|a| a.iter().map(RecordingView::from_json).collect())
            .unwrap_or_default();
        list.reverse();
        Ok(list)
    }

    /// Starts (`true`) or stops recording `room`.
    pub async fn record(&self, room: &str, start: bool) -> Result<(), AppError> {
        let path = Self::recording_path(
            room,
            if start {
                "recording/start"
            } else {
                "recording/stop"
            },
        );
        self.call(reqwest::Method::POST, &path, Some(json!({})))
            .await
            .map(drop)
    }

    /// Downloads a finished recording to `dir` (kept there) and returns its path.
    pub async fn download(
        &self,
        room: &str,
        id: &str,
        dir: &std::path::Path,
    ) -> Result<PathBuf, AppError> {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid("Not a recording id."));
        }
        let resp = reqwest::Client::new()
            .get(format!(
                "{}{}",
                self.base,
                Self::recording_path(room, &format!("recordings/{id}/file"))
            ))
            .bearer_auth(&self.bearer)
            .send()
            .await
            .map_err(|e| room_error(format!("The recording could not be fetched: {e}")))?;
        if !resp.status().is_success() {
            let v: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(room_error(match v["code"].as_str() {
                Some("still_recording") => {
                    "Stop the recording first; it is still running.".to_owned()
                }
                Some("file_gone") => "The recording's file is no longer on the server.".to_owned(),
                _ => format!(
                    "The server refused the file: {}",
                    v["message"].as_str().unwrap_or("?")
                ),
            }));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| room_error(format!("The recording broke off while downloading: {e}")))?;
        let folder = dir.join(room);
        std::fs::create_dir_all(&folder).map_err(|e| {
            AppError::new(
                AppErrorKind::Settings,
                format!("Cannot create {}: {e}", folder.display()),
            )
        })?;
        let path = folder.join(format!("{id}.ogg"));
        std::fs::write(&path, &bytes).map_err(|e| {
            AppError::new(
                AppErrorKind::Settings,
                format!("Cannot write {}: {e}", path.display()),
            )
        })?;
        Ok(path)
    }
}

fn check_room(room: &str) -> Result<String, AppError> {
    let room = room.trim();
    onmic_room::RoomId::from(room)
        .check()
        .map_err(|e| invalid(format!("“{room}” is not a room id: {e}")))?;
    Ok(room.to_owned())
}

/// The owner token for going live without a pasted token: the local room's, or one issued with
/// the remote server's API key (uid `host`).
pub async fn owner_token(studio: &Studio, room: &str) -> Result<(String, String), AppError> {
    if studio.local_room.view().await.is_some() {
        return studio.local_room.owner_token(room).await;
    }
    let no_key = REMOTE_CREDENTIALS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_none();
    if no_key {
        return Err(room_error(
            "To go live on this server, paste a token from your room's operator, or enter the server's key and secret under “Server key”, or switch on “Local room”.",
        ));
    }
    let api = AdminApi::current(studio).await?;
    let token = api
        .token(
            room,
            crate::local_room::HOST_UID,
            &["join", "publish_audio", "admin"],
        )
        .await?;
    Ok((api.base.clone(), token))
}

/// Remembers (for this run only) the remote server's REST key and secret; empty clears them.
#[tauri::command]
#[specta::specta]
pub fn set_server_credentials(key: String, secret: String) -> Result<bool, AppError> {
    let (key, secret) = (key.trim().to_owned(), secret.trim().to_owned());
    let mut creds = REMOTE_CREDENTIALS.lock().unwrap_or_else(|p| p.into_inner());
    if key.is_empty() && secret.is_empty() {
        *creds = None;
        return Ok(false);
    }
    if key.is_empty() || secret.is_empty() || key.contains(':') {
        return Err(invalid(
            "Give both the key and the secret (the key has no “:”).",
        ));
    }
    *creds = Some((key, secret));
    Ok(true)
}

/// Creates a room with its settings (the Studio's host owns it), ready to go live in.
#[tauri::command]
#[specta::specta]
pub async fn create_room(studio: State<'_, Studio>, request: NewRoom) -> Result<(), AppError> {
    let room = check_room(&request.room)?;
    let api = AdminApi::current(&studio).await?;
    api.create_room(&NewRoom { room, ..request }, crate::local_room::HOST_UID)
        .await
        .map(drop)
}

/// A listener link for `room` that can apply for a seat (local room or remote with a key).
#[tauri::command]
#[specta::specta]
pub async fn share_link(studio: State<'_, Studio>, room: String) -> Result<String, AppError> {
    let room = check_room(&room)?;
    AdminApi::current(&studio).await?.share_link(&room).await
}

/// Starts or stops recording `room`; returns its recordings, newest first.
#[tauri::command]
#[specta::specta]
pub async fn set_recording(
    studio: State<'_, Studio>,
    room: String,
    on: bool,
) -> Result<Vec<RecordingView>, AppError> {
    let room = check_room(&room)?;
    let api = AdminApi::current(&studio).await?;
    api.record(&room, on).await?;
    api.recordings(&room).await
}

/// The recordings of `room`, newest first.
#[tauri::command]
#[specta::specta]
pub async fn list_recordings(
    studio: State<'_, Studio>,
    room: String,
) -> Result<Vec<RecordingView>, AppError> {
    let room = check_room(&room)?;
    AdminApi::current(&studio).await?.recordings(&room).await
}

/// Fetches a finished recording into the Studio's `recordings/<room>/` folder, opens it with the
/// system's default player (unless `reveal_only`), and returns where it is.
#[tauri::command]
#[specta::specta]
pub async fn open_recording(
    studio: State<'_, Studio>,
    room: String,
    id: String,
    reveal_only: bool,
) -> Result<String, AppError> {
    let room = check_room(&room)?;
    let dir = studio.local_room.studio_data_dir().join("recordings");
    let api = AdminApi::current(&studio).await?;
    let path = api.download(&room, &id, &dir).await?;
    if !reveal_only {
        open_with_system(&path);
    }
    Ok(path.display().to_string())
}

/// Hands `path` to the desktop's default application (without waiting for it).
fn open_with_system(path: &std::path::Path) {
    #[cfg(target_os = "macos")]
    let mut cmd = std::process::Command::new("open");
    #[cfg(target_os = "windows")]
    let mut cmd = {
        let mut c = std::process::Command::new("cmd");
        c.args(["/C", "start", ""]);
        c
    };
    #[cfg(not(any(target_os = "macos", target_os = "windows")))]
    let mut cmd = std::process::Command::new("xdg-open");
    match cmd
        .arg(path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        // Reaped on a thread of its own so that no zombie is left behind.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(e) => {
            tracing::info!(path = %path.display(), "no default player to open the recording: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_map_to_the_rooms_types_and_back() {
        let rules = RoomRules {
            bombing: BombingRule::KickAndBan,
            ban_minutes: 90,
            chat_who: ChatWho::Seated,
            slow_mode_secs: 5,
        };
        let (bombing, chat) = rules.to_room().expect("valid");
        assert_eq!(
            bombing,
            Some(BombingAction::KickAndBan {
                ban: Duration::from_secs(5400)
            })
        );
        let settings = RoomSettings {
            bombing,
            chat,
            ..RoomSettings::default()
        };
        assert_eq!(RoomRules::from_settings(&settings), rules);
        assert_eq!(
            RoomRules::from_settings(&RoomSettings::default()),
            RoomRules::default()
        );
        for bad in [
            RoomRules {
                ban_minutes: 0,
                ..rules
            },
            RoomRules {
                ban_minutes: MAX_BAN_MINUTES + 1,
                ..rules
            },
            RoomRules {
                slow_mode_secs: 3601,
                ..rules
            },
        ] {
            assert_eq!(
                bad.to_room().map_err(|e| e.kind),
                Err(AppErrorKind::InvalidInput),
                "{bad:?}"
            );
        }
    }
}
