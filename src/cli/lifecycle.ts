/**
 * The standalone server's life: the listener (HTTP/1.1, or TLS with HTTP/2 by
 * ALPN and HTTP/1.1 on the same port), the broker it needs, tracking of open
 * connections so a close does not wait on idle or half-open ones, and the
 * graceful close on SIGTERM/SIGINT with a deadline. What it serves is
 * mount.ts's listener; processes are cluster.ts's business.
 */
import http from "node:http";
import http2 from "node:http2";
import type { Socket } from "node:net";
import type tls from "node:tls";
import type { Broker } from "../brokers/broker";
import { SseError } from "../errors";
import type { Logger } from "../logger";
import { DEFAULTS } from "../options";
import type * as RedisModule from "../brokers/redis";
import { createSseHub, type SseHub } from "../core";
import { SENTINEL_SCHEME, SERVER_TIMEOUTS, loadTls, loggerFor, redactRedisUrl, sentinelOptions, type ServerConfig } from "./config";
import { mountAt } from "./mount";

export interface RunningServer {
  /** An `http2.Http2SecureServer` (HTTP/2 and HTTP/1.1) with TLS settings, else an `http.Server`. */
  server: http.Server | http2.Http2SecureServer;
  hub: SseHub;
  url: string;
  close(): Promise<void>;
}

/** Starts the standalone server; resolves once it listens. */
export async function startServer(config: ServerConfig, logger: Logger = loggerFor(config)): Promise<RunningServer> {
  const headersTimeout = config.headersTimeout ?? SERVER_TIMEOUTS.headersTimeout;
  // Past the hub's own body timeout, so its JSON 408 comes first.
  const requestTimeout = config.requestTimeout ?? headersTimeout + (config.router.bodyTimeout || DEFAULTS.bodyTimeout);
  if (!(Number.isInteger(headersTimeout) && headersTimeout > 0 && Number.isInteger(requestTimeout) && requestTimeout >= headersTimeout)) {
    throw new SseError("invalid_option", `headersTimeout and requestTimeout must be positive integers (ms), requestTimeout at least headersTimeout; got ${headersTimeout} and ${requestTimeout}`);
  }
  let broker: Broker | undefined;
  let redisBroker: InstanceType<typeof RedisModule.RedisBroker> | undefined;
  let routerOptions = config.router;
  if (config.redisUrl !== undefined) {
    // Loaded only when asked for, so ioredis stays optional.
    const { createRedisBroker } = require("../brokers/redis") as typeof RedisModule;
    // History and idempotency belong to the broker: with Redis they go to it, not to the hub.
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
    // The same listener serves both: the hub's handlers take either kind of
    // request and response (see src/core/sse-hub.ts for where HTTP/2 differs).
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
/** How long a close may take before the process gives up: 10 s, plus 1 s per 1000 open streams (at most 60 s). */
export function closeDeadline(streams: number): number {
  return Math.min(10_000 + streams, 60_000);
}

/**
 * Closes `running` on SIGTERM or SIGINT, then exits: 0 once every stream is
 * closed cleanly, 1 if the close fails or outlasts {@link closeDeadline}.
 * Returns the same stop, for other reasons to stop (a worker whose primary is
 * gone). `who` prefixes the log line (a worker's pid).
 */
export function stopOnSignals(running: RunningServer, logger: Logger, who = ""): (reason: string) => void {
  let stopping = false;
  const stop = (reason: string) => {
    if (stopping) return;
    stopping = true;
    const streams = running.hub.stats.subscribers;
    logger.info(`${who}${reason}, closing ${streams} streams`);
    // A second signal, or a stuck close, must not keep the process alive.
    setTimeout(() => process.exit(1), closeDeadline(streams)).unref();
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  return stop;
}
