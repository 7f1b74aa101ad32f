//! Filters: the TPT state-variable filter (Zavalishin / Simper) and one-pole helpers.
//!
//! Why TPT: it stays stable and keeps its tuning when the cutoff moves every block (the pads' LFO
//! and the station's brightness sweep it), unlike a direct-form biquad whose state is invalid after
//! a coefficient change. Coefficients are recomputed at control rate (every 64 frames), never per
//! sample, so the `tan` is off the hot loop.

use shm_proto::SAMPLE_RATE;

/// Coefficients of a state-variable filter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SvfCoefs {
    /// Prewarped integrator gain `tan(pi fc / fs)`.
    g: f32,
    /// Damping (1/Q).
    k: f32,
    a1: f32,
    a2: f32,
    a3: f32,
    /// The same filter as a 2x2 state update `s' = M s + b x` (row-major `m11 m12 m21 m22`),
    /// with the low-pass output `c1 ic1 + c2 ic2 + d x`: the recursion is then one multiply and
    /// two adds deep instead of five operations, so two filters in one loop overlap well.
    m: [f32; 4],
    /// Input column of the state update.
    b: [f32; 2],
    /// Low-pass output row and feed-through.
    c: [f32; 3],
}

impl SvfCoefs {
    /// Cutoff `hz` (clamped to 20 Hz .. 0.45 * fs) and quality `q` (0.5 = soft, 0.707 = Butterworth).
    pub fn new(hz: f32, q: f32) -> Self {
        let fc = hz.clamp(20.0, 0.45 * SAMPLE_RATE as f32);
        let g = tan_approx(std::f32::consts::PI * fc / SAMPLE_RATE as f32);
        let k = 1.0 / q.max(0.3);
        let a1 = 1.0 / (1.0 + g * (g + k));
        let a2 = g * a1;
        let a3 = g * a2;
        SvfCoefs {
            g,
            k,
            a1,
            a2,
            a3,
            m: [2.0 * a1 - 1.0, -2.0 * a2, 2.0 * a2, 1.0 - 2.0 * a3],
            b: [2.0 * a2, 2.0 * a3],
            c: [a2, 1.0 - a3, a3],
        }
    }

    /// The coefficients of the low-pass in the pad bank's scaled form (see
    /// [`Svf::tick_low_scaled`]): `(g, 2 a1, g a2)`, where `g = tan(pi fc / fs)`.
    pub fn scaled(&self) -> (f32, f32, f32) {
        (self.g, 2.0 * self.a1, self.g * self.a2)
    }
}

/// Integrator states of one SVF.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Svf {
    ic1: f32,
    ic2: f32,
}

/// Outputs of one SVF tick.
#[derive(Clone, Copy, Debug)]
pub struct SvfOut {
    /// Low-pass.
    pub low: f32,
    /// Band-pass.
    pub band: f32,
    /// High-pass.
    pub high: f32,
}

impl Svf {
    /// One frame.
    #[inline(always)]
    pub fn tick(&mut self, c: &SvfCoefs, v0: f32) -> SvfOut {
        let v3 = v0 - self.ic2;
        let v1 = c.a1 * self.ic1 + c.a2 * v3;
        let v2 = self.ic2 + c.a2 * self.ic1 + c.a3 * v3;
        self.ic1 = 2.0 * v1 - self.ic1;
        self.ic2 = 2.0 * v2 - self.ic2;
        SvfOut {
            low: v2,
            band: v1,
            high: v0 - c.k * v1 - v2,
        }
    }

    /// The integrator states `(ic1, ic2)` (the pad bank runs many filters side by side; its
    /// filters keep `(ic1, g ic2)`, see [`Svf::tick_low_scaled`]).
    pub fn state(&self) -> (f32, f32) {
        (self.ic1, self.ic2)
    }

    /// Restores integrator states taken with [`Svf::state`].
    pub fn set_state(&mut self, ic1: f32, ic2: f32) {
        self.ic1 = ic1;
        self.ic2 = ic2;
    }

    /// One low-pass frame in the state-update form (same response as `tick(..).low`).
    #[inline(always)]
    pub fn tick_low(&mut self, c: &SvfCoefs, x: f32) -> f32 {
        let (s1, s2) = (self.ic1, self.ic2);
        let y = c.c[0] * s1 + c.c[1] * s2 + c.c[2] * x;
        self.ic1 = c.m[0] * s1 + c.m[1] * s2 + c.b[0] * x;
        self.ic2 = c.m[2] * s1 + c.m[3] * s2 + c.b[1] * x;
        y
    }

    /// One low-pass frame in seven operations, the pad bank's form: the input and the output
    /// scaled by `g` (`gx = g x`, returns `g` times `tick(..).low`), the second state kept as
    /// `g ic2` (see [`Svf::state`]), with `(a1x2, c2) = (2 a1, g a2)` from [`SvfCoefs::scaled`].
    ///
    /// The TPT update `v1 = a1 ic1 + a2 (x - ic2)`, `v2 = ic2 + a2 ic1 + a3 (x - ic2)`,
    /// `ic1' = 2 v1 - ic1`, `ic2' = 2 v2 - ic2` (twelve operations) rewritten with `a2 = g a1`,
    /// `a3 = g a2`: with `t = ic1 + g (x - ic2)`, `v1 = a1 t` and `v2 = ic2 + a2 t`; scaled by `g`,
    /// `t = ic1 + gx - w`, `h = g a2 t`, `g v2 = w + h` and `w' = g ic2' = g v2 + h`.
    #[inline(always)]
    pub fn tick_low_scaled(&mut self, (a1x2, c2): (f32, f32), gx: f32) -> f32 {
        let t = (self.ic1 + gx) - self.ic2;
        let h = c2 * t;
        let y = self.ic2 + h;
        self.ic2 = y + h;
        self.ic1 = a1x2 * t - self.ic1;
        y
    }

    /// Low-pass a block in place.
    pub fn lowpass(&mut self, c: &SvfCoefs, buf: &mut [f32]) {
        for x in buf.iter_mut() {
            *x = self.tick(c, *x).low;
        }
    }

    /// Band-pass a block in place (unity gain at the centre: band * k).
    pub fn bandpass(&mut self, c: &SvfCoefs, buf: &mut [f32]) {
        for x in buf.iter_mut() {
            *x = self.tick(c, *x).band * c.k;
        }
    }

    /// High-pass a block in place.
    pub fn highpass(&mut self, c: &SvfCoefs, buf: &mut [f32]) {
        for x in buf.iter_mut() {
            *x = self.tick(c, *x).high;
        }
    }
}

/// `tan(x)` for `x >= 0`: Pade (3, 2) up to 1.0 (cutoffs up to 14 kHz; relative error under
/// 0.15 % there and under 1e-6 below 3 kHz), libm above. Coefficients are recomputed for every
/// pad voice every control block, where libm's `tanf` was a measurable share of the render.
#[inline]
pub fn tan_approx(x: f32) -> f32 {
    if x > 1.0 {
        return x.tan();
    }
    let x2 = x * x;
    x * (15.0 - x2) / (15.0 - 6.0 * x2)
}

/// One-pole coefficient for a low-pass at `hz`: `y += a * (x - y)`.
pub fn one_pole_coef(hz: f32) -> f32 {
    1.0 - (-std::f32::consts::TAU * hz / SAMPLE_RATE as f32).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osc::{Tables, lookup, phase_inc};

    fn gain_at(hz: f32, cutoff: f32) -> f32 {
        let c = SvfCoefs::new(cutoff, 0.707);
        let mut f = Svf::default();
        let t = Tables::get();
        let inc = phase_inc(hz);
        let mut phase = 0u32;
        let mut peak = 0.0f32;
        for n in 0..44_100 {
            let y = f.tick(&c, lookup(&t.sine, phase)).low;
            phase = phase.wrapping_add(inc);
            if n > 22_050 {
                peak = peak.max(y.abs());
            }
        }
        peak
    }

    #[test]
    fn tan_approximation_holds_over_the_cutoff_range() {
        for k in 1..=100 {
            let hz = 20.0 + (0.45 * SAMPLE_RATE as f32 - 20.0) * k as f32 / 100.0;
            let x = std::f32::consts::PI * hz / SAMPLE_RATE as f32;
            let rel = (tan_approx(x) / x.tan() - 1.0).abs();
            assert!(rel < 2e-3, "{hz} Hz: {rel}");
        }
    }

    #[test]
    fn state_update_form_matches_the_tpt_form() {
        let c = SvfCoefs::new(900.0, 0.9);
        let (mut a, mut b) = (Svf::default(), Svf::default());
        for n in 0..5000 {
            let x = ((n * 7919 % 1000) as f32 / 500.0) - 1.0;
            let (ya, yb) = (a.tick(&c, x).low, b.tick_low(&c, x));
            assert!((ya - yb).abs() < 1e-4, "{n}: {ya} vs {yb}");
        }
    }

    #[test]
    fn scaled_form_matches_the_tpt_form() {
        for (hz, q) in [(90.0, 0.9), (900.0, 0.9), (3_000.0, 1.5), (14_000.0, 0.707)] {
            let c = SvfCoefs::new(hz, q);
            let (g, a1x2, c2) = c.scaled();
            let (mut a, mut b) = (Svf::default(), Svf::default());
            for n in 0..5000 {
                let x = ((n * 7919 % 1000) as f32 / 500.0) - 1.0;
                let (ya, yb) = (a.tick(&c, x).low, b.tick_low_scaled((a1x2, c2), g * x) / g);
                assert!((ya - yb).abs() < 1e-4, "{hz} Hz, {n}: {ya} vs {yb}");
            }
            let ((a1, a2), (b1, b2)) = (a.state(), b.state());
            assert!((a1 - b1).abs() < 1e-4 && (g * a2 - b2).abs() < 1e-4);
        }
    }

    #[test]
    fn lowpass_passes_low_and_cuts_high() {
        assert!((gain_at(100.0, 1000.0) - 1.0).abs() < 0.02);
        assert!((gain_at(1000.0, 1000.0) - 0.707).abs() < 0.03);
        assert!(gain_at(8000.0, 1000.0) < 0.02);
    }
}
