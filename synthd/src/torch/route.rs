//! [`PadRoute`]: the daemon's path from stations to the [`PadEngine`] and back — pad notes into
//! the engine's voice table, one batched render of every station due this tick, each station's
//! dry pad block handed to its [`StationRenderer`].
//!
//! Per tick: [`PadRoute::push_event`] for each station's events (pad notes go to the engine, the
//! rest to the renderer), [`PadRoute::stage`] for each station whose chunk is due, one
//! [`PadRoute::render`] for all of them, then [`PadRoute::render_station`] for each (the CPU part:
//! the other instruments, the pad bus filter, reverb, loudness hold and limiter). The host
//! buffers are sized for every station at construction; nothing here allocates per chunk.

use shm_proto::{CHUNK_SAMPLES, NoteEvent, Part};

use super::{PadEngine, TorchError};
use crate::renderer::StationRenderer;

/// Routes the pads of up to [`PadRoute::capacity`] stations through one [`PadEngine`].
#[derive(Debug)]
pub struct PadRoute {
    /// The batched renderer; its station `k` is the daemon's control-table slot `k`.
    engine: PadEngine,
    /// Engine stations staged for this tick's render, in staging order.
    due: Vec<usize>,
    /// Their dry pads after the render, station after station (capacity: every station).
    pads: Vec<f32>,
}

impl PadRoute {
    /// A route for `stations` stations (the control table's capacity) through `engine`.
    pub fn new(mut engine: PadEngine, stations: usize) -> Self {
        engine.set_stations(stations);
        PadRoute {
            engine,
            due: Vec::with_capacity(stations),
            pads: vec![0.0; stations * CHUNK_SAMPLES],
        }
    }

    /// Stations the route can carry.
    pub fn capacity(&self) -> usize {
        self.engine.stations()
    }

    /// The engine (counters, device memory).
    pub fn engine(&self) -> &PadEngine {
        &self.engine
    }

    /// A station opened on slot `station`: no pad voices, timeline at `clock`.
    pub fn open(&mut self, station: usize, clock: u64) {
        self.engine.voices_mut().reset(station, clock);
    }

    /// True if `renderer`'s pads go through the engine (its SoundFont, if it has one, plays
    /// them otherwise).
    pub fn routes(&self, station: usize, renderer: &StationRenderer) -> bool {
        station < self.capacity() && !renderer.uses_soundfont()
    }

    /// Gives `ev` to station `station`: a pad note to the engine, anything else to `renderer`.
    /// `false` when the renderer's pending queue is full (as [`StationRenderer::push_event`]).
    pub fn push_event(
        &mut self,
        station: usize,
        renderer: &mut StationRenderer,
        ev: &NoteEvent,
    ) -> bool {
        if ev.part == Part::Pad as u8 && self.routes(station, renderer) {
            // The engine starts the note at its frame within the next chunk (or now, if late).
            self.engine
                .voices_mut()
                .set_clock(station, renderer.clock());
            if self.engine.voices_mut().note_on(station, ev) {
                return true;
            }
        }
        renderer.push_event(ev)
    }

    /// Stages station `station` (its renderer at `clock`) for this tick's render.
    pub fn stage(&mut self, station: usize, clock: u64) {
        debug_assert!(!self.due.contains(&station), "staged twice");
        self.engine.voices_mut().set_clock(station, clock);
        self.due.push(station);
    }

    /// Stations staged.
    pub fn staged(&self) -> usize {
        self.due.len()
    }

    /// One batched render of the staged stations. On an error nothing is rendered and the
    /// stations stay staged (the caller falls back to the native engine).
    pub fn render(&mut self) -> Result<(), TorchError> {
        let n = self.due.len();
        self.engine
            .render_stations(&self.due, &mut self.pads[..n * CHUNK_SAMPLES])
    }

    /// Renders staged station number `k` (in staging order) with its pads from the last
    /// [`Self::render`] into `out`.
    pub fn render_station(
        &self,
        k: usize,
        renderer: &mut StationRenderer,
        out: &mut [i16; CHUNK_SAMPLES],
    ) {
        let pads = &self.pads[k * CHUNK_SAMPLES..(k + 1) * CHUNK_SAMPLES];
        renderer.render_chunk_with_external_pads(pads, out);
    }

    /// Forgets the staged stations (after the tick).
    pub fn clear(&mut self) {
        self.due.clear();
    }
}

#[cfg(test)]
mod tests;
