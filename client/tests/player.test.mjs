// Browser test of the Auralis player against a running `auralis up` (scripts/test-browser.sh starts
// it and sets AURALIS_URL and AURALIS_LAUNCHER_PID). Debian's chromium, headless, via playwright-core.
//
// The tests run in order on one page: start and play, survive a streamd crash, change the key,
// screenshot. Run with `node --test player.test.mjs`.

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

test("start plays audio through the worklet", async () => {
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
  assert.equal(s.format, "pcm16");
  const rms = await maxRms(2500);
  assert.ok(rms > 0.003, `output RMS ${rms} is (nearly) silent`);
  assert.match(await page.textContent("#status"), /Playing/);
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
