//! Parity of the torch backend with the native engine, voice family by voice family.
//!
//! What is compared: for each station, the sum of its device voices of one family, stereo, over
//! every chunk of the run. The native side runs the real native voice code — [`Voice::start`],
//! [`Voice::begin`] (envelope plans, gain ramps, ending silent voices), and then for the pads
//! the pad bank's oscillators without their filters ([`crate::pad_bank::render_one_dry`]: the
//! device renders the pads dry, the route filters their sum), for every other family the whole
//! native voice ([`Voice::render`]: the bass with its one-pole, which the device runs as a closed
//! form) — with the renderer's segmenting (notes start at their exact frame, control work on the
//! 64-frame grid). Relative error is `||torch - native|| / ||native||` over the whole run of a
//! station; it must stay under 1e-4.

use shm_proto::{CHUNK_FRAMES, NoteEvent, Part};

use super::VoiceEngine;
use super::engine::{OUT_CHANNELS, STATION_OUT};
use super::voices::Family;
use crate::device::TorchDevice;
use crate::instruments::Instrument;
use crate::osc::Tables;
use crate::pad_bank::PadBank;
use crate::pool::VoicePool;
use crate::voice::{BLOCK, Ctx, Scratch};

/// Station brightness in the parity runs (a Focus station's).
const BRIGHTNESS: f32 = 0.5;

/// The native engine's dry voice paths for one station: channels as the engine lays them out.
pub(crate) struct NativeVoices {
    tables: &'static Tables,
    pool: VoicePool,
    scratch: Scratch,
    /// Device events in time order.
    events: Vec<NoteEvent>,
    next: usize,
    clock: u64,
}

impl NativeVoices {
    pub(crate) fn new(events: Vec<NoteEvent>) -> Self {
        let tables = Tables::get();
        NativeVoices {
            tables,
            pool: VoicePool::new(tables),
            scratch: Scratch::new(),
            events,
            next: 0,
            clock: 0,
        }
    }

    pub(crate) fn steals(&self) -> u64 {
        self.pool.steals()
    }

    /// One chunk, [`OUT_CHANNELS`] per frame (dry pads, then the other voices).
    pub(crate) fn render(&mut self, out: &mut [f32]) {
        let ctx = Ctx {
            tables: self.tables,
            brightness: BRIGHTNESS,
        };
        let frames = out.len() / OUT_CHANNELS;
        let mut done = 0;
        let mut bus = [[0.0f32; BLOCK]; OUT_CHANNELS];
        while done < frames {
            while let Some(ev) = self
                .events
                .get(self.next)
                .filter(|e| e.at_frame <= self.clock)
            {
                let instrument = Instrument::for_event(ev).expect("device event");
                self.pool.allocate().start(instrument, ev, self.clock, &ctx);
                self.next += 1;
            }
            let f0 = (self.clock % BLOCK as u64) as usize;
            let mut n = (frames - done).min(BLOCK - f0);
            if let Some(ev) = self.events.get(self.next) {
                n = n.min((ev.at_frame - self.clock) as usize);
            }
            for b in &mut bus {
                b[..n].fill(0.0);
            }
            let [pl, pr, ol, or] = &mut bus;
            for v in self.pool.all_mut() {
                if !v.is_active() {
                    continue;
                }
                if PadBank::takes(v.instrument) {
                    if v.begin(&ctx, f0) {
                        crate::pad_bank::render_one_dry(v, f0, &mut pl[..n], &mut pr[..n]);
                    }
                } else {
                    v.render(&ctx, f0, &mut self.scratch, &mut ol[..n], &mut or[..n]);
                }
            }
            for i in 0..n {
                for (c, b) in bus.iter().enumerate() {
                    out[OUT_CHANNELS * (done + i) + c] = b[i];
                }
            }
            self.clock += n as u64;
            done += n;
        }
    }
}

/// The events of `part` a Focus station of `seed` plays over `chunks` chunks, with `instrument`
/// instead of the composer's where given.
pub(crate) fn focus_events(
    seed: u64,
    chunks: usize,
    part: Part,
    instrument: Option<u8>,
) -> Vec<NoteEvent> {
    use composer::{Composer, Params, PresetId};
    let params = Params::from_preset(PresetId::FOCUS, seed);
    let mut composer = Composer::new(seed, params);
    let end = (chunks * CHUNK_FRAMES) as u64;
    let mut events = Vec::new();
    let mut bar = Vec::new();
    while composer.composed_until_frame() < end {
        bar.clear();
        composer.next_bar(&mut bar);
        events.extend(
            bar.iter()
                .filter(|e| e.part == part as u8 && e.at_frame < end)
                .map(|e| NoteEvent {
                    instrument: instrument.unwrap_or(e.instrument),
                    ..*e
                }),
        );
    }
    events
}

/// A note of `part`.
fn note(part: Part, instrument: u8, at_frame: u64, duration_frames: u32, pitch: u8) -> NoteEvent {
    NoteEvent {
        at_frame,
        duration_frames,
        part: part as u8,
        instrument,
        pitch,
        velocity: 90,
        bar: 0,
        _reserved: 0,
    }
}

/// The events of `family` for station `seed` over `chunks` chunks: what a Focus station plays of
/// that part (the electric piano and the shimmer on the Focus lead and texture lines), plus
/// notes starting off the grid (attack cut by the gate, releases that end, a note in a chunk's
/// last frames, a note long enough to decay).
pub(crate) fn family_events(family: Family, seed: u64, chunks: usize) -> Vec<NoteEvent> {
    let c = CHUNK_FRAMES as u64;
    let (part, inst, mut events) = match family {
        Family::Pad => (Part::Pad, 0, focus_events(seed, chunks, Part::Pad, None)),
        Family::Bass => (Part::Bass, 0, focus_events(seed, chunks, Part::Bass, None)),
        Family::Piano => (
            Part::Lead,
            0,
            focus_events(seed, chunks, Part::Lead, Some(0)),
        ),
        Family::Electric => (
            Part::Lead,
            1,
            focus_events(seed, chunks, Part::Lead, Some(1)),
        ),
        Family::Bell => (
            Part::Texture,
            0,
            focus_events(seed, chunks, Part::Texture, Some(0)),
        ),
        Family::Shimmer => (
            Part::Texture,
            1,
            focus_events(seed, chunks, Part::Texture, Some(1)),
        ),
    };
    let low = if family == Family::Bass { 33 } else { 45 };
    events.extend([
        note(part, inst, 1_234 + seed, 20_000, low + 29),
        note(part, inst, 30_001, 3_000, low + 36),
        note(part, inst, c * 7 - 3, 50_000, low),
        note(part, inst, 90_017, 700, low + 17),
        note(part, inst, 100_000 + seed * 64, 400_000, low + 12),
    ]);
    if family == Family::Pad {
        // The glass pad too.
        events.extend([
            note(part, 1, 1_234 + seed, 20_000, 74),
            note(part, 1, 30_001, 3_000, 81),
        ]);
    }
    events.sort_by_key(|e| e.at_frame);
    events
}

fn rel_error(a: &[f32], b: &[f32]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        diff += f64::from(x - y).powi(2);
        norm += f64::from(*y).powi(2);
    }
    (diff / norm).sqrt()
}

/// Renders `stations` stations of `family`'s events for `chunks` chunks on `device` (batches of
/// `batch`) and on the native path; returns each station's relative error.
pub(crate) fn parity(
    family: Family,
    device: TorchDevice,
    stations: usize,
    batch: usize,
    chunks: usize,
) -> Vec<f64> {
    let events: Vec<Vec<NoteEvent>> = (0..stations)
        .map(|s| family_events(family, 7 + s as u64, chunks))
        .collect();
    let mut engine = VoiceEngine::new(device, stations, batch).expect("engine");
    let mut native: Vec<NativeVoices> = events.iter().cloned().map(NativeVoices::new).collect();
    let mut next = vec![0usize; stations];
    let mut torch_out = vec![0.0f32; stations * STATION_OUT];
    let mut got = vec![Vec::new(); stations];
    let mut want = vec![Vec::new(); stations];
    let mut chunk = vec![0.0f32; STATION_OUT];
    // The family's channels: the pads in 0 and 1, the others in 2 and 3.
    let at = if family == Family::Pad { 0 } else { 2 };
    for _ in 0..chunks {
        for s in 0..stations {
            let end = engine.voices().clock(s) + CHUNK_FRAMES as u64;
            while next[s] < events[s].len() && events[s][next[s]].at_frame < end {
                assert!(
                    engine
                        .voices_mut()
                        .note_on(s, &events[s][next[s]], BRIGHTNESS)
                );
                next[s] += 1;
            }
        }
        engine.render(&mut torch_out).expect("render");
        for s in 0..stations {
            native[s].render(&mut chunk);
            let dev = &torch_out[s * STATION_OUT..(s + 1) * STATION_OUT];
            for (d, n) in dev
                .chunks_exact(OUT_CHANNELS)
                .zip(chunk.chunks_exact(OUT_CHANNELS))
            {
                want[s].extend_from_slice(&n[at..at + 2]);
                got[s].extend_from_slice(&d[at..at + 2]);
                // Nothing of this family may leak into the other pair of channels.
                assert_eq!(d[2 - at], 0.0);
                assert_eq!(d[3 - at], 0.0);
            }
        }
    }
    assert_eq!(engine.voices().steals(), 0, "the torch slots had to steal");
    for n in &native {
        assert_eq!(n.steals(), 0, "the native pool had to steal");
    }
    (0..stations)
        .map(|s| {
            let peak = want[s].iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(peak > 0.01, "station {s} is silent: {peak}");
            rel_error(&got[s], &want[s])
        })
        .collect()
}

/// Three stations in batches of two (a full batch and a partial one), 15 s each, on libtorch's
/// CPU; and on CUDA when libtorch sees a GPU.
fn check(family: Family) {
    let mut devices = vec![TorchDevice::Cpu];
    if super::cuda_available() {
        devices.push(TorchDevice::Cuda);
    } else {
        println!("no CUDA device: {family:?} parity on libtorch's CPU only");
    }
    for device in devices {
        let errors = parity(family, device, 3, 2, 150);
        println!("{family:?} on {device:?}: relative errors {errors:?}");
        for e in errors {
            assert!(e < 1e-4, "{family:?} on {device:?}: relative error {e}");
        }
    }
}

#[test]
fn torch_cpu_matches_the_native_dry_pad_path() {
    check(Family::Pad);
}

#[test]
fn torch_cpu_matches_the_native_bass() {
    check(Family::Bass);
}

#[test]
fn torch_cpu_matches_the_native_soft_piano() {
    check(Family::Piano);
}

/// The electric piano: native's per-frame index and tine decays restart from their exact values
/// at every control point (`keys::control_electric`), as the device evaluates them, so the family
/// is routed ([`Family::routed`]) and held to the same bar as the others.
#[test]
fn torch_cpu_matches_the_native_electric_piano() {
    check(Family::Electric);
    assert!(Family::Electric.routed());
}

#[test]
fn torch_cpu_matches_the_native_bell() {
    check(Family::Bell);
}

#[test]
fn torch_cpu_matches_the_native_shimmer() {
    check(Family::Shimmer);
}

#[test]
fn chunks_past_the_notes_are_silent_and_memory_is_bounded_by_the_batch() {
    let mut engine = VoiceEngine::new(TorchDevice::Cpu, 5, 2).expect("engine");
    let ev = note(Part::Pad, 0, 100, 2_000, 57);
    assert!(engine.voices_mut().note_on(4, &ev, BRIGHTNESS));
    let bass = note(Part::Bass, 0, 300, 2_000, 40);
    assert!(engine.voices_mut().note_on(4, &bass, BRIGHTNESS));
    let kick = note(Part::Percussion, 0, 100, 2_000, 36);
    assert!(
        !engine.voices_mut().note_on(4, &kick, BRIGHTNESS),
        "the percussion stays native"
    );
    let mut out = vec![0.0f32; 5 * STATION_OUT];
    engine.render(&mut out).unwrap();
    let station4 = &out[4 * STATION_OUT..];
    for c in 0..OUT_CHANNELS {
        assert!(
            station4
                .iter()
                .skip(c)
                .step_by(OUT_CHANNELS)
                .any(|x| *x != 0.0),
            "channel {c} silent"
        );
    }
    assert!(out[..4 * STATION_OUT].iter().all(|x| *x == 0.0));
    // Release 3.5 s at most: 80 chunks later the voices have ended and their slots are free.
    for _ in 0..80 {
        engine.render(&mut out).unwrap();
    }
    assert!(out.iter().all(|x| *x == 0.0));
    assert_eq!(engine.voices().busy(4), 0);
    let small = engine.memory_bytes();
    let big = VoiceEngine::new(TorchDevice::Cpu, 50, 2)
        .unwrap()
        .memory_bytes();
    assert_eq!(
        small, big,
        "memory depends on the batch, not the station count"
    );
    let wider = VoiceEngine::new(TorchDevice::Cpu, 50, 4)
        .unwrap()
        .memory_bytes();
    assert!(wider > small, "memory grows with the batch");
    assert!(engine.render(&mut out[1..]).is_err());
}
