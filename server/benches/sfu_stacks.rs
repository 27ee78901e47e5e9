//! str0m 0.25 against rtc 0.21 (the sans-IO core under webrtc-rs) on the SFU's hot path: one
//! Opus packet (320 B, 128 kbps stereo at 20 ms) written to N connected subscriber peer
//! connections, each copy RTP-packetised, SRTP-encrypted and handed out as a datagram. Both stacks
//! run the same loop, single-threaded, in memory: the peers are connected by handing datagrams
//! from one to the other directly (fake 127.0.0.1 addresses, no socket, nothing leaves the
//! process). Prints the CPU cost per forwarded copy, the copies/s one core sustains, the
//! listeners one core would serve at 3 speakers × 50 packets/s, and memory per connected pair.
//!
//! `cargo bench -p onmic-server --bench sfu_stacks` (`ONMIC_STACK_PEERS=200` to choose N).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PAYLOAD: usize = 320;
const PACKETS: u64 = 250;

fn main() {
    let n: usize = std::env::var("ONMIC_STACK_PEERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    println!(
        "SFU hot path: 1 packet of {PAYLOAD} B written to {n} peers, {PACKETS} times (single thread)"
    );
    println!(
        "{:>12} {:>12} {:>16} {:>22} {:>16} {:>14}",
        "stack",
        "µs/copy",
        "copies/s/core",
        "listeners/core (150/s)",
        "KiB/pair",
        "connect ms/pair"
    );
    for (name, f) in [
        ("str0m 0.25", str0m_side::run as fn(usize) -> Figures),
        ("rtc 0.21", rtc_side::run as fn(usize) -> Figures),
    ] {
        let fig = f(n);
        let per_copy = fig.send.as_secs_f64() / fig.copies as f64;
        println!(
            "{:>12} {:>12.2} {:>16.0} {:>22.0} {:>16.1} {:>14.2}",
            name,
            per_copy * 1e6,
            1.0 / per_copy,
            1.0 / per_copy / 150.0,
            fig.rss_kib as f64 / n as f64,
            fig.connect.as_secs_f64() * 1e3 / n as f64
        );
    }
}

/// What one stack measured.
struct Figures {
    /// Time spent writing and draining the sending side.
    send: Duration,
    /// Datagrams produced by the sending side while measuring.
    copies: u64,
    /// RSS growth while connecting the pairs (both sides).
    rss_kib: u64,
    /// Time to connect all pairs.
    connect: Duration,
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn addr(port: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], u16::try_from(port).expect("port")))
}

mod str0m_side {
    use super::*;
    use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Input, Output, Rtc};

    fn rtc(now: Instant) -> Rtc {
        onmic_server::sfu::opus_rtc_config().build(now)
    }

    /// Drains `from`, delivering its datagrams to `to`; returns how many.
    fn pump(from: &mut Rtc, to: &mut Rtc, deliver: bool) -> u64 {
        let mut n = 0;
        loop {
            match from.poll_output() {
                Ok(Output::Timeout(_)) | Err(_) => return n,
                Ok(Output::Transmit(t)) => {
                    n += 1;
                    if deliver && let Ok(contents) = t.contents[..].try_into() {
                        let _ = to.handle_input(Input::Receive(
                            Instant::now(),
                            Receive {
                                proto: Protocol::Udp,
                                source: t.source,
                                destination: t.destination,
                                contents,
                            },
                        ));
                    }
                }
                Ok(Output::Event(_)) => {}
            }
        }
    }

    pub fn run(n: usize) -> Figures {
        let rss0 = rss_kib();
        let t0 = Instant::now();
        let mut pairs: Vec<(Rtc, Rtc, Mid)> = Vec::with_capacity(n);
        for i in 0..n {
            let now = Instant::now();
            let mut sfu = rtc(now);
            let mut client = rtc(now);
            sfu.add_local_candidate(Candidate::host(addr(20000 + i), "udp").expect("c"));
            client.add_local_candidate(Candidate::host(addr(40000 + i), "udp").expect("c"));
            let mut api = client.sdp_api();
            // The mid is shared by both ends of the m-line.
            let mid = api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
            let (offer, pending) = api.apply().expect("offer");
            let answer = sfu.sdp_api().accept_offer(offer).expect("answer");
            client
                .sdp_api()
                .accept_answer(pending, answer)
                .expect("accepted");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !(sfu.is_connected() && client.is_connected()) {
                assert!(Instant::now() < deadline, "str0m pair {i} did not connect");
                let now = Instant::now();
                let _ = sfu.handle_input(Input::Timeout(now));
                let _ = client.handle_input(Input::Timeout(now));
                pump(&mut sfu, &mut client, true);
                pump(&mut client, &mut sfu, true);
            }
            // Let DTLS finish on both sides.
            for _ in 0..20 {
                pump(&mut sfu, &mut client, true);
                pump(&mut client, &mut sfu, true);
            }
            pairs.push((sfu, client, mid));
        }
        let connect = t0.elapsed();
        let rss = rss_kib().saturating_sub(rss0);
        let payload = vec![0x5au8; PAYLOAD];
        let mut send = Duration::ZERO;
        let mut copies = 0;
        for k in 0..PACKETS {
            let start = Instant::now();
            for (sfu, client, mid) in pairs.iter_mut() {
                let Some(w) = sfu.writer(*mid) else { continue };
                let Some(pt) = w.payload_params().next().map(|p| p.pt()) else {
                    continue;
                };
                let ts = MediaTime::new(k * 960, Frequency::FORTY_EIGHT_KHZ);
                let _ = w
                    .audio_level(-20, true)
                    .write(pt, start, ts, payload.clone());
                // str0m sends queued media when time advances (its pacer runs on `Timeout`).
                let _ = sfu.handle_input(Input::Timeout(Instant::now()));
                copies += pump(sfu, client, false);
            }
            send += start.elapsed();
        }
        Figures {
            send,
            copies,
            rss_kib: rss,
            connect,
        }
    }
}

mod rtc_side {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use rtc::interceptor::Registry;
    use rtc::media_stream::MediaStreamTrack;
    use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
    use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MediaEngine};
    use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
    use rtc::peer_connection::event::RTCPeerConnectionEvent;
    use rtc::peer_connection::state::RTCPeerConnectionState;
    use rtc::peer_connection::transport::{
        CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
    };
    use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
    use rtc::rtp_transceiver::rtp_sender::{
        RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
        RtpCodecKind,
    };
    use rtc::sansio::Protocol;
    use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};

    fn opus() -> RTCRtpCodecParameters {
        RTCRtpCodecParameters {
            rtp_codec: RTCRtpCodec {
                mime_type: MIME_TYPE_OPUS.to_owned(),
                clock_rate: 48000,
                channels: 2,
                sdp_fmtp_line: "minptime=10;useinbandfec=1;stereo=1;sprop-stereo=1".to_owned(),
                rtcp_feedback: vec![],
            },
            payload_type: 111,
        }
    }

    fn pc(role: RTCDtlsRole, local: SocketAddr) -> RTCPeerConnection {
        let mut media = MediaEngine::default();
        media
            .register_codec(opus(), RtpCodecKind::Audio)
            .expect("codec");
        let registry = register_default_interceptors(Registry::new(), &mut media).expect("reg");
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_answering_dtls_role(role)
                    .build(),
            )
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .expect("peer connection");
        let c = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: local.ip().to_string(),
                port: local.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()
        .expect("candidate");
        pc.add_local_candidate(RTCIceCandidate::from(&c).to_json().expect("json"))
            .expect("local candidate");
        pc
    }

    /// Drains `from`'s datagrams into `to`; returns how many.
    fn pump(from: &mut RTCPeerConnection, to: &mut RTCPeerConnection, deliver: bool) -> u64 {
        let mut n = 0;
        while let Some(msg) = from.poll_write() {
            n += 1;
            if deliver {
                let _ = to.handle_read(TaggedBytesMut {
                    now: Instant::now(),
                    transport: TransportContext {
                        local_addr: msg.transport.peer_addr,
                        peer_addr: msg.transport.local_addr,
                        ecn: None,
                        transport_protocol: TransportProtocol::UDP,
                    },
                    message: BytesMut::from(&msg.message[..]),
                });
            }
        }
        n
    }

    fn connected(pc: &mut RTCPeerConnection, flag: &mut bool) {
        while let Some(e) = pc.poll_event() {
            if let RTCPeerConnectionEvent::OnConnectionStateChangeEvent(
                RTCPeerConnectionState::Connected,
            ) = e
            {
                *flag = true;
            }
        }
        while pc.poll_read().is_some() {}
    }

    pub fn run(n: usize) -> Figures {
        let rss0 = rss_kib();
        let t0 = Instant::now();
        let mut pairs = Vec::with_capacity(n);
        for i in 0..n {
            let mut sfu = pc(RTCDtlsRole::Server, addr(21000 + i));
            let mut client = pc(RTCDtlsRole::Client, addr(41000 + i));
            let ssrc = 0x1000_0000 + u32::try_from(i).expect("i");
            let track = MediaStreamTrack::new(
                format!("s{i}"),
                format!("t{i}"),
                format!("l{i}"),
                RtpCodecKind::Audio,
                vec![RTCRtpEncodingParameters {
                    rtp_coding_parameters: RTCRtpCodingParameters {
                        ssrc: Some(ssrc),
                        ..Default::default()
                    },
                    codec: opus().rtp_codec,
                    ..Default::default()
                }],
            );
            let sender = sfu.add_track(track).expect("track");
            let offer = sfu.create_offer(None).expect("offer");
            sfu.set_local_description(Instant::now(), offer.clone())
                .expect("local");
            client
                .set_remote_description(Instant::now(), offer)
                .expect("remote");
            let answer = client.create_answer(None).expect("answer");
            client
                .set_local_description(Instant::now(), answer.clone())
                .expect("local");
            sfu.set_remote_description(Instant::now(), answer)
                .expect("remote");
            let (mut a, mut b) = (false, false);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !(a && b) {
                assert!(Instant::now() < deadline, "rtc pair {i} did not connect");
                let now = Instant::now();
                let _ = sfu.handle_timeout(now);
                let _ = client.handle_timeout(now);
                pump(&mut sfu, &mut client, true);
                pump(&mut client, &mut sfu, true);
                connected(&mut sfu, &mut a);
                connected(&mut client, &mut b);
            }
            pairs.push((sfu, client, sender, ssrc));
        }
        let connect = t0.elapsed();
        let rss = rss_kib().saturating_sub(rss0);
        let payload = Bytes::from(vec![0x5au8; PAYLOAD]);
        let mut send = Duration::ZERO;
        let mut copies = 0;
        for k in 0..PACKETS {
            let start = Instant::now();
            for (sfu, client, sender, ssrc) in pairs.iter_mut() {
                let Some(mut s) = sfu.rtp_sender(*sender) else {
                    continue;
                };
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        version: 2,
                        payload_type: 111,
                        sequence_number: u16::try_from(k % 65536).expect("seq"),
                        timestamp: u32::try_from(k * 960 % (1 << 32)).expect("ts"),
                        ssrc: *ssrc,
                        ..Default::default()
                    },
                    payload: payload.clone(),
                };
                let _ = s.write_rtp(start, packet);
                copies += pump(sfu, client, false);
            }
            send += start.elapsed();
        }
        Figures {
            send,
            copies,
            rss_kib: rss,
            connect,
        }
    }
}
