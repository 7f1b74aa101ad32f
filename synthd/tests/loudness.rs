//! The loudness hold on composer's real material: every preset, at its own intensity and at the
//! extremes, settles at -16 ± 1 LUFS integrated (BS.1770 with EBU R128 gating, the meter of
//! `synthd::loudness`) with true peak at or under -1 dBTP; silence stays silent; a sudden change of
//! parameters moves the gain no faster than its slew limit and makes no jump.
//!
//! Each render is two minutes of music, fed to the renderer bar by bar exactly as `auralis
//! render` does. The integrated figure leaves out the first 20 s: the hold starts at the gain
//! that suits Focus and moves at most 1 dB per second, so a preset far from Focus (Sleep at
//! intensity 0.15 wants about +10 dB more) needs that long to settle. True peak is measured over
//! the whole render, start included.

use composer::{Composer, Params, PresetId};
use shm_proto::{CHUNK_FRAMES, NoteEvent, SAMPLE_RATE};
use synthd::StationRenderer;
use synthd::loudness::{integrated_lufs, true_peak_dbfs};
use synthd::loudness_hold::{MAX_SLEW_DB_PER_S, TARGET_LUFS};

/// Seconds of music per render.
const SECONDS: usize = 120;
/// Seconds left out of the integrated measure while the hold settles.
const SETTLE: usize = 20;

/// A station playing composer's material, chunk by chunk.
struct Station {
    composer: Composer,
    synth: StationRenderer,
    pending: std::collections::VecDeque<NoteEvent>,
    bar: Vec<NoteEvent>,
}

impl Station {
    fn new(params: Params) -> Self {
        Station {
            composer: Composer::new(params.seed, params),
            synth: StationRenderer::new(params.to_station()),
            pending: Default::default(),
            bar: Vec::new(),
        }
    }

    fn set_params(&mut self, params: Params) {
        self.composer.set_params(params);
        self.synth.set_params(params.to_station());
    }

    /// Renders `chunks` chunks, appending interleaved stereo to `out` and the hold's gain after
    /// each chunk to `gains`.
    fn render(&mut self, chunks: usize, out: &mut Vec<f32>, gains: &mut Vec<f32>) {
        let mut chunk = vec![0.0f32; 2 * CHUNK_FRAMES];
        for _ in 0..chunks {
            let end = self.synth.clock() + CHUNK_FRAMES as u64;
            while self.composer.composed_until_frame() < end {
                self.bar.clear();
                self.composer.next_bar(&mut self.bar);
                self.pending.extend(self.bar.iter().copied());
            }
            while self.pending.front().is_some_and(|e| e.at_frame < end) {
                let e = self.pending.pop_front().unwrap();
                assert!(self.synth.push_event(&e));
            }
            self.synth.render_f32(&mut chunk);
            out.extend_from_slice(&chunk);
            gains.push(self.synth.loudness_gain_db());
        }
    }
}

fn params(preset: &str, intensity: Option<f32>) -> Params {
    let mut p = Params::from_preset(PresetId::from_name(preset).unwrap(), 1);
    if let Some(i) = intensity {
        p.intensity = i;
    }
    p
}

/// Renders two minutes of `preset`; asserts the loudness and the true peak.
fn holds(preset: &str, intensity: Option<f32>) {
    let mut st = Station::new(params(preset, intensity));
    let (mut out, mut gains) = (Vec::new(), Vec::new());
    st.render(SECONDS * 10, &mut out, &mut gains);
    let settled = &out[2 * SETTLE * SAMPLE_RATE as usize..];
    let lufs = integrated_lufs(settled);
    let whole = integrated_lufs(&out);
    let tp = true_peak_dbfs(&out);
    let g = gains.last().unwrap();
    eprintln!(
        "{preset} {intensity:?}: {lufs:.2} LUFS after {SETTLE} s ({whole:.2} whole), true peak {tp:.2} dBTP, gain {g:+.2} dB"
    );
    assert!(
        (lufs - f64::from(TARGET_LUFS)).abs() <= 1.0,
        "{preset}: {lufs:.2} LUFS"
    );
    assert!(tp <= -1.0, "{preset}: true peak {tp:.2} dBTP");
    assert!(out.iter().all(|s| s.is_finite()));
}

#[test]
fn focus_holds_minus_16_lufs() {
    holds("focus", None);
}

#[test]
fn calm_holds_minus_16_lufs() {
    holds("calm", None);
}

#[test]
fn sleep_holds_minus_16_lufs() {
    holds("sleep", None);
}

#[test]
fn bright_holds_minus_16_lufs() {
    holds("bright", None);
}

#[test]
fn dream_holds_minus_16_lufs() {
    holds("dream", None);
}

#[test]
fn night_holds_minus_16_lufs() {
    holds("night", None);
}

#[test]
fn focus_at_intensity_0_1_and_0_9_holds_minus_16_lufs() {
    holds("focus", Some(0.1));
    holds("focus", Some(0.9));
}

#[test]
fn every_preset_is_tested() {
    let names: Vec<&str> = composer::presets::presets()
        .iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(
        names,
        ["focus", "calm", "sleep", "bright", "dream", "night"],
        "add a test for the new preset"
    );
}

#[test]
fn silence_stays_silent_and_the_gain_holds() {
    let mut r = StationRenderer::new(params("focus", None).to_station());
    let g0 = r.loudness_gain_db();
    let mut chunk = [0i16; shm_proto::CHUNK_SAMPLES];
    for _ in 0..300 {
        r.render_chunk(&mut chunk);
        assert!(chunk.iter().all(|&s| s == 0));
    }
    assert_eq!(r.loudness_gain_db(), g0, "silence moved the gain");

    // Music, then a minute of silence: the tail dies away and the gain does not climb after it.
    let mut st = Station::new(params("focus", None));
    let (mut out, mut gains) = (Vec::new(), Vec::new());
    st.render(300, &mut out, &mut gains);
    let before = *gains.last().unwrap();
    st.pending.clear();
    let mut chunk = [0i16; shm_proto::CHUNK_SAMPLES];
    for _ in 0..600 {
        st.synth.render_chunk(&mut chunk);
    }
    let after = st.synth.loudness_gain_db();
    assert!(chunk.iter().all(|&s| s == 0), "silent after a minute");
    eprintln!("gain before the silence {before:+.2} dB, after {after:+.2} dB");
    assert!(
        after - before < 0.5,
        "gain climbed in silence: {before:+.2} -> {after:+.2} dB"
    );
    assert!(!st.synth.has_subnormal_state());
}

#[test]
fn a_sudden_change_of_intensity_makes_no_jump() {
    let mut st = Station::new(params("focus", Some(0.1)));
    let (mut out, mut gains) = (Vec::new(), Vec::new());
    st.render(400, &mut out, &mut gains);
    let at = out.len();
    st.set_params(params("focus", Some(0.9)));
    st.render(400, &mut out, &mut gains);
    st.set_params(params("focus", Some(0.1)));
    st.render(400, &mut out, &mut gains);
    // The gain moves at most its slew per chunk.
    let max_step = MAX_SLEW_DB_PER_S * CHUNK_FRAMES as f32 / SAMPLE_RATE as f32 + 1e-4;
    for w in gains.windows(2) {
        assert!((w[1] - w[0]).abs() <= max_step, "{} -> {}", w[0], w[1]);
    }
    // No step in the samples at the change bigger than the music's own.
    let step = (0..2)
        .map(|ch| (out[at + ch] - out[at - 2 + ch]).abs())
        .fold(0.0, f32::max);
    let typical = out[at - 2 * SAMPLE_RATE as usize..at]
        .windows(3)
        .step_by(2)
        .map(|w| (w[2] - w[0]).abs())
        .fold(0.0, f32::max);
    assert!(step <= typical, "{step} > {typical}");
    // Short-term loudness (3 s windows, 1 s apart) never leaps more than 6 LU above the target.
    let sec = 2 * SAMPLE_RATE as usize;
    for k in 3..out.len() / sec {
        let st = integrated_lufs(&out[(k - 3) * sec..k * sec]);
        assert!(st < f64::from(TARGET_LUFS) + 6.0, "{st:.2} LUFS at {k} s");
    }
    let tp = true_peak_dbfs(&out);
    assert!(tp <= -1.0, "true peak {tp:.2} dBTP");
}
