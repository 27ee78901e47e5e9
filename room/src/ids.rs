//! Identifiers and time as newtypes, so a uid is never confused with a room id or a seat index.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// A user id, chosen by the customer's app.
    Uid
);
string_id!(
    /// A room id. Room ids may carry a placement hint (e.g. a `node/` prefix) later.
    RoomId
);
string_id!(
    /// The customer application a token and a room belong to.
    AppId
);
string_id!(
    /// A gift in the catalog.
    GiftId
);

/// The position of a seat in a room: 0 is the owner's seat, then the regular seats, then the
/// boss seat when the room has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SeatIndex(pub u16);

impl fmt::Display for SeatIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A point in time: milliseconds since the Unix epoch. The domain never reads a clock; callers
/// pass the time in.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// This instant plus a duration (saturating).
    pub fn plus(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// This instant minus a duration (saturating at the epoch).
    pub fn minus(self, d: Duration) -> Timestamp {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

/// Longest uid, in characters (Unicode scalar values).
pub const MAX_UID_CHARS: usize = 64;
/// Longest room id, in characters.
pub const MAX_ROOM_ID_CHARS: usize = 64;
/// ASCII punctuation a uid may hold besides letters, digits and marks.
pub const UID_PUNCTUATION: &str = "-_.@:+";

/// Why an id was refused (the identity rule of `docs/protocol.md`, "Identities").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Empty, or longer than the limit.
    #[error("{what} must be 1-{max} characters")]
    Length {
        /// `uid` or `room id`.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// Not in Unicode Normalization Form C.
    #[error("{what} must be in Unicode NFC (normalise it before use)")]
    NotNfc {
        /// `uid` or `room id`.
        what: &'static str,
    },
    /// A character outside the allowed set (control, format, bidi, invisible, space, symbol...).
    #[error("{what} may not contain {found:?} (U+{code:04X})")]
    BadChar {
        /// `uid` or `room id`.
        what: &'static str,
        /// The character.
        found: char,
        /// Its code point.
        code: u32,
    },
    /// `.` or `..`: not a room id (a URL path segment would change meaning).
    #[error("room id may not be \".\" or \"..\"")]
    DotSegment,
}

impl IdError {
    /// The wire error code: `invalid_uid` or `invalid_room_id`.
    pub fn code(&self) -> &'static str {
        match self {
            IdError::Length { what, .. }
            | IdError::NotNfc { what }
            | IdError::BadChar { what, .. }
                if *what == "uid" =>
            {
                "invalid_uid"
            }
            _ => "invalid_room_id",
        }
    }
}

fn uid_char_allowed(c: char) -> bool {
    use unicode_security::GeneralSecurityProfile;
    UID_PUNCTUATION.contains(c)
        || (c.identifier_allowed() && !c.is_whitespace() && !UID_FORBIDDEN_PUNCTUATION.contains(c))
}

/// Characters TR39 allows in identifiers but that are not letters, digits or marks a uid needs
/// (apostrophe, middle dot, ...): refused so that uids stay plain.
const UID_FORBIDDEN_PUNCTUATION: &str =
    "'`\u{b7}\u{387}\u{5f3}\u{5f4}\u{f0b}\u{200c}\u{200d}\u{2010}\u{2019}\u{2027}\u{30a0}\u{30fb}";

/// Checks a uid against the identity rule: 1–[`MAX_UID_CHARS`] characters, NFC, each a letter,
/// digit or mark with Unicode TR39 `Identifier_Status=Allowed` or one of [`UID_PUNCTUATION`].
/// So no control, format (bidi overrides, zero-width), whitespace or symbol characters.
pub fn check_uid(uid: &str) -> Result<(), IdError> {
    let what = "uid";
    let n = uid.chars().count();
    if n == 0 || n > MAX_UID_CHARS {
        return Err(IdError::Length {
            what,
            max: MAX_UID_CHARS,
        });
    }
    if let Some(c) = uid.chars().find(|c| !uid_char_allowed(*c)) {
        return Err(IdError::BadChar {
            what,
            found: c,
            code: u32::from(c),
        });
    }
    if !unicode_normalization::is_nfc(uid) {
        return Err(IdError::NotNfc { what });
    }
    Ok(())
}

/// Checks a room id: 1–[`MAX_ROOM_ID_CHARS`] of ASCII `A-Z a-z 0-9 - _ .`, not `.` or `..` —
/// so every room id is its own URL path segment, unescaped.
pub fn check_room_id(id: &str) -> Result<(), IdError> {
    let what = "room id";
    if id.is_empty() || id.len() > MAX_ROOM_ID_CHARS {
        return Err(IdError::Length {
            what,
            max: MAX_ROOM_ID_CHARS,
        });
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.".contains(*c)))
    {
        return Err(IdError::BadChar {
            what,
            found: c,
            code: u32::from(c),
        });
    }
    if id == "." || id == ".." {
        return Err(IdError::DotSegment);
    }
    Ok(())
}

/// What an id looks like, as two keys: the Unicode TR39 confusable skeleton of its NFKC,
/// lower-cased form (catches case, full-width and compatibility forms: `Owner`, `ｏwner`), and the
/// lower-cased skeleton of its NFKC form (catches look-alikes across case: `paypaI`, `0wner`).
/// Two ids render alike when either key is equal ([`looks_alike`]).
pub fn look_alike_keys(id: &str) -> (String, String) {
    use unicode_normalization::UnicodeNormalization;
    let fold = |s: &str| -> String { s.nfkc().flat_map(char::to_lowercase).collect() };
    let folded = fold(id);
    let by_case: String = unicode_security::skeleton(&folded).collect();
    let nfkc: String = id.nfkc().collect();
    let skeleton: String = unicode_security::skeleton(&nfkc).collect();
    let by_glyph: String = unicode_security::skeleton(&fold(&skeleton)).collect();
    (by_case, by_glyph)
}

/// Whether two ids render alike (see [`look_alike_keys`]). A room never holds two members, and a
/// server never two rooms, that look alike.
pub fn looks_alike(a: &str, b: &str) -> bool {
    let (a1, a2) = look_alike_keys(a);
    let (b1, b2) = look_alike_keys(b);
    a1 == b1 || a2 == b2
}

impl Uid {
    /// Checks this uid against the identity rule ([`check_uid`]).
    pub fn check(&self) -> Result<(), IdError> {
        check_uid(&self.0)
    }
}

impl RoomId {
    /// Checks this room id against the identity rule ([`check_room_id`]).
    pub fn check(&self) -> Result<(), IdError> {
        check_room_id(&self.0)
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn reported_uids_are_refused() {
        for bad in [
            " ",
            "a\0b",
            "line\nbreak",
            "\u{202e}evil",
            "owner ",
            "ｏwner",
            "a\u{200b}b",
            "\u{feff}\u{200d}",
            "\u{1b}[31mred",
            "",
        ] {
            let e = check_uid(bad).expect_err(bad);
            assert_eq!(e.code(), "invalid_uid", "{bad:?}");
        }
        let long = "a".repeat(5000);
        assert!(matches!(check_uid(&long), Err(IdError::Length { .. })));
        // NFD instead of NFC.
        assert!(matches!(
            check_uid("ce\u{301}line"),
            Err(IdError::NotNfc { .. })
        ));
        for good in [
            "owner",
            "céline",
            "用户42",
            "user.name@example.com",
            "a-b_c:d+e",
        ] {
            check_uid(good).expect(good);
        }
    }

    #[test]
    fn room_ids_are_url_path_segments() {
        for bad in ["x/sub", "..", ".", "", "a b", "a%2Fb", "é", "a?b", "a#b"] {
            assert_eq!(check_room_id(bad).expect_err(bad).code(), "invalid_room_id");
        }
        assert!(check_room_id(&"r".repeat(65)).is_err());
        for good in ["r1", "room-1_a.b", "...", ".x"] {
            check_room_id(good).expect(good);
        }
    }

    #[test]
    fn look_alikes_share_a_key() {
        for alike in ["Owner", "OWNER", "ｏwner", "0wner", "owner", "owne\u{72}"] {
            assert!(looks_alike(alike, "owner"), "{alike}");
        }
        for (a, b) in [
            ("rn", "m"),
            ("paypal", "paypaI"),
            ("Iris", "iris"),
            ("admin", "аdmin"),
        ] {
            assert!(looks_alike(a, b), "{a} {b}");
        }
        assert!(!looks_alike("alice", "bob"));
        assert!(!looks_alike("user1", "user2"));
    }
}
