//! ADSR amplitude envelope, planned once per control block and rendered as a linear ramp.
//!
//! Why ramps: the exact curve (linear attack, one-pole exponential decay and release) is evaluated
//! only at control points — the 64-frame grid of the station clock, and a note's first frame — and
//! the frames between are a straight line `base + (f + 1) * step` of the frame's offset `f` in the
//! grid block. No per-frame recursion is left, so the render loops vectorise, and since every value
//! is a function of the grid offset alone the output is the same whatever blocks the caller uses.
//! Within 1.45 ms the line and the exponential differ by far less than anything audible. The gate
//! (note-off) is a frame countdown: the release starts at its exact frame inside the plan.

use crate::voice::BLOCK;

/// Level under which a fading envelope is finished when nothing better is known (-80 dB).
pub const SILENCE: f32 = 1e-4;

/// Current stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Linear rise to 1.
    Attack,
    /// Exponential approach to the sustain level (sustain 0 makes a natural decay).
    Decay,
    /// Exponential fall to silence after note-off.
    Release,
    /// Finished; the voice is free.
    Done,
}

/// Times of an envelope, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdsrShape {
    /// Linear attack time.
    pub attack: f32,
    /// Decay time: seconds to fall 60 dB of the way towards sustain.
    pub decay: f32,
    /// Sustain level, 0..=1.
    pub sustain: f32,
    /// Release time: seconds to fall 60 dB after note-off.
    pub release: f32,
}

/// Per-sample multiplier of a one-pole exponential with time constant `tau` seconds.
pub fn decay_coef(tau: f32) -> f32 {
    (-1.0 / (tau.max(1e-4) * shm_proto::SAMPLE_RATE as f32)).exp()
}

/// Natural log of 1000: a 60 dB fall is this many time constants.
const LN_1000: f32 = 6.907_755;

/// Per-sample multiplier of a one-pole exponential falling 60 dB in `t60` seconds.
pub fn t60_coef(t60: f32) -> f32 {
    decay_coef(t60 / LN_1000)
}

/// One envelope instance.
#[derive(Clone, Copy, Debug)]
pub struct Adsr {
    /// Which segment is running (at the end of the current plan).
    pub stage: Stage,
    /// Level at the end of the current plan (the next control point).
    pub level: f32,
    /// Increment per frame during the attack.
    attack_step: f32,
    /// Attack frames left.
    attack_left: u32,
    /// Decay multiplier per frame.
    decay_coef: f32,
    /// Sustain target.
    sustain: f32,
    /// Release multiplier per frame.
    release_coef: f32,
    /// Frames until note-off (`u64::MAX`: held until `release()`).
    gate_left: u64,
    /// Level under which a fading envelope ends: -80 dB of full scale for this voice's loudness.
    floor: f32,
    /// Ramp of the current plan: level at grid offset `f` is `base + (f + 1) * step`.
    base: f32,
    /// Ramp step per frame.
    step: f32,
}

impl Adsr {
    /// An envelope that is finished (the state of a free voice).
    pub const IDLE: Adsr = Adsr {
        stage: Stage::Done,
        level: 0.0,
        attack_step: 0.0,
        attack_left: 0,
        decay_coef: 0.0,
        sustain: 0.0,
        release_coef: 0.0,
        gate_left: 0,
        floor: SILENCE,
        base: 0.0,
        step: 0.0,
    };

    /// Starts a note lasting `gate_frames` before its release.
    pub fn start(shape: AdsrShape, gate_frames: u64) -> Self {
        let attack_frames = (shape.attack * shm_proto::SAMPLE_RATE as f32).max(1.0) as u32;
        Adsr {
            stage: Stage::Attack,
            level: 0.0,
            attack_step: 1.0 / attack_frames as f32,
            attack_left: attack_frames,
            decay_coef: t60_coef(shape.decay),
            sustain: shape.sustain.clamp(0.0, 1.0),
            release_coef: t60_coef(shape.release),
            gate_left: gate_frames.max(1),
            floor: SILENCE,
            base: 0.0,
            step: 0.0,
        }
    }

    /// Sets the level under which a fading envelope ends. A voice whose peak output is `loudness`
    /// passes `SILENCE / loudness`, so it is freed once it is 80 dB under full scale, rather than
    /// 80 dB under its own peak (which left pads ringing for seconds under the reverb tail).
    pub fn set_floor(&mut self, floor: f32) {
        self.floor = floor.clamp(SILENCE, 0.05);
    }

    /// Forces a release now with time constant `tau` seconds (voice stealing fades). Takes
    /// effect at the next plan.
    pub fn force_release(&mut self, tau: f32) {
        if self.stage != Stage::Done {
            self.stage = Stage::Release;
            self.release_coef = decay_coef(tau);
            self.gate_left = 0;
        }
    }

    /// Ends the envelope if it has decayed under its floor (released, or decaying to a zero
    /// sustain). Called only at control points, so a voice ends at the same frame whatever block
    /// sizes render it.
    pub fn end_if_silent(&mut self) {
        let fading =
            self.stage == Stage::Release || (self.stage == Stage::Decay && self.sustain == 0.0);
        if fading && self.level < self.floor {
            self.stage = Stage::Done;
            self.level = 0.0;
            self.base = 0.0;
            self.step = 0.0;
        }
    }

    /// True once finished.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Plans the ramp from grid offset `from` to the end of the control block: advances the exact
    /// curve by `BLOCK - from` frames (through any stage change, note-off included).
    pub fn plan(&mut self, from: usize) {
        let m = (BLOCK - from.min(BLOCK - 1)) as u64;
        let start = self.level;
        let mut left = m;
        while left > 0 {
            if matches!(self.stage, Stage::Attack | Stage::Decay) && self.gate_left == 0 {
                self.stage = Stage::Release;
            }
            let run = match self.stage {
                Stage::Attack => {
                    let k = left.min(u64::from(self.attack_left)).min(self.gate_left);
                    self.level += k as f32 * self.attack_step;
                    self.attack_left -= k as u32;
                    if self.attack_left == 0 {
                        self.level = 1.0;
                        self.stage = Stage::Decay;
                    }
                    k
                }
                Stage::Decay => {
                    let k = left.min(self.gate_left);
                    let s = self.sustain;
                    self.level = s + (self.level - s) * pow_frames(self.decay_coef, k);
                    k
                }
                Stage::Release => {
                    self.level *= pow_frames(self.release_coef, left);
                    left
                }
                Stage::Done => {
                    self.level = 0.0;
                    left
                }
            };
            if self.gate_left != u64::MAX {
                self.gate_left = self.gate_left.saturating_sub(run);
            }
            left -= run;
        }
        self.step = (self.level - start) / m as f32;
        self.base = start - from as f32 * self.step;
    }

    /// Level at grid offset `f` of the current plan.
    #[inline(always)]
    pub fn at(&self, f: usize) -> f32 {
        self.base + (f + 1) as f32 * self.step
    }

    /// The plan's ramp as (base, step): level at grid offset `f` is `base + (f + 1) * step`.
    pub fn ramp(&self) -> (f32, f32) {
        (self.base, self.step)
    }
}

/// `c` to the power `k` (frames), by squaring: control rate only. The loop of `powi`'s runtime
/// routine (compiler-builtins' `__powisf2`), so the same roundings, written out: LLVM treats the
/// intrinsic as free to speculate and called it on every plan, even where the plan needed no
/// power.
pub fn pow_frames(c: f32, k: u64) -> f32 {
    let mut bits = k.min(i32::MAX as u64);
    let (mut a, mut r) = (c, 1.0f32);
    loop {
        if bits & 1 == 1 {
            r *= a;
        }
        bits >>= 1;
        if bits == 0 {
            return r;
        }
        a *= a;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: AdsrShape = AdsrShape {
        attack: 0.01,
        decay: 0.1,
        sustain: 0.5,
        release: 0.3,
    };

    /// Renders `total` frames planning at every grid point.
    fn run(env: &mut Adsr, total: usize) -> Vec<f32> {
        let mut out = vec![0.0; total];
        for block in out.chunks_mut(BLOCK) {
            env.end_if_silent();
            env.plan(0);
            for (f, o) in block.iter_mut().enumerate() {
                *o = if env.is_done() { 0.0 } else { env.at(f) };
            }
        }
        out
    }

    #[test]
    fn powers_are_exactly_powi() {
        for c in [0.5f32, 0.9, 0.999_9, 0.999_999, 1.0, 0.0] {
            for k in [0u64, 1, 2, 37, 63, 64, 1000, 123_457] {
                let want = std::hint::black_box(c).powi(std::hint::black_box(k as i32));
                assert_eq!(pow_frames(c, k).to_bits(), want.to_bits(), "{c}^{k}");
            }
        }
    }

    #[test]
    fn stages_follow_the_shape() {
        let out = run(&mut Adsr::start(SHAPE, 10_000), 40_000);
        assert!(
            (out[440] - 1.0).abs() < 0.02,
            "attack peaks at 1: {}",
            out[440]
        );
        assert!((out[9_999] - 0.5).abs() < 0.01, "sustains: {}", out[9_999]);
        assert!(out[10_100] < out[9_999], "releases at the gate");
        assert_eq!(out[39_999], 0.0, "finishes");
    }

    #[test]
    fn ramps_track_the_exact_curve() {
        let mut env = Adsr::start(SHAPE, 10_000);
        let out = run(&mut env, 20_000);
        // Exact decay at frame 2000 (attack of 441 frames, then exponential towards 0.5).
        let c = t60_coef(0.1);
        let want = 0.5 + 0.5 * c.powi(2000 - 441 + 1);
        assert!((out[2000] - want).abs() < 2e-3, "{} vs {want}", out[2000]);
    }

    #[test]
    fn early_note_off_releases_from_the_attack() {
        let mut env = Adsr::start(SHAPE, 100);
        let out = run(&mut env, 30_000);
        assert!(out[99] < 0.3 && out[200] < out[127]);
        assert!(env.is_done());
    }

    #[test]
    fn a_higher_floor_ends_sooner() {
        let mut a = Adsr::start(SHAPE, 100);
        let mut b = Adsr::start(SHAPE, 100);
        b.set_floor(1e-2);
        let (oa, ob) = (run(&mut a, 40_000), run(&mut b, 40_000));
        let end = |o: &[f32]| o.iter().rposition(|&x| x > 0.0).unwrap();
        assert!(end(&ob) < end(&oa));
    }
}
