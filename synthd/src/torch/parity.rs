//! Parity of the torch backend with the native engine.
//!
//! What is compared: for each station, the dry sum of its pad voices (warm and glass pads: the
//! three oscillators, the envelope and the level/pan gains; before the pads' filters, the other
//! instruments, the reverb and the limiter), stereo, over every chunk of the run. The native side
//! runs the real native voice code — [`Voice::start`], [`Voice::begin`] (envelope plans, gain
//! ramps, ending silent voices) and the pad bank's oscillators through
//! [`crate::pad_bank::render_one_dry`] — with the renderer's segmenting (notes start at their exact
//! frame, control work on the 64-frame grid). Relative error is `||torch - native|| / ||native||`
//! over the whole run of a station; it must stay under 1e-4.

use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, NoteEvent, Part};

use super::PadEngine;
use crate::device::TorchDevice;
use crate::instruments::Instrument;
use crate::osc::Tables;
use crate::pad_bank::PadBank;
use crate::pool::VoicePool;
use crate::voice::{BLOCK, Ctx};

/// The native engine's dry pad path for one station.
pub(crate) struct NativeDryPads {
    tables: &'static Tables,
    pool: VoicePool,
    /// Pad events in time order.
    events: Vec<NoteEvent>,
    next: usize,
    clock: u64,
}

impl NativeDryPads {
    pub(crate) fn new(events: Vec<NoteEvent>) -> Self {
        let tables = Tables::get();
        NativeDryPads {
            tables,
            pool: VoicePool::new(tables),
            events,
            next: 0,
            clock: 0,
        }
    }

    pub(crate) fn steals(&self) -> u64 {
        self.pool.steals()
    }

    /// One chunk, interleaved stereo.
    pub(crate) fn render(&mut self, out: &mut [f32]) {
        let ctx = Ctx {
            tables: self.tables,
            brightness: 0.5,
        };
        let frames = out.len() / 2;
        let mut done = 0;
        let (mut l, mut r) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
        while done < frames {
            while let Some(ev) = self
                .events
                .get(self.next)
                .filter(|e| e.at_frame <= self.clock)
            {
                let instrument = Instrument::for_event(ev).expect("pad event");
                self.pool.allocate().start(instrument, ev, self.clock, &ctx);
                self.next += 1;
            }
            let f0 = (self.clock % BLOCK as u64) as usize;
            let mut n = (frames - done).min(BLOCK - f0);
            if let Some(ev) = self.events.get(self.next) {
                n = n.min((ev.at_frame - self.clock) as usize);
            }
            l[..n].fill(0.0);
            r[..n].fill(0.0);
            for v in self.pool.all_mut() {
                if v.is_active() && PadBank::takes(v.instrument) && v.begin(&ctx, f0) {
                    crate::pad_bank::render_one_dry(v, f0, &mut l[..n], &mut r[..n]);
                }
            }
            for i in 0..n {
                out[2 * (done + i)] = l[i];
                out[2 * (done + i) + 1] = r[i];
            }
            self.clock += n as u64;
            done += n;
        }
    }
}

/// Focus pad events of `seed` over `chunks` chunks, plus short glass and warm notes starting
/// off the grid (attack cut by the gate, releases that end, a note in the chunk's last frames).
pub(crate) fn pad_events(seed: u64, chunks: usize) -> Vec<NoteEvent> {
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
                .filter(|e| e.part == Part::Pad as u8 && e.at_frame < end),
        );
    }
    let extra = |at_frame: u64, duration_frames: u32, instrument: u8, pitch: u8| NoteEvent {
        at_frame,
        duration_frames,
        part: Part::Pad as u8,
        instrument,
        pitch,
        velocity: 90,
        bar: 0,
        _reserved: 0,
    };
    events.extend([
        extra(1_234 + seed, 20_000, 1, 74),
        extra(30_001, 3_000, 1, 81),
        extra(CHUNK_FRAMES as u64 * 7 - 3, 50_000, 0, 45),
        extra(90_017, 700, 0, 62),
    ]);
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

/// Renders `stations` stations for `chunks` chunks on `device` (batches of `batch`) and on the
/// native path; returns each station's relative error.
pub(crate) fn parity(
    device: TorchDevice,
    stations: usize,
    batch: usize,
    chunks: usize,
) -> Vec<f64> {
    let events: Vec<Vec<NoteEvent>> = (0..stations)
        .map(|s| pad_events(7 + s as u64, chunks))
        .collect();
    let mut engine = PadEngine::new(device, stations, batch).expect("engine");
    let mut native: Vec<NativeDryPads> = events.iter().cloned().map(NativeDryPads::new).collect();
    let mut next = vec![0usize; stations];
    let mut torch_out = vec![0.0f32; stations * CHUNK_SAMPLES];
    let mut got = vec![Vec::new(); stations];
    let mut want = vec![Vec::new(); stations];
    let mut chunk = vec![0.0f32; CHUNK_SAMPLES];
    for _ in 0..chunks {
        for s in 0..stations {
            let end = engine.voices().clock(s) + CHUNK_FRAMES as u64;
            while next[s] < events[s].len() && events[s][next[s]].at_frame < end {
                assert!(engine.voices_mut().note_on(s, &events[s][next[s]]));
                next[s] += 1;
            }
        }
        engine.render(&mut torch_out).expect("render");
        for s in 0..stations {
            native[s].render(&mut chunk);
            want[s].extend_from_slice(&chunk);
            got[s].extend_from_slice(&torch_out[s * CHUNK_SAMPLES..(s + 1) * CHUNK_SAMPLES]);
        }
    }
    assert_eq!(engine.voices().steals(), 0, "the torch pool had to steal");
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

#[test]
fn torch_cpu_matches_the_native_dry_pad_path() {
    // Three stations in batches of two (a full batch and a partial one), 15 s each.
    let errors = parity(TorchDevice::Cpu, 3, 2, 150);
    println!("torch-cpu relative errors: {errors:?}");
    for e in errors {
        assert!(e < 1e-4, "relative error {e}");
    }
}

#[test]
fn cuda_matches_the_native_dry_pad_path_when_a_gpu_is_present() {
    if !super::cuda_available() {
        println!("no CUDA device: skipped");
        return;
    }
    let errors = parity(TorchDevice::Cuda, 3, 2, 150);
    println!("cuda relative errors: {errors:?}");
    for e in errors {
        assert!(e < 1e-4, "relative error {e}");
    }
}

#[test]
fn chunks_past_the_notes_are_silent_and_memory_is_bounded_by_the_batch() {
    let mut engine = PadEngine::new(TorchDevice::Cpu, 5, 2).expect("engine");
    let ev = NoteEvent {
        at_frame: 100,
        duration_frames: 2_000,
        part: Part::Pad as u8,
        instrument: 0,
        pitch: 57,
        velocity: 100,
        bar: 0,
        _reserved: 0,
    };
    assert!(engine.voices_mut().note_on(4, &ev));
    let lead = NoteEvent {
        part: Part::Lead as u8,
        ..ev
    };
    assert!(
        !engine.voices_mut().note_on(4, &lead),
        "only pads are taken"
    );
    let mut out = vec![0.0f32; 5 * CHUNK_SAMPLES];
    engine.render(&mut out).unwrap();
    assert!(out[4 * CHUNK_SAMPLES..].iter().any(|x| *x != 0.0));
    assert!(out[..4 * CHUNK_SAMPLES].iter().all(|x| *x == 0.0));
    // Release 3.5 s at most: 80 chunks later the voice has ended and its slot is free.
    for _ in 0..80 {
        engine.render(&mut out).unwrap();
    }
    assert!(out.iter().all(|x| *x == 0.0));
    assert_eq!(engine.voices().busy(4), 0);
    let small = engine.memory_bytes();
    let big = PadEngine::new(TorchDevice::Cpu, 50, 2)
        .unwrap()
        .memory_bytes();
    assert_eq!(
        small, big,
        "memory depends on the batch, not the station count"
    );
    assert!(engine.render(&mut out[1..]).is_err());
}
