#!/usr/bin/env node
"use strict";
/*
 * Benchmark harness of issue 7: runs every server in turn on core 0, drives it
 * with the epoll load client (bench/client/loadclient.c, compiled here) on
 * core 1, and writes bench/results/latest.md (quick mode: quick.md).
 * See bench/README.md for what is measured and how.
 */
const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { freePort } = require("./lib/ports");
const os = require("node:os");
const net = require("node:net");
const crypto = require("node:crypto");
const { codec } = require("./lib/tokens");
const { LoadClient, compileClient } = require("./lib/loadclient");
const { nchanConfig } = require("./lib/nchan");
const { NICE } = require("./lib/priority");
const { CLK_TCK, track, stop, killAllNow, killChildrenOnExit, waitPort, processTree, rssKiB, cpuUs, cpuUsFine } = require("./lib/procs");

const ROOT = path.resolve(__dirname, "..");
const ALL_SERVERS = ["baseline", "ours", "ours-redis", "ours-express", "better-sse", "nchan"];

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const quick = argv.includes("--quick");
  const o = {
    quick,
    subscribers: quick ? 1000 : 10000,
    servers: ALL_SERVERS.slice(),
    connectConcurrency: 256,
    latEvents: quick ? 10 : 20,
    latRate: quick ? 5 : 2,
    satSeconds: quick ? 2 : 5,
    satRepeat: quick ? 1 : 3,
    publishers: 4,
    batch: 1,
    stalled: quick ? 200 : 1000,
    readers: quick ? 20 : 100,
    stallSeconds: quick ? 5 : 15,
    stallRate: 100,
    stallBytes: 1024,
    stallRcvbuf: 4096,
    install: true,
    netns: true,
    priority: true,
    build: false,
    keep: false,
    out: null,
    totalMinutes: quick ? 10 : 40,
  };
  const num = {
    "--subscribers": "subscribers",
    "--connect-concurrency": "connectConcurrency",
    "--lat-events": "latEvents",
    "--lat-rate": "latRate",
    "--sat-seconds": "satSeconds",
    "--sat-repeat": "satRepeat",
    "--publishers": "publishers",
    "--batch": "batch",
    "--stalled": "stalled",
    "--readers": "readers",
    "--stall-seconds": "stallSeconds",
    "--stall-rate": "stallRate",
    "--stall-bytes": "stallBytes",
    "--stall-rcvbuf": "stallRcvbuf",
    "--total-minutes": "totalMinutes",
  };
  for (const [flag, key] of Object.entries(num)) {
    const env = "BENCH_" + key.replace(/[A-Z]/g, (c) => "_" + c).toUpperCase();
    if (process.env[env]) o[key] = Number(process.env[env]);
  }
  if (process.env.BENCH_SERVERS) o.servers = process.env.BENCH_SERVERS.split(",");
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    if (a.includes("=")) [a, v] = [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)];
    const next = () => (v !== undefined ? v : argv[++i]);
    if (a === "--quick") continue;
    else if (num[a]) o[num[a]] = Number(next());
    else if (a === "--servers") o.servers = next().split(",");
    else if (a === "--out") o.out = next();
    else if (a === "--no-install") o.install = false;
    else if (a === "--no-netns") o.netns = false;
    else if (a === "--no-priority") o.priority = false;
    else if (a === "--keep") o.keep = true;
    else if (a === "--build") o.build = true;
    else if (a === "--help" || a === "-h") {
      console.log(fs.readFileSync(path.join(__dirname, "README.md"), "utf8"));
      process.exit(0);
    } else throw new Error(`unknown argument ${a} (see bench/README.md)`);
  }
  for (const s of o.servers) if (!ALL_SERVERS.includes(s)) throw new Error(`unknown server ${s}; known: ${ALL_SERVERS}`);
  for (const k of Object.values(num)) if (!(o[k] > 0)) throw new Error(`--${k} must be a positive number`);
  o.out = o.out || path.join(__dirname, "results", quick ? "quick.md" : "latest.md");
  return o;
}

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowUs = () => Number(process.hrtime.bigint() / 1000n); // CLOCK_MONOTONIC, same clock as the C client
const log = (...a) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...a);
killChildrenOnExit(log);

function which(cmd) {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`]);
  return r.status === 0 ? r.stdout.toString().trim() : null;
}

/** Busy and softirq time (µs) of each CPU from /proc/stat. */
function coreBusyUs() {
  const out = [];
  for (const line of fs.readFileSync("/proc/stat", "utf8").split("\n")) {
    const m = /^cpu(\d+)\s+(.*)/.exec(line);
    if (!m) continue;
    const f = m[2].split(/\s+/).map(Number); // user nice system idle iowait irq softirq steal
    out[Number(m[1])] = { busy: ((f[0] + f[1] + f[2] + f[5] + f[6] + f[7]) * 1e6) / CLK_TCK, softirq: (f[6] * 1e6) / CLK_TCK };
  }
  return out;
}

/** Server-side TCP connections on this port in state ESTABLISHED (ss), or -1. */
function establishedTo(port) {
  const r = spawnSync("ss", ["-Htn", "state", "established", `( sport = :${port} )`], { encoding: "utf8" });
  if (r.status !== 0) return -1;
  return r.stdout.split("\n").filter((l) => l.trim()).length;
}

function tail(file, n = 15) {
  try {
    return fs.readFileSync(file, "utf8").trim().split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}

// ---------------------------------------------------------------- load client

/** The C load client on core 1 (bench/lib/loadclient.js drives it). */
class Client extends LoadClient {
  constructor(bin, port, logFile) {
    super(["taskset", "-c", "1", ...NICE, bin, String(port)], logFile, track);
  }
}

// ---------------------------------------------------------------- setup

function ensureAptPackages(o, notes) {
  const want = [];
  if (o.servers.includes("nchan") && (!which("nginx") || !fs.existsSync("/usr/lib/nginx/modules/ngx_nchan_module.so")))
    want.push("nginx", "libnginx-mod-nchan");
  if (o.servers.includes("ours-redis") && !which("redis-server")) want.push("redis-server");
  if (!want.length) return;
  if (!o.install) {
    notes.push(`not installed and --no-install given: ${want.join(" ")}`);
    return;
  }
  if (process.getuid?.() !== 0 || !which("apt-get")) {
    notes.push(`cannot install ${want.join(" ")} (needs root and apt-get)`);
    return;
  }
  log(`installing Debian packages: ${want.join(" ")}`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  spawnSync("apt-get", ["update", "-qq"], { stdio: "inherit", env, timeout: 300_000 });
  const r = spawnSync("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...want], {
    stdio: ["ignore", "ignore", "inherit"],
    env,
    timeout: 600_000,
  });
  if (r.status !== 0) notes.push(`apt-get install ${want.join(" ")} failed (status ${r.status})`);
}

function ensureBuilt(notes, force) {
  const cli = path.join(ROOT, "dist", "cli.js");
  if (fs.existsSync(cli) && !force) return true;
  log(force ? "--build: npm run build" : "dist/cli.js missing: npm run build");
  const r = spawnSync("npm", ["run", "build"], { cwd: ROOT, stdio: ["ignore", "inherit", "inherit"], timeout: 300_000 });
  if (r.status !== 0 || !fs.existsSync(cli)) {
    notes.push(`npm run build did not produce dist/cli.js (status ${r.status})`);
    return false;
  }
  return true;
}

function machineInfo() {
  const cpuModel = (/model name\s*:\s*(.*)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8")) || [])[1] || "unknown";
  const ver = (cmd, args) => {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    return r.status === 0 ? (r.stdout + r.stderr).trim().split("\n")[0] : null;
  };
  const pkgVer = (p) => {
    try {
      return require(path.join(ROOT, "node_modules", p, "package.json")).version;
    } catch {
      return null;
    }
  };
  return {
    date: new Date().toISOString(),
    loadavg: fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" "),
    nproc: ver("nproc", []) || String(os.cpus().length),
    cpuModel,
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    kernel: os.release(),
    nginx: ver("nginx", ["-v"]),
    nchan: ver("dpkg-query", ["-W", "-f", "${Version}", "libnginx-mod-nchan"]),
    redis: ver("redis-server", ["--version"]),
    betterSse: pkgVer("better-sse"),
    express: pkgVer("express"),
    git: ver("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"]),
  };
}

// ---------------------------------------------------------------- servers

function httpRequest(pathname, body, contentType) {
  const b = Buffer.from(body, "latin1");
  return Buffer.concat([
    Buffer.from(
      `POST ${pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: ${contentType}\r\nContent-Length: ${b.length}\r\n\r\n`,
      "latin1",
    ),
    b,
  ]);
}

/** How to publish to a server: raw HTTP request for one batch of events. */
function brancaPublisher(tok) {
  return (datas) =>
    httpRequest(
      "/submit",
      tok.submitToken(datas.map((data) => ({ topic: "bench", event: "bench", data }))),
      "application/octet-stream",
    );
}
function nchanPublisher() {
  // nchan publishes one message per request; batches are not supported
  return (datas) => httpRequest("/pub?id=bench", datas.join("\n"), "text/plain");
}

async function startNodeServer(ctx, name, script, extraEnv = {}) {
  const port = await freePort();
  const logFile = path.join(ctx.work, `${name}.log`);
  const out = fs.openSync(logFile, "a");
  const child = track(
    spawn("taskset", ["-c", "0", ...NICE, process.execPath, script], {
      cwd: ROOT,
      env: { ...process.env, SSE_SECRET: ctx.secret, PORT: String(port), NODE_ENV: "production", ...extraEnv },
      stdio: ["ignore", out, out],
      detached: true,
    }),
  );
  try {
    await waitPort(port, 20000, child);
  } catch (e) {
    await stop(child);
    throw new Error(`${e.message}\n${tail(logFile)}`);
  }
  return { child, port, logFile, pids: () => processTree(child.pid) };
}

async function startNchan(ctx) {
  const port = await freePort();
  const dir = path.join(ctx.work, "nginx");
  fs.mkdirSync(path.join(dir, "tmp"), { recursive: true });
  const conf = path.join(dir, "nginx.conf");
  fs.writeFileSync(
    conf,
    nchanConfig({ dir, port }),
  );
  const logFile = path.join(ctx.work, "nchan.log");
  const out = fs.openSync(logFile, "a");
  const child = track(
    spawn("taskset", ["-c", "0", ...NICE, "nginx", "-p", dir, "-c", conf], { stdio: ["ignore", out, out], detached: true }),
  );
  try {
    await waitPort(port, 20000, child);
  } catch (e) {
    await stop(child);
    throw new Error(`${e.message}\n${tail(logFile)}\n${tail(path.join(dir, "error.log"))}`);
  }
  return { child, port, logFile, pids: () => processTree(child.pid) };
}

async function startRedis(ctx) {
  const port = await freePort();
  const logFile = path.join(ctx.work, "redis.log");
  const out = fs.openSync(logFile, "a");
  const child = track(
    spawn(
      "taskset",
      ["-c", "0", ...NICE, "redis-server", "--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--protected-mode", "no", "--daemonize", "no", "--dir", ctx.work],
      { stdio: ["ignore", out, out], detached: true },
    ),
  );
  await waitPort(port, 10000, child);
  return { child, port };
}

function redisConnectedClients(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, "127.0.0.1");
    let buf = "";
    const t = setTimeout(() => {
      s.destroy();
      resolve(-1);
    }, 3000);
    s.on("connect", () => s.write("INFO clients\r\n"));
    s.on("data", (d) => {
      buf += d;
      const m = /connected_clients:(\d+)/.exec(buf);
      if (m) {
        clearTimeout(t);
        s.destroy();
        resolve(Number(m[1]) - 1); // minus this connection
      }
    });
    s.on("error", () => {
      clearTimeout(t);
      resolve(-1);
    });
  });
}

function serverDefs(ctx) {
  const branca = brancaPublisher(ctx.tok);
  return {
    baseline: {
      label: "plain node:http (baseline)",
      start: () => startNodeServer(ctx, "baseline", path.join(__dirname, "servers", "baseline.js")),
      paths: ctx.tokenPaths,
      publish: branca,
    },
    ours: {
      label: "sse-server (ours)",
      needsBuild: true,
      start: () => startNodeServer(ctx, "ours", path.join(ROOT, "dist", "cli.js")),
      paths: ctx.tokenPaths,
      publish: branca,
    },
    "ours-redis": {
      label: "sse-server (ours) + Redis broker",
      needsBuild: true,
      async start() {
        const redis = await startRedis(ctx);
        let srv;
        try {
          srv = await startNodeServer(ctx, "ours-redis", path.join(ROOT, "dist", "cli.js"), {
            REDIS_URL: `redis://127.0.0.1:${redis.port}`,
          });
        } catch (e) {
          await stop(redis.child);
          throw e;
        }
        await sleep(1500);
        const clients = await redisConnectedClients(redis.port);
        if (clients < 1) {
          await stop(srv.child);
          await stop(redis.child);
          const err = new Error("our server made no Redis connection with REDIS_URL set: Redis broker not supported yet");
          err.skip = true;
          throw err;
        }
        srv.extra = [redis.child];
        srv.redisClients = clients;
        srv.cpuPids = () => [...processTree(srv.child.pid), redis.child.pid];
        return srv;
      },
      paths: ctx.tokenPaths,
      publish: branca,
    },
    "ours-express": {
      label: "ours mounted in Express 5",
      needsBuild: true,
      start: () => startNodeServer(ctx, "ours-express", path.join(__dirname, "servers", "express-mounted.js")),
      paths: ctx.tokenPaths,
      publish: branca,
    },
    "better-sse": {
      label: "Express 5 + better-sse",
      start: () => startNodeServer(ctx, "better-sse", path.join(__dirname, "servers", "better-sse.js")),
      paths: ctx.tokenPaths,
      publish: branca,
    },
    nchan: {
      label: "nginx + nchan (1 worker)",
      start: () => startNchan(ctx),
      paths: ctx.nchanPaths,
      publish: nchanPublisher(),
    },
  };
}

// ---------------------------------------------------------------- phases

/** Throws if the server process (or Redis) has exited. */
function checkAlive(srv, when) {
  for (const c of [srv.child, ...(srv.extra || [])]) {
    if (c.exitCode !== null || c.signalCode !== null) {
      throw new Error(`server process exited (${c.exitCode ?? c.signalCode}) ${when}\n${tail(srv.logFile)}`);
    }
  }
}

/** Starts a fresh server and load client, runs fn(srv, client), stops both. */
async function withServer(ctx, name, def, r, fn) {
  const srv = await def.start();
  if (srv.redisClients && !r.redisNoted) {
    r.redisNoted = true;
    r.notes.push(`Redis connections from our server: ${srv.redisClients}`);
  }
  const client = new Client(ctx.clientBin, srv.port, path.join(ctx.work, `${name}.client.log`));
  try {
    const ready = await client.next(5000);
    if (ready.cmd !== "ready") throw new Error("load client did not start");
    await client.cmd(`paths ${def.paths}`);
    await fn(srv, client);
    await client.cmd("close all");
    await client.cmd("quit").catch(() => {});
  } finally {
    await stop(client.proc, 1000);
    await stop(srv.child);
    for (const c of srv.extra || []) await stop(c);
    if (srv.child.exitCode && srv.child.signalCode === null) r.notes.push(`server exited with ${srv.child.exitCode}; log:\n${tail(srv.logFile)}`);
  }
}

async function benchServer(ctx, name, def) {
  const r = { name, label: def.label, notes: [] };
  await withServer(ctx, name, def, r, (srv, client) => mainPhases(ctx, name, def, r, srv, client));
  // The stalled phase gets a fresh server, so that its RSS does not carry
  // garbage from the 10,000 subscribers before. Loopback's 64 KiB MTU lets
  // the kernel autotune each stalled socket's send buffer to tcp_wmem's max
  // (4 MiB), which would hide the server's own buffering; with a 1500-byte MTU
  // (as on a real network) and a small receive buffer on the stalled side it
  // stays around 100-150 KiB.
  if (ctx.inNetns) spawnSync("ip", ["link", "set", "lo", "mtu", "1500"]);
  try {
    await withServer(ctx, name, def, r, (srv, client) => stalledPhase(ctx, name, def, r, srv, client));
  } catch (e) {
    if (e.skip) throw e;
    r.notes.push(`stalled phase failed: ${e.message}`);
    log(`${name}: stalled phase FAILED: ${e.message}`);
  } finally {
    if (ctx.inNetns) spawnSync("ip", ["link", "set", "lo", "mtu", "65536"]);
  }
  return r;
}

async function mainPhases(ctx, name, def, r, srv, client) {
  const o = ctx.o;
  const cpuPids = () => (srv.cpuPids ? srv.cpuPids() : srv.pids());
  const N = o.subscribers;

  // (a) connects/s and (b) memory per subscriber
  await sleep(1000);
  const rss0 = rssKiB(srv.pids());
  const cpuC0 = cpuUsFine(cpuPids());
  const con = await client.cmd(`connect sub ${N} ${o.connectConcurrency} ${ctx.connectTimeoutMs}`, ctx.connectTimeoutMs + 10000);
  const cpuC1 = cpuUsFine(cpuPids());
  checkAlive(srv, "while subscribers connected");
  if (!con.ok) throw new Error(`no subscriber could connect: ${con.err}`);
  r.connected = con.ok;
  r.connectsPerSec = con.ok / con.elapsed_s;
  r.connectServerCpuPct = (100 * (cpuC1 - cpuC0)) / 1e6 / con.elapsed_s;
  // The server's whole CPU time (all threads, and Redis in the Redis row) over
  // the connect phase, per stream: what a reconnect storm costs (issue 17).
  r.cpuUsPerConnect = con.ok ? (cpuC1 - cpuC0) / con.ok : NaN;
  if (con.ok < N) r.notes.push(`connect: only ${con.ok}/${N} subscribers (${con.failed} failed, ${con.timedout} timed out: ${con.err})`);
  log(`${name}: ${con.ok} connected in ${con.elapsed_s.toFixed(2)} s (${Math.round(r.connectsPerSec)}/s, ${r.cpuUsPerConnect.toFixed(1)} µs CPU each)`);
  await sleep(2000);
  const rss1 = rssKiB(srv.pids());
  r.rssIdleKiB = rss0;
  r.rssConnectedKiB = rss1;
  r.kibPerSub = con.ok ? (rss1 - rss0) / con.ok : NaN;

  // (c) latency at a low rate
  await client.cmd("reset");
  await client.cmd("lat on");
  const start = nowUs() + 500_000;
  const step = Math.round(1e6 / o.latRate);
  const recs = [];
  for (let i = 0; i < o.latEvents; i++) {
    const t = start + i * step;
    const req = def.publish([String(t)]);
    recs.push(Buffer.from(`${t} ${req.length}\n`, "latin1"), req);
  }
  const schedFile = path.join(ctx.work, `${name}.sched`);
  fs.writeFileSync(schedFile, Buffer.concat(recs));
  const sched = await client.cmd(`sched ${schedFile}`, (o.latEvents / o.latRate) * 1000 + 20000);
  const latDrain = await client.cmd(`drain ${sched.ok} 15000 3000`, 20000);
  await client.cmd("lat off");
  const lat = await client.cmd("latreport");
  checkAlive(srv, "during the latency phase");
  r.latency = { ...lat, published: sched.ok, bad: sched.bad, lateMaxUs: sched.late_max_us };
  r.p50ms = lat.count ? lat.p50_us / 1000 : NaN;
  r.p99ms = lat.count ? lat.p99_us / 1000 : NaN;
  const latExpected = sched.ok * latDrain.open_sub;
  r.latDeliveredPct = latExpected ? (100 * latDrain.total_frames) / latExpected : NaN;
  if (sched.bad) r.notes.push(`latency: ${sched.bad} publish requests failed (first status ${sched.first_bad_status})`);
  if (latDrain.sub_closed_by_peer) r.notes.push(`latency: server closed ${latDrain.sub_closed_by_peer} subscribers`);
  log(`${name}: latency p50 ${r.p50ms.toFixed(2)} ms p99 ${r.p99ms.toFixed(2)} ms (${lat.count} samples)`);

  // (d) saturated throughput, (e) delivery; repeated, the run with the most
  // deliveries/s is reported (other work on the machine only ever slows a run)
  const satFile = path.join(ctx.work, `${name}.sat.req`);
  fs.writeFileSync(satFile, def.publish(Array.from({ length: o.batch }, () => "hello")));
  const runs = [];
  for (let i = 0; i < o.satRepeat; i++) {
    if (i) await sleep(1000);
    await client.cmd("reset");
    const before = await client.cmd("count");
    const cpuS0 = cpuUs(cpuPids());
    const core0 = coreBusyUs();
    const rssS0 = rssKiB(srv.pids());
    const pub = await client.cmd(`pub ${o.publishers} ${o.satSeconds * 1000} 0 ${satFile}`, o.satSeconds * 1000 + 20000);
    const events = pub.ok * (name === "nchan" ? 1 : o.batch);
    const drain = await client.cmd(`drain ${events} ${ctx.drainTimeoutMs} 3000`, ctx.drainTimeoutMs + 5000);
    const cpuS1 = cpuUs(cpuPids());
    const core1 = coreBusyUs();
    checkAlive(srv, "during the throughput phase");
    const windowS = Math.max(1e-6, (drain.last_frame_us - pub.t0_us) / 1e6);
    const s = {
      publishedRequests: pub.ok,
      events,
      badRequests: pub.bad,
      firstBadStatus: pub.first_bad_status,
      deliveries: drain.total_frames,
      expected: events * before.open_sub,
      windowS,
      publishS: pub.elapsed_s,
      subscribers: drain.open_sub,
      minPerSub: drain.min_frames,
      eventsPerRead: drain.reads ? drain.total_frames / drain.reads : NaN,
      closedByServer: drain.sub_closed_by_peer,
      drain: drain.why,
      deliveriesPerSec: drain.total_frames / windowS,
      cpuUsPerDelivery: drain.total_frames ? (cpuS1 - cpuS0) / drain.total_frames : NaN,
      serverCpuPct: (100 * (cpuS1 - cpuS0)) / 1e6 / windowS,
      clientCpuPct: (100 * (drain.cpu_us - before.cpu_us)) / 1e6 / windowS,
      core0BusyPct: (100 * (core1[0].busy - core0[0].busy)) / 1e6 / windowS,
      core1BusyPct: (100 * (core1[1].busy - core0[1].busy)) / 1e6 / windowS,
      core0SoftirqPct: (100 * (core1[0].softirq - core0[0].softirq)) / 1e6 / windowS,
      core1SoftirqPct: (100 * (core1[1].softirq - core0[1].softirq)) / 1e6 / windowS,
      rssPeakKiB: Math.max(rssS0, rssKiB(srv.pids())),
    };
    runs.push(s);
    if (pub.bad) r.notes.push(`throughput run ${i + 1}: ${pub.bad} publish requests failed (first status ${pub.first_bad_status})`);
    if (drain.sub_closed_by_peer) r.notes.push(`throughput run ${i + 1}: server closed ${drain.sub_closed_by_peer} subscribers`);
    log(
      `${name}: run ${i + 1}: ${events} events -> ${drain.total_frames} deliveries in ${windowS.toFixed(2)} s = ` +
        `${Math.round(s.deliveriesPerSec)}/s, ${s.cpuUsPerDelivery.toFixed(2)} us/delivery, ` +
        `delivered ${((100 * s.deliveries) / s.expected).toFixed(2)}% (${drain.why}), ${s.eventsPerRead.toFixed(2)} events/read, ` +
        `server cpu ${s.serverCpuPct.toFixed(0)}% (core 0 busy ${s.core0BusyPct.toFixed(0)}%), ` +
        `client cpu ${s.clientCpuPct.toFixed(0)}% (core 1 busy ${s.core1BusyPct.toFixed(0)}%)`,
    );
  }
  r.sat = runs.reduce((best, s) => (s.deliveriesPerSec > best.deliveriesPerSec ? s : best));
  r.satRuns = runs.map((s) => Math.round(s.deliveriesPerSec));
  r.deliveriesPerSec = r.sat.deliveriesPerSec;
  r.cpuUsPerDelivery = r.sat.cpuUsPerDelivery;
  const got = runs.reduce((a, s) => a + s.deliveries, latDrain.total_frames);
  const want = runs.reduce((a, s) => a + s.expected, latExpected);
  r.deliveredPct = want ? (100 * got) / want : NaN;
}

async function stalledPhase(ctx, name, def, r, srv, client) {
  const o = ctx.o;
  await sleep(1000);
  const rssB = rssKiB(srv.pids());
  await client.cmd(`stallrcvbuf ${ctx.inNetns ? o.stallRcvbuf : 0}`);
  const st = await client.cmd(`connect stall ${o.stalled} ${o.connectConcurrency} ${ctx.connectTimeoutMs}`, ctx.connectTimeoutMs + 10000);
  if (!st.ok) throw new Error(`no stalled subscriber could connect: ${st.err}`);
  const rd = await client.cmd(`connect sub ${o.readers} ${o.connectConcurrency} ${ctx.connectTimeoutMs}`, ctx.connectTimeoutMs + 10000);
  await client.cmd("reset");
  const bigFile = path.join(ctx.work, `${name}.big.req`);
  fs.writeFileSync(bigFile, def.publish(["x".repeat(o.stallBytes)]));
  const series = [];
  const t0 = Date.now();
  const sample = () =>
    series.push({ t: (Date.now() - t0) / 1000, rssKiB: rssKiB(srv.pids()), established: establishedTo(srv.port) });
  sample();
  const timer = setInterval(sample, 1000);
  let stallPub;
  try {
    stallPub = await client.cmd(
      `pub 1 ${o.stallSeconds * 1000} ${Math.round(1e6 / o.stallRate)} ${bigFile}`,
      o.stallSeconds * 1000 + 20000,
    );
    await sleep(2000);
  } finally {
    clearInterval(timer);
  }
  sample();
  checkAlive(srv, "during the stalled phase");
  const stc = await client.cmd("count");
  // A server that drops a stalled subscriber closes its socket, but the FIN
  // waits behind the unread bytes, so the client never sees it: count the
  // server's side of the connections that are still established instead.
  const estab = series[series.length - 1].established;
  const cutSeen = estab >= 0 ? Math.max(0, st.ok + stc.open_sub - estab) : 0;
  r.stalled = {
    stalled: st.ok,
    readers: rd.ok,
    published: stallPub.ok,
    skipped: stallPub.skipped,
    rateTarget: o.stallRate,
    bytes: o.stallBytes,
    rssIdleKiB: rssB,
    rssBeforeKiB: series[0].rssKiB,
    rssPeakKiB: Math.max(...series.map((s) => s.rssKiB)),
    rssEndKiB: series[series.length - 1].rssKiB,
    cutByServer: Math.max(cutSeen, stc.stall_closed_by_peer),
    readersClosed: stc.sub_closed_by_peer,
    readersMinPct: stallPub.ok ? (100 * stc.min_frames) / stallPub.ok : NaN,
    series,
  };
  log(
    `${name}: stalled ${st.ok}: RSS ${(r.stalled.rssBeforeKiB / 1024).toFixed(0)} -> peak ${(r.stalled.rssPeakKiB / 1024).toFixed(0)} MiB, ` +
      `end ${(r.stalled.rssEndKiB / 1024).toFixed(0)} MiB, cut by server ${r.stalled.cutByServer}; ${stallPub.ok} events published`,
  );
}

// ---------------------------------------------------------------- report

const fmtInt = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString("en-US") : "–");
const fmt = (v, d) => (Number.isFinite(v) ? v.toFixed(d) : "–");
const mib = (kib) => (kib / 1024).toFixed(0);

function stalledCell(s) {
  if (!s) return "–";
  return `${mib(s.rssBeforeKiB)}→${mib(s.rssPeakKiB)} MiB peak, ${mib(s.rssEndKiB)} end; ${s.cutByServer}/${s.stalled} cut`;
}

function report(o, info, results, notes) {
  const L = [];
  L.push(`# sse-server benchmark${o.quick ? " (quick mode)" : ""}`);
  L.push("");
  L.push(`Date: ${info.date} · commit ${info.git || "?"} · load average at start ${info.loadavg}`);
  L.push(
    `Machine: ${info.nproc} cores (\`nproc\`), ${info.cpuModel}, ${info.memGiB} GiB, Linux ${info.kernel}; Node ${info.node}; ` +
      `Express ${info.express}, better-sse ${info.betterSse}; ${info.nginx || "nginx: not installed"}` +
      `${info.nchan ? `, nchan ${info.nchan}` : ""}; ${info.redis ? info.redis.replace(/ sha=.*/, "") : "redis: not installed"}`,
  );
  L.push(
    `Workload: ${o.subscribers.toLocaleString("en-US")} subscribers on one topic; server pinned to core 0 (\`taskset -c 0\`), ` +
      `load client (C, epoll) on core 1; latency: ${o.latEvents} single events at ${o.latRate}/s; throughput: ${o.publishers} ` +
      `publisher connections as fast as answered for ${o.satSeconds} s, ${o.batch} small event(s) per submit, best of ${o.satRepeat} run(s); stalled: ` +
      `${o.stalled} subscribers that never read + ${o.readers} readers, ${o.stallBytes}-byte events at ${o.stallRate}/s for ${o.stallSeconds} s.`,
  );
  L.push("");
  L.push(
    "| server | connects/s | CPU µs/connect | KiB/subscriber | p50 ms | p99 ms | deliveries/s | CPU µs/delivery | delivered % | stalled: RSS start→peak, end; cut |",
  );
  L.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
  for (const r of results) {
    if (r.skipped || r.error) {
      L.push(`| ${r.label} | ${r.skipped ? "skipped" : "failed"}: ${(r.skipped || r.error).split("\n")[0]} | | | | | | | | |`);
      continue;
    }
    L.push(
      `| ${r.label} | ${fmtInt(r.connectsPerSec)} | ${fmt(r.cpuUsPerConnect, 1)} | ${fmt(r.kibPerSub, 1)} | ${fmt(r.p50ms, 2)} | ${fmt(r.p99ms, 2)} | ` +
        `${fmtInt(r.deliveriesPerSec)} | ${fmt(r.cpuUsPerDelivery, 2)} | ${fmt(r.deliveredPct, 2)} | ${stalledCell(r.stalled)} |`,
    );
  }
  const base = results.find((r) => r.name === "baseline" && !r.error && !r.skipped);
  if (base) {
    L.push("");
    L.push("Relative to the plain node:http baseline (value ÷ baseline; ↑ higher is better, ↓ lower is better):");
    L.push("");
    L.push("| server | connects/s ↑ | CPU µs/connect ↓ | KiB/subscriber ↓ | p50 ↓ | p99 ↓ | deliveries/s ↑ | CPU µs/delivery ↓ | stalled peak RSS growth ↓ |");
    L.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : "–");
    const growth = (r) => (r.stalled ? r.stalled.rssPeakKiB - r.stalled.rssBeforeKiB : NaN);
    for (const r of results) {
      if (r.skipped || r.error) continue;
      L.push(
        `| ${r.label} | ${ratio(r.connectsPerSec, base.connectsPerSec)} | ${ratio(r.cpuUsPerConnect, base.cpuUsPerConnect)} | ${ratio(r.kibPerSub, base.kibPerSub)} | ` +
          `${ratio(r.p50ms, base.p50ms)} | ${ratio(r.p99ms, base.p99ms)} | ${ratio(r.deliveriesPerSec, base.deliveriesPerSec)} | ` +
          `${ratio(r.cpuUsPerDelivery, base.cpuUsPerDelivery)} | ${ratio(growth(r), growth(base))} |`,
      );
    }
  }
  L.push("");
  L.push("## Details");
  L.push("");
  L.push(
    "| server | connected | server CPU % while connecting | events published (throughput) | deliveries | window s | server CPU % | core 0 busy % (softirq) | load-client CPU % | core 1 busy % (softirq) | events per client read | deliveries/s of each run | min events/subscriber | latency samples | publish lateness max µs | stalled: events published, readers' min % |",
  );
  L.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---|");
  for (const r of results) {
    if (r.skipped || r.error || !r.sat) continue;
    const s = r.sat;
    L.push(
      `| ${r.label} | ${r.connected} | ${fmt(r.connectServerCpuPct, 0)} | ${fmtInt(s.events)} | ${fmtInt(s.deliveries)} | ${fmt(s.windowS, 2)} | ` +
        `${fmt(s.serverCpuPct, 0)} | ${fmt(s.core0BusyPct, 0)} (${fmt(s.core0SoftirqPct, 0)}) | ${fmt(s.clientCpuPct, 0)} | ` +
        `${fmt(s.core1BusyPct, 0)} (${fmt(s.core1SoftirqPct, 0)}) | ${fmt(s.eventsPerRead, 2)} | ${r.satRuns.map(fmtInt).join(" / ")} | ${s.minPerSub} | ${r.latency.count} | ${r.latency.lateMaxUs} | ` +
        `${r.stalled ? `${r.stalled.published}, ${fmt(r.stalled.readersMinPct, 1)}%` : "–"} |`,
    );
  }
  L.push("");
  L.push(
    "Stalled phase, one sample per second from the first publish: server RSS in MiB / server-side connections still established " +
      `(${o.stalled} stalled + ${o.readers} readers at the start):`,
  );
  L.push("");
  for (const r of results) {
    if (!r.stalled) continue;
    L.push(`- ${r.label}: ${r.stalled.series.map((s) => `${mib(s.rssKiB)}/${s.established}`).join(" ")}`);
  }
  const allNotes = [...notes];
  for (const r of results) for (const n of r.notes || []) allNotes.push(`${r.label}: ${n}`);
  for (const r of results)
    if (r.sat && r.sat.core0BusyPct - r.sat.serverCpuPct > 15)
      allNotes.push(
        `${r.label}: core 0 was ${fmt(r.sat.core0BusyPct, 0)}% busy but the server used ${fmt(r.sat.serverCpuPct, 0)}% during the ` +
          `throughput phase: other processes or kernel softirq work shared the server's core`,
      );
  for (const r of results)
    if (r.latency && r.latency.lateMaxUs > 100_000 / o.latRate)
      allNotes.push(
        `${r.label}: in the latency phase a publish waited up to ${fmt(r.latency.lateMaxUs / 1000, 1)} ms for the previous ` +
          "one to be answered: the server fell behind, so its latency includes queueing",
      );
  for (const r of results) if (r.sat && r.sat.clientCpuPct > 90) allNotes.push(`${r.label}: the load client used ${fmt(r.sat.clientCpuPct, 0)}% of its core during the throughput phase: it may have been the bottleneck`);
  if (allNotes.length) {
    L.push("");
    L.push("## Notes");
    L.push("");
    for (const n of allNotes) L.push(`- ${n.replace(/\n/g, "\n  ")}`);
  }
  L.push("");
  L.push(
    "Columns: connects/s = subscribers connected ÷ time until the last response head arrived (token verified by every server but nchan); " +
      "CPU µs/connect = server utime+stime over the connect phase ÷ subscribers connected; " +
      "KiB/subscriber = (server VmRSS after connecting − before) ÷ subscribers; p50/p99 = publish-to-receipt latency over every subscriber × event " +
      "of the low-rate phase; deliveries/s = events received by all subscribers ÷ (last receipt − first publish) in the throughput phase; " +
      "CPU µs/delivery = server utime+stime (Redis included in the Redis row) ÷ deliveries; delivered % = received ÷ (published × subscribers) " +
      "over the latency and throughput phases; stalled = server RSS while stalled subscribers do not read, and how many of them the server cut. " +
      "How to run and what each phase does: bench/README.md.",
  );
  return L.join("\n") + "\n";
}

// ---------------------------------------------------------------- main

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === "--report-from") {
    // re-render a markdown report from a saved .json (e.g. after changing the report)
    const j = JSON.parse(fs.readFileSync(argv[1], "utf8"));
    const md = report(j.options, j.machine, j.results, j.notes);
    fs.writeFileSync(argv[1].replace(/\.json$/, ".md"), md);
    process.stdout.write(md);
    return 0;
  }
  const o = parseArgs(argv);
  const inner = process.env.BENCH_NETNS_INNER;
  if (!inner) {
    // Outer process: things that need the network or the main namespace, then
    // re-run this script inside a fresh network namespace (own loopback, own
    // ports, and an MTU we may change for the stalled phase without touching
    // the machine's loopback).
    const notes = [];
    ensureAptPackages(o, notes);
    if (o.servers.some((s) => s.startsWith("ours"))) ensureBuilt(notes, o.build);
    const ns = `ssebench-${process.pid}`;
    const canNetns = o.netns && process.getuid?.() === 0 && which("ip");
    if (canNetns && spawnSync("ip", ["netns", "add", ns]).status === 0) {
      try {
        spawnSync("ip", ["-n", ns, "link", "set", "lo", "up"]);
        const child = spawn("ip", ["netns", "exec", ns, process.execPath, __filename, ...argv], {
          stdio: "inherit",
          env: { ...process.env, BENCH_NETNS_INNER: ns, BENCH_NOTES: JSON.stringify(notes) },
        });
        const fwd = (sig) => () => {
          log(`${sig}: stopping the benchmark`);
          child.kill(sig);
        };
        for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
          process.removeAllListeners(sig);
          process.on(sig, fwd(sig));
        }
        const t = setTimeout(() => {
          log("outer time limit reached: stopping the benchmark");
          child.kill("SIGTERM");
          setTimeout(() => child.kill("SIGKILL"), 5000).unref();
        }, (o.totalMinutes + 2) * 60_000);
        t.unref();
        const code = await new Promise((r) => child.on("exit", (c, sig) => r(c ?? (sig ? 130 : 1))));
        return code;
      } finally {
        spawnSync("ip", ["netns", "del", ns]);
      }
    }
    notes.push(
      "no private network namespace (needs root and iproute2, or --no-netns given): ran on the machine's loopback; " +
        "the stalled phase then runs with loopback's 64 KiB MTU, where the kernel absorbs up to 4 MiB per stalled socket",
    );
    return run(o, notes, false);
  }
  return run(o, JSON.parse(process.env.BENCH_NOTES || "[]"), true);
}

async function run(o, notes, inNetns) {
  const info = machineInfo();
  const globalTimer = setTimeout(() => {
    log(`global time limit of ${o.totalMinutes} min reached: killing everything`);
    killAllNow();
    process.exit(3);
  }, o.totalMinutes * 60_000);
  globalTimer.unref();
  spawnSync("taskset", ["-a", "-p", "-c", "1", String(process.pid)], { stdio: "ignore" });
  if (os.cpus().length < 2) notes.push("fewer than 2 cores: server and load client share a core");
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "sse-bench-"));
  log(`work dir ${work}${inNetns ? `, network namespace ${process.env.BENCH_NETNS_INNER}` : ""}`);
  try {
    const ctx = {
      o,
      work,
      inNetns,
      secret: crypto.randomBytes(32).toString("hex"),
      connectTimeoutMs: Math.max(20000, o.subscribers * 10),
      drainTimeoutMs: 60000,
    };
    ctx.tok = codec(ctx.secret);
    ctx.clientBin = compileClient(work);
    await require("./client/selftest").main(ctx.clientBin);
    log("load client self-test passed");
    const nTokens = o.subscribers + o.stalled + o.readers;
    log(`encoding ${nTokens} subscribe tokens`);
    const lines = [];
    for (let i = 0; i < nTokens; i++) lines.push(`/events?token=${ctx.tok.subscribeToken(["bench"])}`);
    ctx.tokenPaths = path.join(work, "paths.txt");
    fs.writeFileSync(ctx.tokenPaths, lines.join("\n") + "\n");
    ctx.nchanPaths = path.join(work, "nchan-paths.txt");
    fs.writeFileSync(ctx.nchanPaths, "/sub?id=bench\n");

    const defs = serverDefs(ctx);
    const results = [];
    for (const name of o.servers) {
      const def = defs[name];
      log(`=== ${name}`);
      if (def.needsBuild && !fs.existsSync(path.join(ROOT, "dist", "cli.js"))) {
        results.push({ name, label: def.label, skipped: "dist/cli.js is missing and npm run build did not make it" });
        continue;
      }
      if (name === "nchan" && !(which("nginx") && fs.existsSync("/usr/lib/nginx/modules/ngx_nchan_module.so"))) {
        results.push({ name, label: def.label, skipped: "nginx with the nchan module is not installed" });
        continue;
      }
      if (name === "ours-redis" && !which("redis-server")) {
        results.push({ name, label: def.label, skipped: "redis-server is not installed" });
        continue;
      }
      try {
        results.push(await benchServer(ctx, name, def));
      } catch (e) {
        log(`${name}: ${e.skip ? "skipped" : "FAILED"}: ${e.message}`);
        results.push({ name, label: def.label, [e.skip ? "skipped" : "error"]: e.message });
      }
      killAllNow();
      await sleep(1000);
    }
    const md = report(o, info, results, notes);
    fs.mkdirSync(path.dirname(o.out), { recursive: true });
    fs.writeFileSync(o.out, md);
    fs.writeFileSync(o.out.replace(/\.md$/, ".json"), JSON.stringify({ options: o, machine: info, results, notes }, null, 2) + "\n");
    process.stdout.write(md);
    log(`written ${path.relative(process.cwd(), o.out)}`);
    return results.some((r) => r.error) ? 1 : 0;
  } finally {
    killAllNow();
    if (!o.keep) fs.rmSync(work, { recursive: true, force: true });
    else log(`kept ${work}`);
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e);
    killAllNow();
    process.exit(2);
  },
);
