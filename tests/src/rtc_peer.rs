//! A Rust WebRTC member on str0m (the stack of the SFU, `onmic_server::sfu::opus_rtc_config`):
//! publishes a real Opus stereo signal (a tone per channel) with the RFC 6464 level extension,
//! and receives, counts and decodes what the SFU forwards on each seat's slot. The browser tests
//! use it for a guest whose packets carry the audio level (the speaking ripple), which
//! `onmic-client` does not write yet.

use std::collections::VecDeque;
use std::f32::consts::PI;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

/// Samples per channel in one 20 ms Opus frame at 48 kHz.
const FRAME: usize = 960;
/// Decoded audio kept per slot (1 s of stereo).
const KEEP_FRAMES: usize = 48_000;

/// What one slot (seat) delivered.
#[derive(Default)]
struct SlotRx {
    packets: u64,
    /// Interleaved stereo, the last second.
    pcm: VecDeque<[i16; 2]>,
    decode_errors: u64,
}

/// A str0m peer connected to the SFU through `POST /rtc/offer`.
pub struct RtcPeer {
    slots: Arc<Mutex<Vec<SlotRx>>>,
    /// While true, the peer publishes its tones (20 ms Opus frames).
    pub sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtcPeer {
    /// Connects as the member of `token` (who must have joined over the WebSocket), offering one
    /// send m-line and `slot_count` receive slots; publishes `tones` = (left Hz, right Hz) at
    /// -12 dBFS peak while [`RtcPeer::sending`] is set.
    pub async fn connect(
        base: &str,
        room: &str,
        token: &str,
        slot_count: usize,
        tones: (f32, f32),
    ) -> anyhow::Result<RtcPeer> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        let addr = socket.local_addr()?;
        let mut rtc = onmic_server::sfu::opus_rtc_config().build(Instant::now());
        rtc.add_local_candidate(Candidate::host(addr, "udp")?);
        let mut api = rtc.sdp_api();
        let send_mid = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let recv_mids: Vec<Mid> = (0..slot_count)
            .map(|_| api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None))
            .collect();
        let (offer, pending) = api.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
        let body = json!({ "room": room, "token": token, "offer": offer });
        let resp = reqwest::Client::new()
            .post(format!("{base}/rtc/offer"))
            .json(&body)
            .send()
            .await?;
        let status = resp.status();
        let answer: serde_json::Value = resp.json().await?;
        anyhow::ensure!(status.is_success(), "/rtc/offer: {status} {answer}");
        let answer: SdpAnswer = serde_json::from_value(answer)?;
        rtc.sdp_api().accept_answer(pending, answer)?;
        let slots = Arc::new(Mutex::new(
            (0..slot_count).map(|_| SlotRx::default()).collect(),
        ));
        let sending = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let ctx = PeerThread {
                rtc,
                socket,
                local: addr,
                send_mid,
                recv_mids,
                slots: slots.clone(),
                sending: sending.clone(),
                stop: stop.clone(),
                tones,
            };
            std::thread::Builder::new()
                .name("e2e-rtc-peer".into())
                .spawn(move || ctx.run())?
        };
        Ok(RtcPeer {
            slots,
            sending,
            stop,
            thread: Some(thread),
        })
    }

    /// Packets received on `slot` so far.
    pub fn packets(&self, slot: usize) -> u64 {
        self.slots
            .lock()
            .expect("slots")
            .get(slot)
            .map_or(0, |s| s.packets)
    }

    /// Opus packets on `slot` that failed to decode.
    pub fn decode_errors(&self, slot: usize) -> u64 {
        self.slots
            .lock()
            .expect("slots")
            .get(slot)
            .map_or(0, |s| s.decode_errors)
    }

    /// The last second decoded from `slot`: per channel, the amplitude (0–1) of the sine at
    /// `freq` and the signal's RMS (0–1). A clean tone at `freq` has amplitude ≈ RMS × √2.
    pub fn tone(&self, slot: usize, channel: usize, freq: f32) -> (f32, f32) {
        let slots = self.slots.lock().expect("slots");
        let Some(s) = slots.get(slot) else {
            return (0.0, 0.0);
        };
        let x: Vec<f32> = s
            .pcm
            .iter()
            .map(|f| f32::from(f[channel]) / 32768.0)
            .collect();
        (goertzel_amplitude(&x, freq, 48_000.0), rms(&x))
    }
}

impl Drop for RtcPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The amplitude of the sinusoid at `freq` in `x` (Goertzel, one bin).
pub fn goertzel_amplitude(x: &[f32], freq: f32, rate: f32) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    let w = 2.0 * PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.max(0.0).sqrt() / x.len() as f32
}

/// Root mean square of `x`.
pub fn rms(x: &[f32]) -> f32 {
    if x.is_empty() {
        return 0.0;
    }
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

struct PeerThread {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    send_mid: Mid,
    recv_mids: Vec<Mid>,
    slots: Arc<Mutex<Vec<SlotRx>>>,
    sending: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tones: (f32, f32),
}

impl PeerThread {
    fn run(mut self) {
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::Audio)
                .expect("Opus encoder");
        let _ = encoder.set_bitrate(opus::Bitrate::Bits(128_000));
        let mut decoders: Vec<opus::Decoder> = self
            .recv_mids
            .iter()
            .map(|_| opus::Decoder::new(48_000, opus::Channels::Stereo).expect("Opus decoder"))
            .collect();
        let mut pcm_out = vec![0i16; 5760 * 2];
        let mut frame = vec![0i16; FRAME * 2];
        let mut packet = vec![0u8; 1500];
        let mut buf = vec![0u8; 2000];
        let mut next_send = Instant::now();
        let mut n: u64 = 0; // frames sent
        let amplitude = 0.25f32; // -12 dBFS peak
        // RFC 6464 level of the tone: RMS of a sine = peak/√2 → -15 dBov.
        let level = (-20.0 * (amplitude / 2f32.sqrt()).log10()).round() as i8;
        while !self.stop.load(Ordering::Relaxed) && self.rtc.is_alive() {
            let timeout = loop {
                match self.rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(Event::MediaData(d))) => {
                        let Some(slot) = self.recv_mids.iter().position(|m| *m == d.mid) else {
                            continue;
                        };
                        let mut slots = self.slots.lock().expect("slots");
                        let rx = &mut slots[slot];
                        rx.packets += 1;
                        match decoders[slot].decode(&d.data, &mut pcm_out, false) {
                            Ok(samples) => {
                                for f in pcm_out[..samples * 2].chunks_exact(2) {
                                    if rx.pcm.len() == KEEP_FRAMES {
                                        rx.pcm.pop_front();
                                    }
                                    rx.pcm.push_back([f[0], f[1]]);
                                }
                            }
                            Err(_) => rx.decode_errors += 1,
                        }
                    }
                    Ok(Output::Event(_)) => {}
                    Err(_) => return,
                }
            };
            let now = Instant::now();
            if now >= next_send {
                next_send += Duration::from_millis(20);
                let pt = self
                    .rtc
                    .writer(self.send_mid)
                    .and_then(|w| w.payload_params().next().map(|p| p.pt()));
                if self.sending.load(Ordering::Relaxed)
                    && self.rtc.is_connected()
                    && let Some(pt) = pt
                    && let Some(w) = self.rtc.writer(self.send_mid)
                {
                    for i in 0..FRAME {
                        let t = (n as usize * FRAME + i) as f32 / 48_000.0;
                        let l = amplitude * (2.0 * PI * self.tones.0 * t).sin();
                        let r = amplitude * (2.0 * PI * self.tones.1 * t).sin();
                        frame[2 * i] = (l * 32767.0) as i16;
                        frame[2 * i + 1] = (r * 32767.0) as i16;
                    }
                    if let Ok(len) = encoder.encode(&frame, &mut packet) {
                        let ts = MediaTime::new(n * FRAME as u64, Frequency::FORTY_EIGHT_KHZ);
                        let _ =
                            w.audio_level(-level, true)
                                .write(pt, now, ts, packet[..len].to_vec());
                    }
                    n += 1;
                }
            }
            let wait = timeout
                .min(next_send)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1));
            let _ = self.socket.set_read_timeout(Some(wait));
            let input = match self.socket.recv_from(&mut buf) {
                Ok((len, source)) => match buf[..len].try_into() {
                    Ok(contents) => Input::Receive(
                        Instant::now(),
                        Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.local,
                            contents,
                        },
                    ),
                    Err(_) => continue,
                },
                Err(_) => Input::Timeout(Instant::now()),
            };
            if self.rtc.handle_input(input).is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_the_tone_and_not_its_neighbour() {
        let x: Vec<f32> = (0..48_000)
            .map(|n| 0.25 * (2.0 * PI * 440.0 * n as f32 / 48_000.0).sin())
            .collect();
        let a = goertzel_amplitude(&x, 440.0, 48_000.0);
        assert!((a - 0.25).abs() < 0.01, "{a}");
        assert!(goertzel_amplitude(&x, 660.0, 48_000.0) < 0.01);
        assert!((rms(&x) * 2f32.sqrt() - 0.25).abs() < 0.01);
    }
}
