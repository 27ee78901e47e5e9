//! Volume indication: every interval (500 ms by default) a level 0–255 and voice activity for the
//! local source and each remote, the way the RTC SDKs report speakers. A source "ripples" (counts
//! as speaking) above [`SPEAKING_THRESHOLD`].
//!
//! The level is the block RMS in dBFS (a full-scale square wave is 0 dBFS, a full-scale sine
//! −3 dBFS) mapped linearly from −50 dBFS → 0 to 0 dBFS → 255, clamped:
//!
//! | RMS        | level |
//! |------------|-------|
//! | ≤ −50 dBFS | 0     |
//! | −46 dBFS   | 20    |
//! | −40 dBFS   | 51    |
//! | −20 dBFS   | 153   |
//! | −3 dBFS    | 240   |
//!
//! Each block's level is smoothed (`smooth` 0 = none … 10 = slowest, default 3) and the report
//! carries the highest smoothed level of the interval. Slots for sources are allocated up front.

use crate::level::VoiceActivity;
use crate::units::{BLOCK_FRAMES, Dbfs, ENGINE_RATE};

/// A level above this counts as speaking (the UI ripple).
pub const SPEAKING_THRESHOLD: u8 = 20;

/// The RMS (dBFS) that maps to level 0.
pub const LEVEL_FLOOR_DBFS: f32 = -50.0;

/// Whose volume a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceId {
    /// The local host (the publish bus before the encoder).
    Local,
    /// A remote member, by uid.
    Remote(u64),
}

/// Settings for the indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndicationConfig {
    /// Report interval in ms (rounded to whole 10 ms blocks, at least one block).
    pub interval_ms: u32,
    /// Smoothing 0..=10 (higher = slower).
    pub smooth: u8,
    /// Most sources tracked at once (local included).
    pub max_sources: usize,
}

impl Default for IndicationConfig {
    fn default() -> Self {
        IndicationConfig {
            interval_ms: 500,
            smooth: 3,
            max_sources: 32,
        }
    }
}

/// One source's report for an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeReport {
    /// The source.
    pub source: SourceId,
    /// Level 0–255.
    pub level: u8,
    /// Whether voice was detected in the interval.
    pub voice: bool,
}

impl VolumeReport {
    /// Whether the UI should show the speaking ripple.
    pub fn speaking(&self) -> bool {
        self.level > SPEAKING_THRESHOLD
    }
}

/// Maps a block RMS to the 0–255 level.
pub fn level_of(rms: Dbfs) -> u8 {
    let x = ((rms.0 - LEVEL_FLOOR_DBFS) / -LEVEL_FLOOR_DBFS).clamp(0.0, 1.0);
    (x * 255.0).round() as u8
}

#[derive(Debug, Clone)]
struct Slot {
    source: Option<SourceId>,
    smoothed_db: f32,
    max_in_interval: f32,
    voice_in_interval: bool,
    fed: bool,
    vad: VoiceActivity,
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            source: None,
            smoothed_db: LEVEL_FLOOR_DBFS - 10.0,
            max_in_interval: LEVEL_FLOOR_DBFS - 10.0,
            voice_in_interval: false,
            fed: false,
            vad: VoiceActivity::default(),
        }
    }
}

/// Collects per-block levels and emits reports every interval. Allocation-free after `new`.
#[derive(Debug, Clone)]
pub struct VolumeIndicator {
    config: IndicationConfig,
    interval_blocks: u32,
    blocks: u32,
    slots: Vec<Slot>,
    reports: Vec<VolumeReport>,
}

impl VolumeIndicator {
    /// An indicator with room for `config.max_sources` sources.
    pub fn new(config: IndicationConfig) -> VolumeIndicator {
        let block_ms = BLOCK_FRAMES as u32 * 1000 / ENGINE_RATE.hz();
        let interval_blocks = (config.interval_ms.saturating_add(block_ms / 2) / block_ms).max(1);
        VolumeIndicator {
            config,
            interval_blocks,
            blocks: 0,
            slots: vec![Slot::empty(); config.max_sources.max(1)],
            reports: Vec::with_capacity(config.max_sources.max(1)),
        }
    }

    /// The interval in blocks.
    pub fn interval_blocks(&self) -> u32 {
        self.interval_blocks
    }

    /// Feeds one 10 ms block's RMS for `source`. Returns false when all slots are taken.
    pub fn feed(&mut self, source: SourceId, rms: Dbfs) -> bool {
        let idx = match self.slots.iter().position(|s| s.source == Some(source)) {
            Some(i) => i,
            None => match self.slots.iter().position(|s| s.source.is_none()) {
                Some(i) => {
                    self.slots[i] = Slot::empty();
                    self.slots[i].source = Some(source);
                    i
                }
                None => return false,
            },
        };
        let k = 1.0 / (1.0 + f32::from(self.config.smooth.min(10)));
        let slot = &mut self.slots[idx];
        let x = rms.0.max(LEVEL_FLOOR_DBFS - 10.0);
        slot.smoothed_db += (x - slot.smoothed_db) * k;
        slot.max_in_interval = slot.max_in_interval.max(slot.smoothed_db);
        slot.voice_in_interval |= slot.vad.update(rms);
        slot.fed = true;
        true
    }

    /// Forgets a source (a remote left).
    pub fn remove(&mut self, source: SourceId) {
        for s in self.slots.iter_mut().filter(|s| s.source == Some(source)) {
            *s = Slot::empty();
        }
    }

    /// Ends a block. Every `interval_blocks` blocks returns the reports of the sources fed in
    /// that interval; otherwise `None`.
    pub fn end_block(&mut self) -> Option<&[VolumeReport]> {
        self.blocks += 1;
        if self.blocks < self.interval_blocks {
            return None;
        }
        self.blocks = 0;
        self.reports.clear();
        for slot in self.slots.iter_mut() {
            let Some(source) = slot.source else { continue };
            if !slot.fed {
                continue;
            }
            self.reports.push(VolumeReport {
                source,
                level: level_of(Dbfs(slot.max_in_interval)),
                voice: slot.voice_in_interval,
            });
            slot.max_in_interval = LEVEL_FLOOR_DBFS - 10.0;
            slot.voice_in_interval = false;
            slot.fed = false;
        }
        Some(&self.reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_signals::sine_block;

    #[test]
    fn documented_table() {
        assert_eq!(level_of(Dbfs(-60.0)), 0);
        assert_eq!(level_of(Dbfs(-46.0)), 20);
        assert_eq!(level_of(Dbfs(-40.0)), 51);
        assert_eq!(level_of(Dbfs(-20.0)), 153);
        assert_eq!(level_of(Dbfs(-3.0)), 240);
        assert_eq!(level_of(Dbfs(6.0)), 255);
    }

    /// Tones at known RMS levels report the documented values; silence reports < 5; the report
    /// comes exactly every `interval_blocks` blocks.
    #[test]
    fn tones_report_documented_levels_on_interval() {
        for (rms_db, expected) in [(-20.0f32, 153u8), (-40.0, 51), (-3.0103, 240)] {
            let mut vi = VolumeIndicator::new(IndicationConfig::default());
            assert_eq!(vi.interval_blocks(), 50);
            let amp = Dbfs(rms_db).amplitude() * std::f32::consts::SQRT_2;
            let mut report_blocks = Vec::new();
            let mut last = None;
            for n in 0..200u64 {
                let b = sine_block(1000.0, amp, n, 2);
                vi.feed(SourceId::Local, Dbfs::from_amplitude(b.rms()));
                vi.feed(SourceId::Remote(9), Dbfs::FLOOR);
                if let Some(r) = vi.end_block() {
                    report_blocks.push(n);
                    last = Some(r.to_vec());
                }
            }
            assert_eq!(report_blocks, vec![49, 99, 149, 199]);
            let last = last.expect("reports");
            let local = last
                .iter()
                .find(|r| r.source == SourceId::Local)
                .expect("local");
            assert!(
                local.level.abs_diff(expected) <= 1,
                "{rms_db} dBFS: {} vs {expected}",
                local.level
            );
            assert!(local.speaking());
            let silent = last
                .iter()
                .find(|r| r.source == SourceId::Remote(9))
                .expect("remote");
            assert!(silent.level < 5);
            assert!(!silent.voice && !silent.speaking());
        }
    }

    #[test]
    fn custom_interval_and_no_alloc_growth() {
        let mut vi = VolumeIndicator::new(IndicationConfig {
            interval_ms: 200,
            smooth: 0,
            max_sources: 2,
        });
        assert_eq!(vi.interval_blocks(), 20);
        assert!(vi.feed(SourceId::Local, Dbfs(-20.0)));
        assert!(vi.feed(SourceId::Remote(1), Dbfs(-20.0)));
        assert!(
            !vi.feed(SourceId::Remote(2), Dbfs(-20.0)),
            "slots are bounded"
        );
        vi.remove(SourceId::Remote(1));
        assert!(vi.feed(SourceId::Remote(2), Dbfs(-20.0)));
    }
}
