//! Publish and subscribe through the real server (issue 5, the client's part of acceptance 1):
//! the owner on seat 0 publishes a stereo tone (440 Hz left, 660 Hz right, real Opus); a listener
//! decodes it through the engine's jitter buffer and finds each tone on its own channel. An
//! audience member is not heard: its own client withholds its audio, and when the gate is
//! switched off (a misbehaving client) the SFU drops it and reports bombing. Runs inside its own
//! loopback-only network namespace (root needed).

mod support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use onmic_audio::Block;
use onmic_client::{ClientConfig, ClientEvent, RemoteChange, RoomClient};
use onmic_room::{EventKind, Uid};
use support::*;

#[test]
fn a_seated_publisher_is_heard_in_stereo_and_the_audience_is_not() {
    if !inside_netns("a_seated_publisher_is_heard_in_stereo_and_the_audience_is_not") {
        return;
    }
    runtime().block_on(scenario());
}

async fn scenario() {
    let server = Server::start("127.0.0.1", None, &[]);
    server.create_room("r1", "host").await;
    let cfg = |token: String| ClientConfig::new(&server.url, "r1", token);

    let mut host = RoomClient::connect(cfg(server.token("r1", "host").await))
        .await
        .expect("host joins");
    host.take_seat(0).await.expect("host takes seat 0");
    let mut listener = RoomClient::connect(cfg(server.token("r1", "listener").await))
        .await
        .expect("listener joins");
    let mut rogue_cfg = cfg(server.token("r1", "rogue").await);
    rogue_cfg.publish_gate = false;
    let mut rogue = RoomClient::connect(rogue_cfg)
        .await
        .expect("rogue audience joins");
    connected(&mut host).await;
    connected(&mut listener).await;
    connected(&mut rogue).await;
    assert!(host.may_publish(), "the owner on seat 0 may publish");
    assert!(!listener.may_publish(), "an audience member may not");

    let started = Instant::now();
    let _host_tone = spawn_tone(host.publisher());
    let _rogue_tone = spawn_tone(rogue.publisher());
    // The listener's own client refuses to publish: it is audience.
    let _listener_tone = spawn_tone(listener.publisher());

    let (uid, seat, mut stream) = match tokio::time::timeout(WAIT, listener.remotes.recv()).await {
        Ok(Some(RemoteChange::Added {
            uid, seat, stream, ..
        })) => (uid, seat, stream),
        Ok(Some(other)) => panic!("unexpected {other:?}"),
        Ok(None) | Err(_) => panic!("the listener never heard anyone"),
    };
    println!("first audio after {:?}", started.elapsed());
    assert_eq!(uid.as_str(), "host");
    assert_eq!(seat, 0);

    // Play it out as the engine would: one 10 ms block every 10 ms, for 3 s.
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let mut block = Block::silent(2);
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..300 {
        tick.tick().await;
        stream.pull(&mut block);
        left.extend_from_slice(block.channel(0));
        right.extend_from_slice(block.channel(1));
    }
    // Skip the first half second (buffering, codec start-up).
    let (l, r) = (&left[24_000..], &right[24_000..]);
    let sep_l = separation_db(l, 440.0, 660.0);
    let sep_r = separation_db(r, 660.0, 440.0);
    println!(
        "left: 440 Hz over 660 Hz {sep_l:.1} dB (rms {:.3}); right: 660 Hz over 440 Hz {sep_r:.1} dB (rms {:.3}); jitter {:?}",
        rms(l),
        rms(r),
        stream.jitter_stats()
    );
    assert!(rms(l) > 0.1 && rms(r) > 0.1, "the tone is audible");
    assert!(sep_l > 30.0, "440 Hz on the left, separation {sep_l:.1} dB");
    assert!(
        sep_r > 30.0,
        "660 Hz on the right, separation {sep_r:.1} dB"
    );

    // The client writes the RFC 6464 level on what it sends: the SFU's volume indication shows
    // the host speaking.
    let seen = wait_event(&mut listener, "the host in a volume indication", |e| {
        matches!(e, ClientEvent::Volumes(v) if v.iter().any(|s| s.uid.as_str() == "host" && s.speaking))
    })
    .await;
    if let Some(ClientEvent::Volumes(v)) = seen.last() {
        println!("volume indication: {v:?}");
    }

    // The rogue sent (its gate is off) but nobody heard it, and the SFU reported it. The SFU's
    // receiver reports reach the publisher as its send loss (none on loopback).
    let rogue_uid = Uid::from("rogue");
    let (mut bombing, mut loss) = (false, None);
    until("the SFU reports the rogue and the host's send loss", || {
        while let Ok(e) = host.events.try_recv() {
            match e {
                ClientEvent::Room(ev) => {
                    if let EventKind::BombingDetected { uid, .. } = &ev.kind {
                        bombing |= *uid == rogue_uid;
                    }
                }
                ClientEvent::SendLoss(p) => loss = Some(p),
                _ => {}
            }
        }
        bombing && loss.is_some()
    })
    .await;
    println!("host send loss reported by the SFU: {loss:?} %");
    assert_eq!(loss, Some(0), "no loss on loopback");
    let rogue_sent = rogue.stats().packets_sent.load(Ordering::Relaxed);
    assert!(rogue_sent > 50, "the rogue did send ({rogue_sent} packets)");
    assert_eq!(listener.stats().received_from(&rogue_uid), 0);
    assert_eq!(host.stats().received_from(&rogue_uid), 0);
    // The audience listener's own client withheld everything.
    let l = listener.stats();
    assert_eq!(l.packets_sent.load(Ordering::Relaxed), 0);
    assert!(l.packets_withheld.load(Ordering::Relaxed) > 50);
    println!(
        "rogue sent {rogue_sent}, heard 0; listener withheld {}",
        l.packets_withheld.load(Ordering::Relaxed)
    );
    host.close().await;
    listener.close().await;
    rogue.close().await;
}
