//! The embedded local room: the room server (`onmic-server`'s library) running inside the Studio
//! on a loopback port, so a host can rehearse, or run a room on one machine, without deploying
//! anything.
//!
//! Its secrets are random per install (kept in `secrets.json` beside its database, readable only
//! by the user), never the server's built-in placeholders: other local users can reach loopback.

use std::path::{Path, PathBuf};

use onmic_server::{Config, RunningServer};
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::error::{AppError, AppErrorKind};

/// The uid the Studio's host has in its local room.
pub const HOST_UID: &str = "host";

/// What the UI shows about the local room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct LocalRoomView {
    /// Base URL of the embedded server, e.g. `http://127.0.0.1:39211`.
    pub url: String,
    /// Where its database and recordings live.
    pub data_dir: String,
}

/// The secrets of the local room, generated once per install.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Secrets {
    token_secret: String,
    customer_secret: String,
    webhook_secret: String,
}

impl Secrets {
    fn generate() -> Result<Self, AppError> {
        Ok(Self {
            token_secret: random_hex()?,
            customer_secret: random_hex()?,
            webhook_secret: random_hex()?,
        })
    }
}

fn random_hex() -> Result<String, AppError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        AppError::new(
            AppErrorKind::Internal,
            format!("The system's random number source failed ({e}); the local room cannot make its secrets."),
        )
    })?;
    Ok(hex::encode(bytes))
}

/// Reads the install's secrets, creating them on first use. An unreadable file is kept aside
/// (`secrets.json.bad`) and replaced: tokens issued before become invalid, nothing else is lost.
fn load_secrets(dir: &Path) -> Result<Secrets, AppError> {
    let path = dir.join("secrets.json");
    if let Ok(bytes) = std::fs::read(&path) {
        match serde_json::from_slice(&bytes) {
            Ok(secrets) => return Ok(secrets),
            Err(e) => {
                tracing::warn!(path = %path.display(), "local room secrets unreadable ({e}); new ones made");
                let _ = std::fs::rename(&path, path.with_extension("json.bad"));
            }
        }
    }
    let secrets = Secrets::generate()?;
    let json = serde_json::to_vec_pretty(&secrets)
        .map_err(|e| AppError::new(AppErrorKind::Internal, format!("serialising secrets: {e}")))?;
    write_private(&path, &json).map_err(|e| {
        AppError::new(
            AppErrorKind::Settings,
            format!(
                "Cannot write the local room's secrets to {}: {e}. Check that the folder is writable.",
                path.display()
            ),
        )
    })?;
    Ok(secrets)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(tmp, path)
}

/// The server configuration of a local room whose files live in `data_dir`.
pub fn config(data_dir: &Path) -> Result<Config, AppError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        AppError::new(
            AppErrorKind::Settings,
            format!(
                "Cannot create the local room's folder {}: {e}. Check that the disk is writable.",
                data_dir.display()
            ),
        )
    })?;
    let secrets = load_secrets(data_dir)?;
    Ok(Config {
        listen: ([127, 0, 0, 1], 0).into(),
        node_name: "studio-local".into(),
        data_dir: data_dir.to_owned(),
        token_secret: secrets.token_secret,
        customer_secret: secrets.customer_secret,
        webhook_secret: secrets.webhook_secret,
        ..Config::default()
    })
}

/// A running local room.
#[derive(Debug)]
pub struct LocalRoom {
    server: RunningServer,
    data_dir: PathBuf,
}

impl LocalRoom {
    /// Starts the embedded server on an ephemeral loopback port, in the current tokio runtime.
    pub async fn start(data_dir: &Path) -> Result<Self, AppError> {
        let config = config(data_dir)?;
        let server = onmic_server::start(config).await.map_err(|e| {
            AppError::new(
                AppErrorKind::Internal,
                format!("The local room could not start: {e}"),
            )
        })?;
        tracing::info!(url = %server.url(), "local room started");
        Ok(Self {
            server,
            data_dir: data_dir.to_owned(),
        })
    }

    /// What the UI shows.
    pub fn view(&self) -> LocalRoomView {
        LocalRoomView {
            url: self.server.url(),
            data_dir: self.data_dir.display().to_string(),
        }
    }

    /// The base URL of the embedded server.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Stops the server, letting in-flight requests finish and the database close.
    pub async fn shutdown(self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!("the local room stopped with an error: {e}");
        }
    }
}

/// Starts and stops the local room on request; at most one runs.
#[derive(Debug)]
pub struct LocalRoomService {
    data_dir: PathBuf,
    running: tokio::sync::Mutex<Option<LocalRoom>>,
}

impl LocalRoomService {
    /// A service whose room keeps its files in `data_dir`; nothing runs yet.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// The Studio's data folder (the local room's folder is `local-room/` in it).
    pub fn studio_data_dir(&self) -> PathBuf {
        self.data_dir
            .parent()
            .map_or_else(|| self.data_dir.clone(), Path::to_path_buf)
    }

    /// The running room, if any.
    pub async fn view(&self) -> Option<LocalRoomView> {
        self.running.lock().await.as_ref().map(LocalRoom::view)
    }

    /// Starts the room (a no-op when it runs) and returns it.
    pub async fn start(&self) -> Result<LocalRoomView, AppError> {
        let mut running = self.running.lock().await;
        if let Some(room) = running.as_ref() {
            return Ok(room.view());
        }
        let room = LocalRoom::start(&self.data_dir).await?;
        let view = room.view();
        *running = Some(room);
        Ok(view)
    }

    /// The URL of the running room and an owner token for `room` (uid [`HOST_UID`]), creating
    /// the room on first use. Errors when the local room is off.
    pub async fn owner_token(&self, room: &str) -> Result<(String, String), AppError> {
        let running = self.running.lock().await;
        let Some(local) = running.as_ref() else {
            return Err(AppError::new(
                AppErrorKind::Room,
                "The local room is off. Switch on “Local room”, or paste a token for your server.",
            ));
        };
        let hub = local.server.hub();
        let invalid = |e: String| AppError::new(AppErrorKind::InvalidInput, e);
        let create = serde_json::from_value::<onmic_server::hub::CreateRoom>(serde_json::json!({
            "id": room,
            "owner": HOST_UID,
            "title": "Onmic Studio",
        }))
        .map_err(|e| invalid(format!("“{room}” is not a room id: {e}")))?;
        match hub.create_room(create, "studio") {
            Ok(_) | Err(onmic_server::hub::HubError::RoomExists) => {}
            Err(e) => return Err(invalid(format!("The room “{room}” cannot be opened: {e}"))),
        }
        let request =
            serde_json::from_value::<onmic_server::rest::TokenRequest>(serde_json::json!({
                "room": room,
                "uid": HOST_UID,
                "privileges": ["join", "publish_audio", "admin"],
                "ttl_secs": 12 * 3600,
            }))
            .map_err(|e| invalid(format!("token request: {e}")))?;
        let (token, _) = onmic_server::rest::make_token(hub.config(), &request, hub.now());
        Ok((local.url(), token))
    }

    /// A link to the listener page of `room` with a fresh audience token (a new uid per link:
    /// two people on one uid would push each other out), valid 12 hours. The token may join and
    /// publish: the listener can apply for a seat, and speaks only once the host seats it (the
    /// room's rule of who may publish). Local room only.
    pub async fn listener_link(&self, room: &str) -> Result<String, AppError> {
        let running = self.running.lock().await;
        let Some(local) = running.as_ref() else {
            return Err(AppError::new(
                AppErrorKind::Room,
                "Listener links come from the local room; for your server, ask its operator for audience tokens.",
            ));
        };
        let hub = local.server.hub();
        let uid = format!("listener-{}", &random_hex()?[..8]);
        let request =
            serde_json::from_value::<onmic_server::rest::TokenRequest>(serde_json::json!({
                "room": room,
                "uid": uid,
                "privileges": ["join", "publish_audio"],
                "ttl_secs": 12 * 3600,
            }))
            .map_err(|e| AppError::new(AppErrorKind::InvalidInput, format!("“{room}”: {e}")))?;
        let (token, _) = onmic_server::rest::make_token(hub.config(), &request, hub.now());
        Ok(format!("{}/listen/{room}?token={token}", local.url()))
    }

    /// The running room's base URL and REST credentials (key, secret), for the room bar's
    /// administration (`room_admin`).
    pub async fn admin(&self) -> Option<(String, String, String)> {
        let running = self.running.lock().await;
        let local = running.as_ref()?;
        let config = local.server.hub().config();
        Some((
            local.url(),
            config.customer_key.clone(),
            config.customer_secret.clone(),
        ))
    }

    /// Stops the room if it runs.
    pub async fn stop(&self) {
        let room = self.running.lock().await.take();
        if let Some(room) = room {
            room.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_private_and_kept_between_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = config(dir.path()).expect("config");
        assert_eq!(first.token_secret.len(), 64);
        assert!(
            first.placeholder_secrets().is_empty(),
            "no built-in placeholder secret in a local room"
        );
        assert_ne!(first.token_secret, first.customer_secret);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets.json"))
                .expect("secrets file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "secrets readable by others: {mode:o}");
        }
        let second = config(dir.path()).expect("config again");
        assert_eq!(first.token_secret, second.token_secret, "kept between runs");
        assert!(second.listen.ip().is_loopback());
    }

    #[test]
    fn damaged_secrets_are_kept_aside_and_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("secrets.json"), b"{not json").expect("write");
        let config = config(dir.path()).expect("config despite the damaged file");
        assert_eq!(config.token_secret.len(), 64);
        assert_eq!(
            std::fs::read(dir.path().join("secrets.json.bad")).expect("kept aside"),
            b"{not json"
        );
    }

    #[tokio::test]
    async fn the_local_room_answers_health_on_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let room = LocalRoom::start(dir.path()).await.expect("starts");
        let url = room.url();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        let health: serde_json::Value = reqwest::get(format!("{url}/health"))
            .await
            .expect("reachable")
            .json()
            .await
            .expect("json");
        assert_eq!(health["node"], "studio-local");
        room.shutdown().await;
        assert!(
            reqwest::get(format!("{url}/health")).await.is_err(),
            "nothing listens after shutdown"
        );
        assert!(dir.path().join("onmic.sqlite3").exists());
    }

    #[tokio::test]
    async fn listener_links_open_the_page_with_their_own_audience_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = LocalRoomService::new(dir.path().join("room"));
        assert!(
            service.listener_link("studio").await.is_err(),
            "local room off"
        );
        service.start().await.expect("starts");
        service.owner_token("studio").await.expect("room made");
        let a = service.listener_link("studio").await.expect("link");
        let b = service.listener_link("studio").await.expect("link");
        assert_ne!(a, b, "a fresh uid per link");
        let page = reqwest::get(&a).await.expect("page answers");
        assert_eq!(page.status(), 200, "{a}");
        let token = a.split("token=").nth(1).expect("token in the link");
        let secret = config(&dir.path().join("room"))
            .expect("config")
            .token_secret;
        let claims = onmic_room::token::decode(secret.as_bytes(), token).expect("a valid token");
        assert_eq!(claims.room.as_str(), "studio");
        assert!(claims.uid.as_str().starts_with("listener-"));
        let privileges: Vec<_> = claims.grants.iter().map(|g| g.privilege).collect();
        assert!(
            privileges.contains(&onmic_room::token::Privilege::Join)
                && privileges.contains(&onmic_room::token::Privilege::PublishAudio)
                && !privileges.contains(&onmic_room::token::Privilege::Admin),
            "a listener that may apply for a seat, not an admin: {claims:?}"
        );
        service.stop().await;
    }

    #[tokio::test]
    async fn the_service_runs_one_room_and_restarts_on_the_same_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let service = LocalRoomService::new(dir.path().join("room"));
        assert_eq!(service.view().await, None);
        let first = service.start().await.expect("starts");
        assert_eq!(
            service.start().await.expect("again"),
            first,
            "one room, not two"
        );
        service.stop().await;
        assert_eq!(service.view().await, None);
        let second = service.start().await.expect("restarts");
        assert_eq!(second.data_dir, first.data_dir);
        service.stop().await;
    }
}
