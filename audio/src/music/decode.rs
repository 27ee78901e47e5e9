//! Opening a source and decoding it to interleaved PCM at its own rate: `symphonia` for MP3,
//! FLAC, AAC/M4A, Ogg Vorbis and WAV; Ogg Opus (which symphonia cannot decode) through the `ogg`
//! demuxer and libopus.

use std::io::{Read, Seek, SeekFrom};

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader, SeekMode, SeekTo};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::units::Time;

use super::http::HttpReader;
use super::{MusicError, MusicSource};

/// What a source holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DecodedInfo {
    /// Codec name (`mp3`, `flac`, `aac`, `vorbis`, `opus`, `pcm`…).
    pub codec: String,
    /// Native sample rate, Hz.
    pub sample_rate: u32,
    /// Native channels.
    pub channels: usize,
    /// Length, ms, if the container says.
    pub duration_ms: Option<u64>,
}

/// Decodes packets to interleaved f32 at the source's own rate.
pub(crate) trait PcmDecoder: Send {
    fn info(&self) -> &DecodedInfo;
    /// Appends the next packet's samples to `out`; `Ok(false)` at the end of the stream.
    fn next(&mut self, out: &mut Vec<f32>) -> Result<bool, MusicError>;
    /// Seeks so that the next samples start exactly at `frame` (native rate).
    fn seek(&mut self, frame: u64) -> Result<(), MusicError>;
}

/// Opens and checks a source: probes the format and decodes the first packet (so a damaged or
/// unsupported file fails here, with a clear error, not on the decode thread).
pub(crate) fn open(source: &MusicSource) -> Result<(Box<dyn PcmDecoder>, Vec<f32>), MusicError> {
    let (mut media, hint_ext): (Box<dyn MediaSource>, Option<String>) = match source {
        MusicSource::File(p) => {
            let f = std::fs::File::open(p).map_err(|e| MusicError::Open {
                path: p.display().to_string(),
                source: e,
            })?;
            let ext = p.extension().map(|e| e.to_string_lossy().to_lowercase());
            (Box::new(f), ext)
        }
        MusicSource::Url(u) => {
            let ext = u
                .rsplit('/')
                .next()
                .and_then(|last| last.split(['?', '#']).next())
                .and_then(|name| name.rsplit_once('.'))
                .map(|(_, e)| e.to_lowercase());
            (Box::new(HttpReader::open(u)?), ext)
        }
        MusicSource::Memory(bytes) => (Box::new(std::io::Cursor::new(bytes.clone())), None),
    };
    let mut head = [0u8; 64];
    let n = read_up_to(&mut media, &mut head).map_err(|e| MusicError::Corrupt(e.to_string()))?;
    media
        .seek(SeekFrom::Start(0))
        .map_err(|e| MusicError::Corrupt(e.to_string()))?;
    if n == 0 {
        return Err(MusicError::Corrupt("the file is empty".into()));
    }
    let mut dec: Box<dyn PcmDecoder> = if is_ogg_opus(&head[..n]) {
        let mut bytes = Vec::new();
        media
            .read_to_end(&mut bytes)
            .map_err(|e| MusicError::Corrupt(e.to_string()))?;
        Box::new(OggOpusDecoder::new(bytes)?)
    } else {
        Box::new(SymphoniaDecoder::new(media, hint_ext.as_deref())?)
    };
    let mut first = Vec::new();
    // A file whose first packets all fail is damaged; one that ends at once has no audio.
    if !dec.next(&mut first)? {
        return Err(MusicError::Corrupt("no audio in the file".into()));
    }
    Ok((dec, first))
}

/// Probes a source and reports what it holds (reads its start only).
pub fn probe_info(source: &MusicSource) -> Result<DecodedInfo, MusicError> {
    open(source).map(|(d, _)| d.info().clone())
}

fn read_up_to(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn is_ogg_opus(head: &[u8]) -> bool {
    head.len() >= 36 && &head[..4] == b"OggS" && &head[28..36] == b"OpusHead"
}

fn sym_error(e: SymError) -> MusicError {
    match e {
        SymError::Unsupported(what) => MusicError::Unsupported(what.to_string()),
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            MusicError::Corrupt("the file ends early (truncated)".into())
        }
        SymError::IoError(io) => MusicError::Corrupt(io.to_string()),
        SymError::DecodeError(m) => MusicError::Corrupt(m.to_string()),
        SymError::SeekError(k) => MusicError::Corrupt(format!("cannot seek: {k:?}")),
        SymError::LimitError(m) => MusicError::Corrupt(m.to_string()),
        SymError::ResetRequired => MusicError::Unsupported("a stream that changes format".into()),
    }
}

/// Packets in a row that may fail to decode before the stream counts as damaged.
const MAX_BAD_PACKETS: u32 = 16;

struct SymphoniaDecoder {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn symphonia::core::codecs::Decoder>,
    track: u32,
    info: DecodedInfo,
    buf: Option<SampleBuffer<f32>>,
    /// After a seek: the first timestamp (track time base) to keep.
    target_ts: Option<u64>,
}

impl SymphoniaDecoder {
    fn new(media: Box<dyn MediaSource>, ext: Option<&str>) -> Result<Self, MusicError> {
        let mss = MediaSourceStream::new(media, Default::default());
        let mut hint = Hint::new();
        if let Some(e) = ext {
            hint.with_extension(e);
        }
        let fmt_opts = FormatOptions {
            enable_gapless: true,
            ..Default::default()
        };
        let probed = symphonia::default::get_probe()
            .format(&hint, mss, &fmt_opts, &MetadataOptions::default())
            .map_err(|e| match e {
                // The prober read to the end without recognising anything.
                SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                    MusicError::Unsupported("no known audio format found in the data".into())
                }
                e => sym_error(e),
            })?;
        let format = probed.format;
        let track = format
            .tracks()
            .iter()
            .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
            .ok_or_else(|| {
                if format.tracks().is_empty() {
                    MusicError::NoAudioTrack
                } else {
                    MusicError::Unsupported("the file's audio codec".into())
                }
            })?;
        let params = track.codec_params.clone();
        let codec = symphonia::default::get_codecs()
            .get_codec(params.codec)
            .map(|d| d.short_name.to_string())
            .unwrap_or_else(|| format!("{:?}", params.codec));
        let decoder = symphonia::default::get_codecs()
            .make(&params, &DecoderOptions::default())
            .map_err(sym_error)?;
        let sample_rate = params
            .sample_rate
            .ok_or_else(|| MusicError::Corrupt("no sample rate in the file".into()))?;
        let channels = params.channels.map_or(0, |c| c.count());
        let duration_ms = params.n_frames.map(|n| n * 1000 / u64::from(sample_rate));
        Ok(SymphoniaDecoder {
            track: track.id,
            format,
            decoder,
            info: DecodedInfo {
                codec,
                sample_rate,
                channels,
                duration_ms,
            },
            buf: None,
            target_ts: None,
        })
    }
}

impl PcmDecoder for SymphoniaDecoder {
    fn info(&self) -> &DecodedInfo {
        &self.info
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<bool, MusicError> {
        let mut bad = 0;
        loop {
            let packet = match self.format.next_packet() {
                Ok(p) => p,
                // The normal end, and a file cut short: both simply end the stream.
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(false);
                }
                Err(SymError::ResetRequired) => return Ok(false),
                Err(e) => return Err(sym_error(e)),
            };
            if packet.track_id() != self.track {
                continue;
            }
            let ts = packet.ts();
            match self.decoder.decode(&packet) {
                Ok(decoded) => {
                    let spec = *decoded.spec();
                    let frames = decoded.frames();
                    if frames == 0 {
                        continue;
                    }
                    let ch = spec.channels.count();
                    if self.info.channels == 0 {
                        self.info.channels = ch;
                    }
                    if ch != self.info.channels || spec.rate != self.info.sample_rate {
                        return Err(MusicError::Unsupported(
                            "a stream that changes channels or rate midway".into(),
                        ));
                    }
                    let buf = match self.buf.as_mut() {
                        Some(b) if b.capacity() >= frames => b,
                        _ => self
                            .buf
                            .insert(SampleBuffer::<f32>::new(frames as u64 * 2, spec)),
                    };
                    buf.copy_interleaved_ref(decoded);
                    let mut samples = buf.samples();
                    if let Some(target) = self.target_ts.take()
                        && target > ts
                    {
                        let skip = ((target - ts) as usize).min(frames);
                        samples = &samples[skip * ch..];
                        if samples.is_empty() {
                            self.target_ts = Some(target);
                            continue;
                        }
                    }
                    out.extend_from_slice(samples);
                    return Ok(true);
                }
                Err(SymError::DecodeError(m)) => {
                    bad += 1;
                    if bad > MAX_BAD_PACKETS {
                        return Err(MusicError::Corrupt(m.to_string()));
                    }
                }
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(false);
                }
                Err(e) => return Err(sym_error(e)),
            }
        }
    }

    fn seek(&mut self, frame: u64) -> Result<(), MusicError> {
        let rate = u64::from(self.info.sample_rate);
        let time = Time::new(frame / rate, (frame % rate) as f64 / rate as f64);
        let seeked = self
            .format
            .seek(
                SeekMode::Accurate,
                SeekTo::Time {
                    time,
                    track_id: Some(self.track),
                },
            )
            .map_err(sym_error)?;
        self.decoder.reset();
        self.target_ts = Some(seeked.required_ts);
        Ok(())
    }
}

/// Ogg Opus (RFC 7845), read whole into memory: packets with their 48 kHz start positions.
struct OggOpusDecoder {
    info: DecodedInfo,
    decoder: opus::Decoder,
    channels: usize,
    pre_skip: u64,
    /// (start frame counted from the stream start including pre-skip, payload)
    packets: Vec<(u64, Vec<u8>)>,
    /// Frames of audio (after pre-skip, before end trimming).
    total: u64,
    next: usize,
    /// Frames of output produced so far (same origin as packet starts).
    cursor: u64,
    /// Drop output before this frame (pre-skip, a seek target).
    keep_from: u64,
    pcm: Vec<f32>,
}

impl OggOpusDecoder {
    fn new(bytes: Vec<u8>) -> Result<Self, MusicError> {
        let mut reader = ogg::reading::PacketReader::new(std::io::Cursor::new(bytes));
        let corrupt = |m: String| MusicError::Corrupt(m);
        let head = reader
            .read_packet()
            .map_err(|e| corrupt(e.to_string()))?
            .ok_or_else(|| corrupt("no Opus header".into()))?;
        let h = &head.data;
        if h.len() < 19 || &h[..8] != b"OpusHead" {
            return Err(corrupt("bad Opus header".into()));
        }
        let channels = usize::from(h[9]);
        let pre_skip = u64::from(u16::from_le_bytes([h[10], h[11]]));
        if h[18] != 0 || !(1..=2).contains(&channels) {
            return Err(MusicError::Unsupported(format!(
                "Opus with {channels} channels (mapping family {})",
                h[18]
            )));
        }
        let serial = head.stream_serial();
        let mut packets = Vec::new();
        let mut pos = 0u64;
        let mut last_granule = 0u64;
        let mut seen_tags = false;
        loop {
            let p = match reader.read_packet() {
                Ok(Some(p)) => p,
                Ok(None) => break,
                // A file cut short: keep what came before the damage, like the other formats.
                Err(_) if !packets.is_empty() => break,
                Err(e) => return Err(corrupt(e.to_string())),
            };
            if p.stream_serial() != serial {
                continue;
            }
            if !seen_tags {
                seen_tags = true;
                if p.data.starts_with(b"OpusTags") {
                    continue;
                }
            }
            let n = opus::packet::get_nb_samples(&p.data, 48_000)
                .map_err(|e| corrupt(format!("bad Opus packet: {e}")))? as u64;
            if p.last_in_page() {
                last_granule = p.absgp_page();
            }
            packets.push((pos, p.data));
            pos += n;
        }
        if packets.is_empty() {
            return Err(corrupt("no audio in the file".into()));
        }
        // The last page's granule trims the padding of the final packet.
        let end = if last_granule > pre_skip && last_granule <= pos {
            last_granule
        } else {
            pos
        };
        let total = end.saturating_sub(pre_skip);
        let ch = if channels == 2 {
            opus::Channels::Stereo
        } else {
            opus::Channels::Mono
        };
        let decoder = opus::Decoder::new(48_000, ch)
            .map_err(|e| corrupt(format!("cannot start Opus decoder: {e}")))?;
        Ok(OggOpusDecoder {
            info: DecodedInfo {
                codec: "opus".into(),
                sample_rate: 48_000,
                channels,
                duration_ms: Some(total * 1000 / 48_000),
            },
            decoder,
            channels,
            pre_skip,
            packets,
            total,
            next: 0,
            cursor: 0,
            keep_from: pre_skip,
            pcm: vec![0.0; 5760 * 2],
        })
    }
}

impl PcmDecoder for OggOpusDecoder {
    fn info(&self) -> &DecodedInfo {
        &self.info
    }

    fn next(&mut self, out: &mut Vec<f32>) -> Result<bool, MusicError> {
        let end = self.pre_skip + self.total;
        loop {
            if self.next >= self.packets.len() || self.cursor >= end {
                return Ok(false);
            }
            let (start, data) = &self.packets[self.next];
            self.next += 1;
            let n = match self.decoder.decode_float(data, &mut self.pcm, false) {
                Ok(n) => n as u64,
                Err(e) => return Err(MusicError::Corrupt(format!("bad Opus packet: {e}"))),
            };
            self.cursor = start + n;
            let from = self.keep_from.max(*start);
            let to = self.cursor.min(end);
            if to <= from {
                continue;
            }
            let a = ((from - start) as usize) * self.channels;
            let b = ((to - start) as usize) * self.channels;
            out.extend_from_slice(&self.pcm[a..b]);
            return Ok(true);
        }
    }

    fn seek(&mut self, frame: u64) -> Result<(), MusicError> {
        let target = self.pre_skip + frame.min(self.total);
        // Opus needs 80 ms of pre-roll to converge after a jump (RFC 7845 §4.6).
        let preroll_from = target.saturating_sub(3840);
        let idx = self
            .packets
            .partition_point(|(s, _)| *s <= preroll_from)
            .saturating_sub(1);
        self.decoder
            .reset_state()
            .map_err(|e| MusicError::Corrupt(e.to_string()))?;
        self.next = idx;
        self.cursor = self.packets[idx].0;
        self.keep_from = target;
        Ok(())
    }
}

/// A source decoded whole to 48 kHz interleaved stereo (sound pads, benchmarks).
#[derive(Debug, Clone)]
pub struct Preloaded {
    /// What the source held.
    pub info: DecodedInfo,
    /// 48 kHz interleaved stereo.
    pub pcm: Vec<f32>,
}

/// Decodes a whole source to 48 kHz stereo in memory (on the caller's thread).
pub fn decode_to_48k(source: &MusicSource) -> Result<Preloaded, MusicError> {
    let (mut dec, mut native) = open(source)?;
    let info = dec.info().clone();
    let mut rs = super::resample::To48::new(info.sample_rate, info.channels.max(1))?;
    let mut pcm = Vec::new();
    loop {
        rs.push(&native, &mut pcm)?;
        native.clear();
        if !dec.next(&mut native)? {
            break;
        }
    }
    rs.flush(&mut pcm)?;
    Ok(Preloaded { info, pcm })
}
