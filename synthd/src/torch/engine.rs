//! [`VoiceEngine`]: the melodic voices of every station (pads, bass, pianos, bells and shimmer)
//! rendered in one batch of tensor operations per 100 ms chunk, fp32, without gradient tracking.
//!
//! Layout: a batch is `b` stations times [`SLOTS`] voices (`GPU_BATCH_SIZE` stations at most, which
//! bounds device memory; more stations run as several batches of the same shapes). The rows are
//! grouped by voice family ([`Family`]); each family runs its own oscillator code on its block of
//! rows (and is skipped when no station of the batch plays it), then the envelope and gain lines
//! shared by every family. Each station's chunk sits inside a window of 71 whole control blocks
//! (4,544 frames) starting at the control point at or before its clock, so the control-rate lines
//! are `[voices, block, frame in block]` broadcasting with no gathers; one gather per station cuts
//! its 4,410 frames out of the window at the end.
//!
//! Mirrors the native math (see `voices` and the parity tests): oscillator phases are 32-bit
//! wrapping integers computed exactly in i64, so the DPW saws, triangles, polynomial sines and
//! table lookups read the same phases as native; the envelope, the piano's index and level decays,
//! the bell's partial decays, the electric piano's autopan and the shimmer's swells are closed
//! forms of the age (native walks them block by block or frame by frame) evaluated at native's
//! control points, with native's own ramp arithmetic between them; the electric piano's index
//! and tine decays are closed forms at every frame (native sets them to the same closed form at
//! each control point and steps them per frame within the block). The bass one-pole is a
//! recursion; it runs as a blocked closed form (see [`bass`]).

use shm_proto::CHUNK_FRAMES;
use tch::{Device, Kind, TchError, Tensor};

use super::voices::{
    F_ATTACK_STEP, F_FLOOR, F_GAIN, F_LN_CUT, F_LN_DECAY, F_LN_RELEASE, F_PARAMS, F_SUSTAIN, F_X,
    Family, I_ACTIVE, I_ATTACK, I_CUT, I_GATE, I_INC, I_LFO, I_LFO_INC, I_PARAMS, I_PHASE, I_START,
    NEVER, SLOTS, VoiceTable,
};
use crate::device::TorchDevice;
use crate::voice::BLOCK;

/// Control blocks in a chunk's window (4,410 frames at any grid offset fit in 71 blocks).
const BLOCKS: i64 = 71;
/// Frames in the window.
const WINDOW: i64 = BLOCKS * BLOCK as i64;
/// Control blocks of history the bass filter reads before the window: the one-pole's memory
/// decays by `k^64` per block (under 0.02 for every bass note, cutoff 430 Hz and up), so five
/// blocks leave under 3e-9 of the state out.
const HISTORY: i64 = 5;
/// Output channels per frame: the pads' dry left and right (the route filters them on the CPU),
/// then every other device voice's left and right.
pub const OUT_CHANNELS: usize = 4;
/// Samples of one station's chunk in the engine's output.
pub const STATION_OUT: usize = CHUNK_FRAMES * OUT_CHANNELS;

/// What can go wrong building or running the engine.
#[derive(Debug, thiserror::Error)]
pub enum TorchError {
    /// libtorch refused an operation (no such device, out of memory, ...).
    #[error("libtorch: {0}")]
    Torch(#[from] TchError),
    /// The caller's buffer has the wrong length.
    #[error("output holds {got} samples, the stations need {want}")]
    OutputLength {
        /// Samples the stations need.
        want: usize,
        /// Samples given.
        got: usize,
    },
}

/// The batched renderer of many stations' melodic voices.
#[derive(Debug)]
pub struct VoiceEngine {
    /// Where the tensors live.
    device: Device,
    /// The host's voices (the only state).
    voices: VoiceTable,
    /// Stations per device batch.
    batch: usize,
    /// Host staging of the f32 rows of one batch (family-major, see [`VoiceTable::write_rows`]).
    host_f: Vec<f32>,
    /// Host staging of the i64 rows of one batch.
    host_i: Vec<i64>,
    /// Host staging of the stations' grid offsets.
    host_g0: Vec<i64>,
    /// Device copy of the f32 rows, `[batch * SLOTS, F_PARAMS]`.
    dev_f: Tensor,
    /// Device copy of the i64 rows, `[batch * SLOTS, I_PARAMS]`.
    dev_i: Tensor,
    /// Device copy of the grid offsets, `[batch]`.
    dev_g0: Tensor,
    /// The constant tensors every render reads.
    k: Constants,
    /// Device output of one batch, `[batch, CHUNK_FRAMES, OUT_CHANNELS]`: each channel's gather
    /// is copied into it (no per-chunk stack, whose tensor list `tch` builds on the heap).
    dev_out: Tensor,
    /// Host copy of one batch's output, `[batch, CHUNK_FRAMES, OUT_CHANNELS]`.
    host_out: Tensor,
    /// `0..stations`: the station list of [`Self::render`].
    all: Vec<usize>,
    /// Estimated device bytes: persistent tensors plus one batch's working set.
    memory_bytes: u64,
}

/// Tensors built once per engine.
#[derive(Debug)]
struct Constants {
    /// Frame indices -1..WINDOW of the window (the DPW needs the frame before).
    frames: Tensor,
    /// Frame indices `-HISTORY * 64..WINDOW` (the bass filter's history).
    frames_hist: Tensor,
    /// Control points 0, 64, .., 64 * BLOCKS of the window.
    grid: Tensor,
    /// `f + 1` for each offset `f` in a block (the native ramp index), f32.
    ramp_index: Tensor,
    /// Offsets 0..64 in a block, f32.
    offset: Tensor,
    /// Offsets 0..4,410 of a chunk in the window (before adding the grid offset).
    chunk_frames: Tensor,
    /// Native's sine table (2,049 values), for the instruments that read it.
    sine: Tensor,
    /// `i - j` for `i >= j`, else 0, `[64, 64]` f32 indexed `[j, i]` (the bass filter's kernel).
    lag: Tensor,
    /// 1 where `i >= j`, else 0, same layout.
    causal: Tensor,
}

/// Bytes of working set per voice-frame of each family's render: a count of the
/// `[rows, frames]` temporaries alive at its peak (i64 phases 8 bytes; f32 oscillators, lines and
/// masks 4 bytes), rounded up. An estimate from the code, not a measurement of the allocator.
fn bytes_per_voice_frame(family: Family) -> u64 {
    match family {
        Family::Pad => 80,
        Family::Bass => 96,
        Family::Piano => 96,
        Family::Electric | Family::Bell => 112,
        Family::Shimmer => 128,
    }
}

impl VoiceEngine {
    /// An engine for `stations` stations on `device`, `batch` stations per device batch, warmed up
    /// (one silent render of every family, so the allocator's cache and the kernels are ready
    /// before real time).
    pub fn new(device: TorchDevice, stations: usize, batch: usize) -> Result<Self, TorchError> {
        let device = match device {
            TorchDevice::Cuda => Device::Cuda(0),
            TorchDevice::Cpu => Device::Cpu,
        };
        let batch = batch.clamp(1, stations.max(1));
        let rows = (batch * SLOTS) as i64;
        let _guard = tch::no_grad_guard();
        let f = (Kind::Float, device);
        let i = (Kind::Int64, device);
        let table = &crate::osc::Tables::get().sine;
        let b = BLOCK as i64;
        let idx = Tensor::f_arange(b, i)?;
        let lag = idx.f_unsqueeze(0)?.f_sub(&idx.f_unsqueeze(1)?)?;
        let causal = lag.f_ge(0)?.f_to_kind(Kind::Float)?;
        let k = Constants {
            frames: Tensor::f_arange_start(-1, WINDOW, i)?,
            frames_hist: Tensor::f_arange_start(-HISTORY * b, WINDOW, i)?,
            grid: Tensor::f_arange_start(0, BLOCKS + 1, i)?.f_mul_scalar(b)?,
            ramp_index: Tensor::f_arange_start(1, b + 1, f)?,
            offset: Tensor::f_arange(b, f)?,
            chunk_frames: Tensor::f_arange_start(0, CHUNK_FRAMES as i64, i)?,
            sine: Tensor::from_slice(&table[..]).f_to_device(device)?,
            lag: lag.f_clamp_min(0)?.f_to_kind(Kind::Float)?,
            causal,
        };
        let mut engine = VoiceEngine {
            device,
            voices: VoiceTable::new(stations),
            batch,
            host_f: vec![0.0; batch * SLOTS * F_PARAMS],
            host_i: vec![0; batch * SLOTS * I_PARAMS],
            host_g0: vec![0; batch],
            dev_f: Tensor::f_zeros([rows, F_PARAMS as i64], f)?,
            dev_i: Tensor::f_zeros([rows, I_PARAMS as i64], i)?,
            dev_g0: Tensor::f_zeros([batch as i64], i)?,
            k,
            dev_out: Tensor::f_zeros([batch as i64, CHUNK_FRAMES as i64, OUT_CHANNELS as i64], f)?,
            host_out: Tensor::f_zeros(
                [batch as i64, CHUNK_FRAMES as i64, OUT_CHANNELS as i64],
                (Kind::Float, Device::Cpu),
            )?,
            all: (0..stations).collect(),
            memory_bytes: 0,
        };
        engine.memory_bytes = engine.estimate_memory();
        engine.warm_up()?;
        Ok(engine)
    }

    /// Stations rendered.
    pub fn stations(&self) -> usize {
        self.voices.stations()
    }

    /// Stations per device batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Where the tensors live.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The voice table (clocks, note-ons, counters).
    pub fn voices(&self) -> &VoiceTable {
        &self.voices
    }

    /// The voice table, to start notes and set clocks.
    pub fn voices_mut(&mut self) -> &mut VoiceTable {
        &mut self.voices
    }

    /// Estimated device memory: the persistent tensors and the peak working set of one batch
    /// (the largest family's temporaries, the bass filter's kernels, the output accumulators).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    fn estimate_memory(&self) -> u64 {
        let batch = self.batch as u64;
        let rows = batch * SLOTS as u64;
        let window = WINDOW as u64 + 1;
        let persistent = rows * (F_PARAMS as u64 * 4 + I_PARAMS as u64 * 8)
            + (window + (HISTORY * BLOCK as i64 + WINDOW) as u64 + BLOCKS as u64 + 1) * 8
            + (CHUNK_FRAMES as u64) * 8
            + 2 * BLOCK as u64 * 4
            + (crate::osc::TABLE_LEN as u64 + 1) * 4
            + 2 * (BLOCK * BLOCK) as u64 * 4
            + batch * 8;
        let peak_family = Family::ALL
            .iter()
            .map(|&f| {
                let frames = match f {
                    Family::Bass => (HISTORY * BLOCK as i64) as u64 + window,
                    _ => window,
                };
                let kernels = match f {
                    // The per-voice Toeplitz kernel, and its product's blocks.
                    Family::Bass => (BLOCK * BLOCK) as u64 * 4 * 2,
                    _ => 0,
                };
                batch * f.slots() as u64 * (frames * bytes_per_voice_frame(f) + kernels)
            })
            .max()
            .unwrap_or(0);
        // Four channel sums over the window, the gather and the output batch.
        let outputs = batch * window * 4 * OUT_CHANNELS as u64 * 3;
        persistent + peak_family + outputs
    }

    /// Renders one silent chunk of every family at the full batch shape, leaving clocks and
    /// voices as they were.
    fn warm_up(&mut self) -> Result<(), TorchError> {
        let _guard = tch::no_grad_guard();
        let n = self.batch;
        self.host_f.fill(0.0);
        self.host_i.fill(0);
        self.host_g0.fill(0);
        let out = self.render_batch(n, [true; Family::ALL.len()])?;
        self.host_out.f_narrow(0, 0, n as i64)?.f_copy_(&out)?;
        Ok(())
    }

    /// Renders the next chunk of every station: per frame the dry pads' left and right, then the
    /// other device voices' left and right ([`OUT_CHANNELS`]), station after station
    /// (`stations * STATION_OUT` samples), and moves every clock on by a chunk.
    pub fn render(&mut self, out: &mut [f32]) -> Result<(), TorchError> {
        let all = std::mem::take(&mut self.all);
        let result = self.render_stations(&all, out);
        self.all = all;
        result
    }

    /// Renders the next chunk of `stations` only (in that order, each at most once), in batches
    /// of [`Self::batch`], as [`Self::render`] lays it out (`stations.len() * STATION_OUT`
    /// samples), and moves their clocks on by a chunk. The other stations' clocks and voices
    /// stay as they are (the daemon renders the stations whose chunk is due).
    pub fn render_stations(
        &mut self,
        stations: &[usize],
        out: &mut [f32],
    ) -> Result<(), TorchError> {
        let per = STATION_OUT;
        let want = stations.len() * per;
        if out.len() != want {
            return Err(TorchError::OutputLength {
                want,
                got: out.len(),
            });
        }
        let _guard = tch::no_grad_guard();
        self.voices.reap(stations);
        for (k, group) in stations.chunks(self.batch).enumerate() {
            let n = group.len();
            self.voices.write_rows(
                group,
                &mut self.host_f[..n * SLOTS * F_PARAMS],
                &mut self.host_i[..n * SLOTS * I_PARAMS],
                &mut self.host_g0[..n],
            );
            let busy = Family::ALL.map(|f| self.voices.any_busy(group, f));
            let result = self.render_batch(n, busy)?;
            let host = self.host_out.f_narrow(0, 0, n as i64)?;
            host.shallow_clone().f_copy_(&result)?;
            let first = k * self.batch;
            host.f_copy_data(&mut out[first * per..(first + n) * per], n * per)?;
        }
        self.voices.advance(stations);
        Ok(())
    }

    /// Gives the engine room for `stations` stations (all silent, clocks at 0), keeping its
    /// batch and device tensors. Start-up only: it allocates the host voice table.
    pub fn set_stations(&mut self, stations: usize) {
        self.voices = VoiceTable::new(stations);
        self.all = (0..stations).collect();
    }

    /// The device render of the first `n` stations' staged rows, the families marked `busy`
    /// only: `[n, CHUNK_FRAMES, OUT_CHANNELS]`.
    fn render_batch(
        &mut self,
        n: usize,
        busy: [bool; Family::ALL.len()],
    ) -> Result<Tensor, TchError> {
        let rows = (n * SLOTS) as i64;
        let mut dev_f = self.dev_f.f_narrow(0, 0, rows)?;
        let mut dev_i = self.dev_i.f_narrow(0, 0, rows)?;
        let mut dev_g0 = self.dev_g0.f_narrow(0, 0, n as i64)?;
        dev_f.f_copy_(
            &Tensor::from_slice(&self.host_f[..n * SLOTS * F_PARAMS])
                .f_view_([rows, F_PARAMS as i64])?,
        )?;
        dev_i.f_copy_(
            &Tensor::from_slice(&self.host_i[..n * SLOTS * I_PARAMS])
                .f_view_([rows, I_PARAMS as i64])?,
        )?;
        dev_g0.f_copy_(&Tensor::from_slice(&self.host_g0[..n]))?;
        // Window sums: pads left, right, the others left, right.
        let mut sums: [Option<Tensor>; OUT_CHANNELS] = Default::default();
        for (family, &busy) in Family::ALL.iter().zip(&busy) {
            if !busy {
                continue;
            }
            let first = (n * family.offset()) as i64;
            let count = (n * family.slots()) as i64;
            let r = Rows {
                f: dev_f.f_narrow(0, first, count)?,
                i: dev_i.f_narrow(0, first, count)?,
                n: n as i64,
                slots: family.slots() as i64,
                k: &self.k,
            };
            let [l, right] = r.render(*family)?;
            let at = if *family == Family::Pad { 0 } else { 2 };
            for (ch, x) in [(at, l), (at + 1, right)] {
                sums[ch] = Some(match sums[ch].take() {
                    Some(s) => s.f_add(&x)?,
                    None => x,
                });
            }
        }
        let at = dev_g0
            .f_unsqueeze(1)?
            .f_add(&self.k.chunk_frames.f_unsqueeze(0)?)?;
        let out = self.dev_out.f_narrow(0, 0, n as i64)?;
        for (ch, s) in sums.iter().enumerate() {
            let mut dst = out.f_select(2, ch as i64)?;
            match s {
                Some(s) => dst.f_copy_(&s.f_gather(1, &at, false)?)?,
                None => {
                    let _ = dst.f_fill_(0.0)?;
                }
            }
        }
        Ok(out)
    }
}

/// One family's block of rows on the device, and the code that renders it.
struct Rows<'a> {
    /// f32 rows, `[n * slots, F_PARAMS]`.
    f: Tensor,
    /// i64 rows, `[n * slots, I_PARAMS]`.
    i: Tensor,
    /// Stations.
    n: i64,
    /// Slots per station.
    slots: i64,
    /// The engine's constants.
    k: &'a Constants,
}

/// The control-rate picture of a family's voices over the window's blocks, `[rows, BLOCKS]`
/// unless noted.
struct Lines {
    /// Start frame relative to the window origin, `[rows, 1]`.
    start: Tensor,
    /// Age at each block's grid point (negative before the note).
    age_b: Tensor,
    /// Grid offset of each block's control point (the note's first frame in its first block,
    /// else 0), f32.
    from: Tensor,
    /// Frames from the control point to the block's end, f32.
    m: Tensor,
    /// Native's control calls before each block's (0 at the note's first control point).
    q: Tensor,
    /// Envelope at each block's control point and at its end, as native's ramp gives them.
    e0: Tensor,
    /// See `e0`.
    e1: Tensor,
    /// 1 where the voice sounds, `[rows, BLOCKS, 64]` f32.
    sounding: Tensor,
}

fn f32_of(t: &Tensor) -> Result<Tensor, TchError> {
    t.f_to_kind(Kind::Float)
}

/// A 32-bit phase (in an i64) read as signed and shifted right by 8: native's `(phase as i32) >> 8`.
fn signed24(p: &Tensor) -> Result<Tensor, TchError> {
    p.f_sub(
        &p.f_bitwise_right_shift_tensor_scalar(31)?
            .f_bitwise_left_shift_tensor_scalar(32)?,
    )?
    .f_bitwise_right_shift_tensor_scalar(8)
}

/// Native's `quarter_fold`: the phase folded to a quarter wave, in cycles.
fn quarter_fold(p: &Tensor) -> Result<Tensor, TchError> {
    let u = f32_of(&signed24(p)?)?.f_mul_scalar(1.0 / 16_777_216.0)?;
    let a = u.f_abs()?;
    let b = a.f_minimum(&a.f_mul_scalar(-1.0)?.f_add_scalar(0.5)?)?;
    b.f_copysign(&u)
}

/// Native's `sin_unit`: a folded degree-9 polynomial of the phase.
fn sin_unit(p: &Tensor) -> Result<Tensor, TchError> {
    const C: [f64; 5] = [6.283_185_5, -41.341_7, 81.605_25, -76.705_86, 42.058_69];
    let b = quarter_fold(p)?;
    let b2 = b.f_mul(&b)?;
    let mut acc = b2.f_mul_scalar(C[4] as f32 as f64)?;
    for c in [C[3], C[2], C[1]] {
        acc = acc.f_add_scalar(c as f32 as f64)?.f_mul(&b2)?;
    }
    b.f_mul(&acc.f_add_scalar(C[0] as f32 as f64)?)
}

impl Rows<'_> {
    fn col_f(&self, k: usize) -> Result<Tensor, TchError> {
        self.f.f_narrow(1, k as i64, 1)
    }

    fn col_i(&self, k: usize) -> Result<Tensor, TchError> {
        self.i.f_narrow(1, k as i64, 1)
    }

    fn rows(&self) -> i64 {
        self.n * self.slots
    }

    /// Phases of oscillator `o` at `frames` (unsigned 32 bits in i64), `[rows, frames]`.
    fn phase(&self, o: usize, frames: &Tensor) -> Result<Tensor, TchError> {
        self.col_i(I_PHASE + o)?
            .f_add(&self.col_i(I_INC + o)?.f_mul(&frames.f_unsqueeze(0)?)?)?
            .f_bitwise_and(0xFFFF_FFFF_i64)
    }

    /// Native's `lookup` of the sine table at unsigned 32-bit phases `p`.
    fn lookup(&self, p: &Tensor) -> Result<Tensor, TchError> {
        let i = p.f_bitwise_right_shift_tensor_scalar(21)?;
        let frac = f32_of(&p.f_bitwise_and((1i64 << 21) - 1)?)?
            .f_mul_scalar(1.0 / f64::from(1u32 << 21))?;
        let a = self.k.sine.f_take(&i)?;
        let b = self.k.sine.f_take(&i.f_add_scalar(1)?)?;
        a.f_add(&b.f_sub(&a)?.f_mul(&frac)?)
    }

    /// The window's frames 0..WINDOW.
    fn frames0(&self) -> Result<Tensor, TchError> {
        self.k.frames.f_narrow(0, 1, WINDOW)
    }

    /// Age (frames since the note's start, 0 before it) of every window frame, f32.
    fn frame_age(&self, start: &Tensor) -> Result<Tensor, TchError> {
        f32_of(
            &self
                .frames0()?
                .f_unsqueeze(0)?
                .f_sub(start)?
                .f_clamp(0, NEVER)?,
        )
    }

    /// `[rows, BLOCKS, 64]` to `[rows, WINDOW]`.
    fn flat(&self, t: &Tensor) -> Result<Tensor, TchError> {
        t.f_reshape([self.rows(), WINDOW])
    }

    /// Per-frame values of a control-rate line: native's `base + (f + 1) * step` with
    /// `step = (end - now) / m`, `base = now - from * step` (`now` at each block's control point,
    /// `end` at its end), `[rows, WINDOW]`.
    fn line(&self, l: &Lines, now: &Tensor, end: &Tensor) -> Result<Tensor, TchError> {
        let step = end.f_sub(now)?.f_div(&l.m)?;
        let base = now.f_sub(&l.from.f_mul(&step)?)?;
        let idx = self.k.ramp_index.f_view_([1, 1, BLOCK as i64])?;
        self.flat(
            &base
                .f_unsqueeze(2)?
                .f_add(&idx.f_mul(&step.f_unsqueeze(2)?)?)?,
        )
    }

    /// The envelope and control-rate picture of this family's voices.
    fn lines(&self, cut: bool) -> Result<Lines, TchError> {
        let start = self.col_i(I_START)?;
        let grid = self.k.grid.f_unsqueeze(0)?;
        let age = grid.f_sub(&start)?;
        let env = Envelope {
            attack: self.col_i(I_ATTACK)?,
            gate: self.col_i(I_GATE)?,
            cut: if cut { Some(self.col_i(I_CUT)?) } else { None },
            attack_step: self.col_f(F_ATTACK_STEP)?,
            sustain: self.col_f(F_SUSTAIN)?,
            ln_decay: self.col_f(F_LN_DECAY)?,
            ln_release: self.col_f(F_LN_RELEASE)?,
            ln_cut: self.col_f(F_LN_CUT)?,
        };
        let level = env.level(&age)?;
        // Block b runs from its control point c = max(grid_b, start) to grid_{b+1}.
        let grid_b = self.k.grid.f_narrow(0, 0, BLOCKS)?.f_unsqueeze(0)?;
        let starts_inside = start.f_gt_tensor(&grid_b)?;
        let from = f32_of(&start.f_sub(&grid_b)?.f_clamp(0, BLOCK as i64 - 1)?)?;
        let zero = Tensor::f_zeros([1], (Kind::Float, self.f.device()))?;
        let l_from = zero.f_where_self(&starts_inside, &level.f_narrow(1, 0, BLOCKS)?)?;
        let l_to = level.f_narrow(1, 1, BLOCKS)?;
        let m = from.f_mul_scalar(-1.0)?.f_add_scalar(BLOCK as f64)?;
        // Native's plan and set_amp_ramp, operation for operation.
        let es = l_to.f_sub(&l_from)?.f_div(&m)?;
        let eb = l_from.f_sub(&from.f_mul(&es)?)?;
        let e0 = eb.f_add(&from.f_mul(&es)?)?;
        let e1 = eb.f_add(&es.f_mul_scalar(BLOCK as f64)?)?;
        // A voice ends at a control point after its start once it fades (released, forced to
        // release, or decaying to a zero sustain) under its floor (native `end_if_silent`).
        let age_b = age.f_narrow(1, 0, BLOCKS)?;
        let mut fading = age_b.f_gt_tensor(&env.gate)?.f_logical_or(
            &env.sustain
                .f_eq(0.0)?
                .f_logical_and(&age_b.f_ge_tensor(&env.attack)?)?,
        )?;
        if let Some(c) = &env.cut {
            fading = fading.f_logical_or(&age_b.f_gt_tensor(c)?)?;
        }
        let done = fading.f_logical_and(&age_b.f_gt(0)?)?.f_logical_and(
            &level
                .f_narrow(1, 0, BLOCKS)?
                .f_lt_tensor(&self.col_f(F_FLOOR)?)?,
        )?;
        let frame = self.frames0()?.f_view_([1, BLOCKS, BLOCK as i64])?;
        let sounding = f32_of(
            &frame
                .f_ge_tensor(&start.f_unsqueeze(2)?)?
                .f_logical_and(&done.f_logical_not()?.f_unsqueeze(2)?)?
                .f_logical_and(&self.col_i(I_ACTIVE)?.f_gt(0)?.f_unsqueeze(2)?)?,
        )?;
        // Control calls before each block: 0 at the note's first control point (its start),
        // then one per grid point after it.
        let q = age_b
            .f_clamp_min(0)?
            .f_add_scalar(BLOCK as i64 - 1)?
            .f_bitwise_right_shift_tensor_scalar(6)?;
        Ok(Lines {
            start,
            age_b,
            from,
            m,
            q,
            e0,
            e1,
            sounding,
        })
    }

    /// Envelope times gain per frame for one channel, the gain moving from `g_from` at each
    /// block's control point to `g_to` at its end (native's `set_amp_ramp`), `[rows, WINDOW]`.
    fn amp(&self, l: &Lines, g_from: &Tensor, g_to: &Tensor) -> Result<Tensor, TchError> {
        let a0 = l.e0.f_mul(g_from)?;
        let step = l.e1.f_mul(g_to)?.f_sub(&a0)?.f_div(&l.m)?;
        let base = a0.f_sub(&l.from.f_mul(&step)?)?;
        let idx = self.k.ramp_index.f_view_([1, 1, BLOCK as i64])?;
        self.flat(
            &base
                .f_unsqueeze(2)?
                .f_add(&idx.f_mul(&step.f_unsqueeze(2)?)?)?
                .f_mul(&l.sounding)?,
        )
    }

    /// Sums `[rows, WINDOW]` over each station's slots: `[n, WINDOW]`.
    fn station_sum(&self, x: &Tensor) -> Result<Tensor, TchError> {
        x.f_view_([self.n, self.slots, WINDOW])?.f_sum_dim_intlist(
            [1i64].as_slice(),
            false,
            Kind::Float,
        )
    }

    /// The family's left and right sums per station over the window, `[n, WINDOW]` each.
    fn render(&self, family: Family) -> Result<[Tensor; 2], TchError> {
        let l = self.lines(family == Family::Bell)?;
        let (raw_l, raw_r) = match family {
            Family::Pad => self.pads()?,
            Family::Bass => (self.bass(&l)?, None),
            Family::Piano => (self.piano(&l)?, None),
            Family::Electric => (self.electric(&l)?, None),
            Family::Bell => (self.bell(&l)?, None),
            Family::Shimmer => self.shimmer(&l)?,
        };
        let raw_r = raw_r.unwrap_or_else(|| raw_l.shallow_clone());
        // One channel's sum per station (no Vec of channels: nothing on the heap per chunk).
        let channel = |ch: usize, raw: &Tensor| -> Result<Tensor, TchError> {
            let g = self.col_f(F_GAIN + ch)?;
            let amp = if family == Family::Electric {
                // Autopan: the gain's target at each control point is level * pan * (1 +- t),
                // t = 0.22 sin(lfo) at that call; the ramp starts from the previous target.
                let sign = if ch == 0 { 1.0 } else { -1.0 };
                let gain_at = |q: &Tensor| -> Result<Tensor, TchError> {
                    let p = self
                        .col_i(I_LFO)?
                        .f_add(&q.f_mul(&self.col_i(I_LFO_INC)?)?)?
                        .f_bitwise_and(0xFFFF_FFFF_i64)?;
                    let t = self.lookup(&p)?.f_mul_scalar(0.22f32 as f64)?;
                    g.f_mul(&t.f_mul_scalar(sign)?.f_add_scalar(1.0)?)
                };
                let prev = l.q.f_sub_scalar(1)?.f_clamp_min(0)?;
                self.amp(&l, &gain_at(&prev)?, &gain_at(&l.q)?)?
            } else {
                self.amp(&l, &g, &g)?
            };
            self.station_sum(&raw.f_mul(&amp)?)
        };
        Ok([channel(0, &raw_l)?, channel(1, &raw_r)?])
    }

    /// The pads: three DPW saws (warm) or two triangles and a saw (glass), left = 0 + 1,
    /// right = 2 + 1.
    fn pads(&self) -> Result<(Tensor, Option<Tensor>), TchError> {
        let glass = self.col_f(F_X + 3)?.f_gt(0.5)?;
        let osc = |o: usize| -> Result<Tensor, TchError> {
            // Over frames -1..WINDOW: the phase read as signed 24 bits, as native.
            let p = self.phase(o, &self.k.frames)?;
            let x = f32_of(&signed24(&p)?)?.f_mul_scalar(1.0 / f64::from(1u32 << 23))?;
            let q = x.f_mul(&x)?;
            let saw = q
                .f_narrow(1, 1, WINDOW)?
                .f_sub(&q.f_narrow(1, 0, WINDOW)?)?
                .f_mul(&self.col_f(F_X + o)?)?;
            if o == 1 {
                return Ok(saw);
            }
            // 1 - 2|x|: native's triangle.
            let tri = x
                .f_narrow(1, 1, WINDOW)?
                .f_abs()?
                .f_mul_scalar(-2.0)?
                .f_add_scalar(1.0)?;
            tri.f_where_self(&glass, &saw)
        };
        let osc = [osc(0)?, osc(1)?, osc(2)?];
        Ok((osc[0].f_add(&osc[1])?, Some(osc[2].f_add(&osc[1])?)))
    }

    /// The round bass: the shaped sine and triangle (native `bass::control`'s arithmetic) through
    /// its one-pole `y = k y + a x`, run as a closed form over blocks of 64 frames: within a block
    /// `z = x T` with the per-voice Toeplitz kernel `T[j][i] = k^(i - j)`, then each block adds
    /// `k^(i + 1)` times the previous block's end, which is the sum of the earlier blocks' ends
    /// weighted by `k^64` per block (five blocks: the rest is under 3e-9). The input is zero
    /// before the note, where native's filter starts from rest.
    fn bass(&self, l: &Lines) -> Result<Tensor, TchError> {
        let frames = &self.k.frames_hist;
        let p = self.phase(0, frames)?;
        let body = sin_unit(&p)?.f_add(&quarter_fold(&p)?.f_mul_scalar(0.8f32 as f64)?)?;
        let x = body.f_mul(&self.col_f(F_X)?)?.f_clamp(-3.0, 3.0)?;
        let x2 = x.f_mul(&x)?;
        let s = x
            .f_mul(&x2.f_add_scalar(27.0)?)?
            .f_div(&x2.f_mul_scalar(9.0)?.f_add_scalar(27.0)?)?;
        let live = f32_of(&frames.f_unsqueeze(0)?.f_ge_tensor(&l.start)?)?;
        let u = s
            .f_mul(&self.col_f(F_X + 1)?)?
            .f_mul(&self.col_f(F_X + 2)?)?
            .f_mul(&live)?;
        let nb = HISTORY + BLOCKS;
        let b = BLOCK as i64;
        let ln_k = self.col_f(F_X + 3)?.f_unsqueeze(2)?;
        let kernel = self
            .k
            .lag
            .f_unsqueeze(0)?
            .f_mul(&ln_k)?
            .f_exp()?
            .f_mul(&self.k.causal)?;
        let z = u.f_view_([self.rows(), nb, b])?.f_matmul(&kernel)?;
        let ends = z.f_select(2, b - 1)?;
        let k64 = self.col_f(F_X + 3)?.f_mul_scalar(b as f64)?.f_exp()?;
        let mut state = ends.shallow_clone();
        let mut weight = k64.shallow_clone();
        for shift in 1..HISTORY {
            // The ends `shift` blocks earlier, zero before the first (a pad, not a cat: `tch`
            // builds a cat's tensor list on the heap).
            let earlier = ends
                .f_narrow(1, 0, nb - shift)?
                .f_constant_pad_nd([shift, 0].as_slice())?;
            state = state.f_add(&earlier.f_mul(&weight)?)?;
            weight = weight.f_mul(&k64)?;
        }
        let decay = self
            .k
            .ramp_index
            .f_view_([1, 1, b])?
            .f_mul(&ln_k)?
            .f_exp()?;
        let y = z.f_narrow(1, HISTORY, BLOCKS)?.f_add(
            &state
                .f_narrow(1, HISTORY - 1, BLOCKS)?
                .f_unsqueeze(2)?
                .f_mul(&decay)?,
        )?;
        self.flat(&y)
    }

    /// Value at the control points of a decay `floor + (v0 - floor) c^age`, held at native's
    /// stall (see `voices::decay_stall`; native walks it block by block with `powi`): `(now,
    /// end)` for each block. Columns: `v0`, then the floor, ln c and the stall at `v0 + 1`,
    /// `v0 + 2` and `stall`.
    fn decay_points(
        &self,
        l: &Lines,
        v0: usize,
        stall: usize,
    ) -> Result<(Tensor, Tensor), TchError> {
        let (floor, ln_c) = (self.col_f(v0 + 1)?, self.col_f(v0 + 2)?);
        let (v0, stall) = (self.col_f(v0)?, self.col_f(stall)?);
        let at = |age: &Tensor| -> Result<Tensor, TchError> {
            floor
                .f_add(
                    &v0.f_sub(&floor)?
                        .f_mul(&f32_of(age)?.f_mul(&ln_c)?.f_exp()?)?,
                )?
                .f_maximum(&stall)
        };
        let now = at(&l.age_b.f_clamp(0, NEVER)?)?;
        let end = at(&l.age_b.f_add_scalar(BLOCK as i64)?.f_clamp(0, NEVER)?)?;
        Ok((now, end))
    }

    /// The soft piano: phase modulation of two sines by the first, the index and the level as
    /// control-rate lines (native `render_piano`).
    fn piano(&self, l: &Lines) -> Result<Tensor, TchError> {
        let frames = self.frames0()?;
        let p0 = self.phase(0, &frames)?;
        let p1 = self.phase(1, &frames)?;
        let (i_now, i_end) = self.decay_points(l, F_X, F_X + 6)?;
        let (v_now, v_end) = self.decay_points(l, F_X + 3, F_X + 7)?;
        let index = self.line(l, &i_now, &i_end)?;
        let level = self.line(l, &v_now, &v_end)?;
        let m = sin_unit(&p0)?.f_mul(&index)?;
        let pm = m
            .f_mul_scalar(16_777_216.0)?
            .f_trunc()?
            .f_to_kind(Kind::Int64)?
            .f_mul_scalar(256)?;
        let a = sin_unit(&p0.f_add(&pm)?.f_bitwise_and(0xFFFF_FFFF_i64)?)?;
        let b = sin_unit(&p1.f_add(&pm)?.f_bitwise_and(0xFFFF_FFFF_i64)?)?;
        a.f_add(&b)?.f_mul_scalar(0.5)?.f_mul(&level)
    }

    /// The electric piano: table sines, the body index and the tine as exponentials of the age
    /// (native `render_electric`, whose per-frame decays restart from these exact values at each
    /// control point; the autopan is in the gains).
    fn electric(&self, l: &Lines) -> Result<Tensor, TchError> {
        let frames = self.frames0()?;
        let p0 = self.phase(0, &frames)?;
        let p2 = self.phase(2, &frames)?;
        let age = self.frame_age(&l.start)?;
        let floor = self.col_f(F_X + 1)?;
        let index = floor.f_add(
            &self
                .col_f(F_X)?
                .f_sub(&floor)?
                .f_mul(&age.f_mul(&self.col_f(F_X + 2)?)?.f_exp()?)?,
        )?;
        let tine = self
            .col_f(F_X + 3)?
            .f_mul(&age.f_mul(&self.col_f(F_X + 4)?)?.f_exp()?)?;
        let m = self
            .lookup(&p0)?
            .f_mul(&index)?
            .f_add(&self.lookup(&p2)?.f_mul(&tine)?)?;
        let pm = m
            .f_mul_scalar(16_777_216.0)?
            .f_trunc()?
            .f_to_kind(Kind::Int64)?
            .f_mul_scalar(256)?;
        self.lookup(&p0.f_add(&pm)?.f_bitwise_and(0xFFFF_FFFF_i64)?)
    }

    /// The bell: five table sines, each decaying per frame from its note-on amplitude.
    fn bell(&self, l: &Lines) -> Result<Tensor, TchError> {
        let frames = self.frames0()?;
        let age = self.frame_age(&l.start)?;
        let mut sum: Option<Tensor> = None;
        for k in 0..5 {
            let a = self
                .col_f(F_X + k)?
                .f_mul(&age.f_mul(&self.col_f(F_X + 5 + k)?)?.f_exp()?)?;
            let s = self.lookup(&self.phase(k, &frames)?)?.f_mul(&a)?;
            sum = Some(match sum {
                Some(t) => t.f_add(&s)?,
                None => s,
            });
        }
        Ok(sum.expect("five partials"))
    }

    /// The shimmer: three table sines whose gains move in straight lines towards targets set by
    /// a slow LFO at each control call (native `control_shimmer`: the gain reaches each target
    /// at the next control point, except after a start inside a block, where the first ramp
    /// covers only the rest of that block); left and right mixes of the three.
    fn shimmer(&self, l: &Lines) -> Result<(Tensor, Option<Tensor>), TchError> {
        let frames = self.frames0()?;
        let third = i64::from(u32::MAX / 3);
        let from0 = f32_of(&l.start.f_bitwise_and(BLOCK as i64 - 1)?)?;
        let lfo = self.col_i(I_LFO)?;
        let inc = self.col_i(I_LFO_INC)?;
        let i = self
            .k
            .offset
            .f_view_([1, 1, BLOCK as i64])?
            .f_sub(&l.from.f_unsqueeze(2)?)?;
        let partial = |k: usize| -> Result<Tensor, TchError> {
            let target = |q: &Tensor| -> Result<Tensor, TchError> {
                let p = lfo
                    .f_add(&q.f_mul(&inc)?)?
                    .f_add_scalar(third * k as i64)?
                    .f_bitwise_and(0xFFFF_FFFF_i64)?;
                self.col_f(F_X + k)?
                    .f_mul(
                        &self
                            .lookup(&p)?
                            .f_mul_scalar(0.4f32 as f64)?
                            .f_add_scalar(0.6f32 as f64)?,
                    )?
                    .f_mul(&self.col_f(F_X + 3 + k)?)
            };
            let zero = l.q.f_narrow(1, 0, 1)?.f_zeros_like()?;
            let t0 = target(&zero)?;
            let t1 = target(&zero.f_add_scalar(1)?)?;
            let first = t0.f_add(
                &from0
                    .f_mul_scalar(-1.0)?
                    .f_add_scalar(BLOCK as f64)?
                    .f_mul(&t1.f_sub(&t0)?.f_div_scalar(BLOCK as f64)?)?,
            )?;
            let at = target(&l.q)?
                .f_where_self(&l.q.f_ge(2)?, &first)?
                .f_where_self(&l.q.f_ge(1)?, &t0)?;
            let step = target(&l.q.f_add_scalar(1)?)?
                .f_sub(&at)?
                .f_div_scalar(BLOCK as f64)?;
            let gain = self.flat(&at.f_unsqueeze(2)?.f_add(&i.f_mul(&step.f_unsqueeze(2)?)?)?)?;
            self.lookup(&self.phase(k, &frames)?)?.f_mul(&gain)
        };
        let s = [partial(0)?, partial(1)?, partial(2)?];
        let left = s[0]
            .f_add(&s[1].f_mul_scalar(0.35f32 as f64)?)?
            .f_add(&s[2].f_mul_scalar(0.6f32 as f64)?)?;
        let right = s[0]
            .f_mul_scalar(0.35f32 as f64)?
            .f_add(&s[1])?
            .f_add(&s[2].f_mul_scalar(0.6f32 as f64)?)?;
        Ok((left, Some(right)))
    }
}

/// The native ADSR as a closed form of the age (frames since note-on), per voice row.
struct Envelope {
    /// Attack frames, `[rows, 1]` i64.
    attack: Tensor,
    /// Gate frames, `[rows, 1]` i64.
    gate: Tensor,
    /// Age of a forced release, `[rows, 1]` i64 (families that have one).
    cut: Option<Tensor>,
    /// Attack increment per frame, `[rows, 1]`.
    attack_step: Tensor,
    /// Sustain level, `[rows, 1]`.
    sustain: Tensor,
    /// ln of the decay multiplier per frame, `[rows, 1]`.
    ln_decay: Tensor,
    /// ln of the release multiplier per frame, `[rows, 1]`.
    ln_release: Tensor,
    /// ln of the forced release's multiplier per frame, `[rows, 1]`.
    ln_cut: Tensor,
}

impl Envelope {
    /// Level after `age` frames (`[rows, k]` i64, negative ages give 0): a linear attack to 1,
    /// an exponential decay towards the sustain, an exponential release from the level at the
    /// gate — the curve native's `Adsr::plan` walks block by block — and, from the cut on, a
    /// release from the level there (native's `force_release`).
    fn level(&self, age: &Tensor) -> Result<Tensor, TchError> {
        let natural = self.natural(age)?;
        let Some(cut) = &self.cut else {
            return Ok(natural);
        };
        let t = age.f_clamp(0, NEVER)?;
        let at_cut = self.natural(cut)?;
        let forced = at_cut.f_mul(
            &f32_of(&t.f_sub(cut)?.f_clamp_min(0)?)?
                .f_mul(&self.ln_cut)?
                .f_exp()?,
        )?;
        natural.f_where_self(&t.f_le_tensor(cut)?, &forced)
    }

    fn natural(&self, age: &Tensor) -> Result<Tensor, TchError> {
        let t = age.f_clamp(0, NEVER)?;
        let tf = f32_of(&t)?;
        let af = f32_of(&self.attack)?;
        let gate = self.gate.f_clamp_max(NEVER)?;
        let gf = f32_of(&gate)?;
        let decay_at = |x: &Tensor| -> Result<Tensor, TchError> {
            let falling = self.sustain.f_mul_scalar(-1.0)?.f_add_scalar(1.0)?;
            let e = x
                .f_sub(&af)?
                .f_clamp_min(0.0)?
                .f_mul(&self.ln_decay)?
                .f_exp()?;
            self.sustain.f_add(&falling.f_mul(&e)?)
        };
        let attack = tf.f_mul(&self.attack_step)?;
        let before_gate = attack.f_where_self(&t.f_lt_tensor(&self.attack)?, &decay_at(&tf)?)?;
        let at_gate = gf
            .f_mul(&self.attack_step)?
            .f_where_self(&gate.f_lt_tensor(&self.attack)?, &decay_at(&gf)?)?;
        let released = at_gate.f_mul(
            &tf.f_sub(&gf)?
                .f_clamp_min(0.0)?
                .f_mul(&self.ln_release)?
                .f_exp()?,
        )?;
        before_gate.f_where_self(&t.f_le_tensor(&gate)?, &released)
    }
}
