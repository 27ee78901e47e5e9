//! Offline processing: the same chain as the live engine, file to file. WAV in (PCM 8–32 bit or
//! float, mono or stereo, any rate — resampled to 48 kHz), an optional far-end reference WAV for
//! the AEC, WAV (32-bit float, or 16-bit PCM with [`WavFormat::S16`]) or Ogg Opus out (the
//! mode's Opus profile).
//!
//! Errors mean bad input: a missing file, something that is not a WAV, a truncated WAV or an
//! unsupported layout each give an [`OfflineError`] with a message naming the file.

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use crate::block::Block;
use crate::chain::{Chain, ChainConfig, Mode, Toggles};
use crate::debug_tap::DebugTap;
use crate::effects::{EffectError, EffectRack, EffectSettings};
use crate::ogg_opus::OggOpusWriter;
use crate::opus::{OpusEncoder, OpusError};
use crate::processor::PrepareError;
use crate::resample::{ResampleError, resample_planar};
use crate::units::BLOCK_FRAMES;

/// Why offline processing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineError {
    /// The input could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The input is not a WAV file.
    #[error("{path} is not a WAV file ({detail})")]
    NotWav {
        /// The file.
        path: PathBuf,
        /// What was found.
        detail: String,
    },
    /// The WAV file ends before its header says it should, or is corrupt.
    #[error("{path} is truncated or corrupt: {detail}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        detail: String,
    },
    /// A WAV layout we do not process.
    #[error("{path}: unsupported format: {detail}")]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is unsupported.
        detail: String,
    },
    /// The output path's extension is neither .wav nor .opus/.ogg.
    #[error("output {0} must end in .wav, .opus or .ogg")]
    OutputKind(PathBuf),
    /// Writing the output failed.
    #[error("cannot write {path}: {detail}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        detail: String,
    },
    /// `--near-component` given where it cannot be used.
    #[error("{0}")]
    Components(String),
    /// Building the chain failed.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// Opus failed.
    #[error(transparent)]
    Opus(#[from] OpusError),
    /// Resampling failed.
    #[error(transparent)]
    Resample(#[from] ResampleError),
    /// The effect settings were refused.
    #[error(transparent)]
    Effect(#[from] EffectError),
}

/// The sample format of a WAV output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 32-bit IEEE float (the default; keeps everything the chain produces).
    #[default]
    F32,
    /// 16-bit PCM, clipped to ±1 and rounded (what most tools read).
    S16,
}

/// What to do.
#[derive(Debug, Clone)]
pub struct OfflineJob {
    /// Input WAV.
    pub input: PathBuf,
    /// Output .wav / .opus / .ogg.
    pub output: PathBuf,
    /// Processing mode.
    pub mode: Mode,
    /// Far-end reference for the AEC.
    pub aec_ref: Option<PathBuf>,
    /// Where to write the debug tap WAVs (raw mic, AEC reference, processed), if anywhere.
    pub debug_tap: Option<PathBuf>,
    /// Voice effects in chain order (`--effect`); empty = none.
    pub effects: EffectSettings,
    /// Sample format of a WAV output (ignored for Opus).
    pub wav_format: WavFormat,
    /// Classic NS level (the mode's default when `None`).
    pub ns_level: Option<crate::ns::NsLevel>,
    /// Stages to switch off (on top of the mode's defaults), e.g. to measure one stage alone.
    pub off: Toggles,
    /// For studies of the echo canceller, when the input was made by adding an echo to a near
    /// end: that near end's part of the input and where to write the canceller's own output
    /// beside the near end's part of it (`--near-component`, `--aec-components`).
    pub aec_components: Option<AecComponents>,
}

/// [`OfflineJob::aec_components`]: with the microphone's near-end part known, the AEC stage's
/// output splits exactly into the near end's part (the suppressor's gains on the near end's
/// frames) and what is left of the echo (the rest).
#[derive(Debug, Clone)]
pub struct AecComponents {
    /// The input's near-end part: a WAV of the input's length (48 kHz after resampling).
    pub near: PathBuf,
    /// Written: a 32-bit float WAV at 48 kHz, the input's length — channel 0 the AEC stage's
    /// output (the first channel), channel 1 the near end's part of it; where the split follows
    /// the chain past the AEC ([`Chain::enable_components`]: the AI-NS and the classic NS on,
    /// no effects) also channel 2 the chain's output (the job's output, first channel) and
    /// channel 3 the near end's part of it (4 channels, else 2).
    pub out: PathBuf,
}

/// A summary of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OfflineReport {
    /// Input frames (at 48 kHz).
    pub frames: u64,
    /// Channels written.
    pub channels: u16,
    /// Opus packets written (0 for WAV).
    pub packets: u64,
}

/// Decoded audio: planar 48 kHz.
#[derive(Debug, Clone)]
pub struct Audio {
    /// One vector per channel.
    pub channels: Vec<Vec<f32>>,
}

impl Audio {
    /// Frames per channel.
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }
}

/// Reads a WAV file to planar 48 kHz audio.
pub fn read_wav(path: &Path) -> Result<Audio, OfflineError> {
    let mut file = File::open(path).map_err(|source| OfflineError::Open {
        path: path.to_owned(),
        source,
    })?;
    let mut magic = [0u8; 12];
    let n = file.read(&mut magic).map_err(|source| OfflineError::Open {
        path: path.to_owned(),
        source,
    })?;
    let kind = match &magic[..n.min(4)] {
        b"RIFF" if n >= 12 && &magic[8..12] == b"WAVE" => None,
        b"OggS" => Some("an Ogg file; only WAV input is supported"),
        b"fLaC" => Some("a FLAC file; only WAV input is supported"),
        b"ID3\x03" | b"ID3\x04" => Some("an MP3 file; only WAV input is supported"),
        b"RIFF" => Some("a RIFF file that is not WAVE"),
        _ => Some("unknown content"),
    };
    if let Some(detail) = kind {
        let path = path.to_owned();
        return Err(if detail.contains("only WAV") {
            OfflineError::Unsupported {
                path,
                detail: detail.into(),
            }
        } else {
            OfflineError::NotWav {
                path,
                detail: detail.into(),
            }
        });
    }
    let reader = hound::WavReader::open(path).map_err(|e| match e {
        hound::Error::IoError(source) if source.kind() == std::io::ErrorKind::UnexpectedEof => {
            OfflineError::Truncated {
                path: path.to_owned(),
                detail: source.to_string(),
            }
        }
        hound::Error::Unsupported => OfflineError::Unsupported {
            path: path.to_owned(),
            detail: "WAV encoding not supported (PCM or IEEE float only)".into(),
        },
        other => OfflineError::NotWav {
            path: path.to_owned(),
            detail: other.to_string(),
        },
    })?;
    let spec = reader.spec();
    let ch = usize::from(spec.channels);
    if !(1..=2).contains(&ch) {
        return Err(OfflineError::Unsupported {
            path: path.to_owned(),
            detail: format!("{ch} channels (mono or stereo only)"),
        });
    }
    if !(8_000..=192_000).contains(&spec.sample_rate) {
        return Err(OfflineError::Unsupported {
            path: path.to_owned(),
            detail: format!("sample rate {} Hz", spec.sample_rate),
        });
    }
    let expected = reader.len() as usize;
    let truncated = |e: hound::Error| OfflineError::Truncated {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let mut inter: Vec<f32> = Vec::with_capacity(expected);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            for s in reader.into_samples::<f32>() {
                inter.push(s.map_err(truncated)?);
            }
        }
        (hound::SampleFormat::Int, bits @ 8..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            for s in reader.into_samples::<i32>() {
                inter.push(s.map_err(truncated)? as f32 * scale);
            }
        }
        (fmt, bits) => {
            return Err(OfflineError::Unsupported {
                path: path.to_owned(),
                detail: format!("{bits}-bit {fmt:?} samples"),
            });
        }
    }
    if inter.len() < expected {
        return Err(OfflineError::Truncated {
            path: path.to_owned(),
            detail: format!("{} of {expected} samples present", inter.len()),
        });
    }
    let mut planar = vec![Vec::with_capacity(inter.len() / ch); ch];
    for frame in inter.chunks_exact(ch) {
        for (c, s) in frame.iter().enumerate() {
            planar[c].push(*s);
        }
    }
    let channels = resample_planar(&planar, spec.sample_rate, 48_000)?;
    Ok(Audio { channels })
}

enum Sink {
    Wav(hound::WavWriter<BufWriter<File>>),
    Opus {
        encoder: Box<OpusEncoder>,
        writer: OggOpusWriter<BufWriter<File>>,
        encoded: u64,
        pre_skip: u64,
        pending: Option<Vec<u8>>,
        packets: u64,
    },
}

/// Runs `job`; `progress` is called with (frames done, frames total) every second of audio.
pub fn process(
    job: &OfflineJob,
    mut progress: impl FnMut(u64, u64),
) -> Result<OfflineReport, OfflineError> {
    let input = read_wav(&job.input)?;
    let far = job.aec_ref.as_deref().map(read_wav).transpose()?;
    let mut config = ChainConfig::for_mode(job.mode);
    if input.channels.len() == 1 && job.mode == Mode::Soundcard {
        config.channel_map = crate::chain::ChannelMap::StereoPair;
    }
    if let Some(level) = job.ns_level {
        config.ns_level = level;
    }
    config.toggles.aec &= !job.off.aec;
    config.toggles.ns &= !job.off.ns;
    config.toggles.ai_ns &= !job.off.ai_ns;
    config.toggles.agc &= !job.off.agc;
    if far.is_none() {
        // Nothing to cancel without a reference; the stage would only add its delay.
        config.toggles.aec = false;
    }
    let mut chain = Chain::new(config)?;
    if !job.effects.effects.is_empty() {
        // Offline there is no previous rack to crossfade from: the rack is in force from the
        // first sample.
        chain.set_effects_now(Box::new(EffectRack::new(&job.effects)?));
    }
    let parts_err = |e: &dyn std::fmt::Display| OfflineError::Write {
        path: job
            .aec_components
            .as_ref()
            .map(|c| c.out.clone())
            .unwrap_or_default(),
        detail: e.to_string(),
    };
    let mut components = match &job.aec_components {
        Some(c) => {
            if !config.toggles.aec {
                return Err(OfflineError::Components(
                    "--near-component needs the echo canceller: give --aec-ref and leave aec on"
                        .into(),
                ));
            }
            let near = read_wav(&c.near)?;
            if near.frames() != input.frames() {
                return Err(OfflineError::Components(format!(
                    "{}: {} frames, the input has {} (the near end's part must be as long)",
                    c.near.display(),
                    near.frames(),
                    input.frames()
                )));
            }
            let through = chain.enable_components();
            let spec = hound::WavSpec {
                channels: if through { 4 } else { 2 },
                sample_rate: 48_000,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let w = hound::WavWriter::create(&c.out, spec).map_err(|e| parts_err(&e))?;
            let first = near.channels.into_iter().next().unwrap_or_default();
            Some((first, w))
        }
        None => None,
    };
    let out_channels: u16 = match job.mode {
        Mode::Soundcard => 2,
        // Stereo effects make a stereo WAV; the voice Opus profile stays mono (the encoder
        // downmixes), as the live engine publishes until the host picks a stereo profile.
        Mode::Voice
            if job.effects.is_stereo()
                && job
                    .output
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("wav")) =>
        {
            2
        }
        Mode::Voice => 1,
    };
    let write_err = |e: &dyn std::fmt::Display| OfflineError::Write {
        path: job.output.clone(),
        detail: e.to_string(),
    };
    let ext = job
        .output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mut sink = match ext.as_deref() {
        Some("wav") => {
            let (bits_per_sample, sample_format) = match job.wav_format {
                WavFormat::F32 => (32, hound::SampleFormat::Float),
                WavFormat::S16 => (16, hound::SampleFormat::Int),
            };
            let spec = hound::WavSpec {
                channels: out_channels,
                sample_rate: 48_000,
                bits_per_sample,
                sample_format,
            };
            Sink::Wav(hound::WavWriter::create(&job.output, spec).map_err(|e| write_err(&e))?)
        }
        Some("opus") | Some("ogg") => {
            let mut encoder = Box::new(OpusEncoder::new(job.mode.opus_profile(), 0, 0)?);
            let pre_skip = encoder.lookahead() as u16;
            let file = File::create(&job.output).map_err(|e| write_err(&e))?;
            let writer =
                OggOpusWriter::new(BufWriter::new(file), out_channels as u8, pre_skip, 48_000)
                    .map_err(|e| write_err(&e))?;
            Sink::Opus {
                encoder,
                writer,
                encoded: 0,
                pre_skip: u64::from(pre_skip),
                pending: None,
                packets: 0,
            }
        }
        _ => return Err(OfflineError::OutputKind(job.output.clone())),
    };
    let mut tap = match &job.debug_tap {
        Some(dir) => {
            Some(DebugTap::create(dir, input.channels.len() as u16).map_err(|e| write_err(&e))?)
        }
        None => None,
    };
    let total = input.frames() as u64;
    let blocks = input.frames().div_ceil(BLOCK_FRAMES);
    let in_ch = input.channels.len();
    let mut block = Block::silent(in_ch);
    let mut far_block = Block::silent(1);
    let mut inter = vec![0.0f32; BLOCK_FRAMES * 2];
    // Opus needs pre-skip more samples than the input to flush its look-ahead.
    let flush_blocks = if matches!(sink, Sink::Opus { .. }) {
        2 + 1024 / BLOCK_FRAMES
    } else {
        0
    };
    for b in 0..blocks + flush_blocks {
        let start = b * BLOCK_FRAMES;
        block.set_channels(in_ch);
        for c in 0..in_ch {
            let dst = block.channel_mut(c);
            for (i, d) in dst.iter_mut().enumerate() {
                *d = input.channels[c].get(start + i).copied().unwrap_or(0.0);
            }
        }
        block.timestamp = start as u64;
        if let Some(far) = &far {
            far_block.set_channels(far.channels.len());
            for c in 0..far.channels.len() {
                for (i, d) in far_block.channel_mut(c).iter_mut().enumerate() {
                    *d = far.channels[c].get(start + i).copied().unwrap_or(0.0);
                }
            }
        }
        if let Some(tap) = tap.as_mut() {
            tap.raw(&block).map_err(|e| write_err(&e))?;
            tap.reference(&far_block).map_err(|e| write_err(&e))?;
        }
        if let Some((near, _)) = &components {
            let from = start.min(near.len());
            let to = (start + BLOCK_FRAMES).min(near.len());
            chain.set_near_component(&near[from..to]);
        }
        chain.process(&mut block, &far_block, None);
        if let (Some((_, w)), Some(parts), true) = (&mut components, chain.components(), b < blocks)
        {
            let valid = (input.frames() - start).min(BLOCK_FRAMES);
            for i in 0..valid {
                let voice = parts.output.map(|(v, n)| [v[i], n[i]]);
                for v in [parts.aec[i], parts.aec_near[i]]
                    .into_iter()
                    .chain(voice.into_iter().flatten())
                {
                    w.write_sample(v).map_err(|e| parts_err(&e))?;
                }
            }
        }
        if block.channels() != usize::from(out_channels) {
            block.set_channels(usize::from(out_channels));
        }
        if let Some(tap) = tap.as_mut() {
            tap.processed(&block).map_err(|e| write_err(&e))?;
        }
        match &mut sink {
            Sink::Wav(w) => {
                if b < blocks {
                    let valid = (input.frames() - start).min(BLOCK_FRAMES);
                    block.write_interleaved(&mut inter);
                    for s in &inter[..valid * block.channels()] {
                        match job.wav_format {
                            WavFormat::F32 => w.write_sample(*s),
                            WavFormat::S16 => {
                                w.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
                            }
                        }
                        .map_err(|e| write_err(&e))?;
                    }
                }
            }
            Sink::Opus {
                encoder,
                writer,
                encoded,
                pre_skip,
                pending,
                packets,
            } => {
                let frame_frames = encoder.profile().frame.frames() as u64;
                if let Some(p) = encoder.push_block(&block)? {
                    // Write the previous packet now that we know this one exists (so the true
                    // last packet can carry the end-of-stream flag).
                    if let Some(prev) = pending.take() {
                        writer
                            .write_packet(&prev, *encoded, false)
                            .map_err(|e| write_err(&e))?;
                        *packets += 1;
                    }
                    *encoded += frame_frames;
                    *pending = Some(p.payload().to_vec());
                    if *encoded >= total + *pre_skip {
                        break;
                    }
                }
            }
        }
        if b % 100 == 99 {
            progress((start + BLOCK_FRAMES).min(input.frames()) as u64, total);
        }
    }
    progress(total, total);
    if let Some((_, w)) = components {
        w.finalize().map_err(|e| parts_err(&e))?;
    }
    let packets = match sink {
        Sink::Wav(w) => {
            w.finalize().map_err(|e| write_err(&e))?;
            0
        }
        Sink::Opus {
            writer,
            encoded,
            pre_skip,
            pending,
            packets,
            ..
        } => {
            let mut writer = writer;
            let mut packets = packets;
            if let Some(last) = pending {
                writer
                    .write_packet(&last, (total + pre_skip).min(encoded), true)
                    .map_err(|e| write_err(&e))?;
                packets += 1;
            }
            writer.finish().map_err(|e| write_err(&e))?;
            packets
        }
    };
    if let Some(tap) = tap {
        tap.finish().map_err(|e| write_err(&e))?;
    }
    Ok(OfflineReport {
        frames: total,
        channels: out_channels,
        packets,
    })
}
