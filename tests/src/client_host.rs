//! The host as the Studio runs it: `onmic-client` (the Studio's room client on the `webrtc`
//! crate) publishing the engine's Opus encoding of a stereo tone, and playing out every remote
//! member's decoded audio (the engine's jitter buffer + decoder) every 10 ms, keeping the last
//! second per member for analysis.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onmic_audio::opus::{OpusEncoder, OpusProfile};
use onmic_audio::playout::RemoteStream;
use onmic_audio::{BLOCK_FRAMES, Block};
use onmic_client::{ClientConfig, ClientEvent, ConnectionState, RemoteChange, RoomClient};
use onmic_room::Uid;
use tokio::task::JoinHandle;

/// Decoded audio kept per remote member: one second of stereo at 48 kHz.
const KEEP_FRAMES: usize = 48_000;

type Heard = Arc<Mutex<HashMap<Uid, VecDeque<[f32; 2]>>>>;

/// A room member on `onmic-client` with a tone publisher and a playout loop.
pub struct ClientHost {
    /// The Studio's room client.
    pub client: RoomClient,
    heard: Heard,
    tone: Option<JoinHandle<()>>,
    playout: JoinHandle<()>,
}

impl ClientHost {
    /// Joins `room` at `base` with `token` and waits for the media connection.
    pub async fn connect(base: &str, room: &str, token: &str) -> anyhow::Result<ClientHost> {
        Self::connect_with(base, room, token, true).await
    }

    /// Like [`ClientHost::connect`], but decodes nothing it receives (its [`ClientHost::heard`]
    /// stays empty; [`ClientHost::packets_from`] still counts): a speaker that only loads the
    /// room, as the `studio_paint` benchmark's 8 speakers do, whose 64 decoders would otherwise
    /// take a share of the cores the measured Studio runs on.
    pub async fn connect_publisher(
        base: &str,
        room: &str,
        token: &str,
    ) -> anyhow::Result<ClientHost> {
        Self::connect_with(base, room, token, false).await
    }

    async fn connect_with(
        base: &str,
        room: &str,
        token: &str,
        play: bool,
    ) -> anyhow::Result<ClientHost> {
        let mut client = RoomClient::connect(ClientConfig::new(base, room, token))
            .await
            .map_err(|e| anyhow::anyhow!("onmic-client connect: {e}"))?;
        let (_, empty) = tokio::sync::mpsc::unbounded_channel();
        let mut remotes = std::mem::replace(&mut client.remotes, empty);
        let heard: Heard = Arc::default();
        let playout = {
            let heard = heard.clone();
            tokio::spawn(async move {
                if !play {
                    // Not played: each stream is dropped as it comes and its ring fills up (the
                    // client counts what it cannot queue); nothing to do every 10 ms.
                    while remotes.recv().await.is_some() {}
                    return;
                }
                let mut streams: Vec<(Uid, Box<RemoteStream>)> = Vec::new();
                let mut block = Block::silent(2);
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                loop {
                    tick.tick().await;
                    while let Ok(change) = remotes.try_recv() {
                        match change {
                            RemoteChange::Added { uid, stream, .. } => {
                                streams.retain(|(u, _)| *u != uid);
                                streams.push((uid, stream));
                            }
                            RemoteChange::Removed { uid, .. } => {
                                streams.retain(|(u, _)| *u != uid);
                            }
                        }
                    }
                    let mut heard = heard.lock().expect("heard");
                    for (uid, stream) in &mut streams {
                        stream.pull(&mut block);
                        let ring = heard.entry(uid.clone()).or_default();
                        for i in 0..BLOCK_FRAMES {
                            if ring.len() == KEEP_FRAMES {
                                ring.pop_front();
                            }
                            ring.push_back([block.channel(0)[i], block.channel(1)[i]]);
                        }
                    }
                }
            })
        };
        let mut host = ClientHost {
            client,
            heard,
            tone: None,
            playout,
        };
        host.until_event("the media connection", |e| {
            matches!(e, ClientEvent::State(ConnectionState::Connected))
        })
        .await?;
        Ok(host)
    }

    /// Connects, takes seat 0 and publishes 440 Hz left / 660 Hz right (the stereo test
    /// signal of the listener tests).
    pub async fn on_seat_with_tone(
        base: &str,
        room: &str,
        token: &str,
    ) -> anyhow::Result<ClientHost> {
        let mut host = Self::connect(base, room, token).await?;
        host.ok(serde_json::json!({ "type": "take_seat", "seat": 0 }))
            .await?;
        host.start_tone(440.0, 660.0);
        Ok(host)
    }

    /// Publishes `left` Hz on the left and `right` Hz on the right at -10.5 dBFS peak, encoded by
    /// the engine's Opus encoder (music profile, 128 kbps stereo), one packet every 20 ms. The
    /// client sends it only while the room lets this member publish.
    pub fn start_tone(&mut self, left: f64, right: f64) {
        let publisher = self.client.publisher();
        self.tone = Some(tokio::spawn(async move {
            let mut encoder =
                OpusEncoder::new(OpusProfile::music(), 0, 0).expect("the engine's Opus encoder");
            let mut block = Block::silent(2);
            let mut index: u64 = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                let (payload, rtp_timestamp) = loop {
                    let start = index * BLOCK_FRAMES as u64;
                    let (l, r) = block.pair_mut();
                    for i in 0..BLOCK_FRAMES {
                        let t = (start + i as u64) as f64 / 48_000.0;
                        l[i] = (0.3 * (2.0 * std::f64::consts::PI * left * t).sin()) as f32;
                        r[i] = (0.3 * (2.0 * std::f64::consts::PI * right * t).sin()) as f32;
                    }
                    block.timestamp = start;
                    index += 1;
                    if let Some(p) = encoder.push_block(&block).expect("Opus encodes") {
                        break (p.payload().to_vec(), p.rtp_timestamp);
                    }
                };
                publisher.send(&payload, rtp_timestamp);
            }
        }));
    }

    /// Stops the tone.
    pub fn stop_tone(&mut self) {
        if let Some(t) = self.tone.take() {
            t.abort();
        }
    }

    /// The last second of `uid`'s decoded audio on `channel` (empty if never heard).
    pub fn heard(&self, uid: &str, channel: usize) -> Vec<f32> {
        self.heard
            .lock()
            .expect("heard")
            .get(&Uid::from(uid))
            .map(|r| r.iter().map(|f| f[channel]).collect())
            .unwrap_or_default()
    }

    /// RTP packets this client received from `uid` (attributed by seat).
    pub fn packets_from(&self, uid: &str) -> u64 {
        self.client.stats().received_from(&Uid::from(uid))
    }

    /// RTP packets received from anyone, attributed or not.
    pub fn packets_total(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let s = self.client.stats();
        s.packets_received.load(Relaxed) + s.packets_unattributed.load(Relaxed)
    }

    /// A room request over the client's WebSocket that must succeed.
    pub async fn ok(&self, body: serde_json::Value) -> anyhow::Result<()> {
        self.client
            .request(body.clone())
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{body}: {e}"))
    }

    /// Drains the client's events until one matches `pred` (20 s at most).
    pub async fn until_event(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&ClientEvent) -> bool,
    ) -> anyhow::Result<ClientEvent> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let e = tokio::time::timeout_at(deadline, self.client.events.recv())
                .await
                .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))?
                .ok_or_else(|| anyhow::anyhow!("the client ended while waiting for {what}"))?;
            if pred(&e) {
                return Ok(e);
            }
        }
    }

    /// The room events seen while draining for `within` (keeps the queue short).
    pub async fn drain(&mut self, within: Duration) -> Vec<onmic_room::Event> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(Some(e)) = tokio::time::timeout_at(deadline, self.client.events.recv()).await {
            if let ClientEvent::Room(ev) = e {
                out.push(ev);
            }
        }
        out
    }

    /// Leaves the room and stops the tasks.
    pub async fn close(mut self) {
        self.stop_tone();
        self.playout.abort();
        self.client.close().await;
    }
}
