//! [`PadEngine`]: the pad voices of every station rendered in one batch of tensor operations per
//! 100 ms chunk, fp32, without gradient tracking.
//!
//! Layout: a batch is `b` stations times [`SLOTS`] voices (`GPU_BATCH_SIZE` stations at most, which
//! bounds device memory; more stations run as several batches of the same shapes). Each station's
//! chunk sits inside a window of 71 whole control blocks (4,544 frames) starting at the control
//! point at or before its clock, so the envelope is `[voices, block, frame in block]` broadcasting
//! with no gathers; one gather per station cuts its 4,410 frames out of the window at the end.
//!
//! Mirrors the native math (see `voices` and the parity test): oscillator phases are 32-bit
//! wrapping integers computed exactly in i64, so the DPW saws and triangles are bit-identical;
//! the envelope is the native curve at each control point (closed form instead of native's
//! per-block recursion) and native's own ramp arithmetic between control points.

use shm_proto::CHUNK_FRAMES;
use tch::{Device, Kind, TchError, Tensor};

use super::voices::{F_PARAMS, I_PARAMS, SLOTS, VoiceTable};
use crate::device::TorchDevice;
use crate::voice::BLOCK;

/// Control blocks in a chunk's window (4,410 frames at any grid offset fit in 71 blocks).
const BLOCKS: i64 = 71;
/// Frames in the window.
const WINDOW: i64 = BLOCKS * BLOCK as i64;
/// Largest age (frames) the envelope is evaluated at: exact in f32; a note this old has long
/// settled on its sustain or ended.
const MAX_AGE: i64 = 1 << 24;

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

/// The batched pad renderer of many stations.
#[derive(Debug)]
pub struct PadEngine {
    /// Where the tensors live.
    device: Device,
    /// The host's voices (the only state).
    voices: VoiceTable,
    /// Stations per device batch.
    batch: usize,
    /// Host staging of the f32 rows of one batch.
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
    /// Frame indices -1..WINDOW of the window (the DPW needs the frame before).
    frames: Tensor,
    /// Control points 0, 64, .., 64 * BLOCKS of the window.
    grid: Tensor,
    /// `f + 1` for each offset `f` in a block (the native ramp index), f32.
    ramp_index: Tensor,
    /// Offsets 0..4,410 of a chunk in the window (before adding the grid offset).
    chunk_frames: Tensor,
    /// Host copy of one batch's output, `[batch, CHUNK_FRAMES, 2]`.
    host_out: Tensor,
    /// `0..stations`: the station list of [`Self::render`].
    all: Vec<usize>,
    /// Estimated device bytes: persistent tensors plus one batch's working set.
    memory_bytes: u64,
}

impl PadEngine {
    /// An engine for `stations` stations on `device`, `batch` stations per device batch, warmed up
    /// (one silent render, so the allocator's cache and the kernels are ready before real time).
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
        let ramp_index = Tensor::f_arange_start(1, BLOCK as i64 + 1, f)?;
        let mut engine = PadEngine {
            device,
            voices: VoiceTable::new(stations),
            batch,
            host_f: vec![0.0; batch * SLOTS * F_PARAMS],
            host_i: vec![0; batch * SLOTS * I_PARAMS],
            host_g0: vec![0; batch],
            dev_f: Tensor::f_zeros([rows, F_PARAMS as i64], f)?,
            dev_i: Tensor::f_zeros([rows, I_PARAMS as i64], i)?,
            dev_g0: Tensor::f_zeros([batch as i64], i)?,
            frames: Tensor::f_arange_start(-1, WINDOW, i)?,
            grid: Tensor::f_arange_start(0, BLOCKS + 1, i)?.f_mul_scalar(BLOCK as i64)?,
            ramp_index,
            chunk_frames: Tensor::f_arange_start(0, CHUNK_FRAMES as i64, i)?,
            host_out: Tensor::f_zeros(
                [batch as i64, CHUNK_FRAMES as i64, 2],
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
    /// (about 80 bytes per voice-frame: i64 phases, the oscillators, envelope lines and masks).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    fn estimate_memory(&self) -> u64 {
        let rows = (self.batch * SLOTS) as u64;
        let persistent = rows * (F_PARAMS as u64 * 4 + I_PARAMS as u64 * 8)
            + (WINDOW as u64 + 1 + BLOCKS as u64 + 1 + CHUNK_FRAMES as u64) * 8
            + self.batch as u64 * 8;
        let working = rows * (WINDOW as u64 + 1) * 80;
        persistent + working
    }

    /// Renders one silent chunk of every batch shape, leaving clocks and voices as they were.
    fn warm_up(&mut self) -> Result<(), TorchError> {
        let _guard = tch::no_grad_guard();
        let n = self.batch;
        self.host_f.fill(0.0);
        self.host_i.fill(0);
        self.host_g0.fill(0);
        let out = self.render_batch(n)?;
        self.host_out.f_narrow(0, 0, n as i64)?.f_copy_(&out)?;
        Ok(())
    }

    /// Renders the next chunk of every station: the dry pad sum, interleaved stereo, station after
    /// station (`stations * CHUNK_SAMPLES` samples), and moves every clock on by a chunk.
    pub fn render(&mut self, out: &mut [f32]) -> Result<(), TorchError> {
        let all = std::mem::take(&mut self.all);
        let result = self.render_stations(&all, out);
        self.all = all;
        result
    }

    /// Renders the next chunk of `stations` only (in that order, each at most once), in batches
    /// of [`Self::batch`]: their dry pad sums, interleaved stereo, station after station
    /// (`stations.len() * CHUNK_SAMPLES` samples), and moves their clocks on by a chunk. The
    /// other stations' clocks and voices stay as they are (the daemon renders the stations whose
    /// chunk is due).
    pub fn render_stations(
        &mut self,
        stations: &[usize],
        out: &mut [f32],
    ) -> Result<(), TorchError> {
        let per = CHUNK_FRAMES * 2;
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
            let result = self.render_batch(n)?;
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

    /// The device render of the first `n` stations' staged rows: `[n, CHUNK_FRAMES, 2]`.
    fn render_batch(&mut self, n: usize) -> Result<Tensor, TchError> {
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
        let col_f = |k: i64| dev_f.f_narrow(1, k, 1);
        let col_i = |k: i64| dev_i.f_narrow(1, k, 1);

        // Oscillators over frames -1..WINDOW: the phase read as signed 24 bits, as native.
        let glass = col_f(10)?.f_gt(0.5)?;
        let mut osc = Vec::with_capacity(3);
        for o in 0..3 {
            let p = col_i(o)?
                .f_add(&col_i(3 + o)?.f_mul(&self.frames.f_unsqueeze(0)?)?)?
                .f_bitwise_and(0xFFFF_FFFF_i64)?;
            let signed = p.f_sub(
                &p.f_bitwise_right_shift_tensor_scalar(31)?
                    .f_bitwise_left_shift_tensor_scalar(32)?,
            )?;
            let x = signed
                .f_bitwise_right_shift_tensor_scalar(8)?
                .f_to_kind(Kind::Float)?
                .f_mul_scalar(1.0 / f64::from(1u32 << 23))?;
            let q = x.f_mul(&x)?;
            let saw = q
                .f_narrow(1, 1, WINDOW)?
                .f_sub(&q.f_narrow(1, 0, WINDOW)?)?
                .f_mul(&col_f(o)?)?;
            if o == 1 {
                osc.push(saw);
            } else {
                // 1 - 2|x|: native's triangle.
                let tri = x
                    .f_narrow(1, 1, WINDOW)?
                    .f_abs()?
                    .f_mul_scalar(-2.0)?
                    .f_add_scalar(1.0)?;
                osc.push(tri.f_where_self(&glass, &saw)?);
            }
        }
        let raw_l = osc[0].f_add(&osc[1])?;
        let raw_r = osc[2].f_add(&osc[1])?;
        drop(osc);

        // Envelope at the control points of the window: `[rows, BLOCKS + 1]`.
        let start = col_i(6)?;
        let age = self.grid.f_unsqueeze(0)?.f_sub(&start)?;
        let env = Envelope {
            attack: col_i(7)?,
            gate: col_i(8)?,
            attack_step: col_f(5)?,
            sustain: col_f(6)?,
            ln_decay: col_f(7)?,
            ln_release: col_f(8)?,
        };
        let level = env.level(&age)?;
        // Block b runs from its control point c = max(grid_b, start) to grid_{b+1}.
        let grid_b = self.grid.f_narrow(0, 0, BLOCKS)?.f_unsqueeze(0)?;
        let starts_inside = start.f_gt_tensor(&grid_b)?;
        let from = start
            .f_sub(&grid_b)?
            .f_clamp(0, BLOCK as i64 - 1)?
            .f_to_kind(Kind::Float)?;
        let zero = Tensor::f_zeros([1], (Kind::Float, self.device))?;
        let l_from = zero.f_where_self(&starts_inside, &level.f_narrow(1, 0, BLOCKS)?)?;
        let l_to = level.f_narrow(1, 1, BLOCKS)?;
        let m = from.f_mul_scalar(-1.0)?.f_add_scalar(BLOCK as f64)?;
        // Native's plan and set_amp_ramp, operation for operation.
        let es = l_to.f_sub(&l_from)?.f_div(&m)?;
        let eb = l_from.f_sub(&from.f_mul(&es)?)?;
        let e0 = eb.f_add(&from.f_mul(&es)?)?;
        let e1 = eb.f_add(&es.f_mul_scalar(BLOCK as f64)?)?;
        // A voice ends at a control point after its gate once under its floor (native
        // `end_if_silent`); frames before the note starts are silent.
        let age_b = age.f_narrow(1, 0, BLOCKS)?;
        let done = age_b
            .f_gt_tensor(&env.gate)?
            .f_logical_and(&age_b.f_gt(0)?)?
            .f_logical_and(&level.f_narrow(1, 0, BLOCKS)?.f_lt_tensor(&col_f(9)?)?)?;
        let frame = self
            .frames
            .f_narrow(0, 1, WINDOW)?
            .f_view_([1, BLOCKS, BLOCK as i64])?;
        let sounding = frame
            .f_ge_tensor(&start.f_unsqueeze(2)?)?
            .f_logical_and(&done.f_logical_not()?.f_unsqueeze(2)?)?
            .f_logical_and(&col_i(9)?.f_gt(0)?.f_unsqueeze(2)?)?
            .f_to_kind(Kind::Float)?;
        let idx = self.ramp_index.f_view_([1, 1, BLOCK as i64])?;
        let mut channels = Vec::with_capacity(2);
        for (ch, raw) in [raw_l, raw_r].iter().enumerate() {
            let g = col_f(3 + ch as i64)?;
            let a0 = e0.f_mul(&g)?;
            let step = e1.f_mul(&g)?.f_sub(&a0)?.f_div(&m)?;
            let base = a0.f_sub(&from.f_mul(&step)?)?;
            let amp = base
                .f_unsqueeze(2)?
                .f_add(&idx.f_mul(&step.f_unsqueeze(2)?)?)?
                .f_mul(&sounding)?
                .f_view_([rows, WINDOW])?;
            let sum = raw
                .f_mul(&amp)?
                .f_view_([n as i64, SLOTS as i64, WINDOW])?
                .f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?;
            let at = dev_g0
                .f_unsqueeze(1)?
                .f_add(&self.chunk_frames.f_unsqueeze(0)?)?;
            channels.push(sum.f_gather(1, &at, false)?);
        }
        Tensor::f_stack(&channels, 2)
    }
}

/// The native ADSR as a closed form of the age (frames since note-on), per voice row.
struct Envelope {
    /// Attack frames, `[rows, 1]` i64.
    attack: Tensor,
    /// Gate frames, `[rows, 1]` i64.
    gate: Tensor,
    /// Attack increment per frame, `[rows, 1]`.
    attack_step: Tensor,
    /// Sustain level, `[rows, 1]`.
    sustain: Tensor,
    /// ln of the decay multiplier per frame, `[rows, 1]`.
    ln_decay: Tensor,
    /// ln of the release multiplier per frame, `[rows, 1]`.
    ln_release: Tensor,
}

impl Envelope {
    /// Level after `age` frames (`[rows, k]` i64, negative ages give 0): a linear attack to 1,
    /// an exponential decay towards the sustain, an exponential release from the level at the
    /// gate — the curve native's `Adsr::plan` walks block by block.
    fn level(&self, age: &Tensor) -> Result<Tensor, TchError> {
        let t = age.f_clamp(0, MAX_AGE)?;
        let tf = t.f_to_kind(Kind::Float)?;
        let af = self.attack.f_to_kind(Kind::Float)?;
        let gate = self.gate.f_clamp_max(MAX_AGE)?;
        let gf = gate.f_to_kind(Kind::Float)?;
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
