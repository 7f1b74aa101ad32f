//! ADSR amplitude envelope, processed a block at a time.
//!
//! The attack is a linear ramp (its length is known, so it runs as a counted loop); decay and
//! release are one-pole exponentials (one multiply-add per frame). The gate (note-off) is a frame
//! countdown owned by the envelope, so a note releases at its exact frame whatever the block size.

/// Level under which a releasing envelope is finished (-80 dB): the voice is then freed. Stopping
/// here also keeps every state of the voice far above the subnormal range.
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
    /// Which segment is running.
    pub stage: Stage,
    /// Current output.
    pub level: f32,
    /// Increment per frame during the attack.
    attack_step: f32,
    /// Attack frames left.
    attack_left: u32,
    /// Decay multiplier.
    decay_coef: f32,
    /// Sustain target.
    sustain: f32,
    /// Release multiplier.
    release_coef: f32,
    /// Frames until note-off (`u64::MAX`: held until `release()`).
    gate_left: u64,
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
        }
    }

    /// Forces a release now with time constant `tau` seconds (voice stealing fades).
    pub fn force_release(&mut self, tau: f32) {
        if self.stage != Stage::Done {
            self.stage = Stage::Release;
            self.release_coef = decay_coef(tau);
            self.gate_left = 0;
        }
    }

    /// Ends the envelope if it has decayed under [`SILENCE`] (released, or decaying to a zero
    /// sustain). Called only on the control grid of the station clock, so a voice ends at the same
    /// frame whatever block sizes render it.
    pub fn end_if_silent(&mut self) {
        let fading =
            self.stage == Stage::Release || (self.stage == Stage::Decay && self.sustain == 0.0);
        if fading && self.level < SILENCE {
            self.stage = Stage::Done;
            self.level = 0.0;
        }
    }

    /// True once finished.
    pub fn is_done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Fills `out` with the next `out.len()` levels. Frames after the end are zero.
    pub fn process(&mut self, out: &mut [f32]) {
        let mut i = 0;
        let n = out.len();
        while i < n {
            // The run ends at the block end, at note-off, or at the end of the attack.
            let mut run = n - i;
            if self.stage != Stage::Release && self.stage != Stage::Done {
                run = run.min(self.gate_left.min(run as u64) as usize);
                if run == 0 {
                    self.stage = Stage::Release;
                    continue;
                }
            }
            let seg = &mut out[i..i + run];
            match self.stage {
                Stage::Attack => {
                    let len = run.min(self.attack_left as usize);
                    let mut l = self.level;
                    for o in &mut seg[..len] {
                        l += self.attack_step;
                        *o = l;
                    }
                    self.level = l;
                    self.attack_left -= len as u32;
                    if self.attack_left == 0 {
                        self.level = 1.0;
                        self.stage = Stage::Decay;
                    }
                    run = len;
                }
                Stage::Decay => {
                    let (s, c) = (self.sustain, self.decay_coef);
                    let mut l = self.level;
                    for o in seg.iter_mut() {
                        l = s + (l - s) * c;
                        *o = l;
                    }
                    self.level = l;
                }
                Stage::Release => {
                    let c = self.release_coef;
                    let mut l = self.level;
                    for o in seg.iter_mut() {
                        l *= c;
                        *o = l;
                    }
                    self.level = l;
                }
                Stage::Done => {
                    seg.fill(0.0);
                }
            }
            if self.gate_left != u64::MAX {
                self.gate_left = self.gate_left.saturating_sub(run as u64);
            }
            i += run;
        }
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

    fn run(env: &mut Adsr, total: usize, block: usize) -> Vec<f32> {
        let mut out = vec![0.0; total];
        for (i, chunk) in out.chunks_mut(block).enumerate() {
            if (i * block) % 64 == 0 {
                env.end_if_silent();
            }
            env.process(chunk);
        }
        out
    }

    #[test]
    fn block_size_does_not_change_the_curve() {
        let a = run(&mut Adsr::start(SHAPE, 5000), 20_000, 64);
        let b = run(&mut Adsr::start(SHAPE, 5000), 20_000, 8);
        let c = run(&mut Adsr::start(SHAPE, 5000), 20_000, 4416);
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    #[test]
    fn stages_follow_the_shape() {
        let out = run(&mut Adsr::start(SHAPE, 10_000), 40_000, 64);
        assert!(
            (out[440] - 1.0).abs() < 0.01,
            "attack peaks at 1: {}",
            out[440]
        );
        assert!((out[9_999] - 0.5).abs() < 0.01, "sustains: {}", out[9_999]);
        assert!(out[10_000] < out[9_999], "releases at the gate");
        assert_eq!(out[39_999], 0.0, "finishes");
    }

    #[test]
    fn early_note_off_releases_from_the_attack() {
        let mut env = Adsr::start(SHAPE, 100);
        let out = run(&mut env, 30_000, 64);
        assert!(out[99] < 0.3 && out[100] < out[99]);
        assert!(env.is_done());
    }
}
