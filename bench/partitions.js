#!/usr/bin/env node
/**
 * Partitions simulation (issue 15, "Past one Redis"), a benchmark script, not
 * a test:
 *
 *   npm run build && npm run bench:partitions
 *   node bench/partitions.js [--topics 20000] [--instances 4] [--online 0.2] [--per-conn 40]
 *                            [--rate 1000] [--seconds 8] [--payload 200] [--cluster]
 *                            [--runs 1:random,16:random,16:affine]
 *
 * Per-user topics with sparse subscribers: `--topics` topics (u0, u1, ...),
 * a seeded random `--online` fraction of them has one subscriber, held by
 * one of `--instances` hub instances (child processes running the library
 * from dist/ with the Redis broker, bench/lib/partition-instance.js). A
 * publisher (a RedisBroker in this process) publishes one-event batches to
 * uniformly random topics (online or not) at `--rate` events/s for
 * `--seconds`. Each run is `P:placement`:
 *
 * - P: the broker's `partitions` (1 = today's single stream; P > 1 needs a
 *   build with partitioning, otherwise the run is reported as skipped).
 * - placement `random`: each online topic on a random instance (what a load
 *   balancer that knows nothing of topics does); `affine`: on instance
 *   `partition(topic) mod instances` (a partition-aware router), using the
 *   broker's `partitionOf(topic)`.
 *
 * Measured per instance over the publishing window (snapshots before and
 * after; the window ends once every subscriber has every event published to
 * its topics: counted at the client, so nothing lost is checked too):
 * events read from Redis (the router's `eventsPublished`, "events received
 * from the broker"), events delivered (`eventsDelivered`), bytes received
 * from Redis (kernel counters of the instance's TCP connections to Redis,
 * `ss -ti` `bytes_received`: independent of the broker's own accounting),
 * CPU time of the process, and the broker's own counters when it has them
 * (`broker.stats`). Redis: CPU (INFO cpu), bytes in/out and commands (INFO
 * stats). Subscribers hold `--per-conn` topics per connection (one SSE
 * connection per user would cost the bench more sockets, not the instances
 * more reading: what is read from Redis depends on the set of topics only).
 *
 * Fan-out (`--fanout 1,50`, "" to skip): Redis's own cost per published
 * event as a function of how many connections read the channel, with no
 * hub in the way: a publisher broker (one stream) and N - 1 plain
 * subscriber connections on its channel; Redis CPU and bytes out per
 * published event for each N. The model in docs/DEPLOY.md uses the slope.
 *
 * `--cluster`: the same on a 3-master Redis Cluster (started with the tests'
 * harness), with Redis CPU and network per node.
 *
 * Writes bench/results/partitions.md and bench/results/partitions.json
 * (`--out` changes the path, without the extension).
 * Everything it starts is stopped at the end, also on error or Ctrl-C.
 */
"use strict";
const { fork, spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const { parseArgs } = require("node:util");
const { freePort } = require("./lib/ports");
const { prng } = require("./lib/corpus");

const ROOT = path.join(__dirname, "..");
const DIST = path.join(ROOT, "dist");
const RESULTS = path.join(__dirname, "results");
const SECRET = "5b1c0e7f3a9d2e4c6b8a0f1e3d5c7b9a2f4e6d8c0b1a3f5e7d9c2b4a6f8e0d1c";
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
/** The quiet stretch before publishing over which idle CPU is measured. */
const IDLE_MS = 2000;
/** Publishes awaiting Redis's answer at most: enough for the rate, few enough that a slow machine does not queue them past publishTimeout. */
const MAX_INFLIGHT = 300;

const { values: flags } = parseArgs({
  options: {
    topics: { type: "string", default: "20000" },
    instances: { type: "string", default: "4" },
    online: { type: "string", default: "0.2" },
    "per-conn": { type: "string", default: "40" },
    rate: { type: "string", default: "1000" },
    seconds: { type: "string", default: "8" },
    payload: { type: "string", default: "200" },
    runs: { type: "string", default: "1:random,16:random,16:affine" },
    cluster: { type: "boolean", default: false },
    fanout: { type: "string", default: "1,50" },
    out: { type: "string", default: path.join(RESULTS, "partitions") },
  },
});
const TOPICS = Number(flags.topics);
const INSTANCES = Number(flags.instances);
const ONLINE = Number(flags.online);
const PER_CONN = Number(flags["per-conn"]);
const RATE = Number(flags.rate);
const SECONDS = Number(flags.seconds);
const PAYLOAD = Number(flags.payload);
const RUNS = flags.runs.split(",").filter(Boolean).map((spec) => {
  const [p, placement] = spec.split(":");
  if (!/^\d+$/.test(p) || !["random", "affine"].includes(placement)) throw new Error(`bad run "${spec}": want P:random or P:affine`);
  return { partitions: Number(p), placement };
});

/** Everything started, stopped by cleanup() (also on error and signals). */
const procs = new Set();
const sockets = new Set();
function cleanup() {
  for (const s of sockets) s.destroy();
  for (const p of procs) if (p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
}
process.on("SIGINT", () => {
  cleanup();
  process.exit(130);
});
process.on("SIGTERM", () => {
  cleanup();
  process.exit(143);
});

// ---------------------------------------------------------------- processes

/**
 * A 3-master Redis Cluster (`--cluster`), started with the tests' harness
 * (__tests__/helpers/redis-cluster.ts, loaded through esbuild-register) so
 * there is one way to start one.
 */
async function startCluster() {
  require("esbuild-register/dist/node").register({ target: "node20" });
  const { RedisCluster } = require("../__tests__/helpers/redis-cluster.ts");
  const cluster = await RedisCluster.start();
  return {
    ports: cluster.servers.map((s) => s.port),
    brokerOptions: { cluster: cluster.startupNodes },
    stop: () => cluster.close(),
  };
}

function startRedis() {
  return freePort().then(
    (port) =>
      new Promise((resolve, reject) => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-partitions-"));
        const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], {
          stdio: ["ignore", "pipe", "pipe"],
        });
        procs.add(proc);
        let output = "";
        const timer = setTimeout(() => reject(new Error(`redis-server did not start in 10 s:\n${output}`)), 10_000);
        proc.stdout.on("data", (chunk) => {
          output += chunk;
          if (output.includes("Ready to accept connections")) {
            clearTimeout(timer);
            proc.stdout.resume();
            proc.stderr.resume();
            resolve({
              ports: [port],
              brokerOptions: { url: `redis://127.0.0.1:${port}` },
              proc,
              async stop() {
                proc.kill("SIGKILL");
                if (proc.exitCode === null && proc.signalCode === null) await new Promise((r) => proc.once("exit", r));
                procs.delete(proc);
                fs.rmSync(dir, { recursive: true, force: true });
              },
            });
          }
        });
        proc.once("exit", (code) => reject(new Error(`redis-server exited (${code}):\n${output}`)));
      }),
  );
}

/** A hub instance (child process); resolves with { pid, port, stats(), stop() } or { error }. */
function startInstance(config) {
  const child = fork(path.join(__dirname, "lib", "partition-instance.js"), [], {
    env: { ...process.env, PARTITION_INSTANCE: JSON.stringify(config) },
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  procs.add(child);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
    }
    procs.delete(child);
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("an instance did not start in 20 s")), 20_000);
    child.once("message", (msg) => {
      clearTimeout(timer);
      if (msg.error) {
        resolve({ error: msg.error, stop });
        return;
      }
      resolve({
        pid: child.pid,
        port: msg.port,
        stop,
        stats: () =>
          new Promise((res) => {
            child.once("message", (m) => res(m.stats));
            child.send("stats");
          }),
      });
    });
    child.once("exit", (code) => reject(new Error(`an instance exited (${code}) before it started`)));
  });
}

// ---------------------------------------------------------------- measurements

/** Bytes received per TCP connection to Redis on `redisPorts`, by owning pid: Map<pid, Map<localAddr, bytes>>. */
function redisBytesByPid(redisPorts) {
  const filter = `( ${redisPorts.map((port) => `dport = :${port}`).join(" or ")} )`;
  const out = execFileSync("ss", ["-tinpH", "state", "established", filter], { encoding: "utf8" });
  const byPid = new Map();
  let current;
  for (const line of out.split("\n")) {
    const users = /users:\(\("[^"]*",pid=(\d+)/.exec(line);
    if (users) {
      const local = line.trim().split(/\s+/)[2];
      current = { pid: Number(users[1]), local };
      continue;
    }
    const bytes = /bytes_received:(\d+)/.exec(line);
    if (bytes && current) {
      if (!byPid.has(current.pid)) byPid.set(current.pid, new Map());
      byPid.get(current.pid).set(current.local, Number(bytes[1]));
      current = undefined;
    }
  }
  return byPid;
}

/** Bytes received since `before` over `pid`'s connections (a connection opened meanwhile counts from 0). */
function bytesSince(before, after, pid) {
  const a = after.get(pid) ?? new Map();
  const b = before.get(pid) ?? new Map();
  let sum = 0;
  for (const [local, bytes] of a) sum += bytes - (b.get(local) ?? 0);
  return sum;
}

/** CPU time (user + system) of an instance between two of its stats, in ms. */
const cpuMs = (before, after) => (after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system) / 1000;

/** INFO fields of a Redis node as numbers, and per command: calls and µs (what the Redis CPU went to). */
async function redisInfo(client) {
  const text = (await client.info("cpu")) + (await client.info("stats"));
  const get = (name) => Number(new RegExp(`^${name}:([0-9.]+)`, "m").exec(text)?.[1] ?? NaN);
  const commandStats = {};
  for (const m of (await client.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm)) {
    commandStats[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  return {
    cpuMs: (get("used_cpu_sys") + get("used_cpu_user")) * 1000,
    netIn: get("total_net_input_bytes"),
    netOut: get("total_net_output_bytes"),
    commands: get("total_commands_processed"),
    commandStats,
  };
}

/** The per-node Redis deltas added up (commandStats per command). */
function sumNodes(nodes) {
  const total = { cpuMs: 0, netIn: 0, netOut: 0, commands: 0, commandStats: {} };
  for (const node of nodes) {
    for (const k of ["cpuMs", "netIn", "netOut", "commands"]) total[k] += node[k];
    for (const [cmd, v] of Object.entries(node.commandStats)) {
      const t = (total.commandStats[cmd] ??= { calls: 0, usec: 0 });
      t.calls += v.calls;
      t.usec += v.usec;
    }
  }
  return total;
}

/** Numeric fields of `after` minus `before`, recursively (the broker's counters, whatever their shape). */
function numericDelta(before, after) {
  if (typeof after === "number") return after - (typeof before === "number" ? before : 0);
  if (after && typeof after === "object") {
    const out = Array.isArray(after) ? [] : {};
    for (const [k, v] of Object.entries(after)) {
      const d = numericDelta(before?.[k], v);
      if (d !== undefined) out[k] = d;
    }
    return out;
  }
  return undefined;
}

// ---------------------------------------------------------------- subscribers

/** One SSE connection for `topics`: counts `data:` lines of events and of readiness marks. */
function subscribe(port, topics, subscribeToken) {
  const conn = { topics, status: 0, events: 0, marks: 0, expected: 0 };
  const token = subscribeToken(SECRET, topics);
  return new Promise((resolve, reject) => {
    const req = http.get({ host: "127.0.0.1", port, path: `/events?token=${encodeURIComponent(token)}`, agent: false }, (res) => {
      conn.status = res.statusCode;
      if (res.statusCode !== 200) {
        reject(new Error(`GET /events answered ${res.statusCode}`));
        return;
      }
      sockets.add(res.socket);
      res.setEncoding("utf8");
      let rest = "";
      res.on("data", (chunk) => {
        const lines = (rest + chunk).split("\n");
        rest = lines.pop();
        for (const line of lines) {
          if (line.startsWith("data:{")) conn.events++;
          else if (line === "data:mark") conn.marks++;
        }
      });
      conn.close = () => res.socket.destroy();
      resolve(conn);
    });
    req.on("error", reject);
  });
}

async function waitUntil(check, timeout, what) {
  const deadline = Date.now() + timeout;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(25);
  }
}

// ---------------------------------------------------------------- one run

/** The online topics (same for every run) and a stable random order of instances for `random` placement. */
function population() {
  const rnd = prng(15);
  const online = [];
  const randomHolder = new Map();
  for (let i = 0; i < TOPICS; i++) {
    if (rnd() < ONLINE) {
      const topic = `u${i}`;
      online.push(topic);
      randomHolder.set(topic, Math.floor(rnd() * INSTANCES));
    }
  }
  return { online, randomHolder };
}

async function run(spec, pop, lib) {
  const label = `P=${spec.partitions} ${spec.placement}`;
  const brokerOptions = spec.partitions > 1 ? { partitions: spec.partitions } : {};
  const redis = flags.cluster ? await startCluster() : await startRedis();
  const instances = [];
  let publisher;
  const conns = [];
  try {
    // On a Cluster one stream needs a hash tag (its keys in one slot); partitions bring their own.
    const key = flags.cluster && spec.partitions === 1 ? "{bench}:partitions" : "bench:partitions";
    Object.assign(brokerOptions, redis.brokerOptions);
    const started = await Promise.all(
      Array.from({ length: INSTANCES }, () => startInstance({ key, secret: SECRET, broker: brokerOptions })),
    );
    instances.push(...started);
    const failed = started.find((i) => i.error);
    if (failed) return { label, ...spec, skipped: `this build's broker refused the options: ${failed.error.split("\n")[0]}` };

    publisher = lib.createRedisBroker({ key, log: null, ...brokerOptions });
    await publisher.start(() => undefined);
    if (!(await publisher.waitUntilReady(10_000))) throw new Error("the publisher's broker did not get ready");
    let holderOf;
    if (spec.placement === "random") holderOf = (t) => pop.randomHolder.get(t);
    else if (typeof publisher.partitionOf === "function") holderOf = (t) => publisher.partitionOf(t) % INSTANCES;
    else return { label, ...spec, skipped: "affine placement needs the broker's partitionOf(topic)" };
    const Redis = require("ioredis");
    const admins = redis.ports.map((port) => new Redis({ host: "127.0.0.1", port }));
    const redisInfos = () => Promise.all(admins.map(redisInfo));

    // Subscribers: each instance's topics in connections of PER_CONN.
    const byInstance = Array.from({ length: INSTANCES }, () => []);
    for (const topic of pop.online) byInstance[holderOf(topic)].push(topic);
    const connOf = new Map();
    for (let i = 0; i < INSTANCES; i++) {
      const topics = byInstance[i];
      for (let j = 0; j < topics.length; j += PER_CONN) {
        const conn = await subscribe(instances[i].port, topics.slice(j, j + PER_CONN), lib.subscribeToken);
        conn.instance = i;
        conns.push(conn);
        for (const t of conn.topics) connOf.set(t, conn);
      }
    }
    // Ready when every connection got a mark published after it subscribed (the
    // instance reads what its subscribers need: a mark proves it does for each).
    await Promise.all(conns.map((c) => publisher.publish([{ topic: c.topics[0], event: "mark", data: "mark" }])));
    await waitUntil(() => conns.every((c) => c.marks >= 1), 30_000, "a readiness mark on every connection");

    // Idle CPU (timers, heartbeats) over a quiet stretch, to tell it from the cost of reading.
    const idleFrom = await Promise.all(instances.map((i) => i.stats()));
    const idleStart = performance.now();
    await sleep(IDLE_MS);
    const idleSeconds = (performance.now() - idleStart) / 1000;
    const before = {
      stats: await Promise.all(instances.map((i) => i.stats())),
      bytes: redisBytesByPid(redis.ports),
      redis: await redisInfos(),
    };

    // Publish one-event batches to random topics at RATE for SECONDS.
    const rnd = prng(spec.partitions * 7 + 1);
    const pad = "x".repeat(Math.max(0, PAYLOAD - 30));
    let sent = 0;
    let acked = 0;
    let failedPublishes = 0;
    const publishErrors = new Map();
    const t0 = performance.now();
    const end = t0 + SECONDS * 1000;
    const inflight = new Set();
    while (performance.now() < end) {
      const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
      // A bounded number in flight: under load the rate falls short (reported) instead of queueing past publishTimeout.
      while (sent < due && inflight.size < MAX_INFLIGHT) {
        const topic = `u${Math.floor(rnd() * TOPICS)}`;
        const n = sent++;
        const p = publisher.publish([{ topic, event: "n", data: `{"n":${n},"pad":"${pad}"}` }]).then(
          () => {
            acked++;
            const conn = connOf.get(topic);
            if (conn) conn.expected++;
          },
          (err) => {
            failedPublishes++;
            const cause = err && err.cause ? ` (${err.cause.message ?? err.cause})` : "";
            const reason = String(err && err.message).slice(0, 120) + cause.slice(0, 120);
            publishErrors.set(reason, (publishErrors.get(reason) ?? 0) + 1);
          },
        );
        inflight.add(p);
        p.finally(() => inflight.delete(p));
      }
      await sleep(5);
    }
    await Promise.all(inflight);
    const publishSeconds = (performance.now() - t0) / 1000;
    await waitUntil(() => conns.every((c) => c.events >= c.expected), 30_000, "every subscriber's events").catch(() => undefined);
    const windowSeconds = (performance.now() - t0) / 1000;

    const after = {
      stats: await Promise.all(instances.map((i) => i.stats())),
      bytes: redisBytesByPid(redis.ports),
      redis: await redisInfos(),
    };
    for (const admin of admins) admin.disconnect();

    const perInstance = instances.map((inst, i) => {
      const b = before.stats[i];
      const a = after.stats[i];
      const mine = conns.filter((c) => c.instance === i);
      const expected = mine.reduce((s, c) => s + c.expected, 0);
      const received = mine.reduce((s, c) => s + c.events, 0);
      return {
        topicsHeld: byInstance[i].length,
        eventsRead: a.router.eventsPublished - b.router.eventsPublished,
        eventsDelivered: a.router.eventsDelivered - b.router.eventsDelivered,
        bytesFromRedis: bytesSince(before.bytes, after.bytes, inst.pid),
        cpuMs: cpuMs(b, a),
        idleCpuMsPerSecond: cpuMs(idleFrom[i], b) / idleSeconds,
        expected,
        received,
        lost: Math.max(0, expected - received),
        extra: Math.max(0, received - expected),
        // The broker's per-partition counters (events and bytes read), when it keeps them.
        partitionsRead: a.broker ? numericDelta(b.broker, a.broker).filter((p) => p.eventsRead > 0).length : null,
        broker: a.broker ? numericDelta(b.broker, a.broker) : null,
      };
    });
    return {
      label,
      ...spec,
      published: acked,
      failedPublishes,
      publishErrors: Object.fromEntries(publishErrors),
      publishSeconds,
      windowSeconds,
      publishedPerSecond: acked / publishSeconds,
      publisherBytesFromRedis: bytesSince(before.bytes, after.bytes, process.pid),
      // Whole Redis (all nodes), and per node on a Cluster.
      redis: sumNodes(numericDelta(before.redis, after.redis)),
      redisNodes: numericDelta(before.redis, after.redis),
      instances: perInstance,
    };
  } finally {
    for (const c of conns) c.close?.();
    await publisher?.close().catch(() => undefined);
    await Promise.all(instances.map((i) => i.stop()));
    await redis.stop();
  }
}

// ---------------------------------------------------------------- fan-out

/** Redis CPU and bytes out per published event with `readers` connections reading the stream's channel. */
async function fanout(readers, lib) {
  const Redis = require("ioredis");
  const redis = await startRedis();
  const publisher = lib.createRedisBroker({ ...redis.brokerOptions, key: "bench:fanout", log: null });
  const subs = [];
  try {
    await publisher.start(() => undefined);
    if (!(await publisher.waitUntilReady(10_000))) throw new Error("the publisher's broker did not get ready");
    // The publisher's own reader is one; the others are bare subscriptions that only receive.
    for (let i = 1; i < readers; i++) {
      const sub = new Redis({ host: "127.0.0.1", port: redis.ports[0] });
      await sub.subscribe(publisher.channel);
      subs.push(sub);
    }
    const admin = new Redis({ host: "127.0.0.1", port: redis.ports[0] });
    const count = RATE * 3;
    const pad = "x".repeat(Math.max(0, PAYLOAD - 30));
    const before = await redisInfo(admin);
    const inflight = new Set();
    for (let n = 0; n < count; n++) {
      while (inflight.size >= MAX_INFLIGHT) await Promise.race(inflight);
      const p = publisher.publish([{ topic: `u${n % TOPICS}`, event: "n", data: `{"n":${n},"pad":"${pad}"}` }]).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    await Promise.all(inflight);
    const after = await redisInfo(admin);
    admin.disconnect();
    const d = numericDelta(before, after);
    return { readers, published: count, cpuUsPerEvent: (d.cpuMs * 1000) / count, outBytesPerEvent: d.netOut / count, inBytesPerEvent: d.netIn / count };
  } finally {
    for (const sub of subs) sub.disconnect();
    await publisher.close().catch(() => undefined);
    await redis.stop();
  }
}

// ---------------------------------------------------------------- report

const fmt = (n, digits = 0) => (Number.isFinite(n) ? n.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: digits }) : "–");
const sum = (xs, f) => xs.reduce((s, x) => s + f(x), 0);

function markdown(meta, results, fanouts) {
  const lines = [
    "# Partitions simulation (bench/partitions.js)",
    "",
    `- ${meta.date}, node ${meta.node}, ${meta.cpus} cores, load average ${meta.loadBefore.map((l) => l.toFixed(2)).join(" ")} before, ${meta.loadAfter.map((l) => l.toFixed(2)).join(" ")} after; redis ${meta.redis}`,
    `- \`node bench/partitions.js ${meta.argv}\`${flags.cluster ? " (a 3-master Redis Cluster)" : " (one redis-server)"}: ${fmt(TOPICS)} per-user topics, ${+(ONLINE * 100).toPrecision(3)}% online (one subscriber each, ${PER_CONN} topics per SSE connection), ${INSTANCES} instances, ${fmt(RATE)} events/s of ~${PAYLOAD} bytes to uniformly random topics for ${SECONDS} s`,
    "- Per instance, mean over the instances (min–max in the JSON): events read from Redis, events delivered to its subscribers, bytes received from Redis (kernel TCP counters of its connections), CPU of the process.",
    "",
    "| run | published ev/s | partitions read per instance | read ev/s per instance | delivered ev/s per instance | read ÷ delivered | KiB/s from Redis per instance | bytes read per delivered event | instance CPU ms/s | CPU µs per read event (above idle) | Redis CPU ms/s | Redis out KiB/s | lost / extra / failed publishes |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const r of results) {
    if (r.skipped) {
      lines.push(`| ${r.label} | skipped: ${r.skipped} ||||||||||||`);
      continue;
    }
    const n = r.instances.length;
    const w = r.windowSeconds;
    const read = sum(r.instances, (i) => i.eventsRead);
    const delivered = sum(r.instances, (i) => i.eventsDelivered);
    const bytes = sum(r.instances, (i) => i.bytesFromRedis);
    const cpu = sum(r.instances, (i) => i.cpuMs);
    const idle = sum(r.instances, (i) => i.idleCpuMsPerSecond) * w;
    const parts = r.instances[0].partitionsRead === null ? "1 (one stream)" : `${fmt(sum(r.instances, (i) => i.partitionsRead) / n, 1)} of ${r.partitions}`;
    lines.push(
      `| ${r.label} | ${fmt(r.publishedPerSecond)} | ${parts} | ${fmt(read / n / w)} | ${fmt(delivered / n / w)} | ${fmt(read / delivered, 1)} | ${fmt(bytes / n / w / 1024, 1)} | ${fmt(bytes / delivered)} | ${fmt(cpu / n / w, 1)} (idle ${fmt(idle / n / w, 1)}) | ${fmt(((cpu - idle) * 1000) / read, 1)} | ${fmt(r.redis.cpuMs / w, 1)} | ${fmt(r.redis.netOut / w / 1024, 1)} | ${sum(r.instances, (i) => i.lost)} / ${sum(r.instances, (i) => i.extra)} / ${r.failedPublishes} |`,
    );
  }
  lines.push(
    "",
    "Redis per published event (whole server; µs are Redis's own per-command timings, `INFO commandstats`):",
    "",
    "| run | Redis CPU µs | out bytes | in bytes | publish scripts (EVALSHA/EVAL) µs each | presence HSETs per published event |",
    "|---|---:|---:|---:|---:|---:|",
  );
  for (const r of results) {
    if (r.skipped) continue;
    const cs = r.redis.commandStats;
    const scripts = ["evalsha", "eval"].map((c) => cs[c] ?? { calls: 0, usec: 0 });
    const calls = scripts[0].calls + scripts[1].calls;
    const usec = scripts[0].usec + scripts[1].usec;
    lines.push(
      `| ${r.label} | ${fmt((r.redis.cpuMs * 1000) / r.published, 1)} | ${fmt(r.redis.netOut / r.published)} | ${fmt(r.redis.netIn / r.published)} | ${fmt(usec / calls, 1)} | ${fmt((cs.hset?.calls ?? 0) / r.published, 2)} |`,
    );
  }
  if (results.some((r) => !r.skipped && r.redisNodes.length > 1)) {
    lines.push("", "Per Redis Cluster node (CPU ms/s, out KiB/s, commands/s):", "", "| run | " + "node | ".repeat(3).trim(), "|---|---|---|---|");
    for (const r of results) {
      if (r.skipped) continue;
      const w = r.windowSeconds;
      lines.push(`| ${r.label} | ${r.redisNodes.map((n) => `${fmt(n.cpuMs / w, 1)} ms/s, ${fmt(n.netOut / w / 1024, 1)} KiB/s, ${fmt(n.commands / w)}/s`).join(" | ")} |`);
    }
  }
  if (fanouts.length > 0) {
    lines.push(
      "",
      `Fan-out: one stream, N connections reading its channel (the publisher's broker and N − 1 bare subscribers), ${fmt(RATE * 3)} events published as fast as Redis answers (${MAX_INFLIGHT} in flight):`,
      "",
      "| readers N | Redis CPU µs per published event | Redis out bytes per published event | in bytes per published event |",
      "|---:|---:|---:|---:|",
      ...fanouts.map((f) => `| ${f.readers} | ${fmt(f.cpuUsPerEvent, 1)} | ${fmt(f.outBytesPerEvent)} | ${fmt(f.inBytesPerEvent)} |`),
    );
    if (fanouts.length >= 2) {
      const [a, b] = [fanouts[0], fanouts[fanouts.length - 1]];
      const slope = (b.cpuUsPerEvent - a.cpuUsPerEvent) / (b.readers - a.readers);
      lines.push("", `Slope: ${fmt(slope, 2)} µs of Redis CPU and ${fmt((b.outBytesPerEvent - a.outBytesPerEvent) / (b.readers - a.readers))} bytes out per extra reader per event; fixed part ≈ ${fmt(a.cpuUsPerEvent - slope * a.readers, 1)} µs.`);
    }
  }
  lines.push(
    "",
    "Redis figures are for the whole server (instances and the publisher, which runs in the bench process); the window runs from the first publish until every subscriber had every event of its topics. " +
      "A failed publish (rejected, e.g. after `publishTimeout`) may still have been stored: its deliveries show as extra.",
    "",
  );
  return lines.join("\n");
}

async function main() {
  for (const file of ["index.js", "redis.js"]) {
    if (!fs.existsSync(path.join(DIST, file))) throw new Error(`dist/${file} missing: run npm run build first`);
  }
  try {
    execFileSync("redis-server", ["--version"]);
    execFileSync("ss", ["-V"]);
  } catch {
    throw new Error("redis-server and ss (iproute2) are required on PATH");
  }
  const lib = { ...require(path.join(DIST, "index.js")), ...require(path.join(DIST, "redis.js")) };
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: os.cpus().length,
    redis: /v=(\S+)/.exec(execFileSync("redis-server", ["--version"], { encoding: "utf8" }))?.[1],
    argv: process.argv.slice(2).join(" "),
    loadBefore: os.loadavg(),
  };
  const pop = population();
  console.log(`${pop.online.length} of ${TOPICS} topics online, ${INSTANCES} instances; runs: ${flags.runs}`);
  const results = [];
  for (const spec of RUNS) {
    const started = Date.now();
    const r = await run(spec, pop, lib);
    results.push(r);
    if (r.skipped) console.log(`${r.label}: skipped (${r.skipped})`);
    else {
      const read = sum(r.instances, (i) => i.eventsRead) / r.instances.length;
      const delivered = sum(r.instances, (i) => i.eventsDelivered) / r.instances.length;
      console.log(
        `${r.label}: ${fmt(r.published)} published; per instance ${fmt(read)} read, ${fmt(delivered)} delivered, ` +
          `lost ${sum(r.instances, (i) => i.lost)}, extra ${sum(r.instances, (i) => i.extra)}, failed publishes ${r.failedPublishes} ` +
          `${JSON.stringify(r.publishErrors)} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
      );
    }
  }
  const fanouts = [];
  for (const readers of flags.fanout.split(",").filter(Boolean).map(Number)) {
    const f = await fanout(readers, lib);
    fanouts.push(f);
    console.log(`fan-out to ${readers} readers: Redis ${fmt(f.cpuUsPerEvent, 1)} µs CPU and ${fmt(f.outBytesPerEvent)} bytes out per published event`);
  }
  meta.loadAfter = os.loadavg();
  fs.mkdirSync(path.dirname(flags.out), { recursive: true });
  fs.writeFileSync(flags.out + ".json", JSON.stringify({ meta, options: { TOPICS, INSTANCES, ONLINE, PER_CONN, RATE, SECONDS, PAYLOAD, cluster: flags.cluster }, results, fanouts }, null, 2) + "\n");
  const md = markdown(meta, results, fanouts);
  fs.writeFileSync(flags.out + ".md", md);
  console.log("\n" + md);
}

main()
  .catch((err) => {
    console.error("partitions: " + (err && err.stack ? err.stack : err));
    process.exitCode = 1;
  })
  .finally(cleanup);
