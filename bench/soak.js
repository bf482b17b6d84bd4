#!/usr/bin/env node
/**
 * Chaos soak (issue 15): standalone instances (`node dist/cli.js`) on a real
 * Redis master + replica watched by Redis Sentinel, numbered events published
 * at a steady rate by several publishers, subscribers that reconnect with
 * Last-Event-ID (raw `node:http` readers and the `eventsource` package), and
 * all the while, in rotation:
 *
 *   kill-instance   SIGKILL an instance, start it again
 *   kill-redis      SIGKILL the Redis master, start it again at once (before
 *                   Sentinel acts). Node "aof" runs with `appendonly yes
 *                   appendfsync always`, node "mem" with persistence off, so
 *                   both kinds of restart happen as the master role moves.
 *   pause-redis     SIGSTOP the master past the broker's 5 s command timeout, SIGCONT
 *   cut-clients     cut subscriber connections in the middle of a frame (the
 *                   proxy in front of the instances forwards half a chunk, then closes)
 *   failover        SENTINEL FAILOVER (the replica becomes master)
 *   kill-failover   SIGKILL the master and leave it down until Sentinel
 *                   promotes the replica, then start it again (it rejoins as replica)
 *
 * Then it stops the faults and the publishers, publishes one final marker per
 * publisher, and checks every subscriber: each acknowledged event (HTTP 200)
 * exactly once and in order, or an `sse:reset` received before the gap it
 * covers. Prints counts (acknowledged, delivered, duplicated, reordered,
 * reset-covered, lost), RSS / V8 heap / open-fd samples and slopes of the
 * instance that is never killed, and exits 1 if anything was lost,
 * duplicated or reordered.
 *
 *   npm run build && npm run bench:soak -- --duration 600
 *   node bench/soak.js --duration 60 --json out.json   # what the CI test runs
 *
 * Flags: --duration <s> (600), --instances <n> (2; instance 0 is never
 * killed, it is the memory witness), --subscribers <n> (8, half raw, half
 * eventsource), --publishers <n> (3), --rate <events/s in all> (60),
 * --fault-gap <s> (6, mean pause between faults), --seed <n>, --json <file>,
 * --no-sentinel (one plain Redis, persistence off; no failover faults),
 * --min-replicas (Redis nodes run with min-replicas-to-write 1,
 * min-replicas-max-lag 1: see docs/DEPLOY.md, Soak).
 * Everything listens on 127.0.0.1; every loop is bounded by the deadline.
 */
"use strict";
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { freePort } = require("./lib/ports");
const { parseArgs } = require("node:util");

const ROOT = path.join(__dirname, "..");
const CLI = path.join(ROOT, "dist", "cli.js");
const { submitToken, subscribeToken } = require(path.join(ROOT, "dist", "index.js"));
const Redis = require("ioredis");
const { EventSource } = require("eventsource");

const { values: flags } = parseArgs({
  options: {
    duration: { type: "string", default: "600" },
    instances: { type: "string", default: "2" },
    subscribers: { type: "string", default: "8" },
    publishers: { type: "string", default: "3" },
    rate: { type: "string", default: "60" },
    "fault-gap": { type: "string", default: "6" },
    seed: { type: "string" },
    json: { type: "string" },
    "no-sentinel": { type: "boolean", default: false },
    "min-replicas": { type: "boolean", default: false },
  },
  strict: true,
});
const DURATION = Number(flags.duration) * 1000;
const INSTANCES = Math.max(2, Number(flags.instances));
const SUBSCRIBERS = Math.max(2, Number(flags.subscribers));
const PUBLISHERS = Math.max(1, Number(flags.publishers));
const RATE = Number(flags.rate);
const FAULT_GAP = Number(flags["fault-gap"]) * 1000;
const SENTINEL = !flags["no-sentinel"];
const SECRET = "5b1c0e7f3a9d2e4c6b8a0f1e3d5c7b9a2f4e6d8c0b1a3f5e7d9c2b4a6f8e0d1c";
const TOPIC = "soak";
const MASTER = "soakmaster";
/** The broker's command timeout (RedisBrokerOptions.publishTimeout default): a pause must outlast it. */
const COMMAND_TIMEOUT = 5000;
const SENTINEL_DOWN_AFTER = 10_000;

// Small seeded PRNG (mulberry32) so a run's schedule can be repeated with --seed.
let seed = flags.seed === undefined ? (Date.now() ^ process.pid) >>> 0 : Number(flags.seed) >>> 0;
const SEED = seed;
function random() {
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (list) => list[Math.floor(random() * list.length)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const started = Date.now();
const elapsed = () => ((Date.now() - started) / 1000).toFixed(1);
const log = (...args) => console.error(`[soak ${elapsed()}s]`, ...args);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "sse-soak-"));

/** Every child process, SIGKILLed on exit whatever happens. */
const children = new Set();
function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}
function killAll() {
  for (const c of children) {
    try {
      c.kill("SIGCONT");
      c.kill("SIGKILL");
    } catch {
      // gone
    }
  }
}
process.once("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"]) process.once(sig, () => process.exit(130));

async function waitFor(check, timeout, what) {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Spawns and resolves once `ready` matches its output (rejects if it exits first or after 15 s). */
function spawnUntil(cmd, args, env, ready) {
  const proc = track(spawn(cmd, args, { env: { PATH: process.env.PATH, ...env }, stdio: ["ignore", "pipe", "pipe"] }));
  let output = "";
  const lines = [];
  const onData = (chunk) => {
    output += chunk.toString();
    if (output.length > 20_000) output = output.slice(-10_000);
    // (Diagnostic-report notices from the heap sampler are noise here.)
    for (const line of chunk.toString().split("\n")) if (line.trim() && !/Node\.js report/.test(line)) lines.push(line.trim());
    if (lines.length > 200) lines.splice(0, lines.length - 200);
  };
  proc.stdout.on("data", onData);
  proc.stderr.on("data", onData);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`${cmd} did not start in 15 s:\n${output}`));
    }, 15_000);
    const check = () => {
      const m = ready.exec(output);
      if (m) {
        clearTimeout(timer);
        proc.stdout.off("data", check);
        proc.stderr.off("data", check);
        resolve({ proc, match: m, lines });
      }
    };
    proc.stdout.on("data", check);
    proc.stderr.on("data", check);
    proc.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${cmd} exited (${code ?? signal}) before it was ready:\n${output}`));
    });
  });
}

const alive = (proc) => proc !== undefined && proc.exitCode === null && proc.signalCode === null;
async function kill(proc, signal = "SIGKILL") {
  if (!alive(proc)) return;
  const exited = new Promise((r) => proc.once("exit", r));
  proc.kill("SIGCONT");
  proc.kill(signal);
  await exited;
}

// ---------------------------------------------------------------- Redis + Sentinel

/** A redis-server on a fixed port and directory; `aof` chooses appendfsync-always AOF or no persistence. */
class RedisNode {
  constructor(name, port, aof) {
    this.name = name;
    this.port = port;
    this.aof = aof;
    this.dir = path.join(tmp, name);
    fs.mkdirSync(this.dir);
    this.proc = undefined;
    this.restarts = 0;
  }
  async start(replicaOf) {
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--dir", this.dir, "--save", ""];
    args.push(...(this.aof ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]));
    if (replicaOf !== undefined) args.push("--replicaof", "127.0.0.1", String(replicaOf));
    // A master without a live replica refuses writes: an old master Sentinel has not demoted yet cannot acknowledge events the new one will never have.
    if (flags["min-replicas"]) args.push("--min-replicas-to-write", "1", "--min-replicas-max-lag", "1");
    ({ proc: this.proc } = await spawnUntil("redis-server", args, {}, /Ready to accept connections/));
    this.proc.stdout.resume();
    this.proc.stderr.resume();
  }
  async kill() {
    await kill(this.proc);
    this.proc = undefined;
  }
}

/** `role`, replication offset and stream length of one Redis node, for diagnostics. */
async function redisInfo(port) {
  const c = new Redis({ host: "127.0.0.1", port, lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 1000, retryStrategy: () => null });
  c.on("error", () => undefined);
  try {
    await c.connect();
    const info = await c.info("replication");
    const role = /role:(\w+)/.exec(info)?.[1];
    const len = await c.xlen("sse-server:events").catch(() => "?");
    const epoch = await c.get("sse-server:events:epoch").catch(() => "?");
    return `${port} ${role} xlen ${len} epoch ${epoch}`;
  } catch (err) {
    return `${port} down (${err.message})`;
  } finally {
    c.disconnect();
  }
}

class Sentinel {
  constructor(port) {
    this.port = port;
    this.conf = path.join(tmp, "sentinel.conf");
  }
  async start(masterPort) {
    // Sentinel rewrites its config file, so it gets its own writable copy.
    fs.writeFileSync(
      this.conf,
      [
        `port ${this.port}`,
        "bind 127.0.0.1",
        `dir ${tmp}`,
        `sentinel monitor ${MASTER} 127.0.0.1 ${masterPort} 1`,
        `sentinel down-after-milliseconds ${MASTER} ${SENTINEL_DOWN_AFTER}`,
        `sentinel failover-timeout ${MASTER} 20000`,
        `sentinel parallel-syncs ${MASTER} 1`,
        "",
      ].join("\n"),
    );
    ({ proc: this.proc } = await spawnUntil("redis-sentinel", [this.conf], {}, /Sentinel ID is/));
    this.proc.stdout.resume();
    this.proc.stderr.resume();
    this.client = new Redis({ host: "127.0.0.1", port: this.port, lazyConnect: false, maxRetriesPerRequest: 1 });
    this.client.on("error", () => undefined);
  }
  async masterPort() {
    const reply = await this.client.call("SENTINEL", "get-master-addr-by-name", MASTER);
    return Number(reply[1]);
  }
}

// ---------------------------------------------------------------- instances and the proxy in front of them

class Instance {
  constructor(index, redisUrl) {
    this.index = index;
    this.redisUrl = redisUrl;
    this.proc = undefined;
    this.port = 0;
    this.restarts = 0;
    this.lines = [];
    this.reportDir = path.join(tmp, `reports-${index}`);
    fs.mkdirSync(this.reportDir);
  }
  async start() {
    // --report-on-signal: SIGUSR2 writes a diagnostic report with V8 heap figures, read by the sampler (no code in the server for it).
    const args = ["--report-on-signal", "--report-signal=SIGUSR2", `--report-directory=${this.reportDir}`, CLI];
    const env = { SSE_SECRET: SECRET, HOST: "127.0.0.1", PORT: "0", REDIS_URL: this.redisUrl, SSE_HEALTH: "1" };
    const { proc, match, lines } = await spawnUntil(process.execPath, args, env, /listening on http:\/\/127\.0\.0\.1:(\d+)/);
    this.proc = proc;
    this.port = Number(match[1]);
    this.lines = lines;
    proc.once("exit", (code, signal) => {
      if (!this.killing) log(`instance ${this.index} exited on its own (${code ?? signal}):\n  ${lines.slice(-10).join("\n  ")}`);
      if (!this.killing) result.crashes++;
    });
  }
  get up() {
    return alive(this.proc);
  }
  async kill() {
    this.killing = true;
    await kill(this.proc);
    this.killing = false;
  }
}

/**
 * A TCP proxy (the "load balancer"): each client connection goes to a random
 * running instance. `cut(n)` picks n open connections and, on the next chunk
 * from the server, forwards only its first half and closes both sides: a
 * connection cut in the middle of a frame.
 */
class Proxy {
  constructor(instances) {
    this.instances = instances;
    this.pairs = new Set();
    this.server = net.createServer((client) => this.accept(client));
  }
  listen() {
    return new Promise((resolve) => this.server.listen(0, "127.0.0.1", () => resolve(this.server.address().port)));
  }
  accept(client) {
    client.on("error", () => undefined);
    const up = this.instances.filter((i) => i.up);
    if (up.length === 0) return client.destroy();
    const upstream = net.connect(pick(up).port, "127.0.0.1");
    const pair = { client, upstream, cutNext: false };
    this.pairs.add(pair);
    upstream.on("error", () => client.destroy());
    client.on("close", () => {
      this.pairs.delete(pair);
      upstream.destroy();
    });
    upstream.on("close", () => {
      this.pairs.delete(pair);
      client.destroy();
    });
    upstream.on("data", (chunk) => {
      if (pair.cutNext && chunk.length > 1) {
        client.end(chunk.subarray(0, chunk.length >> 1), () => client.destroy());
        upstream.destroy();
        result.cutsMidFrame++;
        return;
      }
      if (!client.write(chunk)) upstream.pause();
    });
    client.on("drain", () => upstream.resume());
    client.on("data", (chunk) => upstream.write(chunk));
  }
  cut(n) {
    const open = [...this.pairs].filter((p) => !p.cutNext);
    for (let i = 0; i < n && open.length > 0; i++) open.splice(Math.floor(random() * open.length), 1)[0].cutNext = true;
  }
}

// ---------------------------------------------------------------- bookkeeping

/** The fault most recently started (anomalies are attributed to it, to point at the cause). */
let lastFault = "none";
const anomalyLines = new Map();
/** Logs the first few anomalies of each kind and counts them all per kind and preceding fault. */
function anomaly(kind, text, n, fault) {
  const key = `${kind} after ${fault.replace(/@.*/, "")}`;
  result.anomaliesByFault[key] = (result.anomaliesByFault[key] ?? 0) + n;
  const shown = anomalyLines.get(kind) ?? 0;
  anomalyLines.set(kind, shown + 1);
  if (shown < 10) log(`${kind} ${text} (after ${fault})`);
  else if (shown === 10) log(`${kind}: more of these are counted, not shown`);
}

const result = {
  seed: SEED,
  durationS: DURATION / 1000,
  instances: INSTANCES,
  subscribers: SUBSCRIBERS,
  publishers: PUBLISHERS,
  rate: RATE,
  sentinel: SENTINEL,
  acknowledged: 0,
  unacknowledged: 0,
  submitStatuses: {},
  delivered: 0,
  duplicated: 0,
  reordered: 0,
  resets: 0,
  resetCovered: 0,
  lost: 0,
  lostDetail: [],
  unackedDelivered: 0,
  connects: 0,
  cutsMidFrame: 0,
  crashes: 0,
  faults: {},
  faultErrors: [],
  anomaliesByFault: {},
  stuck: [],
  recoveryMsMax: 0,
  memory: {},
};

/** acked[p] = Set of sequence numbers of publisher p that got a 200. */
const acked = Array.from({ length: PUBLISHERS }, () => new Set());
/** Which instance (and process) acknowledged each event: lost stretches name it. */
const ackedBy = new Map();
/** Numbers each publisher used (200 or not); the last one is the end marker. */
const nextSeq = new Array(PUBLISHERS).fill(0);

/**
 * Per subscriber and publisher: every number received, in arrival order, with
 * how many sse:reset had arrived before it and the fault running then. Judged
 * at the end, when it is known which submits got their 200 (an event often
 * reaches subscribers before its publisher has read the answer). Unacknowledged
 * events (503, timeout: maybe stored, maybe not) may appear anywhere, once.
 */
class Ledger {
  constructor(name) {
    this.name = name;
    this.arrivals = Array.from({ length: PUBLISHERS }, () => []);
    this.resets = 0;
    this.lastId = undefined;
  }
  onEvent(event, data, id) {
    if (id) this.lastId = id;
    if (event === "sse:reset") {
      result.resets++;
      this.resets++;
      return;
    }
    if (event !== "n") return;
    const [p, n] = data.split(":").map(Number);
    this.arrivals[p].push({ n, resets: this.resets, fault: lastFault, id });
  }
  /** Has it received publisher p's end marker? */
  done(p) {
    return this.arrivals[p].some((a) => a.n === finalSeq[p]);
  }
  judge() {
    for (let p = 0; p < PUBLISHERS; p++) {
      const seen = new Set();
      let last; // the last acknowledged arrival
      for (const a of this.arrivals[p]) {
        if (seen.has(a.n)) {
          result.duplicated++;
          anomaly("DUPLICATE", `${this.name}: ${p}:${a.n} (id ${a.id})`, 1, a.fault);
          continue;
        }
        seen.add(a.n);
        if (!acked[p].has(a.n)) {
          result.unackedDelivered++;
          continue;
        }
        result.delivered++;
        if (last !== undefined && a.n < last.n) {
          result.reordered++;
          anomaly("REORDERED", `${this.name}: ${p}:${a.n} after ${p}:${last.n} (id ${a.id})`, 1, a.fault);
          continue;
        }
        this.gap(p, last, a);
        last = a;
      }
      // Past the last arrival (the end marker when it came): everything acknowledged is missing.
      this.gap(p, last, { n: nextSeq[p], resets: this.resets, fault: "the end" });
    }
  }
  /** Acknowledged numbers between two arrivals that never arrived: covered by a reset in between, or lost. */
  gap(p, from, to) {
    let missing = 0;
    const by = new Set();
    for (let k = (from?.n ?? -1) + 1; k < to.n; k++) {
      if (!acked[p].has(k)) continue;
      missing++;
      by.add(ackedBy.get(`${p}:${k}`));
    }
    if (missing === 0) return;
    if (to.resets > (from?.resets ?? 0)) {
      result.resetCovered += missing;
      return;
    }
    result.lost += missing;
    const detail = `${this.name}: ${missing} acknowledged of publisher ${p} between ${from?.n ?? "the start"} and ${to.n}, by ${[...by].join(", ")}`;
    if (result.lostDetail.length < 50) result.lostDetail.push(`${detail} (during ${to.fault})`);
    anomaly("LOST", detail, missing, to.fault);
  }
}
const finalSeq = new Array(PUBLISHERS).fill(-1);

/** Incremental SSE parser: complete frames only (an incomplete one, cut mid-frame, is dropped like EventSource does). */
function frameParser(onEvent) {
  let buffer = "";
  return {
    push(text) {
      buffer += text;
      for (;;) {
        const end = buffer.indexOf("\n\n");
        if (end === -1) return;
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let event = "message";
        let id;
        const data = [];
        for (const line of block.split("\n")) {
          if (line === "" || line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const name = colon === -1 ? line : line.slice(0, colon);
          const value = colon === -1 ? "" : line.slice(colon + 1);
          if (name === "event") event = value;
          else if (name === "data") data.push(value);
          else if (name === "id") id = value;
        }
        if (data.length > 0) onEvent(event, data.join("\n"), id);
      }
    },
    reset() {
      buffer = "";
    },
  };
}

// ---------------------------------------------------------------- subscribers

let running = true; // faults and random reconnects
let subscribing = true; // subscribers stay connected until the end
const token = subscribeToken(SECRET, [TOPIC]);

/** A raw node:http reader: reconnects with Last-Event-ID itself, and also drops its connection at random times. */
async function rawSubscriber(ledger, base) {
  while (subscribing) {
    await new Promise((resolve) => {
      const headers = ledger.lastId === undefined ? {} : { "Last-Event-ID": ledger.lastId };
      const parser = frameParser((e, d, id) => ledger.onEvent(e, d, id));
      const req = http.get(`${base()}/events?token=${token}`, { headers, agent: false });
      let timer;
      const done = () => {
        clearTimeout(timer);
        req.destroy();
        resolve();
      };
      req.on("error", done);
      req.on("response", (res) => {
        result.connects++;
        if (res.statusCode !== 200) {
          log(`${ledger.name}: GET /events answered ${res.statusCode}`);
          res.resume();
          return res.on("end", done);
        }
        res.setEncoding("utf8");
        res.on("data", (t) => parser.push(t));
        res.on("close", done);
        res.on("error", done);
        // Reconnect on its own at a random time (mean 8 s) while the soak runs.
        if (running) timer = setTimeout(done, 1000 + random() * 14_000);
      });
    });
    await sleep(random() * 300);
  }
}

/**
 * An `eventsource` client: it reconnects by itself (with Last-Event-ID) after
 * errors; at random times the soak also closes it and opens a new one, handing
 * over the last id the way an app would.
 */
async function esSubscriber(ledger, base) {
  while (subscribing) {
    const lastId = ledger.lastId;
    const es = new EventSource(`${base()}/events?token=${token}`, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...init.headers, ...(lastId && !init.headers?.["Last-Event-ID"] ? { "Last-Event-ID": lastId } : {}) } }),
    });
    es.addEventListener("open", () => result.connects++);
    for (const name of ["n", "sse:reset", "start"]) es.addEventListener(name, (ev) => ledger.onEvent(name, ev.data, ev.lastEventId));
    const ended = new Promise((resolve) => {
      es.addEventListener("error", () => {
        // CLOSED: the package gave up (a non-200 answer); open a new one.
        if (es.readyState === EventSource.CLOSED) resolve();
      });
      const timer = setInterval(() => {
        if (!subscribing || (running && random() < 0.1)) {
          clearInterval(timer);
          resolve();
        }
      }, 1000);
    });
    await ended;
    es.close();
    await sleep(random() * 300);
  }
}

// ---------------------------------------------------------------- publishers

const submitAgents = [];
function submitOnce(instance, body) {
  return new Promise((resolve) => {
    const req = http.request(
      { host: "127.0.0.1", port: instance.port, path: "/submit", method: "POST", agent: submitAgents[instance.index], timeout: 10_000 },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode));
        res.on("error", () => resolve(0));
      },
    );
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(0));
    req.end(body);
  });
}

async function publisher(p, instances) {
  const interval = (PUBLISHERS * 1000) / RATE;
  let next = Date.now();
  while (running) {
    const up = instances.filter((i) => i.up);
    const n = nextSeq[p]++;
    const target = up.length === 0 ? undefined : pick(up);
    const status = target === undefined ? 0 : await submitOnce(target, submitToken(SECRET, [{ topic: TOPIC, event: "n", data: `${p}:${n}` }]));
    if (status === 200) ackedBy.set(`${p}:${n}`, `instance ${target.index} (pid ${target.proc.pid})`);
    result.submitStatuses[status] = (result.submitStatuses[status] ?? 0) + 1;
    if (status === 200) {
      acked[p].add(n);
      result.acknowledged++;
    } else result.unacknowledged++;
    next += interval;
    await sleep(Math.max(0, next - Date.now()));
    if (Date.now() - next > 2000) next = Date.now(); // after an outage, do not burst to catch up
  }
}

/** The end marker of publisher p: retried (new number each time) until one is acknowledged. */
async function publishFinal(p, instances) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const up = instances.filter((i) => i.up);
    const n = nextSeq[p]++;
    if (up.length > 0 && (await submitOnce(pick(up), submitToken(SECRET, [{ topic: TOPIC, event: "n", data: `${p}:${n}` }]))) === 200) {
      acked[p].add(n);
      result.acknowledged++;
      finalSeq[p] = n;
      return;
    }
    await sleep(200);
  }
  throw new Error(`publisher ${p}: no end marker acknowledged in 60 s`);
}

// ---------------------------------------------------------------- memory and descriptors

const samples = []; // { t, rss, fds, heap } of instance 0
function sampleRssFds(pid) {
  try {
    const rss = Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))[1]) * 1024;
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    return { rss, fds };
  } catch {
    return undefined;
  }
}
/** V8 heap in use, from a diagnostic report the process writes on SIGUSR2. */
async function sampleHeap(instance) {
  for (const f of fs.readdirSync(instance.reportDir)) fs.rmSync(path.join(instance.reportDir, f));
  instance.proc.kill("SIGUSR2");
  let heap;
  await waitFor(
    () => {
      for (const f of fs.readdirSync(instance.reportDir)) {
        try {
          heap = JSON.parse(fs.readFileSync(path.join(instance.reportDir, f), "utf8")).javascriptHeap.usedMemory;
          return true;
        } catch {
          // still being written
        }
      }
      return false;
    },
    10_000,
    "a diagnostic report",
  ).catch(() => undefined);
  return heap;
}
async function sampler(witness) {
  let n = 0;
  while (running) {
    const s = sampleRssFds(witness.proc.pid);
    if (s) samples.push({ t: (Date.now() - started) / 1000, ...s, heap: n++ % 3 === 0 ? await sampleHeap(witness) : undefined });
    await sleep(5000);
  }
}
/** Least-squares slope of y over t (per minute), over the samples after the first fifth (warm-up). */
function slope(key) {
  const pts = samples.filter((s) => s[key] !== undefined);
  const warm = pts.slice(Math.floor(pts.length / 5));
  if (warm.length < 3) return undefined;
  const mt = warm.reduce((a, s) => a + s.t, 0) / warm.length;
  const my = warm.reduce((a, s) => a + s[key], 0) / warm.length;
  let num = 0;
  let den = 0;
  for (const s of warm) {
    num += (s.t - mt) * (s[key] - my);
    den += (s.t - mt) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 60;
}

// ---------------------------------------------------------------- faults

async function main() {
  if (!fs.existsSync(CLI)) throw new Error("dist/cli.js is missing: run npm run build first");
  log(`seed ${SEED}, ${DURATION / 1000} s, ${INSTANCES} instances, ${SUBSCRIBERS} subscribers, ${PUBLISHERS} publishers at ${RATE}/s, sentinel ${SENTINEL}; tmp ${tmp}`);

  // Redis: "aof" (appendfsync always) starts as master, "mem" (no persistence) as its replica.
  const nodes = [new RedisNode("aof", await freePort(), true)];
  if (SENTINEL) nodes.push(new RedisNode("mem", await freePort(), false));
  else nodes[0].aof = false;
  await nodes[0].start();
  if (SENTINEL) await nodes[1].start(nodes[0].port);
  let sentinel;
  let redisUrl = `redis://127.0.0.1:${nodes[0].port}`;
  if (SENTINEL) {
    sentinel = new Sentinel(await freePort());
    await sentinel.start(nodes[0].port);
    redisUrl = `redis+sentinel://127.0.0.1:${sentinel.port}/${MASTER}`;
  }
  const master = async () => {
    if (!SENTINEL) return nodes[0];
    const port = await sentinel.masterPort();
    return nodes.find((n) => n.port === port);
  };

  const instances = [];
  for (let i = 0; i < INSTANCES; i++) {
    instances.push(new Instance(i, redisUrl));
    submitAgents.push(new http.Agent({ keepAlive: true, maxSockets: 4 }));
  }
  await Promise.all(instances.map((i) => i.start()));
  const proxy = new Proxy(instances);
  const proxyPort = await proxy.listen();
  const base = () => `http://127.0.0.1:${proxyPort}`;

  const ledgers = [];
  const subs = [];
  for (let s = 0; s < SUBSCRIBERS; s++) {
    const raw = s % 2 === 0;
    const ledger = new Ledger(`${raw ? "raw" : "eventsource"}#${s}`);
    ledgers.push(ledger);
    subs.push(raw ? rawSubscriber(ledger, base) : esSubscriber(ledger, base));
  }
  // A start marker every subscriber must see before publishing begins: from
  // then on each has a Last-Event-ID to resume from, so a gap cannot hide
  // behind a first connection that dropped before its first event.
  await waitFor(
    async () => (await submitOnce(instances[0], submitToken(SECRET, [{ topic: TOPIC, event: "start", data: "" }]))) === 200 && (await sleep(300), ledgers.every((l) => l.lastId !== undefined)),
    30_000,
    "every subscriber to receive the start marker",
  );
  const pubs = Array.from({ length: PUBLISHERS }, (_, p) => publisher(p, instances));
  const sampling = sampler(instances[0]);

  /** After a fault: every instance answers a submit with 200 again (bounded). */
  const recovered = async (what) => {
    const t0 = Date.now();
    const probe = submitToken(SECRET, [{ topic: "probe", event: "p", data: "" }]);
    let lastStatus = 0;
    for (const inst of instances) {
      try {
        await waitFor(async () => inst.up && (lastStatus = await submitOnce(inst, probe)) === 200, 60_000, `instance ${inst.index} to accept submits after ${what}`);
      } catch (err) {
        err.message += ` (last answer ${lastStatus})`;
        // Keep going (the other instances still serve); say what the stuck one printed.
        const replication = await Promise.all(nodes.map((n) => redisInfo(n.port)));
        const detail = `${err.message}; its log: ${inst.lines.slice(-8).join(" | ")}; redis: ${replication.join(" | ")}`;
        result.stuck.push(`${elapsed()}s ${detail}`.slice(0, 2000));
        log("STUCK " + detail);
      }
    }
    result.recoveryMsMax = Math.max(result.recoveryMsMax, Date.now() - t0);
  };

  const faults = {
    "kill-instance": async () => {
      const victim = pick(instances.slice(1)); // instance 0 is the memory witness
      await victim.kill();
      await sleep(random() * 1000);
      await victim.start();
      victim.restarts++;
      log(`instance ${victim.index} restarted as pid ${victim.proc.pid}`);
    },
    "kill-redis": async () => {
      const m = await master();
      await m.kill();
      await sleep(random() * 500);
      await m.start();
      m.restarts++;
      result.faults[`kill-redis-${m.aof ? "aof" : "no-persistence"}`] = (result.faults[`kill-redis-${m.aof ? "aof" : "no-persistence"}`] ?? 0) + 1;
    },
    "pause-redis": async () => {
      const m = await master();
      m.proc.kill("SIGSTOP");
      await sleep(COMMAND_TIMEOUT + 1000 + random() * 1000);
      m.proc.kill("SIGCONT");
    },
    "cut-clients": async () => {
      proxy.cut(1 + Math.floor(random() * Math.max(1, SUBSCRIBERS / 2)));
    },
    failover: async () => {
      const before = (await master()).port;
      await sentinel.client.call("SENTINEL", "failover", MASTER);
      await waitFor(async () => (await sentinel.masterPort()) !== before, 30_000, "sentinel to switch the master");
    },
    "kill-failover": async () => {
      const m = await master();
      await m.kill();
      await waitFor(async () => (await sentinel.masterPort()) !== m.port, SENTINEL_DOWN_AFTER + 30_000, "sentinel to promote the replica");
      await m.start(); // as master; Sentinel turns it into a replica of the new one
      m.restarts++;
    },
  };
  const names = Object.keys(faults).filter((f) => SENTINEL || (f !== "failover" && f !== "kill-failover"));
  const deadline = started + DURATION;
  let round = [];
  while (Date.now() + 5000 < deadline) {
    await sleep(FAULT_GAP / 2 + random() * FAULT_GAP);
    if (Date.now() + 5000 >= deadline) break;
    if (round.length === 0) round = [...names].sort(() => random() - 0.5); // every kind once per round
    const name = round.shift();
    log(`fault: ${name}`);
    lastFault = `${name}@${elapsed()}s`;
    try {
      await faults[name]();
      result.faults[name] = (result.faults[name] ?? 0) + 1;
      await recovered(name);
    } catch (err) {
      result.faultErrors.push(`${name}: ${err.message}`);
      log(`fault ${name} failed: ${err.message}`);
    }
  }

  log("stopping faults and publishers; end markers; draining");
  running = false;
  await Promise.all(pubs);
  await sampling;
  for (const n of nodes) if (alive(n.proc)) n.proc.kill("SIGCONT");
  for (const inst of instances) if (!inst.up) await inst.start();
  lastFault = "the end";
  await recovered("the end");
  await Promise.all(Array.from({ length: PUBLISHERS }, (_, p) => publishFinal(p, instances))).catch((err) => result.stuck.push(err.message));
  await waitFor(() => ledgers.every((l) => acked.every((_, p) => l.done(p))), 60_000, "every subscriber to see every end marker").catch((err) => {
    result.faultErrors.push(err.message);
    log(err.message);
  });
  subscribing = false;
  // Whatever is still missing at the end is lost, unless a reset arrived after the last event seen.
  for (const l of ledgers) l.judge();
  proxy.server.close();
  for (const pair of proxy.pairs) pair.client.destroy();
  await Promise.race([Promise.all(subs), sleep(5000)]);

  for (const inst of instances) result.faults[`instance-${inst.index}-restarts`] = inst.restarts;
  const first = samples[0];
  const last = samples[samples.length - 1];
  const heaps = samples.filter((s) => s.heap !== undefined);
  result.memory = {
    witness: "instance 0 (never killed)",
    samples: samples.length,
    rssFirstMiB: first && +(first.rss / 2 ** 20).toFixed(1),
    rssLastMiB: last && +(last.rss / 2 ** 20).toFixed(1),
    rssMaxMiB: samples.length ? +(Math.max(...samples.map((s) => s.rss)) / 2 ** 20).toFixed(1) : undefined,
    rssSlopeKiBPerMin: slope("rss") === undefined ? undefined : +(slope("rss") / 1024).toFixed(1),
    heapFirstMiB: heaps[0] && +(heaps[0].heap / 2 ** 20).toFixed(1),
    heapLastMiB: heaps.length ? +(heaps[heaps.length - 1].heap / 2 ** 20).toFixed(1) : undefined,
    heapSlopeKiBPerMin: slope("heap") === undefined ? undefined : +(slope("heap") / 1024).toFixed(1),
    fdsFirst: first?.fds,
    fdsLast: last?.fds,
    fdsMax: samples.length ? Math.max(...samples.map((s) => s.fds)) : undefined,
    fdsSlopePerMin: slope("fds") === undefined ? undefined : +slope("fds").toFixed(2),
    // One sample a minute (the last heap reading so far), to see whether growth levels off.
    perMinute: samples
      .filter((x, i) => i === 0 || Math.floor(x.t / 60) !== Math.floor(samples[i - 1].t / 60))
      .map((x) => ({
        minute: Math.floor(x.t / 60),
        rssMiB: +(x.rss / 2 ** 20).toFixed(1),
        heapMiB: +((heaps.filter((h) => h.t <= x.t).pop()?.heap ?? 0) / 2 ** 20).toFixed(1),
        fds: x.fds,
      })),
  };
  result.elapsedS = +((Date.now() - started) / 1000).toFixed(1);

  await Promise.all(instances.map((i) => i.kill()));
  sentinel?.client.disconnect();
  killAll();
  for (const a of submitAgents) a.destroy();
  fs.rmSync(tmp, { recursive: true, force: true });

  const json = JSON.stringify(result, null, 2);
  if (flags.json) fs.writeFileSync(flags.json, json + "\n");
  console.log(json);
  const ok = result.lost === 0 && result.duplicated === 0 && result.reordered === 0 && result.crashes === 0 && result.stuck.length === 0;
  log(ok ? "OK: nothing lost, duplicated or reordered" : "FAILED: see lost / duplicated / reordered / crashes above");
  process.exit(ok ? 0 : 1);
}

main().catch((err) => {
  console.error(err);
  process.exit(2);
});
