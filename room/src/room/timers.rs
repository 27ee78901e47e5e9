//! Timers (lapsing invitations, applications, mutes, bans, the boss seat's hold, presence) and
//! the boss seat award.

use super::Room;
use crate::ids::{Timestamp, Uid};
use crate::state::{Event, EventKind, LeaveReason, PendingEnd, SeatKind, SeatReason, SeatState};

impl Room {
    /// When `handle_timeout` must next be called, if ever.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let s = &self.state;
        if s.dismissed {
            return None;
        }
        let presence = s.settings.presence_timeout;
        let seated_privilege = s
            .seats
            .iter()
            .filter_map(|seat| seat.occupant())
            .filter_map(|u| s.members.get(u))
            .map(|m| m.publish_until.unwrap_or(Timestamp(0)));
        s.applications
            .values()
            .chain(s.invitations.values())
            .map(|p| p.expires)
            .chain(s.seats.iter().filter_map(|seat| seat.held_until))
            .chain(s.chat_mutes.values().copied())
            .chain(s.bans.values().copied())
            .chain(seated_privilege)
            .chain(self.last_seen.values().map(|t| t.plus(presence)))
            .min()
    }

    /// Fires every timer due at `now`; returns the events.
    pub fn handle_timeout(&mut self, now: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        if self.state.dismissed {
            return out;
        }
        let due = |t: &Timestamp| *t <= now;
        let expired: Vec<Uid> = self
            .state
            .applications
            .iter()
            .filter(|(_, p)| due(&p.expires))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in expired {
            let reason = PendingEnd::Expired;
            self.emit(now, EventKind::ApplicationRemoved { uid, reason }, &mut out);
        }
        let expired: Vec<Uid> = self
            .state
            .invitations
            .iter()
            .filter(|(_, p)| due(&p.expires))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in expired {
            let reason = PendingEnd::Expired;
            self.emit(now, EventKind::InvitationRemoved { uid, reason }, &mut out);
        }
        let boss_done: Vec<Uid> = self
            .state
            .seats
            .iter()
            .filter(|s| s.held_until.is_some_and(|t| due(&t)))
            .filter_map(|s| s.occupant().cloned())
            .collect();
        for uid in boss_done {
            self.vacate(now, &uid, SeatReason::BossExpired, &mut out);
        }
        let unmuted: Vec<Uid> = self
            .state
            .chat_mutes
            .iter()
            .filter(|(_, t)| due(t))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in unmuted {
            self.emit(now, EventKind::ChatUnmuted { uid }, &mut out);
        }
        let unbanned: Vec<Uid> = self
            .state
            .bans
            .iter()
            .filter(|(_, t)| due(t))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in unbanned {
            self.emit(now, EventKind::Unbanned { uid }, &mut out);
        }
        let lapsed: Vec<Uid> = self
            .state
            .seats
            .iter()
            .filter_map(|seat| seat.occupant())
            .filter(|u| {
                self.state
                    .members
                    .get(*u)
                    .is_none_or(|m| m.publish_until.is_none_or(|t| due(&t)))
            })
            .cloned()
            .collect();
        for uid in lapsed {
            self.vacate(now, &uid, SeatReason::PrivilegeExpired, &mut out);
        }
        let presence = self.state.settings.presence_timeout;
        let mut silent: Vec<Uid> = self
            .last_seen
            .iter()
            .filter(|(_, t)| due(&t.plus(presence)))
            .map(|(u, _)| u.clone())
            .collect();
        silent.sort();
        for uid in silent {
            if self.state.members.contains_key(&uid) {
                self.remove_member(now, &uid, LeaveReason::Timeout, &mut out);
            } else {
                self.last_seen.remove(&uid);
            }
        }
        out
    }

    /// After a gift: the sender takes the boss seat if it is now the window's top gifter (ties
    /// keep the holder), has given at least the minimum, and may publish.
    pub(super) fn award_boss_seat(&mut self, now: Timestamp, from: &Uid, out: &mut Vec<Event>) {
        let Some(boss) = self.state.settings.boss_seat.clone() else {
            return;
        };
        let Some(seat) = self.state.seats.iter().find(|s| s.kind == SeatKind::Boss) else {
            return;
        };
        let index = seat.index;
        let holder = match &seat.state {
            SeatState::Locked => return,
            SeatState::Empty => None,
            SeatState::Occupied { uid } => Some(uid.clone()),
        };
        if self.require_publisher(from, now).is_err() {
            return;
        }
        let totals = self.state.window_totals();
        let mine = totals.get(from).copied().unwrap_or(0);
        if mine < boss.min_value || totals.values().any(|v| *v > mine) {
            return;
        }
        if let Some(h) = &holder
            && h != from
            && totals.get(h).copied().unwrap_or(0) >= mine
        {
            return;
        }
        let until = Some(now.plus(boss.hold));
        self.occupy(now, from, index, SeatReason::BossTaken, until, out);
    }
}
