//! Property tests over random operation sequences: seat invariants, permissions, versions, and
//! snapshot + events replay.

use std::collections::BTreeMap;
use std::time::Duration;

use onmic_room::{
    Action, Actor, BossSeatSettings, Command, Event, GiftId, ImPolicy, Role, Room, RoomError,
    RoomMode, RoomSettings, RoomState, SeatIndex, SeatState, Timestamp, Uid,
};
use proptest::prelude::*;

const UIDS: usize = 6;
const START: u64 = 1_000_000;

fn uid(i: usize) -> Uid {
    Uid(format!("u{i}"))
}

#[derive(Debug, Clone)]
enum Step {
    /// Actor (None: the system), action, and a steering pick (see `steer`).
    Do(Option<usize>, Action, Option<usize>),
    Advance(u64),
    Timeout,
}

fn any_uid() -> impl Strategy<Value = Uid> {
    (0..UIDS).prop_map(uid)
}

fn any_seat() -> impl Strategy<Value = SeatIndex> {
    (0u16..7).prop_map(SeatIndex)
}

fn any_action() -> impl Strategy<Value = Action> {
    let opt_seat = || proptest::option::of(any_seat());
    prop_oneof![
        3 => (0..UIDS, any::<bool>()).prop_map(|(i, admin)| Action::Enter {
            uid: uid(i),
            admin,
            publish_until: Some(Timestamp(START + 60_000)),
        }),
        1 => Just(Action::Leave),
        4 => opt_seat().prop_map(|seat| Action::Apply { seat }),
        1 => Just(Action::CancelApply),
        3 => Just(Action::AcceptInvite),
        1 => Just(Action::DeclineInvite),
        2 => any_seat().prop_map(|seat| Action::TakeSeat { seat }),
        1 => Just(Action::LeaveSeat),
        1 => Just(Action::MuteSelf),
        4 => Just(Action::UnmuteSelf),
        3 => (any_uid(), opt_seat()).prop_map(|(uid, seat)| Action::Invite { uid, seat }),
        4 => any_uid().prop_map(|uid| Action::Approve { uid }),
        1 => any_uid().prop_map(|uid| Action::Reject { uid }),
        1 => any_seat().prop_map(|seat| Action::KickFromSeat { seat }),
        4 => any_seat().prop_map(|seat| Action::MuteSeat { seat }),
        3 => any_seat().prop_map(|seat| Action::UnmuteSeat { seat }),
        1 => any_seat().prop_map(|seat| Action::LockSeat { seat }),
        1 => any_seat().prop_map(|seat| Action::UnlockSeat { seat }),
        1 => (any_seat(), any_seat()).prop_map(|(from, to)| Action::MoveSeat { from, to }),
        1 => (any_uid(), any::<bool>()).prop_map(|(uid, admin)| Action::SetAdmin { uid, admin }),
        1 => (any_uid(), 0u64..20_000).prop_map(|(uid, ms)| Action::Kick {
            uid,
            ban: Duration::from_millis(ms)
        }),
        1 => any_uid().prop_map(|uid| Action::Unban { uid }),
        1 => (any_uid(), 1u64..20_000).prop_map(|(uid, ms)| Action::MuteChat {
            uid,
            duration: Duration::from_millis(ms)
        }),
        1 => any_uid().prop_map(|uid| Action::UnmuteChat { uid }),
        1 => any_uid().prop_map(|uid| Action::GrantFloor { uid }),
        1 => any_uid().prop_map(|uid| Action::RevokeFloor { uid }),
        1 => "[a-z ]{0,12}".prop_map(|text| Action::Chat { text }),
        1 => (prop_oneof![Just("rose"), Just("rocket"), Just("nope")], 0u32..4).prop_map(
            |(g, count)| Action::SendGift {
                gift: GiftId::from(g),
                count,
                to: None
            }
        ),
        1 => "[a-z]{1,8}".prop_map(|text| Action::Notice { text }),
        1 => any_uid().prop_map(|uid| Action::ReportBombing {
            uid,
            detail: "rtp".into()
        }),
    ]
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        40 => ((proptest::option::weighted(0.9, 0..UIDS), any_action()), proptest::option::weighted(0.7, 0..64usize))
            .prop_map(|((a, act), pick)| Step::Do(a, act, pick)),
        1 => (proptest::option::weighted(0.9, 0..UIDS), Just(Action::Dismiss))
            .prop_filter("only sometimes", |(a, _)| a.is_some())
            .prop_map(|(a, act)| Step::Do(a, act, None)),
        6 => (1u64..4_000).prop_map(Step::Advance),
        6 => Just(Step::Timeout),
    ]
}

/// Random targets rarely hit anything interesting, so most steps aim at a live one: a pending
/// applicant, an occupied seat, a seated actor for self operations.
fn steer(
    s: &RoomState,
    actor: Option<usize>,
    action: Action,
    pick: usize,
) -> (Option<usize>, Action) {
    let nth = |v: Vec<Uid>| (!v.is_empty()).then(|| v[pick % v.len()].clone());
    let idx = |u: &Uid| u.0[1..].parse::<usize>().ok();
    let occupied: Vec<SeatIndex> = s
        .seats
        .iter()
        .filter(|x| x.occupant().is_some())
        .map(|x| x.index)
        .collect();
    let seat = (!occupied.is_empty()).then(|| occupied[pick % occupied.len()]);
    let seated: Vec<Uid> = s
        .seats
        .iter()
        .filter_map(|x| x.occupant().cloned())
        .collect();
    match action {
        Action::Approve { uid } => {
            let uid = nth(s.applications.keys().cloned().collect()).unwrap_or(uid);
            (actor, Action::Approve { uid })
        }
        Action::Reject { uid } => {
            let uid = nth(s.applications.keys().cloned().collect()).unwrap_or(uid);
            (actor, Action::Reject { uid })
        }
        Action::AcceptInvite | Action::DeclineInvite => {
            let a = nth(s.invitations.keys().cloned().collect()).and_then(|u| idx(&u));
            (a.or(actor), action)
        }
        Action::MuteSelf | Action::UnmuteSelf | Action::LeaveSeat => {
            (nth(seated).and_then(|u| idx(&u)).or(actor), action)
        }
        Action::KickFromSeat { seat: x } => (
            actor,
            Action::KickFromSeat {
                seat: seat.unwrap_or(x),
            },
        ),
        Action::MuteSeat { seat: x } => (
            actor,
            Action::MuteSeat {
                seat: seat.unwrap_or(x),
            },
        ),
        Action::UnmuteSeat { seat: x } => (
            actor,
            Action::UnmuteSeat {
                seat: seat.unwrap_or(x),
            },
        ),
        Action::LockSeat { seat: x } => (
            actor,
            Action::LockSeat {
                seat: seat.unwrap_or(x),
            },
        ),
        Action::MoveSeat { from, to } => (
            actor,
            Action::MoveSeat {
                from: seat.unwrap_or(from),
                to,
            },
        ),
        other => (actor, other),
    }
}

fn is_admin_op(a: &Action) -> bool {
    matches!(
        a,
        Action::Invite { .. }
            | Action::Approve { .. }
            | Action::Reject { .. }
            | Action::KickFromSeat { .. }
            | Action::MuteSeat { .. }
            | Action::UnmuteSeat { .. }
            | Action::LockSeat { .. }
            | Action::UnlockSeat { .. }
            | Action::MoveSeat { .. }
            | Action::SetAdmin { .. }
            | Action::Kick { .. }
            | Action::Unban { .. }
            | Action::MuteChat { .. }
            | Action::UnmuteChat { .. }
            | Action::GrantFloor { .. }
            | Action::RevokeFloor { .. }
            | Action::Dismiss
            | Action::Notice { .. }
            | Action::TakeSeat { .. }
            | Action::ReportBombing { .. }
            | Action::SetRules { .. }
    )
}

fn new_room(floor: bool) -> Room {
    let settings = RoomSettings {
        seat_count: 4,
        boss_seat: Some(BossSeatSettings {
            window: Duration::from_secs(10),
            hold: Duration::from_secs(5),
            min_value: 2,
        }),
        mode: if floor {
            RoomMode::FloorControl
        } else {
            RoomMode::Normal
        },
        invite_timeout: Duration::from_secs(3),
        apply_timeout: Duration::from_secs(4),
        presence_timeout: Duration::from_secs(15),
        history_len: 5,
        bombing: None,
        chat: onmic_room::ChatRules::default(),
    };
    let policy = ImPolicy {
        chat_burst: 3,
        chat_window: Duration::from_secs(2),
        word_filter: vec!["bad".into()],
        ..ImPolicy::default()
    };
    Room::new("r1".into(), uid(0), "t".into(), settings, policy)
}

fn check_invariants(s: &RoomState) -> Result<(), TestCaseError> {
    let mut seats_per_member: BTreeMap<&Uid, usize> = BTreeMap::new();
    for seat in &s.seats {
        if let Some(o) = seat.occupant() {
            *seats_per_member.entry(o).or_default() += 1;
            prop_assert!(s.members.contains_key(o), "occupant {o} is not a member");
        }
        if seat.state == SeatState::Locked {
            prop_assert!(seat.occupant().is_none(), "locked seat occupied");
            prop_assert!(seat.held_until.is_none());
        }
    }
    for (m, n) in seats_per_member {
        prop_assert!(n <= 1, "{m} holds {n} seats");
    }
    Ok(())
}

fn run(steps: Vec<Step>, floor: bool, snap_at: usize) -> Result<(), TestCaseError> {
    let mut room = new_room(floor);
    let mut now = Timestamp(START);
    // Everyone enters at first; u5's token has no publish privilege.
    for i in 0..UIDS {
        let publish_until = (i != 5).then_some(Timestamp(START + 40_000));
        let enter = Action::Enter {
            uid: uid(i),
            admin: i == 1,
            publish_until,
        };
        room.handle(now, Command::system(enter))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
    let mut all_events: Vec<Event> = Vec::new();
    let start_state = room.snapshot();
    let mut mid: Option<(RoomState, usize)> = None;
    for (n, step) in steps.into_iter().enumerate() {
        if n == snap_at {
            mid = Some((room.snapshot(), all_events.len()));
        }
        let before = room.snapshot();
        let events = match step {
            Step::Advance(ms) => {
                now = now.plus(Duration::from_millis(ms));
                Vec::new()
            }
            Step::Timeout => {
                if let Some(t) = room.poll_timeout() {
                    now = now.max(t);
                }
                room.handle_timeout(now)
            }
            Step::Do(actor, action, pick) => {
                let (actor, action) = match pick {
                    Some(p) => steer(&before, actor, action, p),
                    None => (actor, action),
                };
                let actor = actor
                    .map(|i| Actor::Member(uid(i)))
                    .unwrap_or(Actor::System);
                let role = match &actor {
                    Actor::Member(u) => before.role(u),
                    Actor::System => None,
                };
                let own_seat = match &actor {
                    Actor::Member(u) => before.seat_of(u).cloned(),
                    Actor::System => None,
                };
                let admin_op = is_admin_op(&action);
                let result = room.handle(
                    now,
                    Command {
                        actor: actor.clone(),
                        action,
                    },
                );
                if matches!(role, Some(Role::Audience | Role::Guest)) && admin_op {
                    prop_assert!(
                        matches!(
                            result,
                            Err(RoomError::PermissionDenied) | Err(RoomError::Dismissed)
                        ),
                        "audience/guest ran an admin op: {result:?}"
                    );
                }
                if let (Some(seat), Actor::Member(u)) = (&own_seat, &actor)
                    && seat.host_muted
                    && *u != before.owner
                {
                    let after = room.state().seat(seat.index).expect("seat exists");
                    prop_assert!(after.host_muted, "occupant lifted a host mute");
                }
                match result {
                    Ok(ev) => ev,
                    Err(_) => {
                        prop_assert_eq!(&before, room.state(), "a refused command changed state");
                        Vec::new()
                    }
                }
            }
        };
        let mut v = before.version;
        for e in &events {
            prop_assert_eq!(e.version, v + 1, "versions must increase by one");
            v = e.version;
            let json = serde_json::to_string(e).expect("serialize");
            let back: Event = serde_json::from_str(&json).expect("deserialize");
            prop_assert_eq!(&back, e);
        }
        prop_assert_eq!(room.state().version, v);
        check_invariants(room.state())?;
        // The media seam: nobody may publish without an unmuted seat (no ghost mic).
        for uid in (0..UIDS).map(uid) {
            if room.may_publish(&uid, now) {
                let s = room.state();
                let seat = s.seat_of(&uid);
                prop_assert!(
                    seat.is_some_and(|x| !x.host_muted && !x.self_muted),
                    "{uid} publishes without an unmuted seat"
                );
                prop_assert!(!s.dismissed);
            }
        }
        all_events.extend(events);
    }
    let mut replay = start_state;
    for e in &all_events {
        replay.apply(e);
    }
    prop_assert_eq!(&replay, room.state(), "replay from the start differs");
    if let Some((mut snap, from)) = mid {
        // A client that took a snapshot mid-way (and got it over the wire) catches up too.
        snap = serde_json::from_str(&serde_json::to_string(&snap).expect("ser")).expect("de");
        for e in &all_events[from..] {
            snap.apply(e);
        }
        prop_assert_eq!(&snap, room.state(), "replay from a mid snapshot differs");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_operation_sequences_keep_the_invariants(
        steps in proptest::collection::vec(any_step(), 1..120),
        floor in any::<bool>(),
        snap_at in 0usize..120,
    ) {
        run(steps, floor, snap_at)?;
    }
}
