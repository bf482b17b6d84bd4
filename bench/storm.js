#!/usr/bin/env node
/**
 * Reconnect storm benchmark (issue 17), a benchmark script, not a test:
 *
 *   npm run bench:storm                      # N = 10,000, the default scenarios (about 3 minutes)
 *   npm run bench:storm -- --quick           # N = 1,000, smoke run
 *   npm run bench:storm -- --effects         # retry: / retryJitter / connectRate variants of a restart
 *   npm run bench:storm -- --n 100000 --workers 10 --redis
 *                                            # the big one: Redis, WORKERS=2, restart only
 *   npm run bench:storm -- --scenarios mem-restart,mem-cut --mode now
 *
 * N subscribers (the C load client, bench/client/loadclient.c in storm mode, one
 * process, one epoll loop) follow one topic while a steady stream of events is
 * published through POST /submit (Branca tokens; 50 events/s, one request at a
 * time, data = the event's sequence number). Then either the server is
 * restarted (SIGTERM, then a new process on the same port once the old one has
 * exited; with Redis the new process resumes from the Redis stream) or the
 * client cuts every connection at once. Each subscriber reconnects like a
 * browser's EventSource: after the reconnection time the server told it
 * (`retry:`, jittered by the server; 3 s before it has heard any), with
 * `Last-Event-ID`, again after the same wait when an attempt fails; `--mode now`
 * reconnects at once instead (a failed attempt is retried after 100 ms): the
 * worst-case storm.
 *
 * Measured, from the restart (SIGTERM sent) or the cut:
 * - back: until every subscriber's current connection has its `200` head;
 * - caught up: until every subscriber has received every event of its topic
 *   whose POST was acknowledged before its new connection's response head
 *   arrived, in order (sequence numbers), or an `sse:reset` (then it knows to
 *   rebuild its state, and everything after it is live);
 * - peak connect queue: the client's connections without a response head yet,
 *   and the server's accept queue (`ss -ltn` Recv-Q of the listening socket,
 *   sampled every 100 ms), plus the kernel's listen-queue overflows (SYNs
 *   dropped: /proc/net/netstat ListenOverflows, this network namespace);
 * - connect attempts and failed attempts (refused, reset, non-200, or a
 *   shed `200` that ends at once counts as `ended`);
 * - per subscriber, for the whole run: events lost (a sequence gap that no
 *   `sse:reset` announced), duplicated, reordered, and gaps covered by an
 *   `sse:reset`. An event whose POST got no 2xx answer (the request was cut
 *   by the restart) may legitimately be missing; it is counted apart.
 *
 * Without Redis a restart loses the in-memory history: every subscriber must
 * get `sse:reset` (counted), never a silent gap. The script exits 1 if
 * anything was lost, duplicated or reordered in a sse-server scenario, or a
 * subscriber did not come back.
 *
 * Writes bench/results/storm.md and storm.json (`--out` to change; `--quick`
 * writes storm-quick.md, not committed). Runs in a private network namespace
 * when root (like bench/run.js), so ports and TIME_WAIT stay out of the
 * machine's loopback. Flags: see parseOptions below and bench/README.md.
 */
"use strict";
const { spawn, spawnSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const net = require("node:net");
const { parseArgs } = require("node:util");
const { freePort } = require("./lib/ports");
const { LoadClient, compileClient } = require("./lib/loadclient");
const { nchanConfig, NCHAN_MODULE } = require("./lib/nchan");
const { NICE } = require("./lib/priority");
const { track, killTree, stop, killAllNow, killChildrenOnExit, waitPort, processTree, rssKiB, cpuUs } = require("./lib/procs");

const ROOT = path.join(__dirname, "..");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error(`[storm ${new Date().toISOString().slice(11, 19)}]`, ...a);
killChildrenOnExit(log);
// The open-file limit here is 20,000 (hard) and cannot be raised (no CAP_SYS_RESOURCE): a load client
// process holds at most PER_CLIENT subscribers. The cluster's round robin is uneven (at 100,000 over 6
// workers they held 14,845 to 20,000 sockets, and the full one then lost connections), so a worker is
// planned for at most PER_WORKER: 100,000 need WORKERS=9 or more.
const PER_CLIENT = 19_000;
const PER_WORKER = 12_000;
const topicName = (k) => `storm-${k}`; // event seq goes to topic seq % topics

/**
 * Scenarios: broker, what happens, client mode and server options. `retry` /
 * `retryJitter` / `connectRate` are the router options (SSE_RETRY, …).
 */
const SCENARIOS = {
  "mem-restart": { label: "memory, restart", broker: "memory", event: "restart" },
  "mem-cut": { label: "memory, cut", broker: "memory", event: "cut" },
  "mem-restart-jitter0": { label: "memory, restart, retryJitter 0", broker: "memory", event: "restart", env: { SSE_RETRY_JITTER: "0" } },
  "mem-restart-fast": {
    label: "memory, restart, retry 500 + jitter 1000",
    broker: "memory",
    event: "restart",
    env: { SSE_RETRY: "500", SSE_RETRY_JITTER: "1000" },
  },
  "mem-restart-wide": {
    label: "memory, restart, retry 500 + jitter 4000",
    broker: "memory",
    event: "restart",
    env: { SSE_RETRY: "500", SSE_RETRY_JITTER: "4000" },
  },
  "mem-restart-fast-rate": {
    label: "memory, restart, retry 500 + jitter 1000, connectRate 2000",
    broker: "memory",
    event: "restart",
    env: { SSE_RETRY: "500", SSE_RETRY_JITTER: "1000", SSE_CONNECT_RATE: "2000" },
  },
  "mem-restart-rate1000": {
    label: "memory, restart, retry 500 + jitter 1000, connectRate 1000",
    broker: "memory",
    event: "restart",
    env: { SSE_RETRY: "500", SSE_RETRY_JITTER: "1000", SSE_CONNECT_RATE: "1000" },
  },
  "mem-restart-now": { label: "memory, restart, clients ignore retry: (at once)", broker: "memory", event: "restart", mode: "now" },
  "redis-restart": { label: "Redis, restart", broker: "redis", event: "restart" },
  "redis-cut": { label: "Redis, cut", broker: "redis", event: "cut" },
  "nchan-cut": { label: "nginx + nchan, cut", broker: "nchan", event: "cut" },
};
const DEFAULT_SCENARIOS = ["mem-restart", "mem-cut", "redis-restart", "nchan-cut"];
/** `--effects`: what jittered retry: and admission control (connectRate) change, on a restart. */
const EFFECT_SCENARIOS = ["mem-restart", "mem-restart-jitter0", "mem-restart-fast", "mem-restart-wide", "mem-restart-fast-rate", "mem-restart-rate1000", "mem-restart-now"];

function parseOptions(argv) {
  const { values } = parseArgs({
    args: argv,
    options: {
      quick: { type: "boolean", default: false },
      effects: { type: "boolean", default: false },
      backlog: { type: "string" }, // experiment: listen backlog for our server (bench/lib/listen-backlog.js)
      n: { type: "string" },
      workers: { type: "string", default: "1" },
      redis: { type: "boolean", default: false }, // only the Redis scenarios (the 100k run)
      scenarios: { type: "string" },
      mode: { type: "string", default: "honour" }, // honour | now (scenarios may override)
      rate: { type: "string", default: "50" }, // events/s, over all topics
      topics: { type: "string" }, // default: one per 100 subscribers
      warmup: { type: "string", default: "2" }, // s of steady events before the storm
      "after-ms": { type: "string", default: "1000" }, // ms of events after everyone caught up
      "storm-timeout": { type: "string" }, // s to wait for everyone to catch up
      tokens: { type: "string", default: "20000" }, // distinct subscribe tokens, at most
      out: { type: "string" },
      "no-netns": { type: "boolean", default: false },
      "no-priority": { type: "boolean", default: false }, // read by lib/priority.js
      keep: { type: "boolean", default: false },
    },
  });
  const n = Number(values.n ?? (values.quick ? 1000 : 10000));
  const workers = Number(values.workers);
  if (n / workers > PER_WORKER)
    throw new Error(`${n} subscribers on ${workers} server process(es) leaves too little room below the open-file limit (20,000 per process): use --workers ${Math.ceil(n / PER_WORKER)}`);
  let scenarios = values.scenarios
    ? values.scenarios.split(",")
    : values.redis
      ? ["redis-restart"]
      : values.effects
        ? EFFECT_SCENARIOS
        : DEFAULT_SCENARIOS;
  if (values.quick && !values.scenarios) scenarios = ["mem-restart-fast", "mem-cut", "redis-restart"];
  if (workers > 1) scenarios = scenarios.filter((s) => SCENARIOS[s]?.broker === "redis");
  for (const s of scenarios) if (!SCENARIOS[s]) throw new Error(`unknown scenario ${s}; known: ${Object.keys(SCENARIOS).join(", ")}`);
  if (!["honour", "now"].includes(values.mode)) throw new Error("--mode is honour or now");
  return {
    quick: values.quick,
    n,
    workers,
    scenarios,
    mode: values.mode,
    backlog: values.backlog ? Number(values.backlog) : undefined,
    rate: Number(values.rate),
    topics: Number(values.topics ?? Math.max(1, Math.round(n / 100))),
    warmupMs: Number(values.warmup) * 1000,
    afterMs: Number(values["after-ms"]),
    stormTimeoutMs: Number(values["storm-timeout"] ?? Math.max(40, n / 1000)) * 1000,
    tokens: Math.min(n, Number(values.tokens)),
    // (tokens is rounded down to a multiple of topics in main: path i follows topic i % topics)
    out: path.resolve(
      values.out ??
        path.join(__dirname, "results", values.quick ? "storm-quick.md" : values.effects ? "storm-effects.md" : n === 10000 && workers === 1 ? "storm.md" : `storm-${n}.md`),
    ),
    netns: !values["no-netns"],
    keep: values.keep,
  };
}

// ---------------------------------------------------------------- processes

const exited = (child) => (child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once("exit", r)));

/** Runs argv in its own session (process group), output to logFile. */
function spawnLogged(argv, env, logFile) {
  const out = fs.openSync(logFile, "a");
  const full = [...NICE, ...argv];
  return track(spawn(full[0], full.slice(1), { env, stdio: ["ignore", out, out], detached: true }));
}

/** The listening socket's accept queue (Recv-Q of `ss -ltn`), or -1. */
function acceptQueue(port) {
  const r = spawnSync("ss", ["-Hltn", `( sport = :${port} )`], { encoding: "utf8" });
  if (r.status !== 0) return -1;
  let max = -1;
  for (const line of r.stdout.trim().split("\n")) {
    const f = line.trim().split(/\s+/);
    if (f.length > 2) max = Math.max(max, Number(f[1]));
  }
  return max;
}

/** TcpExt ListenOverflows + ListenDrops of this network namespace. */
function listenDrops() {
  const lines = fs.readFileSync("/proc/net/netstat", "utf8").split("\n");
  for (let i = 0; i + 1 < lines.length; i++) {
    if (!lines[i].startsWith("TcpExt:")) continue;
    const k = lines[i].split(/\s+/);
    const v = lines[i + 1].split(/\s+/);
    return { overflows: Number(v[k.indexOf("ListenOverflows")]), drops: Number(v[k.indexOf("ListenDrops")]) };
  }
  return { overflows: 0, drops: 0 };
}

const rssMiB = (pids) => Math.round(rssKiB(pids) / 1024);
const cpuMs = (pids) => cpuUs(pids) / 1000;

// ---------------------------------------------------------------- servers

/** Our standalone server (dist/cli.js) on `port`; resolves once it accepts connections. */
async function startOurs(ctx, sc, port, redisUrl) {
  const env = {
    ...process.env,
    SSE_SECRET: ctx.secret,
    HOST: "127.0.0.1",
    PORT: String(port),
    NODE_ENV: "production",
    WORKERS: String(ctx.o.workers),
    ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
    ...(sc.env || {}),
  };

  // One core for the server and one for the client when there is one server process (as in bench/run.js);
  // with workers they share both cores.
  const pin = ctx.o.workers > 1 ? [] : ["taskset", "-c", "0"];
  // e.g. STORM_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the server
  const nodeArgs = (process.env.STORM_SERVER_NODE_ARGS || "").split(" ").filter(Boolean);
  if (ctx.o.backlog) {
    nodeArgs.push("-r", path.join(__dirname, "lib", "listen-backlog.js"));
    env.STORM_BACKLOG = String(ctx.o.backlog);
  }
  const child = spawnLogged([...pin, process.execPath, ...nodeArgs, path.join(ROOT, "dist", "cli.js")], env, path.join(ctx.work, "server.log"));
  await waitPort(port, 60_000, child, 20);
  return child;
}

async function startRedis(ctx) {
  const port = await freePort();
  const child = spawnLogged(
    ["redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--protected-mode", "no", "--maxclients", "10000", "--dir", ctx.work],
    process.env,
    path.join(ctx.work, "redis.log"),
  );
  await waitPort(port, 10_000, child, 20);
  return { child, url: `redis://127.0.0.1:${port}` };
}

async function startNchan(ctx, port) {
  const dir = path.join(ctx.work, "nginx");
  fs.mkdirSync(path.join(dir, "tmp"), { recursive: true });
  const conf = path.join(dir, "nginx.conf");
  // A buffer long enough for a few seconds of events, so a resume finds what it missed.
  fs.writeFileSync(conf, nchanConfig({ dir, port, bufferLength: Math.max(1000, ctx.o.rate * 20), messageTimeout: "120s" }));
  const child = spawnLogged(["taskset", "-c", "0", "nginx", "-p", dir, "-c", conf], process.env, path.join(ctx.work, "nchan.log"));
  await waitPort(port, 20_000, child, 20);
  return child;
}

const stopChild = (child) => stop(child, 10_000);

// ---------------------------------------------------------------- client processes

const nowUs = () => Number(process.hrtime.bigint() / 1000n); // CLOCK_MONOTONIC, the C client's clock

const SUM = ["subs", "open", "connecting", "waiting", "gone", "back", "caught", "inflight", "peak_inflight", "attempts", "failed", "ended", "shed", "cut",
  "lost", "dups", "reorders", "resets", "reset_covered", "maybe_missing", "subs_with_loss", "subs_with_dup_or_reorder", "subs_with_reset", "behind", "head_timeouts",
  "fail_closed", "fail_reset", "fail_refused", "fail_connerr", "fail_status", "fail_local"];
/** The storm counters of every client process, added up (peak_inflight: the sum of each process's peak). */
async function stats(clients) {
  const all = await Promise.all(clients.map((c) => c.cmd("sstat", 30_000)));
  const out = {};
  for (const k of SUM) out[k] = all.reduce((a, s) => a + s[k], 0);
  out.max_lost = Math.max(...all.map((s) => s.max_lost));
  out.max_conns = Math.max(...all.map((s) => s.max_conns));
  out.max_seq = Math.max(...all.map((s) => s.max_seq));
  out.min_seq = Math.min(...all.map((s) => s.min_seq));
  for (const k of ["last_bad_status", "last_connerr", "last_local_err"]) out[k] = all.map((s) => s[k]).find(Boolean) || "";
  return out;
}

/** Percentiles (ms after t0) of every subscriber's last head and caught-up time. */
async function dumpTimes(ctx, clients, name, t0us) {
  const back = [];
  const caught = [];
  for (let i = 0; i < clients.length; i++) {
    const file = path.join(ctx.work, `${name}.times${i}`);
    await clients[i].cmd(`sdump ${file}`, 30_000);
    for (const line of fs.readFileSync(file, "utf8").split("\n")) {
      const [b, c] = line.split(" ").map(Number);
      if (b > 0) back.push((b - t0us) / 1000);
      if (c > 0) caught.push((c - t0us) / 1000);
    }
  }
  const pct = (v) => {
    if (!v.length) return null;
    v.sort((x, y) => x - y);
    const at = (q) => +v[Math.floor((v.length - 1) * q)].toFixed(1);
    return { n: v.length, p50: at(0.5), p90: at(0.9), p99: at(0.99), max: at(1) };
  };
  return { back: pct(back), caught: pct(caught) };
}

// ---------------------------------------------------------------- one scenario

/** The publisher's prepared requests: one POST per sequence number (sent on one keep-alive connection). */
function writePublishFile(ctx, sc, file, count) {
  const parts = [];
  for (let seq = 0; seq < count; seq++) {
    let req;
    const topic = topicName(seq % ctx.o.topics);
    if (sc.broker === "nchan") {
      const body = String(seq);
      req = `POST /pub?id=${topic} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
    } else {
      const body = ctx.submitToken(ctx.secret, [{ topic, event: "tick", data: String(seq) }]);
      req = `POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    }
    parts.push(`${Buffer.byteLength(req)}\n${req}`);
  }
  fs.writeFileSync(file, parts.join(""));
}

async function runScenario(ctx, name) {
  const sc = SCENARIOS[name];
  const o = ctx.o;
  const mode = sc.mode || o.mode;
  const r = { name, label: sc.label, broker: sc.broker, event: sc.event, mode, n: o.n, workers: sc.broker === "nchan" ? 1 : o.workers, env: sc.env || {} };
  const port = await freePort();
  let redis;
  let server;
  const clients = [];
  const serverPids = () => (server ? processTree(server.pid) : []);
  try {
    if (sc.broker === "redis") redis = await startRedis(ctx);
    const start = () => (sc.broker === "nchan" ? startNchan(ctx, port) : startOurs(ctx, sc, port, redis && redis.url));
    server = await start();
    const rssIdle = rssMiB(serverPids());

    // Requests: nchan has no tokens; ours get up to --tokens distinct subscribe tokens (round robin).
    const pathsFile = path.join(ctx.work, `${name}.paths`);
    const nchanPaths = Array.from({ length: o.topics }, (_, k) => `/sub?id=${topicName(k)}\n`).join("");
    fs.writeFileSync(pathsFile, sc.broker === "nchan" ? nchanPaths : ctx.paths);
    const pubFile = path.join(ctx.work, `${name}.pub`);
    const maxEvents = Math.ceil((o.rate * (o.warmupMs + o.stormTimeoutMs + o.afterMs + 60_000)) / 1000);
    writePublishFile(ctx, sc, pubFile, maxEvents);

    // Publisher's send times, shared by every client process.
    const shmFile = path.join(ctx.work, `${name}.shm`);
    fs.writeFileSync(shmFile, "");
    const nClients = Math.ceil(o.n / PER_CLIENT);
    r.clientProcesses = nClients;
    const pin = r.workers > 1 ? [] : ["taskset", "-c", "1"];
    for (let i = 0; i < nClients; i++) {
      const c = new LoadClient([...pin, ...NICE, ctx.clientBin, String(port)], path.join(ctx.work, `${name}.client${i}.log`), track);
      clients.push(c);
      const ready = await c.next(10_000);
      if (ready.nofile < Math.min(o.n, PER_CLIENT) + 100) throw new Error(`a load client may open only ${ready.nofile} files`);
      await c.cmd(`storm on ${o.topics}`);
      await c.cmd(`srcaddrs ${Math.ceil(o.n / 20000) + 1}`);
      await c.cmd(`paths ${pathsFile}`);
      await c.cmd(`sshm ${shmFile} ${maxEvents} ${i === 0 ? 1 : 0}`);
    }
    // Reconnecting already: a connection shed by admission control (200, retry:, end) comes back.
    for (const c of clients) await c.cmd(`sreconnect ${mode} 3000 100 0`);
    log(`${name}: connecting ${o.n} subscribers from ${nClients} client process(es)`);
    const tc = Date.now();
    const connects = await Promise.all(
      clients.map((c, i) => {
        const count = Math.floor(o.n / nClients) + (i < o.n % nClients ? 1 : 0);
        return c.cmd(`connect sub ${count} ${Math.ceil(256 / nClients)} ${Math.max(120_000, o.n * 3)}`, Math.max(130_000, o.n * 3 + 10_000));
      }),
    );
    const ok = connects.reduce((a, c) => a + c.ok, 0); // 200 heads, including streams shed at once
    const connectS = (Date.now() - tc) / 1000;
    r.initialConnect = { ok, failed: connects.reduce((a, c) => a + c.failed, 0), seconds: connectS, perSecond: Math.round(ok / connectS) };
    // A failed initial attempt reconnects like any other (then it is counted in failed).
    for (let held = await stats(clients); held.open < o.n; held = await stats(clients)) {
      if (Date.now() - tc > 180_000) throw new Error(`only ${held.open} of ${o.n} subscribers hold a stream (${held.head_timeouts} got no response head)`);
      await sleep(200);
    }
    r.initialConnect.headTimeouts = (await stats(clients)).head_timeouts;
    r.rssHoldingMiB = rssMiB(serverPids());
    r.rssIdleMiB = rssIdle;
    await clients[0].cmd(`spub ${pubFile} ${Math.round(1e6 / o.rate)}`);
    await sleep(500);
    // Server CPU with everyone connected and events flowing: the headroom left for a storm.
    const cpu0 = cpuMs(serverPids());
    const tw = Date.now();
    await sleep(Math.max(500, o.warmupMs - 500));
    r.steadyServerCpuPercent = Math.round((100 * (cpuMs(serverPids()) - cpu0)) / (Date.now() - tw));
    // Every subscriber has had an event (each topic gets one every topics/rate seconds).
    const warmEnd = Date.now() + (2000 * o.topics) / o.rate + 5000;
    let warm = await stats(clients);
    while (warm.min_seq < 0 && Date.now() < warmEnd) {
      await sleep(200);
      warm = await stats(clients);
    }
    if (warm.min_seq < 0) throw new Error(`not every subscriber got an event in the warm-up (max seq ${warm.max_seq})`);

    // The storm.
    const drops0 = listenDrops();
    let peakQ = 0;
    let peakInflight = 0;
    const tl = [];
    const t0 = Date.now();
    let restart;
    const t0us = nowUs();
    const stormCpu0 = sc.event === "restart" ? 0 : cpuMs(serverPids()); // restart: the new process from its start
    if (sc.event === "restart") {
      for (const c of clients) await c.cmd(`smark ${t0us}`);
      const old = server;
      killTree(old, "SIGTERM");
      await exited(old);
      const tExit = Date.now() - t0;
      server = await start();
      restart = { oldExitedMs: tExit, newListeningMs: Date.now() - t0 };
      r.restart = restart;
    } else {
      for (const c of clients) await c.cmd(`scut ${t0us}`);
    }
    log(`${name}: ${sc.event}${restart ? ` (old process exited after ${restart.oldExitedMs} ms, new one listening after ${restart.newListeningMs} ms)` : ""}`);
    let st;
    let lastLog = 0;
    for (;;) {
      const q = acceptQueue(port);
      if (q > peakQ) peakQ = q;
      st = await stats(clients);
      if (st.inflight > peakInflight) peakInflight = st.inflight;
      const ms = Date.now() - t0;
      if (tl.length === 0 || ms - tl[tl.length - 1].ms >= 250) tl.push({ ms, back: st.back, caught: st.caught, inflight: st.inflight, acceptQ: q });
      if (ms - lastLog > 5000) {
        lastLog = ms;
        log(`  ${(ms / 1000).toFixed(1)} s: back ${st.back}, caught up ${st.caught}, connecting ${st.inflight}, waiting ${st.waiting}, accept queue ${q}`);
      }
      if (st.caught >= o.n || ms > o.stormTimeoutMs) break;
      await sleep(100);
    }
    const drops1 = listenDrops();
    r.stormServerCpuPercent = Math.round((100 * (cpuMs(serverPids()) - stormCpu0)) / (Date.now() - t0));
    await sleep(o.afterMs);
    const pub = await clients[0].cmd("spstop", 30_000);
    // Everything acknowledged must arrive: wait until every subscriber has the last acknowledged event of its topic.
    const drainEnd = Date.now() + 20_000;
    let fin = await stats(clients);
    while (fin.behind > 0 && Date.now() < drainEnd) {
      await sleep(200);
      fin = await stats(clients);
    }
    const times = await dumpTimes(ctx, clients, name, t0us);
    r.publisher = pub;
    r.final = fin;
    r.peakAcceptQueue = peakQ;
    r.listenOverflows = drops1.overflows - drops0.overflows;
    r.listenDrops = drops1.drops - drops0.drops;
    r.timeline = tl;
    r.peakConnecting = Math.max(peakInflight, st.peak_inflight);
    r.peakConnectingSummed = nClients > 1;
    r.backMs = times.back;
    r.caughtMs = times.caught;
    r.allCaught = st.caught >= o.n;
    r.rssAfterMiB = rssMiB(serverPids());
    r.resetsExpected = sc.broker === "memory" && sc.event === "restart";
    const problems = [];
    if (!r.allCaught) problems.push(`only ${st.caught} of ${o.n} caught up within ${o.stormTimeoutMs / 1000} s`);
    if (fin.lost) problems.push(`${fin.lost} events lost (${fin.subs_with_loss} subscribers)`);
    if (fin.dups || fin.reorders) problems.push(`${fin.dups} duplicated, ${fin.reorders} reordered`);
    if (fin.behind) problems.push(`${fin.behind} subscribers lack the last acknowledged event of their topic`);
    if (fin.gone) problems.push(`${fin.gone} subscribers gone`);
    if (r.resetsExpected && fin.subs_with_reset < o.n) problems.push(`only ${fin.subs_with_reset} of ${o.n} got sse:reset after losing the history`);
    r.problems = problems;
    r.unexpectedResets = !r.resetsExpected && fin.resets > 0 ? fin.resets : 0;
    log(
      `${name}: back p50/p99/max ${fmtP(r.backMs)} ms, caught up ${fmtP(r.caughtMs)} ms, peak connecting ${fin.peak_inflight}, accept queue ${peakQ}, ` +
        `attempts ${fin.attempts} (failed ${fin.failed}, shed ${fin.shed}, ended ${fin.ended}), lost ${fin.lost}, dup ${fin.dups}, reordered ${fin.reorders}, ` +
        `resets ${fin.resets} (covering ${fin.reset_covered}), unacknowledged missing ${fin.maybe_missing}` +
        (problems.length ? ` — PROBLEMS: ${problems.join("; ")}` : ""),
    );
  } catch (e) {
    r.error = e.message;
    log(`${name}: FAILED: ${e.message}`);
  } finally {
    for (const c of clients) {
      try {
        await c.cmd("sreconnect off 0 0 0");
        await c.cmd("quit");
      } catch {
        /* gone */
      }
      killTree(c.proc, "SIGKILL");
    }
    await stopChild(server);
    if (redis) await stopChild(redis.child);
  }
  return r;
}

// ---------------------------------------------------------------- report

const fmtP = (p) => (p ? `${Math.round(p.p50)}/${Math.round(p.p99)}/${Math.round(p.max)}` : "–");
const sec = (p) => (p ? (p.max / 1000).toFixed(2) : "–");

function report(o, info, results) {
  const L = [];
  L.push(`# Reconnect storm (${o.n.toLocaleString("en-US")} subscribers)`, "");
  L.push(
    `${info.date}, ${info.nproc} vCPU ${info.cpuModel}, ${info.memGiB} GiB, Node ${info.node}, load average at start ${info.loadavg}` +
      `, at end ${fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}; git ${info.git}.`,
    "",
    `Command: \`${info.command}\`. Events at ${o.rate}/s in all, round robin over ${o.topics} topic(s) of ${Math.round(o.n / o.topics)} subscribers ` +
      `(${Math.round((o.rate * o.n) / o.topics).toLocaleString("en-US")} deliveries/s), before, during and after the storm; clients ${o.mode === "now" ? "reconnect at once" : "honour `retry:` like EventSource (3 s before they have heard one)"} unless the row says otherwise. ` +
      (o.backlog ? `**Experiment: our server listens with backlog ${o.backlog}** (bench/lib/listen-backlog.js; Node's default is 511). ` : "") +
      (o.workers > 1
        ? `Server with WORKERS=${o.workers}; server, Redis and the load client share the 2 cores (not pinned).`
        : "Server (and Redis) on core 0, the load client on core 1."),
    "",
    "| scenario | back: all 200 (s) | caught up: all (s) | caught up p50 / p99 (ms) | goal | peak connecting (client) | peak accept queue | SYN overflows | attempts / failed / shed | lost | dup / reordered | sse:reset (subs) | unacked missing (deliveries) |",
    "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  );
  const goalS = o.n >= 100000 ? 15 : 2;
  for (const r of results) {
    if (r.error) {
      L.push(`| ${r.label} | failed: ${r.error.replace(/\|/g, "/").split("\n")[0]} |||||||||||||`);
      continue;
    }
    const f = r.final;
    const caughtS = r.caughtMs ? r.caughtMs.max / 1000 : Infinity;
    const goal = r.allCaught && caughtS <= goalS && !f.lost ? `**met** (≤ ${goalS} s)` : `not met (≤ ${goalS} s)`;
    L.push(
      `| ${r.label}${r.mode !== o.mode ? "" : ""} | ${sec(r.backMs)} | ${r.allCaught ? sec(r.caughtMs) : `${f.caught}/${o.n}`} | ${r.caughtMs ? `${Math.round(r.caughtMs.p50)} / ${Math.round(r.caughtMs.p99)}` : "–"} | ${goal} | ${r.peakConnecting} | ${r.peakAcceptQueue} | ${r.listenOverflows} | ${f.attempts} / ${f.failed} / ${f.shed} | ${f.lost} | ${f.dups} / ${f.reorders} | ${f.resets} (${f.subs_with_reset}) | ${f.maybe_missing} |`,
    );
  }
  L.push("", "Details:", "");
  for (const r of results) {
    if (r.error) continue;
    const p = r.publisher;
    L.push(
      `- **${r.label}**: initial connect ${r.initialConnect.ok} in ${r.initialConnect.seconds.toFixed(1)} s (${r.initialConnect.perSecond}/s); ` +
        `server CPU ${r.steadyServerCpuPercent} % of a core with everyone connected and events flowing, ${r.stormServerCpuPercent} % during the storm; ` +
        (r.restart ? `old process exited ${r.restart.oldExitedMs} ms after SIGTERM, new one listening at ${r.restart.newListeningMs} ms; ` : "") +
        `server RSS ${r.rssIdleMiB} → ${r.rssHoldingMiB} MiB holding, ${r.rssAfterMiB} MiB after; ` +
        `publisher: ${p.acked} acknowledged, ${p.maybe} unanswered or non-2xx, ${p.refused} refused (sent again), ${p.skipped} ticks skipped, ${(p.acked / p.elapsed_s).toFixed(1)} events/s; ` +
        (r.initialConnect.headTimeouts ? `**${r.initialConnect.headTimeouts} initial connections got no response head within 60 s** (closed and reconnected); ` : "") +
        (r.final.head_timeouts ? `**${r.final.head_timeouts} connections got no response head within 60 s**; ` : "") +
        (r.final.failed
          ? `failed attempts: ${r.final.fail_refused} refused, ${r.final.fail_closed} closed (FIN) and ${r.final.fail_reset} reset (RST) before the head, ${r.final.fail_status} non-200` +
            (r.final.last_bad_status ? ` (e.g. ${r.final.last_bad_status})` : "") +
            `, ${r.final.head_timeouts} no head in 60 s, ${r.final.fail_connerr} other connect errors${r.final.last_connerr ? ` (${r.final.last_connerr})` : ""}, ` +
            `${r.final.fail_local} local (${r.final.last_local_err || "none"}); `
          : "") +
        `max connections per subscriber ${r.final.max_conns}; gaps covered by sse:reset ${r.final.reset_covered}` +
        (r.unexpectedResets ? `; **${r.unexpectedResets} sse:reset where none was expected**` : "") +
        (r.problems.length ? `; **problems: ${r.problems.join("; ")}**` : ""),
    );
  }
  L.push(
    "",
    "Columns: times from SIGTERM to the old process (restart) or from the client closing every socket (cut). " +
      "back = every subscriber's current connection has its 200 head; caught up = each has every event of its topic acknowledged before that head, " +
      "in order, or an sse:reset. peak connecting = the client's connections still waiting for a response head; " +
      "accept queue = Recv-Q of the listening socket (ss, every 100 ms); SYN overflows = TcpExt ListenOverflows. failed = attempts refused or cut before a response head; shed = 200 streams the server ended before any event (admission control: connectRate). " +
      "lost = sequence gaps no sse:reset announced; unacked missing = events whose POST got no 2xx answer (cut by the restart) and did not arrive (allowed). " +
      "How it works: bench/README.md (Reconnect storm).",
  );
  return L.join("\n") + "\n";
}

// ---------------------------------------------------------------- main

async function main() {
  const argv = process.argv.slice(2);
  const o = parseOptions(argv);
  if (!process.env.STORM_NETNS_INNER && o.netns && process.getuid?.() === 0 && spawnSync("sh", ["-c", "command -v ip"]).status === 0) {
    // Own network namespace: own loopback and ports, no TIME_WAIT left on the machine's, a wide ephemeral range.
    const ns = `ssestorm-${process.pid}`;
    if (spawnSync("ip", ["netns", "add", ns]).status === 0) {
      try {
        spawnSync("ip", ["-n", ns, "link", "set", "lo", "up"]);
        spawnSync("ip", ["netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535"]);
        const child = spawn("ip", ["netns", "exec", ns, process.execPath, __filename, ...argv], {
          stdio: "inherit",
          env: { ...process.env, STORM_NETNS_INNER: ns },
        });
        for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
          process.removeAllListeners(sig);
          process.on(sig, () => child.kill(sig));
        }
        return await new Promise((r) => child.on("exit", (c, sig) => r(c ?? (sig ? 130 : 1))));
      } finally {
        spawnSync("ip", ["netns", "del", ns]);
      }
    }
  }
  const cli = path.join(ROOT, "dist", "cli.js");
  if (!fs.existsSync(cli)) throw new Error("dist/cli.js is missing: run `npm run build` first");
  const info = {
    date: new Date().toISOString(),
    loadavg: fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
    nproc: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    git: spawnSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).stdout.trim(),
    command: `npm run bench:storm${argv.length ? " -- " + argv.join(" ") : ""}`,
    netns: process.env.STORM_NETNS_INNER || null,
  };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "sse-storm-"));
  log(`work dir ${work}; ${o.n} subscribers, scenarios ${o.scenarios.join(", ")}; load average ${info.loadavg}`);
  const results = [];
  try {
    const { subscribeToken, submitToken } = require(path.join(ROOT, "dist", "index.js"));
    const secret = crypto.randomBytes(32).toString("hex");
    const lines = [];
    const nTokens = Math.max(o.topics, o.tokens - (o.tokens % o.topics));
    for (let i = 0; i < nTokens; i++) lines.push(`/events?token=${subscribeToken(secret, [topicName(i % o.topics)])}`);
    const ctx = { o, work, secret, submitToken, paths: lines.join("\n") + "\n", clientBin: compileClient(work) };
    const hasNchan = spawnSync("sh", ["-c", "command -v nginx"]).status === 0 && fs.existsSync(NCHAN_MODULE);
    const hasRedis = spawnSync("sh", ["-c", "command -v redis-server"]).status === 0;
    for (const name of o.scenarios) {
      const sc = SCENARIOS[name];
      if (sc.broker === "nchan" && (!hasNchan || o.n > 19000)) {
        results.push({ name, label: sc.label, error: !hasNchan ? "nginx with nchan is not installed" : "nchan config holds 19,500 connections" });
        continue;
      }
      if (sc.broker === "redis" && !hasRedis) {
        results.push({ name, label: sc.label, error: "redis-server is not installed" });
        continue;
      }
      results.push(await runScenario(ctx, name));
      killAllNow();
      await sleep(500);
    }
  } finally {
    killAllNow();
    if (!o.keep) fs.rmSync(work, { recursive: true, force: true });
    else log(`kept ${work}`);
  }
  const md = report(o, info, results);
  fs.mkdirSync(path.dirname(o.out), { recursive: true });
  fs.writeFileSync(o.out, md);
  fs.writeFileSync(o.out.replace(/\.md$/, ".json"), JSON.stringify({ options: o, machine: info, results }, null, 2) + "\n");
  process.stdout.write(md);
  // nchan is a comparison: what it loses is reported, not a failure of ours.
  const ours = results.filter((r) => r.broker !== "nchan");
  const bad = ours.filter((r) => r.error || r.problems.length);
  if (bad.length) log(`FAILED: ${bad.map((r) => `${r.name}: ${r.error || r.problems.join("; ")}`).join(" | ")}`);
  return bad.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    killAllNow();
    process.exit(2);
  },
);
