//! The DRM song catalog (issue 13, `docs/music.md` "DRM songs"): songs imported with
//! `onmic-server song import` are kept encrypted in the store (a chunked ChaCha20-Poly1305
//! package, [`onmic_room::song_package`], under a random key per song). Members fetch them over
//! [`http`]: search, a signed license bound to their token's uid and room, the song and an expiry,
//! the encrypted package, and the song key (with the lyrics) only against a valid license.
//!
//! This is license-controlled delivery, not unbreakable DRM: a member's client holds the key and
//! the plaintext in memory while it plays, so a modified client can keep them.

pub mod http;

use hmac::{Hmac, Mac};
use onmic_room::Timestamp;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A catalog song as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SongRecord {
    /// The song code (1–64 of `A-Z a-z 0-9 _ -`).
    pub code: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: String,
    /// Duration, ms (probed at import).
    pub duration_ms: u64,
    /// LRC lyrics, checked at import.
    pub lyrics: Option<String>,
    /// The song's own key (kept server-side; handed out only against a valid license).
    pub key: [u8; 32],
    /// The encrypted package.
    pub package: Vec<u8>,
    /// When it was imported.
    pub imported_at: Timestamp,
}

/// A catalog entry as search lists it (no key, no media).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SongSummary {
    /// The song code.
    pub code: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: String,
    /// Duration, ms.
    pub duration_ms: u64,
    /// Encrypted package size, bytes (the download's Content-Length).
    pub package_bytes: u64,
    /// Whether the song has lyrics.
    pub has_lyrics: bool,
}

/// Why a song could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The media is not audio the players decode.
    #[error(
        "{0}: not a playable audio file (MP3, FLAC, AAC/M4A, Ogg Vorbis, WAV) or its duration is unknown"
    )]
    NotAudio(String),
    /// The lyrics are not LRC.
    #[error("the lyrics are not LRC: {0}")]
    Lyrics(String),
    /// A bad code, title or artist.
    #[error("{0}")]
    Invalid(String),
    /// The code is taken.
    #[error("song code {0} is already in the catalog; pick another with --code")]
    Exists(String),
    /// Encryption failed.
    #[error(transparent)]
    Package(#[from] onmic_room::song_package::PackageError),
    /// The store refused.
    #[error(transparent)]
    Store(#[from] crate::StoreError),
}

/// Whether `code` is a valid song code.
pub fn valid_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The duration of an audio file in memory, ms, by probing its container with symphonia.
pub fn probe_duration_ms(bytes: &[u8]) -> Option<u64> {
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;
    let cursor = std::io::Cursor::new(bytes.to_vec());
    let mss = MediaSourceStream::new(Box::new(cursor), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            mss,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .ok()?;
    let track = probed.format.default_track()?;
    let p = &track.codec_params;
    let frames = p.n_frames?;
    let rate = u64::from(p.sample_rate?);
    (rate > 0 && frames > 0).then(|| frames * 1000 / rate)
}

/// What `song import` needs.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// The audio file's bytes.
    pub media: Vec<u8>,
    /// Where they came from (for messages).
    pub media_name: String,
    /// Title.
    pub title: String,
    /// Artist.
    pub artist: String,
    /// LRC text.
    pub lyrics: Option<String>,
    /// The code; `None` derives one from the media's SHA-256.
    pub code: Option<String>,
}

/// Encrypts a song into the catalog; returns its summary.
pub fn import(
    store: &dyn crate::Store,
    req: ImportRequest,
    now: Timestamp,
) -> Result<SongSummary, ImportError> {
    let text_ok = |what: &str, s: &str| {
        if s.trim().is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
            Err(ImportError::Invalid(format!(
                "the {what} must be 1-200 characters without control characters"
            )))
        } else {
            Ok(())
        }
    };
    text_ok("title", &req.title)?;
    text_ok("artist", &req.artist)?;
    let code = match req.code {
        Some(c) => c,
        None => hex::encode(&Sha256::digest(&req.media)[..6]),
    };
    if !valid_code(&code) {
        return Err(ImportError::Invalid(format!(
            "song code {code:?} must be 1-64 characters of A-Z, a-z, 0-9, _ and -"
        )));
    }
    if let Some(l) = &req.lyrics {
        check_lrc(l).map_err(ImportError::Lyrics)?;
    }
    let duration_ms = probe_duration_ms(&req.media)
        .ok_or_else(|| ImportError::NotAudio(req.media_name.clone()))?;
    let key = onmic_room::song_package::new_key();
    let package = onmic_room::song_package::encrypt(&key, &req.media)?;
    let record = SongRecord {
        code: code.clone(),
        title: req.title.trim().to_owned(),
        artist: req.artist.trim().to_owned(),
        duration_ms,
        lyrics: req.lyrics,
        key,
        package,
        imported_at: now,
    };
    if !store.insert_song(&record)? {
        return Err(ImportError::Exists(code));
    }
    Ok(SongSummary {
        code,
        title: record.title,
        artist: record.artist,
        duration_ms,
        package_bytes: record.package.len() as u64,
        has_lyrics: record.lyrics.is_some(),
    })
}

/// A light LRC check at import (the client parses fully): every non-empty line starts with a
/// `[` tag, and at least one is a time tag.
pub fn check_lrc(text: &str) -> Result<(), String> {
    if text.len() > 1 << 20 {
        return Err("over 1 MiB".into());
    }
    let mut timed = false;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() {
            continue;
        }
        let Some(tag) = line.strip_prefix('[').and_then(|l| l.split_once(']')) else {
            return Err(format!("line {}: expected [mm:ss.xx]text", i + 1));
        };
        timed |= tag.0.starts_with(|c: char| c.is_ascii_digit());
    }
    if timed {
        Ok(())
    } else {
        Err("no timed line (expected lines like [01:02.50]text)".into())
    }
}

/// What a license says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseClaims {
    /// The song code.
    pub song: String,
    /// The room.
    pub room: String,
    /// The member.
    pub uid: String,
    /// The customer application.
    pub app: String,
    /// Issued, ms since the epoch.
    pub iat: u64,
    /// Expires, ms since the epoch.
    pub exp: u64,
}

const LICENSE_PREFIX: &str = "sl1";

fn license_mac(secret: &[u8]) -> Hmac<Sha256> {
    // Domain-separated from room tokens: the license key is HMAC(token_secret, label).
    let mut k = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key");
    k.update(b"onmic song license v1");
    let key = k.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key")
}

/// Signs a license: `sl1.<hex claims JSON>.<hex HMAC-SHA256>`.
pub fn sign_license(secret: &[u8], claims: &LicenseClaims) -> String {
    let body = hex::encode(serde_json::to_vec(claims).unwrap_or_default());
    let mut m = license_mac(secret);
    m.update(format!("{LICENSE_PREFIX}.{body}").as_bytes());
    format!(
        "{LICENSE_PREFIX}.{body}.{}",
        hex::encode(m.finalize().into_bytes())
    )
}

/// Checks a license's signature and returns its claims (expiry and binding are the caller's).
pub fn open_license(secret: &[u8], license: &str) -> Result<LicenseClaims, &'static str> {
    if license.len() > 4096 {
        return Err("the license is too long");
    }
    let mut parts = license.split('.');
    let (Some(LICENSE_PREFIX), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the license is not sl1.<claims>.<signature>");
    };
    let sig = hex::decode(sig).map_err(|_| "the license signature is not hex")?;
    let mut m = license_mac(secret);
    m.update(format!("{LICENSE_PREFIX}.{body}").as_bytes());
    m.verify_slice(&sig)
        .map_err(|_| "the license signature does not match (not issued by this server)")?;
    let json = hex::decode(body).map_err(|_| "the license claims are not hex")?;
    serde_json::from_slice(&json).map_err(|_| "the license claims are not valid JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn licenses_verify_and_refuse_forgeries() {
        let c = LicenseClaims {
            song: "s1".into(),
            room: "r".into(),
            uid: "u".into(),
            app: "a".into(),
            iat: 1,
            exp: 2,
        };
        let l = sign_license(b"secret", &c);
        assert_eq!(open_license(b"secret", &l), Ok(c.clone()));
        assert!(open_license(b"other", &l).is_err());
        let forged = sign_license(
            b"secret",
            &LicenseClaims {
                uid: "v".into(),
                ..c
            },
        );
        let (head, _) = forged.rsplit_once('.').unwrap();
        let sig = l.rsplit_once('.').unwrap().1;
        assert!(open_license(b"secret", &format!("{head}.{sig}")).is_err());
        for bad in ["", "sl1", "sl1..", "x.y.z", "sl1.zz.zz", "sl1.00.00.00"] {
            assert!(open_license(b"secret", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lrc_check_and_codes() {
        assert!(check_lrc("[ti:x]\n[00:01.00]a").is_ok());
        assert!(check_lrc("[ti:x]").is_err());
        assert!(check_lrc("plain text").is_err());
        assert!(valid_code("abc-01_X"));
        assert!(!valid_code("a b") && !valid_code("") && !valid_code(&"a".repeat(65)));
    }
}
