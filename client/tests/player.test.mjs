// Browser test of the Auralis player against a running `auralis up` (scripts/test-browser.sh starts
// it and sets AURALIS_URL and AURALIS_LAUNCHER_PID). Debian's chromium, headless, via playwright-core.
//
// The tests run in order on one page: start and play (Opus through WebCodecs), survive a streamd
// crash, change the key, screenshot; then pages of their own: JSON audio at 44.1 kHz and the sleep
// timer, a browser without WebCodecs (pcm16) and the plain stream, and an Opus decoder that fails
// mid-stream (falls back to pcm16). Run with `node --test player.test.mjs`.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const SERVER = process.env.AURALIS_URL;
const LAUNCHER_PID = Number(process.env.AURALIS_LAUNCHER_PID);
const ARTIFACTS = process.env.ARTIFACTS_DIR || path.resolve("../../artifacts");
const CLIENT_DIR = process.env.CLIENT_DIR || path.resolve("..");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
/** The device rate the page gets: 48 kHz exercises the worklet's resampler (the common case). */
const DEVICE_RATE = Number(process.env.DEVICE_RATE || 48000);

let context, page, proxy, base, profile;
const consoleLines = [];
const pageErrors = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForServer(url, ms) {
  const end = Date.now() + ms;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) return;
    } catch { /* not yet */ }
    if (Date.now() > end) throw new Error(`${url} did not come up in ${ms} ms`);
    await sleep(200);
  }
}

/** Until streamd serves /player.js, /worklet.js and /style.css itself, serve client/ in front of it. */
async function startClientProxy(target) {
  const files = {
    "/": ["index.html", "text/html; charset=utf-8"],
    "/index.html": ["index.html", "text/html; charset=utf-8"],
    "/player.js": ["player.js", "text/javascript; charset=utf-8"],
    "/worklet.js": ["worklet.js", "text/javascript; charset=utf-8"],
    "/style.css": ["style.css", "text/css; charset=utf-8"],
  };
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const f = files[new URL(req.url, "http://x").pathname];
    if (f) {
      res.writeHead(200, { "content-type": f[1], "cache-control": "no-store" });
      res.end(fs.readFileSync(path.join(CLIENT_DIR, f[0])));
      return;
    }
    const up = http.request({ host: t.hostname, port: t.port, path: req.url, method: req.method,
      headers: req.headers }, (r) => { res.writeHead(r.statusCode, r.headers); r.pipe(res); });
    up.on("error", () => { res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  server.on("upgrade", (req, socket, head) => {
    const upstream = net.connect(Number(t.port), t.hostname, () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      upstream.write(raw + "\r\n");
      if (head.length) upstream.write(head);
      upstream.pipe(socket);
      socket.pipe(upstream);
    });
    const end = () => { upstream.destroy(); socket.destroy(); };
    upstream.on("error", end);
    socket.on("error", end);
    upstream.on("close", end);
    socket.on("close", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return server;
}

/** The streamd process the launcher supervises: a child whose cmdline is `<exe> streamd`. */
function streamdPid() {
  const children = [];
  for (const task of fs.readdirSync(`/proc/${LAUNCHER_PID}/task`)) {
    const text = fs.readFileSync(`/proc/${LAUNCHER_PID}/task/${task}/children`, "utf8").trim();
    if (text) children.push(...text.split(/\s+/).map(Number));
  }
  for (const pid of children) {
    try {
      const argv = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (argv[1] === "streamd") return pid;
    } catch { /* gone */ }
  }
  return null;
}

const stats = () => page.evaluate(() => ({ ...window.auralis.stats }));

/** Loudest output RMS seen over `ms` (ambient music breathes; one reading could land in a rest). */
async function maxRms(ms) {
  let best = 0;
  const end = Date.now() + ms;
  while (Date.now() < end) {
    best = Math.max(best, await page.evaluate(() => window.auralis.rms()));
    await sleep(100);
  }
  return best;
}

before(async () => {
  assert.ok(SERVER, "AURALIS_URL is not set (run scripts/test-browser.sh)");
  assert.ok(LAUNCHER_PID > 0, "AURALIS_LAUNCHER_PID is not set");
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  await waitForServer(SERVER, 60000);
  const probe = await fetch(`${SERVER}/player.js`);
  if (probe.ok) {
    base = SERVER;
  } else {
    console.log("# streamd does not serve /player.js yet: serving client/ through a local proxy");
    proxy = await startClientProxy(SERVER);
    base = `http://127.0.0.1:${proxy.address().port}`;
  }
  profile = fs.mkdtempSync(path.join(os.tmpdir(), "auralis-chromium-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1000, height: 980 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  page = context.pages()[0] || await context.newPage();
  page.on("console", (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // Pretend the device runs at DEVICE_RATE, as most hardware does (48 kHz), so the stream's 44.1 kHz
  // goes through the worklet's resampler.
  await page.addInitScript((rate) => {
    const Native = window.AudioContext;
    window.AudioContext = class extends Native {
      constructor(options = {}) { super({ ...options, sampleRate: rate }); }
    };
  }, DEVICE_RATE);
  await page.goto(base, { waitUntil: "load" });
});

after(async () => {
  fs.writeFileSync(path.join(ARTIFACTS, "browser-console.log"),
    [...consoleLines, ...pageErrors.map((e) => `[pageerror] ${e}`)].join("\n") + "\n");
  if (context) await context.close();
  if (proxy) proxy.close();
  if (profile) fs.rmSync(profile, { recursive: true, force: true });
});

test("the page loads with its controls and presets", async () => {
  assert.equal(await page.title(), "Auralis");
  const presets = await page.$$eval("#preset option", (os) => os.map((o) => o.value));
  assert.ok(presets.includes("focus"), `presets: ${presets}`);
  for (const id of ["toggle", "station", "preset", "key", "mode", "bpm", "intensity", "volume", "sleep"]) {
    assert.ok(await page.$(`#${id}`), `#${id} exists`);
  }
  const unlabelled = await page.$$eval("select, input", (els) =>
    els.filter((e) => !e.closest("label") && !e.getAttribute("aria-label")).map((e) => e.id));
  assert.deepEqual(unlabelled, [], "every control has a label");
});

test("start plays Opus, decoded by WebCodecs, through the worklet", async () => {
  await page.click("#toggle");
  await page.waitForFunction(() => window.auralis.stats.state === "playing", null, { timeout: 20000 });
  const ctxState = await page.evaluate(() => window.auralis.context.state);
  assert.equal(ctxState, "running");
  const rate = await page.evaluate(() => window.auralis.context.sampleRate);
  assert.equal(rate, DEVICE_RATE);
  await sleep(1500);
  const s = await stats();
  assert.ok(s.worklet.chunks >= 5, `worklet got ${s.worklet.chunks} chunks`);
  assert.ok(s.chunksPosted >= 5 && s.lastSeq !== null, JSON.stringify(s));
  // Chromium decodes Opus with WebCodecs: the player asked for it and the decoder feeds the worklet.
  assert.equal(s.format, "opus", JSON.stringify(s));
  assert.equal(s.lastAck.codec.name, "opus");
  assert.ok(s.opusDecoded >= 5 && s.opusPackets >= 5 * s.opusDecoded, JSON.stringify(s));
  assert.equal(s.decoderErrors, 0, s.lastError);
  assert.equal(s.worklet.sourceRate, 48000);
  const bytesPerChunk = s.bytesReceived / s.chunksReceived;
  assert.ok(bytesPerChunk < 3000, `${bytesPerChunk} bytes per 100 ms chunk is not Opus`);
  const rms = await maxRms(2500);
  assert.ok(rms > 0.003, `output RMS ${rms} is (nearly) silent`);
  assert.match(await page.textContent("#status"), /Playing/);
  assert.match(await page.textContent("#st-format"), /Opus/);
  const after = await stats();
  console.log(`# opus: ${Math.round(bytesPerChunk)} bytes per chunk (${(bytesPerChunk * 80 / 1000).toFixed(1)} ` +
    `kbit/s), ${after.opusDecoded} chunks decoded, underruns ${after.worklet.underruns}, ` +
    `buffer ${Math.round(after.worklet.bufferedMs)} ms`);
  assert.deepEqual(pageErrors, []);
});

test("a streamd crash is survived: the page reconnects and plays on", async () => {
  const pid = streamdPid();
  assert.ok(pid, "found the streamd child of the launcher");
  const before = await stats();
  process.kill(pid, "SIGKILL");
  await page.waitForFunction(() => window.auralis.stats.state !== "playing" ||
    window.auralis.stats.reconnects > 0, null, { timeout: 10000 }).catch(() => {});
  await page.waitForFunction((n) => {
    const s = window.auralis.stats;
    return s.reconnects > 0 && s.state === "playing" && s.chunksPosted > n + 10;
  }, before.chunksPosted, { timeout: 30000 });
  const s = await stats();
  assert.ok(streamdPid() && streamdPid() !== pid, "the launcher restarted streamd");
  assert.ok(s.lastSeq > before.lastSeq, `seq moved on: ${before.lastSeq} -> ${s.lastSeq}`);
  const rms = await maxRms(2000);
  assert.ok(rms > 0.003, `output RMS ${rms} after reconnecting`);
  console.log(`# reconnected after a streamd SIGKILL: ${s.reconnects} reconnect(s), ` +
    `underruns ${s.worklet.underruns}, duplicates dropped ${s.duplicates}, ` +
    `tier ${s.tier} (server ${s.serverTier}), jitter ${s.jitterMs.toFixed(1)} ms`);
});

test("a draining streamd (SIGTERM) is left early and the page plays on", async () => {
  const pid = streamdPid();
  assert.ok(pid, "found the streamd child of the launcher");
  const before = await stats();
  process.kill(pid, "SIGTERM");
  await page.waitForFunction((n) => window.auralis.stats.draining > n, before.draining, { timeout: 5000 });
  // Streaming again from a new connection (the draining one is gone), and playing.
  await page.waitForFunction((b) => {
    const s = window.auralis.stats;
    return window.auralis.connected && s.startAcks > b.startAcks && s.state === "playing" &&
      s.chunksPosted > b.chunksPosted + 30;
  }, before, { timeout: 40000 });
  const s = await stats();
  console.log(`# drained: underruns ${before.worklet.underruns} -> ${s.worklet.underruns}, ` +
    `duplicates dropped ${s.duplicates}, reconnects ${s.reconnects}`);
  assert.ok(s.lastSeq > before.lastSeq);
  assert.ok(await maxRms(1500) > 0.003);
});

test("changing the key is answered in the page", async (t) => {
  const current = await page.inputValue("#key");
  const next = current === "E" ? "F" : "E";
  const before = await stats();
  const stationBefore = await page.evaluate(() => window.auralis.station);
  await page.selectOption("#key", next);
  await page.waitForFunction(() => ["ack", "error"].includes(document.querySelector("#reply").dataset.kind),
    null, { timeout: 10000 }).catch(async (e) => {
    const dump = await page.evaluate(() => ({ reply: document.querySelector("#reply").textContent,
      station: window.auralis.station, stats: window.auralis.stats }));
    throw new Error(`no answer to set: ${JSON.stringify(dump)}`, { cause: e });
  });
  const kind = await page.$eval("#reply", (e) => e.dataset.kind);
  const text = await page.textContent("#reply");
  const s = await stats();
  assert.equal(kind, "ack", `reply: ${text}`);
  assert.match(text, new RegExp(`Applied: key ${next}`));
  assert.equal(s.lastAck.action, "set");
  assert.equal(await page.inputValue("#key"), next);
  if (s.lastAck.params) assert.equal(s.lastAck.params.key, next);
  // The new key may live on another station: the page moves there and plays it.
  if (s.lastAck.station && s.lastAck.station !== stationBefore) {
    await page.waitForFunction((n) => window.auralis.stats.streams > n, before.streams, { timeout: 5000 });
  }
  await page.waitForFunction(() => window.auralis.stats.state === "playing", null, { timeout: 20000 });
  const rms = await maxRms(2000);
  assert.ok(rms > 0.003, `output RMS ${rms} in ${next}`);
  console.log(`# key ${next}: station ${stationBefore} -> ${await page.evaluate(() => window.auralis.station)}` +
    ` (ack state ${s.lastAck.state ?? "-"})`);
});

test("screenshot of the playing page", async () => {
  await page.waitForFunction(() => window.auralis.stats.state === "playing", null, { timeout: 15000 });
  await sleep(800); // let the visualizer settle
  const file = path.join(ARTIFACTS, "player.png");
  await page.screenshot({ path: file, fullPage: true });
  assert.ok(fs.statSync(file).size > 10000);
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(500);
  await page.screenshot({ path: path.join(ARTIFACTS, "player-mobile.png"), fullPage: true });
  await page.setViewportSize({ width: 1000, height: 980 });
  assert.deepEqual(pageErrors, []);
});

test("JSON audio at a 44.1 kHz device rate plays, and the sleep timer fades out and stops", async () => {
  const p2 = await context.newPage();
  const errors = [];
  p2.on("pageerror", (e) => errors.push(String(e)));
  await p2.addInitScript(() => {
    const Native = window.AudioContext;
    window.AudioContext = class extends Native {
      constructor(options = {}) { super({ ...options, sampleRate: 44100 }); }
    };
  });
  try {
    await p2.goto(`${base}/?format=json`, { waitUntil: "load" });
    await p2.click("#toggle");
    await p2.waitForFunction(() => window.auralis.stats.state === "playing", null, { timeout: 20000 });
    const s = await p2.evaluate(() => ({ ...window.auralis.stats, rate: window.auralis.context.sampleRate }));
    assert.equal(s.format, "json");
    assert.equal(s.rate, 44100);
    let rms = 0;
    for (let i = 0; i < 20; i++) {
      rms = Math.max(rms, await p2.evaluate(() => window.auralis.rms()));
      await sleep(100);
    }
    assert.ok(rms > 0.003, `output RMS ${rms}`);
    await p2.evaluate(() => window.auralis.setSleepTimer(2));
    await sleep(1500);
    const fading = await p2.evaluate(() => window.auralis.rms());
    await p2.waitForFunction(() => window.auralis.stats.state === "idle", null, { timeout: 5000 });
    assert.match(await p2.textContent("#toggle-label"), /Start/);
    assert.ok(fading < rms, `fading out: ${fading} < ${rms}`);
    assert.deepEqual(errors, []);
  } finally {
    await p2.close();
  }
});

/** Reads the first `min` bytes of an endless stream in the page, then lets it go. */
async function fetchHead(p, url, min) {
  return p.evaluate(async ({ url, min }) => {
    const r = await fetch(url);
    const reader = r.body.getReader();
    const parts = [];
    let n = 0;
    while (n < min) {
      const { value, done } = await reader.read();
      if (done) break;
      parts.push(...value);
      n += value.length;
    }
    await reader.cancel();
    return { status: r.status, type: r.headers.get("content-type"), bytes: parts.slice(0, min) };
  }, { url, min });
}

test("without WebCodecs the player streams pcm16; the plain stream is the station's", async () => {
  const p3 = await context.newPage();
  const errors = [];
  p3.on("pageerror", (e) => errors.push(String(e)));
  await p3.addInitScript(() => {
    delete window.AudioDecoder;
    delete window.EncodedAudioChunk;
  });
  try {
    await p3.goto(base, { waitUntil: "load" });
    await p3.click("#toggle");
    await p3.waitForFunction(() => window.auralis.stats.state === "playing", null, { timeout: 20000 });
    const s = await p3.evaluate(() => ({ ...window.auralis.stats }));
    assert.equal(s.format, "pcm16");
    assert.equal(s.opusPackets, 0);
    let rms = 0;
    for (let i = 0; i < 20; i++) {
      rms = Math.max(rms, await p3.evaluate(() => window.auralis.rms()));
      await sleep(100);
    }
    assert.ok(rms > 0.003, `output RMS ${rms}`);

    // The plain stream follows the station played, and serves audio.
    const stationName = await p3.evaluate(() => window.auralis.station);
    const mp3 = await p3.$eval("#plain-mp3", (a) => a.getAttribute("href"));
    const opus = await p3.$eval("#plain-opus", (a) => a.getAttribute("href"));
    const src = await p3.$eval("#plain-audio", (a) => a.getAttribute("src"));
    assert.equal(mp3, `/stream/${stationName}.mp3`);
    assert.equal(opus, `/stream/${stationName}.opus`);
    assert.equal(src, mp3);
    assert.ok(await p3.isVisible("#plain-audio"));
    const head = await fetchHead(p3, mp3, 4096);
    assert.equal(head.status, 200);
    assert.equal(head.type, "audio/mpeg");
    // MPEG audio frame sync (11 bits set) somewhere in the first frames.
    const b = head.bytes;
    assert.ok(b.some((x, i) => x === 0xff && (b[i + 1] & 0xe0) === 0xe0), "no MP3 frame sync");
    const ogg = await fetchHead(p3, opus, 64);
    assert.equal(ogg.type, "audio/ogg");
    assert.equal(String.fromCharCode(...ogg.bytes.slice(0, 4)), "OggS");
    assert.deepEqual(errors, []);
  } finally {
    await p3.close();
  }
});

test("an Opus decoder error mid-stream falls back to pcm16, with a note, and plays on", async () => {
  const p4 = await context.newPage();
  const errors = [];
  p4.on("pageerror", (e) => errors.push(String(e)));
  // A decoder that fails on its 40th packet (the eighth chunk), as a real one does: it closes and
  // calls its error callback.
  await p4.addInitScript(() => {
    const Native = window.AudioDecoder;
    window.AudioDecoder = class extends Native {
      constructor(init) {
        super(init);
        this.failOn = 40;
        this.onError = init.error;
      }
      decode(chunk) {
        if (--this.failOn === 0) {
          this.close();
          queueMicrotask(() => this.onError(new DOMException("injected failure", "EncodingError")));
          return;
        }
        super.decode(chunk);
      }
    };
  });
  try {
    await p4.goto(base, { waitUntil: "load" });
    await p4.click("#toggle");
    await p4.waitForFunction(() => window.auralis.stats.fallbacks > 0, null, { timeout: 20000 });
    await p4.waitForFunction(() => {
      const s = window.auralis.stats;
      return s.format === "pcm16" && s.state === "playing" && s.worklet && s.worklet.sourceRate === 44100;
    }, null, { timeout: 20000 });
    const s = await p4.evaluate(() => ({ ...window.auralis.stats }));
    assert.equal(s.fallbacks, 1);
    assert.ok(s.opusDecoded >= 1, "Opus played before the failure");
    assert.equal(await p4.evaluate(() => window.auralis.format), "pcm16");
    assert.ok(await p4.isVisible("#format-note"));
    assert.match(await p4.textContent("#format-note"), /Opus decoding failed.*injected failure.*PCM/);
    const posted = s.chunksPosted;
    let rms = 0;
    for (let i = 0; i < 20; i++) {
      rms = Math.max(rms, await p4.evaluate(() => window.auralis.rms()));
      await sleep(100);
    }
    assert.ok(rms > 0.003, `output RMS ${rms} after the fallback`);
    const later = await p4.evaluate(() => ({ ...window.auralis.stats }));
    assert.ok(later.chunksPosted > posted + 10, "PCM keeps coming");
    assert.deepEqual(errors, []);
  } finally {
    await p4.close();
  }
});

test("without AudioWorklet, or on iOS, the page puts the plain stream first and says why", async () => {
  const cases = [
    [() => { delete window.AudioWorkletNode; }, /AudioWorklet/],
    [() => {
      Object.defineProperty(Navigator.prototype, "userAgent", {
        get: () => "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15",
      });
    }, /screen locks/],
  ];
  for (const [init, why] of cases) {
    const p = await context.newPage();
    const errors = [];
    p.on("pageerror", (e) => errors.push(String(e)));
    try {
      await p.addInitScript(init);
      await p.goto(base, { waitUntil: "load" });
      assert.equal(await p.$eval("#plain", (e) => e.dataset.suggested), "true");
      assert.match(await p.textContent("#plain-hint"), why);
      // Right under the player, before the controls.
      const order = await p.$$eval("main > section", (ss) => ss.map((e) => e.id || e.className));
      assert.equal(order[1], "plain", JSON.stringify(order));
      assert.ok(await p.isVisible("#plain-audio"));
      assert.deepEqual(errors, []);
    } finally {
      await p.close();
    }
  }
});
