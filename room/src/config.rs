//! Room settings: the public part travels in snapshots; the IM policy stays on the server.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::ids::GiftId;

/// How speaking is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoomMode {
    /// A seated member whose seat is not host-muted may speak.
    #[default]
    Normal,
    /// Game-party rooms: in addition, the app grants the floor (over REST) to who may speak.
    FloorControl,
}

/// The boss seat: the top gifter of a window holds it for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BossSeatSettings {
    /// Gifts younger than this count towards the boss seat.
    #[serde(with = "millis")]
    pub window: Duration,
    /// How long the boss keeps the seat once taken.
    #[serde(with = "millis")]
    pub hold: Duration,
    /// The least gift value within the window to claim the seat.
    pub min_value: u64,
}

/// Settings that shape the room's state; part of every snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSettings {
    /// Regular seats, besides the owner's seat (index 0).
    pub seat_count: u16,
    /// The boss seat, if the room has one (it comes after the regular seats).
    pub boss_seat: Option<BossSeatSettings>,
    /// Speaking rule.
    pub mode: RoomMode,
    /// An invitation lapses after this.
    #[serde(with = "millis")]
    pub invite_timeout: Duration,
    /// An application lapses after this.
    #[serde(with = "millis")]
    pub apply_timeout: Duration,
    /// A member silent this long is taken offline (seat released).
    #[serde(with = "millis")]
    pub presence_timeout: Duration,
    /// How many IM messages a joining member receives as history.
    pub history_len: usize,
    /// What the server does, besides dropping and reporting it, to a member who sends audio
    /// without an unmuted seat; `None` follows the server's default (`bombing_ban_ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bombing: Option<BombingAction>,
    /// Who may chat and how often (the room's own rules, on top of the server's rate limit).
    #[serde(default)]
    pub chat: ChatRules,
}

/// Who may send chat messages in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChatAllowed {
    /// Every member.
    #[default]
    Everyone,
    /// Members on a seat, the owner and admins.
    Seated,
    /// Only the owner and admins (the audience reads).
    Hosts,
}

/// The room's chat rules, part of its settings (and so of every snapshot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatRules {
    /// Who may chat.
    #[serde(default)]
    pub who: ChatAllowed,
    /// Slow mode: the least time between two chat messages of one member (zero: off). The owner
    /// and admins are exempt. At most [`MAX_SLOW_MODE_MS`].
    #[serde(default, rename = "slow_mode_ms", with = "millis")]
    pub slow_mode: Duration,
}

/// The longest slow mode a room may set: 1 hour.
pub const MAX_SLOW_MODE_MS: u64 = 3_600_000;

impl ChatRules {
    /// Checks the slow mode against [`MAX_SLOW_MODE_MS`].
    pub fn check(&self) -> Result<(), crate::room::RoomError> {
        if self.slow_mode > Duration::from_millis(MAX_SLOW_MODE_MS) {
            return Err(crate::room::RoomError::OutOfRange {
                field: "chat.slow_mode_ms",
                max: MAX_SLOW_MODE_MS,
            });
        }
        Ok(())
    }
}

/// The server's answer to audio from a member who may not publish (anti-bombing). The audio is
/// always dropped and a `bombing_detected` event raised; this decides what else happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum BombingAction {
    /// Report only (event and webhook).
    ReportOnly,
    /// Also kick the sender and ban it for `ban_ms` milliseconds.
    KickAndBan {
        /// How long the ban lasts.
        #[serde(rename = "ban_ms", with = "millis")]
        ban: Duration,
    },
}

impl Default for RoomSettings {
    fn default() -> Self {
        RoomSettings {
            seat_count: 8,
            boss_seat: None,
            mode: RoomMode::Normal,
            invite_timeout: Duration::from_secs(30),
            apply_timeout: Duration::from_secs(60),
            presence_timeout: Duration::from_secs(30),
            history_len: 50,
            bombing: None,
            chat: ChatRules::default(),
        }
    }
}

/// A gift in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gift {
    /// Shown name.
    pub name: String,
    /// Value of one gift, in the app's smallest currency unit.
    pub value: u64,
}

/// Rules for chat and gifts, kept by the server and not sent in snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImPolicy {
    /// Longest chat text, in characters.
    pub max_chat_chars: usize,
    /// At most this many chat messages per member ...
    pub chat_burst: u32,
    /// ... within this window.
    #[serde(with = "millis")]
    pub chat_window: Duration,
    /// Words masked with `*` in chat (case-insensitive).
    pub word_filter: Vec<String>,
    /// The gift catalog.
    pub gifts: BTreeMap<GiftId, Gift>,
    /// Most gifts in one send.
    pub max_gift_count: u32,
    /// Longest custom message payload, in bytes of JSON.
    pub max_custom_bytes: usize,
}

impl Default for ImPolicy {
    fn default() -> Self {
        let mut gifts = BTreeMap::new();
        for (id, name, value) in [
            ("rose", "Rose", 1),
            ("heart", "Heart", 10),
            ("rocket", "Rocket", 1000),
        ] {
            gifts.insert(
                GiftId::from(id),
                Gift {
                    name: name.to_owned(),
                    value,
                },
            );
        }
        ImPolicy {
            max_chat_chars: 500,
            chat_burst: 5,
            chat_window: Duration::from_secs(5),
            word_filter: Vec::new(),
            gifts,
            max_gift_count: 9999,
            max_custom_bytes: 4096,
        }
    }
}

/// Longest duration any request may carry (bans, chat mutes, boss-seat windows and holds, the
/// bombing ban): 366 days, in milliseconds. Every instant the server sends is now plus at most
/// this, far below 2^53 − 1, so a JavaScript number holds it exactly.
pub const MAX_DURATION_MS: u64 = 366 * 24 * 3600 * 1000;

/// Largest integer a JavaScript number holds exactly (2^53 − 1): the bound of every integer the
/// server accepts to send back (request ids, boss-seat `min_value`).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Refuses a duration over [`MAX_DURATION_MS`] with `out_of_range`.
pub fn check_duration(field: &'static str, d: Duration) -> Result<(), crate::room::RoomError> {
    if d > Duration::from_millis(MAX_DURATION_MS) {
        return Err(crate::room::RoomError::OutOfRange {
            field,
            max: MAX_DURATION_MS,
        });
    }
    Ok(())
}

impl BossSeatSettings {
    /// Checks the window and hold against [`MAX_DURATION_MS`] and `min_value` against
    /// [`MAX_SAFE_INTEGER`].
    pub fn check(&self) -> Result<(), crate::room::RoomError> {
        check_duration("boss_seat.window", self.window)?;
        check_duration("boss_seat.hold", self.hold)?;
        if self.min_value > MAX_SAFE_INTEGER {
            return Err(crate::room::RoomError::OutOfRange {
                field: "boss_seat.min_value",
                max: MAX_SAFE_INTEGER,
            });
        }
        Ok(())
    }
}

impl BombingAction {
    /// Checks the ban against [`MAX_DURATION_MS`].
    pub fn check(&self) -> Result<(), crate::room::RoomError> {
        match self {
            BombingAction::ReportOnly => Ok(()),
            BombingAction::KickAndBan { ban } => check_duration("bombing.ban_ms", *ban),
        }
    }
}

/// Durations as integer milliseconds on the wire and in storage.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bombing_action_round_trips_and_old_settings_still_load() {
        let ban = BombingAction::KickAndBan {
            ban: Duration::from_secs(90),
        };
        let json = serde_json::to_value(ban).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({ "action": "kick_and_ban", "ban_ms": 90_000 })
        );
        assert_eq!(
            serde_json::from_value::<BombingAction>(json).expect("parse"),
            ban
        );
        let report: BombingAction =
            serde_json::from_str(r#"{"action":"report_only"}"#).expect("parse");
        assert_eq!(report, BombingAction::ReportOnly);
        for bad in [
            r#"{"action":"explode"}"#,
            r#"{"action":"kick_and_ban"}"#,
            r#"{"action":"kick_and_ban","ban_ms":-1}"#,
            r#"{"action":"kick_and_ban","ban_ms":5,"extra":1}"#,
        ] {
            assert!(
                serde_json::from_str::<BombingAction>(bad).is_err(),
                "{bad} must be refused"
            );
        }
        // Settings stored before the field existed load with the server default.
        let mut old = serde_json::to_value(RoomSettings::default()).expect("serialize");
        old.as_object_mut().expect("object").remove("bombing");
        let loaded: RoomSettings = serde_json::from_value(old).expect("old settings load");
        assert_eq!(loaded.bombing, None);
        assert_eq!(loaded.chat, ChatRules::default());
    }

    #[test]
    fn chat_rules_round_trip_and_refuse_what_they_do_not_know() {
        let rules = ChatRules {
            who: ChatAllowed::Seated,
            slow_mode: Duration::from_secs(10),
        };
        let json = serde_json::to_value(rules).expect("serialize");
        assert_eq!(
            json,
            serde_json::json!({ "who": "seated", "slow_mode_ms": 10_000 })
        );
        assert_eq!(
            serde_json::from_value::<ChatRules>(json).expect("parse"),
            rules
        );
        assert_eq!(
            serde_json::from_str::<ChatRules>("{}").expect("defaults"),
            ChatRules::default()
        );
        for bad in [
            r#"{"who":"nobody"}"#,
            r#"{"slow_mode_ms":-5}"#,
            r#"{"who":"hosts","links":false}"#,
        ] {
            assert!(
                serde_json::from_str::<ChatRules>(bad).is_err(),
                "{bad} must be refused"
            );
        }
        assert!(rules.check().is_ok());
        let too_slow = ChatRules {
            slow_mode: Duration::from_millis(MAX_SLOW_MODE_MS + 1),
            ..rules
        };
        assert_eq!(too_slow.check().map_err(|e| e.code()), Err("out_of_range"));
    }
}
