//! The output device's side of the engine's output ring, keeping its latency bounded.
//!
//! The engine writes one block per capture block; the output device takes a period per callback.
//! When the engine is late once (a capture burst delayed, the DSP thread descheduled) the device
//! plays silence for the part that was missing, and when the late audio arrives the ring holds
//! that much more than before, for good: every voice, the music and the ear monitor are heard
//! later from then on. The same creeping backlog comes from an output clock slightly slower than
//! the capture clock. An [`OutputReader`] watches the least audio left in the ring after a
//! callback over each half-second window; if the ring never ran below `margin` plus a little, the
//! surplus was never needed, and the next callback skips it with a short crossfade (one splice,
//! no click). An underrun soon after a trim means the margin was too small for this device
//! (callbacks of varying size): it is doubled, up to 20 ms, and halved again after 5 min of calm.
//!
//! Only for a ring written in real time: a ring filled ahead (a file) would be skipped through,
//! so [`OutputReader::in_order`] plays everything. Runs inside the device callback: no
//! allocation, lock, log or syscall.

/// Frames in a trim decision window (0.5 s at 48 kHz).
const WINDOW_FRAMES: usize = 24_000;
/// Starting margin kept in the ring after a callback: 2 ms.
const MIN_MARGIN: usize = 96;
/// The margin never grows beyond 20 ms.
const MAX_MARGIN: usize = 960;
/// A window's surplus must exceed the margin by this much (1 ms) before it is trimmed.
const HYSTERESIS: usize = 48;
/// An underrun within this many frames (10 s) after a trim doubles the margin.
const RECENT_TRIM: usize = 480_000;
/// After this many frames (5 min) without an underrun the margin halves again: slowly, so a
/// device whose callbacks vary in size settles instead of trimming and underrunning in turn.
const CALM: usize = 14_400_000;
/// Crossfade length of a trim splice: 64 frames (1.3 ms).
const FADE_FRAMES: usize = 64;

/// What one read did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadOutcome {
    /// Samples that came from the ring; the rest of the buffer is silence.
    pub from_ring: usize,
    /// Frames skipped by a trim in this read.
    pub trimmed_frames: usize,
}

/// Reads interleaved frames from the engine's output ring for a device callback.
#[derive(Debug, Clone)]
pub struct OutputReader {
    channels: usize,
    margin: usize,
    window_seen: usize,
    window_min: usize,
    since_trim: Option<usize>,
    since_underrun: usize,
    trim_due: usize,
    trims: bool,
}

impl OutputReader {
    /// A reader for a ring of `channels` interleaved channels at 48 kHz.
    pub fn new(channels: usize) -> OutputReader {
        OutputReader {
            channels: channels.max(1),
            margin: MIN_MARGIN,
            window_seen: 0,
            window_min: usize::MAX,
            since_trim: None,
            since_underrun: 0,
            trim_due: 0,
            trims: true,
        }
    }

    /// A reader that never skips: everything in the ring plays in order (a ring filled ahead).
    pub fn in_order(channels: usize) -> OutputReader {
        OutputReader {
            trims: false,
            ..OutputReader::new(channels)
        }
    }

    /// The audio the reader currently keeps in the ring after a callback, in frames.
    pub fn margin_frames(&self) -> usize {
        self.margin
    }

    /// Fills interleaved `out` from `ring`, silence for what is missing, skipping a surplus the
    /// last window showed was never needed.
    pub fn read(&mut self, ring: &mut rtrb::Consumer<f32>, out: &mut [f32]) -> ReadOutcome {
        let ch = self.channels;
        let want = out.len() - out.len() % ch;
        let frames = want / ch;
        let avail = ring.slots() - ring.slots() % ch;
        self.since_underrun = self.since_underrun.saturating_add(frames);
        if let Some(t) = self.since_trim.as_mut() {
            *t = t.saturating_add(frames);
        }
        if avail < want {
            copy_from(ring, out, avail, 0, 0);
            out[avail..].fill(0.0);
            self.on_underrun();
            self.account(frames, 0);
            return ReadOutcome {
                from_ring: avail,
                trimmed_frames: 0,
            };
        }
        let mut skip = self.trim_due.min((avail - want) / ch);
        self.trim_due = 0;
        if skip > 0 && frames == 0 {
            skip = 0;
        }
        copy_from(ring, out, want, skip * ch, ch);
        if skip > 0 {
            self.since_trim = Some(0);
        }
        let left = (avail - want) / ch - skip;
        self.account(frames, left);
        ReadOutcome {
            from_ring: want + skip * ch,
            trimmed_frames: skip,
        }
    }

    fn on_underrun(&mut self) {
        if self.since_trim.is_some_and(|t| t < RECENT_TRIM) {
            self.margin = (self.margin * 2).min(MAX_MARGIN);
            self.since_trim = None;
        }
        self.since_underrun = 0;
        self.trim_due = 0;
    }

    /// Ends the read: the window's least backlog, and at the window's end the trim decision.
    fn account(&mut self, frames: usize, left: usize) {
        self.window_min = self.window_min.min(left);
        self.window_seen += frames;
        if self.window_seen < WINDOW_FRAMES {
            return;
        }
        if self.since_underrun >= CALM {
            self.margin = (self.margin / 2).max(MIN_MARGIN);
            self.since_underrun = 0;
        }
        if self.trims && self.window_min != usize::MAX && self.window_min > self.margin + HYSTERESIS
        {
            self.trim_due = self.window_min - self.margin;
        }
        self.window_seen = 0;
        self.window_min = usize::MAX;
    }
}

/// Reads `want + skip` samples from the ring into `out[..want]`: the first `want` samples, or,
/// with `skip > 0`, the stream spliced at `skip`: the old stream crossfades into the one `skip`
/// samples later over the first [`FADE_FRAMES`], then the later stream alone.
fn copy_from(ring: &mut rtrb::Consumer<f32>, out: &mut [f32], want: usize, skip: usize, ch: usize) {
    let Ok(chunk) = ring.read_chunk(want + skip) else {
        out[..want].fill(0.0);
        return;
    };
    let (a, b) = chunk.as_slices();
    if skip == 0 {
        out[..a.len()].copy_from_slice(a);
        out[a.len()..a.len() + b.len()].copy_from_slice(b);
    } else {
        let at = |k: usize| if k < a.len() { a[k] } else { b[k - a.len()] };
        let fade = FADE_FRAMES.min(want / ch);
        for (i, o) in out[..want].iter_mut().enumerate() {
            let frame = i / ch;
            *o = if frame < fade {
                let w = (frame + 1) as f32 / (fade + 1) as f32;
                at(i) * (1.0 - w) + at(i + skip) * w
            } else {
                at(i + skip)
            };
        }
    }
    chunk.commit_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `blocks` of a counting ramp (frame index on both channels) and reads periods.
    struct Rig {
        producer: rtrb::Producer<f32>,
        consumer: rtrb::Consumer<f32>,
        reader: OutputReader,
        next: u32,
    }

    impl Rig {
        fn new() -> Rig {
            let (producer, consumer) = rtrb::RingBuffer::new(48_000 * 2);
            Rig {
                producer,
                consumer,
                reader: OutputReader::new(2),
                next: 0,
            }
        }

        fn write(&mut self, frames: usize) {
            for _ in 0..frames {
                let v = self.next as f32;
                self.producer.push(v).expect("room");
                self.producer.push(v).expect("room");
                self.next += 1;
            }
        }

        fn read(&mut self, frames: usize) -> (Vec<f32>, ReadOutcome) {
            let mut out = vec![0.0; frames * 2];
            let r = self.reader.read(&mut self.consumer, &mut out);
            (out, r)
        }

        fn backlog(&self) -> usize {
            self.consumer.slots() / 2
        }
    }

    #[test]
    fn steady_cadence_is_never_trimmed() {
        let mut rig = Rig::new();
        for _ in 0..500 {
            rig.write(480);
            let (out, r) = rig.read(480);
            assert_eq!(r.trimmed_frames, 0);
            assert_eq!(r.from_ring, 960);
            assert!(out.iter().all(|s| *s >= 0.0));
        }
        assert_eq!(rig.backlog(), 0);
    }

    #[test]
    fn a_late_block_leaves_a_backlog_that_is_trimmed_within_two_windows() {
        let mut rig = Rig::new();
        // 1 s steady, then one block arrives late: the device plays silence for it.
        for _ in 0..100 {
            rig.write(480);
            rig.read(480);
        }
        let (_, r) = rig.read(480);
        assert_eq!(r.from_ring, 0, "an underrun");
        rig.write(960);
        rig.read(480);
        assert_eq!(
            rig.backlog(),
            480,
            "one block more than before, for good without a trim"
        );
        let mut trimmed = 0;
        let mut reads = 0;
        while trimmed == 0 {
            rig.write(480);
            let (_, r) = rig.read(480);
            trimmed = r.trimmed_frames;
            reads += 1;
            assert!(reads <= 110, "no trim after two windows");
        }
        assert_eq!(trimmed, 480 - MIN_MARGIN);
        assert_eq!(rig.backlog(), MIN_MARGIN);
        // And stays there.
        for _ in 0..200 {
            rig.write(480);
            assert_eq!(rig.read(480).1.trimmed_frames, 0);
        }
        assert_eq!(rig.backlog(), MIN_MARGIN);
    }

    #[test]
    fn in_order_reader_plays_a_ring_filled_ahead_whole() {
        let mut rig = Rig::new();
        rig.reader = OutputReader::in_order(2);
        rig.write(36_000); // 0.75 s ahead
        let mut frames = Vec::new();
        for _ in 0..100 {
            let (out, r) = rig.read(480);
            assert_eq!(r.trimmed_frames, 0);
            frames.extend(out.iter().step_by(2).copied());
        }
        assert!(
            frames[..36_000]
                .iter()
                .enumerate()
                .all(|(i, v)| *v == i as f32)
        );
    }

    #[test]
    fn a_trim_is_one_smooth_splice() {
        let mut rig = Rig::new();
        rig.write(480 * 4);
        rig.reader.trim_due = 300;
        let (out, r) = rig.read(480);
        assert_eq!(r.trimmed_frames, 300);
        let left: Vec<f32> = out.iter().step_by(2).copied().collect();
        // The ramp crossfades from frame 0 to frame 300 over 64 frames, then runs on from there.
        assert!(
            left[0] < 10.0,
            "starts where the old stream was: {}",
            left[0]
        );
        for w in left.windows(2) {
            let step = w[1] - w[0];
            assert!(
                (0.99..=7.0).contains(&step),
                "a splice without a jump: step {step}"
            );
        }
        assert_eq!(left[479], 779.0);
    }

    #[test]
    fn slow_output_clock_is_followed_by_small_trims() {
        // The output takes 479 frames per 480 written (2,000 ppm slow): the backlog would grow by
        // a frame per period forever; the reader keeps it near the margin.
        let mut rig = Rig::new();
        let mut max_backlog = 0;
        for k in 0..6_000 {
            rig.write(480);
            rig.read(479);
            if k > 1_000 {
                max_backlog = max_backlog.max(rig.backlog());
            }
        }
        assert!(
            max_backlog <= MIN_MARGIN + HYSTERESIS + 481 + 50,
            "backlog kept bounded: {max_backlog}"
        );
    }

    #[test]
    fn underruns_right_after_a_trim_raise_the_margin_and_calm_lowers_it() {
        let mut rig = Rig::new();
        for _ in 0..100 {
            rig.write(480);
            rig.read(480);
        }
        rig.write(480);
        let _ = rig.read(960);
        rig.write(960);
        // Backlog; trimmed at a window's end, then an underrun right after.
        let mut trimmed = false;
        for _ in 0..120 {
            rig.write(480);
            trimmed |= rig.read(480).1.trimmed_frames > 0;
            if trimmed {
                break;
            }
        }
        assert!(trimmed);
        let (_, r) = rig.read(960);
        assert!(r.from_ring < 1920, "an underrun");
        assert_eq!(rig.reader.margin_frames(), MIN_MARGIN * 2);
        // 5 min 1 s of calm.
        for _ in 0..30_100 {
            rig.write(480);
            rig.read(480);
        }
        assert_eq!(rig.reader.margin_frames(), MIN_MARGIN);
    }
}
