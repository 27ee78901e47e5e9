//! FLV tag bodies as RTMP carries them (RTMP audio and data messages are FLV tag bodies), the
//! ADTS framing the AAC encoder writes, and an FLV file reader for tests and tools.
//!
//! Audio: AAC-LC, 48 kHz stereo. The first audio message is the AAC sequence header
//! (`AF 00` + AudioSpecificConfig), then one message per AAC frame (`AF 01` + raw frame).
//! Levels: an AMF0 data message `onVolume`, and the same inside the AAC frames as a data stream
//! element (formats in `docs/push.md`).

use super::amf0::{self, Value};

/// FLV audio tag header byte for AAC: sound format 10, "44 kHz" (always for AAC), 16-bit, stereo.
pub const AAC_TAG: u8 = 0xAF;
/// `audiocodecid` of AAC in `onMetaData`.
pub const AAC_CODEC_ID: f64 = 10.0;
/// The name of the levels data message.
pub const ON_VOLUME: &str = "onVolume";

/// One AAC frame parsed out of an ADTS stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdtsFrame {
    /// The AudioSpecificConfig this frame's header describes (2 bytes for AAC-LC).
    pub config: [u8; 2],
    /// Sample rate from the header.
    pub rate: u32,
    /// The raw AAC frame (header removed).
    pub raw: Vec<u8>,
}

/// Why an ADTS stream is unreadable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlvError {
    /// No ADTS sync word where a frame should start.
    #[error("the encoder's output lost ADTS sync")]
    AdtsSync,
    /// A header with an impossible length or sample rate.
    #[error("a malformed ADTS header")]
    AdtsHeader,
    /// Not an FLV file, or cut inside a tag.
    #[error("not a whole FLV file: {0}")]
    Flv(&'static str),
}

const RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// Splits an ADTS byte stream into frames (sans-IO: bytes in, frames out).
#[derive(Debug, Default)]
pub struct AdtsReader {
    buf: Vec<u8>,
}

impl AdtsReader {
    /// Takes bytes from the encoder.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame, if buffered.
    pub fn poll(&mut self) -> Result<Option<AdtsFrame>, FlvError> {
        let b = &self.buf;
        if b.len() < 7 {
            return Ok(None);
        }
        if b[0] != 0xFF || b[1] & 0xF0 != 0xF0 {
            return Err(FlvError::AdtsSync);
        }
        let protection_absent = b[1] & 1 == 1;
        let profile = b[2] >> 6;
        let freq = (b[2] >> 2) & 0x0F;
        let channels = ((b[2] & 1) << 2) | (b[3] >> 6);
        let len = (usize::from(b[3] & 3) << 11) | (usize::from(b[4]) << 3) | usize::from(b[5] >> 5);
        let header = if protection_absent { 7 } else { 9 };
        let rate = *RATES.get(usize::from(freq)).ok_or(FlvError::AdtsHeader)?;
        if len < header {
            return Err(FlvError::AdtsHeader);
        }
        if b.len() < len {
            return Ok(None);
        }
        let object = u16::from(profile) + 1;
        let asc = (object << 11) | (u16::from(freq) << 7) | (u16::from(channels) << 3);
        let frame = AdtsFrame {
            config: asc.to_be_bytes(),
            rate,
            raw: b[header..len].to_vec(),
        };
        self.buf.drain(..len);
        Ok(Some(frame))
    }
}

/// The AAC sequence header message body.
pub fn aac_sequence_header(config: [u8; 2]) -> Vec<u8> {
    vec![AAC_TAG, 0x00, config[0], config[1]]
}

/// The message body of one raw AAC frame.
pub fn aac_frame(raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(raw.len() + 2);
    body.extend_from_slice(&[AAC_TAG, 0x01]);
    body.extend_from_slice(raw);
    body
}

/// `@setDataFrame onMetaData` for an audio-only AAC stream.
pub fn on_metadata(bitrate_kbps: u32, rate: u32) -> Vec<Value> {
    vec![
        Value::String("@setDataFrame".into()),
        Value::String("onMetaData".into()),
        Value::EcmaArray(vec![
            ("duration".into(), Value::Number(0.0)),
            ("audiocodecid".into(), Value::Number(AAC_CODEC_ID)),
            (
                "audiodatarate".into(),
                Value::Number(f64::from(bitrate_kbps)),
            ),
            ("audiosamplerate".into(), Value::Number(f64::from(rate))),
            ("audiosamplesize".into(), Value::Number(16.0)),
            ("stereo".into(), Value::Boolean(true)),
            ("encoder".into(), Value::String("onmic-server".into())),
        ]),
    ]
}

/// One speaker's level in an `onVolume` message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpeakerLevel {
    /// The speaker.
    pub uid: String,
    /// Loudest sample of the interval, 0–255, linear in amplitude (the scale of
    /// `volume_indication`).
    pub volume: u8,
    /// `volume` is above the speaking threshold (20).
    pub speaking: bool,
}

/// The `onVolume` data message: stream time `t` (ms), the interval it covers, the speakers.
pub fn on_volume(t: u32, interval_ms: u32, speakers: &[SpeakerLevel]) -> Vec<Value> {
    let list = speakers
        .iter()
        .map(|s| {
            Value::Object(vec![
                ("uid".into(), Value::String(s.uid.clone())),
                ("volume".into(), Value::Number(f64::from(s.volume))),
                ("speaking".into(), Value::Boolean(s.speaking)),
            ])
        })
        .collect();
    vec![
        Value::String(ON_VOLUME.into()),
        Value::Object(vec![
            ("t".into(), Value::Number(f64::from(t))),
            ("interval".into(), Value::Number(f64::from(interval_ms))),
            ("speakers".into(), Value::StrictArray(list)),
        ]),
    ]
}

/// First bytes of the levels inside an AAC data stream element.
pub const DSE_MAGIC: &[u8; 4] = b"OMV1";
/// Longest data stream element payload (`count` 255 + `esc_count` 255).
pub const DSE_MAX: usize = 510;

/// The levels as a data stream element (ISO 14496-3 DSE, `id_syn_ele` 4) to put in front of a
/// raw AAC frame, like a video stream's SEI: decoders skip it, every server passes it on with
/// the audio. Payload: `OMV1`, `t` (u32 BE, ms), a count, then per speaker `volume` (u8),
/// flags (bit 0: speaking), the uid's length (u8) and its UTF-8 bytes — the loudest first, as
/// many as fit in [`DSE_MAX`] bytes. The element is 2 or 3 bytes of header plus the payload,
/// whole bytes, so the frame's own bits follow unshifted.
pub fn levels_dse(t: u32, speakers: &[SpeakerLevel]) -> Vec<u8> {
    let mut order: Vec<&SpeakerLevel> = speakers.iter().collect();
    order.sort_by(|a, b| b.volume.cmp(&a.volume).then_with(|| a.uid.cmp(&b.uid)));
    let mut payload = Vec::with_capacity(64);
    payload.extend_from_slice(DSE_MAGIC);
    payload.extend_from_slice(&t.to_be_bytes());
    payload.push(0);
    for sp in order {
        let uid = &sp.uid.as_bytes()[..sp.uid.len().min(255)];
        if payload.len() + 3 + uid.len() > DSE_MAX || payload[8] == u8::MAX {
            break;
        }
        payload.push(sp.volume);
        payload.push(u8::from(sp.speaking));
        payload.push(uid.len() as u8);
        payload.extend_from_slice(uid);
        payload[8] += 1;
    }
    // id_syn_ele DSE (3 bits), element_instance_tag 0 (4), data_byte_align_flag 0 (1), count.
    let mut element = vec![4 << 5];
    if payload.len() >= 255 {
        element.push(255);
        element.push((payload.len() - 255) as u8);
    } else {
        element.push(payload.len() as u8);
    }
    element.extend_from_slice(&payload);
    element
}

/// A level report: stream time (ms) and the speakers.
pub type Levels = (u32, Vec<SpeakerLevel>);

/// The levels of a raw AAC frame that starts with a [`levels_dse`] element, and the frame
/// without it.
pub fn read_levels_dse(raw: &[u8]) -> Option<(Levels, &[u8])> {
    if raw.first()? >> 5 != 4 {
        return None;
    }
    let (len, at) = match *raw.get(1)? {
        255 => (255 + usize::from(*raw.get(2)?), 3),
        n => (usize::from(n), 2),
    };
    let payload = raw.get(at..at + len)?;
    if payload.get(..4)? != DSE_MAGIC {
        return None;
    }
    let t = u32::from_be_bytes(payload.get(4..8)?.try_into().ok()?);
    let count = *payload.get(8)?;
    let mut speakers = Vec::with_capacity(usize::from(count));
    let mut p = 9;
    for _ in 0..count {
        let volume = *payload.get(p)?;
        let speaking = payload.get(p + 1)? & 1 == 1;
        let n = usize::from(*payload.get(p + 2)?);
        let uid = std::str::from_utf8(payload.get(p + 3..p + 3 + n)?).ok()?;
        speakers.push(SpeakerLevel {
            uid: uid.to_owned(),
            volume,
            speaking,
        });
        p += 3 + n;
    }
    Some(((t, speakers), &raw[at + len..]))
}

/// One tag of an FLV file.
#[derive(Debug, Clone, PartialEq)]
pub struct FlvTag {
    /// 8 audio, 9 video, 18 script data.
    pub kind: u8,
    /// Milliseconds.
    pub timestamp: u32,
    /// The tag body.
    pub body: Vec<u8>,
}

impl FlvTag {
    /// The AMF0 values of a script data tag.
    pub fn script(&self) -> Option<Vec<Value>> {
        (self.kind == 18)
            .then(|| amf0::decode_all(&self.body).ok())
            .flatten()
    }
}

/// Reads every tag of an FLV file (a tag cut off at the end, as a live dump may have, is left
/// out).
pub fn read_tags(file: &[u8]) -> Result<Vec<FlvTag>, FlvError> {
    if file.get(..3) != Some(b"FLV") {
        return Err(FlvError::Flv("no FLV signature"));
    }
    let offset = file
        .get(5..9)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or(FlvError::Flv("short header"))?;
    let mut at = offset + 4; // the first PreviousTagSize
    let mut tags = Vec::new();
    while let Some(h) = file.get(at..at + 11) {
        let size = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
        let ts =
            u32::from(h[4]) << 16 | u32::from(h[5]) << 8 | u32::from(h[6]) | u32::from(h[7]) << 24;
        let Some(body) = file.get(at + 11..at + 11 + size) else {
            break;
        };
        tags.push(FlvTag {
            kind: h[0] & 0x1F,
            timestamp: ts,
            body: body.to_vec(),
        });
        at += 11 + size + 4;
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adts_frames_split_and_give_the_config() {
        // AAC-LC (profile 1), 48 kHz (index 3), 2 channels, 10-byte frames, no CRC.
        let frame = |fill: u8| {
            let len = 10usize;
            let mut h = vec![
                0xFF,
                0xF1,
                (1 << 6) | (3 << 2),
                (2 << 6) | ((len >> 11) as u8 & 3),
                (len >> 3) as u8,
                ((len & 7) << 5) as u8 | 0x1F,
                0xFC,
            ];
            h.extend_from_slice(&[fill; 3]);
            h
        };
        let mut r = AdtsReader::default();
        let mut bytes = frame(1);
        bytes.extend(frame(2));
        r.push(&bytes[..12]);
        let f = r.poll().expect("ok").expect("a frame");
        assert_eq!(f.config, [0x11, 0x90], "AAC-LC 48 kHz stereo");
        assert_eq!((f.rate, f.raw.as_slice()), (48000, &[1u8, 1, 1][..]));
        assert_eq!(r.poll(), Ok(None));
        r.push(&bytes[12..]);
        assert_eq!(r.poll().expect("ok").expect("frame").raw, [2, 2, 2]);
        let mut bad = AdtsReader::default();
        bad.push(&[0u8; 16]);
        assert_eq!(bad.poll(), Err(FlvError::AdtsSync));
    }

    #[test]
    fn on_volume_decodes_to_what_was_sent() {
        let speakers = [SpeakerLevel {
            uid: "ana".into(),
            volume: 200,
            speaking: true,
        }];
        let body = amf0::encode(&on_volume(1200, 200, &speakers));
        let v = amf0::decode_all(&body).expect("decodes");
        assert_eq!(v[0].as_str(), Some(ON_VOLUME));
        assert_eq!(v[1].get("t").and_then(Value::as_number), Some(1200.0));
        let Some(Value::StrictArray(list)) = v[1].get("speakers") else {
            panic!("speakers list");
        };
        assert_eq!(
            list[0].get("volume").and_then(Value::as_number),
            Some(200.0)
        );
    }

    #[test]
    fn levels_ride_in_a_data_stream_element() {
        let many: Vec<SpeakerLevel> = (0..20)
            .map(|i| SpeakerLevel {
                uid: format!("{i:0>60}"),
                volume: i,
                speaking: i > 10,
            })
            .collect();
        for speakers in [&many[..0], &many[..2], &many[..]] {
            let mut frame = levels_dse(4200, speakers);
            assert!(frame.len() <= DSE_MAX + 3);
            frame.extend_from_slice(&[0x21, 0x10]);
            let ((t, got), rest) = read_levels_dse(&frame).expect("levels");
            assert_eq!((t, rest), (4200, &[0x21u8, 0x10][..]));
            let want: Vec<u8> = speakers
                .iter()
                .rev()
                .take(got.len())
                .map(|s| s.volume)
                .collect();
            assert_eq!(
                got.iter().map(|s| s.volume).collect::<Vec<_>>(),
                want,
                "loudest first"
            );
            assert!(got.len() == speakers.len() || got.len() >= 7);
        }
        assert!(
            read_levels_dse(&[0x21, 0x10]).is_none(),
            "a frame without levels"
        );
        assert!(read_levels_dse(&[0x80, 9, b'O']).is_none(), "cut short");
    }

    #[test]
    fn flv_reader_refuses_garbage() {
        assert!(read_tags(b"not flv").is_err());
        assert_eq!(read_tags(b"FLV\x01\x04\0\0\0\x09\0\0\0\0"), Ok(vec![]));
    }
}
