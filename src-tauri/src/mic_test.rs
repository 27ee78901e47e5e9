//! "Test my mic": records 5 s of the chosen input through the chosen chain (the console's mode,
//! processing toggles, AI-NS strength and input gain, in an engine of its own) and plays the
//! recording back on the chosen output device, then says whether it clipped or was too quiet.
//!
//! The engine's DSP thread hands its blocks over through the debug tap's preallocated ring
//! ([`TapFeed::to_ring`]: no allocation, lock or syscall there); this module's worker thread
//! drains the ring, keeps the published signal and measures it. Playback goes through an output
//! stream fed from a ring filled ahead. Progress (phase, elapsed time, the level now) streams to
//! the UI about 10 times a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use onmic_audio::debug_tap::TapFeed;
use onmic_audio::engine::{self, Control, EngineConfig};
use onmic_audio::streams::{EngineDevices, StreamRequest, open_output};
use onmic_audio::{BLOCK_FRAMES, Block, Dbfs};
use serde::{Deserialize, Serialize};
use specta::Type;

use crate::audio_settings::AudioSettings;
use crate::error::{AppError, AppErrorKind};

/// Length of the recording.
pub const RECORD_SECONDS: u32 = 5;
/// A peak at or above this (−0.1 dBFS) clipped.
pub const CLIP_PEAK_DBFS: f32 = -0.1;
/// The speaking level (RMS of the loudest half of the 10 ms blocks) below which the recording is
/// too quiet.
pub const QUIET_RMS_DBFS: f32 = -40.0;
/// Below this speaking level nothing usable came in at all (a wrong or muted input).
pub const SILENT_RMS_DBFS: f32 = -70.0;
/// The speaking level above which a voice is hot enough that the limiter will work hard.
pub const HOT_RMS_DBFS: f32 = -9.0;

/// Blocks in the recording.
const RECORD_BLOCKS: usize = RECORD_SECONDS as usize * 100;
/// How often the UI hears of the progress.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);
/// How long the test's engine waits for late capture before it processes silence.
const CAPTURE_TIMEOUT_MS: u64 = 500;
/// Blocks in a row that must come in before the recording starts.
const WARMUP_BLOCKS: usize = 20;
/// The longest warm-up.
const WARMUP_LIMIT: Duration = Duration::from_secs(2);
/// The playback stream's period, frames (200 ms).
const PLAYBACK_BUFFER_FRAMES: u32 = 9600;
/// Frames of the tap ring: 0.64 s of blocks, drained every 20 ms.
const TAP_RING_FRAMES: usize = 64;

/// Where a mic test is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum MicTestPhase {
    /// Opening the devices and the chain.
    Starting,
    /// Recording through the chain.
    Recording,
    /// Playing the recording back.
    Playing,
}

/// One progress report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct MicTestProgress {
    /// The phase.
    pub phase: MicTestPhase,
    /// Time into the phase, ms.
    pub elapsed_ms: u32,
    /// Length of the phase, ms.
    pub total_ms: u32,
    /// The published level over the last 100 ms, dBFS (RMS).
    pub level_dbfs: f32,
}

/// The verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub enum MicVerdict {
    /// Level in range, no clipping.
    Good,
    /// Loud enough, but so loud that the limiter works hard.
    Hot,
    /// The input or the gain clipped.
    Clipped,
    /// Too quiet (or nothing came in).
    TooQuiet,
}

/// What the test found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct MicTestReport {
    /// The verdict.
    pub verdict: MicVerdict,
    /// What to do, for the host.
    pub advice: String,
    /// Largest peak of the input as the device delivered it, dBFS.
    pub input_peak_dbfs: f32,
    /// Largest peak after the input gain (before the chain), dBFS.
    pub gained_peak_dbfs: f32,
    /// Largest peak of what would be published, dBFS.
    pub published_peak_dbfs: f32,
    /// Speaking level of what would be published: RMS of the loudest half of its 10 ms blocks.
    pub published_rms_dbfs: f32,
    /// Seconds recorded.
    pub seconds: f32,
    /// The output device it played on (`None`: the system default).
    pub output_device: Option<String>,
}

/// Levels of a recording, from which [`judge`] gives the verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels {
    /// Raw input peak, linear.
    pub input_peak: f32,
    /// Input peak after the gain, linear.
    pub gained_peak: f32,
    /// Published peak, linear.
    pub published_peak: f32,
    /// Published speaking level (RMS of the loudest half of the blocks), linear.
    pub published_rms: f32,
}

fn db(a: f32) -> f32 {
    Dbfs::from_amplitude(a).0
}

/// The verdict and the advice for `levels` recorded with `gain_db` of input gain.
pub fn judge(levels: Levels, gain_db: f32) -> (MicVerdict, String) {
    let input = db(levels.input_peak);
    let gained = db(levels.gained_peak);
    let speaking = db(levels.published_rms);
    if input >= CLIP_PEAK_DBFS {
        return (
            MicVerdict::Clipped,
            format!(
                "Your input clipped (peak {input:.1} dBFS before the Studio touched it): turn the \
                 gain down on your sound card or microphone preamp until loud passages stay under \
                 −6 dBFS, then test again."
            ),
        );
    }
    if gained >= CLIP_PEAK_DBFS {
        return (
            MicVerdict::Clipped,
            format!(
                "The Studio's input gain ({gain_db:+.1} dB) drives your voice into clipping \
                 (peak {gained:.1} dBFS): lower the Gain fader by {:.0} dB or more and test again.",
                (gained + 6.0).max(3.0).ceil()
            ),
        );
    }
    if speaking < SILENT_RMS_DBFS {
        return (
            MicVerdict::TooQuiet,
            format!(
                "Too quiet: almost nothing came in ({speaking:.0} dBFS). Check that the input \
                 above is the one you speak into, that its mute switch is off and that the \
                 system's input volume is up, then test again."
            ),
        );
    }
    if speaking < QUIET_RMS_DBFS {
        let raise = (QUIET_RMS_DBFS + 16.0 - speaking).ceil();
        return (
            MicVerdict::TooQuiet,
            format!(
                "Too quiet: your voice reached {speaking:.0} dBFS; listeners will strain to hear \
                 you. Speak closer to the microphone, or raise the gain about {raise:.0} dB \
                 (your sound card's gain first, the Studio's Gain fader up to +12 dB), or turn \
                 on Auto gain."
            ),
        );
    }
    if speaking > HOT_RMS_DBFS {
        return (
            MicVerdict::Hot,
            format!(
                "Loud: your voice reached {speaking:.0} dBFS and the limiter is holding it back. \
                 It did not clip, but lower the gain a few dB for a cleaner sound."
            ),
        );
    }
    (
        MicVerdict::Good,
        format!(
            "Sounds good: your voice reached {speaking:.0} dBFS with peaks at {:.1} dBFS and no \
             clipping.",
            db(levels.published_peak)
        ),
    )
}

/// The mic test: one at a time, cancellable.
#[derive(Clone, Debug, Default)]
pub struct MicTestService {
    running: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
}

/// Clears the running flag when the test ends, however it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl MicTestService {
    /// Records `input` (the default input when `None`) through the chain `audio` asks for,
    /// plays it back on `audio.output_device`, and reports. Blocks for about 10 s: call it off
    /// the UI's thread.
    pub fn run(
        &self,
        input: Option<String>,
        audio: &AudioSettings,
        on_progress: impl Fn(MicTestProgress),
    ) -> Result<MicTestReport, AppError> {
        if self.running.swap(true, Ordering::SeqCst) {
            return Err(AppError::new(
                AppErrorKind::InvalidInput,
                "A mic test is already running: wait for it to finish.",
            ));
        }
        let _running = Running(self.running.clone());
        self.cancel.store(false, Ordering::SeqCst);
        on_progress(MicTestProgress {
            phase: MicTestPhase::Starting,
            elapsed_ms: 0,
            total_ms: RECORD_SECONDS * 1000,
            level_dbfs: Dbfs::FLOOR.0,
        });
        let (published, levels) = self.record(input, audio, &on_progress)?;
        let (verdict, advice) = judge(levels, audio.input_gain_db);
        let report = MicTestReport {
            verdict,
            advice,
            input_peak_dbfs: db(levels.input_peak),
            gained_peak_dbfs: db(levels.gained_peak),
            published_peak_dbfs: db(levels.published_peak),
            published_rms_dbfs: db(levels.published_rms),
            seconds: (published.len() / 2) as f32 / 48_000.0,
            output_device: audio.output_device.clone(),
        };
        self.play(audio.output_device.clone(), published, &on_progress)?;
        Ok(report)
    }

    /// Stops a running test (its `run` returns an error saying so).
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::SeqCst);
    }

    fn cancelled(&self) -> Result<(), AppError> {
        if self.cancel.load(Ordering::SeqCst) {
            Err(AppError::new(
                AppErrorKind::InvalidInput,
                "Mic test stopped.",
            ))
        } else {
            Ok(())
        }
    }

    /// Runs an engine on the input until [`RECORD_BLOCKS`] published blocks are in; returns them
    /// interleaved stereo, and their levels.
    fn record(
        &self,
        input: Option<String>,
        audio: &AudioSettings,
        on_progress: &impl Fn(MicTestProgress),
    ) -> Result<(Vec<f32>, Levels), AppError> {
        let config = EngineConfig {
            chain: audio.chain_config(),
            // Nothing else runs in this engine (no remotes, no music) to keep going on silence:
            // wait for late capture on a busy machine rather than punch holes in the recording.
            capture_timeout_ms: CAPTURE_TIMEOUT_MS,
            // As live: the test is meant to sound like going on air.
            realtime: true,
            ..EngineConfig::default()
        };
        let (mut handle, io) = engine::start(config).map_err(|e| {
            AppError::new(
                AppErrorKind::Internal,
                format!("The audio engine could not start: {e}"),
            )
        })?;
        // The engine plays silence (no remotes, ear monitor off) on the chosen output while
        // recording: opening it now finds a missing output before the host talks for 5 s.
        let devices = EngineDevices::open_pick(
            io,
            config.capture_channels,
            StreamRequest {
                id: input,
                ..StreamRequest::default()
            },
            audio.input_pick(),
            StreamRequest {
                id: audio.output_device.clone(),
                ..StreamRequest::default()
            },
        );
        let devices = match devices {
            Ok(d) => d,
            Err(e) => {
                handle.stop();
                return Err(AppError::from(e));
            }
        };
        let (feed, mut frames) = TapFeed::to_ring(TAP_RING_FRAMES);
        let started = handle
            .send(Control::SetInputGain(audio.input_gain()))
            .and_then(|()| handle.send(Control::StartDebugTap(Box::new(feed))));
        if let Err(e) = started {
            handle.stop();
            return Err(AppError::new(
                AppErrorKind::Internal,
                format!("The audio engine did not take the mic test: {e}"),
            ));
        }
        let gain = audio.input_gain();
        let mut published = Vec::with_capacity(RECORD_BLOCKS * BLOCK_FRAMES * 2);
        let mut block_rms = Vec::with_capacity(RECORD_BLOCKS);
        let mut levels = Levels {
            input_peak: 0.0,
            gained_peak: 0.0,
            published_peak: 0.0,
            published_rms: 0.0,
        };
        let mut recent = (0.0f64, 0usize);
        let begun = Instant::now();
        let mut recording_since = begun;
        let mut next_progress = begun;
        let mut blocks = 0usize;
        // Warm-up: a freshly opened input often delivers in bursts for its first second, and
        // the engine fills a stall with silence; recording starts once 200 ms in a row came in
        // (a dead input is all zeros: then after 2 s anyway, and the verdict says so).
        let mut steady = 0usize;
        let mut warming = true;
        let result = loop {
            if let Err(e) = self.cancelled() {
                break Err(e);
            }
            while blocks < RECORD_BLOCKS {
                let Ok(frame) = frames.pop() else { break };
                let raw_peak = peak(&frame.raw);
                if warming {
                    steady = if raw_peak > 0.0 { steady + 1 } else { 0 };
                    warming = steady < WARMUP_BLOCKS && begun.elapsed() < WARMUP_LIMIT;
                    if warming {
                        continue;
                    }
                    recording_since = Instant::now();
                }
                levels.input_peak = levels.input_peak.max(raw_peak);
                levels.gained_peak = levels.gained_peak.max(raw_peak * gain);
                let p = &frame.processed;
                levels.published_peak = levels.published_peak.max(peak(p));
                let mut sum = 0.0f64;
                for i in 0..BLOCK_FRAMES {
                    let l = p.channel(0)[i];
                    let r = p.channel(if p.channels() == 2 { 1 } else { 0 })[i];
                    published.push(l);
                    published.push(r);
                    sum += f64::from(l * l + r * r) / 2.0;
                }
                block_rms.push((sum / BLOCK_FRAMES as f64).sqrt() as f32);
                recent.0 += sum;
                recent.1 += BLOCK_FRAMES;
                blocks += 1;
            }
            let now = Instant::now();
            if now >= next_progress || blocks == RECORD_BLOCKS {
                next_progress = now + PROGRESS_INTERVAL;
                let rms = if recent.1 > 0 {
                    (recent.0 / recent.1 as f64).sqrt() as f32
                } else {
                    0.0
                };
                recent = (0.0, 0);
                on_progress(MicTestProgress {
                    phase: if warming {
                        MicTestPhase::Starting
                    } else {
                        MicTestPhase::Recording
                    },
                    elapsed_ms: u32::try_from(blocks * 10).unwrap_or(u32::MAX),
                    total_ms: RECORD_SECONDS * 1000,
                    level_dbfs: db(rms),
                });
            }
            if blocks == RECORD_BLOCKS {
                break Ok(());
            }
            // The engine processes silence after 50 ms without capture, so blocks keep coming
            // even from a dead input; this bound only catches an engine that stopped.
            if !warming
                && now.duration_since(recording_since)
                    > Duration::from_secs(u64::from(RECORD_SECONDS) + 5)
            {
                break Err(AppError::new(
                    AppErrorKind::Internal,
                    "The audio engine stopped delivering audio during the mic test. Try again; \
                     if it happens again, restart the Studio.",
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = handle.send(Control::StopDebugTap);
        handle.stop();
        drop(devices);
        result?;
        levels.published_rms = speaking_level(&mut block_rms);
        Ok((published, levels))
    }

    /// Plays `samples` (interleaved stereo, 48 kHz) on `output` and waits until they are heard.
    fn play(
        &self,
        output: Option<String>,
        samples: Vec<f32>,
        on_progress: &impl Fn(MicTestProgress),
    ) -> Result<(), AppError> {
        let frames = samples.len() / 2;
        // Half a second of silence after the recording lets the device's buffer drain.
        let tail = 24_000 * 2;
        let (mut producer, consumer) = rtrb::RingBuffer::<f32>::new(samples.len() + tail);
        for s in samples.into_iter().chain(std::iter::repeat_n(0.0, tail)) {
            // The ring was sized for exactly this.
            let _ = producer.push(s);
        }
        let stream = open_output(
            &StreamRequest {
                id: output,
                channels: Some(2),
                // Playback of a recording needs no low latency: a deep buffer rides out a busy
                // machine without gaps.
                buffer_frames: Some(PLAYBACK_BUFFER_FRAMES),
                ..StreamRequest::default()
            },
            consumer,
            None,
        )?;
        let total = Duration::from_secs_f32(frames as f32 / 48_000.0);
        let total_ms = u32::try_from(total.as_millis()).unwrap_or(u32::MAX);
        let begun = Instant::now();
        loop {
            if let Err(e) = self.cancelled() {
                drop(stream);
                return Err(e);
            }
            let elapsed = begun.elapsed();
            let done = elapsed >= total + stream.status.latency();
            on_progress(MicTestProgress {
                phase: MicTestPhase::Playing,
                elapsed_ms: u32::try_from(elapsed.min(total).as_millis()).unwrap_or(total_ms),
                total_ms,
                level_dbfs: Dbfs::FLOOR.0,
            });
            if done || stream.status.failed() || stream.status.device_lost() {
                break;
            }
            std::thread::sleep(PROGRESS_INTERVAL);
        }
        let lost = stream.status.failed() || stream.status.device_lost();
        drop(stream);
        if lost {
            return Err(AppError::new(
                AppErrorKind::DeviceNotFound,
                "The output device stopped while playing the recording back: check it is \
                 plugged in, pick another output under Monitor, and test again.",
            ));
        }
        Ok(())
    }
}

/// Records 5 s of the chosen input through the console's chain, plays it back on the chosen
/// output and reports clipping or a too-quiet level; progress streams to `on_progress`. Refused
/// while on air (the test would go out to the room).
#[tauri::command]
#[specta::specta]
pub async fn test_mic(
    studio: tauri::State<'_, crate::Studio>,
    on_progress: tauri::ipc::Channel<MicTestProgress>,
) -> Result<MicTestReport, AppError> {
    if studio
        .session
        .status()
        .await
        .is_some_and(|s| s.state != "closed")
    {
        return Err(AppError::new(
            AppErrorKind::InvalidInput,
            "You are on air: the test would go out to your listeners. Leave the room, then test \
             your mic.",
        ));
    }
    let settings = studio.settings.get();
    let service = studio.mic_test.clone();
    tauri::async_runtime::spawn_blocking(move || {
        service.run(settings.input_device, &settings.audio, |p| {
            // The window may be closing; the test finishes anyway.
            let _ = on_progress.send(p);
        })
    })
    .await
    .map_err(|e| AppError::new(AppErrorKind::Internal, format!("The mic test failed: {e}")))?
}

/// Stops a running mic test.
#[tauri::command]
#[specta::specta]
pub fn cancel_mic_test(studio: tauri::State<'_, crate::Studio>) {
    studio.mic_test.cancel();
}

fn peak(b: &Block) -> f32 {
    (0..b.channels())
        .flat_map(|c| b.channel(c).iter())
        .fold(0.0f32, |m, s| m.max(s.abs()))
}

/// The speaking level: the RMS of the loudest half of the blocks (pauses between words do not
/// pull it down).
fn speaking_level(block_rms: &mut [f32]) -> f32 {
    if block_rms.is_empty() {
        return 0.0;
    }
    block_rms.sort_by(|a, b| b.total_cmp(a));
    let loud = &block_rms[..block_rms.len().div_ceil(2)];
    let mean_square = loud.iter().map(|r| f64::from(r * r)).sum::<f64>() / loud.len() as f64;
    mean_square.sqrt() as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amp(dbfs: f32) -> f32 {
        10f32.powf(dbfs / 20.0)
    }

    fn levels(input_peak: f32, gained_peak: f32, rms: f32) -> Levels {
        Levels {
            input_peak: amp(input_peak),
            gained_peak: amp(gained_peak),
            published_peak: amp(gained_peak.min(-1.0)),
            published_rms: amp(rms),
        }
    }

    #[test]
    fn the_verdicts_follow_the_documented_thresholds() {
        let cases = [
            (levels(0.0, 0.0, -12.0), MicVerdict::Clipped, "sound card"),
            (
                levels(-0.05, -0.05, -12.0),
                MicVerdict::Clipped,
                "sound card",
            ),
            (levels(-6.0, 0.5, -10.0), MicVerdict::Clipped, "Gain fader"),
            (levels(-20.0, -20.0, -41.0), MicVerdict::TooQuiet, "closer"),
            (
                levels(-60.0, -60.0, -75.0),
                MicVerdict::TooQuiet,
                "mute switch",
            ),
            (levels(-3.0, -3.0, -8.0), MicVerdict::Hot, "limiter"),
            (levels(-6.0, -6.0, -18.0), MicVerdict::Good, "Sounds good"),
            (levels(-12.0, -12.0, -39.5), MicVerdict::Good, "Sounds good"),
        ];
        for (l, want, says) in cases {
            let (verdict, advice) = judge(l, 0.0);
            assert_eq!(verdict, want, "{l:?}: {advice}");
            assert!(advice.contains(says), "{l:?}: {advice}");
        }
    }

    #[test]
    fn the_speaking_level_ignores_the_pauses() {
        // Half the blocks at -20 dBFS, half silent: the speaking level is -20 dBFS.
        let mut blocks: Vec<f32> = (0..100)
            .map(|i| if i % 2 == 0 { amp(-20.0) } else { 0.0 })
            .collect();
        let l = db(speaking_level(&mut blocks));
        assert!((l + 20.0).abs() < 0.01, "{l}");
        assert_eq!(speaking_level(&mut []), 0.0);
    }
}
