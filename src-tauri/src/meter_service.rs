//! Streams the selected input's level to the UI at ~30 Hz.
//!
//! The capture callback (in `onmic-audio`) only accumulates levels into a lock-free ring; a
//! worker thread here drains it every 33 ms and sends one [`MeterFrame`] over the UI channel.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use onmic_audio::meter::SILENCE_DBFS;
use onmic_audio::{DeviceError, InputMeter};
use serde::Serialize;
use specta::Type;
use tauri::ipc::Channel;

use crate::error::{AppError, AppErrorKind};
use crate::views::{DeviceView, LevelView};

/// The UI's refresh interval (~30 Hz).
pub const FRAME_INTERVAL: Duration = Duration::from_millis(33);

/// One meter update.
#[derive(Clone, Debug, Serialize, Type)]
#[serde(rename_all = "camelCase")]
pub struct MeterFrame {
    /// Per-channel levels since the previous frame.
    pub channels: Vec<LevelView>,
    /// Whether a sample reached full scale.
    pub clipped: bool,
    /// Frame counter, so the UI can tell a live meter from a frozen one.
    pub seq: u32,
    /// Set when the stream stopped (device unplugged); no further frames follow.
    pub error: Option<AppError>,
}

struct Running {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Owns at most one running meter. Its operations may be called from several threads at once
/// (the commands run on the async runtime's blocking pool, joining and leaving on its workers):
/// each holds `ops` throughout, so they apply one after the other, whole.
#[derive(Default)]
pub struct MeterService {
    /// Held for the whole of [`MeterService::start`], `stop`, `pause` and `resume`: each is a
    /// close, a change of what is wanted and an open, and two interleaved starts would both
    /// open, leaving one meter running that nothing stops.
    ops: Mutex<()>,
    running: Mutex<Option<Running>>,
    /// What the UI last asked to meter (the device as asked, `None` the default input, and its
    /// channel), kept while paused so that [`MeterService::resume`] can open it again.
    wanted: Mutex<Option<(Option<String>, Channel<MeterFrame>)>>,
    /// Between [`MeterService::pause`] and [`MeterService::resume`]: a new choice of input is
    /// remembered, not opened.
    paused: AtomicBool,
}

impl MeterService {
    /// Stops any running meter, opens `device_id` (the default input when `None`), and streams
    /// frames to `channel` until stopped, the device fails, or the UI goes away.
    pub fn start(
        &self,
        device_id: Option<String>,
        channel: Channel<MeterFrame>,
    ) -> Result<DeviceView, AppError> {
        let _op = lock(&self.ops);
        self.stop_now();
        *lock(&self.wanted) = Some((device_id.clone(), channel.clone()));
        if self.paused.load(Ordering::Relaxed) {
            // Live: the input opens after leaving; say now which device that is (the same
            // look-up as opening it, and its error).
            let device = onmic_audio::describe_input(device_id.as_deref())?;
            return Ok(DeviceView::from(&device));
        }
        self.open(device_id, channel)
    }

    fn open(
        &self,
        device_id: Option<String>,
        channel: Channel<MeterFrame>,
    ) -> Result<DeviceView, AppError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_worker = Arc::clone(&stop);
        // The stream is opened on the worker thread and stays there: some backends want a
        // stream dropped on the thread that made it.
        let thread = std::thread::Builder::new()
            .name("onmic-meter".into())
            .spawn(move || {
                let meter = match InputMeter::open(device_id.as_deref()) {
                    Ok(meter) => {
                        let _ = ready_tx.send(Ok(DeviceView::from(meter.device())));
                        meter
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(AppError::from(e)));
                        return;
                    }
                };
                run(meter, &channel, &stop_worker);
            })
            .map_err(|e| {
                AppError::new(
                    AppErrorKind::Internal,
                    format!("cannot start the meter thread: {e}"),
                )
            })?;
        let device = ready_rx.recv().map_err(|_| {
            AppError::new(
                AppErrorKind::Internal,
                "the meter thread ended before opening the device",
            )
        })??;
        *self.lock() = Some(Running { stop, thread });
        Ok(device)
    }

    /// Stops the running meter, if any, and waits for its stream to close; a later
    /// [`MeterService::resume`] does nothing.
    pub fn stop(&self) {
        let _op = lock(&self.ops);
        self.stop_now();
    }

    fn stop_now(&self) {
        *lock(&self.wanted) = None;
        self.close();
    }

    /// Closes the meter's stream while the live engine captures the same input (from going
    /// live until leaving): the engine's own *Input* strip shows the level then, a second
    /// capture stream of the same device would cost the sound server and the Studio a share
    /// of a core for nothing (docs/studio.md, "Twelfth round"), and a device that allows one
    /// client at a time could refuse the engine. [`MeterService::resume`] opens it again.
    pub fn pause(&self) {
        let _op = lock(&self.ops);
        self.paused.store(true, Ordering::Relaxed);
        self.close();
    }

    /// Opens again what the UI last asked to meter, if it is not running and was not stopped.
    /// A device that cannot be opened any more (unplugged while live) is reported to the UI as
    /// a frame with the error, as a failing device is while metering.
    pub fn resume(&self) {
        let _op = lock(&self.ops);
        self.paused.store(false, Ordering::Relaxed);
        if self.is_running() {
            return;
        }
        let Some((device_id, channel)) = lock(&self.wanted).clone() else {
            return;
        };
        if let Err(error) = self.open(device_id, channel.clone()) {
            let _ = channel.send(MeterFrame {
                channels: Vec::new(),
                clipped: false,
                seq: 0,
                error: Some(error),
            });
        }
    }

    /// Whether a meter stream is open.
    pub fn is_running(&self) -> bool {
        self.lock().is_some()
    }

    fn close(&self) {
        let running = self.lock().take();
        if let Some(Running { stop, thread }) = running {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Running>> {
        lock(&self.running)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run(mut meter: InputMeter, channel: &Channel<MeterFrame>, stop: &AtomicBool) {
    let channels = usize::from(meter.device().channels).clamp(1, onmic_audio::meter::MAX_CHANNELS);
    let silence = vec![
        LevelView {
            peak_dbfs: SILENCE_DBFS,
            rms_dbfs: SILENCE_DBFS
        };
        channels
    ];
    let mut seq = 0u32;
    let mut idle = 0u32;
    let mut tick = 0u32;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(FRAME_INTERVAL);
        tick = tick.wrapping_add(1);
        // Once a second, make sure the device is still there: some backends never report a
        // vanished device and quietly move the stream to another one (PulseAudio does).
        let failure = meter.failure().or_else(|| {
            (tick.is_multiple_of(30) && !device_present(&meter.device().id)).then(|| {
                DeviceError::NotFound {
                    id: meter.device().id.clone(),
                }
            })
        });
        let frame = match (meter.read(), failure) {
            (_, Some(e)) => MeterFrame {
                channels: silence.clone(),
                clipped: false,
                seq,
                error: Some(e.into()),
            },
            (Some(r), None) => {
                idle = 0;
                MeterFrame {
                    channels: r.channels.iter().map(LevelView::from).collect(),
                    clipped: r.clipped,
                    seq,
                    error: None,
                }
            }
            // A stalled device shows silence after ~0.3 s rather than a frozen bar.
            (None, None) => {
                idle += 1;
                if idle < 10 {
                    continue;
                }
                MeterFrame {
                    channels: silence.clone(),
                    clipped: false,
                    seq,
                    error: None,
                }
            }
        };
        seq = seq.wrapping_add(1);
        let failed = frame.error.is_some();
        // The UI went away (window closed, page reloaded): nobody to meter for.
        if channel.send(frame).is_err() || failed {
            break;
        }
    }
}

/// Whether the input `id` is still in the host's device list (an unreadable list counts as
/// present: only a definite absence stops the meter).
fn device_present(id: &str) -> bool {
    onmic_audio::list_devices().map_or(true, |list| list.input(Some(id)).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;

    /// The tests below open meters on the same null sinks: one at a time.
    static DEVICE_TESTS: Mutex<()> = Mutex::new(());

    /// Takes the device tests' turn; they need `cargo xtask test`'s PulseAudio (its null sinks'
    /// monitors are inputs).
    fn device_tests() -> std::sync::MutexGuard<'static, ()> {
        let turn = lock(&DEVICE_TESTS);
        assert!(
            std::env::var_os("ONMIC_TEST_AUDIO").is_some(),
            "this test needs the PulseAudio null sinks that `cargo xtask test` starts \
             (ONMIC_TEST_AUDIO=1, PULSE_SERVER/XDG_RUNTIME_DIR exported)"
        );
        turn
    }

    /// Waits up to 5 s for `ok`.
    fn wait(what: &str, ok: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// On `cargo xtask test`'s PulseAudio (its null sinks' monitors are inputs): a paused meter
    /// sends nothing and has no stream open; a choice of input made meanwhile is remembered and
    /// opened on resume; after an explicit stop, resume opens nothing.
    #[test]
    fn a_paused_meter_closes_its_stream_and_resumes_with_the_latest_choice() {
        let _one = device_tests();
        let frames = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&frames);
        let channel = Channel::new(move |_| {
            counted.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        let list = onmic_audio::list_devices().expect("device list");
        let second = list
            .inputs
            .iter()
            .find(|d| d.id.ends_with("onmic_b.monitor"))
            .unwrap_or_else(|| panic!("no onmic_b.monitor in {:?}", list.inputs))
            .id
            .clone();
        let meter = MeterService::default();
        let first = meter
            .start(None, channel.clone())
            .expect("the default input opens");
        wait("frames from the default input", || {
            frames.load(Ordering::Relaxed) >= 3
        });

        meter.pause();
        assert!(!meter.is_running(), "paused, no stream is open");
        let before = frames.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            frames.load(Ordering::Relaxed),
            before,
            "a paused meter sends no frame"
        );

        // The host picks another input while live: named at once, opened after leaving.
        let view = meter
            .start(Some(second.clone()), channel.clone())
            .expect("a present input is described while paused");
        assert_eq!(view.id, second);
        assert_ne!(view.id, first.id, "the test needs two different inputs");
        assert!(!meter.is_running(), "still paused: nothing opened");
        // An input that is not there is refused as opening it would be.
        let missing = meter.start(Some("pulseaudio:no-such-source".into()), channel.clone());
        assert!(missing.is_err(), "{missing:?}");
        meter
            .start(Some(second.clone()), channel.clone())
            .expect("described again");

        meter.resume();
        assert!(meter.is_running(), "resumed");
        let at = frames.load(Ordering::Relaxed);
        wait("frames after resuming", || {
            frames.load(Ordering::Relaxed) >= at + 3
        });

        meter.stop();
        meter.pause();
        meter.resume();
        assert!(!meter.is_running(), "after stop, resume opens nothing");
    }

    /// The commands run on the runtime's threads, so picks can arrive at once (a host picking
    /// quickly, a join pausing meanwhile): every operation applies whole, one after the other.
    /// Each start gets a channel of its own; afterwards exactly one channel still receives
    /// frames (a meter left running unstopped would keep feeding its own), and none after stop.
    #[test]
    fn concurrent_picks_leave_one_meter_and_stop_leaves_none() {
        let _one = device_tests();
        let list = onmic_audio::list_devices().expect("device list");
        let ids: Vec<String> = ["onmic_b.monitor", "onmic_quad.monitor"]
            .iter()
            .map(|name| {
                list.inputs
                    .iter()
                    .find(|d| d.id.ends_with(name))
                    .unwrap_or_else(|| panic!("no {name} in {:?}", list.inputs))
                    .id
                    .clone()
            })
            .collect();
        const THREADS: usize = 3;
        const PICKS: usize = 3;
        let frames: Arc<Vec<AtomicUsize>> =
            Arc::new((0..THREADS * PICKS).map(|_| AtomicUsize::new(0)).collect());
        let meter = MeterService::default();
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (meter, ids, frames) = (&meter, &ids, &frames);
                scope.spawn(move || {
                    for k in 0..PICKS {
                        let slot = t * PICKS + k;
                        let counted = Arc::clone(frames);
                        let channel = Channel::new(move |_| {
                            counted[slot].fetch_add(1, Ordering::Relaxed);
                            Ok(())
                        });
                        let id = ids[(t + k) % ids.len()].clone();
                        meter.start(Some(id), channel).expect("opens");
                        if k == 1 && t == 0 {
                            meter.pause();
                            meter.resume();
                        }
                    }
                });
            }
        });
        // Which channels receive frames over half a second, now that every pick has applied.
        let feeding = || {
            let at: Vec<usize> = frames.iter().map(|f| f.load(Ordering::Relaxed)).collect();
            std::thread::sleep(Duration::from_millis(500));
            frames
                .iter()
                .zip(at)
                .enumerate()
                .filter(|(_, (f, a))| f.load(Ordering::Relaxed) > *a)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        assert!(meter.is_running());
        let live = feeding();
        assert_eq!(
            live.len(),
            1,
            "after {} concurrent picks exactly one meter streams: channels {live:?}",
            THREADS * PICKS
        );
        meter.stop();
        assert_eq!(feeding(), Vec::<usize>::new(), "after stop, none streams");
    }
}
