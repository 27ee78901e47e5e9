//! Opus for the publish bus and the playout path: a music profile (48 kHz stereo 128 kbps, FEC,
//! complexity 10) and a voice profile (mono 32–64 kbps, DTX), 10 or 20 ms frames. Packets carry an
//! RTP timestamp (48 kHz clock) and sequence number so the media layer can send them as RTP as is.
//!
//! Both the encoder and the decoder are created (allocated) up front; `push_block`/`decode` are
//! allocation-free.

use ::opus::{Application, Bitrate, Channels, Decoder, Encoder};

use crate::block::Block;
use crate::units::BLOCK_FRAMES;

/// Largest packet we emit or accept (bytes); a 20 ms frame at 510 kbps fits.
pub const MAX_PACKET_BYTES: usize = 1500;

/// Errors from the Opus layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpusError {
    /// libopus refused a setting or a packet.
    #[error("opus: {0}")]
    Codec(#[from] ::opus::Error),
    /// The profile asks for something Opus cannot do.
    #[error("invalid opus profile: {0}")]
    InvalidProfile(&'static str),
    /// A packet was empty or larger than [`MAX_PACKET_BYTES`].
    #[error("packet of {0} bytes is not acceptable")]
    BadPacket(usize),
}

/// Frame duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameDuration {
    /// 10 ms (one block).
    Ms10,
    /// 20 ms (two blocks), the WebRTC default.
    Ms20,
}

impl FrameDuration {
    /// Blocks per frame.
    pub fn blocks(self) -> usize {
        match self {
            FrameDuration::Ms10 => 1,
            FrameDuration::Ms20 => 2,
        }
    }

    /// Frames (samples per channel) per Opus frame at 48 kHz.
    pub fn frames(self) -> usize {
        self.blocks() * BLOCK_FRAMES
    }
}

/// An encoder configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusProfile {
    /// 1 (voice) or 2 (music).
    pub channels: usize,
    /// Target bitrate in bits per second.
    pub bitrate: i32,
    /// In-band forward error correction.
    pub fec: bool,
    /// Discontinuous transmission (tiny packets in silence).
    pub dtx: bool,
    /// Encoder complexity 0..=10.
    pub complexity: i32,
    /// Frame duration.
    pub frame: FrameDuration,
    /// Tune for music (true) or speech (false).
    pub music: bool,
}

impl OpusProfile {
    /// The sound-card profile: 48 kHz stereo 128 kbps, FEC, complexity 10, 20 ms.
    pub fn music() -> OpusProfile {
        OpusProfile {
            channels: 2,
            bitrate: 128_000,
            fec: true,
            dtx: false,
            complexity: 10,
            frame: FrameDuration::Ms20,
            music: true,
        }
    }

    /// The voice profile: mono 48 kbps, DTX, FEC, 20 ms.
    pub fn voice() -> OpusProfile {
        OpusProfile {
            channels: 1,
            bitrate: 48_000,
            fec: true,
            dtx: true,
            complexity: 10,
            frame: FrameDuration::Ms20,
            music: false,
        }
    }
}

/// One encoded Opus packet with its RTP timing.
#[derive(Clone)]
pub struct OpusPacket {
    /// RTP timestamp (48 kHz clock) of the first sample.
    pub rtp_timestamp: u32,
    /// RTP sequence number.
    pub sequence: u16,
    /// Capture time of the first sample in engine frames (for latency accounting).
    pub capture_timestamp: u64,
    len: u16,
    data: [u8; MAX_PACKET_BYTES],
}

impl std::fmt::Debug for OpusPacket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusPacket")
            .field("rtp_timestamp", &self.rtp_timestamp)
            .field("sequence", &self.sequence)
            .field("len", &self.len)
            .finish()
    }
}

impl OpusPacket {
    /// An empty packet (used to pre-fill fixed storage).
    pub fn empty() -> OpusPacket {
        OpusPacket {
            rtp_timestamp: 0,
            sequence: 0,
            capture_timestamp: 0,
            len: 0,
            data: [0; MAX_PACKET_BYTES],
        }
    }

    /// A packet received from the network.
    pub fn from_bytes(
        sequence: u16,
        rtp_timestamp: u32,
        bytes: &[u8],
    ) -> Result<OpusPacket, OpusError> {
        let mut p = OpusPacket::empty();
        p.set(sequence, rtp_timestamp, bytes)?;
        Ok(p)
    }

    /// Overwrites this packet in place (no allocation).
    pub fn set(
        &mut self,
        sequence: u16,
        rtp_timestamp: u32,
        bytes: &[u8],
    ) -> Result<(), OpusError> {
        if bytes.is_empty() || bytes.len() > MAX_PACKET_BYTES {
            return Err(OpusError::BadPacket(bytes.len()));
        }
        self.sequence = sequence;
        self.rtp_timestamp = rtp_timestamp;
        self.data[..bytes.len()].copy_from_slice(bytes);
        self.len = bytes.len() as u16;
        Ok(())
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }

    /// Whether this is a DTX comfort packet (≤ 2 bytes) a sender may skip.
    pub fn is_dtx(&self) -> bool {
        self.len <= 2
    }
}

/// Encodes the publish bus: push 10 ms blocks, get a packet every frame.
pub struct OpusEncoder {
    encoder: Encoder,
    profile: OpusProfile,
    pcm: Vec<f32>,
    blocks_in_frame: usize,
    next_rtp: u32,
    next_seq: u16,
    frame_capture_ts: u64,
    packet: OpusPacket,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("profile", &self.profile)
            .finish()
    }
}

impl OpusEncoder {
    /// Creates an encoder for `profile`, starting at the given RTP timestamp and sequence.
    pub fn new(
        profile: OpusProfile,
        first_rtp: u32,
        first_seq: u16,
    ) -> Result<OpusEncoder, OpusError> {
        let channels = match profile.channels {
            1 => Channels::Mono,
            2 => Channels::Stereo,
            _ => return Err(OpusError::InvalidProfile("channels must be 1 or 2")),
        };
        if !(6_000..=510_000).contains(&profile.bitrate) {
            return Err(OpusError::InvalidProfile("bitrate must be 6–510 kbps"));
        }
        let app = if profile.music {
            Application::Audio
        } else {
            Application::Voip
        };
        let mut encoder = Encoder::new(48_000, channels, app)?;
        encoder.set_bitrate(Bitrate::Bits(profile.bitrate))?;
        encoder.set_complexity(profile.complexity.clamp(0, 10))?;
        // FEC is on, but the expected loss starts at 0 % (no redundancy spent on a clean path);
        // the media layer feeds the receiver-reported loss through `set_expected_loss`, as
        // libwebrtc does from RTCP. A fixed loss percentage here would make the encoder spend
        // ~40 % more CPU and bits on redundancy at all times.
        encoder.set_inband_fec(profile.fec)?;
        encoder.set_dtx(profile.dtx)?;
        Ok(OpusEncoder {
            encoder,
            profile,
            pcm: vec![0.0; profile.frame.frames() * profile.channels],
            blocks_in_frame: 0,
            next_rtp: first_rtp,
            next_seq: first_seq,
            frame_capture_ts: 0,
            packet: OpusPacket::empty(),
        })
    }

    /// Sets the packet loss the receivers report (0–100 %), so FEC carries redundancy when it
    /// helps. Allocation-free.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), OpusError> {
        self.encoder
            .set_packet_loss_perc(i32::from(percent.min(100)))?;
        Ok(())
    }

    /// The profile in use.
    pub fn profile(&self) -> OpusProfile {
        self.profile
    }

    /// Samples of look-ahead the encoder adds.
    pub fn lookahead(&mut self) -> usize {
        self.encoder
            .get_lookahead()
            .map(|l| l.max(0) as usize)
            .unwrap_or(0)
    }

    /// The RTP timestamp and sequence the next packet will get (to continue after a swap).
    pub fn next_rtp(&self) -> (u32, u16) {
        (self.next_rtp, self.next_seq)
    }

    /// Continues `previous`'s RTP timestamp and sequence (a profile change mid-stream keeps the
    /// RTP stream continuous for the receiver).
    pub fn continue_from(&mut self, previous: &OpusEncoder) {
        self.next_rtp = previous.next_rtp;
        self.next_seq = previous.next_seq;
    }

    /// Adds one block; returns a packet when a frame is complete. A stereo block feeding a mono
    /// profile is downmixed; a mono block feeding a stereo profile is duplicated.
    pub fn push_block(&mut self, block: &Block) -> Result<Option<&OpusPacket>, OpusError> {
        if self.blocks_in_frame == 0 {
            self.frame_capture_ts = block.timestamp;
        }
        let ch = self.profile.channels;
        let base = self.blocks_in_frame * BLOCK_FRAMES * ch;
        let dst = &mut self.pcm[base..base + BLOCK_FRAMES * ch];
        let (l, r) = (block.channel(0), block.channel(1));
        let stereo_in = block.channels() == 2;
        if ch == 2 {
            for (i, frame) in dst.chunks_exact_mut(2).enumerate() {
                frame[0] = l[i];
                frame[1] = if stereo_in { r[i] } else { l[i] };
            }
        } else {
            for (i, s) in dst.iter_mut().enumerate() {
                *s = if stereo_in { 0.5 * (l[i] + r[i]) } else { l[i] };
            }
        }
        self.blocks_in_frame += 1;
        if self.blocks_in_frame < self.profile.frame.blocks() {
            return Ok(None);
        }
        self.blocks_in_frame = 0;
        let n = self
            .encoder
            .encode_float(&self.pcm, &mut self.packet.data)?;
        self.packet.len = n as u16;
        self.packet.rtp_timestamp = self.next_rtp;
        self.packet.sequence = self.next_seq;
        self.packet.capture_timestamp = self.frame_capture_ts;
        self.next_rtp = self
            .next_rtp
            .wrapping_add(self.profile.frame.frames() as u32);
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(Some(&self.packet))
    }
}

/// Decodes one remote's packets to stereo 48 kHz, with packet-loss concealment and FEC recovery.
pub struct OpusDecoder {
    decoder: Decoder,
    last_frame_frames: usize,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish()
    }
}

/// Most frames (per channel) one decode call can produce: 120 ms.
pub const MAX_DECODE_FRAMES: usize = 5760;

impl OpusDecoder {
    /// A stereo 48 kHz decoder (mono packets come out on both channels).
    pub fn new() -> Result<OpusDecoder, OpusError> {
        Ok(OpusDecoder {
            decoder: Decoder::new(48_000, Channels::Stereo)?,
            last_frame_frames: 960,
        })
    }

    /// Decodes `payload` into interleaved stereo `out`; returns frames decoded.
    pub fn decode(&mut self, payload: &[u8], out: &mut [f32]) -> Result<usize, OpusError> {
        if payload.is_empty() || payload.len() > MAX_PACKET_BYTES {
            return Err(OpusError::BadPacket(payload.len()));
        }
        let n = self.decoder.decode_float(payload, out, false)?;
        self.last_frame_frames = n.max(120);
        Ok(n)
    }

    /// Conceals one lost frame (same length as the last good one); with `next` it recovers the
    /// lost frame from the next packet's FEC data instead.
    pub fn conceal(&mut self, next: Option<&[u8]>, out: &mut [f32]) -> Result<usize, OpusError> {
        let frames = self.last_frame_frames.min(out.len() / 2);
        let out = &mut out[..frames * 2];
        let n = match next {
            Some(p) if !p.is_empty() && p.len() <= MAX_PACKET_BYTES => {
                self.decoder.decode_float(p, out, true)?
            }
            _ => self.decoder.decode_float(&[], out, false)?,
        };
        Ok(n)
    }

    /// Resets decoder state (a new stream).
    pub fn reset(&mut self) -> Result<(), OpusError> {
        self.decoder.reset_state()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::{dominant_frequency, goertzel_power, sine_block};

    #[test]
    fn music_profile_keeps_stereo_sides_and_timestamps() {
        let mut enc = OpusEncoder::new(OpusProfile::music(), 1000, 7).expect("encoder");
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut left = Vec::new();
        let mut right = Vec::new();
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        let mut seen = Vec::new();
        for n in 0..100u64 {
            let l = sine_block(440.0, 0.5, n, 1);
            let r = sine_block(660.0, 0.5, n, 1);
            let mut b = Block::silent(2);
            b.channel_mut(0).copy_from_slice(l.channel(0));
            b.channel_mut(1).copy_from_slice(r.channel(0));
            if let Some(p) = enc.push_block(&b).expect("encode") {
                seen.push((p.sequence, p.rtp_timestamp));
                let f = dec.decode(p.payload(), &mut pcm).expect("decode");
                for fr in pcm[..f * 2].chunks_exact(2) {
                    left.push(fr[0]);
                    right.push(fr[1]);
                }
            }
        }
        assert_eq!(seen.len(), 50);
        assert_eq!(seen[0], (7, 1000));
        assert_eq!(seen[1], (8, 1960));
        let tail_l = &left[left.len() - 24_000..];
        let tail_r = &right[right.len() - 24_000..];
        assert!((dominant_frequency(tail_l, 300.0, 800.0, 5.0) - 440.0).abs() < 1.0);
        assert!((dominant_frequency(tail_r, 300.0, 800.0, 5.0) - 660.0).abs() < 1.0);
        // Cross-talk at least 30 dB down.
        let sep_l = 10.0 * (goertzel_power(tail_l, 440.0) / goertzel_power(tail_l, 660.0)).log10();
        let sep_r = 10.0 * (goertzel_power(tail_r, 660.0) / goertzel_power(tail_r, 440.0)).log10();
        assert!(sep_l > 30.0 && sep_r > 30.0, "{sep_l} {sep_r}");
    }

    #[test]
    fn voice_profile_dtx_in_silence_and_plc() {
        let mut enc = OpusEncoder::new(OpusProfile::voice(), 0, 0).expect("encoder");
        let mut dtx = 0;
        for n in 0..200u64 {
            let b = Block::silent(1);
            let _ = n;
            if let Some(p) = enc.push_block(&b).expect("encode")
                && p.is_dtx()
            {
                dtx += 1;
            }
        }
        assert!(dtx > 50, "dtx packets {dtx}");
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        let n = dec.conceal(None, &mut pcm).expect("plc");
        assert_eq!(n, 960);
    }

    #[test]
    fn voice_fec_recovers_a_lost_packet_once_loss_is_expected() {
        let mut enc = OpusEncoder::new(OpusProfile::voice(), 0, 0).expect("encoder");
        enc.set_expected_loss(20).expect("loss");
        let mut packets = Vec::new();
        for n in 0..100u64 {
            let b = sine_block(300.0 + (n % 7) as f32 * 20.0, 0.3, n, 1);
            if let Some(p) = enc.push_block(&b).expect("encode") {
                packets.push(p.payload().to_vec());
            }
        }
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        for p in &packets[..30] {
            dec.decode(p, &mut pcm).expect("decode");
        }
        // Packet 30 is lost; 31 carries its FEC copy.
        let n = dec.conceal(Some(&packets[31]), &mut pcm).expect("fec");
        assert_eq!(n, 960);
        let energy: f32 = pcm[..n * 2].iter().map(|s| s * s).sum();
        assert!(energy > 1.0, "FEC recovered silence");
    }

    #[test]
    fn bad_packets_are_errors_not_panics() {
        let mut dec = OpusDecoder::new().expect("decoder");
        let mut pcm = vec![0.0f32; MAX_DECODE_FRAMES * 2];
        assert!(dec.decode(&[], &mut pcm).is_err());
        assert!(dec.decode(&[0xff; 2000], &mut pcm).is_err());
        for seed in 0..200u32 {
            let junk: Vec<u8> = (0..(seed % 60 + 1))
                .map(|i| (i * 37 + seed * 11) as u8)
                .collect();
            let _ = dec.decode(&junk, &mut pcm);
        }
        assert!(OpusPacket::from_bytes(0, 0, &[]).is_err());
        assert!(
            OpusEncoder::new(
                OpusProfile {
                    channels: 3,
                    ..OpusProfile::music()
                },
                0,
                0
            )
            .is_err()
        );
    }
}
