//! Which channels of a multi-channel input the engine uses.
//!
//! A sound card with four or eight inputs delivers every channel in each frame; the host's voice
//! and instrument may sit on inputs 3 and 4. The input is then opened with all the channels it
//! needs and [`Picker`] keeps two of them, inside the device callback: left and right for a
//! stereo (sound-card mode) capture, their mean for a mono (voice mode) one. The same picker
//! converts a device that opened with another channel count than asked (mono device, stereo
//! capture: the channel twice).
//!
//! Allocation-free: a frame is assembled in a fixed array, at most [`MAX_DEVICE_CHANNELS`].

use serde::{Deserialize, Serialize};

/// The most channels a picked input may have (a frame is assembled on the stack).
pub const MAX_DEVICE_CHANNELS: u16 = 64;

/// Two input channels, 0-based: `left` goes to the capture's left (or both, mixed, to a mono
/// capture), `right` to its right. They may be the same channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelPick {
    /// The channel for the left side, 0-based.
    pub left: u16,
    /// The channel for the right side, 0-based.
    pub right: u16,
}

/// Why a pick cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickError {
    /// A channel is beyond what an input can have.
    #[error("input channel {0} is out of range (channels 1 to {MAX_DEVICE_CHANNELS})")]
    OutOfRange(u32),
    /// The device has fewer channels than the pick names.
    #[error("the input has {channels} channels, so channel {wanted} cannot be used")]
    NotOnDevice {
        /// The device's channel count.
        channels: u16,
        /// The 1-based channel asked for.
        wanted: u32,
    },
}

impl ChannelPick {
    /// The first two channels (a stereo input's own order).
    pub const FIRST_PAIR: ChannelPick = ChannelPick { left: 0, right: 1 };

    /// A pick of two 0-based channels, checked against [`MAX_DEVICE_CHANNELS`].
    pub fn new(left: u16, right: u16) -> Result<ChannelPick, PickError> {
        for c in [left, right] {
            if c >= MAX_DEVICE_CHANNELS {
                return Err(PickError::OutOfRange(u32::from(c) + 1));
            }
        }
        Ok(ChannelPick { left, right })
    }

    /// The channels a device must deliver to carry both.
    pub fn device_channels(&self) -> u16 {
        self.left.max(self.right) + 1
    }

    /// Checks the pick against a device of `channels` channels.
    pub fn check(&self, channels: u16) -> Result<(), PickError> {
        let need = self.device_channels();
        if need > channels {
            return Err(PickError::NotOnDevice {
                channels,
                wanted: u32::from(need),
            });
        }
        Ok(())
    }
}

/// Turns frames of `device` channels into frames of `out` channels (1 or 2) per a pick.
#[derive(Debug, Clone)]
pub struct Picker {
    pick: ChannelPick,
    device: usize,
    out: usize,
    frame: [f32; MAX_DEVICE_CHANNELS as usize],
    fill: usize,
}

impl Picker {
    /// A picker for frames of `device` channels into `out` (1: the mean of the pair; 2: the
    /// pair). A channel the device lacks reads as its last channel.
    pub fn new(pick: ChannelPick, device: u16, out: usize) -> Picker {
        let device = usize::from(device.clamp(1, MAX_DEVICE_CHANNELS));
        let last = (device - 1) as u16;
        Picker {
            pick: ChannelPick {
                left: pick.left.min(last),
                right: pick.right.min(last),
            },
            device,
            out: out.clamp(1, 2),
            frame: [0.0; MAX_DEVICE_CHANNELS as usize],
            fill: 0,
        }
    }

    /// The device's channel count.
    pub fn device_channels(&self) -> usize {
        self.device
    }

    /// Takes one sample of the device's interleaved stream; each completed frame emits `out`
    /// samples through `emit`.
    #[inline]
    pub fn feed(&mut self, sample: f32, emit: &mut impl FnMut(f32)) {
        self.frame[self.fill] = sample;
        self.fill += 1;
        if self.fill == self.device {
            self.fill = 0;
            let l = self.frame[usize::from(self.pick.left)];
            let r = self.frame[usize::from(self.pick.right)];
            if self.out == 1 {
                emit(if self.pick.left == self.pick.right {
                    l
                } else {
                    0.5 * (l + r)
                });
            } else {
                emit(l);
                emit(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(p: &mut Picker, data: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        for &s in data {
            p.feed(s, &mut |x| out.push(x));
        }
        out
    }

    #[test]
    fn picks_a_pair_in_any_order_and_across_deliveries() {
        // Four channels: sample value = 10 * frame + channel.
        let data: Vec<f32> = (0..3)
            .flat_map(|f| (0..4).map(move |c| (10 * f + c) as f32))
            .collect();
        let mut p = Picker::new(ChannelPick::new(2, 3).unwrap(), 4, 2);
        assert_eq!(run(&mut p, &data), [2.0, 3.0, 12.0, 13.0, 22.0, 23.0]);
        let mut p = Picker::new(ChannelPick::new(3, 0).unwrap(), 4, 2);
        // Delivered in odd-sized pieces: frames straddle them.
        let mut out = run(&mut p, &data[..5]);
        out.extend(run(&mut p, &data[5..11]));
        out.extend(run(&mut p, &data[11..]));
        assert_eq!(out, [3.0, 0.0, 13.0, 10.0, 23.0, 20.0]);
    }

    #[test]
    fn mono_takes_the_mean_of_the_pair_or_the_one_channel() {
        let data = [1.0, 0.0, 0.5, 0.25];
        let mut p = Picker::new(ChannelPick::new(2, 3).unwrap(), 4, 1);
        assert_eq!(run(&mut p, &data), [0.375]);
        let mut p = Picker::new(ChannelPick::new(0, 0).unwrap(), 4, 1);
        assert_eq!(run(&mut p, &data), [1.0]);
    }

    #[test]
    fn a_mono_device_feeds_both_sides_and_a_missing_channel_reads_the_last() {
        let mut p = Picker::new(ChannelPick::FIRST_PAIR, 1, 2);
        assert_eq!(run(&mut p, &[0.5, -0.5]), [0.5, 0.5, -0.5, -0.5]);
        let mut p = Picker::new(ChannelPick::new(5, 7).unwrap(), 2, 2);
        assert_eq!(run(&mut p, &[0.1, 0.2]), [0.2, 0.2]);
    }

    #[test]
    fn bad_picks_are_refused_with_the_channel_named() {
        assert_eq!(
            ChannelPick::new(64, 0),
            Err(PickError::OutOfRange(65)),
            "channel 65 of at most 64"
        );
        let p = ChannelPick::new(2, 3).unwrap();
        assert_eq!(p.device_channels(), 4);
        assert!(p.check(4).is_ok());
        let e = p.check(2).unwrap_err();
        assert_eq!(
            e,
            PickError::NotOnDevice {
                channels: 2,
                wanted: 4
            }
        );
        assert_eq!(
            e.to_string(),
            "the input has 2 channels, so channel 4 cannot be used"
        );
    }
}
