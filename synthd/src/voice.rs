//! One sounding note: the state every instrument needs, and the per-block render that turns it into
//! stereo samples added onto the bus.
//!
//! A voice is a plain `Copy` struct with fixed-size arrays, so the pool is one preallocated slice
//! and stealing is a copy into a fade slot — nothing on the render path allocates.

use shm_proto::NoteEvent;

use crate::envelope::{Adsr, AdsrShape};
use crate::filter::{Svf, SvfCoefs};
use crate::instruments::Instrument;
use crate::osc::{Noise, Table, Tables};

/// Frames between control-rate updates (filter coefficients, LFOs, gain ramps). Control updates
/// happen on this grid of the station clock, never at the caller's block edges, which is what
/// keeps the output identical for every block size.
pub const BLOCK: usize = 64;

/// What every voice reads at control rate.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// Shared tables.
    pub tables: &'static Tables,
    /// Station brightness 0..=1 (from intensity, smoothed).
    pub brightness: f32,
}

/// Scratch buffers for one block, owned by the renderer and lent to each voice in turn.
#[derive(Debug)]
pub struct Scratch {
    /// Envelope levels.
    pub env: [f32; BLOCK],
    /// Left (or mono) raw signal.
    pub l: [f32; BLOCK],
    /// Right raw signal (stereo instruments only).
    pub r: [f32; BLOCK],
}

impl Scratch {
    /// Zeroed buffers.
    pub fn new() -> Self {
        Scratch {
            env: [0.0; BLOCK],
            l: [0.0; BLOCK],
            r: [0.0; BLOCK],
        }
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

/// One voice of the pool.
#[derive(Clone, Copy, Debug)]
pub struct Voice {
    /// Which instrument this voice plays (decides every other field's meaning).
    pub instrument: Instrument,
    /// Part of the note, as on the wire (stealing and the daemon's pad memory use it).
    pub part: u8,
    /// MIDI pitch of the note.
    pub pitch: u8,
    /// Station frame at which it started (stealing picks the oldest).
    pub started_at: u64,
    /// Velocity 0..=1.
    pub velocity: f32,
    /// Fundamental in Hz.
    pub hz: f32,
    /// Amplitude envelope; `Done` means the voice is free.
    pub env: Adsr,
    /// Overall level times pan, per channel, ramped per frame towards `gain_target`.
    pub gain: [f32; 2],
    /// Per-frame ramp step of `gain` over the current control block.
    pub gain_step: [f32; 2],
    /// Base pan gains (equal power), fixed at note-on.
    pub pan: [f32; 2],
    /// Level of the note (instrument level times velocity curve).
    pub level: f32,
    /// Oscillator phases (a full cycle is 2^32).
    pub phase: [u32; 6],
    /// Oscillator increments per frame.
    pub inc: [u32; 6],
    /// Per-partial or per-operator amplitudes / modulation indices.
    pub amp: [f32; 6],
    /// Per-frame multipliers (exponential decays) or ramp steps of `amp`.
    pub amp_coef: [f32; 6],
    /// Floors the decays approach (`amp = floor + (amp - floor) * coef`).
    pub amp_floor: [f32; 6],
    /// Tables the oscillators read (mip level chosen at note-on).
    pub table: [&'static Table; 3],
    /// Filters (stereo pads use both).
    pub svf: [Svf; 2],
    /// Their coefficients, refreshed at control rate.
    pub coefs: SvfCoefs,
    /// One-pole filter state (bass tone).
    pub one_pole: f32,
    /// One-pole coefficient.
    pub one_pole_coef: f32,
    /// Slow LFO phase, advanced once per control block.
    pub lfo_phase: u32,
    /// LFO increment per control block.
    pub lfo_inc: u32,
    /// Noise source (percussion), seeded from the event.
    pub noise: Noise,
    /// Swept oscillator increment (kick), as f32 for a cheap exponential sweep.
    pub sweep: f32,
    /// Sweep end increment.
    pub sweep_floor: f32,
    /// Sweep multiplier per frame.
    pub sweep_coef: f32,
}

impl Voice {
    /// A free voice.
    pub fn idle(tables: &'static Tables) -> Self {
        Voice {
            instrument: Instrument::WarmPad,
            part: 0,
            pitch: 0,
            started_at: 0,
            velocity: 0.0,
            hz: 0.0,
            env: Adsr::IDLE,
            gain: [0.0; 2],
            gain_step: [0.0; 2],
            pan: [0.0; 2],
            level: 0.0,
            phase: [0; 6],
            inc: [0; 6],
            amp: [0.0; 6],
            amp_coef: [0.0; 6],
            amp_floor: [0.0; 6],
            table: [&tables.sine; 3],
            svf: [Svf::default(); 2],
            coefs: SvfCoefs::new(1000.0, 0.707),
            one_pole: 0.0,
            one_pole_coef: 1.0,
            lfo_phase: 0,
            lfo_inc: 0,
            noise: Noise::new(1),
            sweep: 0.0,
            sweep_floor: 0.0,
            sweep_coef: 1.0,
        }
    }

    /// True while the voice sounds.
    pub fn is_active(&self) -> bool {
        !self.env.is_done()
    }

    /// Current loudness estimate for stealing (envelope times level).
    pub fn loudness(&self) -> f32 {
        self.env.level * self.level
    }

    /// Starts `ev` on this voice at station frame `now`.
    pub fn start(&mut self, instrument: Instrument, ev: &NoteEvent, now: u64, ctx: &Ctx) {
        *self = Voice::idle(ctx.tables);
        self.instrument = instrument;
        self.part = ev.part;
        self.pitch = ev.pitch;
        self.started_at = now;
        self.velocity = f32::from(ev.velocity.clamp(1, 127)) / 127.0;
        self.hz = crate::osc::midi_hz(f32::from(ev.pitch.min(127)));
        let (shape, level, pan) = instrument.start(self, ev, ctx);
        self.env = Adsr::start(shape, u64::from(ev.duration_frames));
        self.level = level * (0.3 + 0.7 * self.velocity);
        let angle = pan.clamp(0.0, 1.0) * std::f32::consts::FRAC_PI_2;
        self.pan = [angle.cos(), angle.sin()];
        // The first control update sets the gains directly (no ramp from zero: the envelope
        // already starts at zero).
        instrument.control(self, ctx);
        let target = self.gain_target(ctx);
        self.gain = target;
        self.gain_step = [0.0; 2];
    }

    /// Gain per channel the instrument wants at the end of this control block.
    fn gain_target(&self, _ctx: &Ctx) -> [f32; 2] {
        let t = self.instrument.tremolo(self);
        [
            self.level * self.pan[0] * (1.0 + t),
            self.level * self.pan[1] * (1.0 - t),
        ]
    }

    /// Renders `out_l.len()` (at most [`BLOCK`]) frames, adding onto the bus. `at_grid` is true
    /// when the first frame lies on the control grid.
    pub fn render(
        &mut self,
        ctx: &Ctx,
        at_grid: bool,
        scratch: &mut Scratch,
        out_l: &mut [f32],
        out_r: &mut [f32],
    ) {
        let n = out_l.len();
        debug_assert!(n <= BLOCK && out_r.len() == n);
        if at_grid {
            self.env.end_if_silent();
            if self.env.is_done() {
                return;
            }
            self.instrument.control(self, ctx);
            let target = self.gain_target(ctx);
            for ch in 0..2 {
                self.gain_step[ch] = (target[ch] - self.gain[ch]) / BLOCK as f32;
            }
        }
        let env = &mut scratch.env[..n];
        self.env.process(env);
        let l = &mut scratch.l[..n];
        let r = &mut scratch.r[..n];
        let stereo = self.instrument.render(self, ctx, l, r);
        let [mut gl, mut gr] = self.gain;
        let [sl, sr] = self.gain_step;
        if stereo {
            for i in 0..n {
                gl += sl;
                gr += sr;
                out_l[i] += l[i] * env[i] * gl;
                out_r[i] += r[i] * env[i] * gr;
            }
        } else {
            for i in 0..n {
                gl += sl;
                gr += sr;
                let s = l[i] * env[i];
                out_l[i] += s * gl;
                out_r[i] += s * gr;
            }
        }
        self.gain = [gl, gr];
    }

    /// Starts a short fade-out (voice stealing): fast enough to free the slot soon, slow enough not
    /// to click.
    pub fn fade_out(&mut self) {
        self.env.force_release(0.006);
    }

    /// Shape of a fresh envelope (instruments build theirs with this).
    pub fn shape(attack: f32, decay: f32, sustain: f32, release: f32) -> AdsrShape {
        AdsrShape {
            attack,
            decay,
            sustain,
            release,
        }
    }
}
