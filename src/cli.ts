#!/usr/bin/env node
/**
 * Standalone server: a drop-in replacement for the original `tvdw/sse-server`
 * Docker image. Configuration from the environment (the original's way) or
 * flags; every setting is one row of the table in cli-options.ts, which also
 * renders `--help` and the README section.
 *
 * Logs through one {@link Logger} (`SSE_LOG_LEVEL`, `SSE_LOG_FORMAT`), never
 * tokens or Redis passwords. SIGTERM/SIGINT close every stream cleanly and
 * exit 0; with workers, the primary forwards the signal, waits for every
 * worker, then exits 0.
 */
import cluster, { type Worker } from "node:cluster";
import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import tls from "node:tls";
import { parseArgs } from "node:util";
import {
  SENTINEL_SCHEME,
  SENTINEL_URL,
  SERVER_TIMEOUTS,
  argOptions,
  parseSettings,
  renderHelp,
  sentinelOptions,
  type CliRouterOptions,
  type ServerSettings,
} from "./cli-options";
import { RESPONSE_ERROR_CODE, SseError } from "./errors";
import { createConsoleLogger, type Logger } from "./logger";
import { DEFAULTS } from "./options";
import { parseSecret } from "./validate";
import type { Broker } from "./brokers/broker";
import type * as RedisModule from "./brokers/redis";
import { createSseHub, type SseHub } from "./core/sse-hub";
import { refusePipelined, type NodeRequest, type NodeResponse } from "./core/http";

export interface ServerConfig extends Omit<ServerSettings, "workers"> {
  secret: string;
  /** Router options from the environment and flags (see cli-options.ts). */
  router: CliRouterOptions;
  /** Processes serving the port (node:cluster), when more than 1. */
  workers?: number | undefined;
}

export { SERVER_TIMEOUTS, sentinelOptions };

function fail(message: string): never {
  throw new SseError("invalid_option", message);
}

/** What the command line asks for before any configuration is read. */
export function commandOf(argv: readonly string[]): "help" | "version" | "serve" {
  // Looked at before strict parsing, so `--help` works next to a mistyped flag.
  if (argv.includes("--help") || argv.includes("-h")) return "help";
  if (argv.includes("--version")) return "version";
  return "serve";
}

/** The package version, from the package.json next to dist/ (and src/). */
export function packageVersion(): string {
  return (require("../package.json") as { version: string }).version;
}

/** Reads flags and environment into a config, or throws with a clear message. */
export function readConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ServerConfig {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: [...argv], options: argOptions(), strict: true, allowPositionals: false }));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const option = /'([^']+)'/.exec((err as Error).message)?.[1];
    if (code === "ERR_PARSE_ARGS_UNKNOWN_OPTION") fail(`unknown option ${option ?? ""}; run sse-server --help for the list`);
    if (code === "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL") fail(`unexpected argument ${option ?? ""}; settings are flags (--port 8000) or environment variables; run sse-server --help`);
    fail(`${(err as Error).message.split(". ")[0]}; run sse-server --help`);
  }
  const { secret, server, router } = parseSettings(values, env);
  if (secret === undefined) {
    fail("SSE_SECRET is not set: give it 64 hex characters, e.g. SSE_SECRET=$(openssl rand -hex 32)");
  }
  parseSecret(secret, "SSE_SECRET"); // the router's own check, so both reject the same secrets
  if (server.workers > 1 && server.redisUrl === undefined) {
    fail(
      `WORKERS=${server.workers} needs REDIS_URL: every worker is a separate process with its own subscribers, ` +
        "so without a shared Redis an event submitted to one worker would never reach the others",
    );
  }
  if (server.redisUrl !== undefined) {
    // ioredis is an optional peer dependency: say so before starting anything.
    try {
      require.resolve("ioredis");
    } catch {
      fail("REDIS_URL needs the ioredis package, which is not installed: run `npm install ioredis` next to sse-hub");
    }
  }
  loadTls(server); // fail at startup, with the variable's name, not at the first handshake
  const { workers, ...rest } = server;
  return { ...rest, secret, router, ...(workers > 1 ? { workers } : {}) };
}

/**
 * Certificate and key from `SSE_TLS_CERT`/`SSE_TLS_KEY`, or `undefined` for
 * plain HTTP. Checked as a pair (both or neither, readable, a key that
 * matches the certificate), so a mistake is a startup error naming the
 * setting rather than a failed handshake for every client.
 */
export function loadTls(settings: Pick<ServerSettings, "tlsCert" | "tlsKey">): { cert: Buffer; key: Buffer } | undefined {
  const { tlsCert, tlsKey } = settings;
  if (tlsCert === undefined && tlsKey === undefined) return undefined;
  if (tlsCert === undefined || tlsKey === undefined) {
    fail(`SSE_TLS_CERT (--tls-cert) and SSE_TLS_KEY (--tls-key) go together; only ${tlsCert === undefined ? "SSE_TLS_KEY" : "SSE_TLS_CERT"} is set`);
  }
  const read = (file: string, label: string): Buffer => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      return fail(`${label} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (${file})`);
    }
  };
  const cert = read(tlsCert, "SSE_TLS_CERT (--tls-cert)");
  const key = read(tlsKey, "SSE_TLS_KEY (--tls-key)");
  try {
    tls.createSecureContext({ cert, key });
  } catch (err) {
    // OpenSSL's reason only ("key values mismatch", "no start line"): never key material.
    fail(`SSE_TLS_CERT and SSE_TLS_KEY are not a usable PEM certificate and matching key: ${(err as Error).message}`);
  }
  return { cert, key };
}

/** The logger a config asks for (`SSE_LOG_LEVEL`, `SSE_LOG_FORMAT`). */
export function loggerFor(config: Pick<ServerConfig, "logLevel" | "logFormat">): Logger {
  return createConsoleLogger({ level: config.logLevel, format: config.logFormat });
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
  /** An `http2.Http2SecureServer` (HTTP/2 and HTTP/1.1) with TLS settings, else an `http.Server`. */
  server: http.Server | http2.Http2SecureServer;
  hub: SseHub;
  url: string;
  close(): Promise<void>;
}

/**
 * Serves `hub` under `basePath` with a bare Node request listener: no
 * framework per request (an Express app would add its own per-request state
 * to every open stream, measured ~4 KB of heap per subscriber, and cost
 * connects/s). Anything outside the hub's routes gets a JSON 404.
 */
export function mountAt(basePath: string, hub: SseHub, accessLog?: Logger): (req: NodeRequest, res: NodeResponse) => void {
  // Answered by the hub, the one place that maps errors to HTTP (CORS policy, JSON body, logging).
  const notFound = (req: NodeRequest, res: NodeResponse, path: string) => hub.respondError(req, res, new SseError("not_found", `no route for ${req.method} ${path}`));
  return (req, res) => {
    // Every path, not only the hub's: nothing may queue behind a stream.
    if (refusePipelined(req)) return;
    const url = req.url ?? "/";
    const path = url.split("?", 1)[0]!;
    if (accessLog !== undefined) logAccess(accessLog, req, res, path);
    if (basePath !== "/") {
      if (path !== basePath && !path.startsWith(basePath + "/")) return notFound(req, res, path);
      const rest = url.slice(basePath.length);
      req.url = rest.startsWith("/") ? rest : "/" + rest;
    }
    // `next` means "not ours": the 404 names the full path.
    hub.handle(req, res, () => notFound(req, res, path));
  };
}

/**
 * One access-log line when the response is done (for a stream: when it ends,
 * so the duration is the stream's life). The path only: the query string may
 * hold a token.
 */
function logAccess(logger: Logger, req: NodeRequest, res: NodeResponse, path: string): void {
  const start = performance.now();
  res.once("close", () => {
    const code = (res as { [RESPONSE_ERROR_CODE]?: string })[RESPONSE_ERROR_CODE];
    logger.info(`${req.method} ${path} ${res.statusCode}`, {
      method: req.method,
      path,
      status: res.statusCode,
      code,
      ms: Math.round(performance.now() - start),
    });
  });
}

/** Starts the standalone server; resolves once it listens. */
export async function startServer(config: ServerConfig, logger: Logger = loggerFor(config)): Promise<RunningServer> {
  const headersTimeout = config.headersTimeout ?? SERVER_TIMEOUTS.headersTimeout;
  // Past the router's own body timeout, so its JSON 408 comes first.
  const requestTimeout = config.requestTimeout ?? headersTimeout + (config.router.bodyTimeout || DEFAULTS.bodyTimeout);
  if (!(Number.isInteger(headersTimeout) && headersTimeout > 0 && Number.isInteger(requestTimeout) && requestTimeout >= headersTimeout)) {
    fail(`headersTimeout and requestTimeout must be positive integers (ms), requestTimeout at least headersTimeout; got ${headersTimeout} and ${requestTimeout}`);
  }
  let broker: Broker | undefined;
  let redisBroker: InstanceType<typeof RedisModule.RedisBroker> | undefined;
  let routerOptions = config.router;
  if (config.redisUrl !== undefined) {
    // Loaded only when asked for, so ioredis stays optional.
    const { createRedisBroker } = require("./brokers/redis") as typeof RedisModule;
    // History and idempotency belong to the broker: with Redis they go to it, not to the router.
    const { historyBytes, historyAge, idempotencyWindow, ...rest } = config.router;
    if (historyBytes !== undefined) logger.warn("SSE_HISTORY_BYTES applies to the in-memory broker only; with Redis, history is bounded by entries and SSE_HISTORY_AGE");
    routerOptions = rest;
    redisBroker = createRedisBroker({
      ...(config.redisUrl.startsWith(SENTINEL_SCHEME) ? sentinelOptions(config.redisUrl) : { url: config.redisUrl }),
      logger,
      ...(historyAge !== undefined ? { historyAge } : {}),
      ...(idempotencyWindow !== undefined ? { idempotencyWindow } : {}),
    });
    broker = redisBroker;
  }
  const hub = createSseHub({ ...routerOptions, secret: config.secret, broker, logger });
  // Listen only once this instance follows the shared stream, so nothing
  // submitted elsewhere after our startup line is missed here. If Redis is
  // not there yet, start anyway: /submit answers 503 until it is.
  if (redisBroker !== undefined && !(await redisBroker.waitUntilReady(5000))) {
    logger.warn(`Redis at ${redactRedisUrl(config.redisUrl!)} is not reachable yet; /submit answers 503 until it is`);
  }
  const listener = mountAt(config.basePath, hub, config.accessLog ? logger : undefined);
  const tlsFiles = loadTls(config);
  const connectionsCheckingInterval = Math.min(SERVER_TIMEOUTS.connectionsCheckingInterval, headersTimeout);
  let server: http.Server | http2.Http2SecureServer;
  if (tlsFiles === undefined) {
    server = http.createServer({ headersTimeout, requestTimeout, connectionsCheckingInterval }, listener);
  } else {
    // HTTP/2 by ALPN, HTTP/1.1 for clients that do not offer h2, one port.
    // The same listener serves both: Node's compat request/response have the
    // calls the hub uses (see src/core/sse-hub.ts for where HTTP/2 differs).
    server = http2.createSecureServer({ ...tlsFiles, allowHTTP1: true }, listener);
    // The HTTP/1 side's timeouts are properties here, not options (Node 20),
    // and keepAliveTimeout is not set at all: without it an idle HTTP/1.1
    // connection would stay open for good. 5 s, http.Server's default.
    Object.assign(server, { headersTimeout, requestTimeout, connectionsCheckingInterval, keepAliveTimeout: 5000 });
  }
  // Open HTTP/1 connections, so a close can end the ones Node's
  // closeIdleConnections leaves alone: one that has not sent a request yet
  // (browsers open spare ones) counts as busy, so `server.close()` would wait
  // until it carries a request, typically an EventSource's reconnect, only
  // for a closing server to answer it. (One shared listener; no closure per
  // connection.) With TLS: the TLS sockets of HTTP/1 connections, HTTP/2
  // sessions apart, and TCP connections still in their handshake.
  const sockets = new Set<Socket>();
  const forget = function (this: Socket) {
    sockets.delete(this);
  };
  const track = (socket: Socket) => {
    sockets.add(socket);
    // `on`, not `once` (which wraps the listener per call): close fires once anyway.
    socket.on("close", forget);
  };
  const handshaking = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  // TLS sockets of h2 sessions: a session closed gracefully only ends its
  // side of the socket and then waits for the client to close the other,
  // which a browser may not do for minutes (it keeps idle connections).
  const h2Sockets = new Set<Socket>();
  const forgetH2 = function (this: Socket) {
    h2Sockets.delete(this);
  };
  // Once a closing session has sent everything (its streams done, GOAWAY
  // out) and ended its side, nothing more can be said on that connection.
  const destroyWhenFinished = (socket: Socket) => {
    if (socket.writableFinished) socket.destroy();
    else socket.once("finish", () => socket.destroy());
  };
  let closing: Promise<void> | undefined;
  if (tlsFiles === undefined) {
    server.on("connection", track);
  } else {
    const handshaken = function (this: Socket) {
      handshaking.delete(this);
    };
    server.on("connection", (socket: Socket) => {
      handshaking.add(socket);
      socket.on("close", handshaken);
    });
    server.on("secureConnection", (socket: tls.TLSSocket) => {
      // `_parent`: the TCP socket under this TLS socket (Node's own field; no public one).
      const raw = (socket as { _parent?: Socket })._parent;
      if (raw !== undefined) handshaking.delete(raw);
      if (socket.alpnProtocol !== "h2") track(socket);
      else {
        h2Sockets.add(socket);
        socket.on("close", forgetH2);
        // Set up while closing (its session got GOAWAY at once; see below).
        if (closing !== undefined) destroyWhenFinished(socket);
      }
    });
    server.on("session", (session: http2.ServerHttp2Session) => {
      sessions.add(session);
      session.on("close", () => sessions.delete(session));
      // A session set up while closing: GOAWAY at once (its streams are answered as closed).
      if (closing !== undefined) session.close();
    });
  }
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(config.port, config.host, () => resolve());
    });
  } catch (err) {
    await hub.close();
    await broker?.close();
    throw err;
  }
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.port;
  const host = config.host ?? "0.0.0.0";
  const url = `${tlsFiles === undefined ? "http" : "https"}://${host.includes(":") ? `[${host}]` : host}:${port}${config.basePath === "/" ? "" : config.basePath}`;
  return {
    server,
    hub,
    url,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        // Ends every stream; each stream's socket closes once its last chunk
        // is flushed (streams are never kept alive).
        await hub.close();
        // Close every connection that is not answering a request now, and each
        // of the others as soon as its response is sent, instead of waiting
        // for keep-alive timeouts or for requests a closing server could only
        // refuse. A client whose connection is closed just tries again.
        const closeUnused = () => {
          for (const socket of sockets) {
            // `_httpMessage`: the response Node is sending on the socket, the
            // same field its own closeIdleConnections looks at.
            if (!socket.writableEnded && (socket as { _httpMessage?: unknown })._httpMessage == null) socket.destroy();
          }
        };
        closeUnused();
        // A TLS handshake that has not finished carries no request yet.
        for (const socket of handshaking) socket.destroy();
        // GOAWAY, then the session closes once its streams are done: event
        // streams were just ended; a /submit in flight is still answered.
        for (const session of sessions) session.close();
        for (const socket of h2Sockets) destroyWhenFinished(socket);
        const sweep = setInterval(closeUnused, 50);
        await closed;
        clearInterval(sweep);
        await broker?.close();
      })();
      return closing;
    },
  };
}

function startupLine(url: string, config: ServerConfig, workers: number): string {
  let line = `listening on ${url} (events: ${url}/events, submit: ${url}/submit)`;
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
function runPrimary(config: ServerConfig, count: number, logger: Logger): void {
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
        logger.info(startupLine(message.url, config, count));
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
      logger.error(`a worker failed to start (exit ${signal ?? code}); stopping`);
      stopping = true;
      for (const w of live) w.process.kill("SIGTERM");
      setTimeout(() => process.exit(1), 10_000).unref();
      if (live.size === 0) process.exit(1);
      process.exitCode = 1;
      return;
    }
    logger.error(`worker ${worker.process.pid} exited (${signal ?? code}); starting a new one`);
    setTimeout(fork, 500).unref();
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}, stopping ${live.size} workers`);
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
  const argv = process.argv.slice(2);
  const command = commandOf(argv);
  if (command !== "serve") {
    process.stdout.write(command === "help" ? renderHelp(packageVersion()) : packageVersion() + "\n");
    return;
  }
  let config: ServerConfig;
  try {
    config = readConfig(argv, process.env);
  } catch (err) {
    // Before any logger exists (its settings may be what is wrong): plain stderr.
    console.error(`sse-server: ${(err as Error).message}`);
    process.exit(2);
  }
  const logger = loggerFor(config);
  const workers = config.workers ?? 1;
  if (workers > 1 && cluster.isPrimary) {
    runPrimary(config, workers, logger);
    return;
  }
  const running = await startServer(config, logger);
  if (cluster.isWorker) process.send?.({ type: "sse-server:listening", url: running.url } satisfies ListeningMessage);
  else logger.info(startupLine(running.url, config, 1));
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    const who = cluster.isWorker ? `worker ${process.pid}: ` : "";
    const streams = running.hub.stats.subscribers;
    logger.info(`${who}${signal}, closing ${streams} streams`);
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
