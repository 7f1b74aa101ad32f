//! One 8-bar phrase at 60 BPM (32 s of stereo: four-note pad chords, a piano melody, a bass line,
//! with reverb and limiter), rendered in 4,410-frame chunks on one core — and, in the same run,
//! the same notes through FluidSynth (Debian's `fluidsynth` CLI with FluidR3_GM), and the same MIDI
//! file with the same SoundFont through our SoundFont path (rustysynth).
//!
//! `cargo bench -p synthd --bench phrase`
//!
//! Times are CPU time of the rendering thread (FluidSynth: CPU time of its process), so the
//! figures hold on this shared 2-core VM even while others compile; wall time would count the
//! waits. FluidSynth's figure excludes its SoundFont load: a run on an empty MIDI file is timed and
//! subtracted (best of 3 each). Our SoundFont figure excludes the load the same way (the load is
//! outside the timed loop). When `fluidsynth` or the SoundFont is missing the bench says so and
//! still reports our figures. `SF2=path` picks another SoundFont.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use common::{BAR, Extras, focus_phrase, params};
use shm_proto::{CHUNK_FRAMES, CHUNK_SAMPLES, NoteEvent, SAMPLE_RATE};
use synthd::{SoundFontBank, StationRenderer};

/// Runs of each measurement; the best is reported (the VM is shared and noisy).
const RUNS: usize = 10;

fn main() {
    let events = focus_phrase(0, 8, Extras::default());
    let frames = 8 * BAR as usize;
    let chunks = frames.div_ceil(CHUNK_FRAMES);
    let seconds = (chunks * CHUNK_FRAMES) as f64 / f64::from(SAMPLE_RATE);

    let (ours, max_voices) = time_phrase(&events, chunks, || StationRenderer::new(params(0.5)));
    let master = time_phrase(&[], chunks, || StationRenderer::new(params(0.5))).0;
    println!(
        "master bus alone (reverb + limiter on silence): {:.1} ms",
        master * 1e3
    );
    println!(
        "built-in instruments: {} notes, {seconds:.1} s stereo, up to {max_voices} voices: {:.1} ms (best of {RUNS}), {:.0}x real time",
        events.len(),
        ours * 1e3,
        seconds / ours
    );

    let dir = std::env::temp_dir().join(format!("synthd-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mid = dir.join("phrase.mid");
    let smf = composer::midi::write_smf(&events, 60.0);
    std::fs::write(&mid, &smf).expect("writing phrase.mid");
    let empty = dir.join("empty.mid");
    std::fs::write(&empty, composer::midi::write_smf(&[], 60.0)).expect("writing empty.mid");
    let sf2 = std::env::var_os("SF2")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/sounds/sf2/FluidR3_GM.sf2"));

    let fluid = fluidsynth_render_s(&sf2, &mid, &empty, &dir);
    match &fluid {
        Ok(f) => println!(
            "FluidSynth (same notes, {}, reverb + chorus, load excluded): {:.1} ms, {:.0}x real time; built-in instruments are {:.1}x faster",
            sf2.display(),
            f * 1e3,
            seconds / f,
            f / ours
        ),
        Err(why) => println!("FluidSynth not measured: {why}"),
    }

    // The same MIDI file, the same SoundFont, through our engine (rustysynth).
    if !sf2.exists() {
        println!("SoundFont path not measured: {} is missing", sf2.display());
    } else {
        let t0 = Instant::now();
        let bank = SoundFontBank::load(&sf2).expect("loading the SoundFont");
        let load = t0.elapsed().as_secs_f64();
        let notes = synthd::midi_in::parse_midi(&smf).expect("parsing our own MIDI file");
        let (sf, _) = time_phrase_runs(&notes.events, chunks, 3, || {
            StationRenderer::with_soundfont(params(0.5), &bank)
        });
        println!(
            "our SoundFont path (same MIDI file, same SoundFont, rustysynth, reverb + chorus, load of {:.0} ms excluded): {:.1} ms, {:.0}x real time",
            load * 1e3,
            sf * 1e3,
            seconds / sf
        );
        if let Ok(f) = &fluid {
            println!(
                "  vs FluidSynth on the same file: {:.2}x ({})",
                *f / sf,
                if sf <= *f { "no slower" } else { "slower" }
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Best time of [`RUNS`] renders of `events` over `chunks` chunks, and the most voices seen.
fn time_phrase(
    events: &[NoteEvent],
    chunks: usize,
    make: impl Fn() -> StationRenderer,
) -> (f64, usize) {
    time_phrase_runs(events, chunks, RUNS, make)
}

fn time_phrase_runs(
    events: &[NoteEvent],
    chunks: usize,
    runs: usize,
    make: impl Fn() -> StationRenderer,
) -> (f64, usize) {
    let mut best = f64::INFINITY;
    let mut max_voices = 0;
    for _ in 0..runs {
        let mut r = make();
        let mut chunk = [0i16; CHUNK_SAMPLES];
        let mut queued = events.iter().peekable();
        let t0 = CpuClock::now();
        for _ in 0..chunks {
            let end = r.clock() + CHUNK_FRAMES as u64;
            while let Some(e) = queued.next_if(|e| e.at_frame < end) {
                r.push_event(e);
            }
            r.render_chunk(&mut chunk);
            max_voices = max_voices.max(r.voices_active());
        }
        best = best.min(t0.elapsed().as_secs_f64());
        std::hint::black_box(&chunk);
    }
    (best, max_voices)
}

/// Time on this thread's CPU clock (what it ran, not what it waited while other processes had
/// the core), so the figures mean something on a busy shared machine. FluidSynth, a child
/// process, is timed by its own user + system time for the same reason.
struct CpuClock(std::time::Duration);

impl CpuClock {
    fn now() -> Self {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .expect("thread CPU clock");
        CpuClock(std::time::Duration::from(t))
    }

    fn elapsed(&self) -> std::time::Duration {
        Self::now().0 - self.0
    }
}

/// CPU time (user + system) used by finished children so far.
fn children_cpu_s() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 * 1e-6;
    tv(u.user_time()) + tv(u.system_time())
}

/// FluidSynth's render time of `mid` minus that of `empty` (its SoundFont load), best of 3.
fn fluidsynth_render_s(sf2: &Path, mid: &Path, empty: &Path, dir: &Path) -> Result<f64, String> {
    if !sf2.exists() {
        return Err(format!(
            "{} is missing (apt-get install fluid-soundfont-gm)",
            sf2.display()
        ));
    }
    let run = |file: &Path| -> Result<f64, String> {
        let mut best = f64::INFINITY;
        for _ in 0..3 {
            let t0 = children_cpu_s();
            let status = Command::new("fluidsynth")
                .env("SDL_AUDIODRIVER", "dummy")
                .args(["-ni", "-F"])
                .arg(dir.join("fluid.wav"))
                .args(["-r", "44100", "-R", "1", "-C", "1"])
                .arg(sf2)
                .arg(file)
                .output()
                .map_err(|e| format!("cannot run fluidsynth ({e}; apt-get install fluidsynth)"))?;
            if !status.status.success() {
                return Err(format!(
                    "fluidsynth failed: {}",
                    String::from_utf8_lossy(&status.stderr)
                ));
            }
            best = best.min(children_cpu_s() - t0);
        }
        Ok(best)
    };
    let load = run(empty)?;
    let full = run(mid)?;
    Ok((full - load).max(1e-6))
}
