//! What the host's console shows of a room, computed from the client's copy of the room state
//! (pure: tested without a server). The seat grid, the applications queue, the audience, the
//! chat and gift feed, the leaderboard and the safety alerts.

use std::collections::HashMap;

use onmic_room::state::EventKind;
use onmic_room::{Event, RoomState, SeatKind, SeatState, Uid};
use serde::Serialize;
use specta::Type;

/// One seat as the UI shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct SeatView {
    /// Seat index (0 is the owner's).
    pub index: u16,
    /// `owner`, `regular` or `boss`.
    pub kind: String,
    /// Who sits there.
    pub uid: Option<String>,
    /// Muted by the host or by its occupant.
    pub muted: bool,
    /// Muted by the host (the occupant cannot lift it).
    pub host_muted: bool,
    /// Muted by its occupant.
    pub self_muted: bool,
    /// Locked by the host.
    pub locked: bool,
    /// The occupant is no longer among the members (its connection dropped; the seat is held
    /// until the presence timeout).
    pub offline: bool,
    /// The occupant's loudest level in the last indication, 0–255.
    pub volume: u8,
    /// The occupant is speaking (the seat ripples).
    pub speaking: bool,
}

/// A pending application for a seat.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationView {
    /// The applicant.
    pub uid: String,
    /// The seat asked for, if any.
    pub seat: Option<u16>,
}

/// A member of the audience list.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct MemberView {
    /// Who.
    pub uid: String,
    /// `owner`, `admin`, `guest` (seated) or `audience`.
    pub role: String,
    /// The seat held, if any.
    pub seat: Option<u16>,
    /// Chat-muted (禁言) until this time, ms since the epoch, if in force.
    pub chat_muted_until: Option<f64>,
}

/// One line of the chat and gift feed.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct FeedItem {
    /// The room version of the event (a stable key).
    pub version: u32,
    /// `chat`, `gift` or `notice`.
    pub kind: String,
    /// Sender (none for notices).
    pub from: Option<String>,
    /// Chat or notice text, as typed: the UI renders it as text, never as HTML.
    pub text: String,
}

/// A leaderboard row.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct GifterView {
    /// Who.
    pub uid: String,
    /// Total gift value sent.
    pub total: f64,
}

/// A safety alert: audio from a member who may not publish.
#[derive(Clone, Debug, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct AlertView {
    /// The room version of the event.
    pub version: u32,
    /// The sender.
    pub uid: String,
    /// What the media layer saw.
    pub detail: String,
}

/// Everything about the room the console lists.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct RoomView {
    /// The owner.
    pub owner: String,
    /// The seats.
    pub seats: Vec<SeatView>,
    /// Applications waiting for the host, oldest-expiring first.
    pub applications: Vec<ApplicationView>,
    /// Every member, hosts first, then the seated, then the audience by uid.
    pub audience: Vec<MemberView>,
    /// Banned uids (for unban).
    pub banned: Vec<String>,
    /// Recent chat, gifts and notices, oldest first.
    pub feed: Vec<FeedItem>,
    /// The latest notice.
    pub notice: Option<String>,
    /// The top ten gifters.
    pub leaderboard: Vec<GifterView>,
    /// The room's safety and chat rules as they stand.
    pub rules: crate::room_admin::RoomRules,
}

/// Speaker levels by uid from the last volume indication.
pub type Volumes = HashMap<String, (u8, bool)>;

/// The console's view of `room` at `now_ms`.
pub fn room_view(room: &RoomState, volumes: &Volumes, now_ms: u64) -> RoomView {
    let seats = room
        .seats
        .iter()
        .map(|seat| {
            let uid = seat.occupant().map(|u| u.as_str().to_owned());
            let (volume, speaking) = uid
                .as_ref()
                .and_then(|u| volumes.get(u))
                .copied()
                .unwrap_or((0, false));
            SeatView {
                index: seat.index.0,
                kind: match seat.kind {
                    SeatKind::Owner => "owner",
                    SeatKind::Regular => "regular",
                    SeatKind::Boss => "boss",
                }
                .into(),
                offline: seat
                    .occupant()
                    .is_some_and(|u| !room.members.contains_key(u)),
                uid,
                muted: seat.host_muted || seat.self_muted,
                host_muted: seat.host_muted,
                self_muted: seat.self_muted,
                locked: matches!(seat.state, SeatState::Locked),
                volume,
                speaking,
            }
        })
        .collect();
    let mut applications: Vec<_> = room.applications.iter().collect();
    applications.sort_by_key(|(uid, p)| (p.expires, (*uid).clone()));
    let rank = |uid: &Uid| -> u8 {
        if *uid == room.owner {
            0
        } else if room.members.get(uid).is_some_and(|m| m.admin) {
            1
        } else if room.seat_of(uid).is_some() {
            2
        } else {
            3
        }
    };
    let mut members: Vec<_> = room.members.keys().collect();
    members.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    let audience = members
        .into_iter()
        .map(|uid| MemberView {
            uid: uid.as_str().to_owned(),
            role: ["owner", "admin", "guest", "audience"][usize::from(rank(uid))].into(),
            seat: room.seat_of(uid).map(|s| s.index.0),
            chat_muted_until: room
                .chat_mutes
                .get(uid)
                .filter(|t| t.0 > now_ms)
                .map(|t| t.0 as f64),
        })
        .collect();
    let feed: Vec<FeedItem> = room.recent.iter().filter_map(feed_item).collect();
    let notice = room.recent.iter().rev().find_map(|e| match &e.kind {
        EventKind::Notice { text } => Some(text.clone()),
        _ => None,
    });
    RoomView {
        rules: crate::room_admin::RoomRules::from_settings(&room.settings),
        owner: room.owner.as_str().to_owned(),
        seats,
        applications: applications
            .into_iter()
            .map(|(uid, p)| ApplicationView {
                uid: uid.as_str().to_owned(),
                seat: p.seat.map(|s| s.0),
            })
            .collect(),
        audience,
        banned: room
            .bans
            .iter()
            .filter(|(_, until)| until.0 > now_ms)
            .map(|(u, _)| u.as_str().to_owned())
            .collect(),
        feed,
        notice,
        leaderboard: room
            .leaderboard()
            .into_iter()
            .take(10)
            .map(|(uid, total)| GifterView {
                uid: uid.as_str().to_owned(),
                total: total as f64,
            })
            .collect(),
    }
}

fn version(e: &Event) -> u32 {
    u32::try_from(e.version).unwrap_or(u32::MAX)
}

/// A chat, gift or notice event as a feed line.
pub fn feed_item(e: &Event) -> Option<FeedItem> {
    let (kind, from, text) = match &e.kind {
        EventKind::Chat { from, text } => ("chat", Some(from), text.clone()),
        EventKind::Gift {
            from,
            to,
            gift,
            count,
            value,
        } => (
            "gift",
            Some(from),
            match to {
                Some(to) => format!("sent {count} × {gift} to {to} ({value})"),
                None => format!("sent {count} × {gift} ({value})"),
            },
        ),
        EventKind::Notice { text } => ("notice", None, text.clone()),
        _ => return None,
    };
    Some(FeedItem {
        version: version(e),
        kind: kind.into(),
        from: from.map(|u| u.as_str().to_owned()),
        text,
    })
}

/// A `bombing_detected` event as an alert.
pub fn alert(e: &Event) -> Option<AlertView> {
    match &e.kind {
        EventKind::BombingDetected { uid, detail } => Some(AlertView {
            version: version(e),
            uid: uid.as_str().to_owned(),
            detail: detail.clone(),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onmic_room::{Action, BossSeatSettings, ImPolicy};
    use onmic_room::{Command, Room, RoomId, RoomSettings, SeatIndex, Timestamp};

    fn room() -> Room {
        let settings = RoomSettings {
            seat_count: 4,
            boss_seat: Some(BossSeatSettings {
                window: std::time::Duration::from_secs(60),
                hold: std::time::Duration::from_secs(60),
                min_value: 1,
            }),
            ..RoomSettings::default()
        };
        Room::new(
            RoomId::from("r"),
            Uid::from("host"),
            "t".into(),
            settings,
            ImPolicy::default(),
        )
    }

    fn act(room: &mut Room, at: u64, who: &str, action: Action) {
        room.handle(Timestamp(at), Command::member(who, action))
            .unwrap_or_else(|e| panic!("{who}: {e}"));
    }

    fn enter(room: &mut Room, at: u64, uid: &str, publisher: bool) {
        room.handle(
            Timestamp(at),
            Command::system(Action::Enter {
                uid: uid.into(),
                admin: false,
                publish_until: publisher.then_some(Timestamp(u64::MAX)),
            }),
        )
        .expect("enter");
    }

    #[test]
    fn seats_queue_audience_feed_and_leaderboard() {
        let mut r = room();
        for (uid, publisher) in [("host", true), ("zed", true), ("amy", true), ("bob", false)] {
            enter(&mut r, 1, uid, publisher);
        }
        act(&mut r, 2, "host", Action::TakeSeat { seat: SeatIndex(0) });
        act(&mut r, 3, "zed", Action::Apply { seat: None });
        act(
            &mut r,
            4,
            "amy",
            Action::Apply {
                seat: Some(SeatIndex(2)),
            },
        );
        act(&mut r, 5, "host", Action::Approve { uid: "zed".into() });
        act(&mut r, 6, "host", Action::MuteSeat { seat: SeatIndex(1) });
        act(&mut r, 7, "host", Action::LockSeat { seat: SeatIndex(3) });
        act(
            &mut r,
            8,
            "bob",
            Action::Chat {
                text: "<img src=x onerror=alert(1)>".into(),
            },
        );
        act(
            &mut r,
            9,
            "host",
            Action::MuteChat {
                uid: "bob".into(),
                duration: std::time::Duration::from_secs(60),
            },
        );
        act(
            &mut r,
            10,
            "host",
            Action::Notice {
                text: "Welcome".into(),
            },
        );
        let mut volumes = Volumes::new();
        volumes.insert("zed".into(), (120, true));
        let v = room_view(r.state(), &volumes, 10);

        assert_eq!(v.seats.len(), 6, "owner + 4 + boss");
        assert_eq!(v.seats[5].kind, "boss");
        let zed = &v.seats[1];
        assert_eq!(zed.uid.as_deref(), Some("zed"));
        assert!(zed.speaking && zed.host_muted && zed.muted && !zed.self_muted && !zed.offline);
        assert!(v.seats[3].locked);
        assert_eq!(
            v.applications,
            [ApplicationView {
                uid: "amy".into(),
                seat: Some(2)
            }]
        );
        let order: Vec<_> = v
            .audience
            .iter()
            .map(|m| (m.uid.as_str(), m.role.as_str()))
            .collect();
        assert_eq!(
            order,
            [
                ("host", "owner"),
                ("zed", "guest"),
                ("amy", "audience"),
                ("bob", "audience")
            ]
        );
        assert_eq!(v.audience[3].chat_muted_until, Some(60_009.0));
        let chat = v.feed.iter().find(|f| f.kind == "chat").expect("chat line");
        assert_eq!(chat.text, "<img src=x onerror=alert(1)>", "kept as typed");
        assert_eq!(v.notice.as_deref(), Some("Welcome"));
        // After the mute lapses it is no longer shown.
        let later = room_view(r.state(), &volumes, 70_000);
        assert_eq!(later.audience[3].chat_muted_until, None);
    }
}
