//! Permission checks and the host, owner and IM actions.

use super::{Room, RoomError, pick_seat};
use crate::command::{Action, Actor};
use crate::config::{ChatAllowed, RoomMode};
use crate::ids::{SeatIndex, Timestamp, Uid};
use crate::state::{Event, EventKind, LeaveReason, PendingEnd, Role, Seat, SeatReason, SeatState};

impl Room {
    /// The acting member; the system cannot act as a member.
    pub(super) fn member_actor(&self, actor: &Actor) -> Result<Uid, RoomError> {
        match actor {
            Actor::Member(uid) => Ok(uid.clone()),
            Actor::System => Err(RoomError::PermissionDenied),
        }
    }

    /// Owner, admin, or the system.
    pub(super) fn require_host(&self, actor: &Actor) -> Result<(), RoomError> {
        match actor {
            Actor::System => Ok(()),
            Actor::Member(uid) => match self.role_of(uid) {
                Some(Role::Owner | Role::Admin) => Ok(()),
                _ => Err(RoomError::PermissionDenied),
            },
        }
    }

    /// Owner or the system.
    pub(super) fn require_owner(&self, actor: &Actor) -> Result<(), RoomError> {
        match actor {
            Actor::System => Ok(()),
            Actor::Member(uid) if *uid == self.state.owner => Ok(()),
            Actor::Member(_) => Err(RoomError::PermissionDenied),
        }
    }

    /// Hosts may act on members below them: nobody but the owner (and the system) touches the
    /// owner; admins do not act on other admins.
    pub(super) fn require_target(&self, actor: &Actor, target: &Uid) -> Result<(), RoomError> {
        let Actor::Member(a) = actor else {
            return Ok(());
        };
        if a == target || *a == self.state.owner {
            return Ok(());
        }
        if *target == self.state.owner || self.state.members.get(target).is_some_and(|m| m.admin) {
            return Err(RoomError::TargetProtected);
        }
        Ok(())
    }

    pub(super) fn require_publisher(&self, uid: &Uid, now: Timestamp) -> Result<(), RoomError> {
        let m = self
            .state
            .members
            .get(uid)
            .ok_or_else(|| RoomError::NotMember(uid.clone()))?;
        if m.publish_until.is_some_and(|t| now < t) {
            Ok(())
        } else {
            Err(RoomError::NoPublishPrivilege)
        }
    }

    pub(super) fn require_unseated_publisher(
        &self,
        uid: &Uid,
        now: Timestamp,
    ) -> Result<(), RoomError> {
        self.require_publisher(uid, now)?;
        if self.state.seat_of(uid).is_some() {
            return Err(RoomError::AlreadySeated);
        }
        Ok(())
    }

    pub(super) fn end_application(
        &mut self,
        now: Timestamp,
        uid: Uid,
        reason: PendingEnd,
        out: &mut Vec<Event>,
    ) -> Result<(), RoomError> {
        if !self.state.applications.contains_key(&uid) {
            return Err(RoomError::NoApplication);
        }
        self.emit(now, EventKind::ApplicationRemoved { uid, reason }, out);
        Ok(())
    }

    pub(super) fn end_invitation(
        &mut self,
        now: Timestamp,
        uid: Uid,
        reason: PendingEnd,
        out: &mut Vec<Event>,
    ) -> Result<(), RoomError> {
        if !self.state.invitations.contains_key(&uid) {
            return Err(RoomError::NoInvitation);
        }
        self.emit(now, EventKind::InvitationRemoved { uid, reason }, out);
        Ok(())
    }

    pub(super) fn end_application_if_any(
        &mut self,
        now: Timestamp,
        uid: &Uid,
        out: &mut Vec<Event>,
    ) {
        let _ = self.end_application(now, uid.clone(), PendingEnd::Cancelled, out);
    }

    pub(super) fn end_invitation_if_any(
        &mut self,
        now: Timestamp,
        uid: &Uid,
        out: &mut Vec<Event>,
    ) {
        let _ = self.end_invitation(now, uid.clone(), PendingEnd::Cancelled, out);
    }

    /// A seat by index, for a host acting on it (checking the occupant is a fair target).
    fn host_seat(&self, actor: &Actor, index: SeatIndex) -> Result<Seat, RoomError> {
        self.require_host(actor)?;
        let seat = self
            .state
            .seat(index)
            .ok_or(RoomError::NoSuchSeat(index))?
            .clone();
        if let Some(o) = seat.occupant() {
            self.require_target(actor, o)?;
        }
        Ok(seat)
    }

    pub(super) fn handle_host_action(
        &mut self,
        now: Timestamp,
        actor: &Actor,
        action: Action,
        out: &mut Vec<Event>,
    ) -> Result<(), RoomError> {
        match action {
            Action::KickFromSeat { seat } => {
                let seat = self.host_seat(actor, seat)?;
                let uid = seat
                    .occupant()
                    .ok_or(RoomError::SeatEmpty(seat.index))?
                    .clone();
                self.vacate(now, &uid, SeatReason::KickedOff, out);
            }
            Action::MuteSeat { seat } | Action::UnmuteSeat { seat } => {
                let mute = matches!(action, Action::MuteSeat { .. });
                let mut seat = self.host_seat(actor, seat)?;
                // A host-muted occupant cannot lift its own mute, even as admin; only the owner
                // and the system can.
                if let (Actor::Member(a), Some(o)) = (actor, seat.occupant())
                    && !mute
                    && a == o
                    && *a != self.state.owner
                {
                    return Err(RoomError::HostMuted);
                }
                if seat.host_muted != mute {
                    seat.host_muted = mute;
                    self.set_seat(now, seat, SeatReason::MuteChanged, out);
                }
            }
            Action::LockSeat { seat } => {
                let mut seat = self.host_seat(actor, seat)?;
                if seat.state != SeatState::Locked {
                    seat.state = SeatState::Locked;
                    seat.self_muted = false;
                    seat.held_until = None;
                    self.set_seat(now, seat, SeatReason::Locked, out);
                }
            }
            Action::UnlockSeat { seat } => {
                let mut seat = self.host_seat(actor, seat)?;
                if seat.state == SeatState::Locked {
                    seat.state = SeatState::Empty;
                    self.set_seat(now, seat, SeatReason::Unlocked, out);
                }
            }
            Action::MoveSeat { from, to } => {
                let seat = self.host_seat(actor, from)?;
                let uid = seat.occupant().ok_or(RoomError::SeatEmpty(from))?.clone();
                let to = pick_seat(&self.state, Some(to), &uid)?;
                self.occupy(now, &uid, to, SeatReason::Moved, None, out);
            }
            Action::SetAdmin { uid, admin } => {
                self.require_owner(actor)?;
                if uid == self.state.owner {
                    return Err(RoomError::TargetProtected);
                }
                let m = self
                    .state
                    .members
                    .get(&uid)
                    .ok_or_else(|| RoomError::NotMember(uid.clone()))?;
                if m.admin != admin {
                    let role = if admin {
                        Role::Admin
                    } else if self.state.seat_of(&uid).is_some() {
                        Role::Guest
                    } else {
                        Role::Audience
                    };
                    self.emit(now, EventKind::RoleChanged { uid, role }, out);
                }
            }
            Action::Kick { uid, ban } => {
                self.require_owner(actor)?;
                crate::config::check_duration("ban_ms", ban)?;
                if uid == self.state.owner {
                    return Err(RoomError::TargetProtected);
                }
                let present = self.state.members.contains_key(&uid);
                if !present && ban.is_zero() {
                    return Err(RoomError::NotMember(uid));
                }
                if present {
                    self.remove_member(now, &uid, LeaveReason::Kicked, out);
                }
                if !ban.is_zero() {
                    let until = now.plus(ban);
                    self.emit(now, EventKind::Banned { uid, until }, out);
                }
            }
            Action::Unban { uid } => {
                self.require_owner(actor)?;
                if !self.state.bans.contains_key(&uid) {
                    return Err(RoomError::NotBanned);
                }
                self.emit(now, EventKind::Unbanned { uid }, out);
            }
            Action::MuteChat { uid, duration } => {
                self.require_host(actor)?;
                self.require_target(actor, &uid)?;
                crate::config::check_duration("duration_ms", duration)?;
                let until = now.plus(duration);
                self.emit(now, EventKind::ChatMuted { uid, until }, out);
            }
            Action::UnmuteChat { uid } => {
                self.require_host(actor)?;
                if !self.state.chat_mutes.contains_key(&uid) {
                    return Err(RoomError::NotChatMuted);
                }
                self.emit(now, EventKind::ChatUnmuted { uid }, out);
            }
            Action::GrantFloor { ref uid } | Action::RevokeFloor { ref uid } => {
                let grant = matches!(action, Action::GrantFloor { .. });
                let uid = uid.clone();
                if *actor != Actor::System {
                    return Err(RoomError::PermissionDenied);
                }
                if self.state.settings.mode != RoomMode::FloorControl {
                    return Err(RoomError::NotFloorMode);
                }
                if !self.state.members.contains_key(&uid) {
                    return Err(RoomError::NotMember(uid));
                }
                if grant && !self.state.floor.contains(&uid) {
                    self.emit(now, EventKind::FloorGranted { uid }, out);
                } else if !grant && self.state.floor.contains(&uid) {
                    self.emit(now, EventKind::FloorRevoked { uid }, out);
                }
            }
            Action::SetRules { bombing, chat } => {
                self.require_owner(actor)?;
                if let Some(b) = &bombing {
                    b.check()?;
                }
                chat.check()?;
                let s = &self.state.settings;
                if s.bombing != bombing || s.chat != chat {
                    self.emit(now, EventKind::RulesChanged { bombing, chat }, out);
                }
            }
            Action::ReportBombing { uid, detail } => {
                if *actor != Actor::System {
                    return Err(RoomError::PermissionDenied);
                }
                self.emit(now, EventKind::BombingDetected { uid, detail }, out);
            }
            Action::Notice { text } => {
                self.require_host(actor)?;
                let text = self.check_text(text)?;
                self.emit(now, EventKind::Notice { text }, out);
            }
            Action::Chat { text } => {
                let from = self.member_actor(actor)?;
                if let Some(until) = self.state.chat_mutes.get(&from)
                    && now < *until
                {
                    return Err(RoomError::ChatMuted { until: *until });
                }
                let rules = self.state.settings.chat;
                let host = matches!(self.role_of(&from), Some(Role::Owner | Role::Admin));
                let allowed = match rules.who {
                    ChatAllowed::Everyone => true,
                    ChatAllowed::Seated => host || self.state.seat_of(&from).is_some(),
                    ChatAllowed::Hosts => host,
                };
                if !allowed {
                    return Err(RoomError::ChatRestricted(rules.who));
                }
                if !host
                    && !rules.slow_mode.is_zero()
                    && let Some(last) = self.last_chat.get(&from)
                    && now < last.plus(rules.slow_mode)
                {
                    return Err(RoomError::RateLimited {
                        retry_after_ms: last.plus(rules.slow_mode).0 - now.0,
                    });
                }
                let text = self.check_text(text)?;
                let (burst, window) = (self.policy.chat_burst, self.policy.chat_window);
                self.chat_rate
                    .entry(from.clone())
                    .or_default()
                    .try_take(now, burst, window)
                    .map_err(|d| RoomError::RateLimited {
                        retry_after_ms: u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
                    })?;
                self.last_chat.insert(from.clone(), now);
                let text = crate::im::mask_words(&text, &self.policy.word_filter);
                self.emit(now, EventKind::Chat { from, text }, out);
            }
            Action::Custom { kind, payload } => {
                let from = self.member_actor(actor)?;
                match crate::im::check_text(&kind, false) {
                    Ok(()) => {}
                    Err(crate::im::TextError::Empty) => return Err(RoomError::EmptyMessage),
                    Err(e) => return Err(RoomError::BadText(e)),
                }
                let size = kind.len() + payload.to_string().len();
                if size > self.policy.max_custom_bytes {
                    return Err(RoomError::MessageTooLong {
                        max: self.policy.max_custom_bytes,
                    });
                }
                self.emit(
                    now,
                    EventKind::Custom {
                        from,
                        kind,
                        payload,
                    },
                    out,
                );
            }
            Action::SendGift { gift, count, to } => {
                let from = self.member_actor(actor)?;
                let unit = self
                    .policy
                    .gifts
                    .get(&gift)
                    .ok_or(RoomError::UnknownGift)?
                    .value;
                let max = self.policy.max_gift_count;
                if count == 0 || count > max {
                    return Err(RoomError::BadGiftCount { max });
                }
                let value = unit.saturating_mul(u64::from(count));
                self.emit(
                    now,
                    EventKind::Gift {
                        from: from.clone(),
                        to,
                        gift,
                        count,
                        value,
                    },
                    out,
                );
                self.award_boss_seat(now, &from, out);
            }
            other => unreachable!("action {other:?} is dispatched in room.rs"),
        }
        Ok(())
    }

    fn check_text(&self, text: String) -> Result<String, RoomError> {
        let max = self.policy.max_chat_chars;
        match crate::im::check_text(&text, true) {
            Ok(()) => {}
            Err(crate::im::TextError::Empty) => return Err(RoomError::EmptyMessage),
            Err(e) => return Err(RoomError::BadText(e)),
        }
        if text.chars().count() > max {
            return Err(RoomError::MessageTooLong { max });
        }
        Ok(text)
    }
}
