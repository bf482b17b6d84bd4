#!/usr/bin/env node
/**
 * Standalone server: a drop-in replacement for the original `tvdw/sse-server`
 * Docker image. Configuration from the environment (the original's way) or
 * flags:
 *
 *   SSE_SECRET   64 hex characters (required)
 *   PORT         --port       default 8000
 *   HOST         --host       default all interfaces
 *   BASE_PATH    --base-path  default "/" (e.g. "/sse-server/" for the fork)
 *   SSE_HEALTH=1 --health     serve GET /health
 *   SSE_METRICS=1 --metrics   serve GET /metrics
 *   REDIS_URL    --redis-url  share events and history through Redis
 *                             (redis://[user:pass@]host:port[/db]); needs ioredis;
 *                             through Sentinel: redis+sentinel://[user:pass@]
 *                             host:port[,host:port...]/<master name>[/db]
 *   WORKERS      --workers    processes on one port (node:cluster), an integer
 *                             or "auto" (one per CPU); more than 1 needs REDIS_URL
 *
 * Logs one startup line and never logs tokens or Redis passwords.
 * SIGTERM/SIGINT close every stream cleanly and exit 0; with workers, the
 * primary forwards the signal, waits for every worker, then exits 0.
 */
import cluster, { type Worker } from "node:cluster";
import http from "node:http";
import os from "node:os";
import { parseArgs } from "node:util";
import { SseError } from "./errors";
import { parseSecret } from "./options";
import type { Broker } from "./broker";
import type * as RedisModule from "./redis";
import { createSseRouter, type SseRouter } from "./router";

export interface ServerConfig {
  secret: string;
  port: number;
  host: string | undefined;
  basePath: string;
  health: boolean;
  metrics: boolean;
  /** Redis URL: events and history go through a Redis Stream shared by every instance. */
  redisUrl?: string | undefined;
  /** Processes serving the port (node:cluster). Defaults to 1 (no cluster). */
  workers?: number | undefined;
}

function fail(message: string): never {
  throw new SseError("invalid_option", message);
}

/** Reads flags and environment into a config, or throws with a clear message. */
export function readConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ServerConfig {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: "string" },
      host: { type: "string" },
      "base-path": { type: "string" },
      health: { type: "boolean" },
      metrics: { type: "boolean" },
      "redis-url": { type: "string" },
      workers: { type: "string" },
    },
    strict: true,
  });
  const secret = env["SSE_SECRET"];
  if (secret === undefined || secret === "") {
    fail("SSE_SECRET is not set: give it 64 hex characters, e.g. SSE_SECRET=$(openssl rand -hex 32)");
  }
  parseSecret(secret, "SSE_SECRET"); // the router's own check, so both reject the same secrets
  const portText = values.port ?? env["PORT"] ?? "8000";
  const port = Number(portText);
  if (!/^[0-9]{1,5}$/.test(portText) || port > 65535) fail(`PORT must be a number from 0 to 65535; got "${portText}"`);
  let basePath = values["base-path"] ?? env["BASE_PATH"] ?? "/";
  if (!basePath.startsWith("/")) basePath = "/" + basePath;
  basePath = basePath.replace(/\/+$/, "") || "/";
  const flag = (v: string | undefined) => v === "1" || v === "true";
  const redisUrl = values["redis-url"] ?? (env["REDIS_URL"] || undefined);
  if (redisUrl !== undefined) {
    let protocol = "";
    try {
      protocol = redisUrl.startsWith(SENTINEL_SCHEME) ? SENTINEL_SCHEME : new URL(redisUrl).protocol;
    } catch {
      // reported below
    }
    if (protocol === SENTINEL_SCHEME) sentinelOptions(redisUrl); // throws on a malformed one
    else if (protocol !== "redis:" && protocol !== "rediss:") {
      fail("REDIS_URL must look like redis://host:6379 (or rediss:// for TLS, or redis+sentinel://host:26379/mymaster)");
    }
  }
  const workersText = values.workers ?? (env["WORKERS"] || "1");
  const workers = workersText === "auto" ? os.availableParallelism() : Number(workersText);
  if (workersText !== "auto" && (!/^[0-9]{1,4}$/.test(workersText) || workers < 1 || workers > 1024)) {
    fail(`WORKERS must be a number from 1 to 1024, or "auto"; got "${workersText}"`);
  }
  if (workers > 1 && redisUrl === undefined) {
    fail(
      `WORKERS=${workersText} needs REDIS_URL: every worker is a separate process with its own subscribers, ` +
        "so without a shared Redis an event submitted to one worker would never reach the others",
    );
  }
  return {
    secret,
    port,
    host: values.host ?? (env["HOST"] || undefined),
    basePath,
    health: values.health ?? flag(env["SSE_HEALTH"]),
    metrics: values.metrics ?? flag(env["SSE_METRICS"]),
    redisUrl,
    ...(workers > 1 ? { workers } : {}),
  };
}

const SENTINEL_SCHEME = "redis+sentinel:";
const SENTINEL_URL = /^redis\+sentinel:\/\/(?:([^@/]*)@)?([^@/]+)\/([^/]+)(?:\/([0-9]{1,2}))?\/?$/;

/**
 * `redis+sentinel://[user:pass@]h1:26379,h2:26379/<master name>[/db]` →
 * ioredis Sentinel options. The credentials are the master's (sentinels are
 * reached without a password). ioredis asks the sentinels for the current
 * master on every reconnect; a failover ends the old master's client
 * connections (Sentinel kills them when it demotes it), and a READONLY reply
 * (a demoted master still answering) reconnects too, so publishing moves to
 * the new master. Not ioredis's `failoverDetector`: in the chaos soak a
 * switch announced while a connection was being re-established left the
 * instance with no connection at all and no retry (503 until restarted).
 */
export function sentinelOptions(url: string): RedisModule.RedisBrokerOptions {
  const m = SENTINEL_URL.exec(url);
  const invalid = () => fail("REDIS_URL with Sentinel must look like redis+sentinel://host:26379[,host:26379...]/mymaster[/db]");
  if (!m) invalid();
  const sentinels = m![2]!.split(",").map((hostPort) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):([0-9]{1,5})$/.exec(hostPort);
    if (!hp || Number(hp[2]) > 65535) invalid();
    return { host: hp![1]!.replace(/^\[|\]$/g, ""), port: Number(hp![2]) };
  });
  const [user, pass] = m![1] === undefined ? [] : m![1].split(":").map(decodeURIComponent);
  return {
    // The broker names its pub/sub channel after the database; host and port come from the sentinels.
    url: `redis://127.0.0.1/${m![4] ?? "0"}`,
    redis: {
      sentinels,
      name: decodeURIComponent(m![3]!),
      ...(user ? { username: user } : {}),
      ...(pass ? { password: pass } : {}),
      reconnectOnError: (err: Error) => (err.message.startsWith("READONLY") ? 2 : false),
    },
  };
}

/** `redis://user:secret@host:6379/0` → `redis://host:6379/0`: never log credentials. */
export function redactRedisUrl(url: string): string {
  const sentinel = SENTINEL_URL.exec(url);
  if (sentinel) return `redis+sentinel://${sentinel[2]}/${sentinel[3]}${sentinel[4] === undefined ? "" : "/" + sentinel[4]}`;
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname === "/" ? "" : u.pathname}`;
  } catch {
    return "redis";
  }
}

export interface RunningServer {
  server: http.Server;
  router: SseRouter;
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `router` under `basePath` with a bare Node request listener: no
 * Express app per request. The router needs none (it uses plain Node request
 * and response calls), and an app would add its own per-request state to every
 * open stream (measured: ~4 KB of heap per subscriber) and cost connects/s.
 * Anything outside the router's routes gets a JSON 404.
 */
export function mountAt(basePath: string, router: SseRouter): http.RequestListener {
  const notFound = (req: http.IncomingMessage, res: http.ServerResponse, path: string) => {
    const body = JSON.stringify({ error: "not_found", message: `no route for ${req.method} ${path}` });
    res.writeHead(404, {
      "Access-Control-Allow-Origin": "*",
      "Content-Type": "application/json; charset=utf-8",
      "Content-Length": Buffer.byteLength(body),
    });
    res.end(body);
  };
  return (req, res) => {
    const url = req.url ?? "/";
    const path = url.split("?", 1)[0]!;
    if (basePath !== "/") {
      if (path !== basePath && !path.startsWith(basePath + "/")) return notFound(req, res, path);
      const rest = url.slice(basePath.length);
      req.url = rest.startsWith("/") ? rest : "/" + rest;
    }
    // Express's Router is a (req, res, next) function; `next` means "not ours".
    (router as unknown as (req: http.IncomingMessage, res: http.ServerResponse, next: () => void) => void)(req, res, () =>
      notFound(req, res, path),
    );
  };
}

/** Starts the standalone server; resolves once it listens. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  let broker: Broker | undefined;
  let redisBroker: InstanceType<typeof RedisModule.RedisBroker> | undefined;
  if (config.redisUrl !== undefined) {
    // Loaded only when asked for, so ioredis stays optional.
    const { createRedisBroker } = require("./redis") as typeof RedisModule;
    redisBroker = createRedisBroker(config.redisUrl.startsWith(SENTINEL_SCHEME) ? sentinelOptions(config.redisUrl) : { url: config.redisUrl });
    broker = redisBroker;
  }
  const router = createSseRouter({ secret: config.secret, health: config.health, metrics: config.metrics, broker });
  // Listen only once this instance follows the shared stream, so nothing
  // submitted elsewhere after our startup line is missed here. If Redis is
  // not there yet, start anyway: /submit answers 503 until it is.
  if (redisBroker !== undefined && !(await redisBroker.waitUntilReady(5000))) {
    console.error(`sse-server: Redis at ${redactRedisUrl(config.redisUrl!)} is not reachable yet; /submit answers 503 until it is`);
  }
  const server = http.createServer(mountAt(config.basePath, router));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    await router.close();
    await broker?.close();
    throw err;
  }
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.port;
  const host = config.host ?? "0.0.0.0";
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}${config.basePath === "/" ? "" : config.basePath}`;
  let closing: Promise<void> | undefined;
  return {
    server,
    router,
    url,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        await router.close();
        // Ended streams become idle keep-alive connections once their last
        // chunk is flushed; close them as they do instead of waiting for the
        // keep-alive timeout.
        server.closeIdleConnections();
        const idle = setInterval(() => server.closeIdleConnections(), 50);
        await closed;
        clearInterval(idle);
        await broker?.close();
      })();
      return closing;
    },
  };
}

function startupLine(url: string, config: ServerConfig, workers: number): string {
  let line = `sse-server listening on ${url} (events: ${url}/events, submit: ${url}/submit)`;
  const extras: string[] = [];
  if (workers > 1) extras.push(`${workers} workers`);
  if (config.redisUrl !== undefined) extras.push(`broker ${redactRedisUrl(config.redisUrl)}`);
  if (extras.length > 0) line += ", " + extras.join(", ");
  return line;
}

interface ListeningMessage {
  type: "sse-server:listening";
  url: string;
}

function isListeningMessage(message: unknown): message is ListeningMessage {
  return typeof message === "object" && message !== null && (message as ListeningMessage).type === "sse-server:listening";
}

/**
 * The cluster primary serves nothing itself: it forks the workers (each a
 * full instance on the shared Redis broker, all on the one port), prints the
 * startup line once every worker listens, replaces a worker that dies, and on
 * SIGTERM/SIGINT forwards the signal, waits for every worker and exits 0.
 */
function runPrimary(config: ServerConfig, count: number): void {
  const live = new Set<Worker>();
  let listening = 0;
  let up = false;
  let stopping = false;
  let failedStop = false;
  const fork = () => {
    const worker = cluster.fork();
    live.add(worker);
    worker.on("message", (message: unknown) => {
      if (!isListeningMessage(message) || up) return;
      if (++listening === count) {
        up = true;
        console.log(startupLine(message.url, config, count));
      }
    });
  };
  cluster.on("exit", (worker, code, signal) => {
    live.delete(worker);
    if (stopping) {
      // Exit 0 only if every worker closed cleanly (a worker exits 1 when its close timed out).
      // (A worker still starting has no handler yet and is simply ended by the SIGTERM.)
      if (code !== 0 && !(code === null && signal === "SIGTERM")) failedStop = true;
      if (live.size === 0) process.exit(failedStop || process.exitCode === 1 ? 1 : 0);
      return;
    }
    if (!up) {
      // A worker that cannot start (port taken, bad Redis URL...) would fail again: give up.
      console.error(`sse-server: a worker failed to start (exit ${signal ?? code}); stopping`);
      stopping = true;
      for (const w of live) w.process.kill("SIGTERM");
      setTimeout(() => process.exit(1), 10_000).unref();
      if (live.size === 0) process.exit(1);
      process.exitCode = 1;
      return;
    }
    console.error(`sse-server: worker ${worker.process.pid} exited (${signal ?? code}); starting a new one`);
    setTimeout(fork, 500).unref();
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    console.log(`sse-server: ${signal}, stopping ${live.size} workers`);
    for (const worker of live) worker.process.kill("SIGTERM");
    // Workers give up by themselves (see closeDeadline); this is the backstop.
    setTimeout(() => {
      for (const worker of live) worker.process.kill("SIGKILL");
      process.exit(1);
    }, 65_000).unref();
    if (live.size === 0) process.exit(0);
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  for (let i = 0; i < count; i++) fork();
}

/** How long a close may take before the process gives up: 10 s, plus 1 s per 1000 open streams (at most 60 s). */
function closeDeadline(streams: number): number {
  return Math.min(10_000 + streams, 60_000);
}

async function main(): Promise<void> {
  let config: ServerConfig;
  try {
    config = readConfig(process.argv.slice(2), process.env);
  } catch (err) {
    console.error(`sse-server: ${(err as Error).message}`);
    process.exit(2);
  }
  const workers = config.workers ?? 1;
  if (workers > 1 && cluster.isPrimary) {
    runPrimary(config, workers);
    return;
  }
  const running = await startServer(config);
  if (cluster.isWorker) process.send?.({ type: "sse-server:listening", url: running.url } satisfies ListeningMessage);
  else console.log(startupLine(running.url, config, 1));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const who = cluster.isWorker ? `worker ${process.pid}` : "sse-server";
    const streams = running.router.stats.subscribers;
    console.log(`${who}: ${signal}, closing ${streams} streams`);
    // A second signal, or a stuck close, must not keep the process alive.
    setTimeout(() => process.exit(1), closeDeadline(streams)).unref();
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  // A worker whose primary is gone (killed) must not linger holding sockets.
  if (cluster.isWorker) process.once("disconnect", () => stop("primary gone"));
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`sse-server: failed to start: ${(err as Error).message}`);
    process.exit(1);
  });
}
