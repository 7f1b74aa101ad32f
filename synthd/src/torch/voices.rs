//! The host's table of pad voices for the torch backend: note-on through the native code, slot
//! allocation per station, and the per-chunk parameter rows the device renders from.
//!
//! The device keeps no state between chunks: a voice's oscillator phase at any frame is
//! `phase + frames * inc` (32-bit wrapping, exact in i64), and its envelope is a closed form of its
//! age, so the host uploads one row per voice per chunk and nothing drifts apart.

use shm_proto::{CHUNK_FRAMES, NoteEvent, SAMPLE_RATE};

use crate::envelope::{SILENCE, t60_coef};
use crate::instruments::Instrument;
use crate::osc::Tables;
use crate::voice::{Ctx, Voice};

/// Voice slots per station (a Focus station sounds up to about a dozen pad voices: two
/// overlapping four-note chords and their releases).
pub const SLOTS: usize = 16;

/// f32 parameters per voice row.
pub const F_PARAMS: usize = 11;
/// i64 parameters per voice row.
pub const I_PARAMS: usize = 10;

/// Events later than this (frames behind the clock) are dropped, as in the native renderer.
const MAX_LATENESS: u64 = SAMPLE_RATE as u64;

/// One pad voice as the device needs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct PadVoice {
    /// True while the slot holds a note (it may be silent already; the device knows).
    pub busy: bool,
    /// Station frame of the note's first sample.
    pub start: u64,
    /// Frame after which the voice is certainly silent and its slot can be reused.
    pub busy_until: u64,
    /// Glass pad (triangles on oscillators 0 and 2) rather than warm pad (three DPW saws).
    pub glass: bool,
    /// Oscillator phases at `start` (a cycle is 2^32).
    pub phase: [u32; 3],
    /// Oscillator increments per frame.
    pub inc: [u32; 3],
    /// DPW scales (the centre oscillator's includes its mix), as the native pad bank sets them.
    pub scale: [f32; 3],
    /// Level times pan, left and right.
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
    /// Level under which a released voice ends.
    pub floor: f32,
}

impl PadVoice {
    /// The voice `ev` starts at station frame `now` (the native note-on, kept for the device).
    pub fn start(instrument: Instrument, ev: &NoteEvent, now: u64, ctx: &Ctx) -> PadVoice {
        let mut v = Voice::idle(ctx.tables);
        v.start(instrument, ev, now, ctx);
        // The envelope's shape: the instrument's own note-on, on a scratch voice.
        let mut scratch = Voice::idle(ctx.tables);
        let (shape, _, _) = instrument.start(&mut scratch, ev, ctx);
        let attack = (shape.attack * SAMPLE_RATE as f32).max(1.0) as u32;
        let decay = t60_coef(shape.decay);
        let release = t60_coef(shape.release);
        let floor =
            (SILENCE / (v.level * crate::master::MASTER_GAIN).max(1e-6)).clamp(SILENCE, 0.05);
        let gate = u64::from(ev.duration_frames).max(1);
        let ln_release = f64::from(release).ln();
        // The release falls from at most 1 to the floor in this many frames; a control block
        // of margin on each side.
        let tail = (f64::from(floor).ln() / ln_release).ceil().max(0.0) as u64;
        let mut scale = [0.0; 3];
        for o in 0..3 {
            scale[o] = 1_073_741_824.0 / v.inc[o].max(1) as f32;
        }
        scale[1] *= v.amp[2];
        PadVoice {
            busy: true,
            start: now,
            busy_until: now + gate + tail + 2 * crate::voice::BLOCK as u64,
            glass: instrument == Instrument::GlassPad,
            phase: [v.phase[0], v.phase[1], v.phase[2]],
            inc: [v.inc[0], v.inc[1], v.inc[2]],
            scale,
            gain: v.gain,
            attack,
            attack_step: 1.0 / attack as f32,
            sustain: shape.sustain.clamp(0.0, 1.0),
            ln_decay: f64::from(decay).ln() as f32,
            ln_release: ln_release as f32,
            gate,
            floor,
        }
    }

    /// Writes this voice's device row for a chunk whose block-aligned frame origin is station
    /// frame `origin`.
    fn write_row(&self, origin: u64, f: &mut [f32], i: &mut [i64]) {
        if !self.busy {
            f.fill(0.0);
            i.fill(0);
            return;
        }
        let offset = origin as i64 - self.start as i64;
        for o in 0..3 {
            // Phase at the origin, wrapping (the offset may be negative: a note later in the chunk).
            let p = self.phase[o].wrapping_add(self.inc[o].wrapping_mul(offset as u32));
            i[o] = i64::from(p);
            i[3 + o] = i64::from(self.inc[o]);
        }
        i[6] = -offset;
        i[7] = i64::from(self.attack);
        i[8] = self.gate.min(i64::MAX as u64 / 2) as i64;
        i[9] = 1;
        f[..3].copy_from_slice(&self.scale);
        f[3..5].copy_from_slice(&self.gain);
        f[5] = self.attack_step;
        f[6] = self.sustain;
        f[7] = self.ln_decay;
        f[8] = self.ln_release;
        f[9] = self.floor;
        f[10] = if self.glass { 1.0 } else { 0.0 };
    }
}

/// The pad voices of every station.
#[derive(Debug)]
pub struct VoiceTable {
    /// `stations * SLOTS` voices, station-major.
    voices: Vec<PadVoice>,
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
            voices: vec![PadVoice::default(); stations * SLOTS],
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

    /// Starts a pad note on `station` (at its frame, or now if it is late). False if the event is
    /// not a pad note (the caller renders it elsewhere).
    pub fn note_on(&mut self, station: usize, ev: &NoteEvent) -> bool {
        let Some(instrument) = Instrument::for_event(ev) else {
            return false;
        };
        if !crate::pad_bank::PadBank::takes(instrument) {
            return false;
        }
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
            brightness: 0.5,
        };
        let slots = &mut self.voices[station * SLOTS..(station + 1) * SLOTS];
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
        slots[slot] = PadVoice::start(instrument, &ev, now, &ctx);
        true
    }

    /// Forgets every voice of `station` and continues its timeline at `clock` (a station opened
    /// or re-opened on this slot).
    pub fn reset(&mut self, station: usize, clock: u64) {
        self.voices[station * SLOTS..(station + 1) * SLOTS].fill(PadVoice::default());
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

    /// Writes the rows of `stations` (in that order) for their next chunk: `f` and `i` take
    /// `stations.len() * SLOTS` rows of [`F_PARAMS`] and [`I_PARAMS`]; `g0` takes each station's
    /// grid offset (its clock modulo 64), which places the chunk inside the block-aligned frame
    /// window.
    pub fn write_rows(&self, stations: &[usize], f: &mut [f32], i: &mut [i64], g0: &mut [i64]) {
        let block = crate::voice::BLOCK as u64;
        for (s, &station) in stations.iter().enumerate() {
            let clock = self.clocks[station];
            let off = clock % block;
            g0[s] = off as i64;
            let origin = clock - off;
            for k in 0..SLOTS {
                let row = s * SLOTS + k;
                self.voices[station * SLOTS + k].write_row(
                    origin,
                    &mut f[row * F_PARAMS..(row + 1) * F_PARAMS],
                    &mut i[row * I_PARAMS..(row + 1) * I_PARAMS],
                );
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
