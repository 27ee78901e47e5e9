//! One WebRTC peer connection to the SFU (webrtc 0.21): one `sendonly` Opus m-line for the
//! member's microphone and one `recvonly` m-line per seat (a *slot*, `docs/sfu.md`), negotiated
//! with a single `POST /rtc/offer` (no trickle: the offer carries the host candidate).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

use crate::error::ClientError;
use crate::wire;

/// Opus as the SFU negotiates it: 48 kHz stereo, in-band FEC, 128 kbps.
pub const OPUS_FMTP: &str =
    "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1;maxaveragebitrate=128000";

/// The dynamic payload type this client offers for Opus.
const OPUS_PT: u8 = 111;

/// What a peer connection reports to the client's task, tagged with its generation so that
/// events of a replaced connection are ignored.
pub(crate) enum PcEvent {
    State(u64, RTCPeerConnectionState),
    Gathered,
    Track(u64, Arc<dyn TrackRemote>),
}

struct Handler {
    generation: u64,
    tx: mpsc::UnboundedSender<PcEvent>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.tx.send(PcEvent::State(self.generation, state));
    }
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.tx.send(PcEvent::Gathered);
        }
    }
    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.tx.send(PcEvent::Track(self.generation, track));
    }
}

/// Where the publisher writes: the current connection's local track.
#[derive(Clone)]
pub(crate) struct PublishTarget {
    pub track: Arc<TrackLocalStaticRTP>,
    pub ssrc: u32,
    pub payload_type: u8,
}

/// A negotiated peer connection.
pub(crate) struct Media {
    pub pc: Arc<dyn PeerConnection>,
    /// The SFU's latest receiver report on this member's audio.
    pub reports: crate::rr_forward::LatestReport,
    report_task: tokio::task::JoinHandle<()>,
    /// The `mid` of each slot's m-line; slot *i* carries seat *i*.
    pub slot_mids: Vec<String>,
    pub target: PublishTarget,
}

impl Media {
    /// Closes the connection (errors are irrelevant: it is being thrown away).
    pub async fn close(&self) {
        self.report_task.abort();
        let _ = self.pc.close().await;
    }

    /// The slot a remote track arrived on, from its transceiver's `mid`.
    pub async fn slot_of(&self, track: &Arc<dyn TrackRemote>) -> Option<usize> {
        for t in self.pc.get_transceivers().await {
            let Ok(Some(receiver)) = t.receiver().await else {
                continue;
            };
            if Arc::ptr_eq(receiver.track(), track)
                && let Ok(Some(mid)) = t.mid().await
            {
                return self.slot_mids.iter().position(|m| *m == mid);
            }
        }
        None
    }
}

/// Everything needed to open one peer connection.
pub(crate) struct Offer<'a> {
    pub http: &'a reqwest::Client,
    pub server: &'a wire::ServerUrl,
    pub room: &'a str,
    pub token: &'a str,
    pub local_ip: IpAddr,
    pub slots: usize,
    pub generation: u64,
    pub ice_disconnected: Duration,
    pub ice_failed: Duration,
    pub events: mpsc::UnboundedSender<PcEvent>,
}

/// Opens a peer connection, offers it to the SFU and applies the answer.
pub(crate) async fn open(o: Offer<'_>) -> Result<Media, ClientError> {
    let mut engine = MediaEngine::default();
    engine.register_codec(
        RTCRtpCodecParameters {
            rtp_codec: opus_codec(),
            payload_type: OPUS_PT,
        },
        RtpCodecKind::Audio,
    )?;
    // RFC 6464 audio level on what this member sends: the SFU's speaking detection reads it.
    engine.register_header_extension(
        RTCRtpHeaderExtensionCapability {
            uri: rtc::sdp::extmap::AUDIO_LEVEL_URI.to_owned(),
        },
        RtpCodecKind::Audio,
        None,
    )?;
    let registry = register_default_interceptors(Registry::new(), &mut engine)?;
    // Last in the chain: the SFU's receiver reports reach the application (live stats).
    let registry = registry.with(
        rtc::interceptor::Slot::from(14_000),
        crate::rr_forward::ReportForwarder::default(),
    );
    let settings = SettingEngineBuilder::new()
        // A namespace (or a machine) without multicast fails the answer with mDNS on.
        .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
        .with_ice_timeouts(
            Some(o.ice_disconnected),
            Some(o.ice_failed),
            Some(Duration::from_millis(500)),
        )
        .build();
    let (tx, own_rx) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(engine)
        .with_interceptor_registry(registry)
        .with_setting_engine(settings)
        .with_handler(Arc::new(Handler {
            generation: o.generation,
            tx,
        }))
        // Binding 0.0.0.0 skips loopback; the address that routes to the server is what works.
        .with_udp_addrs(vec![std::net::SocketAddr::new(o.local_ip, 0)])
        .build()
        .await?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    match negotiate(o, pc.clone(), own_rx).await {
        Ok(m) => Ok(m),
        Err(e) => {
            // A failed attempt must not leave a connection (socket, ICE timers) behind.
            let _ = pc.close().await;
            Err(e)
        }
    }
}

async fn negotiate(
    o: Offer<'_>,
    pc: Arc<dyn PeerConnection>,
    mut own_rx: mpsc::UnboundedReceiver<PcEvent>,
) -> Result<Media, ClientError> {
    // Forward this connection's events to the client's channel; gathering is awaited here.
    let forward = o.events.clone();
    let (gather_tx, mut gather_rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(e) = own_rx.recv().await {
            match e {
                PcEvent::Gathered => {
                    let _ = gather_tx.send(());
                }
                other => {
                    if forward.send(other).is_err() {
                        return;
                    }
                }
            }
        }
    });

    let ssrc: u32 = random_u32();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("onmic-{ssrc:08x}"),
        format!("mic-{ssrc:08x}"),
        "microphone".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: opus_codec(),
            ..Default::default()
        }],
    )));
    let send = pc
        .add_transceiver_from_track(
            track.clone() as Arc<dyn TrackLocal>,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Sendonly,
                ..Default::default()
            }),
        )
        .await?;
    let mut slot_transceivers = Vec::with_capacity(o.slots);
    for _ in 0..o.slots {
        slot_transceivers.push(
            pc.add_transceiver_from_kind(
                RtpCodecKind::Audio,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Recvonly,
                    ..Default::default()
                }),
            )
            .await?,
        );
    }
    let offer = pc.create_offer(None).await?;
    pc.set_local_description(offer).await?;
    // Non-trickle: wait for the host candidate to be in the description.
    let _ = tokio::time::timeout(Duration::from_secs(2), gather_rx.recv()).await;
    let local = pc
        .local_description()
        .await
        .ok_or_else(|| ClientError::Media("no local description after the offer".into()))?;
    let mut slot_mids = Vec::with_capacity(o.slots);
    for t in &slot_transceivers {
        slot_mids.push(
            t.mid()
                .await?
                .ok_or_else(|| ClientError::Media("a slot has no mid after the offer".into()))?,
        );
    }

    let url = format!("{}/rtc/offer", o.server.http);
    let body = serde_json::json!({
        "room": o.room,
        "token": o.token,
        "offer": { "type": "offer", "sdp": local.sdp },
    });
    let response = o
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        })?;
    let status = response.status().as_u16();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        })?;
    let answer = wire::parse_answer(status, &bytes)?;
    let answer = RTCSessionDescription::answer(answer)
        .map_err(|e| ClientError::Malformed(format!("the SFU's answer SDP: {e}")))?;
    if let Err(e) = pc.set_remote_description(answer).await {
        let _ = pc.close().await;
        return Err(ClientError::Media(format!(
            "the SFU's answer was not accepted: {e}"
        )));
    }
    let sender = send
        .sender()
        .await?
        .ok_or_else(|| ClientError::Media("the send m-line has no sender".into()))?;
    let payload_type = sender
        .get_parameters()
        .await?
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
        .ok_or_else(|| ClientError::Media("the SFU accepted no Opus codec".into()))?;
    let reports = crate::rr_forward::LatestReport::default();
    let report_task = tokio::spawn(crate::rr_forward::watch_reports(
        track.clone() as Arc<dyn TrackLocal>,
        ssrc,
        reports.clone(),
    ));
    Ok(Media {
        pc,
        reports,
        report_task,
        slot_mids,
        target: PublishTarget {
            track,
            ssrc,
            payload_type,
        },
    })
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: OPUS_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A random 32-bit value for SSRCs (from the std hasher's per-process random keys and time;
/// SSRCs only need to differ between streams, not to be secret).
pub(crate) fn random_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() as u32
}
