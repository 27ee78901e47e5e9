//! A slot's send stream exists in the SFU's str0m peer only while audio flows on it (issue 15:
//! every forwarded copy ran a `handle_timeout` that walked every slot's stream, empty seats
//! included). A speaker who pauses longer than the idle time has the stream removed at the
//! listener; when the speaker goes on, the listener (a real str0m peer that decrypts every frame)
//! hears every frame again on the same stream: same SSRC, sequence numbers going on, SRTP
//! rollover intact. Inside a loopback-only network namespace this test creates (root).

mod common;
mod sfu_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use sfu_support::*;

#[test]
fn a_paused_slot_is_parked_and_heard_again_when_audio_resumes() {
    in_netns(
        "a_paused_slot_is_parked_and_heard_again_when_audio_resumes",
        scenario,
    );
}

async fn scenario() {
    let server = server(config()).await;
    let base = server.url();
    let room = owner_and_listener(&base, "slots").await;
    let (owner, listener, o) = (&room.owner, &room.listener, 1u8);
    let media = server.media().expect("the SFU runs");
    let parked_before = media.stats().await.expect("stats").slots_parked;

    // The owner pauses: after the idle time (3 s) the listener's slot stream is removed.
    owner.sending.store(false, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(10);
    let parked = loop {
        let parked = media.stats().await.expect("stats").slots_parked - parked_before;
        if parked > 0 || Instant::now() >= deadline {
            break parked;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        parked >= 1,
        "no slot stream was parked within 10 s of silence"
    );

    // The owner speaks again: the stream is declared again and every frame is heard.
    let (heard_before, sent_before) = (listener.from(o), owner.sent.load(Ordering::Relaxed));
    owner.sending.store(true, Ordering::Relaxed);
    until("the listener hears the owner again", || {
        listener.from(o) >= heard_before + 100
    })
    .await;
    owner.sending.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent = owner.sent.load(Ordering::Relaxed) - sent_before;
    let heard = listener.from(o) - heard_before;
    eprintln!("after the pause: owner sent {sent} frames, listener decrypted {heard}");
    assert!(
        heard + 2 >= sent && heard <= sent,
        "after the pause the listener decrypted {heard} of {sent} frames"
    );
    let last = listener.last_frame.lock().expect("frames").get(&o).copied();
    assert!(
        last.is_some_and(|n| n + 3 >= owner.sent.load(Ordering::Relaxed)),
        "the listener's last frame {last:?} is not the owner's latest"
    );
    drop(room);
    server.shutdown().await.expect("clean shutdown");
}
