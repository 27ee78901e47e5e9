//! The room state machine.
//!
//! # Drive contract (sans-IO)
//! - `Room::handle(now, command)` validates one command against the state at `now` and either
//!   refuses it with a [`RoomError`] (state untouched) or returns the events it produced, already
//!   applied, each with the next room-wide version.
//! - `Room::touch(uid, now)` records that a member was heard from (any message or heartbeat).
//! - `Room::poll_timeout()` says when the room next needs `handle_timeout(now)`: lapsing
//!   invitations and applications, the boss seat's hold, chat mutes, bans and presence.
//!   Calling `handle_timeout` early is harmless; calling it late fires everything due.
//! - Nothing here reads a clock, sleeps, or does I/O; the server owns sockets, storage and time.

use std::collections::HashMap;

use crate::command::{Action, Actor, Command};
use crate::config::{ImPolicy, RoomMode, RoomSettings};
use crate::ids::{RoomId, SeatIndex, Timestamp, Uid};
use crate::im::RateWindow;
use crate::state::{
    Event, EventKind, LeaveReason, Member, Pending, PendingEnd, Role, RoomState, Seat, SeatKind,
    SeatReason, SeatState,
};

mod check;
mod timers;

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// The room was dismissed.
    #[error("room is dismissed")]
    Dismissed,
    /// The actor or the target is not in the room.
    #[error("{0} is not in the room")]
    NotMember(Uid),
    /// The uid is banned.
    #[error("banned until {} (Unix ms)", until.0)]
    Banned {
        /// Until when.
        until: Timestamp,
    },
    /// The actor's role does not allow this.
    #[error("not allowed for this role")]
    PermissionDenied,
    /// Hosts cannot act on the owner (and admins not on other admins).
    #[error("cannot act on a member of equal or higher role")]
    TargetProtected,
    /// No such seat.
    #[error("no seat {0}")]
    NoSuchSeat(SeatIndex),
    /// This seat cannot be taken this way (the owner's seat or the boss seat).
    #[error("seat {0} is reserved")]
    SeatReserved(SeatIndex),
    /// The seat is taken.
    #[error("seat {0} is occupied")]
    SeatOccupied(SeatIndex),
    /// The seat is locked.
    #[error("seat {0} is locked")]
    SeatLocked(SeatIndex),
    /// The seat is empty.
    #[error("seat {0} is empty")]
    SeatEmpty(SeatIndex),
    /// No seat is free.
    #[error("no free seat")]
    NoFreeSeat,
    /// The member already holds a seat.
    #[error("already on a seat")]
    AlreadySeated,
    /// The member holds no seat.
    #[error("not on a seat")]
    NotSeated,
    /// The member's token does not (or no longer) allow publishing audio.
    #[error("no publish privilege")]
    NoPublishPrivilege,
    /// An application is already pending.
    #[error("already applied")]
    AlreadyApplied,
    /// An invitation is already pending.
    #[error("already invited")]
    AlreadyInvited,
    /// No pending application.
    #[error("no application")]
    NoApplication,
    /// No pending invitation.
    #[error("no invitation")]
    NoInvitation,
    /// The seat is muted by a host; its occupant cannot unmute it.
    #[error("seat is muted by a host")]
    HostMuted,
    /// The member may not chat now.
    #[error("chat muted until {} (Unix ms)", until.0)]
    ChatMuted {
        /// Until when.
        until: Timestamp,
    },
    /// Not chat-muted.
    #[error("not chat muted")]
    NotChatMuted,
    /// The room's chat rules do not let this member chat.
    #[error("{}", match .0 {
        crate::config::ChatAllowed::Seated => "chat is for members on a seat in this room",
        _ => "chat is for the hosts only in this room",
    })]
    ChatRestricted(crate::config::ChatAllowed),
    /// Not banned.
    #[error("not banned")]
    NotBanned,
    /// Empty text.
    #[error("message is empty")]
    EmptyMessage,
    /// Text or payload over the limit.
    #[error("message too long (max {max})")]
    MessageTooLong {
        /// The limit.
        max: usize,
    },
    /// Too many messages; retry later.
    #[error("rate limited, retry in {retry_after_ms} ms")]
    RateLimited {
        /// Milliseconds until a message is allowed.
        retry_after_ms: u64,
    },
    /// Not in the gift catalog.
    #[error("unknown gift")]
    UnknownGift,
    /// Gift count out of range.
    #[error("gift count must be 1..={max}")]
    BadGiftCount {
        /// The limit.
        max: u32,
    },
    /// Floor operations need a floor-control room.
    #[error("room is not in floor-control mode")]
    NotFloorMode,
    /// Text with a control or bidi character.
    #[error("{0}")]
    BadText(crate::im::TextError),
    /// A duration or count over its documented maximum.
    #[error("{field} must be at most {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The limit.
        max: u64,
    },
    /// The uid breaks the identity rule.
    #[error("{0}")]
    InvalidId(crate::ids::IdError),
    /// The uid renders like another member's (or the owner's, or a banned uid).
    #[error("uid renders like {0}, already in this room; pick another")]
    ConfusableUid(Uid),
}

impl RoomError {
    /// Every code [`RoomError::code`] returns (`docs/protocol.md` lists them; a test compares).
    pub const CODES: &'static [&'static str] = &[
        "room_dismissed",
        "not_member",
        "banned",
        "permission_denied",
        "target_protected",
        "no_such_seat",
        "seat_reserved",
        "seat_occupied",
        "seat_locked",
        "seat_empty",
        "no_free_seat",
        "already_seated",
        "not_seated",
        "no_publish_privilege",
        "already_applied",
        "already_invited",
        "no_application",
        "no_invitation",
        "host_muted",
        "chat_muted",
        "not_chat_muted",
        "chat_restricted",
        "not_banned",
        "empty_message",
        "message_too_long",
        "rate_limited",
        "unknown_gift",
        "bad_gift_count",
        "not_floor_mode",
        "invalid_text",
        "out_of_range",
        "invalid_uid",
        "invalid_room_id",
        "confusable_uid",
    ];

    /// The wire error code (see `docs/protocol.md`).
    pub fn code(&self) -> &'static str {
        match self {
            RoomError::Dismissed => "room_dismissed",
            RoomError::NotMember(_) => "not_member",
            RoomError::Banned { .. } => "banned",
            RoomError::PermissionDenied => "permission_denied",
            RoomError::TargetProtected => "target_protected",
            RoomError::NoSuchSeat(_) => "no_such_seat",
            RoomError::SeatReserved(_) => "seat_reserved",
            RoomError::SeatOccupied(_) => "seat_occupied",
            RoomError::SeatLocked(_) => "seat_locked",
            RoomError::SeatEmpty(_) => "seat_empty",
            RoomError::NoFreeSeat => "no_free_seat",
            RoomError::AlreadySeated => "already_seated",
            RoomError::NotSeated => "not_seated",
            RoomError::NoPublishPrivilege => "no_publish_privilege",
            RoomError::AlreadyApplied => "already_applied",
            RoomError::AlreadyInvited => "already_invited",
            RoomError::NoApplication => "no_application",
            RoomError::NoInvitation => "no_invitation",
            RoomError::HostMuted => "host_muted",
            RoomError::ChatMuted { .. } => "chat_muted",
            RoomError::NotChatMuted => "not_chat_muted",
            RoomError::ChatRestricted(_) => "chat_restricted",
            RoomError::NotBanned => "not_banned",
            RoomError::EmptyMessage => "empty_message",
            RoomError::MessageTooLong { .. } => "message_too_long",
            RoomError::RateLimited { .. } => "rate_limited",
            RoomError::UnknownGift => "unknown_gift",
            RoomError::BadGiftCount { .. } => "bad_gift_count",
            RoomError::NotFloorMode => "not_floor_mode",
            RoomError::BadText(_) => "invalid_text",
            RoomError::OutOfRange { .. } => "out_of_range",
            RoomError::InvalidId(e) => e.code(),
            RoomError::ConfusableUid(_) => "confusable_uid",
        }
    }
}

#[cfg(test)]
mod code_tests {
    use super::*;
    use crate::ids::IdError;
    use crate::im::TextError;

    /// One of every variant: the match is exhaustive, so a new variant fails to compile here
    /// until it is listed (and then `CODES` and the docs must follow).
    fn samples() -> Vec<RoomError> {
        let s = SeatIndex(1);
        let t = Timestamp(1);
        let all = vec![
            RoomError::Dismissed,
            RoomError::NotMember("u".into()),
            RoomError::Banned { until: t },
            RoomError::PermissionDenied,
            RoomError::TargetProtected,
            RoomError::NoSuchSeat(s),
            RoomError::SeatReserved(s),
            RoomError::SeatOccupied(s),
            RoomError::SeatLocked(s),
            RoomError::SeatEmpty(s),
            RoomError::NoFreeSeat,
            RoomError::AlreadySeated,
            RoomError::NotSeated,
            RoomError::NoPublishPrivilege,
            RoomError::AlreadyApplied,
            RoomError::AlreadyInvited,
            RoomError::NoApplication,
            RoomError::NoInvitation,
            RoomError::HostMuted,
            RoomError::ChatMuted { until: t },
            RoomError::NotChatMuted,
            RoomError::ChatRestricted(crate::config::ChatAllowed::Hosts),
            RoomError::NotBanned,
            RoomError::EmptyMessage,
            RoomError::MessageTooLong { max: 1 },
            RoomError::RateLimited { retry_after_ms: 1 },
            RoomError::UnknownGift,
            RoomError::BadGiftCount { max: 1 },
            RoomError::NotFloorMode,
            RoomError::BadText(TextError::Control(0)),
            RoomError::OutOfRange { field: "f", max: 1 },
            RoomError::InvalidId(IdError::NotNfc { what: "uid" }),
            RoomError::InvalidId(IdError::DotSegment),
            RoomError::ConfusableUid("u".into()),
        ];
        for e in &all {
            match e {
                RoomError::Dismissed
                | RoomError::NotMember(_)
                | RoomError::Banned { .. }
                | RoomError::PermissionDenied
                | RoomError::TargetProtected
                | RoomError::NoSuchSeat(_)
                | RoomError::SeatReserved(_)
                | RoomError::SeatOccupied(_)
                | RoomError::SeatLocked(_)
                | RoomError::SeatEmpty(_)
                | RoomError::NoFreeSeat
                | RoomError::AlreadySeated
                | RoomError::NotSeated
                | RoomError::NoPublishPrivilege
                | RoomError::AlreadyApplied
                | RoomError::AlreadyInvited
                | RoomError::NoApplication
                | RoomError::NoInvitation
                | RoomError::HostMuted
                | RoomError::ChatMuted { .. }
                | RoomError::NotChatMuted
                | RoomError::ChatRestricted(_)
                | RoomError::NotBanned
                | RoomError::EmptyMessage
                | RoomError::MessageTooLong { .. }
                | RoomError::RateLimited { .. }
                | RoomError::UnknownGift
                | RoomError::BadGiftCount { .. }
                | RoomError::NotFloorMode
                | RoomError::BadText(_)
                | RoomError::OutOfRange { .. }
                | RoomError::InvalidId(_)
                | RoomError::ConfusableUid(_) => {}
            }
        }
        all
    }

    #[test]
    fn codes_lists_every_code_once() {
        let codes: std::collections::BTreeSet<&str> =
            samples().iter().map(RoomError::code).collect();
        let listed: std::collections::BTreeSet<&str> = RoomError::CODES.iter().copied().collect();
        assert_eq!(codes, listed);
        assert_eq!(listed.len(), RoomError::CODES.len(), "no duplicates");
    }
}

/// A seat a member lost while away, told to it when it comes back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LostSeat {
    /// The seat.
    pub seat: SeatIndex,
    /// Why it was lost.
    pub reason: SeatReason,
    /// When.
    pub at: Timestamp,
}

/// One room: its state plus the server-side bookkeeping that is not part of snapshots.
#[derive(Debug, Clone)]
pub struct Room {
    state: RoomState,
    policy: ImPolicy,
    last_seen: HashMap<Uid, Timestamp>,
    chat_rate: HashMap<Uid, RateWindow>,
    /// When each member last chatted (the room's slow mode).
    last_chat: HashMap<Uid, Timestamp>,
    lost_seats: HashMap<Uid, LostSeat>,
    /// Memo of [`crate::ids::look_alike_keys`] per uid seen, so a join compares strings only.
    id_keys: HashMap<Uid, (String, String)>,
}

impl Room {
    /// A new room.
    pub fn new(
        id: RoomId,
        owner: Uid,
        title: String,
        settings: RoomSettings,
        policy: ImPolicy,
    ) -> Room {
        Room::restore(
            RoomState::new(id, owner, title, settings),
            policy,
            Timestamp(0),
        )
    }

    /// A room rebuilt from a stored snapshot at `now`: members still listed get a full presence
    /// timeout to come back before their seats are released.
    pub fn restore(state: RoomState, policy: ImPolicy, now: Timestamp) -> Room {
        let last_seen = state.members.keys().map(|u| (u.clone(), now)).collect();
        Room {
            state,
            policy,
            last_seen,
            chat_rate: HashMap::new(),
            last_chat: HashMap::new(),
            lost_seats: HashMap::new(),
            id_keys: HashMap::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> &RoomState {
        &self.state
    }

    /// A snapshot of the current state.
    pub fn snapshot(&self) -> RoomState {
        self.state.clone()
    }

    /// The IM policy.
    pub fn policy(&self) -> &ImPolicy {
        &self.policy
    }

    /// Records that `uid` was heard from at `now`.
    pub fn touch(&mut self, uid: &Uid, now: Timestamp) {
        if let Some(t) = self.last_seen.get_mut(uid) {
            *t = (*t).max(now);
        }
    }

    /// The seat `uid` lost while away, if any; told once.
    pub fn take_lost_seat(&mut self, uid: &Uid) -> Option<LostSeat> {
        self.lost_seats.remove(uid)
    }

    /// Whether `uid` may publish audio right now: seated, seat not muted by a host nor by itself,
    /// publish privilege in force, and the floor in floor-control rooms. The SFU asks this.
    pub fn may_publish(&self, uid: &Uid, now: Timestamp) -> bool {
        let s = &self.state;
        let Some(m) = s.members.get(uid) else {
            return false;
        };
        let Some(seat) = s.seat_of(uid) else {
            return false;
        };
        !s.dismissed
            && !seat.host_muted
            && !seat.self_muted
            && m.publish_until.is_some_and(|t| now < t)
            && (s.settings.mode != RoomMode::FloorControl || s.floor.contains(uid))
    }

    fn emit(&mut self, now: Timestamp, kind: EventKind, out: &mut Vec<Event>) {
        let event = Event {
            version: self.state.version + 1,
            at: now,
            kind,
        };
        self.state.apply(&event);
        out.push(event);
    }

    fn set_seat(&mut self, now: Timestamp, seat: Seat, reason: SeatReason, out: &mut Vec<Event>) {
        self.emit(now, EventKind::SeatChanged { seat, reason }, out);
    }

    /// Empties the seat `uid` holds, if any.
    fn vacate(&mut self, now: Timestamp, uid: &Uid, reason: SeatReason, out: &mut Vec<Event>) {
        if let Some(seat) = self.state.seat_of(uid) {
            let mut seat = seat.clone();
            seat.state = SeatState::Empty;
            seat.self_muted = false;
            seat.held_until = None;
            self.set_seat(now, seat, reason, out);
        }
    }

    /// Puts `uid` on `index` (vacating any other seat first).
    fn occupy(
        &mut self,
        now: Timestamp,
        uid: &Uid,
        index: SeatIndex,
        reason: SeatReason,
        held_until: Option<Timestamp>,
        out: &mut Vec<Event>,
    ) {
        let vacate_reason = if reason == SeatReason::BossTaken {
            SeatReason::Moved
        } else {
            reason
        };
        if self.state.seat_of(uid).map(|s| s.index) != Some(index) {
            self.vacate(now, uid, vacate_reason, out);
        }
        if let Some(seat) = self.state.seat(index) {
            let mut seat = seat.clone();
            seat.state = SeatState::Occupied { uid: uid.clone() };
            seat.self_muted = false;
            seat.held_until = held_until;
            self.set_seat(now, seat, reason, out);
        }
    }

    /// Removes a member: releases its seat, then tells everyone it left.
    fn remove_member(
        &mut self,
        now: Timestamp,
        uid: &Uid,
        reason: LeaveReason,
        out: &mut Vec<Event>,
    ) {
        let seat_reason = match reason {
            LeaveReason::Timeout => SeatReason::Offline,
            LeaveReason::Quit | LeaveReason::Kicked => SeatReason::MemberGone,
        };
        if reason == LeaveReason::Timeout
            && let Some(seat) = self.state.seat_of(uid)
        {
            self.lost_seats.insert(
                uid.clone(),
                LostSeat {
                    seat: seat.index,
                    reason: SeatReason::Offline,
                    at: now,
                },
            );
        }
        self.vacate(now, uid, seat_reason, out);
        let uid = uid.clone();
        self.last_seen.remove(&uid);
        self.chat_rate.remove(&uid);
        self.last_chat.remove(&uid);
        self.emit(now, EventKind::MemberLeft { uid, reason }, out);
    }

    /// Handles one command; see the module docs for the contract.
    pub fn handle(&mut self, now: Timestamp, command: Command) -> Result<Vec<Event>, RoomError> {
        if self.state.dismissed {
            return Err(RoomError::Dismissed);
        }
        let Command { actor, action } = command;
        if let Actor::Member(uid) = &actor {
            if !matches!(action, Action::Enter { .. }) && !self.state.members.contains_key(uid) {
                return Err(RoomError::NotMember(uid.clone()));
            }
            self.touch(uid, now);
        }
        let mut out = Vec::new();
        match action {
            Action::Enter {
                uid,
                admin,
                publish_until,
            } => self.enter(now, &actor, uid, admin, publish_until, &mut out)?,
            Action::Leave => {
                let uid = self.member_actor(&actor)?;
                self.remove_member(now, &uid, LeaveReason::Quit, &mut out);
            }
            Action::Dismiss => {
                self.require_owner(&actor)?;
                self.emit(now, EventKind::Dismissed, &mut out);
            }
            other => self.handle_seat_or_im(now, &actor, other, &mut out)?,
        }
        Ok(out)
    }

    /// Refuses a uid that renders like a member's, the owner's or a banned uid.
    fn check_look_alike(&mut self, uid: &Uid) -> Result<(), RoomError> {
        let s = &self.state;
        let present = s.members.len() + s.bans.len() + 2;
        if self.id_keys.len() > 2 * present {
            self.id_keys.retain(|u, _| {
                s.members.contains_key(u) || s.bans.contains_key(u) || *u == s.owner
            });
        }
        let others: Vec<Uid> = s
            .members
            .keys()
            .chain(std::iter::once(&s.owner))
            .chain(s.bans.keys())
            .filter(|o| *o != uid)
            .cloned()
            .collect();
        let keys = &mut self.id_keys;
        let mine = keys
            .entry(uid.clone())
            .or_insert_with(|| crate::ids::look_alike_keys(uid.as_str()))
            .clone();
        for other in others {
            let k = keys
                .entry(other.clone())
                .or_insert_with(|| crate::ids::look_alike_keys(other.as_str()));
            if k.0 == mine.0 || k.1 == mine.1 {
                return Err(RoomError::ConfusableUid(other));
            }
        }
        Ok(())
    }

    fn enter(
        &mut self,
        now: Timestamp,
        actor: &Actor,
        uid: Uid,
        admin: bool,
        publish_until: Option<Timestamp>,
        out: &mut Vec<Event>,
    ) -> Result<(), RoomError> {
        if let Actor::Member(a) = actor
            && *a != uid
        {
            return Err(RoomError::PermissionDenied);
        }
        if let Some(until) = self.state.bans.get(&uid)
            && now < *until
        {
            return Err(RoomError::Banned { until: *until });
        }
        uid.check().map_err(RoomError::InvalidId)?;
        if !self.state.members.contains_key(&uid) {
            self.check_look_alike(&uid)?;
        }
        self.last_seen.insert(uid.clone(), now);
        if let Some(m) = self.state.members.get(&uid) {
            // Already present (a reconnect): nothing observable changes, unless the new token
            // changed the member's privileges.
            if m.admin == admin && m.publish_until == publish_until {
                return Ok(());
            }
        }
        let member = Member {
            uid,
            admin,
            publish_until,
        };
        self.emit(now, EventKind::MemberJoined { member }, out);
        Ok(())
    }
}

/// A regular or owner seat's availability for `uid`.
fn seat_available(state: &RoomState, index: SeatIndex, uid: &Uid) -> Result<(), RoomError> {
    let seat = state.seat(index).ok_or(RoomError::NoSuchSeat(index))?;
    match seat.kind {
        SeatKind::Boss => return Err(RoomError::SeatReserved(index)),
        SeatKind::Owner if *uid != state.owner => return Err(RoomError::SeatReserved(index)),
        _ => {}
    }
    match &seat.state {
        SeatState::Empty => Ok(()),
        SeatState::Locked => Err(RoomError::SeatLocked(index)),
        SeatState::Occupied { uid: o } if o == uid => Err(RoomError::AlreadySeated),
        SeatState::Occupied { .. } => Err(RoomError::SeatOccupied(index)),
    }
}

/// The seat to give `uid`: the one asked for, or the first free regular seat.
fn pick_seat(
    state: &RoomState,
    wanted: Option<SeatIndex>,
    uid: &Uid,
) -> Result<SeatIndex, RoomError> {
    match wanted {
        Some(i) => seat_available(state, i, uid).map(|()| i),
        None => state
            .seats
            .iter()
            .find(|s| s.kind == SeatKind::Regular && s.state == SeatState::Empty)
            .map(|s| s.index)
            .ok_or(RoomError::NoFreeSeat),
    }
}

impl Room {
    fn role_of(&self, uid: &Uid) -> Option<Role> {
        self.state.role(uid)
    }

    fn handle_seat_or_im(
        &mut self,
        now: Timestamp,
        actor: &Actor,
        action: Action,
        out: &mut Vec<Event>,
    ) -> Result<(), RoomError> {
        match action {
            Action::Enter { .. } | Action::Leave | Action::Dismiss => {
                unreachable!("handled by Room::handle")
            }
            Action::Apply { seat } => {
                let uid = self.member_actor(actor)?;
                self.require_unseated_publisher(&uid, now)?;
                if self.state.applications.contains_key(&uid) {
                    return Err(RoomError::AlreadyApplied);
                }
                pick_seat(&self.state, seat, &uid)?;
                let pending = Pending {
                    seat,
                    by: None,
                    expires: now.plus(self.state.settings.apply_timeout),
                };
                self.emit(now, EventKind::ApplicationAdded { uid, pending }, out);
            }
            Action::CancelApply => {
                let uid = self.member_actor(actor)?;
                self.end_application(now, uid, PendingEnd::Cancelled, out)?;
            }
            Action::Approve { uid } => {
                self.require_host(actor)?;
                let pending = self
                    .state
                    .applications
                    .get(&uid)
                    .ok_or(RoomError::NoApplication)?;
                self.require_unseated_publisher(&uid, now)?;
                let seat = pick_seat(&self.state, pending.seat, &uid)?;
                self.end_application(now, uid.clone(), PendingEnd::Accepted, out)?;
                self.end_invitation_if_any(now, &uid, out);
                self.occupy(now, &uid, seat, SeatReason::Taken, None, out);
            }
            Action::Reject { uid } => {
                self.require_host(actor)?;
                self.end_application(now, uid, PendingEnd::Declined, out)?;
            }
            Action::Invite { uid, seat } => {
                self.require_host(actor)?;
                self.require_target(actor, &uid)?;
                self.require_unseated_publisher(&uid, now)?;
                if self.state.invitations.contains_key(&uid) {
                    return Err(RoomError::AlreadyInvited);
                }
                pick_seat(&self.state, seat, &uid)?;
                let by = match actor {
                    Actor::Member(a) => Some(a.clone()),
                    Actor::System => None,
                };
                let pending = Pending {
                    seat,
                    by,
                    expires: now.plus(self.state.settings.invite_timeout),
                };
                self.emit(now, EventKind::InvitationAdded { uid, pending }, out);
            }
            Action::AcceptInvite => {
                let uid = self.member_actor(actor)?;
                let pending = self
                    .state
                    .invitations
                    .get(&uid)
                    .ok_or(RoomError::NoInvitation)?;
                self.require_unseated_publisher(&uid, now)?;
                let seat = pick_seat(&self.state, pending.seat, &uid)?;
                self.end_invitation(now, uid.clone(), PendingEnd::Accepted, out)?;
                if self.state.applications.contains_key(&uid) {
                    self.end_application(now, uid.clone(), PendingEnd::Cancelled, out)?;
                }
                self.occupy(now, &uid, seat, SeatReason::Taken, None, out);
            }
            Action::DeclineInvite => {
                let uid = self.member_actor(actor)?;
                self.end_invitation(now, uid, PendingEnd::Declined, out)?;
            }
            Action::TakeSeat { seat } => {
                let uid = self.member_actor(actor)?;
                match self.role_of(&uid) {
                    Some(Role::Owner | Role::Admin) => {}
                    _ => return Err(RoomError::PermissionDenied),
                }
                self.require_publisher(&uid, now)?;
                seat_available(&self.state, seat, &uid)?;
                self.end_application_if_any(now, &uid, out);
                self.end_invitation_if_any(now, &uid, out);
                self.occupy(now, &uid, seat, SeatReason::Taken, None, out);
            }
            Action::LeaveSeat => {
                let uid = self.member_actor(actor)?;
                self.state.seat_of(&uid).ok_or(RoomError::NotSeated)?;
                self.vacate(now, &uid, SeatReason::Left, out);
            }
            Action::MuteSelf | Action::UnmuteSelf => {
                let uid = self.member_actor(actor)?;
                let mut seat = self
                    .state
                    .seat_of(&uid)
                    .ok_or(RoomError::NotSeated)?
                    .clone();
                let mute = matches!(action, Action::MuteSelf);
                if !mute && seat.host_muted {
                    return Err(RoomError::HostMuted);
                }
                if seat.self_muted != mute {
                    seat.self_muted = mute;
                    self.set_seat(now, seat, SeatReason::MuteChanged, out);
                }
            }
            other => self.handle_host_action(now, actor, other, out)?,
        }
        Ok(())
    }
}
