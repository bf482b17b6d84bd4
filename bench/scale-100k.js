#!/usr/bin/env node
/**
 * Scale proof (issue 6), a benchmark script, not a test:
 *
 *   npm run build && npm run bench:scale
 *   node bench/scale-100k.js [--subscribers 100000] [--workers 8] [--events 10] [--interval 2000]
 *                            [--per-client 19000] [--timeout 600]
 *
 * Starts redis-server (no persistence) and the standalone server
 * (`node dist/cli.js`) with REDIS_URL and WORKERS on 127.0.0.1, connects the
 * subscribers from several client processes (each holds at most
 * `--per-client` sockets, below the per-process open-file limit, and binds
 * its own source address 127.0.0.2, .3, ... so no address runs out of
 * ephemeral ports), publishes `--events` events through POST /submit, and
 * reports: subscribers held, events delivered to every subscriber (must be
 * 100%), p50/p99/max delivery latency (submit sent → event parsed by the
 * client), and server memory (sum of RSS of the primary and its workers;
 * Redis separately). Results also go to bench/scale-100k-result.json.
 *
 * Everything is bounded in time (`--timeout` seconds overall) and every
 * process it started is stopped at the end, also on error or Ctrl-C.
 */
"use strict";
const { fork, spawn, execFileSync } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");
const { freePort } = require("./lib/ports");
const { parseArgs } = require("node:util");

const ROOT = path.join(__dirname, "..");
const HIST_MS = 120_000; // latency histogram: 1 ms buckets up to 2 minutes
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

if (process.env.SCALE_ROLE === "client") runClient();
else
  main().catch((err) => {
    console.error("scale-100k: " + (err && err.stack ? err.stack : err));
    cleanup();
    process.exit(1);
  });

// ---------------------------------------------------------------- client process

/**
 * Holds `count` subscriber sockets from one source address. Minimal HTTP and
 * SSE parsing: status line, then `data:` lines carrying "<seq> <sent-at ms>".
 */
function runClient() {
  const latency = new Uint32Array(HIST_MS + 1);
  const perEvent = []; // seq -> [count, min ms, max ms]
  const conns = [];
  let held = 0;
  let failed = 0;
  let dropped = 0;
  let outOfOrder = 0;
  let events = 0;
  let endedCleanly = 0; // the server ended the response (last chunk, then FIN)

  // Explicit local ports: with bind-before-connect the kernel's search for a
  // free ephemeral port of one address gets slower as its ports fill up
  // (mostly system time); choosing them ourselves keeps every connect O(1).
  let nextPort = 10_000;
  function open(opts) {
    return new Promise((resolve) => {
      if (nextPort > 65_000) {
        failed++;
        resolve();
        return;
      }
      const socket = net.connect({ host: "127.0.0.1", port: opts.port, localAddress: opts.localAddress, localPort: nextPort++ });
      const conn = { socket, head: true, text: "", count: 0, last: -1, ok: false, done: false };
      let settled = false;
      const settle = (ok) => {
        if (settled) return;
        settled = true;
        if (ok) held++;
        else failed++;
        resolve();
      };
      socket.setNoDelay(true);
      socket.on("connect", () => {
        socket.write(`GET ${opts.path} HTTP/1.1\r\nHost: 127.0.0.1:${opts.port}\r\nAccept: text/event-stream\r\n\r\n`);
      });
      socket.on("data", (chunk) => {
        let text = conn.text + chunk.toString("latin1");
        if (conn.head) {
          const end = text.indexOf("\r\n\r\n");
          if (end === -1) {
            conn.text = text;
            return;
          }
          conn.head = false;
          conn.ok = text.startsWith("HTTP/1.1 200");
          settle(conn.ok);
          if (!conn.ok) {
            socket.destroy();
            return;
          }
          text = text.slice(end + 4);
        }
        const t = now();
        let start = 0;
        for (;;) {
          const nl = text.indexOf("\n", start);
          if (nl === -1) break;
          if (text.startsWith("data:", start)) {
            const line = text.slice(start + 5, nl);
            const space = line.indexOf(" ");
            const seq = Number(line.slice(0, space));
            const sent = Number(line.slice(space + 1));
            if (seq <= conn.last) outOfOrder++;
            conn.last = seq;
            conn.count++;
            events++;
            const ms = Math.max(0, Math.min(HIST_MS, Math.round(t - sent)));
            latency[ms]++;
            const pe = (perEvent[seq] ??= [0, Infinity, 0]);
            pe[0]++;
            if (ms < pe[1]) pe[1] = ms;
            if (ms > pe[2]) pe[2] = ms;
          }
          start = nl + 1;
        }
        conn.text = text.slice(start);
        // The terminating chunk of a chunked response: the server ended the stream.
        if (text.endsWith("0\r\n\r\n")) conn.done = true;
      });
      socket.on("end", () => {
        if (conn.ok && conn.done) endedCleanly++;
        socket.end();
      });
      socket.on("error", (err) => {
        if (err.code === "EADDRINUSE" && !settled) {
          // That port of our address is taken (another program): try the next one.
          settled = true;
          conns.splice(conns.indexOf(conn), 1);
          open(opts).then(resolve);
          return;
        }
        settle(false);
      });
      socket.on("close", () => {
        if (conn.ok && !client.closing && !client.serverStopping) dropped++;
        settle(false);
      });
      conns.push(conn);
    });
  }

  const client = { closing: false, serverStopping: false };
  process.on("message", async (msg) => {
    if (msg.cmd === "connect") {
      const t0 = Date.now();
      let next = 0;
      const worker = async () => {
        while (next < msg.count) {
          next++;
          await open(msg);
        }
      };
      const progress = setInterval(() => process.send({ type: "progress", held, failed }), 1000);
      await Promise.all(Array.from({ length: msg.concurrency }, worker));
      clearInterval(progress);
      process.send({ type: "connected", held, failed, ms: Date.now() - t0 });
    } else if (msg.cmd === "report") {
      let complete = 0;
      for (const c of conns) if (c.ok && c.count >= msg.expected) complete++;
      process.send({
        type: "report",
        held,
        failed,
        dropped,
        outOfOrder,
        events,
        complete,
        endedCleanly,
        open: conns.filter((c) => c.ok && !c.socket.destroyed && !c.socket.readableEnded).length,
        latency: msg.withLatency ? Buffer.from(latency.buffer).toString("base64") : undefined,
        perEvent,
      });
    } else if (msg.cmd === "server-stopping") {
      client.serverStopping = true;
      process.send({ type: "ack" });
    } else if (msg.cmd === "exit") {
      client.closing = true;
      for (const c of conns) c.socket.destroy();
      setTimeout(() => process.exit(0), 100);
    }
  });
  process.on("disconnect", () => process.exit(0));
}

// ---------------------------------------------------------------- orchestrator

const children = [];
function cleanup() {
  for (const child of children.splice(0).reverse()) {
    try {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
}
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}
process.on("exit", cleanup);

function rss(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function fdCount(pid) {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

function childPids(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const MB = (bytes) => Math.round(bytes / 1048576);

async function waitFor(check, timeout, what) {
  const deadline = Date.now() + timeout;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(100);
  }
}

function post(url, body) {
  return new Promise((resolve, reject) => {
    const req = require("node:http").request(url, { method: "POST", agent: false, timeout: 30_000 }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("timeout", () => req.destroy(new Error("timeout")));
    req.on("error", reject);
    req.end(body);
  });
}

function percentile(hist, total, p) {
  const target = Math.ceil(total * p);
  let seen = 0;
  for (let ms = 0; ms < hist.length; ms++) {
    seen += hist[ms];
    if (seen >= target) return ms;
  }
  return hist.length - 1;
}

async function main() {
  const { values } = parseArgs({
    options: {
      subscribers: { type: "string", default: "100000" },
      workers: { type: "string", default: "8" },
      events: { type: "string", default: "10" },
      interval: { type: "string", default: "2000" },
      "per-client": { type: "string", default: "19000" },
      concurrency: { type: "string", default: "250" },
      timeout: { type: "string", default: "600" },
    },
  });
  const subscribers = Number(values.subscribers);
  const workers = Number(values.workers);
  const eventCount = Number(values.events);
  const interval = Number(values.interval);
  const deadline = Date.now() + Number(values.timeout) * 1000;
  const left = () => Math.max(1000, deadline - Date.now());
  const overall = setTimeout(() => {
    console.error(`scale-100k: gave up after ${values.timeout} s`);
    cleanup();
    process.exit(1);
  }, Number(values.timeout) * 1000);
  overall.unref();

  const cli = path.join(ROOT, "dist", "cli.js");
  if (!fs.existsSync(cli)) throw new Error("dist/cli.js is missing: run `npm run build` first");
  const { subscribeToken, submitToken } = require(path.join(ROOT, "dist", "index.js"));

  // Per-process socket budget: the open-file limit (20000 here) minus headroom.
  const nofile = Number(execFileSync("sh", ["-c", "ulimit -n"], { encoding: "utf8" }).trim()) || 1024;
  const perClient = Math.min(Number(values["per-client"]), nofile - 200);
  const clientCount = Math.ceil(subscribers / perClient);
  const perWorker = Math.ceil(subscribers / workers);
  if (perWorker * 1.15 > nofile - 200) {
    throw new Error(`${workers} workers would hold ~${perWorker} sockets each, above the open-file limit ${nofile}: use more --workers`);
  }
  console.log(
    `scale-100k: ${subscribers} subscribers from ${clientCount} client processes (≤ ${perClient} each, ulimit -n ${nofile}), ` +
      `${workers} workers, ${eventCount} events every ${interval} ms, ${os.cpus().length} CPUs, node ${process.version}`,
  );

  // Redis, no persistence.
  const redisPort = await freePort();
  const redisDir = fs.mkdtempSync(path.join(os.tmpdir(), "scale-redis-"));
  const redis = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", redisDir], {
    stdio: "ignore",
  });
  children.push(redis);
  await waitFor(
    () =>
      new Promise((resolve) => {
        const s = net.connect(redisPort, "127.0.0.1", () => {
          s.end();
          resolve(true);
        });
        s.on("error", () => resolve(false));
      }),
    10_000,
    "redis-server",
  );

  // The standalone server with workers.
  const secret = crypto.randomBytes(32).toString("hex");
  const server = spawn(process.execPath, [cli], {
    env: { ...process.env, SSE_SECRET: secret, HOST: "127.0.0.1", PORT: "0", REDIS_URL: `redis://127.0.0.1:${redisPort}`, WORKERS: String(workers) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(server);
  let serverOutput = "";
  server.stdout.on("data", (d) => (serverOutput += d));
  server.stderr.on("data", (d) => (serverOutput += d));
  await waitFor(() => /listening on (\S+)/.test(serverOutput), 60_000, "the server's startup line");
  const base = /listening on (\S+)/.exec(serverOutput)[1];
  const port = Number(new URL(base).port);
  console.log(serverOutput.trim().split("\n")[0]);
  const serverPids = () => [server.pid, ...childPids(server.pid)];
  const serverRss = () => serverPids().reduce((sum, pid) => sum + rss(pid), 0);
  const rssIdle = serverRss();

  // Clients.
  const token = subscribeToken(secret, ["scale"]);
  const clients = [];
  for (let i = 0; i < clientCount; i++) {
    const child = fork(__filename, [], { env: { ...process.env, SCALE_ROLE: "client" }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    children.push(child);
    const state = { child, held: 0, failed: 0, connected: false, report: undefined };
    child.on("message", (msg) => {
      if (msg.type === "progress" || msg.type === "connected") {
        state.held = msg.held;
        state.failed = msg.failed;
        if (msg.type === "connected") state.connected = true;
      } else if (msg.type === "report") state.report = msg;
    });
    clients.push(state);
  }
  const t0 = Date.now();
  let assigned = 0;
  clients.forEach((c, i) => {
    const count = Math.min(perClient, subscribers - assigned, Math.ceil((subscribers - assigned) / (clientCount - i)));
    assigned += count;
    c.child.send({
      cmd: "connect",
      port,
      path: new URL(base).pathname.replace(/\/$/, "") + "/events?token=" + encodeURIComponent(token),
      count,
      localAddress: `127.0.0.${2 + i}`,
      concurrency: Number(values.concurrency),
    });
  });
  const sum = (f) => clients.reduce((s, c) => s + f(c), 0);
  let lastPrint = 0;
  await waitFor(
    () => {
      if (Date.now() - lastPrint > 5000) {
        lastPrint = Date.now();
        console.log(`  connecting: ${sum((c) => c.held)} held, ${sum((c) => c.failed)} failed, ${Math.round((Date.now() - t0) / 1000)} s`);
      }
      return clients.every((c) => c.connected);
    },
    left(),
    "all subscribers to connect",
  );
  const connectMs = Date.now() - t0;
  const held = sum((c) => c.held);
  const failed = sum((c) => c.failed);
  console.log(`  connected: ${held} held, ${failed} failed in ${(connectMs / 1000).toFixed(1)} s`);
  const perWorkerRss = childPids(server.pid).map((pid) => MB(rss(pid)));
  const perWorkerFds = childPids(server.pid).map((pid) => fdCount(pid));
  console.log(`  sockets per worker: ${perWorkerFds.join(", ")}; RSS MiB per worker: ${perWorkerRss.join(", ")}`);
  await sleep(2000);
  const rssHeld = serverRss();

  // Publish.
  let rssPeak = rssHeld;
  const sampler = setInterval(() => (rssPeak = Math.max(rssPeak, serverRss())), 250);
  const submitStatus = [];
  for (let seq = 0; seq < eventCount; seq++) {
    const body = submitToken(secret, [{ topic: "scale", event: "tick", data: `${seq} ${now().toFixed(3)}` }]);
    // A new connection per submit: a kept-alive one may be closed by the
    // server between two events, and a POST is not retried.
    const status = await post(`${base}/submit`, body).catch((err) => {
      console.error(`  submit ${seq} failed: ${err.code || err.message}`);
      return String(err.code || err.message);
    });
    submitStatus.push(status);
    if (seq < eventCount - 1) await sleep(interval);
  }
  const expected = eventCount;

  // Wait for delivery (reports every second), at most 60 s after the last event.
  const ask = async (withLatency) => {
    for (const c of clients) c.report = undefined;
    for (const c of clients) c.child.send({ cmd: "report", expected, withLatency });
    await waitFor(() => clients.every((c) => c.report !== undefined), 30_000, "client reports");
    return clients.map((c) => c.report);
  };
  const settleBy = Date.now() + Math.min(60_000, left());
  let reports = await ask(false);
  while (reports.reduce((s, r) => s + r.complete, 0) < held && Date.now() < settleBy) {
    await sleep(1000);
    reports = await ask(false);
  }
  reports = await ask(true);
  clearInterval(sampler);

  const hist = new Float64Array(HIST_MS + 1);
  for (const r of reports) {
    const h = new Uint32Array(Buffer.from(r.latency, "base64").buffer.slice(0));
    for (let i = 0; i < h.length; i++) hist[i] += h[i];
  }
  const delivered = reports.reduce((s, r) => s + r.events, 0);
  // Per event: how long until the first and the last subscriber had it.
  const perEvent = [];
  for (let seq = 0; seq < eventCount; seq++) {
    let first = Infinity;
    let last = 0;
    for (const r of reports) {
      const pe = r.perEvent[seq];
      if (pe) {
        first = Math.min(first, pe[1]);
        last = Math.max(last, pe[2]);
      }
    }
    perEvent.push({ seq, firstMs: first, lastMs: last });
  }
  const complete = reports.reduce((s, r) => s + r.complete, 0);
  const result = {
    date: new Date().toISOString(),
    command: `node bench/scale-100k.js --subscribers ${subscribers} --workers ${workers} --events ${eventCount} --interval ${interval}`,
    machine: { cpus: os.cpus().length, cpu: os.cpus()[0] && os.cpus()[0].model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, nofile },
    subscribersRequested: subscribers,
    subscribersHeld: held,
    connectFailures: failed,
    connectSeconds: +(connectMs / 1000).toFixed(1),
    clientProcesses: clientCount,
    workers,
    events: eventCount,
    submitStatuses: [...new Set(submitStatus)],
    deliveries: delivered,
    deliveriesExpected: held * eventCount,
    deliveredPercent: +((100 * delivered) / (held * eventCount)).toFixed(4),
    subscribersWithEveryEvent: complete,
    droppedConnections: reports.reduce((s, r) => s + r.dropped, 0),
    outOfOrder: reports.reduce((s, r) => s + r.outOfOrder, 0),
    latencyMs: { p50: percentile(hist, delivered, 0.5), p99: percentile(hist, delivered, 0.99), max: percentile(hist, delivered, 1) },
    perEventMs: perEvent.map((e) => `${e.firstMs}..${e.lastMs}`),
    serverRssMiB: { idle: MB(rssIdle), holding: MB(rssHeld), peak: MB(rssPeak), perWorkerAtConnect: perWorkerRss },
    socketsPerWorker: perWorkerFds,
    redisRssMiB: MB(rss(redis.pid)),
  };

  // Graceful shutdown with every stream still open: SIGTERM, timed until the
  // server exits; clients count streams that ended cleanly (last chunk + FIN).
  for (const c of clients) c.child.send({ cmd: "server-stopping" });
  await sleep(200);
  const tStop = Date.now();
  server.kill("SIGTERM");
  const code = await new Promise((resolve) => {
    if (server.exitCode !== null) resolve(server.exitCode);
    server.once("exit", (c) => resolve(c));
    setTimeout(() => resolve("timeout"), 30_000);
  });
  const stopSeconds = +((Date.now() - tStop) / 1000).toFixed(1);
  const after = await ask(false);
  result.shutdown = {
    exitCode: code,
    seconds: stopSeconds,
    streamsEndedCleanly: after.reduce((s, r) => s + r.endedCleanly, 0),
    streamsStillOpen: after.reduce((s, r) => s + r.open, 0),
  };
  for (const c of clients) c.child.send({ cmd: "exit" });
  await sleep(300);
  cleanup();
  fs.rmSync(redisDir, { recursive: true, force: true });

  fs.writeFileSync(path.join(__dirname, "scale-100k-result.json"), JSON.stringify(result, null, 2) + "\n");
  console.log(JSON.stringify(result, null, 2));
  if (!submitStatus.every((st) => st === 200)) console.log(serverOutput);
  const ok = held === subscribers && complete === held && delivered === held * eventCount && result.outOfOrder === 0;
  console.log(
    `\nscale-100k: ${ok ? "OK" : "FAILED"}: ${held} subscribers held, ${result.deliveredPercent}% of ${eventCount} events delivered to every one ` +
      `(${complete} complete), latency p50 ${result.latencyMs.p50} ms / p99 ${result.latencyMs.p99} ms, ` +
      `server RSS ${result.serverRssMiB.holding} MiB holding (${result.serverRssMiB.peak} MiB peak), Redis ${result.redisRssMiB} MiB`,
  );
  process.exit(ok ? 0 : 1);
}
