//! Unit newtypes and the engine's fixed timing constants.

/// The engine's internal sample rate: every device is resampled to this at the edge.
pub const ENGINE_RATE: SampleRate = SampleRate(48_000);

/// Frames in one DSP block: 10 ms at 48 kHz.
pub const BLOCK_FRAMES: usize = 480;

/// Most channels a block carries (a stereo pair).
pub const MAX_CHANNELS: usize = 2;

/// A sample rate in Hz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SampleRate(pub u32);

impl SampleRate {
    /// The rate in Hz.
    pub fn hz(self) -> u32 {
        self.0
    }

    /// How long `frames` last at this rate.
    pub fn duration(self, frames: Frames) -> std::time::Duration {
        std::time::Duration::from_secs_f64(frames.0 as f64 / f64::from(self.0.max(1)))
    }
}

/// A count of frames (one sample per channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Frames(pub usize);

impl Frames {
    /// Zero frames.
    pub const ZERO: Frames = Frames(0);

    /// The count as a `usize`.
    pub fn get(self) -> usize {
        self.0
    }

    /// This many frames in milliseconds at `rate`.
    pub fn as_millis_f32(self, rate: SampleRate) -> f32 {
        self.0 as f32 * 1000.0 / rate.0.max(1) as f32
    }
}

impl std::ops::Add for Frames {
    type Output = Frames;
    fn add(self, rhs: Frames) -> Frames {
        Frames(self.0 + rhs.0)
    }
}

/// A level in decibels relative to full scale (a full-scale sine's peak is 0 dBFS).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Dbfs(pub f32);

impl Dbfs {
    /// The floor reported for digital silence.
    pub const FLOOR: Dbfs = Dbfs(-120.0);

    /// The level of a linear amplitude (RMS or peak), floored at [`Dbfs::FLOOR`].
    pub fn from_amplitude(amplitude: f32) -> Dbfs {
        if amplitude <= 1e-6 {
            Dbfs::FLOOR
        } else {
            Dbfs((20.0 * amplitude.log10()).max(Dbfs::FLOOR.0))
        }
    }

    /// The linear amplitude of this level.
    pub fn amplitude(self) -> f32 {
        10f32.powf(self.0 / 20.0)
    }
}

/// A linear gain in percent (100 = unity), as the UI shows volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumePercent(pub u16);

impl VolumePercent {
    /// Unity gain.
    pub const UNITY: VolumePercent = VolumePercent(100);

    /// The linear factor, `percent / 100`.
    pub fn factor(self) -> f32 {
        f32::from(self.0) / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dbfs_round_trips_amplitude() {
        let d = Dbfs::from_amplitude(0.1);
        assert!((d.0 + 20.0).abs() < 1e-4);
        assert!((d.amplitude() - 0.1).abs() < 1e-6);
        assert_eq!(Dbfs::from_amplitude(0.0), Dbfs::FLOOR);
    }

    #[test]
    fn frames_to_millis() {
        assert_eq!(Frames(480).as_millis_f32(ENGINE_RATE), 10.0);
    }
}
