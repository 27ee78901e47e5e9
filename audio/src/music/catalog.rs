//! DRM catalog songs on the client side: decrypt a downloaded song package in memory into a
//! [`MusicSource::Memory`] the [`super::MusicPlayer`] plays like a file (plaintext never touches
//! the disk), and [`CatalogClient`] for the server's `/v1/songs` routes (search, license,
//! download with progress, key). See `docs/music.md`, "DRM songs".

use std::io::Read;
use std::sync::Arc;

use onmic_room::song_package::{Decryptor, PackageError};

use super::MusicSource;
use super::lyrics::{LrcError, Lyrics};

/// Why a catalog song could not be fetched or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The package is damaged, altered or not this key's.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The server refused, with its `{code, message}`.
    #[error("the song server refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code (`docs/protocol.md`).
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached or sent something unreadable.
    #[error("cannot reach the song server: {0}")]
    Http(String),
    /// The song's key is not valid hex of 32 bytes.
    #[error("the server sent a malformed song key")]
    BadKey,
    /// The song's lyrics are malformed.
    #[error(transparent)]
    Lyrics(#[from] LrcError),
}

/// A decrypted song, in memory only.
#[derive(Debug, Clone)]
pub struct DecryptedSong {
    /// Play it with `MusicPlayer::open(&source, …)`.
    pub source: MusicSource,
    /// Its lyrics, if the catalog has them.
    pub lyrics: Option<Lyrics>,
}

/// Decrypts a whole package with `key` into a playable in-memory source.
pub fn decrypt_to_source(package: &[u8], key: &[u8]) -> Result<MusicSource, PackageError> {
    let plain = onmic_room::song_package::decrypt(key, package)?;
    Ok(MusicSource::Memory(Arc::from(plain)))
}

/// A catalog entry as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SongInfo {
    /// The song code.
    pub code: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: String,
    /// Duration, ms.
    pub duration_ms: u64,
    /// Encrypted package size, bytes.
    pub package_bytes: u64,
    /// Whether the catalog has lyrics for it.
    pub has_lyrics: bool,
}

/// A license as the server issues it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct License {
    /// The signed license string to send back.
    pub license: String,
    /// The song code.
    pub song: String,
    /// The room.
    pub room: String,
    /// The member.
    pub uid: String,
    /// Expiry, ms since the epoch.
    pub expires_at: u64,
}

/// A client for the server's song routes, authenticated with the member's room token.
#[derive(Debug, Clone)]
pub struct CatalogClient {
    base: String,
    token: String,
    agent: ureq::Agent,
}

fn refused(status: u16, body: &str) -> CatalogError {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    CatalogError::Refused {
        status,
        code: v["code"].as_str().unwrap_or("unknown").to_owned(),
        message: v["message"].as_str().unwrap_or(body).to_owned(),
    }
}

impl CatalogClient {
    /// `base` is the server URL (`http://host:port`), `token` the member's room token.
    pub fn new(base: &str, token: &str) -> CatalogClient {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        CatalogClient {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            agent,
        }
    }

    fn json(
        &self,
        resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<serde_json::Value, CatalogError> {
        let mut resp = resp.map_err(|e| CatalogError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| CatalogError::Http(e.to_string()))?;
        if status != 200 {
            return Err(refused(status, &body));
        }
        serde_json::from_str(&body).map_err(|e| CatalogError::Http(e.to_string()))
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Searches the catalog (title, artist or code containing `q`; empty lists all).
    pub fn search(&self, q: &str) -> Result<Vec<SongInfo>, CatalogError> {
        let v = self.json(
            self.agent
                .get(format!("{}/v1/songs", self.base))
                .query("q", q)
                .header("Authorization", &self.auth())
                .call(),
        )?;
        serde_json::from_value(v["songs"].clone()).map_err(|e| CatalogError::Http(e.to_string()))
    }

    /// Gets a license for `code` in the token's room, valid for `ttl_secs`.
    pub fn license(&self, code: &str, ttl_secs: u64) -> Result<License, CatalogError> {
        let v = self.json(
            self.agent
                .post(format!("{}/v1/songs/{code}/license", self.base))
                .header("Authorization", &self.auth())
                .header("Content-Type", "application/json")
                .send(serde_json::json!({ "ttl_secs": ttl_secs }).to_string()),
        )?;
        serde_json::from_value(v).map_err(|e| CatalogError::Http(e.to_string()))
    }

    /// Downloads the encrypted package and decrypts it as it arrives; `progress(received,
    /// total)` is called after each read. Then fetches the key with the license. The plaintext
    /// exists only in memory.
    pub fn preload(
        &self,
        license: &License,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<DecryptedSong, CatalogError> {
        let key = self.json(
            self.agent
                .post(format!("{}/v1/songs/{}/key", self.base, license.song))
                .header("Authorization", &self.auth())
                .header("Content-Type", "application/json")
                .send(serde_json::json!({ "license": license.license }).to_string()),
        )?;
        let hex_key = key["key"].as_str().ok_or(CatalogError::BadKey)?;
        let key_bytes = decode_hex(hex_key).ok_or(CatalogError::BadKey)?;
        let lyrics = match key["lyrics"].as_str() {
            Some(text) if !text.is_empty() => Some(Lyrics::parse(text)?),
            _ => None,
        };
        let resp = self
            .agent
            .get(format!("{}/v1/songs/{}/package", self.base, license.song))
            .header("Authorization", &self.auth())
            .header("X-Onmic-License", &license.license)
            .call()
            .map_err(|e| CatalogError::Http(e.to_string()))?;
        let status = resp.status().as_u16();
        let total = resp
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = resp.into_body();
        if status != 200 {
            let text = body.read_to_string().unwrap_or_default();
            return Err(refused(status, &text));
        }
        let mut reader = body.as_reader();
        let mut dec = Decryptor::new(&key_bytes)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| CatalogError::Http(e.to_string()))?;
            if n == 0 {
                break;
            }
            dec.push(&buf[..n])?;
            progress(dec.progress().0, total);
        }
        let plain = dec.finish()?;
        Ok(DecryptedSong {
            source: MusicSource::Memory(Arc::from(plain)),
            lyrics,
        })
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}
