//! The host's table of device voices for the torch backend: note-on through the native code, slot
//! allocation per station and voice family, and the per-chunk parameter rows the device renders
//! from.
//!
//! The device keeps no state between chunks: a voice's oscillator phase at any frame is
//! `phase + frames * inc` (32-bit wrapping, exact in i64), and its envelope, decays, LFO steps and
//! filter are closed forms of its age, so the host uploads one row per voice per chunk and nothing
//! drifts apart.

use shm_proto::{CHUNK_FRAMES, NoteEvent, SAMPLE_RATE};

use crate::envelope::{AdsrShape, SILENCE, decay_coef, t60_coef};
use crate::instruments::Instrument;
use crate::osc::Tables;
use crate::voice::{BLOCK, Ctx, Voice};

/// The voice families the device renders, each with its own oscillator code and its own slots
/// (the percussion stays native: see the module docs of [`super`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Warm and glass pads: DPW saws and triangles.
    Pad,
    /// Round bass: shaped sine and triangle through its one-pole (closed form on the device).
    Bass,
    /// Soft piano: two-operator FM with control-rate index and level decays.
    Piano,
    /// Electric piano: table FM with a decaying tine and an autopan.
    Electric,
    /// Bell: five decaying inharmonic partials.
    Bell,
    /// Shimmer: three partials swelling with a slow LFO, stereo.
    Shimmer,
}

impl Family {
    /// Every family, in the order of the slots and the device rows.
    pub const ALL: [Family; 6] = [
        Family::Pad,
        Family::Bass,
        Family::Piano,
        Family::Electric,
        Family::Bell,
        Family::Shimmer,
    ];

    /// The family that plays `instrument` on the device (`None`: it stays native).
    pub fn of(instrument: Instrument) -> Option<Family> {
        Some(match instrument {
            Instrument::WarmPad | Instrument::GlassPad => Family::Pad,
            Instrument::RoundBass => Family::Bass,
            Instrument::SoftPiano => Family::Piano,
            Instrument::ElectricPiano => Family::Electric,
            Instrument::Bell => Family::Bell,
            Instrument::Shimmer => Family::Shimmer,
            Instrument::Kick | Instrument::Brush | Instrument::Shaker | Instrument::Click => {
                return None;
            }
        })
    }

    /// True if the route sends this family's notes to the device: every family, each within
    /// 1e-4 of native (the parity tests). Kept as the one switch should a family have to go back
    /// to the native engine.
    pub const fn routed(self) -> bool {
        true
    }

    /// Voice slots per station. A Focus station sounds up to about a dozen pad voices (two
    /// overlapping four-note chords and their releases), one or two basses, a melody whose notes
    /// ring for seconds and a bell now and then; the parity and routing tests check that no slot
    /// is stolen.
    pub const fn slots(self) -> usize {
        match self {
            Family::Pad => 16,
            Family::Bass => 6,
            Family::Piano | Family::Electric => 12,
            Family::Bell | Family::Shimmer => 8,
        }
    }

    /// First slot of the family in a station's slots (and first row of its block of rows).
    pub const fn offset(self) -> usize {
        let mut off = 0;
        let mut k = 0;
        while k < Self::ALL.len() {
            if Self::ALL[k] as u8 == self as u8 {
                return off;
            }
            off += Self::ALL[k].slots();
            k += 1;
        }
        off
    }
}

/// Voice slots per station, every family.
pub const SLOTS: usize = Family::Shimmer.offset() + Family::Shimmer.slots();

/// i64 columns of a row: start frame relative to the window origin (negative: started before).
pub const I_START: usize = 0;
/// Attack frames.
pub const I_ATTACK: usize = 1;
/// Gate frames (release starts at this age).
pub const I_GATE: usize = 2;
/// Age of a forced release (the bell's end), [`NEVER`] if none.
pub const I_CUT: usize = 3;
/// 1 for a voice, 0 for an empty slot.
pub const I_ACTIVE: usize = 4;
/// LFO phase at the note's first control call (32 bits).
pub const I_LFO: usize = 5;
/// LFO increment per control call.
pub const I_LFO_INC: usize = 6;
/// Oscillator phases at the window origin (5 columns).
pub const I_PHASE: usize = 7;
/// Oscillator increments (5 columns).
pub const I_INC: usize = 12;
/// i64 parameters per voice row.
pub const I_PARAMS: usize = 17;

/// f32 columns: level times pan, left and right (2 columns).
pub const F_GAIN: usize = 0;
/// Attack increment per frame.
pub const F_ATTACK_STEP: usize = 2;
/// Sustain level.
pub const F_SUSTAIN: usize = 3;
/// ln of the per-frame decay multiplier.
pub const F_LN_DECAY: usize = 4;
/// ln of the per-frame release multiplier.
pub const F_LN_RELEASE: usize = 5;
/// Level under which a fading voice ends.
pub const F_FLOOR: usize = 6;
/// ln of the per-frame multiplier of the forced release.
pub const F_LN_CUT: usize = 7;
/// First family-specific column (see [`DeviceVoice::write_row`]).
pub const F_X: usize = 8;
/// f32 parameters per voice row.
pub const F_PARAMS: usize = 18;

/// Ages at or beyond this never come (an unset cut, a held gate): exact in f32.
pub const NEVER: i64 = 1 << 24;

/// Events later than this (frames behind the clock) are dropped, as in the native renderer.
const MAX_LATENESS: u64 = SAMPLE_RATE as u64;

/// One voice as the device needs it.
#[derive(Clone, Copy, Debug)]
pub struct DeviceVoice {
    /// True while the slot holds a note (it may be silent already; the device knows).
    pub busy: bool,
    /// Which instrument (decides the meaning of the family columns).
    pub instrument: Instrument,
    /// Station frame of the note's first sample.
    pub start: u64,
    /// Frame after which the voice is certainly silent and its slot can be reused.
    pub busy_until: u64,
    /// Oscillator phases at `start` (a cycle is 2^32).
    pub phase: [u32; 5],
    /// Oscillator increments per frame.
    pub inc: [u32; 5],
    /// LFO phase at the first control call, and its increment per call.
    pub lfo: [u32; 2],
    /// Level times pan, left and right (before any tremolo).
    pub gain: [f32; 2],
    /// Attack length, frames.
    pub attack: u32,
    /// Attack increment per frame.
    pub attack_step: f32,
    /// Sustain level.
    pub sustain: f32,
    /// ln of the per-frame decay multiplier (of the f32 multiplier native uses).
    pub ln_decay: f32,
    /// ln of the per-frame release multiplier.
    pub ln_release: f32,
    /// Frames before the release starts.
    pub gate: u64,
    /// Age at which a forced release starts ([`NEVER`]: none).
    pub cut: u64,
    /// ln of the forced release's per-frame multiplier.
    pub ln_cut: f32,
    /// Level under which a fading voice ends.
    pub floor: f32,
    /// The family's own parameters (columns `F_X..`).
    pub x: [f32; F_PARAMS - F_X],
}

impl Default for DeviceVoice {
    fn default() -> Self {
        DeviceVoice {
            busy: false,
            instrument: Instrument::WarmPad,
            start: 0,
            busy_until: 0,
            phase: [0; 5],
            inc: [0; 5],
            lfo: [0; 2],
            gain: [0.0; 2],
            attack: 1,
            attack_step: 0.0,
            sustain: 0.0,
            ln_decay: 0.0,
            ln_release: 0.0,
            gate: 1,
            cut: NEVER as u64,
            ln_cut: 0.0,
            floor: 0.0,
            x: [0.0; F_PARAMS - F_X],
        }
    }
}

/// ln of an f32 multiplier, in f64 (so the device's `exp(age * ln c)` follows native's powers of
/// the very f32 `c`).
fn ln(c: f32) -> f32 {
    f64::from(c).ln() as f32
}

/// Where native's f32 decay `x = floor + (x - floor) * c` (the soft piano's, per control block
/// with `c` the block's multiplier) stops moving: once a step is under half a unit in the last
/// place of `x`, rounding returns `x` itself, so native's value stays a little above the floor for
/// good while the closed form goes on falling. The map is monotone, so the largest fixed point
/// under the start is the same whatever the trajectory: iterate the native map from a few stall
/// distances above the floor (at most a few tens of thousands of steps, at note-on).
fn decay_stall(v0: f32, floor: f32, c: f32) -> f32 {
    if v0 <= floor || !(0.0..1.0).contains(&c) {
        return floor;
    }
    let ulp = f32::from_bits(floor.abs().to_bits() + 1) - floor.abs();
    let mut x = v0.min(floor + 4.0 * ulp / (1.0 - c));
    for _ in 0..1 << 20 {
        let next = floor + (x - floor) * c;
        if next == x {
            break;
        }
        x = next;
    }
    x
}

/// The instrument's note-on alone on a fresh voice: native [`Voice::start`]'s first steps (the
/// fields the instruments read), then the instrument's `start`, without the control call an
/// off-grid start adds (which would advance phases and LFOs: the device counts those itself).
pub(crate) fn note_on_state(
    instrument: Instrument,
    ev: &NoteEvent,
    now: u64,
    ctx: &Ctx,
) -> (Voice, AdsrShape) {
    let mut v = Voice::idle(ctx.tables);
    v.instrument = instrument;
    v.part = ev.part;
    v.pitch = ev.pitch;
    v.started_at = now;
    v.velocity = f32::from(ev.velocity.clamp(1, 127)) / 127.0;
    v.hz = crate::osc::midi_hz(f32::from(ev.pitch.min(127)));
    let (shape, _, _) = instrument.start(&mut v, ev, ctx);
    (v, shape)
}

impl DeviceVoice {
    /// The voice `ev` starts at station frame `now` (the native note-on, kept for the device).
    pub fn start(instrument: Instrument, ev: &NoteEvent, now: u64, ctx: &Ctx) -> DeviceVoice {
        // Level and pan as native computes them, on a voice started by the native code.
        let mut v = Voice::idle(ctx.tables);
        v.start(instrument, ev, now, ctx);
        let (s, shape) = note_on_state(instrument, ev, now, ctx);
        let attack = (shape.attack * SAMPLE_RATE as f32).max(1.0) as u32;
        let decay = t60_coef(shape.decay);
        let release = t60_coef(shape.release);
        let floor =
            (SILENCE / (v.level * crate::master::MASTER_GAIN).max(1e-6)).clamp(SILENCE, 0.05);
        let gate = u64::from(ev.duration_frames).max(1);
        let ln_release = f64::from(release).ln();
        // Frames for a fall from at most 1 to the floor at a per-frame ln multiplier.
        let tail = |ln_c: f64| (f64::from(floor).ln() / ln_c).ceil().max(0.0) as u64;
        let mut d = DeviceVoice {
            busy: true,
            instrument,
            start: now,
            busy_until: now + gate + tail(ln_release) + 2 * BLOCK as u64,
            phase: [0; 5],
            inc: [0; 5],
            lfo: [s.lfo_phase, s.lfo_inc],
            gain: [v.level * v.pan[0], v.level * v.pan[1]],
            attack,
            attack_step: 1.0 / attack as f32,
            sustain: shape.sustain.clamp(0.0, 1.0),
            ln_decay: f64::from(decay).ln() as f32,
            ln_release: ln_release as f32,
            gate,
            cut: NEVER as u64,
            ln_cut: 0.0,
            floor,
            x: [0.0; F_PARAMS - F_X],
        };
        d.phase.copy_from_slice(&s.phase[..5]);
        d.inc.copy_from_slice(&s.inc[..5]);
        let x = &mut d.x;
        match Family::of(instrument) {
            Some(Family::Pad) | None => {
                for o in 0..3 {
                    x[o] = 1_073_741_824.0 / s.inc[o].max(1) as f32;
                }
                x[1] *= s.amp[2];
                x[3] = if instrument == Instrument::GlassPad {
                    1.0
                } else {
                    0.0
                };
            }
            Some(Family::Bass) => {
                let a = s.one_pole_coef;
                x[..4].copy_from_slice(&[s.amp[0], s.amp[1], a, ln(1.0 - a)]);
            }
            Some(Family::Piano) => {
                // Native steps these once per control block, by `c^64` on whole blocks.
                let block = |k: usize| s.amp_coef[k].powi(BLOCK as i32);
                x[..8].copy_from_slice(&[
                    s.amp[0],
                    s.amp_floor[0],
                    ln(s.amp_coef[0]),
                    s.amp[1],
                    s.amp_floor[1],
                    ln(s.amp_coef[1]),
                    decay_stall(s.amp[0], s.amp_floor[0], block(0)),
                    decay_stall(s.amp[1], s.amp_floor[1], block(1)),
                ]);
            }
            Some(Family::Electric) => {
                // Native restarts these per-frame decays from their exact values at every
                // control point (`keys::control_electric`): no stall, nothing to follow but the
                // exponential.
                x[..5].copy_from_slice(&[
                    s.amp[0],
                    s.amp_floor[0],
                    ln(s.amp_coef[0]),
                    s.amp[2],
                    ln(s.amp_coef[2]),
                ]);
            }
            Some(Family::Bell) => {
                for k in 0..5 {
                    x[k] = s.amp[k];
                    x[5 + k] = ln(s.amp_coef[k]);
                }
                // Native's `control_bell` forces a 50 ms release at the first control point
                // where the two fundamentals have fallen under -60 dB.
                let first = (BLOCK as u64 - now % BLOCK as u64) % BLOCK as u64;
                let sum_at = |age: u64| {
                    f64::from(s.amp[0]) * f64::from(s.amp_coef[0]).powf(age as f64)
                        + f64::from(s.amp[1]) * f64::from(s.amp_coef[1]).powf(age as f64)
                };
                let (mut lo, mut hi) = (0u64, 1u64 << 20);
                if sum_at(first) < 1e-3 {
                    hi = 0;
                }
                while lo < hi {
                    let mid = (lo + hi) / 2;
                    if sum_at(first + mid * BLOCK as u64) < 1e-3 {
                        hi = mid;
                    } else {
                        lo = mid + 1;
                    }
                }
                let cut = first + lo * BLOCK as u64;
                let ln_cut = f64::from(decay_coef(0.05)).ln();
                d.cut = cut.min(NEVER as u64);
                d.ln_cut = ln_cut as f32;
                d.busy_until = d
                    .busy_until
                    .min(now + cut + tail(ln_cut) + 2 * BLOCK as u64);
            }
            Some(Family::Shimmer) => {
                let base = [1.0, 0.7, 0.35];
                for k in 0..3 {
                    x[k] = base[k];
                    x[3 + k] = if s.inc[k] == 0 { 0.0 } else { 1.0 };
                }
            }
        }
        d
    }

    /// Writes this voice's device row for a chunk whose block-aligned frame origin is station
    /// frame `origin`.
    fn write_row(&self, origin: u64, f: &mut [f32], i: &mut [i64]) {
        if !self.busy {
            f.fill(0.0);
            i.fill(0);
            i[I_ATTACK] = 1;
            i[I_GATE] = 1;
            i[I_CUT] = NEVER;
            return;
        }
        let offset = origin as i64 - self.start as i64;
        for o in 0..5 {
            // Phase at the origin, wrapping (the offset may be negative: a note later in the chunk).
            let p = self.phase[o].wrapping_add(self.inc[o].wrapping_mul(offset as u32));
            i[I_PHASE + o] = i64::from(p);
            i[I_INC + o] = i64::from(self.inc[o]);
        }
        i[I_START] = -offset;
        i[I_ATTACK] = i64::from(self.attack);
        i[I_GATE] = self.gate.min(NEVER as u64) as i64;
        i[I_CUT] = self.cut.min(NEVER as u64) as i64;
        i[I_ACTIVE] = 1;
        i[I_LFO] = i64::from(self.lfo[0]);
        i[I_LFO_INC] = i64::from(self.lfo[1]);
        f[F_GAIN..F_GAIN + 2].copy_from_slice(&self.gain);
        f[F_ATTACK_STEP] = self.attack_step;
        f[F_SUSTAIN] = self.sustain;
        f[F_LN_DECAY] = self.ln_decay;
        f[F_LN_RELEASE] = self.ln_release;
        f[F_FLOOR] = self.floor;
        f[F_LN_CUT] = self.ln_cut;
        f[F_X..].copy_from_slice(&self.x);
    }
}

/// The device voices of every station.
#[derive(Debug)]
pub struct VoiceTable {
    /// `stations * SLOTS` voices, station-major, each station's slots in [`Family::ALL`] order.
    voices: Vec<DeviceVoice>,
    /// Each station's clock: the first frame of its next chunk.
    clocks: Vec<u64>,
    /// Notes that took a busy slot (the oldest note is cut; the native pool fades it instead).
    steals: u64,
    /// Events dropped for lateness.
    dropped: u64,
    /// Native tables (the note-on code reads them).
    tables: &'static Tables,
}

impl VoiceTable {
    /// An empty table for `stations` stations, all clocks at 0.
    pub fn new(stations: usize) -> Self {
        VoiceTable {
            voices: vec![DeviceVoice::default(); stations * SLOTS],
            clocks: vec![0; stations],
            steals: 0,
            dropped: 0,
            tables: Tables::get(),
        }
    }

    /// Stations in the table.
    pub fn stations(&self) -> usize {
        self.clocks.len()
    }

    /// First frame of `station`'s next chunk.
    pub fn clock(&self, station: usize) -> u64 {
        self.clocks[station]
    }

    /// Continues `station`'s timeline at `frames`.
    pub fn set_clock(&mut self, station: usize, frames: u64) {
        self.clocks[station] = frames;
    }

    /// Notes that cut an older note for want of a slot.
    pub fn steals(&self) -> u64 {
        self.steals
    }

    /// Events dropped for being more than a second late.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Busy slots of `station`.
    pub fn busy(&self, station: usize) -> usize {
        self.voices[station * SLOTS..(station + 1) * SLOTS]
            .iter()
            .filter(|v| v.busy)
            .count()
    }

    /// True if any of `stations` has a busy slot of `family` (the device skips a family no
    /// station of the batch plays).
    pub fn any_busy(&self, stations: &[usize], family: Family) -> bool {
        let range = family.offset()..family.offset() + family.slots();
        stations.iter().any(|&s| {
            self.voices[s * SLOTS + range.start..s * SLOTS + range.end]
                .iter()
                .any(|v| v.busy)
        })
    }

    /// Starts a note on `station` (at its frame, or now if it is late) with the station's
    /// `brightness` at note-on. False if the event is not one the device plays (the caller
    /// renders it elsewhere).
    pub fn note_on(&mut self, station: usize, ev: &NoteEvent, brightness: f32) -> bool {
        let Some(instrument) = Instrument::for_event(ev) else {
            return false;
        };
        let Some(family) = Family::of(instrument) else {
            return false;
        };
        let clock = self.clocks[station];
        let mut ev = *ev;
        let now = ev.at_frame.max(clock);
        let late = now - ev.at_frame;
        if late > MAX_LATENESS {
            self.dropped += 1;
            return true;
        }
        ev.duration_frames = ev.duration_frames.saturating_sub(late as u32).max(1);
        let ctx = Ctx {
            tables: self.tables,
            brightness,
        };
        let first = station * SLOTS + family.offset();
        let slots = &mut self.voices[first..first + family.slots()];
        let slot = match slots.iter().position(|v| !v.busy) {
            Some(s) => s,
            None => {
                self.steals += 1;
                slots
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, v)| v.start)
                    .map_or(0, |(i, _)| i)
            }
        };
        slots[slot] = DeviceVoice::start(instrument, &ev, now, &ctx);
        true
    }

    /// Forgets every voice of `station` and continues its timeline at `clock` (a station opened
    /// or re-opened on this slot).
    pub fn reset(&mut self, station: usize, clock: u64) {
        self.voices[station * SLOTS..(station + 1) * SLOTS].fill(DeviceVoice::default());
        self.clocks[station] = clock;
    }

    /// Frees the slots of voices of `stations` silent before their next chunk.
    pub fn reap(&mut self, stations: &[usize]) {
        for &s in stations {
            let clock = self.clocks[s];
            for v in &mut self.voices[s * SLOTS..(s + 1) * SLOTS] {
                if v.busy && v.busy_until <= clock {
                    v.busy = false;
                }
            }
        }
    }

    /// Writes the rows of `stations` (in that order) for their next chunk, family-major: family
    /// `f`'s rows are the block starting at row `stations.len() * f.offset()`, station after
    /// station, [`Family::slots`] rows each. `f` and `i` take `stations.len() * SLOTS` rows of
    /// [`F_PARAMS`] and [`I_PARAMS`]; `g0` takes each station's grid offset (its clock modulo 64),
    /// which places the chunk inside the block-aligned frame window.
    pub fn write_rows(&self, stations: &[usize], f: &mut [f32], i: &mut [i64], g0: &mut [i64]) {
        let block = BLOCK as u64;
        let n = stations.len();
        for (s, &station) in stations.iter().enumerate() {
            let clock = self.clocks[station];
            let off = clock % block;
            g0[s] = off as i64;
            let origin = clock - off;
            for family in Family::ALL {
                for k in 0..family.slots() {
                    let row = n * family.offset() + s * family.slots() + k;
                    self.voices[station * SLOTS + family.offset() + k].write_row(
                        origin,
                        &mut f[row * F_PARAMS..(row + 1) * F_PARAMS],
                        &mut i[row * I_PARAMS..(row + 1) * I_PARAMS],
                    );
                }
            }
        }
    }

    /// Moves the clocks of `stations` on by one chunk.
    pub fn advance(&mut self, stations: &[usize]) {
        for &s in stations {
            self.clocks[s] += CHUNK_FRAMES as u64;
        }
    }
}
