//! A server that sends bad input: the client returns clear errors and never panics. The "server"
//! here is a WebSocket endpoint on a real socket that answers with crafted frames (the real
//! server cannot be made to send malformed ones). Runs inside its own loopback-only network
//! namespace (root needed), like every test that starts WebRTC.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use onmic_client::{ClientConfig, ClientError, ClientEvent, RoomClient};
use onmic_room::protocol::ServerMessage;
use onmic_room::{Event, EventKind, RoomId, RoomSettings, RoomState, Uid};
use support::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message;

/// Serves one WebSocket connection: waits for `join`, then sends `frames` in order and keeps the
/// connection open (answering nothing else) until the client goes.
async fn fake_server(frames: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let frames = frames.clone();
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let _join = ws.next().await;
                for f in frames {
                    if ws.send(Message::text(f)).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    format!("http://{addr}")
}

fn joined() -> String {
    let mut room = RoomState::new(
        RoomId::from("r"),
        Uid::from("owner"),
        "t".into(),
        RoomSettings::default(),
    );
    room.members.insert(
        Uid::from("me"),
        onmic_room::Member {
            uid: Uid::from("me"),
            admin: false,
            publish_until: None,
        },
    );
    ServerMessage::Joined {
        id: Some(1),
        uid: Uid::from("me"),
        role: onmic_room::Role::Audience,
        snapshot: room,
        lost_seat: None,
        gifts: Default::default(),
        heartbeat_ms: 10_000,
    }
    .to_json()
}

async fn connect(url: &str) -> Result<RoomClient, ClientError> {
    RoomClient::connect(ClientConfig::new(url, "r", "v1.token.sig")).await
}

#[test]
fn bad_server_input_gives_clear_errors_and_no_panic() {
    if !inside_netns("bad_server_input_gives_clear_errors_and_no_panic") {
        return;
    }
    runtime().block_on(scenario());
}

async fn scenario() {
    // Garbage, or the wrong message, instead of `joined`.
    for reply in [
        "not json".to_owned(),
        r#"{"type":"joined","id":1}"#.to_owned(),
        r#"{"type":"ok","id":1,"version":3}"#.to_owned(),
        r#"{"no":"type"}"#.to_owned(),
    ] {
        let url = fake_server(vec![reply.clone()]).await;
        match connect(&url).await {
            Err(ClientError::Malformed(m)) => println!("{reply:?} -> malformed: {m}"),
            Err(other) => panic!("{reply:?} gave {other}"),
            Ok(_) => panic!("{reply:?} was accepted as a join"),
        }
    }
    // A refusal keeps its code.
    let url = fake_server(vec![
        r#"{"type":"error","id":1,"code":"token_expired","message":"expired"}"#.to_owned(),
    ])
    .await;
    match connect(&url).await {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, "token_expired"),
        Err(other) => panic!("gave {other}"),
        Ok(_) => panic!("accepted"),
    }
    // Bad server URLs.
    for bad in ["127.0.0.1:1", "http://nohost", "ftp://x:1"] {
        assert!(matches!(
            connect(bad).await,
            Err(ClientError::BadServerUrl(_))
        ));
    }
    // Nothing listening.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    assert!(matches!(
        connect(&format!("http://{closed}")).await,
        Err(ClientError::Unreachable { .. })
    ));

    // After a good join: garbage frames are counted and skipped, a valid event still applies,
    // an unknown message type is ignored.
    let event = ServerMessage::Event {
        event: Event {
            version: 1,
            at: onmic_room::Timestamp(1),
            kind: EventKind::Notice {
                text: "still here".into(),
            },
        },
    }
    .to_json();
    let url = fake_server(vec![
        joined(),
        "garbage".into(),
        r#"{"type":"event","event":{"version":"x"}}"#.into(),
        "[1,2,3]".into(),
        r#"{"type":"volumes","levels":[1,2]}"#.into(),
        r#"{"type":"ok","id":"seven"}"#.into(),
        event,
    ])
    .await;
    let mut client = connect(&url).await.expect("a good join works");
    let seen = wait_event(&mut client, "the valid event after the garbage", |e| {
        matches!(e, ClientEvent::Room(ev) if matches!(&ev.kind, EventKind::Notice { text } if text == "still here"))
    })
    .await;
    assert_eq!(client.stats().malformed_frames.load(Ordering::Relaxed), 4);
    assert_eq!(client.room().version, 1);
    assert!(!client.may_publish(), "an audience member may not publish");
    println!("after garbage: {seen:?}");
    // The media offer goes to a server without `/rtc/offer`: no connection, no panic, retried.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!seen.iter().any(|e| matches!(
        e,
        ClientEvent::State(onmic_client::ConnectionState::Connected)
    )));
    client.stop().await;
}
