//! The WebSocket wire protocol: JSON text frames `{"id": n, "type": "...", ...}` from the client,
//! and tagged messages from the server. Every message and error code is listed in
//! `docs/protocol.md`. Decoding never panics: any input is a message or a typed [`DecodeError`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::command::Action;
use crate::config::Gift;
use crate::ids::{GiftId, RoomId, Uid};
use crate::room::LostSeat;
use crate::state::{Event, Member, Role, RoomState};

/// Largest client frame accepted, in bytes. Larger frames close the connection (`too_large`).
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024;

/// Largest client frame accepted before `join` succeeds (a join is a room id and a token of at
/// most 4 KiB). Larger frames close the connection (`too_large`, 1009).
pub const MAX_PREJOIN_BYTES: usize = 8 * 1024;

/// Request types that are owner/admin actions: recorded in the audit log when they succeed.
pub const ADMIN_ACTION_TYPES: &[&str] = &[
    "invite",
    "approve",
    "reject",
    "kick_from_seat",
    "mute_seat",
    "unmute_seat",
    "lock_seat",
    "unlock_seat",
    "move_seat",
    "set_admin",
    "kick",
    "unban",
    "mute_chat",
    "unmute_chat",
    "dismiss",
    "notice",
    "set_rules",
];

/// Client request types that are room actions (the `type` of [`Action`] variants a member may
/// send; `enter`, `grant_floor`, `revoke_floor` and `report_bombing` are server-side only).
pub const ACTION_TYPES: &[&str] = &[
    "leave",
    "apply",
    "cancel_apply",
    "accept_invite",
    "decline_invite",
    "take_seat",
    "leave_seat",
    "mute_self",
    "unmute_self",
    "invite",
    "approve",
    "reject",
    "kick_from_seat",
    "mute_seat",
    "unmute_seat",
    "lock_seat",
    "unlock_seat",
    "move_seat",
    "set_admin",
    "kick",
    "unban",
    "mute_chat",
    "unmute_chat",
    "dismiss",
    "set_rules",
    "chat",
    "send_gift",
    "notice",
    "custom",
];

/// A decoded client frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// Correlation id, echoed in the reply.
    pub id: Option<u64>,
    /// What the client asks.
    pub request: Request,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Enter a room with a token; must come first.
    Join {
        /// The room.
        room: RoomId,
        /// The token.
        token: String,
        /// How much of the membership this connection follows (default: every member).
        membership: MembershipView,
        /// Whether this connection gets `volume_indication` (default: yes).
        volumes: bool,
    },
    /// A page of the room's members, ordered by uid.
    Members {
        /// Start after this uid (none: from the first).
        after: Option<Uid>,
        /// At most this many (default [`MEMBERS_PAGE`], at most [`MAX_MEMBERS_PAGE`]).
        limit: Option<u32>,
    },
    /// Keep-alive.
    Heartbeat,
    /// Ask for the full state.
    Snapshot,
    /// A room action.
    Action(Action),
}

#[derive(Deserialize)]
struct JoinBody {
    room: RoomId,
    token: String,
    #[serde(default)]
    membership: MembershipView,
    #[serde(default = "yes")]
    volumes: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct MembersBody {
    #[serde(default)]
    after: Option<Uid>,
    #[serde(default)]
    limit: Option<u32>,
}

/// Members per `members` page when the request names no `limit`.
pub const MEMBERS_PAGE: u32 = 100;
/// The largest `members` page (a larger `limit` gets this many).
pub const MAX_MEMBERS_PAGE: u32 = 500;

/// How much of the room's membership a connection follows (`join`'s `membership`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MembershipView {
    /// Every member in snapshots, every `member_joined` and `member_left` (the default).
    #[default]
    Full,
    /// For large audiences: snapshots list only the owner, admins, seated members and the
    /// connection's own uid; `member_joined`/`member_left` of other members are left out (so
    /// event versions may skip); `member_count` says how many are in the room, at most once a
    /// second; `members` pages through them.
    Counts,
}

/// Why a frame was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("message of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Frame size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON, not an object, or fields of the wrong shape.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// No `type` field.
    #[error("message has no type")]
    MissingType,
    /// A `type` the server does not know.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A binary frame.
    #[error("binary frames are not supported")]
    Binary,
}

impl DecodeError {
    /// Every code [`DecodeError::code`] returns.
    pub const CODES: &'static [&'static str] = &[
        "too_large",
        "malformed",
        "missing_type",
        "unknown_type",
        "binary_frame",
    ];

    /// The wire error code.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Malformed(_) => "malformed",
            DecodeError::MissingType => "missing_type",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::Binary => "binary_frame",
        }
    }
}

/// A decode failure with the request id, when one could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeFailure {
    /// The id, if the frame had a readable one.
    pub id: Option<u64>,
    /// What was wrong.
    pub error: DecodeError,
}

/// Decodes one client text frame.
pub fn decode_client(text: &str) -> Result<ClientMessage, DecodeFailure> {
    let fail = |id, error| DecodeFailure { id, error };
    if text.len() > MAX_MESSAGE_BYTES {
        let error = DecodeError::TooLarge {
            size: text.len(),
            max: MAX_MESSAGE_BYTES,
        };
        return Err(fail(None, error));
    }
    let value = parse_unique(text).map_err(|e| fail(None, DecodeError::Malformed(e)))?;
    let Value::Object(mut obj) = value else {
        return Err(fail(
            None,
            DecodeError::Malformed("expected a JSON object".into()),
        ));
    };
    let id = match obj.remove("id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|id| *id <= crate::config::MAX_SAFE_INTEGER)
                .ok_or_else(|| {
                    fail(
                        None,
                        DecodeError::Malformed(
                            "id must be an integer from 0 to 2^53-1 (9007199254740991)".into(),
                        ),
                    )
                })?,
        ),
    };
    let ty = match obj.get("type") {
        None => return Err(fail(id, DecodeError::MissingType)),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(fail(
                id,
                DecodeError::Malformed("type must be a string".into()),
            ));
        }
    };
    let malformed = |e: serde_json::Error| fail(id, DecodeError::Malformed(field_error(&e)));
    let request = match ty.as_str() {
        "join" => {
            let b: JoinBody = serde_json::from_value(Value::Object(obj)).map_err(malformed)?;
            Request::Join {
                room: b.room,
                token: b.token,
                membership: b.membership,
                volumes: b.volumes,
            }
        }
        "members" => {
            let b: MembersBody = serde_json::from_value(Value::Object(obj)).map_err(malformed)?;
            Request::Members {
                after: b.after,
                limit: b.limit,
            }
        }
        "heartbeat" => Request::Heartbeat,
        "snapshot" => Request::Snapshot,
        t if ACTION_TYPES.contains(&t) => {
            Request::Action(serde_json::from_value(Value::Object(obj)).map_err(malformed)?)
        }
        _ => return Err(fail(id, DecodeError::UnknownType(truncate(&ty, 64)))),
    };
    Ok(ClientMessage { id, request })
}

/// Parses JSON like `serde_json::from_str`, but refuses an object with the same key twice
/// (serde_json keeps the last one, so `{"type":"notice","type":"chat"}` would run `chat`).
/// Errors are plain sentences, without parser internals.
pub fn parse_unique(text: &str) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = UniqueValue::deserialize(&mut de).map_err(|e| plain_json_error(&e))?;
    de.end().map_err(|e| plain_json_error(&e))?;
    Ok(v.0)
}

fn plain_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let s = e.to_string();
            match s.split_once(" at line ") {
                Some((head, _)) => head.to_owned(),
                None => s,
            }
        }
        Category::Eof => "the JSON text ends early".into(),
        _ => format!("not valid JSON (line {}, column {})", e.line(), e.column()),
    }
}

/// A field error in words: which field was wrong, never serde's type names or float renderings.
fn field_error(e: &serde_json::Error) -> String {
    let s = e.to_string();
    if let Some(rest) = s.strip_prefix("missing field ") {
        return format!("missing field {rest}");
    }
    if let Some(rest) = s.strip_prefix("unknown variant ") {
        let v = rest.split(',').next().unwrap_or(rest);
        return format!("unknown value {v}");
    }
    if s.starts_with("invalid type") || s.starts_with("invalid value") {
        return "a field has the wrong type or is out of range (see docs/protocol.md)".into();
    }
    "fields of the wrong shape (see docs/protocol.md)".into()
}

struct UniqueValue(Value);

impl<'de> Deserialize<'de> for UniqueValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(UniqueValue)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut v = Vec::new();
        while let Some(UniqueValue(x)) = seq.next_element()? {
            v.push(x);
        }
        Ok(Value::Array(v))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut m = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let UniqueValue(v) = map.next_value()?;
            if m.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate key {:?}",
                    truncate(&key, 64)
                )));
            }
            m.insert(key, v);
        }
        Ok(Value::Object(m))
    }
}

/// The fuzz target body (used by `room/fuzz` under cargo-fuzz and by a bounded stable test):
/// decodes arbitrary bytes and, when they form a room action, runs it against a small room as
/// each of its members. Must never panic.
pub fn fuzz_decode(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(msg) = decode_client(text) else {
        return;
    };
    let Request::Action(action) = msg.request else {
        return;
    };
    use crate::command::{Actor, Command};
    use crate::ids::Timestamp;
    let mut room = crate::room::Room::new(
        "fuzz".into(),
        "owner".into(),
        String::new(),
        crate::config::RoomSettings::default(),
        crate::config::ImPolicy::default(),
    );
    let now = Timestamp(1_000);
    for uid in ["owner", "guest", "aud"] {
        let enter = Action::Enter {
            uid: uid.into(),
            admin: false,
            publish_until: Some(Timestamp(u64::MAX)),
        };
        let _ = room.handle(now, Command::system(enter));
    }
    let _ = room.handle(
        now,
        Command::member(
            "guest",
            Action::TakeSeat {
                seat: crate::ids::SeatIndex(1),
            },
        ),
    );
    for actor in [
        Actor::Member("aud".into()),
        Actor::Member("guest".into()),
        Actor::Member("owner".into()),
        Actor::System,
    ] {
        let _ = room.handle(
            now,
            Command {
                actor,
                action: action.clone(),
            },
        );
        let _ = room.handle_timeout(Timestamp(u64::MAX / 2));
    }
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// Every close reason, for the docs test.
pub const CLOSE_REASONS: &[CloseReason] = &[
    CloseReason::Replaced,
    CloseReason::Kicked,
    CloseReason::Dismissed,
    CloseReason::Timeout,
    CloseReason::Flood,
    CloseReason::TooLarge,
    CloseReason::JoinFailed,
    CloseReason::BadFrame,
    CloseReason::ServerShutdown,
];

/// Why the server closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum CloseReason {
    /// The same uid joined from another connection; the newest wins.
    Replaced,
    /// Kicked from the room.
    Kicked,
    /// The room was dismissed.
    Dismissed,
    /// No heartbeat within the presence timeout.
    Timeout,
    /// Too many bad or excessive messages.
    Flood,
    /// A frame over the size limit.
    TooLarge,
    /// Join refused or not joined in time.
    JoinFailed,
    /// A frame that is not valid UTF-8 text (or otherwise breaks the WebSocket protocol).
    BadFrame,
    /// The server is shutting down.
    ServerShutdown,
}

impl CloseReason {
    /// The WebSocket close code sent with this reason (4000-4999: application codes).
    pub fn close_code(self) -> u16 {
        match self {
            CloseReason::Replaced => 4001,
            CloseReason::Kicked => 4002,
            CloseReason::Dismissed => 4003,
            CloseReason::Timeout => 4004,
            CloseReason::Flood => 4005,
            CloseReason::TooLarge => 1009,
            CloseReason::JoinFailed => 4006,
            CloseReason::BadFrame => 1007,
            CloseReason::ServerShutdown => 1001,
        }
    }
}

/// A server frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ServerMessage {
    /// Reply to `join`: the full state, before any event.
    Joined {
        /// The request id.
        id: Option<u64>,
        /// Who you are.
        uid: Uid,
        /// Your role.
        role: Role,
        /// The room now (includes recent IM history).
        snapshot: RoomState,
        /// The seat you lost while away, if any (no ghost mic: do not publish).
        lost_seat: Option<LostSeat>,
        /// The gift catalog.
        gifts: BTreeMap<GiftId, Gift>,
        /// Send something at least this often (milliseconds).
        heartbeat_ms: u64,
    },
    /// A request succeeded.
    Ok {
        /// The request id.
        id: Option<u64>,
        /// The room version after the request.
        version: u64,
    },
    /// A request failed.
    Error {
        /// The request id, if known.
        id: Option<u64>,
        /// Error code (see `docs/protocol.md`).
        code: String,
        /// Human-readable detail.
        message: String,
    },
    /// Reply to `heartbeat`.
    Pong {
        /// The request id.
        id: Option<u64>,
        /// The room version, so a client can spot a gap even when idle.
        version: u64,
    },
    /// Reply to `snapshot`, or sent unasked when the server saw the client fall behind.
    Snapshot {
        /// The request id.
        id: Option<u64>,
        /// The room now.
        snapshot: RoomState,
    },
    /// A room event.
    Event {
        /// The event.
        event: Event,
    },
    /// Who is speaking and how loud, pushed to every member every volume interval (500 ms) while
    /// someone speaks, plus once when the last speaker falls silent. Not a room event: it has no
    /// version and is never replayed.
    VolumeIndication {
        /// Each seated publisher heard in the interval.
        speakers: Vec<SpeakerVolume>,
    },
    /// How many members the room has (to `membership: counts` connections; at most one a second).
    MemberCount {
        /// Members in the room.
        members: usize,
        /// The room version when counted.
        version: u64,
    },
    /// Reply to `members`: one page of the room's members, ordered by uid.
    Members {
        /// The request id.
        id: Option<u64>,
        /// The page.
        members: Vec<Member>,
        /// Ask with `after` = this for the next page (none: this was the last).
        next: Option<Uid>,
        /// Members in the room.
        total: usize,
    },
    /// The server closes the connection after this.
    Closing {
        /// Why.
        reason: CloseReason,
        /// Detail.
        message: String,
    },
}

/// One speaker's volume over the last volume interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerVolume {
    /// The speaker.
    pub uid: Uid,
    /// Loudest level heard in the interval, 0–255 (linear in amplitude).
    pub volume: u8,
    /// `volume` is above the speaking threshold (20): the seat ripples.
    pub speaking: bool,
}

impl ServerMessage {
    /// An error reply.
    pub fn error(id: Option<u64>, code: &str, message: impl ToString) -> ServerMessage {
        ServerMessage::Error {
            id,
            code: code.to_owned(),
            message: message.to_string(),
        }
    }

    /// Serializes to a JSON text frame.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server messages always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::SeatIndex;

    #[test]
    fn decodes_requests_with_ids() {
        let m = decode_client(r#"{"id":3,"type":"apply","seat":2}"#).unwrap();
        assert_eq!(m.id, Some(3));
        assert_eq!(
            m.request,
            Request::Action(Action::Apply {
                seat: Some(SeatIndex(2))
            })
        );
        let m = decode_client(r#"{"type":"join","room":"r","token":"t"}"#).unwrap();
        assert!(matches!(
            m.request,
            Request::Join {
                membership: MembershipView::Full,
                volumes: true,
                ..
            }
        ));
        let m = decode_client(
            r#"{"type":"join","room":"r","token":"t","membership":"counts","volumes":false}"#,
        )
        .unwrap();
        assert!(matches!(
            m.request,
            Request::Join {
                membership: MembershipView::Counts,
                volumes: false,
                ..
            }
        ));
        let m = decode_client(r#"{"id":2,"type":"members","after":"u1","limit":50}"#).unwrap();
        assert_eq!(
            m.request,
            Request::Members {
                after: Some("u1".into()),
                limit: Some(50)
            }
        );
        let m = decode_client(r#"{"type":"members"}"#).unwrap();
        assert_eq!(
            m.request,
            Request::Members {
                after: None,
                limit: None
            }
        );
        let m = decode_client(r#"{"id":1,"type":"kick","uid":"x","ban_ms":1000}"#).unwrap();
        assert!(matches!(m.request, Request::Action(Action::Kick { .. })));
    }

    #[test]
    fn refuses_bad_input_with_typed_errors() {
        let code = |s: &str| decode_client(s).unwrap_err().error.code();
        assert_eq!(
            code(r#"{"type":"join","room":"r","token":"t","membership":"some"}"#),
            "malformed"
        );
        assert_eq!(
            code(r#"{"type":"join","room":"r","token":"t","volumes":"no"}"#),
            "malformed"
        );
        assert_eq!(code(r#"{"type":"members","limit":-1}"#), "malformed");
        assert_eq!(code(r#"{"type":"members","after":7}"#), "malformed");
        assert_eq!(code("{"), "malformed");
        assert_eq!(code("[1]"), "malformed");
        assert_eq!(code(r#"{"id":-1,"type":"heartbeat"}"#), "malformed");
        assert_eq!(code(r#"{"id":1}"#), "missing_type");
        assert_eq!(
            code(r#"{"type":"enter","uid":"me","admin":true}"#),
            "unknown_type"
        );
        assert_eq!(code(r#"{"type":"grant_floor","uid":"me"}"#), "unknown_type");
        assert_eq!(code(r#"{"type":"apply","seat":"x"}"#), "malformed");
        let big = format!(
            r#"{{"type":"chat","text":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(code(&big), "too_large");
        let e = decode_client(r#"{"id":9,"type":"nope"}"#).unwrap_err();
        assert_eq!(e.id, Some(9));
    }

    #[test]
    fn duplicate_keys_are_malformed_at_any_depth() {
        let code = |s: &str| decode_client(s).unwrap_err().error.code();
        assert_eq!(
            code(r#"{"type":"notice","type":"chat","text":"x"}"#),
            "malformed"
        );
        assert_eq!(code(r#"{"id":1,"id":2,"type":"heartbeat"}"#), "malformed");
        assert_eq!(
            code(r#"{"type":"custom","kind":"k","payload":{"a":1,"a":2}}"#),
            "malformed"
        );
        let e = decode_client(r#"{"type":"chat","text":"a","text":"b"}"#).unwrap_err();
        assert!(e.error.to_string().contains("duplicate key"), "{}", e.error);
    }

    #[test]
    fn huge_integers_are_malformed_without_parser_internals() {
        let e = decode_client(r#"{"id":9007199254740992,"type":"heartbeat"}"#).unwrap_err();
        assert_eq!(e.error.code(), "malformed");
        assert!(decode_client(r#"{"id":9007199254740991,"type":"heartbeat"}"#).is_ok());
        for frame in [
            r#"{"type":"apply","seat":70000}"#,
            r#"{"type":"send_gift","gift":"rose","count":1e30}"#,
            r#"{"type":"mute_chat","uid":"a","duration_ms":1.8446744073709552e19}"#,
            r#"{"type":"mute_chat","uid":"a","duration_ms":184467440737095516150}"#,
        ] {
            let e = decode_client(frame).unwrap_err();
            assert_eq!(e.error.code(), "malformed", "{frame}");
            let text = e.error.to_string();
            for internal in ["u16", "u32", "u64", "floating point", "e+", "integer `"] {
                assert!(!text.contains(internal), "{frame}: {text}");
            }
        }
    }

    #[test]
    fn volume_indication_has_its_wire_shape() {
        let m = ServerMessage::VolumeIndication {
            speakers: vec![SpeakerVolume {
                uid: Uid::from("host"),
                volume: 128,
                speaking: true,
            }],
        };
        let v: Value = serde_json::from_str(&m.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "volume_indication",
                "speakers": [{"uid": "host", "volume": 128, "speaking": true}]})
        );
    }

    #[test]
    fn every_action_type_is_a_real_action() {
        for t in ACTION_TYPES {
            let e = decode_client(&format!(r#"{{"type":"{t}"}}"#));
            if let Err(e) = e {
                assert_eq!(e.error.code(), "malformed", "{t}");
            }
        }
    }
}
