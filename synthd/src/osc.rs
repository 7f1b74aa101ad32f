//! Oscillator building blocks: band-limited wavetables, a sine table, a four-lane polynomial sine,
//! phase accumulators and a noise source.
//!
//! Two ways to a band-limited oscillator, chosen per use. Mip-mapped tables (one per octave,
//! holding only the harmonics that fit below 19 kHz for the highest note they serve) cannot alias
//! at all and cost two loads and a lerp; they serve the scalar paths (the bell, the shimmer, the
//! electric piano, LFOs). But a table read is a gather, which SSE2 lacks, so the hot paths that
//! run four frames or four voices per vector compute instead: [`sin_unit`] (a folded degree-9
//! polynomial, -108 dB error) for the piano and the bass, and DPW saws for the pads
//! (`crate::pad_bank`). The tables are built once per process (a few ms) and shared read-only by
//! every station.

use std::sync::OnceLock;

use wide::{f32x4, i32x4};

/// Samples per table cycle. 2,048 holds the 475 harmonics of the lowest table with room to spare,
/// and linear interpolation error on the sine table stays below -110 dB.
pub const TABLE_LEN: usize = 2048;
/// Right shift from a 32-bit phase to a table index.
const INDEX_SHIFT: u32 = 32 - 11;
/// Mask of the fractional bits below the table index.
const FRAC_MASK: u32 = (1 << INDEX_SHIFT) - 1;
/// Scale of those fractional bits to `0.0..1.0`.
const FRAC_SCALE: f32 = 1.0 / (1u32 << INDEX_SHIFT) as f32;
/// Mip levels: level `k` serves fundamentals up to `40 * 2^k` Hz (40 Hz .. 41 kHz).
pub const MIP_LEVELS: usize = 11;
/// Highest harmonic frequency any table contains: nothing reaches Nyquist (22.05 kHz).
const HARMONIC_CEILING_HZ: f64 = 19_000.0;

/// One cycle plus a guard sample (a copy of sample 0) so interpolation never wraps.
pub type Table = [f32; TABLE_LEN + 1];

/// Waveform families with mip-mapped tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wave {
    /// All harmonics at 1/h: bright, for pads.
    Saw,
    /// Odd harmonics at 1/h^2 with alternating sign: soft, for glass pads and bass body.
    Triangle,
}

/// Every table the instruments read, built once per process.
#[derive(Debug)]
pub struct Tables {
    /// Plain sine (FM operators, partials, LFOs).
    pub sine: Box<Table>,
    /// `MIP_LEVELS` band-limited saws.
    saw: Box<[Table]>,
    /// `MIP_LEVELS` band-limited triangles.
    triangle: Box<[Table]>,
}

static TABLES: OnceLock<Tables> = OnceLock::new();

impl Tables {
    /// The process-wide tables (built on first use; call from a constructor, never the render path).
    pub fn get() -> &'static Tables {
        TABLES.get_or_init(Tables::build)
    }

    fn build() -> Tables {
        // Exact sine of every table position, reused for every harmonic: sin(2*pi*h*n/N) is
        // sine[(h*n) mod N].
        let exact: Vec<f64> = (0..TABLE_LEN)
            .map(|n| (std::f64::consts::TAU * n as f64 / TABLE_LEN as f64).sin())
            .collect();
        let mut sine = Box::new([0.0f32; TABLE_LEN + 1]);
        for (n, s) in sine.iter_mut().enumerate() {
            *s = exact[n % TABLE_LEN] as f32;
        }
        let family = |amp: &dyn Fn(usize) -> f64| -> Box<[Table]> {
            let mut levels = vec![[0.0f32; TABLE_LEN + 1]; MIP_LEVELS];
            let mut acc = vec![0.0f64; TABLE_LEN];
            for (k, level) in levels.iter_mut().enumerate() {
                let top = mip_top_hz(k);
                let harmonics = ((HARMONIC_CEILING_HZ / top) as usize).clamp(1, TABLE_LEN / 2 - 1);
                acc.iter_mut().for_each(|a| *a = 0.0);
                for h in 1..=harmonics {
                    let a = amp(h);
                    if a == 0.0 {
                        continue;
                    }
                    for (n, v) in acc.iter_mut().enumerate() {
                        *v += a * exact[(h * n) % TABLE_LEN];
                    }
                }
                for (n, s) in level.iter_mut().enumerate() {
                    *s = acc[n % TABLE_LEN] as f32;
                }
            }
            levels.into_boxed_slice()
        };
        // Saw: 2/pi * sum sin(h x)/h, peak about 1 (plus Gibbs overshoot).
        let saw = family(&|h| 2.0 / std::f64::consts::PI / h as f64);
        // Triangle: 8/pi^2 * sum (-1)^((h-1)/2) sin(h x)/h^2 over odd h, peak 1.
        let triangle = family(&|h| {
            if h % 2 == 0 {
                0.0
            } else {
                let sign = if (h / 2) % 2 == 0 { 1.0 } else { -1.0 };
                sign * 8.0 / (std::f64::consts::PI * std::f64::consts::PI) / (h * h) as f64
            }
        });
        Tables {
            sine,
            saw,
            triangle,
        }
    }

    /// The table of `wave` for a note whose highest played frequency is `max_hz`.
    pub fn wave(&self, wave: Wave, max_hz: f32) -> &Table {
        let level = mip_level(max_hz);
        match wave {
            Wave::Saw => &self.saw[level],
            Wave::Triangle => &self.triangle[level],
        }
    }
}

/// Highest fundamental mip level `k` serves.
fn mip_top_hz(k: usize) -> f64 {
    40.0 * f64::from(1u32 << k)
}

/// Smallest level whose top is at or above `hz`.
fn mip_level(hz: f32) -> usize {
    (0..MIP_LEVELS)
        .find(|&k| mip_top_hz(k) >= f64::from(hz))
        .unwrap_or(MIP_LEVELS - 1)
}

/// Interpolated table read at a 32-bit phase (a full cycle is 2^32). Branch-free; the index is at
/// most `TABLE_LEN - 1` by construction so the bounds checks fold away.
#[inline(always)]
pub fn lookup(table: &Table, phase: u32) -> f32 {
    let i = (phase >> INDEX_SHIFT) as usize;
    let frac = (phase & FRAC_MASK) as f32 * FRAC_SCALE;
    let a = table[i];
    let b = table[i + 1];
    a + (b - a) * frac
}

/// Phase increment per frame for `hz` at the system sample rate.
pub fn phase_inc(hz: f32) -> u32 {
    let cycles = f64::from(hz) / f64::from(shm_proto::SAMPLE_RATE);
    (cycles.clamp(0.0, 0.499) * 4_294_967_296.0) as u32
}

/// Converts a phase offset in cycles (|x| < 128) to a wrapping 32-bit phase offset. Used for FM
/// (phase modulation) without `floor`, which would not vectorise.
#[inline(always)]
pub fn cycles_to_phase(x: f32) -> u32 {
    ((x * 16_777_216.0) as i32 as u32) << 8
}

/// The phase read as signed, folded to a quarter wave: `b` in `-0.25..=0.25` cycles with
/// `sin(2 pi phase) = sin(2 pi b)` (and a sine-phase triangle is `4 b`). Four lanes.
#[inline(always)]
pub fn quarter_fold(phase: i32x4) -> f32x4 {
    // The phase read as signed is u in -0.5..0.5 cycles, the same angle as the unsigned phase.
    let u = (phase >> 8u32).round_float() * f32x4::splat(1.0 / 16_777_216.0);
    let a = u.abs();
    // `fast_min` is a plain `minps`: `min`'s NaN rule would cost a compare and a blend, and no
    // NaN reaches here (`a` is finite).
    a.fast_min(f32x4::splat(0.5) - a) | (u & f32x4::splat(-0.0))
}

/// Four consecutive frames' phases from `phase` stepping by `inc` (wrapping), as lanes.
#[inline(always)]
pub fn phase_lanes(phase: u32, inc: u32) -> i32x4 {
    let at = |k: u32| phase.wrapping_add(inc.wrapping_mul(k)) as i32;
    i32x4::new([at(0), at(1), at(2), at(3)])
}

/// `sin(2 pi t)` for 32-bit phases (a full cycle is 2^32) on four lanes: folded to a quarter
/// wave and a degree-9 polynomial (error under 4e-6, -108 dB). Table lookups would need gathers.
#[inline(always)]
pub fn sin_unit(phase: i32x4) -> f32x4 {
    let b = quarter_fold(phase);
    let b2 = b * b;
    // Taylor coefficients of sin(2 pi b).
    const C: [f32; 5] = [6.283_185_5, -41.341_7, 81.605_25, -76.705_86, 42.058_69];
    b * (f32x4::splat(C[0])
        + b2 * (f32x4::splat(C[1])
            + b2 * (f32x4::splat(C[2]) + b2 * (f32x4::splat(C[3]) + b2 * f32x4::splat(C[4])))))
}

/// Frequency of MIDI note `pitch` (A4 = 69 = 440 Hz).
pub fn midi_hz(pitch: f32) -> f32 {
    440.0 * ((pitch - 69.0) / 12.0).exp2()
}

/// Ratio of `cents` of detuning.
pub fn cents(c: f32) -> f32 {
    (c / 1200.0).exp2()
}

/// xorshift32 white noise in `-1.0..1.0`: deterministic per seed, so a note renders the same
/// whatever the block size.
#[derive(Clone, Copy, Debug)]
pub struct Noise {
    /// Generator state, never zero.
    state: u32,
}

impl Noise {
    /// A generator from any seed (zero is remapped).
    pub fn new(seed: u32) -> Self {
        let mut state = seed ^ 0x9E37_79B9;
        if state == 0 {
            state = 1;
        }
        Noise { state }
    }

    /// Next sample.
    #[inline(always)]
    pub fn sample(&mut self) -> f32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        // 23 random mantissa bits in [1, 2), mapped to [-1, 1).
        f32::from_bits((x >> 9) | 0x3F80_0000) * 2.0 - 3.0
    }
}

/// A small deterministic hash to derive per-note variation (LFO rates, pan) from event fields.
pub fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7FEB_352D);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846C_A68B);
    x ^= x >> 16;
    x
}

/// `hash32` mapped to `0.0..1.0`.
pub fn hash_unit(x: u32) -> f32 {
    (hash32(x) >> 8) as f32 / (1u32 << 24) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_lookup_is_accurate() {
        let t = Tables::get();
        for k in 0..1000u32 {
            let phase = k.wrapping_mul(4_294_967);
            let want = (phase as f64 / 4_294_967_296.0 * std::f64::consts::TAU).sin();
            assert!((f64::from(lookup(&t.sine, phase)) - want).abs() < 3e-6);
        }
    }

    #[test]
    fn tables_hold_no_harmonic_above_the_ceiling() {
        // A note at the top of each level: its highest harmonic stays under 19 kHz.
        for k in 0..MIP_LEVELS {
            let top = mip_top_hz(k);
            let harmonics = ((HARMONIC_CEILING_HZ / top) as usize).max(1);
            assert!(harmonics as f64 * top <= 19_000.0 || harmonics == 1);
            assert_eq!(mip_level(top as f32), k);
        }
    }

    #[test]
    fn tables_are_bounded() {
        let t = Tables::get();
        for wave in [Wave::Saw, Wave::Triangle] {
            for hz in [30.0, 100.0, 1000.0, 8000.0] {
                let peak = t.wave(wave, hz).iter().fold(0.0f32, |m, v| m.max(v.abs()));
                assert!(peak > 0.5 && peak < 1.25, "{wave:?} {hz}: {peak}");
            }
        }
    }

    #[test]
    fn noise_is_centred_and_bounded() {
        let mut n = Noise::new(7);
        let mut sum = 0.0f64;
        for _ in 0..100_000 {
            let v = n.sample();
            assert!((-1.0..1.0).contains(&v));
            sum += f64::from(v);
        }
        assert!((sum / 100_000.0).abs() < 0.01);
    }

    #[test]
    fn fm_phase_offset_wraps() {
        assert_eq!(cycles_to_phase(0.25), 1 << 30);
        assert_eq!(cycles_to_phase(-0.25), 3 << 30);
        assert_eq!(cycles_to_phase(1.25), 1 << 30);
    }
}
