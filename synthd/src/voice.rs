//! One sounding note: the state every instrument needs, and the per-block render that turns it into
//! stereo samples added onto the bus.
//!
//! A voice is a plain `Copy` struct with fixed-size arrays, so the pool is one preallocated slice
//! and stealing is a copy into a fade slot — nothing on the render path allocates.

use shm_proto::NoteEvent;

use crate::envelope::{Adsr, AdsrShape, SILENCE};
use crate::filter::{Svf, SvfCoefs};
use crate::instruments::Instrument;
use crate::osc::{Noise, Table, Tables};

/// Frames between control-rate updates (filter coefficients, LFOs, gain ramps). Control updates
/// happen on this grid of the station clock, never at the caller's block edges, which is what
/// keeps the output identical for every block size.
pub const BLOCK: usize = 64;

/// `f + 1` for every grid offset `f`: the ramp index of the control-rate lines.
pub const RAMP_INDEX: [f32; BLOCK] = {
    let mut a = [0.0f32; BLOCK];
    let mut i = 0;
    while i < BLOCK {
        a[i] = (i + 1) as f32;
        i += 1;
    }
    a
};

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
    /// Left (or mono) raw signal.
    pub l: [f32; BLOCK],
    /// Right raw signal (stereo instruments only).
    pub r: [f32; BLOCK],
}

impl Scratch {
    /// Zeroed buffers.
    pub fn new() -> Self {
        Scratch {
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
    /// Overall level times pan, per channel, at the next control point.
    pub gain: [f32; 2],
    /// Amplitude (envelope times gain) per channel over the current control block, a straight
    /// line: at grid offset `f` it is `amp_base + (f + 1) * amp_step`.
    pub amp_base: [f32; 2],
    /// Per-frame step of that line.
    pub amp_step: [f32; 2],
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
    /// Differentiated-parabola state of the pad oscillators (the previous frame's squared ramp).
    pub dpw: [f32; 3],
    /// Derivative scale of each pad oscillator in the pad bank's units (its mix folded in),
    /// fixed at note-on: three divisions per voice and segment less for the pad bank.
    pub dpw_scale: [f32; 3],
    /// Tables the oscillators read (mip level chosen at note-on).
    pub table: [&'static Table; 3],
    /// Filters (stereo pads use both; the pad bank keeps their second state times the
    /// filter's `g`, see `Svf::tick_low_scaled`).
    pub svf: [Svf; 2],
    /// Their coefficients, refreshed at control rate.
    pub coefs: SvfCoefs,
    /// One-pole filter state (bass tone).
    pub one_pole: f32,
    /// One-pole coefficient.
    pub one_pole_coef: f32,
    /// Grid offset of the current control point (0, or the note's first frame in its first
    /// block): instruments with their own control-rate ramps start them here.
    pub ctl_from: u8,
    /// Raw signal of the current control block, for instruments that render a whole block at
    /// their control point (the bass: its one-pole then steps four frames at a time).
    pub block: [f32; BLOCK],
    /// Control updates so far (instruments that refresh slow parameters less often count here).
    pub control_count: u32,
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
            amp_base: [0.0; 2],
            amp_step: [0.0; 2],
            pan: [0.0; 2],
            level: 0.0,
            phase: [0; 6],
            inc: [0; 6],
            amp: [0.0; 6],
            amp_coef: [0.0; 6],
            amp_floor: [0.0; 6],
            dpw: [0.0; 3],
            dpw_scale: [0.0; 3],
            table: [&tables.sine; 3],
            svf: [Svf::default(); 2],
            coefs: SvfCoefs::new(1000.0, 0.707),
            one_pole: 0.0,
            one_pole_coef: 1.0,
            ctl_from: 0,
            block: [0.0; BLOCK],
            control_count: 0,
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
        // Free the voice once it is 80 dB under full scale (not under its own peak).
        self.env
            .set_floor(SILENCE / (self.level * crate::master::MASTER_GAIN).max(1e-6));
        let angle = pan.clamp(0.0, 1.0) * std::f32::consts::FRAC_PI_2;
        self.pan = [angle.cos(), angle.sin()];
        // A note starting on the grid gets its control update and plans from its first render;
        // one starting inside a control block gets them here, up to the next grid point. The
        // gains start at their target (no ramp from zero: the envelope starts at zero).
        let from = (now % BLOCK as u64) as usize;
        self.ctl_from = from as u8;
        if from != 0 {
            instrument.control(self, ctx);
        }
        let target = self.gain_target();
        self.gain = target;
        if from != 0 {
            self.env.plan(from);
            self.set_amp_ramp(from, target, target);
        }
    }

    /// Gain per channel the instrument wants at the end of this control block.
    fn gain_target(&self) -> [f32; 2] {
        let t = self.instrument.tremolo(self);
        [
            self.level * self.pan[0] * (1.0 + t),
            self.level * self.pan[1] * (1.0 - t),
        ]
    }

    /// Sets the amplitude line from grid offset `from` to the next grid point: envelope times gain
    /// at both ends (the gain moving from `gain_from` to `gain_to`), straight in between.
    fn set_amp_ramp(&mut self, from: usize, gain_from: [f32; 2], gain_to: [f32; 2]) {
        let (eb, es) = self.env.ramp();
        let e0 = eb + from as f32 * es;
        let e1 = eb + BLOCK as f32 * es;
        for ch in 0..2 {
            let a0 = e0 * gain_from[ch];
            let step = (e1 * gain_to[ch] - a0) / (BLOCK - from) as f32;
            self.amp_step[ch] = step;
            self.amp_base[ch] = a0 - from as f32 * step;
        }
    }

    /// Control-rate work at the start of a segment at grid offset `f0` (only when `f0` is 0:
    /// end a silent voice, instrument control, gain and envelope ramps to the next grid point).
    /// False when the voice has ended.
    pub fn begin(&mut self, ctx: &Ctx, f0: usize) -> bool {
        if f0 == 0 {
            self.env.end_if_silent();
            if self.env.is_done() {
                return false;
            }
            self.ctl_from = 0;
            self.instrument.control(self, ctx);
            let target = self.gain_target();
            self.env.plan(0);
            self.set_amp_ramp(0, self.gain, target);
            self.gain = target;
        }
        true
    }

    /// Renders `out_l.len()` frames starting at grid offset `f0` (the frames must not cross the
    /// next grid point), adding onto the bus. Control-rate work happens when `f0` is 0.
    pub fn render(
        &mut self,
        ctx: &Ctx,
        f0: usize,
        scratch: &mut Scratch,
        out_l: &mut [f32],
        out_r: &mut [f32],
    ) {
        let n = out_l.len();
        debug_assert!(f0 + n <= BLOCK && out_r.len() == n);
        if !self.begin(ctx, f0) {
            return;
        }
        if crate::pad_bank::PadBank::takes(self.instrument) {
            crate::pad_bank::render_one(self, f0, out_l, out_r);
            return;
        }
        let l = &mut scratch.l[..n];
        let r = &mut scratch.r[..n];
        let stereo = self.instrument.render(self, ctx, f0, l, r);
        // Envelope times gain is a straight line over the control block: one multiply-add per
        // frame from a constant ramp index, no recursion, so this vectorises.
        let idx = &RAMP_INDEX[f0..f0 + n];
        let [bl, br] = self.amp_base;
        let [sl, sr] = self.amp_step;
        if stereo {
            for i in 0..n {
                out_l[i] += l[i] * (bl + idx[i] * sl);
                out_r[i] += r[i] * (br + idx[i] * sr);
            }
        } else {
            for i in 0..n {
                out_l[i] += l[i] * (bl + idx[i] * sl);
                out_r[i] += l[i] * (br + idx[i] * sr);
            }
        }
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
