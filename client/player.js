// Auralis web player: WebSocket client, adaptive jitter buffer control, AudioWorklet playback,
// controls, sleep timer and visualizer. Protocol: see PROTOCOL.md and streamd/src/protocol.rs.
//
// Data path: a binary frame (40-byte AUR1 header) holds either s16le stereo at 44.1 kHz ("pcm16")
// or five 20 ms Opus packets ("opus", decoded by WebCodecs' AudioDecoder to 48 kHz); a JSON audio
// message holds base64 s16le. Each chunk ends up in a pooled planar Float32Array, whose buffer is
// transferred to the worklet (worklet.js) with its sample rate; the worklet copies it into its ring
// (resampling to the device rate as it plays) and transfers the buffer back, so steady-state
// playback allocates nothing on either side for the audio data itself.
//
// The player asks for "opus" (about 1/14 of the bytes) where WebCodecs can decode it, else
// "pcm16"; `?format=json|pcm16|opus` forces one. A decoder error falls back to pcm16 for the rest
// of the visit, continuing the stream, with a note in the page.
"use strict";

(() => {
  const PCM_RATE = 44100;
  const OPUS_RATE = 48000;
  const OPUS_PACKET_US = 20000;
  const OPUS_PACKET_FRAMES = 960;
  const OPUS_CONFIG = { codec: "opus", sampleRate: OPUS_RATE, numberOfChannels: 2 };
  const CHUNK_MS = 100;
  const BACKOFF_BASE_MS = 1000;
  const BACKOFF_CAP_MS = 60000;
  const JITTER_ALPHA = 0.1;
  /** Tiers as in the plans: target buffer per smoothed jitter (ms); `upTo` is exclusive. */
  const TIERS = [
    { name: "minimal", targetMs: 300, upTo: 10 },
    { name: "normal", targetMs: 500, upTo: 25 },
    { name: "stable", targetMs: 700, upTo: 50 },
    { name: "defensive", targetMs: 1000, upTo: Infinity },
  ];
  /** A lower tier is only taken after this long without reasons for the higher one. */
  const TIER_DOWN_AFTER_MS = 20000;
  const SLEEP_FADE_S = 60;

  /** Used when /api/presets is not available. */
  const BUILTIN_PRESETS = [
    { name: "focus", key: "D", mode: "dorian", bpm: 60, intensity: 0.5,
      description: "Steady, warm and unobtrusive: D Dorian piano over a soft pad." },
    { name: "calm", key: "F", mode: "ionian", bpm: 54, intensity: 0.35,
      description: "Slow major-key piano with a shimmer above, barely any pulse." },
    { name: "sleep", key: "Db", mode: "pentatonic", bpm: 44, intensity: 0.15,
      description: "Very slow pentatonic electric piano, no percussion, nothing that rubs." },
    { name: "bright", key: "G", mode: "mixolydian", bpm: 76, intensity: 0.7,
      description: "Open Mixolydian electric piano, glassy pad, bells and a light pulse." },
    { name: "dream", key: "Eb", mode: "lydian", bpm: 50, intensity: 0.4,
      description: "Floating Lydian piano over a glass pad and a constant shimmer." },
    { name: "night", key: "A", mode: "aeolian", bpm: 48, intensity: 0.3,
      description: "A minor, dark and slow: electric piano, warm pad, distant bells." },
  ];
  const KEY_ALIASES = { "Db": "C#", "D#": "Eb", "Gb": "F#", "G#": "Ab", "A#": "Bb" };

  const $ = (id) => document.getElementById(id);
  const ui = {
    toggle: $("toggle"), toggleLabel: $("toggle-label"), status: $("status"), now: $("now"),
    station: $("station"), preset: $("preset"), presetHint: $("preset-hint"),
    key: $("key"), mode: $("mode"), bpm: $("bpm"), bpmOut: $("bpm-out"),
    intensity: $("intensity"), intensityOut: $("intensity-out"),
    volume: $("volume"), volumeOut: $("volume-out"), sleep: $("sleep"), sleepLeft: $("sleep-left"),
    reply: $("reply"), viz: $("viz"),
    stBuffer: $("st-buffer"), stTier: $("st-tier"), stJitter: $("st-jitter"),
    stUnderruns: $("st-underruns"), stSeq: $("st-seq"), stRate: $("st-rate"),
    stFormat: $("st-format"), formatNote: $("format-note"),
    plain: $("plain"), plainAudio: $("plain-audio"), plainMp3: $("plain-mp3"),
    plainOpus: $("plain-opus"), plainHint: $("plain-hint"),
  };

  /** Everything tests (and curious listeners, from the console) may read. */
  const stats = {
    state: "idle", // idle | connecting | buffering | playing | reconnecting | error
    chunksReceived: 0,
    chunksPosted: 0,
    duplicates: 0,
    connects: 0,
    reconnects: 0,
    lastSeq: null,
    station: null,
    serverTier: null,
    tier: "normal",
    jitterMs: 0,
    worklet: null, // the worklet's last report: bufferedMs, underruns, chunks, state, ...
    lastAck: null,
    lastError: null,
    lastStatus: null,
    draining: 0,
    streams: 0, // streams started in the worklet (start, station switches)
    startAcks: 0, // connections that began streaming
    format: null, // the format the server streams in (from its acks)
    bytesReceived: 0, // audio bytes, for the bit rate shown
    kbps: 0,
    opusPackets: 0, // Opus packets handed to the decoder
    opusDecoded: 0, // chunks the decoder gave back (posted to the worklet)
    decoderErrors: 0,
    fallbacks: 0, // times Opus gave way to pcm16
    formatNote: null, // why the format changed, as shown
  };

  let ctx = null, node = null, volumeGain = null, sleepGain = null, analyser = null;
  let running = false;
  let ws = null; // the socket we stream from
  let oldWs = null; // a draining socket kept until its replacement has acked
  let nextSeq = null; // seq expected next; resume_from when reconnecting
  let station = null; // the station streamed (from acks and audio)
  let attempt = 0; // consecutive failed connection attempts
  let reconnectTimer = 0, reconnectAt = 0;
  let pendingParams = {}; // musical changes made before starting (sent with start)
  let pendingSet = null; // description of the last `set` awaiting its answer
  let afterFirstChunk = null; // updates the reply once a newly composed station sounds
  let customParams = {}; // musical changes the server applied: asked for again if our station goes
  let askAck = true; // `ack: true` in start (older servers refuse the field: then we stop asking)
  let reportsOn = true; // `report` of underruns and buffer (older servers do not know it)
  let underrunsAtConnect = 0, lastReportAt = 0;
  let lastArrival = 0, jitterLive = false, tierIndex = 1, tierRaisedAt = 0;
  let sleepEndsAt = 0, sleepTimer = 0;
  let decoder = null; // WebCodecs AudioDecoder while streaming Opus
  let assembling = null; // { seq, buf, frames, expected }: a chunk being collected from the decoder
  const opusExpected = new Map(); // seq -> frames its packets decode to (normally 4800)
  let formatSetPending = false; // a `set` of the format we sent ourselves (fallback), not the user
  let lastRateAt = 0, lastRateBytes = 0;
  const pool = []; // ArrayBuffers back from the worklet, for reuse
  let presets = BUILTIN_PRESETS;
  let current = { ...BUILTIN_PRESETS[0] }; // the parameters shown in the controls

  // ---------------------------------------------------------------- status and statistics

  function setState(state, text) {
    stats.state = state;
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function refreshState() {
    if (!running) return;
    if (ctx && ctx.state !== "running") {
      setState("buffering", "Audio paused by the browser. Press the button to resume");
      return;
    }
    // A draining connection still streams while its replacement is being made.
    const open = (ws && ws.readyState === WebSocket.OPEN) || (oldWs && oldWs.readyState === WebSocket.OPEN);
    if (!open) {
      if (reconnectTimer) {
        const s = Math.max(0, Math.ceil((reconnectAt - performance.now()) / 1000));
        setState("reconnecting", `Connection lost. Reconnecting${s ? ` in ${s} s` : ""}…`);
      } else {
        setState(stats.connects > 1 ? "reconnecting" : "connecting", "Connecting…");
      }
      return;
    }
    const w = stats.worklet;
    if (!w || w.state === "buffering") {
      const pct = w ? Math.min(99, Math.round((100 * w.bufferedMs) / w.targetMs)) : 0;
      setState("buffering", `Buffering… ${pct}%`);
    } else if (stats.lastStatus === "source_stalled") {
      setState("playing", "Playing (the source is catching its breath)");
    } else {
      setState("playing", "Playing");
    }
  }

  function showStats() {
    const w = stats.worklet;
    ui.stBuffer.textContent = w ? `${Math.round(w.bufferedMs)} ms` : "–";
    ui.stTier.textContent = stats.tier;
    ui.stTier.title = `target ${TIERS[tierIndex].targetMs} ms` +
      (stats.serverTier ? `; server estimate: ${stats.serverTier}` : "");
    ui.stJitter.textContent = jitterLive || stats.jitterMs ? `${stats.jitterMs.toFixed(1)} ms` : "–";
    ui.stUnderruns.textContent = w ? String(w.underruns) : "0";
    ui.stSeq.textContent = stats.lastSeq === null ? "–" : String(stats.lastSeq);
    ui.stRate.textContent = ctx ? `${(ctx.sampleRate / 1000).toFixed(1)} kHz` : "–";
    const now = performance.now();
    if (now - lastRateAt >= 2000) {
      if (lastRateAt) stats.kbps = ((stats.bytesReceived - lastRateBytes) * 8) / (now - lastRateAt);
      lastRateAt = now;
      lastRateBytes = stats.bytesReceived;
    }
    const shown = stats.format || (running ? format : null);
    ui.stFormat.textContent = shown
      ? `${FORMAT_LABELS[shown] || shown}${running && stats.kbps ? ` · ${Math.round(stats.kbps)} kbit/s` : ""}`
      : "–";
    ui.stFormat.title = shown === "opus" ? "Opus, decoded in the browser (WebCodecs), 48 kHz"
      : shown ? "Uncompressed 16-bit PCM, 44.1 kHz" : "";
    ui.now.textContent = station ? `${stationLabel(station)} · ${describe(current)}` : "";
  }

  function describe(p) {
    const mode = p.mode ? p.mode[0].toUpperCase() + p.mode.slice(1) : "";
    return `${p.key || ""} ${mode} · ${Math.round(p.bpm)} BPM`;
  }

  function reply(kind, text) {
    ui.reply.dataset.kind = kind;
    ui.reply.textContent = text;
  }

  // ---------------------------------------------------------------- adaptive buffering

  /** Called on every audio chunk: smoothed inter-arrival jitter (EMA) picks the tier. */
  function onArrival(now) {
    if (lastArrival) {
      const gap = now - lastArrival;
      // Backlog (pre-roll, resumed history) arrives in a burst; measure from the first chunk
      // that comes at the live pace.
      if (!jitterLive && gap > CHUNK_MS / 2) {
        jitterLive = true;
        // Underruns are reported per connection, from here (an outage before is not jitter).
        if (stats.worklet) underrunsAtConnect = underrunsSeen = stats.worklet.underruns;
      }
      if (jitterLive) {
        const jitter = Math.abs(gap - CHUNK_MS);
        stats.jitterMs = JITTER_ALPHA * jitter + (1 - JITTER_ALPHA) * stats.jitterMs;
      }
    }
    lastArrival = now;
    if (!jitterLive) {
      // Underruns before the stream is live again (an outage) say nothing about jitter.
      if (stats.worklet) underrunsSeen = stats.worklet.underruns;
      return;
    }
    let want = TIERS.findIndex((t) => stats.jitterMs < t.upTo);
    // The server sees lateness we cannot (its socket buffers) and our reports: its tier is a floor.
    want = Math.max(want, TIERS.findIndex((t) => t.name === stats.serverTier));
    // Underruns recently: at least one tier above what the jitter alone suggests.
    if (recentUnderrun(now)) {
      want = Math.min(TIERS.length - 1, Math.max(want, tierIndex + 1));
      sendReport(now);
    } else if (now - lastReportAt > 5000) {
      sendReport(now);
    }
    if (want > tierIndex) {
      setTier(want);
      tierRaisedAt = now;
    } else if (want < tierIndex && now - tierRaisedAt > TIER_DOWN_AFTER_MS) {
      setTier(tierIndex - 1);
      tierRaisedAt = now;
    }
  }

  let underrunsSeen = 0, lastUnderrunAt = -Infinity;
  function recentUnderrun(now) {
    const w = stats.worklet;
    if (w && w.underruns > underrunsSeen) {
      underrunsSeen = w.underruns;
      lastUnderrunAt = now;
      return true;
    }
    return false;
  }

  /** Tells the server how playback goes, so its tier choice sees our underruns. */
  function sendReport(now) {
    const w = stats.worklet;
    if (!reportsOn || !w || !ws || ws.readyState !== WebSocket.OPEN) return;
    lastReportAt = now;
    ws.send(JSON.stringify({ type: "control", action: "report", params: {
      underruns: Math.max(0, w.underruns - underrunsAtConnect),
      buffer_ms: Math.round(w.bufferedMs),
    } }));
  }

  function setTier(i) {
    tierIndex = i;
    stats.tier = TIERS[i].name;
    if (node) node.port.postMessage({ type: "target", ms: TIERS[i].targetMs });
  }

  // ---------------------------------------------------------------- decoding

  function takeBuffer(floats) {
    while (pool.length) {
      const b = pool.pop();
      if (b.byteLength === floats * 4) return new Float32Array(b);
    }
    return new Float32Array(floats);
  }

  /** Planar float32 (left frames, then right) from interleaved s16le stereo. */
  function toPlanar(view, offset, byteLength) {
    const frames = byteLength >> 2;
    const out = takeBuffer(frames * 2);
    for (let f = 0, o = offset; f < frames; f++, o += 4) {
      out[f] = view.getInt16(o, true) / 32768;
      out[frames + f] = view.getInt16(o + 2, true) / 32768;
    }
    return out;
  }

  /** A binary frame: the AUR1 header, then s16le samples (code 1) or Opus packets (code 2). */
  function decodeBinary(buf) {
    const view = new DataView(buf);
    if (buf.byteLength < 40 || view.getUint32(0, false) !== 0x41555231 /* "AUR1" */) return null;
    const headerLen = view.getUint32(4, true);
    const channels = view.getUint16(28, true);
    const code = view.getUint16(30, true);
    if (channels !== 2 || headerLen > buf.byteLength || (code !== 1 && code !== 2)) return null;
    const chunk = {
      seq: view.getUint32(8, true) + view.getUint32(12, true) * 2 ** 32, // no BigInt: Safari 14
      sampleRate: view.getUint32(24, true),
      tier: ["minimal", "normal", "stable", "defensive"][view.getUint8(34)] || null,
      depth: view.getUint32(36, true),
      bytes: buf.byteLength,
      pcm: null,
      opus: null,
    };
    // The Opus payload is decoded only once the chunk is known to be wanted (not a duplicate).
    if (code === 2) chunk.opus = { view, offset: headerLen };
    else chunk.pcm = toPlanar(view, headerLen, buf.byteLength - headerLen);
    return chunk;
  }

  function decodeJsonAudio(m) {
    if (m.channels !== 2 || m.format !== "s16le" || typeof m.data !== "string") return null;
    const bin = atob(m.data);
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return {
      seq: m.seq, sampleRate: m.sample_rate, tier: m.current_tier || null, depth: m.buffer_depth,
      station: m.station, bytes: m.data.length,
      pcm: toPlanar(new DataView(bytes.buffer), 0, bytes.length),
    };
  }

  function onAudio(chunk, socket) {
    if (!chunk) return;
    stats.chunksReceived++;
    stats.bytesReceived += chunk.bytes;
    const drop = () => { if (chunk.pcm) pool.push(chunk.pcm.buffer); };
    if (chunk.station && station && chunk.station !== station) return drop(); // old station's tail
    if (chunk.opus && format !== "opus") return drop(); // in flight when Opus gave way to pcm16
    if (nextSeq !== null && chunk.seq < nextSeq && chunk.seq > nextSeq - 600) {
      stats.duplicates++; // already played (overlap of a draining and a new connection)
      return drop();
    }
    if (socket === ws) attempt = 0; // audio flows: the connection is good
    if (afterFirstChunk) { afterFirstChunk(); afterFirstChunk = null; }
    nextSeq = chunk.seq + 1;
    stats.lastSeq = chunk.seq;
    if (chunk.tier) stats.serverTier = chunk.tier;
    onArrival(performance.now());
    if (chunk.opus) {
      decodeOpus(chunk);
      return;
    }
    node.port.postMessage({ type: "chunk", buf: chunk.pcm.buffer, rate: chunk.sampleRate || PCM_RATE },
      [chunk.pcm.buffer]);
    stats.chunksPosted++;
  }

  // ---------------------------------------------------------------- Opus (WebCodecs)

  /** Whether this browser decodes Opus with WebCodecs (the format asked for then). */
  async function opusSupported() {
    try {
      if (!window.AudioDecoder || !window.EncodedAudioChunk) return false;
      const r = await AudioDecoder.isConfigSupported(OPUS_CONFIG);
      return Boolean(r && r.supported);
    } catch {
      return false;
    }
  }

  function ensureDecoder() {
    if (decoder && decoder.state === "configured") return true;
    try {
      decoder = new AudioDecoder({ output: onDecoded, error: onDecoderError });
      decoder.configure(OPUS_CONFIG);
      return true;
    } catch (err) {
      onDecoderError(err);
      return false;
    }
  }

  function closeDecoder() {
    const d = decoder;
    decoder = null;
    assembling = null;
    opusExpected.clear();
    if (d && d.state !== "closed") {
      try { d.close(); } catch { /* closing anyway */ }
    }
  }

  /**
   * Hands a frame's packets (each prefixed by its length, u16 LE) to the decoder. Timestamps come
   * from the seq (100 ms a chunk, 20 ms a packet), so its output says which chunk it belongs to.
   */
  function decodeOpus(chunk) {
    if (!ensureDecoder()) return;
    const { view, offset } = chunk.opus;
    const end = view.byteLength;
    let k = 0;
    try {
      for (let at = offset; at + 2 <= end; k++) {
        const len = view.getUint16(at, true);
        at += 2;
        if (len === 0 || at + len > end) throw new Error(`malformed Opus frame (seq ${chunk.seq})`);
        decoder.decode(new EncodedAudioChunk({
          type: "key",
          timestamp: chunk.seq * CHUNK_MS * 1000 + k * OPUS_PACKET_US,
          duration: OPUS_PACKET_US,
          data: new Uint8Array(view.buffer, at, len),
        }));
        at += len;
      }
    } catch (err) {
      onDecoderError(err);
      return;
    }
    stats.opusPackets += k;
    opusExpected.set(chunk.seq, k * OPUS_PACKET_FRAMES);
  }

  /** Decoder output (one AudioData per packet): collected per chunk, then posted to the worklet. */
  function onDecoded(data) {
    try {
      if (!running || !node) return;
      // Round to the packet: a decoder that shifts its timestamps by its delay still lands here.
      const seq = Math.floor(Math.round(data.timestamp / OPUS_PACKET_US) / (CHUNK_MS * 1000 / OPUS_PACKET_US));
      if (assembling && assembling.seq !== seq) postAssembled();
      const n = data.numberOfFrames;
      if (!assembling) {
        const expected = opusExpected.get(seq) || 5 * OPUS_PACKET_FRAMES;
        // Forget this chunk's and any older (never answered) announcements.
        for (const k of opusExpected.keys()) {
          if (k > seq) break;
          opusExpected.delete(k);
        }
        assembling = { seq, buf: takeBuffer(2 * expected), frames: 0, expected };
      }
      const a = assembling;
      const room = a.expected - a.frames;
      if (n > room) { postAssembled(); return; } // more than announced: drop, never overrun
      copyPlanes(data, a.buf, a.frames, a.expected, n);
      a.frames += n;
      if (a.frames === a.expected) postAssembled();
    } catch (err) {
      onDecoderError(err);
    } finally {
      data.close();
    }
  }

  let scratch = null; // interleaved output of decoders that give "f32"
  /** Copies `n` frames of `data` into planar `buf` (left at [at], right at [stride + at]). */
  function copyPlanes(data, buf, at, stride, n) {
    const left = buf.subarray(at, at + n), right = buf.subarray(stride + at, stride + at + n);
    if (data.format === "f32-planar") {
      data.copyTo(left, { planeIndex: 0 });
      data.copyTo(right, { planeIndex: data.numberOfChannels > 1 ? 1 : 0 });
      return;
    }
    if (data.format === "f32") {
      if (!scratch || scratch.length < 2 * n) scratch = new Float32Array(2 * n);
      data.copyTo(scratch, { planeIndex: 0 });
      for (let i = 0; i < n; i++) { left[i] = scratch[2 * i]; right[i] = scratch[2 * i + 1]; }
      return;
    }
    // Any other sample format: let the browser convert.
    data.copyTo(left, { planeIndex: 0, format: "f32-planar" });
    data.copyTo(right, { planeIndex: 1, format: "f32-planar" });
  }

  function postAssembled() {
    const a = assembling;
    assembling = null;
    if (!a || !a.frames) return;
    let buf = a.buf;
    if (a.frames !== a.expected) {
      // A short chunk (the decoder's first, trimmed by its delay): planar at its own length.
      buf = takeBuffer(2 * a.frames);
      buf.set(a.buf.subarray(0, a.frames), 0);
      buf.set(a.buf.subarray(a.expected, a.expected + a.frames), a.frames);
      pool.push(a.buf.buffer);
    }
    node.port.postMessage({ type: "chunk", buf: buf.buffer, rate: OPUS_RATE }, [buf.buffer]);
    stats.chunksPosted++;
    stats.opusDecoded++;
  }

  function onDecoderError(err) {
    stats.decoderErrors++;
    const why = err && err.message ? err.message : String(err);
    stats.lastError = `decoder: ${why}`;
    closeDecoder();
    if (format === "opus") fallBackToPcm(`Opus decoding failed (${why})`);
  }

  /** Opus gave way: pcm16 from here on, continuing the stream (the server switches at once). */
  function fallBackToPcm(why) {
    format = "pcm16";
    stats.fallbacks++;
    showFormatNote(`${why}. Playing uncompressed PCM instead.`);
    if (ws && ws.readyState === WebSocket.OPEN && station) {
      formatSetPending = true;
      ws.send(JSON.stringify({ type: "control", action: "set", params: { format: "pcm16" } }));
    }
  }

  function showFormatNote(text) {
    stats.formatNote = text;
    ui.formatNote.textContent = text;
    ui.formatNote.hidden = false;
  }

  /** A different stream follows: the worklet fades out and drops what it holds, then buffers. */
  function resetStream() {
    node.port.postMessage({ type: "reset" });
    // Whatever the decoder still holds belongs to the stream that ends.
    if (decoder) closeDecoder();
    stats.streams++;
    if (stats.worklet) stats.worklet = { ...stats.worklet, state: "buffering", bufferedMs: 0 };
    lastArrival = 0;
    jitterLive = false;
    refreshState();
  }

  // ---------------------------------------------------------------- the connection

  function wsUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  }

  /** `?format=json|pcm16|opus` forces a format (debugging, old proxies); else chosen at start. */
  const FORMAT_ASKED = (() => {
    const f = new URLSearchParams(location.search).get("format");
    return ["json", "pcm16", "opus"].includes(f) ? f : null;
  })();
  const FORMAT_LABELS = { json: "JSON", pcm16: "PCM", opus: "Opus" };
  let format = FORMAT_ASKED || "pcm16"; // what `start` asks for

  /**
   * `start`: our station and where we are in it when reconnecting; when `fresh` (our station is
   * gone) the musical parameters we had asked for instead, so the server finds or makes a station
   * playing them.
   */
  function startMessage(fresh) {
    const params = { format };
    if (askAck) params.ack = true;
    if (fresh) {
      Object.assign(params, customParams);
    } else {
      if (station) params.station = station;
      else if (ui.station.value) params.station = ui.station.value;
      // New musical parameters mean another station, whose seqs are unrelated to ours.
      const changing = Object.keys(pendingParams).length > 0;
      if (nextSeq !== null && station && !changing) params.resume_from = nextSeq;
    }
    Object.assign(params, pendingParams);
    return { type: "control", action: "start", params };
  }

  /** Our station is gone (reclaimed): start again on the same parameters. */
  function restartFresh(socket) {
    station = null;
    nextSeq = null;
    resetStream();
    if (socket === ws && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(startMessage(true)));
    }
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    if (!running) return;
    stats.connects++;
    if (stats.connects > 1) stats.reconnects++;
    let socket;
    try {
      socket = new WebSocket(wsUrl());
    } catch (err) {
      stats.lastError = String(err);
      scheduleReconnect();
      return;
    }
    socket.binaryType = "arraybuffer";
    ws = socket;
    lastArrival = 0;
    jitterLive = false;
    refreshState();
    socket.onopen = () => {
      if (socket !== ws) return;
      socket.send(JSON.stringify(startMessage(false)));
      refreshState();
    };
    socket.onmessage = (e) => {
      if (socket !== ws && socket !== oldWs) return;
      if (typeof e.data !== "string") {
        onAudio(decodeBinary(e.data), socket);
        return;
      }
      let m;
      try { m = JSON.parse(e.data); } catch { return; }
      onMessage(m, socket);
    };
    socket.onclose = () => {
      if (socket === oldWs) { oldWs = null; return; }
      if (socket !== ws) return;
      ws = null;
      jitterLive = false;
      if (running) scheduleReconnect();
    };
  }

  /** Exponential backoff (1 s base, 60 s cap) with jitter, so clients do not return in step. */
  function scheduleReconnect(minDelayMs = 0) {
    if (!running || reconnectTimer) return;
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    const delay = Math.max(minDelayMs, ceiling * (0.5 + 0.5 * Math.random()));
    attempt = Math.min(attempt + 1, 16);
    reconnectAt = performance.now() + delay;
    reconnectTimer = setTimeout(connect, delay);
    refreshState();
  }

  function onMessage(m, socket) {
    switch (m.type) {
      case "audio":
        onAudio(decodeJsonAudio(m), socket);
        break;
      case "ack":
        onAck(m, socket);
        break;
      case "error":
        onError(m, socket);
        break;
      case "status":
        stats.lastStatus = m.state;
        if (m.state === "resumed" && m.lost) {
          reply("none", `Reconnected; ${(m.lost * CHUNK_MS / 1000).toFixed(1)} s could not be recovered`);
        } else if (m.state === "skipped") {
          reply("none", `Skipped ${(m.missed * CHUNK_MS / 1000).toFixed(1)} s to catch up with live`);
        } else if (m.state === "source_restarted" || m.state === "resumed") {
          // Sequence numbers continue; nothing to do.
        }
        if (m.next_seq !== undefined && m.state === "resumed") nextSeq = m.next_seq;
        if (m.state === "station_removed" && socket === ws) {
          reply("none", `Station ${m.station || ""} was closed; starting again on the same settings`);
          restartFresh(socket);
        }
        refreshState();
        break;
      case "draining":
        onDraining(m, socket);
        break;
      default:
        break; // pong and anything newer
    }
  }

  function onAck(m, socket) {
    stats.lastAck = m;
    if (m.format) stats.format = m.format;
    if (m.action === "set" && formatSetPending && !pendingSet) {
      formatSetPending = false; // our own fallback, already told in the page
      refreshState();
      showStats();
      return;
    }
    if (m.action === "start") {
      if (oldWs && socket === ws) {
        // The replacement of a draining connection is streaming: let the old one go.
        try { oldWs.close(1000); } catch { /* already closed */ }
        oldWs = null;
      }
      stats.startAcks++;
      if (m.station && m.station !== station) {
        if (station !== null) resetStream();
        station = m.station;
        nextSeq = null;
        selectStation(station);
      }
      if (Object.keys(pendingParams).length) {
        Object.assign(customParams, pendingParams);
        if (m.ignored_params && m.ignored_params.length) {
          reply("error", `Accepted but not applied by this server: ${m.ignored_params.join(", ")}`);
        } else {
          const applied = `Applied: ${Object.entries(pendingParams).map(([k, v]) => `${k} ${v}`).join(", ")}`;
          reply("ack", applied + (m.state === "starting" ? " (composing, audio in a moment)" : ""));
          afterFirstChunk = m.state === "starting" ? () => reply("ack", applied) : null;
        }
      } else if (m.state === "starting") {
        reply("pending", "Composing a station for these settings…");
        afterFirstChunk = () => reply("none", "");
      }
      pendingParams = {};
      applyParams(m.params);
    } else if (m.action === "set") {
      if (m.station && m.station !== station) {
        resetStream();
        station = m.station;
        nextSeq = null;
        selectStation(station);
      }
      applyParams(m.params);
      const what = pendingSet ? pendingSet.text : "change";
      if (pendingSet) {
        const musical = { ...pendingSet.params };
        delete musical.station;
        if (pendingSet.params.station) customParams = {};
        if (musical.preset) customParams = {};
        Object.assign(customParams, musical);
      }
      const applied = `Applied: ${what}${m.station ? ` · ${stationLabel(m.station)}` : ""}`;
      reply("ack", applied + (m.state === "starting" ? " (composing, audio in a moment)" : ""));
      afterFirstChunk = m.state === "starting" ? () => reply("ack", applied) : null;
      pendingSet = null;
    }
    refreshState();
    showStats();
  }

  function onError(m, socket) {
    const code = m.code || "error";
    const text = String(m.message || "");
    if (code === "unknown_param" && askAck && text.includes('"ack"')) {
      askAck = false; // an older server: start again without asking for the ack
      if (socket === ws && socket.readyState === WebSocket.OPEN) {
        socket.send(JSON.stringify(startMessage(false)));
      }
      return;
    }
    if (code === "unknown_action" && reportsOn && text.includes('"report"')) {
      reportsOn = false;
      return;
    }
    stats.lastError = m;
    if (pendingSet) {
      reply("error", `Not applied (${pendingSet.text}): ${m.message}`);
      revertControls();
      pendingSet = null;
      return;
    }
    if (code === "no_station") {
      // Composer not ready yet: try again shortly.
      reply("none", "Waiting for the composer to start…");
      if (socket === ws) { ws = null; socket.close(1000); scheduleReconnect(); }
    } else if (code === "unknown_station" && station) {
      // Our station is gone (reclaimed): start on the default one.
      reply("none", `Station ${station} has closed; starting again on the same settings`);
      restartFresh(socket);
    } else {
      reply("error", `Server: ${m.message || code}`);
    }
  }

  /** The server is going away: open a new connection early, resuming where we are. */
  function onDraining(m, socket) {
    if (socket !== ws) return;
    stats.draining++;
    if (typeof m.resume_from === "number" && nextSeq === null) nextSeq = m.resume_from;
    const after = Math.max(0, Math.min(m.reconnect_after_ms ?? 500, 10000));
    reply("none", "The server is restarting; moving over without a gap");
    setTimeout(() => {
      if (!running || socket !== ws) return;
      oldWs = socket; // keeps playing until the new one acks (or it closes)
      ws = null;
      attempt = 0;
      connect();
    }, after);
  }

  // ---------------------------------------------------------------- controls

  function selectStation(name) {
    addStationOption(name);
    ui.station.value = name;
    updatePlainStream();
  }

  // ---------------------------------------------------------------- the plain stream

  /** The station's plain stream, for `<audio>`, other players, and iOS's lock screen. */
  function plainStreamUrl(ext) {
    const name = station || ui.station.value || "focus";
    return `/stream/${encodeURIComponent(name)}.${ext}`;
  }

  function updatePlainStream() {
    ui.plainMp3.href = plainStreamUrl("mp3");
    ui.plainOpus.href = plainStreamUrl("opus");
    // A playing element keeps its station (changing `src` would cut it).
    if (ui.plainAudio.paused) ui.plainAudio.setAttribute("src", plainStreamUrl("mp3"));
  }

  /**
   * Where the worklet player cannot play well, say so and put the plain stream first: without
   * AudioWorklet it cannot play at all, and on iOS a page's Web Audio stops when the screen locks
   * while an `<audio>` element plays on.
   */
  function plainStreamReason() {
    if (typeof AudioWorkletNode === "undefined" || !window.isSecureContext) {
      return "This browser cannot run the player above (it needs AudioWorklet, on https:// or " +
        "localhost). This plain stream plays here instead.";
    }
    const ios = /iPad|iPhone|iPod/.test(navigator.userAgent) ||
      (navigator.platform === "MacIntel" && navigator.maxTouchPoints > 1);
    if (ios) {
      return "On iPhone and iPad the player above stops when the screen locks. This plain stream " +
        "keeps playing in the background.";
    }
    return null;
  }

  /** Puts the plain stream right under the player, with `why`. */
  function suggestPlainStream(why) {
    if (!why) return;
    ui.plain.dataset.suggested = "true";
    ui.plainHint.textContent = why;
    const stage = document.querySelector(".stage");
    stage.parentNode.insertBefore(ui.plain, stage.nextSibling);
  }

  ui.plainAudio.addEventListener("play", () => {
    if (running) ui.toggle.click(); // one player at a time
  });
  ui.plainAudio.addEventListener("pause", () => {
    // A live stream resumes at live, not where it paused: drop the connection and its buffer.
    const src = plainStreamUrl("mp3");
    ui.plainAudio.removeAttribute("src");
    ui.plainAudio.load();
    ui.plainAudio.setAttribute("src", src);
  });

  /** Stations made for one listener's settings have generated names: show them kindly. */
  function stationLabel(name) {
    const m = /^p-([0-9a-f]{4})[0-9a-f]*$/.exec(name);
    return m ? `Custom mix ${m[1]}` : name;
  }

  function addStationOption(name) {
    if ([...ui.station.options].some((o) => o.value === name)) return;
    const o = document.createElement("option");
    o.value = name;
    o.textContent = stationLabel(name);
    ui.station.appendChild(o);
  }

  function normaliseKey(k) {
    if (typeof k !== "string") return k;
    const name = k.trim().replace(/^[a-g]/, (c) => c.toUpperCase());
    return KEY_ALIASES[name] || name;
  }

  /** Shows parameters the server reports (or a preset's defaults). */
  function applyParams(p) {
    if (!p || typeof p !== "object") return;
    const next = { ...current };
    for (const f of ["key", "mode", "bpm", "intensity", "preset", "seed"]) {
      if (p[f] !== undefined && p[f] !== null) next[f] = p[f];
    }
    if (p.name && !p.preset) next.preset = p.name;
    current = next;
    syncControls();
  }

  function syncControls() {
    const key = normaliseKey(current.key);
    if ([...ui.key.options].some((o) => o.value === key)) ui.key.value = key;
    if (current.mode) ui.mode.value = String(current.mode).toLowerCase();
    if (current.bpm) { ui.bpm.value = current.bpm; ui.bpmOut.textContent = Math.round(current.bpm); }
    if (current.intensity !== undefined) {
      ui.intensity.value = current.intensity;
      ui.intensityOut.textContent = Math.round(current.intensity * 100);
    }
    if (current.preset && [...ui.preset.options].some((o) => o.value === current.preset)) {
      ui.preset.value = current.preset;
      const p = presets.find((x) => x.name === current.preset);
      ui.presetHint.textContent = p && p.description ? p.description : "";
    }
    showStats();
  }

  /** Puts the controls back as they were before a refused `set`. */
  function revertControls() {
    if (pendingSet && pendingSet.before) current = pendingSet.before;
    syncControls();
  }

  /** Sends `set` (or remembers the change for `start` when not connected). */
  function sendSet(params, text) {
    const open = ws && ws.readyState === WebSocket.OPEN && station;
    if (!open) {
      Object.assign(pendingParams, params);
      Object.assign(current, params.preset ? presetDefaults(params.preset) : {}, params);
      syncControls();
      reply("pending", running ? `Will apply on reconnect: ${text}` : `Will apply when you start: ${text}`);
      return;
    }
    pendingSet = { params, text };
    ws.send(JSON.stringify({ type: "control", action: "set", params }));
    reply("pending", `Asking for ${text}…`);
    // Optimistic: show the value; an error reverts it.
    pendingSet.before = { ...current };
    current = { ...current, ...(params.preset ? presetDefaults(params.preset) : {}), ...params };
    syncControls();
  }

  function presetDefaults(name) {
    const p = presets.find((x) => x.name === name);
    if (!p) return {};
    const out = {};
    for (const f of ["key", "mode", "bpm", "intensity"]) if (p[f] !== undefined) out[f] = p[f];
    return out;
  }

  ui.preset.addEventListener("change", () => {
    sendSet({ preset: ui.preset.value }, `preset ${ui.preset.value}`);
  });
  ui.key.addEventListener("change", () => sendSet({ key: ui.key.value }, `key ${ui.key.value}`));
  ui.mode.addEventListener("change", () => sendSet({ mode: ui.mode.value }, `mode ${ui.mode.value}`));
  ui.bpm.addEventListener("input", () => { ui.bpmOut.textContent = ui.bpm.value; });
  ui.bpm.addEventListener("change", () => sendSet({ bpm: Number(ui.bpm.value) }, `tempo ${ui.bpm.value} BPM`));
  ui.intensity.addEventListener("input", () => {
    ui.intensityOut.textContent = Math.round(Number(ui.intensity.value) * 100);
  });
  ui.intensity.addEventListener("change", () => {
    sendSet({ intensity: Number(ui.intensity.value) }, `intensity ${Math.round(ui.intensity.value * 100)}%`);
  });
  ui.station.addEventListener("change", () => {
    const name = ui.station.value;
    if (!name) return;
    if (!station) updatePlainStream();
    customParams = {};
    if (ws && ws.readyState === WebSocket.OPEN && station) {
      pendingSet = { params: { station: name }, text: `station ${name}`, before: { ...current } };
      ws.send(JSON.stringify({ type: "control", action: "set", params: { station: name } }));
      reply("pending", `Switching to ${name}…`);
    } else {
      station = null;
      nextSeq = null;
    }
  });

  function setVolume(v, smooth = true) {
    ui.volumeOut.textContent = Math.round(v * 100);
    try { localStorage.setItem("auralis.volume", String(v)); } catch { /* private mode */ }
    if (!volumeGain) return;
    // Perceptual curve: squared slider position.
    const g = v * v;
    if (smooth) volumeGain.gain.setTargetAtTime(g, ctx.currentTime, 0.04);
    else volumeGain.gain.value = g;
  }
  ui.volume.addEventListener("input", () => setVolume(Number(ui.volume.value)));

  // ---------------------------------------------------------------- sleep timer

  function setSleepTimer(seconds) {
    clearInterval(sleepTimer);
    sleepTimer = 0;
    sleepEndsAt = 0;
    if (sleepGain) {
      sleepGain.gain.cancelScheduledValues(ctx.currentTime);
      sleepGain.gain.setTargetAtTime(1, ctx.currentTime, 0.1);
    }
    if (!seconds) {
      ui.sleepLeft.textContent = "Fades out gently, then stops";
      return;
    }
    sleepEndsAt = performance.now() + seconds * 1000;
    if (ctx && running) scheduleSleepFade();
    const tick = () => {
      const left = (sleepEndsAt - performance.now()) / 1000;
      if (left <= 0) {
        clearInterval(sleepTimer);
        sleepTimer = 0;
        sleepEndsAt = 0;
        ui.sleep.value = "0";
        ui.sleepLeft.textContent = "Sleep timer ended";
        if (running) stop();
        return;
      }
      const m = Math.floor(left / 60), s = Math.floor(left % 60);
      ui.sleepLeft.textContent = `Stops in ${m}:${String(s).padStart(2, "0")}` +
        (left <= SLEEP_FADE_S ? " · fading out" : "");
    };
    tick();
    sleepTimer = setInterval(tick, 1000);
  }

  function scheduleSleepFade() {
    if (!sleepEndsAt || !sleepGain) return;
    const left = (sleepEndsAt - performance.now()) / 1000;
    const fade = Math.min(SLEEP_FADE_S, Math.max(0.5, left));
    const t0 = ctx.currentTime + Math.max(0, left - fade);
    const g = sleepGain.gain;
    g.cancelScheduledValues(ctx.currentTime);
    g.setValueAtTime(g.value, ctx.currentTime);
    g.setValueAtTime(1, t0);
    g.linearRampToValueAtTime(0.0001, t0 + fade);
  }
  ui.sleep.addEventListener("change", () => setSleepTimer(Number(ui.sleep.value)));

  // ---------------------------------------------------------------- audio graph

  async function ensureAudio() {
    if (ctx) return;
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!AC) throw new Error("this browser has no Web Audio");
    // The device's own rate (44.1 or 48 kHz, or anything): the worklet resamples. "playback"
    // asks for larger hardware buffers, which is right for music and kinder to batteries.
    try {
      ctx = new AC({ latencyHint: "playback" });
    } catch {
      ctx = new AC();
    }
    // Calling resume() inside the click (before any await) is what unlocks audio in Safari.
    const resumed = ctx.resume();
    if (!ctx.audioWorklet) {
      throw new Error("AudioWorklet is unavailable here (it needs https:// or localhost and a current browser)");
    }
    await ctx.audioWorklet.addModule("worklet.js");
    node = new AudioWorkletNode(ctx, "auralis-player", {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [2],
    });
    node.port.onmessage = (e) => {
      const m = e.data;
      if (m.buf) pool.push(m.buf);
      if (m.stats) {
        stats.worklet = m.stats;
        // While no live stream flows (outage, backlog burst), underruns are not jitter's doing.
        if (!jitterLive) underrunsSeen = m.stats.underruns;
        refreshState();
        showStats();
      }
    };
    volumeGain = new GainNode(ctx, { gain: 1 });
    sleepGain = new GainNode(ctx, { gain: 1 });
    analyser = new AnalyserNode(ctx, { fftSize: 4096, smoothingTimeConstant: 0.82 });
    node.connect(volumeGain).connect(sleepGain);
    sleepGain.connect(analyser);
    sleepGain.connect(ctx.destination);
    setVolume(Number(ui.volume.value), false);
    setTier(tierIndex);
    ctx.onstatechange = () => { refreshState(); };
    await resumed;
    requestAnimationFrame(draw);
  }

  async function start() {
    // Safari: route Web Audio like media playback so the ring/silent switch does not mute it.
    try { if (navigator.audioSession) navigator.audioSession.type = "playback"; } catch { /* old */ }
    const first = !ctx;
    if (ctx) ctx.resume();
    await ensureAudio();
    if (!first) await ctx.resume();
    // Opus where WebCodecs decodes it (unless forced, or it failed once this visit).
    if (!FORMAT_ASKED && !stats.fallbacks) format = (await opusSupported()) ? "opus" : "pcm16";
    if (!ui.plainAudio.paused) ui.plainAudio.pause(); // one player at a time
    running = true;
    attempt = 0;
    stats.connects = 0;
    node.port.postMessage({ type: "reset" });
    nextSeq = null;
    station = null;
    sleepGain.gain.cancelScheduledValues(ctx.currentTime);
    sleepGain.gain.setValueAtTime(1, ctx.currentTime);
    scheduleSleepFade();
    ui.toggle.setAttribute("aria-pressed", "true");
    ui.toggleLabel.textContent = "Stop";
    setMediaSession();
    connect();
  }

  function stop() {
    running = false;
    clearTimeout(reconnectTimer);
    reconnectTimer = 0;
    for (const s of [ws, oldWs]) {
      if (s && s.readyState === WebSocket.OPEN) {
        try {
          s.send(JSON.stringify({ type: "control", action: "stop" }));
          s.close(1000);
        } catch { /* closing anyway */ }
      }
    }
    ws = oldWs = null;
    station = null;
    closeDecoder();
    if (node) node.port.postMessage({ type: "reset" });
    // Let the worklet's fade-out finish before suspending.
    if (ctx) setTimeout(() => { if (!running) ctx.suspend(); }, 120);
    ui.toggle.setAttribute("aria-pressed", "false");
    ui.toggleLabel.textContent = "Start listening";
    setState("idle", "Stopped");
    if ("mediaSession" in navigator) navigator.mediaSession.playbackState = "paused";
  }

  ui.toggle.addEventListener("click", () => {
    // A browser that suspended us (tab in background, Safari interruption): this click resumes.
    if (running && ctx && ctx.state !== "running") {
      ctx.resume();
      return;
    }
    ui.toggle.disabled = true;
    const action = running ? Promise.resolve(stop()) : start();
    action.catch((err) => {
      running = false;
      setState("error", `Cannot play: ${err && err.message ? err.message : err}. ` +
        "The plain stream below may play instead.");
      if (ui.plain.dataset.suggested !== "true") {
        suggestPlainStream("The player above could not start here. This plain stream plays instead.");
      }
    }).finally(() => { ui.toggle.disabled = false; });
  });

  function setMediaSession() {
    if (!("mediaSession" in navigator)) return;
    try {
      navigator.mediaSession.metadata = new MediaMetadata({
        title: "Auralis", artist: "Generative ambient, live", album: current.preset || "",
      });
      navigator.mediaSession.playbackState = "playing";
      navigator.mediaSession.setActionHandler("play", () => { if (!running) ui.toggle.click(); });
      navigator.mediaSession.setActionHandler("pause", () => { if (running) ui.toggle.click(); });
    } catch { /* partial support */ }
  }

  // ---------------------------------------------------------------- visualizer

  let freq = null, wave = null;
  function draw() {
    requestAnimationFrame(draw);
    if (document.hidden || !analyser) return;
    const c = ui.viz;
    const dpr = Math.min(2, window.devicePixelRatio || 1);
    const w = Math.round(c.clientWidth * dpr), h = Math.round(c.clientHeight * dpr);
    if (!w || !h) return;
    if (c.width !== w || c.height !== h) { c.width = w; c.height = h; }
    if (!freq) {
      freq = new Uint8Array(analyser.frequencyBinCount);
      wave = new Float32Array(analyser.fftSize);
    }
    analyser.getByteFrequencyData(freq);
    analyser.getFloatTimeDomainData(wave);
    const g = c.getContext("2d");
    g.clearRect(0, 0, w, h);

    // Spectrum: log-spaced bands from 40 Hz to 16 kHz, mirrored softly around the middle.
    const bands = Math.max(24, Math.min(96, Math.floor(w / (10 * dpr))));
    const nyq = ctx.sampleRate / 2, lo = Math.log(50), hi = Math.log(16000);
    const bw = w / bands;
    const grad = g.createLinearGradient(0, h, 0, 0);
    grad.addColorStop(0, "rgba(143,184,232,0.10)");
    grad.addColorStop(0.45, "rgba(143,184,232,0.38)");
    grad.addColorStop(1, "rgba(180,155,224,0.62)");
    g.fillStyle = grad;
    for (let b = 0; b < bands; b++) {
      const f0 = Math.exp(lo + ((hi - lo) * b) / bands), f1 = Math.exp(lo + ((hi - lo) * (b + 1)) / bands);
      const i0 = Math.floor((f0 / nyq) * freq.length), i1 = Math.max(i0 + 1, Math.ceil((f1 / nyq) * freq.length));
      let m = 0;
      if (i1 - i0 <= 1) {
        // Narrower than an FFT bin (low end): interpolate at the band's centre, no flat steps.
        const x = (Math.sqrt(f0 * f1) / nyq) * freq.length, j = Math.floor(x);
        m = freq[j] + (freq[Math.min(j + 1, freq.length - 1)] - freq[j]) * (x - j);
      } else {
        for (let i = i0; i < i1 && i < freq.length; i++) m = Math.max(m, freq[i]);
      }
      const v = m / 255;
      const bh = Math.max(1, v * v * h * 0.9);
      const x = b * bw + bw * 0.18;
      const r = Math.min(bw * 0.32, 4 * dpr);
      roundRect(g, x, h - bh, bw * 0.64, bh, r);
    }

    // Waveform: a thin calm line across the middle.
    g.lineWidth = 1.25 * dpr;
    g.strokeStyle = "rgba(221,227,238,0.35)";
    g.beginPath();
    const stepW = w / wave.length;
    for (let i = 0; i < wave.length; i += 2) {
      const y = h * 0.5 - wave[i] * h * 0.35;
      if (i === 0) g.moveTo(0, y); else g.lineTo(i * stepW, y);
    }
    g.stroke();
  }

  function roundRect(g, x, y, w, h, r) {
    g.beginPath();
    g.moveTo(x + r, y);
    g.arcTo(x + w, y, x + w, y + h, r);
    g.lineTo(x + w, y + h);
    g.lineTo(x, y + h);
    g.arcTo(x, y, x + w, y, r);
    g.closePath();
    g.fill();
  }

  /** RMS of what is being output right now (tests use this; 0 when nothing plays). */
  function outputRms() {
    if (!analyser) return 0;
    const buf = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(buf);
    let s = 0;
    for (let i = 0; i < buf.length; i++) s += buf[i] * buf[i];
    return Math.sqrt(s / buf.length);
  }

  // ---------------------------------------------------------------- startup

  function fillPresets(list) {
    presets = list;
    ui.preset.textContent = "";
    for (const p of list) {
      const o = document.createElement("option");
      o.value = p.name;
      o.textContent = p.name[0].toUpperCase() + p.name.slice(1);
      ui.preset.appendChild(o);
    }
    syncControls();
  }

  async function loadPresets() {
    try {
      const r = await fetch("/api/presets", { cache: "no-store" });
      if (!r.ok) return;
      const body = await r.json();
      const list = Array.isArray(body) ? body : body && Array.isArray(body.presets) ? body.presets : null;
      if (list && list.length && list.every((p) => p && typeof p.name === "string")) {
        fillPresets(list.map((p) => ({ ...p, key: p.key, mode: p.mode && String(p.mode).toLowerCase() })));
        if (!current.preset || !list.some((p) => p.name === current.preset)) {
          current = { ...current, ...list[0], preset: list[0].name };
        }
        syncControls();
      }
    } catch { /* older server: the built-in list stays */ }
  }

  async function loadStations() {
    try {
      const r = await fetch("/api/status", { cache: "no-store" });
      if (!r.ok) return;
      const s = await r.json();
      for (const st of s.stations || []) {
        if (st && st.name) {
          addStationOption(st.name);
          if (st.params && st.name === (station || ui.station.value)) applyParams(st.params);
        }
      }
      // The placeholder only matters until the server lists a station.
      const placeholder = [...ui.station.options].find((o) => o.value === "");
      if (placeholder && ui.station.options.length > 1) {
        placeholder.remove();
        if (!station) ui.station.value = (s.stations.find((x) => x.default) || s.stations[0]).name;
        updatePlainStream();
      }
    } catch { /* offline: try again later */ }
  }

  current.preset = "focus";
  fillPresets(BUILTIN_PRESETS);
  try {
    const v = localStorage.getItem("auralis.volume");
    if (v !== null && Number.isFinite(Number(v))) ui.volume.value = v;
  } catch { /* private mode */ }
  setVolume(Number(ui.volume.value), false);
  suggestPlainStream(plainStreamReason());
  updatePlainStream();
  loadPresets();
  loadStations();
  setInterval(loadStations, 15000);
  setInterval(() => {
    if (node && running) node.port.postMessage({ type: "poll" });
    refreshState();
    showStats();
  }, 500);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && running && ctx && ctx.state !== "running") ctx.resume();
  });

  window.auralis = {
    stats,
    rms: outputRms,
    get context() { return ctx; },
    get station() { return station; },
    get nextSeq() { return nextSeq; },
    get connected() { return Boolean(ws && ws.readyState === WebSocket.OPEN && !oldWs); },
    get format() { return format; },
    plainStreamUrl,
    setSleepTimer,
    setTier,
  };
})();
