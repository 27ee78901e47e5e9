//! The debug tap (off by default): raw mic, AEC reference and processed audio to three WAV files,
//! block-aligned, to reproduce AEC and NS problems offline (as Mumble's echo dump does).
//!
//! The live engine never writes files on the DSP thread: it pushes blocks into a ring that a
//! writer thread drains ([`TapFeed`]); offline processing writes directly ([`DebugTap`]).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use crate::block::Block;
use crate::units::BLOCK_FRAMES;

type Wav = hound::WavWriter<BufWriter<File>>;

/// Three WAV writers: `raw.wav`, `reference.wav`, `processed.wav`.
pub struct DebugTap {
    raw: Wav,
    reference: Wav,
    processed: Wav,
    scratch: Vec<f32>,
}

impl std::fmt::Debug for DebugTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugTap").finish()
    }
}

fn wav(dir: &Path, name: &str, channels: u16) -> Result<Wav, hound::Error> {
    hound::WavWriter::create(
        dir.join(name),
        hound::WavSpec {
            channels,
            sample_rate: 48_000,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        },
    )
}

fn write_block(
    w: &mut Wav,
    b: &Block,
    channels: u16,
    scratch: &mut [f32],
) -> Result<(), hound::Error> {
    let ch = usize::from(channels);
    for i in 0..BLOCK_FRAMES {
        for c in 0..ch {
            let src = if c < b.channels() { c } else { 0 };
            scratch[i * ch + c] = b.channel(src)[i];
        }
    }
    for s in &scratch[..BLOCK_FRAMES * ch] {
        w.write_sample(*s)?;
    }
    Ok(())
}

impl DebugTap {
    /// Creates the three files in `dir` (created if missing); mic and processed get
    /// `channels` channels, the reference is mono.
    pub fn create(dir: &Path, channels: u16) -> Result<DebugTap, hound::Error> {
        std::fs::create_dir_all(dir)?;
        let channels = channels.clamp(1, 2);
        Ok(DebugTap {
            raw: wav(dir, "raw.wav", channels)?,
            reference: wav(dir, "reference.wav", 1)?,
            processed: wav(dir, "processed.wav", 2)?,
            scratch: vec![0.0; BLOCK_FRAMES * 2],
        })
    }

    /// Appends a raw mic block.
    pub fn raw(&mut self, b: &Block) -> Result<(), hound::Error> {
        let ch = self.raw.spec().channels;
        write_block(&mut self.raw, b, ch, &mut self.scratch)
    }

    /// Appends an AEC reference block.
    pub fn reference(&mut self, b: &Block) -> Result<(), hound::Error> {
        write_block(&mut self.reference, b, 1, &mut self.scratch)
    }

    /// Appends a processed block.
    pub fn processed(&mut self, b: &Block) -> Result<(), hound::Error> {
        write_block(&mut self.processed, b, 2, &mut self.scratch)
    }

    /// Finalises the three files.
    pub fn finish(self) -> Result<(), hound::Error> {
        self.raw.finalize()?;
        self.reference.finalize()?;
        self.processed.finalize()
    }
}

/// What the DSP thread pushes into the tap ring: one block of each stream.
#[derive(Clone, Debug, Default)]
pub struct TapFrame {
    /// Raw mic.
    pub raw: Block,
    /// AEC reference.
    pub reference: Block,
    /// Processed publish bus.
    pub processed: Block,
}

/// The live engine's tap: a ring to a writer thread. Pushing never blocks or allocates; a full
/// ring drops the frame (counted).
#[derive(Debug)]
pub struct TapFeed {
    producer: rtrb::Producer<TapFrame>,
    dropped: u64,
}

impl TapFeed {
    /// Starts the writer thread for `dir`; returns the feed and the thread's handle.
    pub fn start(
        dir: &Path,
        channels: u16,
    ) -> Result<(TapFeed, std::thread::JoinHandle<Result<(), hound::Error>>), hound::Error> {
        let mut tap = DebugTap::create(dir, channels)?;
        let (producer, mut consumer) = rtrb::RingBuffer::<TapFrame>::new(256);
        let handle = std::thread::Builder::new()
            .name("onmic-debug-tap".into())
            .spawn(move || {
                loop {
                    match consumer.pop() {
                        Ok(f) => {
                            tap.raw(&f.raw)?;
                            tap.reference(&f.reference)?;
                            tap.processed(&f.processed)?;
                        }
                        Err(_) if consumer.is_abandoned() => break,
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                    }
                }
                tap.finish()
            })
            .map_err(hound::Error::IoError)?;
        Ok((
            TapFeed {
                producer,
                dropped: 0,
            },
            handle,
        ))
    }

    /// A tap read by the caller instead of a WAV writer: the frames go into a preallocated ring
    /// of `capacity` frames that another thread drains (the Studio's mic test records the
    /// published signal this way). Pushing is the same RT-safe path as [`TapFeed::start`]'s.
    pub fn to_ring(capacity: usize) -> (TapFeed, rtrb::Consumer<TapFrame>) {
        let (producer, consumer) = rtrb::RingBuffer::<TapFrame>::new(capacity.max(1));
        (
            TapFeed {
                producer,
                dropped: 0,
            },
            consumer,
        )
    }

    /// Pushes one frame (RT-safe).
    pub fn push(&mut self, raw: &Block, reference: &Block, processed: &Block) {
        match self.producer.write_chunk_uninit(1) {
            Ok(chunk) => {
                let _ = chunk.fill_from_iter(std::iter::once(TapFrame {
                    raw: raw.clone(),
                    reference: reference.clone(),
                    processed: processed.clone(),
                }));
            }
            Err(_) => self.dropped += 1,
        }
    }

    /// Frames dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}
