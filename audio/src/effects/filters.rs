//! Biquad filters (RBJ audio-EQ cookbook), transposed direct form II, `f64` coefficients and
//! state so that cascades of ten bands stay exact to well below the 1 dB the EQ test allows.

use std::f64::consts::PI;

use crate::units::ENGINE_RATE;

/// The engine's sample rate as `f64`.
pub(crate) const FS: f64 = ENGINE_RATE.0 as f64;

/// Normalised biquad coefficients (`a0` = 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefs {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
}

impl Coefs {
    /// A filter that passes everything unchanged.
    pub const IDENTITY: Coefs = Coefs {
        b0: 1.0,
        b1: 0.0,
        b2: 0.0,
        a1: 0.0,
        a2: 0.0,
    };

    fn norm(b0: f64, b1: f64, b2: f64, a0: f64, a1: f64, a2: f64) -> Coefs {
        Coefs {
            b0: b0 / a0,
            b1: b1 / a0,
            b2: b2 / a0,
            a1: a1 / a0,
            a2: a2 / a0,
        }
    }

    fn w0_alpha(freq: f64, q: f64) -> (f64, f64, f64) {
        let w0 = 2.0 * PI * freq.clamp(1.0, FS * 0.49) / FS;
        (w0.cos(), w0.sin(), w0.sin() / (2.0 * q.max(0.05)))
    }

    /// Peaking EQ: `gain_db` at `freq`, bandwidth set by `q`.
    pub fn peaking(freq: f64, q: f64, gain_db: f64) -> Coefs {
        let a = 10f64.powf(gain_db / 40.0);
        let (c, _, al) = Coefs::w0_alpha(freq, q);
        Coefs::norm(
            1.0 + al * a,
            -2.0 * c,
            1.0 - al * a,
            1.0 + al / a,
            -2.0 * c,
            1.0 - al / a,
        )
    }

    /// Low shelf (slope 1) of `gain_db` below `freq`.
    pub fn low_shelf(freq: f64, gain_db: f64) -> Coefs {
        let a = 10f64.powf(gain_db / 40.0);
        let (c, _, al) = Coefs::w0_alpha(freq, std::f64::consts::FRAC_1_SQRT_2);
        let sa = 2.0 * a.sqrt() * al;
        Coefs::norm(
            a * ((a + 1.0) - (a - 1.0) * c + sa),
            2.0 * a * ((a - 1.0) - (a + 1.0) * c),
            a * ((a + 1.0) - (a - 1.0) * c - sa),
            (a + 1.0) + (a - 1.0) * c + sa,
            -2.0 * ((a - 1.0) + (a + 1.0) * c),
            (a + 1.0) + (a - 1.0) * c - sa,
        )
    }

    /// High shelf (slope 1) of `gain_db` above `freq`.
    pub fn high_shelf(freq: f64, gain_db: f64) -> Coefs {
        let a = 10f64.powf(gain_db / 40.0);
        let (c, _, al) = Coefs::w0_alpha(freq, std::f64::consts::FRAC_1_SQRT_2);
        let sa = 2.0 * a.sqrt() * al;
        Coefs::norm(
            a * ((a + 1.0) + (a - 1.0) * c + sa),
            -2.0 * a * ((a - 1.0) + (a + 1.0) * c),
            a * ((a + 1.0) + (a - 1.0) * c - sa),
            (a + 1.0) - (a - 1.0) * c + sa,
            2.0 * ((a - 1.0) - (a + 1.0) * c),
            (a + 1.0) - (a - 1.0) * c - sa,
        )
    }

    /// Second-order high-pass (Butterworth at `q` = 0.707).
    pub fn high_pass(freq: f64, q: f64) -> Coefs {
        let (c, _, al) = Coefs::w0_alpha(freq, q);
        Coefs::norm(
            (1.0 + c) / 2.0,
            -(1.0 + c),
            (1.0 + c) / 2.0,
            1.0 + al,
            -2.0 * c,
            1.0 - al,
        )
    }

    /// Second-order low-pass (Butterworth at `q` = 0.707).
    pub fn low_pass(freq: f64, q: f64) -> Coefs {
        let (c, _, al) = Coefs::w0_alpha(freq, q);
        Coefs::norm(
            (1.0 - c) / 2.0,
            1.0 - c,
            (1.0 - c) / 2.0,
            1.0 + al,
            -2.0 * c,
            1.0 - al,
        )
    }

    /// Magnitude response at `freq`, in dB.
    pub fn response_db(&self, freq: f64) -> f64 {
        let w = 2.0 * PI * freq / FS;
        let (c1, s1, c2, s2) = (w.cos(), w.sin(), (2.0 * w).cos(), (2.0 * w).sin());
        let nr = self.b0 + self.b1 * c1 + self.b2 * c2;
        let ni = -(self.b1 * s1 + self.b2 * s2);
        let dr = 1.0 + self.a1 * c1 + self.a2 * c2;
        let di = -(self.a1 * s1 + self.a2 * s2);
        10.0 * ((nr * nr + ni * ni) / (dr * dr + di * di)).log10()
    }
}

/// One biquad with state for up to two channels.
#[derive(Debug, Clone, Copy)]
pub struct Biquad {
    c: Coefs,
    s: [[f64; 2]; 2],
}

impl Biquad {
    /// A filter with `c`, state cleared.
    pub fn new(c: Coefs) -> Biquad {
        Biquad {
            c,
            s: [[0.0; 2]; 2],
        }
    }

    /// The coefficients.
    pub fn coefs(&self) -> Coefs {
        self.c
    }

    /// Filters one sample of channel `ch` (0 or 1).
    #[inline]
    pub fn tick(&mut self, ch: usize, x: f32) -> f32 {
        let x = f64::from(x);
        let s = &mut self.s[ch];
        let y = self.c.b0 * x + s[0];
        s[0] = self.c.b1 * x - self.c.a1 * y + s[1];
        s[1] = self.c.b2 * x - self.c.a2 * y;
        y as f32
    }

    /// Filters a buffer of channel `ch` in place.
    pub fn run(&mut self, ch: usize, buf: &mut [f32]) {
        for x in buf.iter_mut() {
            *x = self.tick(ch, *x);
        }
    }

    /// Clears the state.
    pub fn reset(&mut self) {
        self.s = [[0.0; 2]; 2];
    }
}

/// A one-pole smoothing coefficient for a time constant of `ms` at 48 kHz.
pub(crate) fn one_pole(ms: f32) -> f32 {
    if ms <= 0.0 {
        0.0
    } else {
        (-1.0 / (ms * 0.001 * FS as f32)).exp()
    }
}

/// dB to linear amplitude.
pub(crate) fn db_to_amp(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// Linear amplitude to dB (floored at −200 dB).
pub(crate) fn amp_to_db(a: f32) -> f32 {
    20.0 * a.max(1e-10).log10()
}
