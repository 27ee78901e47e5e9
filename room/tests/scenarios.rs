//! Scenario tests of the room rules with a fake clock.

use std::time::Duration;

use onmic_room::{
    Action, BombingAction, BossSeatSettings, ChatAllowed, ChatRules, Command, EventKind, GiftId,
    ImPolicy, LeaveReason, Room, RoomError, RoomMode, RoomSettings, SeatIndex, SeatReason,
    Timestamp, Uid,
};

const T0: Timestamp = Timestamp(1_000_000);

fn at(ms: u64) -> Timestamp {
    Timestamp(T0.0 + ms)
}

fn room(settings: RoomSettings) -> Room {
    let policy = ImPolicy {
        word_filter: vec!["bad".into()],
        chat_burst: 2,
        chat_window: Duration::from_secs(1),
        ..ImPolicy::default()
    };
    let mut r = Room::new("r".into(), "owner".into(), "t".into(), settings, policy);
    for u in ["owner", "a", "b"] {
        enter(&mut r, u, T0);
    }
    r
}

fn enter(r: &mut Room, u: &str, now: Timestamp) {
    let enter = Action::Enter {
        uid: u.into(),
        admin: false,
        publish_until: Some(at(3_600_000)),
    };
    r.handle(now, Command::system(enter)).expect("enter");
}

fn cmd(r: &mut Room, now: Timestamp, who: &str, a: Action) -> Result<Vec<EventKind>, RoomError> {
    r.handle(now, Command::member(who, a))
        .map(|v| v.into_iter().map(|e| e.kind).collect())
}

fn seat_of(r: &Room, u: &str) -> Option<SeatIndex> {
    r.state().seat_of(&Uid::from(u)).map(|s| s.index)
}

#[test]
fn apply_approve_mute_and_the_ghost_mic_rule() {
    let mut r = room(RoomSettings::default());
    cmd(
        &mut r,
        T0,
        "a",
        Action::Apply {
            seat: Some(SeatIndex(3)),
        },
    )
    .unwrap();
    assert_eq!(
        cmd(&mut r, T0, "b", Action::Approve { uid: "a".into() }),
        Err(RoomError::PermissionDenied)
    );
    cmd(&mut r, T0, "owner", Action::Approve { uid: "a".into() }).unwrap();
    assert_eq!(seat_of(&r, "a"), Some(SeatIndex(3)));
    assert!(r.may_publish(&"a".into(), T0));
    cmd(&mut r, T0, "owner", Action::MuteSeat { seat: SeatIndex(3) }).unwrap();
    assert!(!r.may_publish(&"a".into(), T0));
    assert_eq!(
        cmd(&mut r, T0, "a", Action::UnmuteSelf),
        Err(RoomError::HostMuted)
    );
    // "a" goes silent: after the presence timeout its seat is released and it is told on return.
    let mut now = T0;
    while now < at(40_000) {
        now = now.plus(Duration::from_secs(5));
        r.touch(&"owner".into(), now);
        r.touch(&"b".into(), now);
        r.handle_timeout(now);
    }
    assert_eq!(seat_of(&r, "a"), None);
    assert!(!r.state().members.contains_key(&Uid::from("a")));
    enter(&mut r, "a", now);
    let lost = r
        .take_lost_seat(&"a".into())
        .expect("told about the lost seat");
    assert_eq!(
        (lost.seat, lost.reason),
        (SeatIndex(3), SeatReason::Offline)
    );
    assert!(!r.may_publish(&"a".into(), now));
}

#[test]
fn invitations_lapse_and_kick_bans() {
    let mut r = room(RoomSettings::default());
    cmd(
        &mut r,
        T0,
        "owner",
        Action::Invite {
            uid: "b".into(),
            seat: None,
        },
    )
    .unwrap();
    assert_eq!(r.poll_timeout(), Some(at(30_000)));
    for u in ["owner", "a", "b"] {
        r.touch(&u.into(), at(29_000));
    }
    let ev = r.handle_timeout(at(30_000));
    assert!(
        ev.iter()
            .any(|e| matches!(e.kind, EventKind::InvitationRemoved { .. }))
    );
    assert_eq!(
        cmd(&mut r, at(30_000), "b", Action::AcceptInvite),
        Err(RoomError::NoInvitation)
    );
    let kick = Action::Kick {
        uid: "b".into(),
        ban: Duration::from_secs(60),
    };
    assert_eq!(
        cmd(&mut r, at(30_000), "a", kick.clone()),
        Err(RoomError::PermissionDenied)
    );
    let ev = cmd(&mut r, at(30_000), "owner", kick).unwrap();
    assert!(ev.contains(&EventKind::MemberLeft {
        uid: "b".into(),
        reason: LeaveReason::Kicked
    }));
    let again = Action::Enter {
        uid: "b".into(),
        admin: false,
        publish_until: None,
    };
    assert!(matches!(
        r.handle(at(31_000), Command::system(again.clone())),
        Err(RoomError::Banned { .. })
    ));
    assert!(r.handle(at(90_000), Command::system(again)).is_ok());
}

#[test]
fn chat_is_filtered_rate_limited_and_mutable() {
    let mut r = room(RoomSettings::default());
    let chat = |t: &str| Action::Chat { text: t.into() };
    let ev = cmd(&mut r, T0, "a", chat("so BAD")).unwrap();
    assert_eq!(
        ev,
        vec![EventKind::Chat {
            from: "a".into(),
            text: "so ***".into()
        }]
    );
    cmd(&mut r, T0, "a", chat("two")).unwrap();
    assert!(matches!(
        cmd(&mut r, T0, "a", chat("three")),
        Err(RoomError::RateLimited { .. })
    ));
    assert!(cmd(&mut r, at(1000), "a", chat("later")).is_ok());
    let mute = Action::MuteChat {
        uid: "a".into(),
        duration: Duration::from_secs(10),
    };
    cmd(&mut r, at(1000), "owner", mute).unwrap();
    assert!(matches!(
        cmd(&mut r, at(5000), "a", chat("hi")),
        Err(RoomError::ChatMuted { .. })
    ));
    assert_eq!(
        cmd(&mut r, at(5000), "b", chat(&"x".repeat(501))),
        Err(RoomError::MessageTooLong { max: 500 })
    );
    assert_eq!(r.state().recent.len(), 3);
}

#[test]
fn the_owner_changes_the_rooms_rules_while_it_runs() {
    let mut r = room(RoomSettings::default());
    let chat = |t: &str| Action::Chat { text: t.into() };
    let rules = |who, slow_ms, bombing| Action::SetRules {
        bombing,
        chat: ChatRules {
            who,
            slow_mode: Duration::from_millis(slow_ms),
        },
    };
    let ban = Some(BombingAction::KickAndBan {
        ban: Duration::from_secs(600),
    });
    // Only the owner sets the rules.
    assert_eq!(
        cmd(&mut r, T0, "a", rules(ChatAllowed::Hosts, 0, ban)),
        Err(RoomError::PermissionDenied)
    );
    let ev = cmd(&mut r, T0, "owner", rules(ChatAllowed::Seated, 0, ban)).unwrap();
    assert_eq!(
        ev,
        vec![EventKind::RulesChanged {
            bombing: ban,
            chat: ChatRules {
                who: ChatAllowed::Seated,
                slow_mode: Duration::ZERO
            }
        }]
    );
    assert_eq!(r.state().settings.bombing, ban);
    // The same rules again change nothing.
    assert_eq!(
        cmd(&mut r, T0, "owner", rules(ChatAllowed::Seated, 0, ban)),
        Ok(vec![])
    );
    // Seated-only chat: the audience is refused, a seated guest and the owner are not.
    assert_eq!(
        cmd(&mut r, T0, "a", chat("hi")),
        Err(RoomError::ChatRestricted(ChatAllowed::Seated))
    );
    cmd(&mut r, T0, "owner", chat("welcome")).unwrap();
    cmd(
        &mut r,
        T0,
        "owner",
        Action::Invite {
            uid: "a".into(),
            seat: None,
        },
    )
    .unwrap();
    cmd(&mut r, T0, "a", Action::AcceptInvite).unwrap();
    cmd(&mut r, T0, "a", chat("hi")).unwrap();
    // Hosts only: the seated guest is refused too; nothing was half-done (no rate spent).
    cmd(&mut r, T0, "owner", rules(ChatAllowed::Hosts, 0, None)).unwrap();
    assert_eq!(
        r.state().settings.bombing,
        None,
        "back to the server's default"
    );
    assert_eq!(
        cmd(&mut r, at(10), "a", chat("again")),
        Err(RoomError::ChatRestricted(ChatAllowed::Hosts))
    );
    // Slow mode, 3 s: a member's second message within 3 s is refused with the wait; the owner
    // is exempt.
    cmd(
        &mut r,
        at(10),
        "owner",
        rules(ChatAllowed::Everyone, 3000, None),
    )
    .unwrap();
    cmd(&mut r, at(2000), "b", chat("one")).unwrap();
    assert_eq!(
        cmd(&mut r, at(3500), "b", chat("two")),
        Err(RoomError::RateLimited {
            retry_after_ms: 1500
        })
    );
    assert!(cmd(&mut r, at(5000), "b", chat("two")).is_ok());
    cmd(&mut r, at(5000), "owner", chat("x")).unwrap();
    cmd(&mut r, at(5001), "owner", chat("y")).unwrap();
    // Out-of-range values are refused.
    assert!(matches!(
        cmd(
            &mut r,
            at(6000),
            "owner",
            rules(ChatAllowed::Everyone, 3_600_001, None)
        ),
        Err(RoomError::OutOfRange { .. })
    ));
    let too_long = Some(BombingAction::KickAndBan {
        ban: Duration::from_millis(onmic_room::config::MAX_DURATION_MS + 1),
    });
    assert!(matches!(
        cmd(
            &mut r,
            at(6000),
            "owner",
            rules(ChatAllowed::Everyone, 0, too_long)
        ),
        Err(RoomError::OutOfRange { .. })
    ));
    // The rules travel in the snapshot.
    let json = serde_json::to_value(r.snapshot()).unwrap();
    assert_eq!(
        json["settings"]["chat"],
        serde_json::json!({ "who": "everyone", "slow_mode_ms": 3000 })
    );
}

#[test]
fn boss_seat_goes_to_the_top_gifter_and_frees_itself() {
    let mut r = room(RoomSettings {
        boss_seat: Some(BossSeatSettings {
            window: Duration::from_secs(60),
            hold: Duration::from_secs(30),
            min_value: 100,
        }),
        ..RoomSettings::default()
    });
    let boss = SeatIndex(9);
    let gift = |g: &str, count| Action::SendGift {
        gift: GiftId::from(g),
        count,
        to: None,
    };
    cmd(&mut r, T0, "a", gift("heart", 5)).unwrap();
    assert_eq!(seat_of(&r, "a"), None, "below the minimum");
    cmd(&mut r, T0, "a", gift("heart", 5)).unwrap();
    assert_eq!(seat_of(&r, "a"), Some(boss));
    cmd(&mut r, at(1000), "b", gift("rocket", 1)).unwrap();
    assert_eq!(seat_of(&r, "b"), Some(boss), "outbid");
    assert_eq!(seat_of(&r, "a"), None);
    assert_eq!(r.state().leaderboard()[0], ("b".into(), 1000));
    assert_eq!(r.state().seat(boss).unwrap().held_until, Some(at(31_000)));
    for u in ["owner", "a", "b"] {
        r.touch(&u.into(), at(30_000));
    }
    r.handle_timeout(at(31_000));
    assert_eq!(seat_of(&r, "b"), None, "the hold ran out");
    assert_eq!(
        cmd(&mut r, at(31_000), "owner", Action::TakeSeat { seat: boss }),
        Err(RoomError::SeatReserved(boss))
    );
}

#[test]
fn floor_control_decides_who_may_speak() {
    let mut r = room(RoomSettings {
        mode: RoomMode::FloorControl,
        ..RoomSettings::default()
    });
    cmd(&mut r, T0, "owner", Action::TakeSeat { seat: SeatIndex(0) }).unwrap();
    assert!(!r.may_publish(&"owner".into(), T0));
    assert_eq!(
        cmd(
            &mut r,
            T0,
            "owner",
            Action::GrantFloor {
                uid: "owner".into()
            }
        ),
        Err(RoomError::PermissionDenied)
    );
    r.handle(
        T0,
        Command::system(Action::GrantFloor {
            uid: "owner".into(),
        }),
    )
    .unwrap();
    assert!(r.may_publish(&"owner".into(), T0));
    r.handle(
        T0,
        Command::system(Action::RevokeFloor {
            uid: "owner".into(),
        }),
    )
    .unwrap();
    assert!(!r.may_publish(&"owner".into(), T0));
}

#[test]
fn dismiss_ends_everything() {
    let mut r = room(RoomSettings::default());
    assert_eq!(
        cmd(&mut r, T0, "a", Action::Dismiss),
        Err(RoomError::PermissionDenied)
    );
    cmd(&mut r, T0, "owner", Action::Dismiss).unwrap();
    assert_eq!(
        cmd(&mut r, T0, "a", Action::LeaveSeat),
        Err(RoomError::Dismissed)
    );
    assert_eq!(r.poll_timeout(), None);
}
