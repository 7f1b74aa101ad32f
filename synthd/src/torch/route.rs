//! [`VoiceRoute`]: the daemon's path from stations to the [`VoiceEngine`] and back — the melodic
//! notes (pads, bass, pianos, bell, shimmer) into the engine's voice table, one batched render of
//! every station due this tick, each station's torch bus handed to its [`StationRenderer`].
//!
//! Per tick: [`VoiceRoute::push_event`] for each station's events (device notes go to the engine,
//! the percussion to the renderer), [`VoiceRoute::stage`] for each station whose chunk is due, one
//! [`VoiceRoute::render`] for all of them, then [`VoiceRoute::render_station`] for each (the CPU
//! part: the pad filter, the percussion, reverb, loudness hold and limiter). The host buffers are
//! sized for every station at construction; nothing here allocates per chunk.

use shm_proto::{CHUNK_SAMPLES, NoteEvent, StationParams};

use super::engine::STATION_OUT;
use super::pad_bus::PadFilter;
use super::voices::Family;
use super::{TorchError, VoiceEngine};
use crate::instruments::Instrument;
use crate::renderer::StationRenderer;

/// Routes the melodic voices of up to [`VoiceRoute::capacity`] stations through one
/// [`VoiceEngine`].
#[derive(Debug)]
pub struct VoiceRoute {
    /// The batched renderer; its station `k` is the daemon's control-table slot `k`.
    engine: VoiceEngine,
    /// Each station's pad low-pass and smoothed brightness (the CPU side of its torch voices).
    filters: Vec<PadFilter>,
    /// Engine stations staged for this tick's render, in staging order.
    due: Vec<usize>,
    /// Their engine output after the render, station after station (capacity: every station).
    out: Vec<f32>,
    /// One station's finished torch bus, interleaved stereo.
    bus: Vec<f32>,
}

/// Brightness 0..=1 a station's intensity asks for (the renderer's rule).
fn brightness_target(p: &StationParams) -> f32 {
    if p.intensity.is_finite() {
        p.intensity.clamp(0.0, 1.0)
    } else {
        0.5
    }
}

impl VoiceRoute {
    /// A route for `stations` stations (the control table's capacity) through `engine`.
    pub fn new(mut engine: VoiceEngine, stations: usize) -> Self {
        engine.set_stations(stations);
        VoiceRoute {
            engine,
            filters: (0..stations).map(|_| PadFilter::default()).collect(),
            due: Vec::with_capacity(stations),
            out: vec![0.0; stations * STATION_OUT],
            bus: vec![0.0; CHUNK_SAMPLES],
        }
    }

    /// Stations the route can carry.
    pub fn capacity(&self) -> usize {
        self.engine.stations()
    }

    /// The engine (counters, device memory).
    pub fn engine(&self) -> &VoiceEngine {
        &self.engine
    }

    /// A station opened on slot `station`: no device voices, timeline at `clock`, brightness
    /// taken from its first chunk.
    pub fn open(&mut self, station: usize, clock: u64) {
        self.engine.voices_mut().reset(station, clock);
        self.filters[station] = PadFilter::default();
    }

    /// True if `renderer`'s melodic voices go through the engine (its SoundFont, if it has one,
    /// plays them otherwise).
    pub fn routes(&self, station: usize, renderer: &StationRenderer) -> bool {
        station < self.capacity() && !renderer.uses_soundfont()
    }

    /// Gives `ev` to station `station`: a melodic note to the engine (see [`Family::routed`]),
    /// anything else (the percussion) to `renderer`. `false` when the renderer's pending queue is
    /// full (as [`StationRenderer::push_event`]).
    pub fn push_event(
        &mut self,
        station: usize,
        renderer: &mut StationRenderer,
        ev: &NoteEvent,
    ) -> bool {
        let device = Instrument::for_event(ev)
            .and_then(Family::of)
            .is_some_and(Family::routed);
        if device && self.routes(station, renderer) {
            // The engine starts the note at its frame within the next chunk (or now, if late),
            // with the station's brightness at the chunk's start.
            let brightness =
                self.filters[station].brightness(brightness_target(&renderer.params()));
            let voices = self.engine.voices_mut();
            voices.set_clock(station, renderer.clock());
            if voices.note_on(station, ev, brightness) {
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
            .render_stations(&self.due, &mut self.out[..n * STATION_OUT])
    }

    /// Renders staged station number `k` (in staging order) with its device voices from the
    /// last [`Self::render`] into `out`: the pads through the station's pad filter, the other
    /// device voices as they are, onto the renderer's dry bus with its percussion.
    pub fn render_station(
        &mut self,
        k: usize,
        renderer: &mut StationRenderer,
        out: &mut [i16; CHUNK_SAMPLES],
    ) {
        let station = self.due[k];
        let dev = &self.out[k * STATION_OUT..(k + 1) * STATION_OUT];
        let target = brightness_target(&renderer.params());
        self.filters[station].mix(renderer.clock(), target, dev, &mut self.bus);
        renderer.render_chunk_with_external_pads(&self.bus, out);
    }

    /// Forgets the staged stations (after the tick).
    pub fn clear(&mut self) {
        self.due.clear();
    }
}

#[cfg(test)]
mod tests;
