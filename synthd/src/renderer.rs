//! [`StationRenderer`]: one station's whole synthesis — pending notes, voice pool, master bus —
//! rendering the station timeline chunk by chunk.
//!
//! Rendering walks the timeline in segments that end at the next 64-frame control boundary of the
//! station clock, the next event start or the end of the caller's buffer. Control-rate work
//! happens only on clock boundaries and every recursive state advances per frame, so the output is
//! bit-identical whatever block sizes the caller uses, and every note starts at its exact frame.
//! Everything is allocated in `new`; the render path never allocates and takes no lock.

use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, NoteEvent, Part, SAMPLE_RATE, StationParams};

use crate::instruments::Instrument;
use crate::master::Master;
use crate::osc::Tables;
use crate::pad_bank::PadBank;
use crate::pending::PendingQueue;
use crate::pool::VoicePool;
use crate::soundfont::{SoundFontBank, SoundFontVoices};
use crate::voice::{BLOCK, Ctx, Scratch};

/// Capacity of the pending-event queue.
pub const PENDING_CAPACITY: usize = 1024;
/// Events later than this (frames behind the clock) are dropped rather than started.
pub const MAX_LATENESS: u64 = SAMPLE_RATE as u64;
/// Per control block smoothing of brightness (time constant about 80 ms).
const BRIGHTNESS_SMOOTHING: f32 = 0.018;

/// Renders one station.
#[derive(Debug)]
pub struct StationRenderer {
    /// Shared wavetables.
    tables: &'static Tables,
    /// Voices.
    pool: VoicePool,
    /// Scratch lent to each voice.
    scratch: Scratch,
    /// Dry bus, one segment.
    bus_l: [f32; BLOCK],
    /// Dry bus, one segment.
    bus_r: [f32; BLOCK],
    /// The pad voices of the segment, rendered together.
    pads: PadBank,
    /// Reverb, loudness hold, limiter.
    master: Master,
    /// Events waiting for their frame.
    pending: PendingQueue,
    /// Frames rendered so far (the station timeline).
    clock: u64,
    /// Current parameters.
    params: StationParams,
    /// Brightness target from intensity.
    brightness_target: f32,
    /// Smoothed brightness the voices see.
    brightness: f32,
    /// Events dropped for being more than a second late, or for an unknown part.
    dropped: u64,
    /// SoundFont instruments replacing the built-in ones (`--soundfont`); they bring their own
    /// reverb and chorus, so the master then only limits.
    sf2: Option<Box<SoundFontVoices>>,
    /// The filter on pads rendered by the torch backend (see [`Self::render_chunk_with_external_pads`]).
    #[cfg(feature = "torch")]
    pad_bus: crate::torch::PadBus,
}

impl StationRenderer {
    /// Allocates everything the station will ever need.
    pub fn new(params: StationParams) -> Self {
        let tables = Tables::get();
        let b = brightness_of(&params);
        StationRenderer {
            tables,
            pool: VoicePool::new(tables),
            scratch: Scratch::new(),
            bus_l: [0.0; BLOCK],
            bus_r: [0.0; BLOCK],
            pads: PadBank::new(),
            master: Master::new(),
            pending: PendingQueue::new(PENDING_CAPACITY),
            clock: 0,
            params,
            brightness_target: b,
            brightness: b,
            dropped: 0,
            sf2: None,
            #[cfg(feature = "torch")]
            pad_bus: crate::torch::PadBus::new(b),
        }
    }

    /// A station whose notes play on the SoundFont `bank` (through rustysynth) instead of the
    /// built-in instruments.
    pub fn with_soundfont(params: StationParams, bank: &SoundFontBank) -> Self {
        let mut r = StationRenderer::new(params);
        r.sf2 = Some(Box::new(SoundFontVoices::new(bank)));
        r
    }

    /// True when a SoundFont plays the notes.
    pub fn uses_soundfont(&self) -> bool {
        self.sf2.is_some()
    }

    /// Queues a note for its start frame. `false` when the pending queue is full (try again after
    /// the next chunk). Never allocates.
    pub fn push_event(&mut self, ev: &NoteEvent) -> bool {
        if Part::from_u8(ev.part).is_none() {
            self.dropped += 1;
            return true;
        }
        self.pending.push(ev)
    }

    /// Frames rendered so far.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Continues a station's timeline at `frames` (a restarted synthd).
    pub fn set_clock(&mut self, frames: u64) {
        self.clock = frames;
    }

    /// New parameters: intensity moves brightness smoothly over about 80 ms.
    pub fn set_params(&mut self, params: StationParams) {
        self.params = params;
        self.brightness_target = brightness_of(&params);
    }

    /// Current parameters.
    pub fn params(&self) -> StationParams {
        self.params
    }

    /// Voices sounding (including stolen voices fading out).
    pub fn voices_active(&self) -> usize {
        self.pool.active()
    }

    /// Voices of `part` sounding.
    pub fn voices_in_part(&self, part: Part) -> usize {
        self.pool.active_in_part(part as u8)
    }

    /// Events waiting for their frame.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Notes that stole a voice so far.
    pub fn steals(&self) -> u64 {
        self.pool.steals()
    }

    /// Events dropped (too late or unknown part).
    pub fn dropped_events(&self) -> u64 {
        self.dropped
    }

    /// Current limiter gain (1 = idle).
    pub fn limiter_gain(&self) -> f32 {
        self.master.limiter_gain()
    }

    /// The master's loudness-hold gain, dB (0 = unity; it holds the output at -16 LUFS).
    pub fn loudness_gain_db(&self) -> f32 {
        self.master.loudness_gain_db()
    }

    /// True if the reverb holds subnormal numbers (tests).
    pub fn has_subnormal_state(&self) -> bool {
        self.master.reverb().has_subnormal_state()
    }

    /// Renders the next chunk (4,410 frames) as interleaved s16: each segment's bus goes straight
    /// to s16 (the same values [`Self::render_f32`] gives, rounded), with no f32 staging pass.
    pub fn render_chunk(&mut self, out: &mut [i16; CHUNK_SAMPLES]) {
        self.render_segments(CHUNK_FRAMES, None, |at, l, r| {
            interleave_i16(l, r, &mut out[2 * at..2 * (at + l.len())]);
        });
    }

    /// Renders the next chunk with the station's pads rendered elsewhere: `pads` is their dry sum
    /// (interleaved stereo, [`CHUNK_SAMPLES`] samples, the torch backend's output for this chunk),
    /// which goes through the station's pad bus filter ([`crate::torch::PadBus`]) and onto the dry
    /// bus with the station's other voices, before the reverb and the master. The caller gives
    /// the pad notes to the torch engine instead of [`Self::push_event`]; pad voices that reach
    /// this renderer anyway still play natively.
    #[cfg(feature = "torch")]
    pub fn render_chunk_with_external_pads(
        &mut self,
        pads: &[f32],
        out: &mut [i16; CHUNK_SAMPLES],
    ) {
        assert_eq!(pads.len(), CHUNK_SAMPLES, "one chunk of stereo pads");
        self.render_segments(CHUNK_FRAMES, Some(pads), |at, l, r| {
            interleave_i16(l, r, &mut out[2 * at..2 * (at + l.len())]);
        });
    }

    /// Renders `out.len() / 2` frames of interleaved stereo f32 (length must be even).
    pub fn render_f32(&mut self, out: &mut [f32]) {
        debug_assert!(
            out.len() % 2 == 0,
            "interleaved stereo needs an even length"
        );
        self.render_segments(out.len() / 2, None, |at, l, r| {
            let out = &mut out[2 * at..2 * (at + l.len())];
            for ((frame, &l), &r) in out.chunks_exact_mut(2).zip(l).zip(r) {
                frame[0] = l;
                frame[1] = r;
            }
        });
    }

    /// Renders `frames` frames segment by segment, handing each segment's final mix to `emit`
    /// (its first frame's offset in the call, left, right), with `pads` (interleaved, `frames`
    /// long) mixed in as the station's pads when given (torch builds only; always `None`
    /// otherwise).
    fn render_segments(
        &mut self,
        frames: usize,
        pads: Option<&[f32]>,
        mut emit: impl FnMut(usize, &[f32], &[f32]),
    ) {
        let mut done = 0;
        while done < frames {
            if let Some(sf2) = &mut self.sf2 {
                sf2.release_due(self.clock);
            }
            self.start_due_events();
            let into_block = (self.clock % BLOCK as u64) as usize;
            let at_grid = into_block == 0;
            if at_grid {
                self.brightness +=
                    (self.brightness_target - self.brightness) * BRIGHTNESS_SMOOTHING;
            }
            let mut n = (frames - done).min(BLOCK - into_block);
            if let Some(ev) = self.pending.front() {
                // Events at or before the clock were started above, so this is > clock.
                n = n.min((ev.at_frame - self.clock).min(BLOCK as u64) as usize);
            }
            if let Some(off) = self.sf2.as_ref().and_then(|s| s.next_off()) {
                // Note-offs still pending are after the clock (due ones were sent above).
                n = n.min((off - self.clock).min(BLOCK as u64) as usize);
            }
            self.render_segment(into_block, n, pads.map(|p| &p[2 * done..2 * (done + n)]));
            emit(done, &self.bus_l[..n], &self.bus_r[..n]);
            self.clock += n as u64;
            done += n;
        }
    }

    /// Starts every pending event due at or before the clock (late ones within a second start now,
    /// keeping their note-off on the timeline; later ones are dropped).
    fn start_due_events(&mut self) {
        let ctx = Ctx {
            tables: self.tables,
            brightness: self.brightness,
        };
        while let Some(ev) = self.pending.front().copied() {
            if ev.at_frame > self.clock {
                break;
            }
            self.pending.pop();
            let late = self.clock - ev.at_frame;
            let Some(instrument) = Instrument::for_event(&ev) else {
                self.dropped += 1;
                continue;
            };
            if late > MAX_LATENESS {
                self.dropped += 1;
                continue;
            }
            let mut ev = ev;
            ev.duration_frames = ev.duration_frames.saturating_sub(late as u32).max(1);
            if let Some(sf2) = &mut self.sf2 {
                sf2.note_on(&ev, self.clock);
                continue;
            }
            self.pool
                .allocate()
                .start(instrument, &ev, self.clock, &ctx);
        }
    }

    /// Renders `n` frames (at most one control block) into the bus and through the master, with
    /// `pads` (interleaved, `n` frames) mixed in when given.
    fn render_segment(&mut self, f0: usize, n: usize, pads: Option<&[f32]>) {
        let ctx = Ctx {
            tables: self.tables,
            brightness: self.brightness,
        };
        let (l, r) = (&mut self.bus_l[..n], &mut self.bus_r[..n]);
        if let Some(sf2) = &mut self.sf2 {
            sf2.render(l, r);
            self.master.process_limit_only(f0, l, r);
            return;
        }
        l.fill(0.0);
        r.fill(0.0);
        self.pads.clear();
        let voices = self.pool.live_mut();
        for (slot, v) in voices.iter_mut().enumerate() {
            if !v.is_active() {
                continue;
            }
            if PadBank::takes(v.instrument) {
                if v.begin(&ctx, f0) {
                    self.pads.push(slot, v.instrument);
                }
            } else {
                v.render(&ctx, f0, &mut self.scratch, l, r);
            }
        }
        self.pads.render(voices, f0, l, r);
        #[cfg(feature = "torch")]
        if let Some(pads) = pads {
            self.pad_bus.mix(f0, self.brightness, pads, l, r);
        }
        #[cfg(not(feature = "torch"))]
        debug_assert!(pads.is_none(), "external pads need the torch feature");
        self.master.process(f0, l, r);
    }
}

/// Brightness 0..=1 from the station intensity.
fn brightness_of(p: &StationParams) -> f32 {
    if p.intensity.is_finite() {
        p.intensity.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

/// Writes `l` and `r` as interleaved s16 into `out` (twice as long).
#[inline(always)]
fn interleave_i16(l: &[f32], r: &[f32], out: &mut [i16]) {
    for ((frame, &l), &r) in out.chunks_exact_mut(2).zip(l).zip(r) {
        frame[0] = to_i16(l);
        frame[1] = to_i16(r);
    }
}

/// Rounds a limited sample to s16: nearest, ties to even (saturating; the limiter keeps it under
/// -1.5 dBFS anyway; NaN gives 0).
///
/// Branch- and conversion-free so the chunk loop vectorises: adding 1.5 * 2^23 to a value in
/// s16 range leaves its rounded integer in the low mantissa bits (a float-to-int `as` would need
/// per-sample saturation fix-ups the compiler cannot vectorise).
#[inline(always)]
fn to_i16(x: f32) -> i16 {
    const MAGIC: f32 = 12_582_912.0;
    #[allow(clippy::eq_op)] // `x == x` is false only for NaN.
    let x = if x == x { x } else { 0.0 };
    let v = (x * 32_767.0).clamp(-32_768.0, 32_767.0);
    ((v + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_to_i16_is_symmetric_and_saturates() {
        assert_eq!(to_i16(0.0), 0);
        assert_eq!(to_i16(1.0), 32_767);
        assert_eq!(to_i16(-1.0), -32_767);
        assert_eq!(to_i16(2.0), 32_767);
        assert_eq!(to_i16(-2.0), -32_768);
        assert_eq!(to_i16(1.5 / 32_767.0), 2);
        assert_eq!(to_i16(-1.5 / 32_767.0), -2);
        assert_eq!(to_i16(f32::NAN), 0);
    }
}
