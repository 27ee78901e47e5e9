//! Commands: what someone asks the room to do.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::millis;
use crate::ids::{GiftId, SeatIndex, Timestamp, Uid};

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// A member over its connection; permissions follow its role.
    Member(Uid),
    /// The app over REST, or the server itself: every permission.
    System,
}

/// One operation. Serialized with a `type` tag; the WebSocket protocol reuses the member-facing
/// ones as request bodies (see `docs/protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Action {
    /// Enter the room (the server checked the token). Not a wire request.
    Enter {
        /// Who.
        uid: Uid,
        /// The token grants admin.
        admin: bool,
        /// The end of the token's publish privilege.
        publish_until: Option<Timestamp>,
    },
    /// Leave the room.
    Leave,
    /// Audience: ask for a seat.
    Apply {
        /// A seat, or any free one.
        #[serde(default)]
        seat: Option<SeatIndex>,
    },
    /// Audience: withdraw the application.
    CancelApply,
    /// Audience: take the seat offered.
    AcceptInvite,
    /// Audience: decline the offer.
    DeclineInvite,
    /// Owner (seat 0 or a regular seat) or admin (a regular seat): sit down directly.
    TakeSeat {
        /// Which seat.
        seat: SeatIndex,
    },
    /// Guest: leave the seat.
    LeaveSeat,
    /// Guest: mute yourself.
    MuteSelf,
    /// Guest: unmute yourself (not a host-muted seat).
    UnmuteSelf,
    /// Host: offer a seat.
    Invite {
        /// Invitee.
        uid: Uid,
        /// A seat, or any free one.
        #[serde(default)]
        seat: Option<SeatIndex>,
    },
    /// Host: approve an application.
    Approve {
        /// Applicant.
        uid: Uid,
    },
    /// Host: reject an application.
    Reject {
        /// Applicant.
        uid: Uid,
    },
    /// Host: remove the occupant from a seat.
    KickFromSeat {
        /// Seat.
        seat: SeatIndex,
    },
    /// Host: mute a seat.
    MuteSeat {
        /// Seat.
        seat: SeatIndex,
    },
    /// Host: unmute a seat.
    UnmuteSeat {
        /// Seat.
        seat: SeatIndex,
    },
    /// Host: lock a seat (its occupant, if any, loses it).
    LockSeat {
        /// Seat.
        seat: SeatIndex,
    },
    /// Host: unlock a seat.
    UnlockSeat {
        /// Seat.
        seat: SeatIndex,
    },
    /// Host: move an occupant to another seat.
    MoveSeat {
        /// From.
        from: SeatIndex,
        /// To.
        to: SeatIndex,
    },
    /// Owner: appoint or remove an admin.
    SetAdmin {
        /// Who.
        uid: Uid,
        /// Admin or not.
        admin: bool,
    },
    /// Owner: kick a member out, banning for a while (zero: no ban).
    Kick {
        /// Who.
        uid: Uid,
        /// Ban duration.
        #[serde(with = "millis", rename = "ban_ms", default)]
        ban: Duration,
    },
    /// Owner: lift a ban.
    Unban {
        /// Who.
        uid: Uid,
    },
    /// Host: forbid a member to chat for a while (禁言).
    MuteChat {
        /// Who.
        uid: Uid,
        /// How long.
        #[serde(with = "millis", rename = "duration_ms")]
        duration: Duration,
    },
    /// Host: lift a chat mute.
    UnmuteChat {
        /// Who.
        uid: Uid,
    },
    /// System (app over REST): give a member the floor.
    GrantFloor {
        /// Who.
        uid: Uid,
    },
    /// System (app over REST): take the floor back.
    RevokeFloor {
        /// Who.
        uid: Uid,
    },
    /// Owner: close the room for good.
    Dismiss,
    /// Owner: change the room's rules while it runs (both are replaced).
    SetRules {
        /// The anti-bombing answer (`None`: the server's default).
        #[serde(default)]
        bombing: Option<crate::config::BombingAction>,
        /// The chat rules.
        #[serde(default)]
        chat: crate::config::ChatRules,
    },
    /// Member: chat.
    Chat {
        /// Text.
        text: String,
    },
    /// Member: send a gift.
    SendGift {
        /// Which.
        gift: GiftId,
        /// How many.
        count: u32,
        /// To whom, if anyone.
        #[serde(default)]
        to: Option<Uid>,
    },
    /// Host or system: a notice.
    Notice {
        /// Text.
        text: String,
    },
    /// Member: an app-defined message.
    Custom {
        /// App-defined kind.
        kind: String,
        /// App-defined payload.
        payload: serde_json::Value,
    },
    /// System (the media layer): audio seen from a member who may not publish.
    ReportBombing {
        /// Who.
        uid: Uid,
        /// What was seen.
        detail: String,
    },
}

/// An action with its actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Who asks.
    pub actor: Actor,
    /// What.
    pub action: Action,
}

impl Command {
    /// A member's command.
    pub fn member(uid: impl Into<Uid>, action: Action) -> Command {
        Command {
            actor: Actor::Member(uid.into()),
            action,
        }
    }

    /// A system command.
    pub fn system(action: Action) -> Command {
        Command {
            actor: Actor::System,
            action,
        }
    }
}
