//! Access tokens: HMAC-SHA256 over the app id, room, uid and privileges, each privilege with its
//! own validity window.
//!
//! Compact form: `v1.<base64url(JSON claims)>.<base64url(HMAC-SHA256(secret, "v1." + claims part))>`.
//! The signature is checked (in constant time) before the claims are trusted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::ids::{AppId, RoomId, Timestamp, Uid};

const PREFIX: &str = "v1";
/// Longest token string accepted, to keep parsing bounded.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Privilege {
    /// Enter the room.
    Join,
    /// Take a seat and publish audio.
    PublishAudio,
    /// Act as a room admin.
    Admin,
}

/// One privilege and the window in which it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// The privilege.
    pub privilege: Privilege,
    /// Not valid before this time (inclusive).
    pub not_before: Timestamp,
    /// Not valid from this time on.
    pub expires: Timestamp,
}

/// The signed content of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The customer application.
    pub app: AppId,
    /// The room the token is for.
    pub room: RoomId,
    /// The user.
    pub uid: Uid,
    /// When the token was issued.
    pub issued: Timestamp,
    /// Privileges, each with its own window.
    pub grants: Vec<Grant>,
}

impl Claims {
    /// Whether `privilege` holds at `now`.
    pub fn allows(&self, privilege: Privilege, now: Timestamp) -> bool {
        self.grants
            .iter()
            .any(|g| g.privilege == privilege && g.not_before <= now && now < g.expires)
    }

    /// The end of `privilege`'s window, if the token grants it at `now`.
    pub fn valid_until(&self, privilege: Privilege, now: Timestamp) -> Option<Timestamp> {
        self.grants
            .iter()
            .filter(|g| g.privilege == privilege && g.not_before <= now && now < g.expires)
            .map(|g| g.expires)
            .max()
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Empty, too long, wrong number of parts, or an unknown version prefix.
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    /// A part is not valid base64url or the claims are not valid JSON.
    #[error("token encoding is invalid: {0}")]
    BadEncoding(&'static str),
    /// The signature does not match the claims under this server's secret.
    #[error("token signature is invalid")]
    BadSignature,
    /// The token was issued for another application.
    #[error("token is for app {found}, expected {expected}")]
    WrongApp {
        /// The app the server serves.
        expected: AppId,
        /// The app in the token.
        found: AppId,
    },
    /// The token was issued for another room.
    #[error("token is for room {found}, expected {expected}")]
    WrongRoom {
        /// The room being joined.
        expected: RoomId,
        /// The room in the token.
        found: RoomId,
    },
    /// The token does not grant this privilege at all.
    #[error("token does not grant {0:?}")]
    MissingPrivilege(Privilege),
    /// The privilege's window has not started yet.
    #[error("token privilege {privilege:?} is not valid before {not_before:?}")]
    NotYetValid {
        /// The privilege asked for.
        privilege: Privilege,
        /// When it starts.
        not_before: Timestamp,
    },
    /// The privilege's window has ended.
    #[error("token privilege {privilege:?} expired at {expired:?}")]
    Expired {
        /// The privilege asked for.
        privilege: Privilege,
        /// When it ended.
        expired: Timestamp,
    },
}

impl TokenError {
    /// Every code [`TokenError::code`] returns (`docs/protocol.md` lists them; a test compares).
    pub const CODES: &'static [&'static str] = &[
        "token_malformed",
        "token_bad_encoding",
        "token_bad_signature",
        "token_wrong_app",
        "token_wrong_room",
        "token_missing_privilege",
        "token_not_yet_valid",
        "token_expired",
    ];

    /// The wire error code (see `docs/protocol.md`).
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "token_malformed",
            TokenError::BadEncoding(_) => "token_bad_encoding",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::WrongApp { .. } => "token_wrong_app",
            TokenError::WrongRoom { .. } => "token_wrong_room",
            TokenError::MissingPrivilege(_) => "token_missing_privilege",
            TokenError::NotYetValid { .. } => "token_not_yet_valid",
            TokenError::Expired { .. } => "token_expired",
        }
    }
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// Signs claims into the compact string form.
pub fn issue(secret: &[u8], claims: &Claims) -> String {
    let json = serde_json::to_vec(claims).expect("claims always serialize");
    let body = B64.encode(json);
    let signed = format!("{PREFIX}.{body}");
    let mut m = mac(secret);
    m.update(signed.as_bytes());
    let sig = B64.encode(m.finalize().into_bytes());
    format!("{signed}.{sig}")
}

/// Checks the signature and decodes the claims, without checking app, room or time.
pub fn decode(secret: &[u8], token: &str) -> Result<Claims, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Malformed("empty"));
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(version), Some(body), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed("expected three dot-separated parts"));
    };
    if version != PREFIX {
        return Err(TokenError::Malformed("unknown version prefix"));
    }
    if body.is_empty() || sig.is_empty() {
        return Err(TokenError::Malformed("empty part"));
    }
    let sig = B64
        .decode(sig)
        .map_err(|_| TokenError::BadEncoding("signature is not base64url"))?;
    let mut m = mac(secret);
    m.update(version.as_bytes());
    m.update(b".");
    m.update(body.as_bytes());
    m.verify_slice(&sig).map_err(|_| TokenError::BadSignature)?;
    let json = B64
        .decode(body)
        .map_err(|_| TokenError::BadEncoding("claims are not base64url"))?;
    serde_json::from_slice(&json).map_err(|_| TokenError::BadEncoding("claims are not valid JSON"))
}

/// Verifies a token for joining `room` of `app` at `now`; returns the claims.
pub fn verify(
    secret: &[u8],
    token: &str,
    app: &AppId,
    room: &RoomId,
    now: Timestamp,
) -> Result<Claims, TokenError> {
    let claims = decode(secret, token)?;
    if &claims.app != app {
        return Err(TokenError::WrongApp {
            expected: app.clone(),
            found: claims.app,
        });
    }
    if &claims.room != room {
        return Err(TokenError::WrongRoom {
            expected: room.clone(),
            found: claims.room,
        });
    }
    check_privilege(&claims, Privilege::Join, now)?;
    Ok(claims)
}

/// Explains why `privilege` does not hold at `now`, or returns `Ok`.
pub fn check_privilege(
    claims: &Claims,
    privilege: Privilege,
    now: Timestamp,
) -> Result<(), TokenError> {
    if claims.allows(privilege, now) {
        return Ok(());
    }
    let mut grants = claims.grants.iter().filter(|g| g.privilege == privilege);
    match grants.next() {
        None => Err(TokenError::MissingPrivilege(privilege)),
        Some(g) if now < g.not_before => Err(TokenError::NotYetValid {
            privilege,
            not_before: g.not_before,
        }),
        Some(g) => Err(TokenError::Expired {
            privilege,
            expired: g.expires,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";

    fn claims(nb: u64, exp: u64) -> Claims {
        Claims {
            app: "app1".into(),
            room: "r1".into(),
            uid: "u1".into(),
            issued: Timestamp(nb),
            grants: vec![
                Grant {
                    privilege: Privilege::Join,
                    not_before: Timestamp(nb),
                    expires: Timestamp(exp),
                },
                Grant {
                    privilege: Privilege::PublishAudio,
                    not_before: Timestamp(nb),
                    expires: Timestamp(exp / 2),
                },
            ],
        }
    }

    fn check(token: &str, now: u64) -> Result<Claims, TokenError> {
        verify(SECRET, token, &"app1".into(), &"r1".into(), Timestamp(now))
    }

    #[test]
    fn valid_token_is_accepted_with_per_privilege_expiry() {
        let t = issue(SECRET, &claims(1000, 10_000));
        let c = check(&t, 2000).expect("valid");
        assert_eq!(c.uid, Uid::from("u1"));
        assert!(c.allows(Privilege::PublishAudio, Timestamp(4999)));
        assert!(!c.allows(Privilege::PublishAudio, Timestamp(5000)));
        assert!(!c.allows(Privilege::Admin, Timestamp(2000)));
        assert_eq!(
            check_privilege(&c, Privilege::Admin, Timestamp(2000)),
            Err(TokenError::MissingPrivilege(Privilege::Admin))
        );
    }

    #[test]
    fn expired_and_not_yet_valid_are_refused() {
        let t = issue(SECRET, &claims(1000, 10_000));
        assert!(matches!(
            check(&t, 10_000),
            Err(TokenError::Expired {
                privilege: Privilege::Join,
                ..
            })
        ));
        assert!(matches!(
            check(&t, 999),
            Err(TokenError::NotYetValid {
                privilege: Privilege::Join,
                ..
            })
        ));
    }

    #[test]
    fn forged_signature_and_other_secret_are_refused() {
        let t = issue(SECRET, &claims(0, 10_000));
        assert_eq!(
            verify(b"other", &t, &"app1".into(), &"r1".into(), Timestamp(1)),
            Err(TokenError::BadSignature)
        );
        // Tamper with the claims: give ourselves another uid, keep the old signature.
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(0, 10_000);
        c.uid = "admin".into();
        let forged_body = B64.encode(serde_json::to_vec(&c).unwrap());
        let forged = format!("v1.{forged_body}.{}", parts[2]);
        assert_eq!(check(&forged, 1), Err(TokenError::BadSignature));
        // A signature that is valid base64url but of the wrong length.
        let short = format!("v1.{}.{}", parts[1], &parts[2][..12]);
        assert_eq!(check(&short, 1), Err(TokenError::BadSignature));
    }

    #[test]
    fn wrong_room_and_wrong_app_are_refused() {
        let t = issue(SECRET, &claims(0, 10_000));
        assert!(matches!(
            verify(SECRET, &t, &"app1".into(), &"r2".into(), Timestamp(1)),
            Err(TokenError::WrongRoom { .. })
        ));
        assert!(matches!(
            verify(SECRET, &t, &"app2".into(), &"r1".into(), Timestamp(1)),
            Err(TokenError::WrongApp { .. })
        ));
    }

    #[test]
    fn truncated_and_garbage_strings_are_refused() {
        let t = issue(SECRET, &claims(0, 10_000));
        let cut = &t[..t.rfind('.').unwrap()];
        assert!(matches!(check(cut, 1), Err(TokenError::Malformed(_))));
        let cut_sig = &t[..t.len() - 3];
        assert_eq!(check(cut_sig, 1), Err(TokenError::BadSignature));
        assert!(matches!(check("", 1), Err(TokenError::Malformed(_))));
        assert!(matches!(check("garbage", 1), Err(TokenError::Malformed(_))));
        assert!(matches!(check("v2.a.b", 1), Err(TokenError::Malformed(_))));
        assert!(matches!(
            check("v1.a.b.c", 1),
            Err(TokenError::Malformed(_))
        ));
        assert!(matches!(
            check("v1.!!!.@@@", 1),
            Err(TokenError::BadEncoding(_))
        ));
        let long = "v1.".to_owned() + &"a".repeat(MAX_TOKEN_LEN);
        assert!(matches!(check(&long, 1), Err(TokenError::Malformed(_))));
        // Signed garbage claims: the signature is right but the JSON is not claims.
        let body = B64.encode(b"[1,2,3]");
        let mut m = mac(SECRET);
        m.update(format!("v1.{body}").as_bytes());
        let sig = B64.encode(m.finalize().into_bytes());
        assert!(matches!(
            check(&format!("v1.{body}.{sig}"), 1),
            Err(TokenError::BadEncoding(_))
        ));
    }

    #[test]
    fn every_refusal_has_its_own_code() {
        let codes = [
            TokenError::Malformed("x").code(),
            TokenError::BadEncoding("x").code(),
            TokenError::BadSignature.code(),
            TokenError::WrongApp {
                expected: "a".into(),
                found: "b".into(),
            }
            .code(),
            TokenError::WrongRoom {
                expected: "a".into(),
                found: "b".into(),
            }
            .code(),
            TokenError::MissingPrivilege(Privilege::Join).code(),
            TokenError::NotYetValid {
                privilege: Privilege::Join,
                not_before: Timestamp(0),
            }
            .code(),
            TokenError::Expired {
                privilege: Privilege::Join,
                expired: Timestamp(0),
            }
            .code(),
        ];
        let set: std::collections::BTreeSet<_> = codes.iter().copied().collect();
        assert_eq!(set.len(), codes.len());
        assert_eq!(set, TokenError::CODES.iter().copied().collect());
    }
}
