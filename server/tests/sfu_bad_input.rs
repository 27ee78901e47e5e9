//! Bad input to the SFU (issue 5, acceptance 5): malformed signalling, bogus SDP and ICE
//! candidates, garbage and odd RTP on the media port → clear errors or silent drops, no crash, and
//! forwarding goes on. Runs inside its own loopback-only network namespace (root needed).

mod common;
mod sfu_support;

use std::net::UdpSocket;
use std::sync::atomic::Ordering;

use common::*;
use serde_json::json;
use sfu_support::*;

#[test]
fn bad_input_is_refused_or_dropped_and_the_sfu_keeps_forwarding() {
    in_netns(
        "bad_input_is_refused_or_dropped_and_the_sfu_keeps_forwarding",
        bad_input,
    );
}

async fn bad_input() {
    let server = server(config()).await;
    let base = server.url();
    create_room(&base, "bad", "owner").await;
    let (mut owner, _) = Client::join(&base, "bad", "owner").await;
    owner.ok(json!({ "type": "take_seat", "seat": 0 })).await;
    let (_listener_ws, _) = Client::join(&base, "bad", "listener").await;
    let owner_token = token(&base, "bad", "owner").await;

    // Signalling: malformed bodies, SDP, tokens and non-members get clear errors.
    let cases = [
        (json!("not an object"), 400, "malformed"),
        (
            json!({ "room": "bad", "token": owner_token, "offer": { "type": "offer", "sdp": "v=0 garbage" } }),
            400,
            "bad_sdp",
        ),
        (
            json!({ "room": "bad", "token": owner_token, "offer": { "type": "answer", "sdp": "" } }),
            400,
            "bad_sdp",
        ),
        (
            json!({ "room": "bad", "token": "v1.forged.sig", "offer": { "type": "offer", "sdp": "" } }),
            401,
            "token_bad_signature",
        ),
        (
            json!({ "room": "bad", "token": token(&base, "bad", "stranger").await, "offer": offer_only() }),
            403,
            "not_member",
        ),
    ];
    for (body, status, code) in cases {
        let (got, reply) = rest_with(&base, "post", "/rtc/offer", Some(body.clone()), None).await;
        assert_eq!(
            (got, reply["code"].as_str()),
            (status, Some(code)),
            "{body} -> {reply}"
        );
    }
    // An SDP offer with bogus ICE candidates is accepted or refused, never a crash.
    let bogus = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=fingerprint:sha-256 00:11\r\na=setup:actpass\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\na=candidate:1 1 udp 1 999.1.1.1 99999 typ host\r\na=candidate:garbage\r\n";
    let body =
        json!({ "room": "bad", "token": owner_token, "offer": { "type": "offer", "sdp": bogus } });
    let (got, reply) = rest_with(&base, "post", "/rtc/offer", Some(body), None).await;
    assert!(got == 200 || got == 400, "{got} {reply}");

    // Media port: garbage from strangers and from a connected peer's own address.
    let talker = Peer::connect(&base, "bad", &owner_token, 1).await;
    let listener = Peer::connect(&base, "bad", &token(&base, "bad", "listener").await, 3).await;
    talker.sending.store(true, Ordering::Relaxed);
    until("audio flows", || listener.from(1) >= 10).await;
    let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut junk: Vec<Vec<u8>> = vec![
        vec![],
        vec![0],
        vec![0xff; 1500],
        vec![0x16; 13],
        vec![0x00, 0x01, 0x00, 0x00],
    ];
    // RTP with padding longer than the packet, an extension running past the end, unknown SSRC.
    junk.push(vec![
        0xa0, 111, 0, 1, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 0xff,
    ]);
    junk.push(vec![
        0x90, 111, 0, 2, 0, 0, 0, 2, 0xde, 0xad, 0xbe, 0xef, 0xbe, 0xde, 0xff, 0xff,
    ]);
    junk.push(vec![0x80, 200, 0, 7, 1, 2, 3, 4]);
    let mut x: u32 = 0x1234_5678;
    for len in [3usize, 12, 40, 200, 1200] {
        let mut p = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            p.push(x as u8);
        }
        p[0] = 0x80 | (p[0] & 0x3f);
        junk.push(p);
    }
    for _ in 0..20 {
        for j in &junk {
            let _ = stranger.send_to(j, talker.sfu);
            let _ = listener.socket.send_to(j, listener.sfu);
        }
    }
    let before = listener.from(1);
    until(
        "audio still flows to the listener that sent garbage",
        || listener.from(1) >= before + 25,
    )
    .await;
    drop((talker, listener));
    server.shutdown().await.expect("clean shutdown");
}
