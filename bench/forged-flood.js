#!/usr/bin/env node
"use strict";
/*
 * Forged-token flood (issue 15): delivery latency to live subscribers while
 * anyone floods GET /events with forged subscribe tokens, against quiet.
 *
 *   npm run bench:forged              # 4 phases of 10 s, ~45 s
 *   npm run bench:forged -- --quick   # 4 phases of 3 s
 *   npm run bench:forged -- --token-chars 4300   # tokens over the cap, refused unread (comparison)
 * Other flags: --subscribers N (200), --rate R (1000/s), --interval MS (20),
 * --phase-seconds S (10).
 *
 * The standalone server (dist/cli.js, built first if missing) runs on core 0
 * (`taskset -c 0` when available). This process, on core 1, holds
 * --subscribers live subscribers on one topic and publishes one event every
 * --interval ms through POST /submit; each event's data is its send time
 * (performance.now()), each subscriber records receive - send. A child
 * process, also on core 1, sends --rate forged subscribe tokens per second
 * (each a genuine token of the maximum subscribe length, 4096 characters,
 * with one character changed, so only the full base62 decode and the AEAD
 * tag check can reject it: the expensive path), on keep-alive connections.
 * Phases alternate quiet, flood, quiet, flood, so drift in the machine's load
 * hits both sides; the report gives p50/p99 of each side and the ratio of
 * the p99s (goal <= 1.2x).
 * Every forged token must be refused: 401 (verified and failed), or 503
 * `over_capacity` once failed long tokens are over their CPU budget and long
 * tokens are shed unread (src/tokens/index.ts, InvalidTokenBudget); the report
 * gives both counts. Never a 200.
 */
const { fork, spawn, spawnSync } = require("node:child_process");
const http = require("node:http");
const path = require("node:path");
const fs = require("node:fs");
const os = require("node:os");
const crypto = require("node:crypto");

const ROOT = path.resolve(__dirname, "..");
const args = process.argv.slice(2);
const QUICK = args.includes("--quick");
function num(flag, fallback) {
  const i = args.indexOf(flag);
  return i === -1 ? fallback : Number(args[i + 1]);
}

// ------------------------------------------------------------ flood child

if (args[0] === "--flood-child") {
  const [, base, rate, tokensFile] = args;
  const tokens = JSON.parse(fs.readFileSync(tokensFile, "utf8"));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 32 });
  const counts = {};
  let sent = 0;
  let done = 0;
  const perTick = Number(rate) / 100; // every 10 ms
  let owed = 0;
  const tick = setInterval(() => {
    owed += perTick;
    for (; owed >= 1; owed--) {
      const token = tokens[sent++ % tokens.length];
      const req = http.get(`${base}/events?token=${token}`, { agent }, (res) => {
        counts[res.statusCode] = (counts[res.statusCode] ?? 0) + 1;
        res.resume();
        res.on("end", () => done++);
      });
      req.on("error", (err) => {
        counts[err.code] = (counts[err.code] ?? 0) + 1;
        done++;
      });
    }
  }, 10);
  process.on("message", (msg) => {
    if (msg === "stop") {
      clearInterval(tick);
      const wait = setInterval(() => {
        if (done >= sent) {
          clearInterval(wait);
          process.send({ sent, counts }, () => process.exit(0));
        }
      }, 20);
    }
  });
  process.send("ready");
  return;
}

// ------------------------------------------------------------ orchestrator

const SUBSCRIBERS = num("--subscribers", 200);
const RATE = num("--rate", 1000);
const INTERVAL = num("--interval", 20);
const PHASE_MS = num("--phase-seconds", QUICK ? 3 : 10) * 1000;
const GOAL = 1.2;
/** Forged token length; defaults to the subscribe cap. Above the cap they are refused unread (for comparison). */
const TOKEN_CHARS = num("--token-chars", 0);

function hasTaskset() {
  return spawnSync("taskset", ["-c", "0", "true"]).status === 0 && os.cpus().length >= 2;
}
const PIN = hasTaskset();
if (PIN) {
  // Keep this process (subscribers, publisher) and the flood client off the server's core.
  spawnSync("taskset", ["-pc", "1", String(process.pid)], { stdio: "ignore" });
}

function log(...a) {
  console.error("[forged-flood]", ...a);
}

function percentile(sorted, p) {
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function startServer(secret) {
  if (!fs.existsSync(path.join(ROOT, "dist/cli.js"))) {
    log("building dist/ (npm run build)");
    if (spawnSync("npm", ["run", "build"], { cwd: ROOT, stdio: "inherit" }).status !== 0) throw new Error("build failed");
  }
  const argv = [path.join(ROOT, "dist/cli.js")];
  const cmd = PIN ? "taskset" : process.execPath;
  const cmdArgs = PIN ? ["-c", "0", process.execPath, ...argv] : argv;
  const child = spawn(cmd, cmdArgs, {
    env: { ...process.env, SSE_SECRET: secret, PORT: "0", HOST: "127.0.0.1" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const url = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/\S+?) \(/.exec(out);
      if (m) resolve(m[1]);
    });
    child.once("exit", (code) => reject(new Error(`server exited (${code}) before listening: ${out}`)));
  });
  return { child, url };
}

/** A live subscriber recording the latency of every event it receives. */
function subscribe(url, samples, state) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`subscribe: ${res.statusCode}`));
      res.setEncoding("utf8");
      let buf = "";
      let opened = false;
      res.on("data", (chunk) => {
        const now = performance.now();
        buf += chunk;
        if (!opened && buf.startsWith(":\n\n")) {
          opened = true;
          resolve(req);
        }
        let end;
        while ((end = buf.indexOf("\n\n")) !== -1) {
          const frame = buf.slice(0, end);
          buf = buf.slice(end + 2);
          const m = /^data:(\d+(?:\.\d+)?)$/m.exec(frame);
          if (m && state.recording) samples.push(now - Number(m[1]));
          if (m) state.received++;
        }
      });
    });
    req.on("error", reject);
  });
}

async function main() {
  const secret = crypto.randomBytes(32).toString("hex");
  const { subscribeToken, submitToken, DEFAULTS } = require(path.join(ROOT, "dist/index.js"));
  const cap = DEFAULTS.maxSubscribeTokenLength;
  const chars = TOKEN_CHARS || cap;
  const { child: server, url } = await startServer(secret);
  log(`server ${url}${PIN ? " on core 0, clients on core 1" : " (not pinned: taskset or a second core missing)"}`);

  // Forged tokens: a genuine token of the cap's length, one character changed.
  const key = Buffer.from(secret, "hex");
  let topics = 1;
  const topicList = (n) => Array.from({ length: n }, (_, i) => String(i).padStart(20, "t"));
  while (subscribeToken(key, topicList(topics + 1)).length <= chars) topics++;
  const genuine = subscribeToken(key, topicList(topics));
  const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  const forged = Array.from({ length: 500 }, (_, i) => {
    const at = 60 + ((i * 131) % (genuine.length - 120));
    const c = alphabet[(alphabet.indexOf(genuine[at]) + 1 + (i % 61)) % 62];
    return genuine.slice(0, at) + c + genuine.slice(at + 1);
  });
  const tokensFile = path.join(os.tmpdir(), `forged-flood-${process.pid}.json`);
  fs.writeFileSync(tokensFile, JSON.stringify(forged));

  const samples = { quiet: [], flood: [] };
  const state = { recording: false, received: 0 };
  const subs = [];
  const current = [];
  const sub = `${url}/events?token=${subscribeToken(key, ["live"])}`;
  for (let i = 0; i < SUBSCRIBERS; i++) subs.push(await subscribe(sub, current, state));
  log(`${SUBSCRIBERS} subscribers connected; forged tokens are ${genuine.length} characters (cap ${cap})`);

  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  let published = 0;
  let publishErrors = 0;
  const publish = () =>
    new Promise((resolve) => {
      const body = submitToken(key, [{ topic: "live", event: "t", data: performance.now().toFixed(3) }]);
      const req = http.request(`${url}/submit`, { method: "POST", agent, headers: { "Content-Length": body.length } }, (res) => {
        if (res.statusCode !== 200) publishErrors++;
        res.resume();
        res.on("end", resolve);
      });
      req.on("error", () => {
        publishErrors++;
        resolve();
      });
      req.end(body);
    });

  async function phase(kind) {
    let flood;
    if (kind === "flood") {
      flood = fork(__filename, ["--flood-child", url, String(RATE), tokensFile], { stdio: "inherit" });
      await new Promise((resolve) => flood.once("message", resolve));
    }
    current.length = 0;
    state.recording = true;
    const until = performance.now() + PHASE_MS;
    let next = performance.now();
    while (performance.now() < until) {
      await publish();
      published++;
      next += INTERVAL;
      const wait = next - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    // Let the last event reach everyone before the phase's samples close.
    const want = published * SUBSCRIBERS;
    const deadline = performance.now() + 5000;
    while (state.received < want && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    state.recording = false;
    samples[kind].push(...current);
    let floodResult;
    if (flood) {
      flood.send("stop");
      floodResult = await new Promise((resolve) => flood.once("message", resolve));
    }
    log(`${kind}: ${current.length} samples${floodResult ? `, forged requests ${floodResult.sent} (${JSON.stringify(floodResult.counts)})` : ""}`);
    return floodResult;
  }

  const floods = [];
  for (const kind of ["quiet", "flood", "quiet", "flood"]) {
    const r = await phase(kind);
    if (r) floods.push(r);
  }
  for (const s of subs) s.destroy();
  server.kill("SIGTERM");
  fs.rmSync(tokensFile, { force: true });

  const quiet = samples.quiet.sort((a, b) => a - b);
  const flood = samples.flood.sort((a, b) => a - b);
  const sent = floods.reduce((n, f) => n + f.sent, 0);
  const verified = floods.reduce((n, f) => n + (f.counts["401"] ?? 0), 0);
  const shedUnread = floods.reduce((n, f) => n + (f.counts["503"] ?? 0), 0);
  const rejected = verified + shedUnread;
  const ratio = percentile(flood, 99) / percentile(quiet, 99);
  const ms = (v) => `${v.toFixed(2)} ms`;
  const lines = [
    `Forged-token flood: delivery latency to ${SUBSCRIBERS} live subscribers, one event every ${INTERVAL} ms`,
    `- node ${process.version}, ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}, ${new Date().toISOString().slice(0, 16)}Z`,
    `- flood: ${RATE} forged subscribe tokens/s of ${genuine.length} characters (maxSubscribeTokenLength ${cap}${genuine.length > cap ? ": refused unread" : ""}), ` +
      `${sent} sent (${(sent / ((2 * PHASE_MS) / 1000)).toFixed(0)}/s achieved), ${verified} answered 401 (verified, failed), ${shedUnread} answered 503 (shed unread: failed-token CPU budget spent)`,
    `- ${published} events published (${publishErrors} errors), ${quiet.length + flood.length} latency samples`,
    "",
    "| phase | samples | p50 | p99 | max |",
    "|---|---:|---:|---:|---:|",
    `| quiet | ${quiet.length} | ${ms(percentile(quiet, 50))} | ${ms(percentile(quiet, 99))} | ${ms(quiet[quiet.length - 1])} |`,
    `| flood | ${flood.length} | ${ms(percentile(flood, 50))} | ${ms(percentile(flood, 99))} | ${ms(flood[flood.length - 1])} |`,
    "",
    `p99 flood / quiet: ${ratio.toFixed(2)}x`,
    `${ratio <= GOAL && rejected === sent ? "PASS" : "FAIL"}  p99 under a flood of ${RATE} forged tokens/s within ${GOAL}x of quiet (${ratio.toFixed(2)}x), every forged token refused (${rejected}/${sent}: 401 or 503)`,
  ];
  console.log(lines.join("\n"));
  if (!(ratio <= GOAL && rejected === sent)) process.exitCode = 1;
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
