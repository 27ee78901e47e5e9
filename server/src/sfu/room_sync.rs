//! What the room's committed events mean for a media driver, and how a driver acts on a bombing:
//! shared by the str0m driver (`driver/`) and the bench-only rtc driver, so that both judge
//! packets against the same room state and report the same way. No sockets, no WebRTC.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use onmic_room::{Action, BombingAction, Command, EventKind, RoomId, RoomSettings, Uid};
use tokio::sync::broadcast;

use super::router::{Bombing, BombingPolicy, PeerId, Router};
use crate::hub::{Frame, Hub};

/// The room events committed since a driver last looked, as the media layer needs them.
#[derive(Debug, Default, PartialEq)]
pub struct RoomChanges {
    /// Who may publish may have changed (seats, roles, floor, a member leaving, or events
    /// missed): ask the hub again.
    pub refresh: bool,
    /// Members who left: their peer connections go.
    pub gone: Vec<Uid>,
    /// The room is gone: every peer in it goes.
    pub dismissed: bool,
    /// The owner changed the room's anti-bombing answer (`Some(None)`: back to the server's
    /// default); the last change wins.
    pub bombing: Option<Option<BombingAction>>,
}

impl RoomChanges {
    /// Takes every event already committed to `events` (never waits).
    pub fn drain(events: &mut broadcast::Receiver<Frame>) -> RoomChanges {
        let mut changes = RoomChanges::default();
        loop {
            match events.try_recv() {
                Ok(frame) => match &frame.event.kind {
                    EventKind::SeatChanged { .. }
                    | EventKind::RoleChanged { .. }
                    | EventKind::FloorGranted { .. }
                    | EventKind::FloorRevoked { .. } => changes.refresh = true,
                    EventKind::MemberLeft { uid, .. } => {
                        changes.gone.push(uid.clone());
                        changes.refresh = true;
                    }
                    EventKind::Dismissed => changes.dismissed = true,
                    EventKind::RulesChanged { bombing, .. } => changes.bombing = Some(*bombing),
                    _ => {}
                },
                // Events were missed: the room state is asked for again.
                Err(broadcast::error::TryRecvError::Lagged(_)) => changes.refresh = true,
                // The hub let go of the room (a cluster handed it to another node): its peers
                // here go, as for a dismissal; publishing authority is the new node's.
                Err(broadcast::error::TryRecvError::Closed) => {
                    changes.dismissed = true;
                    break;
                }
                Err(broadcast::error::TryRecvError::Empty) => break,
            }
        }
        changes
    }

    /// Puts a changed anti-bombing answer into the room's router (the next bombing follows it).
    pub fn apply_policy(&self, router: &mut Router, server_policy: &BombingPolicy) {
        if let Some(bombing) = self.bombing {
            let settings = RoomSettings {
                bombing,
                ..RoomSettings::default()
            };
            router.set_policy(room_bombing_policy(server_policy, &settings));
        }
    }

    /// The peers a driver closes for these changes: every peer of the room when it was
    /// dismissed, else those of the members who left (`router` holds the room's peers on the
    /// driver's shard).
    pub fn departed_peers(&self, router: &Router) -> Vec<PeerId> {
        if self.dismissed {
            router.peers().collect()
        } else {
            self.gone
                .iter()
                .flat_map(|uid| router.peers_of(uid))
                .collect()
        }
    }
}

/// Starts following `room` on a driver's shard: its event stream and a router under the room's
/// bombing policy (`settings` if the caller has them, else the room's snapshot). `None` when the
/// room does not exist.
pub fn open_room(
    hub: &Hub,
    room: &RoomId,
    settings: Option<&RoomSettings>,
    server_policy: &BombingPolicy,
    volume_interval: Duration,
) -> Option<(Router, broadcast::Receiver<Frame>)> {
    let events = hub.subscribe(room).ok()?;
    let policy = match settings {
        Some(settings) => room_bombing_policy(server_policy, settings),
        None => room_bombing_policy(server_policy, &hub.snapshot(room).ok()?.settings),
    };
    Some((Router::new(policy, volume_interval), events))
}

/// Asks the hub again who in `room` may publish and on which slot (seat index): only a seated
/// member may, and then the room's own rule decides. Levels relayed by other shards stop counting
/// the moment their publisher may not publish (as a local publisher's meter is reset).
pub fn refresh_authorisation(
    hub: &Hub,
    room: &RoomId,
    router: &mut Router,
    slot_of: &mut HashMap<Uid, usize>,
) {
    let Ok(snapshot) = hub.snapshot(room) else {
        return;
    };
    let now = Instant::now();
    slot_of.clear();
    for uid in router.uids() {
        let seat = snapshot.seat_of(&uid);
        let allowed = seat.is_some() && hub.may_publish(room, &uid);
        if allowed && let Some(seat) = seat {
            slot_of.insert(uid.clone(), usize::from(seat.index.0));
        }
        router.set_authorized(now, &uid, allowed);
    }
    for uid in router.remote_uids() {
        let seated = snapshot.seat_of(&uid).is_some();
        if !(seated && hub.may_publish(room, &uid)) {
            router.forget_remote_level(&uid);
        }
    }
}

/// The room's own anti-bombing setting wins over the server's default.
fn room_bombing_policy(server: &BombingPolicy, settings: &RoomSettings) -> BombingPolicy {
    let kick_and_ban = match settings.bombing {
        None => server.kick_and_ban,
        Some(BombingAction::ReportOnly) => None,
        Some(BombingAction::KickAndBan { ban }) => Some(ban),
    };
    BombingPolicy {
        kick_and_ban,
        ..server.clone()
    }
}

/// Reports audio from `b.uid`, who may not publish (event + webhook), and kicks and bans the
/// sender if the room's policy says so. Returns whether a kick was issued: the driver then
/// applies the room's events at once, so the kicked member's peers go before its next packet.
pub fn act_on_bombing(hub: &Hub, room: &RoomId, b: &Bombing) -> bool {
    tracing::warn!(room = %room, uid = %b.uid.as_str(), "bombing: audio without an unmuted seat");
    if let Err(e) = hub.report_bombing(room, &b.uid, &b.detail) {
        tracing::error!(%e, "reporting bombing failed");
    }
    let Some(ban) = b.kick_and_ban else {
        return false;
    };
    let kick = Action::Kick {
        uid: b.uid.clone(),
        ban,
    };
    if let Err(e) = hub.execute(room, Command::system(kick)) {
        tracing::warn!(%e, "kicking a bomber failed");
    }
    true
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use onmic_room::{Event, LeaveReason, Timestamp};

    use super::*;

    fn frame(version: u64, kind: EventKind) -> Frame {
        Frame {
            event: Arc::new(Event {
                version,
                at: Timestamp(version),
                kind,
            }),
            json: "{}".into(),
        }
    }

    #[test]
    fn events_become_the_changes_a_driver_acts_on() {
        let (tx, mut rx) = broadcast::channel(8);
        assert_eq!(
            RoomChanges::drain(&mut rx),
            RoomChanges::default(),
            "nothing yet"
        );
        tx.send(frame(
            1,
            EventKind::MemberLeft {
                uid: Uid::from("guest"),
                reason: LeaveReason::Kicked,
            },
        ))
        .expect("sent");
        let changes = RoomChanges::drain(&mut rx);
        assert_eq!(changes.gone, vec![Uid::from("guest")]);
        assert!(changes.refresh && !changes.dismissed);
        assert_eq!(
            RoomChanges::drain(&mut rx),
            RoomChanges::default(),
            "taken once"
        );

        tx.send(frame(2, EventKind::Dismissed)).expect("sent");
        assert!(RoomChanges::drain(&mut rx).dismissed);
        // The room's sender dropped (the hub let the room go): its peers go too.
        assert!(!RoomChanges::drain(&mut rx).dismissed);
        drop(tx);
        assert!(RoomChanges::drain(&mut rx).dismissed);
    }

    #[test]
    fn a_rules_change_swaps_the_routers_bombing_policy() {
        let (tx, mut rx) = broadcast::channel(8);
        let server = BombingPolicy::default();
        let mut router = Router::new(server.clone(), std::time::Duration::from_secs(1));
        let ban = std::time::Duration::from_secs(600);
        tx.send(frame(
            1,
            EventKind::RulesChanged {
                bombing: Some(BombingAction::KickAndBan { ban }),
                chat: onmic_room::ChatRules::default(),
            },
        ))
        .expect("sent");
        let changes = RoomChanges::drain(&mut rx);
        changes.apply_policy(&mut router, &server);
        assert_eq!(router.policy().kick_and_ban, Some(ban));
        // No change: the policy stays.
        RoomChanges::default().apply_policy(&mut router, &server);
        assert_eq!(router.policy().kick_and_ban, Some(ban));
        tx.send(frame(
            2,
            EventKind::RulesChanged {
                bombing: None,
                chat: onmic_room::ChatRules::default(),
            },
        ))
        .expect("sent");
        RoomChanges::drain(&mut rx).apply_policy(&mut router, &server);
        assert_eq!(
            router.policy().kick_and_ban,
            server.kick_and_ban,
            "back to the server's default"
        );
    }

    #[test]
    fn those_who_left_lose_their_peers_and_a_dismissed_room_loses_all() {
        let mut router = Router::new(BombingPolicy::default(), std::time::Duration::from_secs(1));
        router.add_peer(PeerId(1), Uid::from("guest"), false);
        router.add_peer(PeerId(2), Uid::from("listener"), false);
        router.add_peer(PeerId(3), Uid::from("guest"), false);
        let left = RoomChanges {
            refresh: true,
            gone: vec![Uid::from("guest")],
            dismissed: false,
            bombing: None,
        };
        let mut ids = left.departed_peers(&router);
        ids.sort_by_key(|p| p.0);
        assert_eq!(ids, vec![PeerId(1), PeerId(3)]);
        let dismissed = RoomChanges {
            dismissed: true,
            ..RoomChanges::default()
        };
        assert_eq!(dismissed.departed_peers(&router).len(), 3);
        assert!(RoomChanges::default().departed_peers(&router).is_empty());
    }

    #[test]
    fn missed_events_ask_for_the_room_state_again() {
        let (tx, mut rx) = broadcast::channel(2);
        for v in 1..=5 {
            tx.send(frame(v, EventKind::Dismissed)).expect("sent");
        }
        // Three were overwritten before the driver looked: it cannot know what they were.
        let changes = RoomChanges::drain(&mut rx);
        assert!(changes.refresh, "a lagged receiver refreshes");
        assert!(changes.dismissed, "what was still queued is seen");
    }
}
