//! The room's observable state, the events that change it, and `apply`, the one function that
//! moves a state forward by an event. The server builds its state by applying its own events, and
//! a client that holds a snapshot and applies the events after it reaches the same state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::config::RoomSettings;
use crate::ids::{GiftId, RoomId, SeatIndex, Timestamp, Uid};

/// A member's role. Owner and admin are given; a guest is a member on a seat; the rest are audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Created the room; holds seat 0.
    Owner,
    /// Appointed by the owner; manages seats.
    Admin,
    /// Holds a seat.
    Guest,
    /// Listens, chats, sends gifts, may apply for a seat.
    Audience,
}

/// What kind of seat this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeatKind {
    /// Seat 0, reserved for the owner.
    Owner,
    /// A regular mic seat.
    Regular,
    /// Held by the top gifter for a while.
    Boss,
}

/// Whether a seat is free, locked or taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SeatState {
    /// Free.
    Empty,
    /// Closed by a host; nobody can take it.
    Locked,
    /// Taken by a member.
    Occupied {
        /// The occupant.
        uid: Uid,
    },
}

/// One mic seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seat {
    /// Position.
    pub index: SeatIndex,
    /// Kind.
    pub kind: SeatKind,
    /// Free, locked or taken.
    #[serde(flatten)]
    pub state: SeatState,
    /// Muted by a host; the occupant cannot lift it.
    pub host_muted: bool,
    /// Muted by the occupant.
    pub self_muted: bool,
    /// For the boss seat: when it frees itself.
    pub held_until: Option<Timestamp>,
}

impl Seat {
    /// A fresh, empty seat.
    pub fn empty(index: SeatIndex, kind: SeatKind) -> Seat {
        Seat {
            index,
            kind,
            state: SeatState::Empty,
            host_muted: false,
            self_muted: false,
            held_until: None,
        }
    }

    /// The occupant, if any.
    pub fn occupant(&self) -> Option<&Uid> {
        match &self.state {
            SeatState::Occupied { uid } => Some(uid),
            _ => None,
        }
    }
}

/// A member present in the room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Who.
    pub uid: Uid,
    /// Appointed admin.
    pub admin: bool,
    /// The end of the member's publish privilege (from the token), if any.
    pub publish_until: Option<Timestamp>,
}

/// A pending application or invitation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The seat asked for or offered; `None` means any free seat.
    pub seat: Option<SeatIndex>,
    /// Who invited (invitations only).
    pub by: Option<Uid>,
    /// When it lapses.
    pub expires: Timestamp,
}

/// Why a member left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// Left on its own.
    Quit,
    /// Went silent past the presence timeout.
    Timeout,
    /// Kicked by the owner or the app.
    Kicked,
}

/// Why a seat changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeatReason {
    /// A member took it (approved, invited, or by right).
    Taken,
    /// The occupant left it.
    Left,
    /// A host removed the occupant.
    KickedOff,
    /// A host moved the occupant.
    Moved,
    /// Host or self mute changed.
    MuteChanged,
    /// Locked by a host.
    Locked,
    /// Unlocked by a host.
    Unlocked,
    /// The occupant went offline.
    Offline,
    /// The occupant left or was kicked from the room.
    MemberGone,
    /// The occupant's publish privilege expired.
    PrivilegeExpired,
    /// The boss seat was won by the top gifter.
    BossTaken,
    /// The boss seat's hold ran out.
    BossExpired,
}

/// How an application or invitation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingEnd {
    /// Approved / accepted.
    Accepted,
    /// Rejected / declined.
    Declined,
    /// Withdrawn by the applicant, or made moot.
    Cancelled,
    /// Timed out.
    Expired,
}

/// One state change, with the room-wide version it produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Strictly increasing within the room; the first event is version 1.
    pub version: u64,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A member entered.
    MemberJoined {
        /// The member.
        member: Member,
    },
    /// A member left (its seat, if any, was released by an earlier event).
    MemberLeft {
        /// Who.
        uid: Uid,
        /// Why.
        reason: LeaveReason,
    },
    /// A member became or stopped being admin.
    RoleChanged {
        /// Who.
        uid: Uid,
        /// The new role.
        role: Role,
    },
    /// A seat's new state.
    SeatChanged {
        /// The seat as it is now.
        seat: Seat,
        /// Why.
        reason: SeatReason,
    },
    /// A member applied for a seat.
    ApplicationAdded {
        /// Applicant.
        uid: Uid,
        /// The application.
        pending: Pending,
    },
    /// An application ended.
    ApplicationRemoved {
        /// Applicant.
        uid: Uid,
        /// How.
        reason: PendingEnd,
    },
    /// A host invited a member to a seat.
    InvitationAdded {
        /// Invitee.
        uid: Uid,
        /// The invitation.
        pending: Pending,
    },
    /// An invitation ended.
    InvitationRemoved {
        /// Invitee.
        uid: Uid,
        /// How.
        reason: PendingEnd,
    },
    /// A member may not chat until `until` (禁言).
    ChatMuted {
        /// Who.
        uid: Uid,
        /// Until when.
        until: Timestamp,
    },
    /// A chat mute ended.
    ChatUnmuted {
        /// Who.
        uid: Uid,
    },
    /// A uid may not enter until `until`.
    Banned {
        /// Who.
        uid: Uid,
        /// Until when.
        until: Timestamp,
    },
    /// A ban ended.
    Unbanned {
        /// Who.
        uid: Uid,
    },
    /// The app gave a member the floor (floor-control rooms).
    FloorGranted {
        /// Who.
        uid: Uid,
    },
    /// The app took the floor back.
    FloorRevoked {
        /// Who.
        uid: Uid,
    },
    /// A chat message (already masked by the word filter).
    Chat {
        /// Sender.
        from: Uid,
        /// Text.
        text: String,
    },
    /// A gift was sent.
    Gift {
        /// Sender.
        from: Uid,
        /// Recipient, if one was named.
        to: Option<Uid>,
        /// Which gift.
        gift: GiftId,
        /// How many.
        count: u32,
        /// Total value.
        value: u64,
    },
    /// A notice from the hosts or the system.
    Notice {
        /// Text.
        text: String,
    },
    /// An app-defined message.
    Custom {
        /// Sender.
        from: Uid,
        /// App-defined kind.
        kind: String,
        /// App-defined JSON payload.
        payload: serde_json::Value,
    },
    /// The media layer saw audio from a member who may not publish.
    BombingDetected {
        /// Who.
        uid: Uid,
        /// What was seen.
        detail: String,
    },
    /// The owner changed the room's rules (`settings.bombing` and `settings.chat`).
    RulesChanged {
        /// The anti-bombing answer (`None`: the server's default).
        bombing: Option<crate::config::BombingAction>,
        /// The chat rules.
        chat: crate::config::ChatRules,
    },
    /// The room was closed for good.
    Dismissed,
}

impl EventKind {
    /// Whether the event is an IM message kept in the room's recent history.
    pub fn is_im(&self) -> bool {
        matches!(
            self,
            EventKind::Chat { .. }
                | EventKind::Gift { .. }
                | EventKind::Notice { .. }
                | EventKind::Custom { .. }
        )
    }
}

/// A gift that counts towards the boss seat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowGift {
    /// When.
    pub at: Timestamp,
    /// Sender.
    pub from: Uid,
    /// Value.
    pub value: u64,
}

/// Everything observable about a room: what a snapshot carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomState {
    /// The room.
    pub id: RoomId,
    /// Its owner.
    pub owner: Uid,
    /// Title.
    pub title: String,
    /// Settings.
    pub settings: RoomSettings,
    /// The version of the last event applied (0 for a new room).
    pub version: u64,
    /// Closed for good.
    pub dismissed: bool,
    /// Seats by index.
    pub seats: Vec<Seat>,
    /// Members present.
    pub members: BTreeMap<Uid, Member>,
    /// Pending applications.
    pub applications: BTreeMap<Uid, Pending>,
    /// Pending invitations.
    pub invitations: BTreeMap<Uid, Pending>,
    /// Bans in force.
    pub bans: BTreeMap<Uid, Timestamp>,
    /// Chat mutes in force.
    pub chat_mutes: BTreeMap<Uid, Timestamp>,
    /// Members holding the floor (floor-control rooms).
    pub floor: BTreeSet<Uid>,
    /// Total gift value sent per member, for the leaderboard.
    pub gift_totals: BTreeMap<Uid, u64>,
    /// Gifts inside the boss-seat window.
    pub gift_window: VecDeque<WindowGift>,
    /// Recent IM messages (chat, gifts, notices, custom), oldest first.
    pub recent: VecDeque<Event>,
}

impl RoomState {
    /// A new room with empty seats.
    pub fn new(id: RoomId, owner: Uid, title: String, settings: RoomSettings) -> RoomState {
        let mut seats = vec![Seat::empty(SeatIndex(0), SeatKind::Owner)];
        for i in 1..=settings.seat_count {
            seats.push(Seat::empty(SeatIndex(i), SeatKind::Regular));
        }
        if settings.boss_seat.is_some() {
            seats.push(Seat::empty(
                SeatIndex(settings.seat_count.saturating_add(1)),
                SeatKind::Boss,
            ));
        }
        RoomState {
            id,
            owner,
            title,
            settings,
            version: 0,
            dismissed: false,
            seats,
            members: BTreeMap::new(),
            applications: BTreeMap::new(),
            invitations: BTreeMap::new(),
            bans: BTreeMap::new(),
            chat_mutes: BTreeMap::new(),
            floor: BTreeSet::new(),
            gift_totals: BTreeMap::new(),
            gift_window: VecDeque::new(),
            recent: VecDeque::new(),
        }
    }

    /// A member's role, or `None` if not present.
    pub fn role(&self, uid: &Uid) -> Option<Role> {
        let m = self.members.get(uid)?;
        Some(if *uid == self.owner {
            Role::Owner
        } else if m.admin {
            Role::Admin
        } else if self.seat_of(uid).is_some() {
            Role::Guest
        } else {
            Role::Audience
        })
    }

    /// The seat a member holds.
    pub fn seat_of(&self, uid: &Uid) -> Option<&Seat> {
        self.seats.iter().find(|s| s.occupant() == Some(uid))
    }

    /// A seat by index.
    pub fn seat(&self, index: SeatIndex) -> Option<&Seat> {
        self.seats.get(usize::from(index.0))
    }

    /// The gift leaderboard: members by total value sent, highest first.
    pub fn leaderboard(&self) -> Vec<(Uid, u64)> {
        let mut v: Vec<_> = self
            .gift_totals
            .iter()
            .map(|(u, v)| (u.clone(), *v))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    }

    /// Gift value per sender inside the boss window.
    pub fn window_totals(&self) -> BTreeMap<Uid, u64> {
        let mut t = BTreeMap::new();
        for g in &self.gift_window {
            *t.entry(g.from.clone()).or_insert(0u64) += g.value;
        }
        t
    }

    /// Moves the state forward by one event. Events must be applied in version order; an event
    /// at or below the current version is ignored, so applying a batch twice is harmless.
    pub fn apply(&mut self, event: &Event) {
        if event.version <= self.version {
            return;
        }
        self.version = event.version;
        match &event.kind {
            EventKind::MemberJoined { member } => {
                self.members.insert(member.uid.clone(), member.clone());
            }
            EventKind::MemberLeft { uid, .. } => {
                self.members.remove(uid);
                self.applications.remove(uid);
                self.invitations.remove(uid);
                self.floor.remove(uid);
            }
            EventKind::RoleChanged { uid, role } => {
                if let Some(m) = self.members.get_mut(uid) {
                    m.admin = *role == Role::Admin;
                }
            }
            EventKind::SeatChanged { seat, .. } => {
                if let Some(s) = self.seats.get_mut(usize::from(seat.index.0)) {
                    *s = seat.clone();
                }
            }
            EventKind::ApplicationAdded { uid, pending } => {
                self.applications.insert(uid.clone(), pending.clone());
            }
            EventKind::ApplicationRemoved { uid, .. } => {
                self.applications.remove(uid);
            }
            EventKind::InvitationAdded { uid, pending } => {
                self.invitations.insert(uid.clone(), pending.clone());
            }
            EventKind::InvitationRemoved { uid, .. } => {
                self.invitations.remove(uid);
            }
            EventKind::ChatMuted { uid, until } => {
                self.chat_mutes.insert(uid.clone(), *until);
            }
            EventKind::ChatUnmuted { uid } => {
                self.chat_mutes.remove(uid);
            }
            EventKind::Banned { uid, until } => {
                self.bans.insert(uid.clone(), *until);
            }
            EventKind::Unbanned { uid } => {
                self.bans.remove(uid);
            }
            EventKind::FloorGranted { uid } => {
                self.floor.insert(uid.clone());
            }
            EventKind::FloorRevoked { uid } => {
                self.floor.remove(uid);
            }
            EventKind::Gift { from, value, .. } => {
                let total = self.gift_totals.entry(from.clone()).or_insert(0);
                *total = total.saturating_add(*value);
                if let Some(boss) = &self.settings.boss_seat {
                    self.gift_window.push_back(WindowGift {
                        at: event.at,
                        from: from.clone(),
                        value: *value,
                    });
                    while self
                        .gift_window
                        .front()
                        .is_some_and(|g| g.at.plus(boss.window) <= event.at)
                    {
                        self.gift_window.pop_front();
                    }
                }
            }
            EventKind::Dismissed => self.dismissed = true,
            EventKind::RulesChanged { bombing, chat } => {
                self.settings.bombing = *bombing;
                self.settings.chat = *chat;
            }
            EventKind::Chat { .. }
            | EventKind::Notice { .. }
            | EventKind::Custom { .. }
            | EventKind::BombingDetected { .. } => {}
        }
        if event.kind.is_im() && self.settings.history_len > 0 {
            if self.recent.len() >= self.settings.history_len {
                self.recent.pop_front();
            }
            self.recent.push_back(event.clone());
        }
    }
}
