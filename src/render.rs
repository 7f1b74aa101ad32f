//! `auralis render`: composer and synthesizer in one process, as fast as the machine goes, for
//! tests, listening checks and export.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, bail};
use composer::{Composer, ParamUpdate, Params, PresetId};
use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, NoteEvent, SAMPLE_RATE};
use synthd::StationRenderer;

use crate::export::Export;

/// Flags of `auralis render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// Seed of the composition.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Preset (focus, calm, sleep, bright, dream).
    #[arg(long, default_value = "focus")]
    preset: String,
    /// Key, overriding the preset's (e.g. D, Eb, F#).
    #[arg(long)]
    key: Option<String>,
    /// Mode, overriding the preset's (e.g. dorian).
    #[arg(long)]
    mode: Option<String>,
    /// Tempo in BPM (40-120), overriding the preset's.
    #[arg(long)]
    bpm: Option<f64>,
    /// Intensity (0-1), overriding the preset's.
    #[arg(long)]
    intensity: Option<f64>,
    /// Length in seconds (default 60; with `--midi-in`, the file's length plus its tail).
    #[arg(long, conflicts_with = "minutes")]
    seconds: Option<f64>,
    /// Length in minutes (instead of `--seconds`).
    #[arg(long)]
    minutes: Option<f64>,
    /// Output file; its extension chooses the format: `.wav` (44.1 kHz, 16-bit, stereo),
    /// `.opus` / `.ogg` (Ogg/Opus, 48 kHz, 96 kbit/s) or `.mp3` (44.1 kHz, 128 kbit/s CBR), the
    /// same encoders as the live streams.
    #[arg(long)]
    out: PathBuf,
    /// Also write what was composed as a Standard MIDI File.
    #[arg(long)]
    midi: Option<PathBuf>,
    /// Play the notes on this SoundFont (SF2, through rustysynth) instead of the built-in
    /// instruments; each part uses the General MIDI program composer names for it.
    #[arg(long)]
    soundfont: Option<PathBuf>,
    /// Render this Standard MIDI File instead of composing (channels and programs map to parts;
    /// the tempo map is honoured). `--seconds` then defaults to the file's length plus its tail.
    #[arg(long)]
    midi_in: Option<PathBuf>,
}

/// Seconds rendered after a MIDI file's last event, for release and reverb tails.
const MIDI_TAIL_S: f64 = 3.0;

impl RenderArgs {
    /// The length asked for, in seconds (`--seconds` or `--minutes`), if any.
    fn length_s(&self) -> Option<f64> {
        self.seconds.or(self.minutes.map(|m| m * 60.0))
    }
}

/// Checks a length in seconds: more than nothing, at most a day.
fn check_length(seconds: f64) -> anyhow::Result<()> {
    if !(seconds > 0.0 && seconds <= 24.0 * 3600.0) {
        bail!("the length must be more than 0 s and at most 24 h, got {seconds} s");
    }
    Ok(())
}

/// The synthesizer for `args`: built-in instruments, or the SoundFont (loaded and checked first).
fn synthesizer(
    args: &RenderArgs,
    station: shm_proto::StationParams,
) -> anyhow::Result<StationRenderer> {
    Ok(match &args.soundfont {
        Some(path) => {
            let bank = synthd::SoundFontBank::load(path)?;
            StationRenderer::with_soundfont(station, &bank)
        }
        None => StationRenderer::new(station),
    })
}

/// Composes (or reads `--midi-in`) and renders `args.seconds` of music to `args.out`.
pub fn render(args: RenderArgs) -> anyhow::Result<()> {
    if let Some(path) = args.midi_in.clone() {
        return render_midi(&args, &path);
    }
    let seconds = args.length_s().unwrap_or(60.0);
    check_length(seconds)?;
    let preset = PresetId::from_name(&args.preset).with_context(|| {
        format!(
            "unknown preset {:?}; known: {}",
            args.preset,
            composer::presets::preset_names()
        )
    })?;
    let mut params = Params::from_preset(preset, args.seed);
    params
        .apply(&ParamUpdate {
            key: args.key.clone(),
            mode: args.mode.clone(),
            bpm: args.bpm,
            intensity: args.intensity,
            ..ParamUpdate::default()
        })
        .context("invalid parameters")?;

    let total_frames = (seconds * f64::from(SAMPLE_RATE)).round() as u64;
    let mut out = Export::create(&args.out)?;

    let started = Instant::now();
    let mut composer = Composer::new(args.seed, params);
    let mut synth = synthesizer(&args, params.to_station())?;
    let mut bar = Vec::new();
    let mut pending: VecDeque<NoteEvent> = VecDeque::new();
    let mut composed: Vec<NoteEvent> = Vec::new();
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let mut written = 0u64;
    while written < total_frames {
        let chunk_end = synth.clock() + CHUNK_FRAMES as u64;
        while composer.composed_until_frame() < chunk_end {
            bar.clear();
            composer.next_bar(&mut bar);
            pending.extend(bar.iter().copied());
        }
        while pending.front().is_some_and(|ev| ev.at_frame < chunk_end) {
            let ev = pending.pop_front().expect("front exists");
            if !synth.push_event(&ev) {
                tracing::warn!("synth event queue full; note dropped");
            }
            if ev.at_frame < total_frames {
                composed.push(ev);
            }
        }
        synth.render_chunk(&mut chunk);
        let frames = (total_frames - written).min(CHUNK_FRAMES as u64) as usize;
        out.write(&chunk[..frames * 2])?;
        written += frames as u64;
    }
    out.finish()?;
    let took = started.elapsed().as_secs_f64();
    tracing::info!(
        out = %args.out.display(),
        seconds,
        render_s = took,
        times_real_time = seconds / took.max(1e-9),
        "rendered"
    );

    if let Some(path) = &args.midi {
        composer::midi::write_smf_file(path, &composed, params.bpm)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// `--midi-in`: renders a Standard MIDI File through the engine.
fn render_midi(args: &RenderArgs, path: &std::path::Path) -> anyhow::Result<()> {
    let notes = synthd::midi_in::read_midi_file(path)?;
    let preset = PresetId::from_name(&args.preset).with_context(|| {
        format!(
            "unknown preset {:?}; known: {}",
            args.preset,
            composer::presets::preset_names()
        )
    })?;
    let params = Params::from_preset(preset, args.seed);
    let mut synth = synthesizer(args, params.to_station())?;
    let file_s = notes.end_frame as f64 / f64::from(SAMPLE_RATE) + MIDI_TAIL_S;
    let seconds = args.length_s().unwrap_or(file_s);
    check_length(seconds)?;
    let total_frames = (seconds * f64::from(SAMPLE_RATE)).round() as u64;
    let mut out = Export::create(&args.out)?;
    let started = Instant::now();
    let mut queued = notes.events.iter().peekable();
    let mut chunk = [0i16; CHUNK_SAMPLES];
    let mut written = 0u64;
    while written < total_frames {
        let chunk_end = synth.clock() + CHUNK_FRAMES as u64;
        while let Some(ev) = queued.next_if(|e| e.at_frame < chunk_end) {
            if !synth.push_event(ev) {
                tracing::warn!("synth event queue full; note dropped");
            }
        }
        synth.render_chunk(&mut chunk);
        let frames = (total_frames - written).min(CHUNK_FRAMES as u64) as usize;
        out.write(&chunk[..frames * 2])?;
        written += frames as u64;
    }
    out.finish()?;
    let took = started.elapsed().as_secs_f64();
    tracing::info!(
        midi_in = %path.display(),
        notes = notes.events.len(),
        out = %args.out.display(),
        seconds,
        render_s = took,
        times_real_time = seconds / took.max(1e-9),
        "rendered"
    );
    Ok(())
}
