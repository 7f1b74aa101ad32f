// Auralis playback processor (AudioWorkletGlobalScope).
//
// The main thread posts decoded chunks (planar float32 stereo, each tagged with its rate: 44.1 kHz
// PCM, or 48 kHz from the Opus decoder) as transferable buffers; they are copied into a
// preallocated ring and the buffers are handed back for reuse. process() never allocates: it
// resamples from the ring to the device rate with a polyphase windowed-sinc interpolator whose
// state is simply the ring itself, so it is continuous across chunks. When the rate of the chunks
// changes (a format switch), the ring remembers where, and the interpolator changes its step and
// filter when its read position gets there: what was queued plays out at its own rate.
//
// Jitter buffer: nothing plays until `target` frames are queued; when the queue is about to run dry
// the output fades out over FADE_MS (no click), counts an underrun and waits for `target` again,
// then fades back in. A queue well above target is drained by playing a fraction of a percent
// faster (inaudible), and one far above it is cut back with a fade out and in.
//
// Statistics are never posted from process(): they are answered from the message handler (on every
// chunk and on "poll"), so the render callback stays allocation-free.

"use strict";

const DEFAULT_SOURCE_RATE = 44100;
const RING_FRAMES = 1 << 18; // 5.9 s of source frames; a power of two for cheap wrapping
const RING_MASK = RING_FRAMES - 1;
const TAPS = 16; // sinc taps per output sample
const HALF = TAPS / 2;
const PHASES = 512; // table resolution; adjacent phases are interpolated linearly
const FADE_MS = 25;
const MAX_EXCESS_S = 2.5; // beyond target + this, cut back to target (with fades)
const CATCHUP = 1.004; // rate while draining a queue above target (+7 cents, inaudible on pads)

const STATE_BUFFERING = 0;
const STATE_PLAYING = 1;
const STATE_FADING_OUT = 2; // underrun imminent or skip pending

class AuralisPlayer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.ringL = new Float32Array(RING_FRAMES);
    this.ringR = new Float32Array(RING_FRAMES);
    this.written = 0; // source frames ever written (absolute index of the next write)
    this.readPos = 0; // absolute fractional source index of the next output sample's centre
    this.sourceRate = DEFAULT_SOURCE_RATE; // rate of the frames at the read position
    this.writeRate = DEFAULT_SOURCE_RATE; // rate of the last chunk written
    this.switches = []; // { at, rate, table }: rate changes ahead of the read position, in order
    this.targetMs = 500;
    this.step = this.sourceRate / sampleRate;
    this.target = Math.round((this.targetMs / 1000) * this.sourceRate);
    this.state = STATE_BUFFERING;
    this.gain = 0;
    this.fadeStep = 1 / Math.max(1, Math.round((FADE_MS / 1000) * sampleRate));
    this.skipAfterFade = false;
    this.flushAfterFade = false;
    this.flushTo = 0;
    this.underruns = 0;
    this.skips = 0;
    this.chunks = 0;
    this.framesPlayed = 0;
    this.peak = 0;
    // At the source rate an integer read position is copied straight through; any fractional one
    // (device rate differs, or catching up) goes through the sinc interpolator.
    this.direct = Math.abs(this.step - 1) < 1e-9;
    this.table = buildTable(Math.min(1, 1 / this.step));
    this.tables = new Map([[this.sourceRate, this.table]]); // one per source rate, built once

    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(m) {
    switch (m.type) {
      case "chunk": {
        // m.buf: Float32Array buffer, left frames then right frames; m.rate: its sample rate.
        const data = new Float32Array(m.buf);
        const frames = data.length >> 1;
        const rate = m.rate || DEFAULT_SOURCE_RATE;
        if (rate !== this.writeRate) {
          // Built here, in the message handler, never in process().
          if (!this.tables.has(rate)) this.tables.set(rate, buildTable(Math.min(1, sampleRate / rate)));
          this.switches.push({ at: this.written, rate, table: this.tables.get(rate) });
          this.writeRate = rate;
        }
        this.write(data, frames);
        this.chunks++;
        // Give the buffer back so the main thread reuses it (no garbage on this thread).
        this.port.postMessage({ type: "stats", stats: this.stats(), buf: m.buf }, [m.buf]);
        return;
      }
      case "target":
        // In milliseconds, so it means the same at any source rate.
        this.targetMs = Math.max(50, Math.min(2000, Number(m.ms) || 500));
        this.updateTarget();
        break;
      case "reset":
        // A different stream (new station or fresh start): drop what is queued, after a fade-out
        // when something is playing. Chunks posted after this message are kept.
        if (this.state === STATE_BUFFERING || this.gain === 0) {
          this.readPos = this.written;
          this.applySwitches();
          this.state = STATE_BUFFERING;
          this.gain = 0;
        } else {
          this.state = STATE_FADING_OUT;
          this.flushTo = this.written;
          this.flushAfterFade = true;
        }
        this.skipAfterFade = false;
        break;
      case "poll":
        break;
      default:
        return;
    }
    this.port.postMessage({ type: "stats", stats: this.stats() });
  }

  updateTarget() {
    this.target = Math.round((this.targetMs / 1000) * this.sourceRate);
  }

  /** Takes on the rate (step, filter, target) of every switch the read position has reached. */
  applySwitches() {
    while (this.switches.length !== 0 && this.switches[0].at <= this.readPos) {
      const s = this.switches.shift();
      this.sourceRate = s.rate;
      this.step = s.rate / sampleRate;
      this.direct = Math.abs(this.step - 1) < 1e-9;
      this.table = s.table;
      this.updateTarget();
    }
  }

  write(data, frames) {
    // Never overrun the reader: if the ring is full, the oldest audio goes (a cut, faded below).
    const room = RING_FRAMES - TAPS - 1 - (this.written - Math.floor(this.readPos));
    if (frames > room) {
      this.readPos += frames - room;
      this.skips++;
      this.applySwitches();
    }
    let w = this.written;
    for (let i = 0; i < frames; i++, w++) {
      const j = w & RING_MASK;
      this.ringL[j] = data[i];
      this.ringR[j] = data[frames + i];
    }
    this.written = w;
  }

  /** Source frames queued ahead of the read position. */
  available() {
    return this.written - this.readPos;
  }

  stats() {
    return {
      state: this.state === STATE_BUFFERING || this.flushAfterFade ? "buffering" : "playing",
      bufferedMs: Math.max(0, this.available()) * 1000 / this.sourceRate,
      targetMs: this.target * 1000 / this.sourceRate,
      sourceRate: this.sourceRate,
      underruns: this.underruns,
      skips: this.skips,
      chunks: this.chunks,
      framesPlayed: this.framesPlayed,
      peak: this.peak,
      sampleRate,
    };
  }

  process(inputs, outputs) {
    const out = outputs[0];
    const L = out[0];
    const R = out.length > 1 ? out[1] : null;
    const n = L.length;
    // Source frames the interpolator needs beyond readPos (taps right of the centre).
    const guard = HALF + 1;

    if (this.switches.length !== 0) this.applySwitches();
    if (this.state === STATE_BUFFERING) {
      if (this.available() - guard >= this.target) {
        this.state = STATE_PLAYING; // gain is 0: fades in below
      } else {
        L.fill(0);
        if (R) R.fill(0);
        return true;
      }
    }

    let speed = 1;
    const excess = this.available() - this.target;
    if (excess > MAX_EXCESS_S * this.sourceRate && this.state === STATE_PLAYING) {
      this.state = STATE_FADING_OUT;
      this.skipAfterFade = true;
    } else if (excess > 0.15 * this.sourceRate) {
      speed = CATCHUP;
    }
    let step = this.step * speed;

    const fadeFrames = 1 / this.fadeStep;
    let peak = this.peak * 0.999;
    for (let i = 0; i < n; i++) {
      // Enough audio left to finish a fade-out? If not, start one now.
      if (this.state === STATE_PLAYING &&
          (this.available() - guard) < (fadeFrames + 2) * step) {
        this.state = STATE_FADING_OUT;
      }
      if (this.state === STATE_FADING_OUT) {
        this.gain -= this.fadeStep;
        if (this.gain <= 0) {
          this.gain = 0;
          if (this.flushAfterFade) {
            this.readPos = Math.max(this.readPos, this.flushTo);
            this.applySwitches();
            this.flushAfterFade = false;
            this.state = STATE_BUFFERING;
            for (let k = i; k < n; k++) {
              L[k] = 0;
              if (R) R[k] = 0;
            }
            break;
          } else if (this.skipAfterFade) {
            // Cut the queue back to target and fade in again from there.
            this.readPos = this.written - this.target - guard;
            this.applySwitches();
            step = this.step * speed;
            this.skipAfterFade = false;
            this.skips++;
            this.state = STATE_PLAYING;
          } else {
            this.underruns++;
            this.state = STATE_BUFFERING;
            for (let k = i; k < n; k++) {
              L[k] = 0;
              if (R) R[k] = 0;
            }
            break;
          }
        }
      } else if (this.gain < 1) {
        this.gain = Math.min(1, this.gain + this.fadeStep);
      }

      let l, r;
      if (this.direct && step === 1 && this.readPos === Math.floor(this.readPos)) {
        const j = Math.floor(this.readPos) & RING_MASK;
        l = this.ringL[j];
        r = this.ringR[j];
      } else {
        const base = Math.floor(this.readPos);
        const p = (this.readPos - base) * PHASES;
        const ph = Math.floor(p);
        const t = p - ph;
        const t0 = this.table;
        let o0 = ph * TAPS;
        let o1 = o0 + TAPS; // the table has PHASES + 1 rows, so ph + 1 is valid
        l = 0;
        r = 0;
        let idx = base - HALF + 1;
        for (let k = 0; k < TAPS; k++, idx++, o0++, o1++) {
          const c = t0[o0] + (t0[o1] - t0[o0]) * t;
          const j = idx & RING_MASK;
          l += c * this.ringL[j];
          r += c * this.ringR[j];
        }
      }
      const g = this.gain * this.gain * (3 - 2 * this.gain); // smoothstep: no corner at the ends
      l *= g;
      r *= g;
      L[i] = l;
      if (R) R[i] = r;
      const a = l < 0 ? -l : l;
      if (a > peak) peak = a;
      this.readPos += step;
      this.framesPlayed++;
      if (this.switches.length !== 0 && this.readPos >= this.switches[0].at) {
        // The chunks from here on have another rate (a format switch): a new step and filter.
        this.applySwitches();
        step = this.step * speed;
      }
    }
    this.peak = peak;
    return true;
  }
}

/**
 * Polyphase windowed-sinc table: row `ph` holds the TAPS weights for a read position
 * base + ph / PHASES, tap k applying to source frame base - HALF + 1 + k. `cutoff` (fraction of the
 * source Nyquist) is below 1 when the device rate is lower than the source's, so downsampling does
 * not alias. Blackman window; each row is normalised to unity DC gain.
 */
function buildTable(cutoff) {
  const table = new Float32Array((PHASES + 1) * TAPS);
  const fc = cutoff * 0.97;
  for (let ph = 0; ph <= PHASES; ph++) {
    const frac = ph / PHASES;
    let sum = 0;
    for (let k = 0; k < TAPS; k++) {
      const x = (k - HALF + 1) - frac; // distance from the read position, in source frames
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * fc * x) / (Math.PI * fc * x);
      const w = (x + HALF) / TAPS; // 0..1 across the window
      const win = w <= 0 || w >= 1 ? 0 :
        0.42 - 0.5 * Math.cos(2 * Math.PI * w) + 0.08 * Math.cos(4 * Math.PI * w);
      const v = fc * sinc * win;
      table[ph * TAPS + k] = v;
      sum += v;
    }
    for (let k = 0; k < TAPS; k++) table[ph * TAPS + k] /= sum;
  }
  return table;
}

registerProcessor("auralis-player", AuralisPlayer);
