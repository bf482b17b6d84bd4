/**
 * The Express side: routes, headers, token extraction, CORS, and the one
 * place that turns errors into HTTP responses. The only module that imports
 * Express.
 */
import { ServerResponse, type IncomingMessage } from "node:http";
import type { Socket } from "node:net";
import express, { type NextFunction, type Router } from "express";
import { readBody } from "./body";
import { acceptsGzip } from "./accept-encoding";
import { Admission, type AdmissionStats, type ShedReason } from "./admission";
import { MemoryBroker, hasBrokerHealth, type Broker, type BrokerState, type PublishOptions } from "./broker";
import { RESPONSE_ERROR_CODE, SseError, isSseError } from "./errors";
import { frameRetry } from "./frame";
import { Hub, type DirectSocket, type HubStats } from "./hub";
import type { Logger } from "./logger";
import { resolveOptions, type ResolvedOptions, type SseRouterOptions } from "./options";
import { Presence } from "./presence";
import { releaseParserLater } from "./release-parser";
import { HOOK_TIMEOUT, Sessions, runSubscribeHook, type SubscribeInfo } from "./sessions";
import {
  createTokenOpener,
  parseIdempotencyKey,
  parsePresencePayload,
  parsePublishEvents,
  parseSubmitPayload,
  parseSubscribeToken,
  type PublishEventInput,
} from "./tokens";
import { Webhook, type WebhookStats } from "./webhook";

/** Headers of every event stream; frozen so nothing mutates them per request. */
export const STREAM_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Content-Type": "text/event-stream",
  // `no-transform` keeps compression middleware and proxies from buffering.
  "Cache-Control": "no-cache, no-transform",
  Expires: "0",
  // nginx: pass events through at once even where proxy_buffering is on.
  "X-Accel-Buffering": "no",
});

export interface SseRouter extends Router {
  /**
   * Publishes events to this router's topics (and, with a shared broker,
   * everywhere). Resolves once the broker accepted them. `data` may be any
   * JSON value; a non-string is sent as `JSON.stringify(data)`. With
   * `idempotencyKey`, a retry after a failure (a `broker_unavailable` may
   * still mean stored) resolves without publishing twice.
   */
  publish(events: readonly PublishEventInput[], options?: PublishOptions): Promise<void>;
  /** Ends every stream cleanly, stops timers, closes the broker if this router created it. */
  close(): Promise<void>;
  /** A snapshot of counters; see {@link RouterStats}. */
  readonly stats: RouterStats;
  /**
   * Subscribers per topic: on this instance, plus, with a broker that shares
   * presence (Redis), every other live instance (see the README on how
   * current that is). Rejects with `broker_unavailable` while Redis is away.
   */
  presence(topics: readonly string[]): Promise<Record<string, number>>;
  /**
   * Answers `err` exactly as this router answers its own errors (its CORS
   * policy, the JSON body, status from the error code, logging). For hosts
   * that serve the router without Express, e.g. the standalone server's 404
   * for paths outside the mount point.
   */
  respondError(req: IncomingMessage, res: ServerResponse, err: SseError): void;
}

/** The hub's counters plus admission control and, with `webhookUrl`, the webhook's. */
export interface RouterStats extends HubStats, AdmissionStats {
  readonly webhook?: WebhookStats;
}

const MAX_LAST_EVENT_ID = 256;
const ROUTE_METHODS: Readonly<Record<string, string>> = Object.freeze({
  "/events": "GET, HEAD, OPTIONS",
  "/submit": "POST, OPTIONS",
  "/presence": "POST, OPTIONS",
  "/ping": "GET, HEAD, OPTIONS",
  "/health": "GET, HEAD, OPTIONS",
  "/metrics": "GET, HEAD, OPTIONS",
});

/**
 * Creates an Express Router serving `GET /events`, `POST /submit` and
 * `GET /ping` relative to where it is mounted. Each router owns its topic
 * map, token verifier, hub and (unless one is passed) its broker.
 *
 * @throws SseError `invalid_option` when an option is invalid (e.g. the secret).
 */
export function createSseRouter(options: SseRouterOptions): SseRouter {
  const opts = resolveOptions(options);
  const ownsBroker = opts.broker === undefined;
  const broker =
    opts.broker ??
    new MemoryBroker({ historyBytes: opts.historyBytes, historyAge: opts.historyAge, idempotencyWindow: opts.idempotencyWindow });
  // The hub reports joins and leaves to `sessions` (created below, once the hub exists for presence).
  const hub: Hub = new Hub({
    broker,
    observer: {
      subscribed: (sink, topics) => sessions.subscribed(sink, topics),
      unsubscribed: (sink, topics, reason) => sessions.unsubscribed(sink, topics, reason),
    },
    maxBufferBytes: opts.maxBufferBytes,
    heartbeatInterval: opts.heartbeatInterval,
    retry: opts.retry,
    retryJitter: opts.retryJitter,
    expiryNotice: opts.expiryNotice * 1000,
  });

  const admission = new Admission(opts);
  const presence = new Presence(hub, broker, opts.logger);
  const webhook = opts.webhookUrl === undefined ? undefined : new Webhook({ url: opts.webhookUrl, key: opts.key, maxQueue: opts.webhookQueue, logger: opts.logger });
  const sessions = new Sessions({
    admission,
    presence,
    webhook,
    onUnsubscribe: opts.onUnsubscribe,
    bySubject: opts.maxConnectionsPerSubject > 0,
    logger: opts.logger,
  });
  const stats = (): RouterStats => ({ ...hub.stats, ...admission.stats, ...(webhook !== undefined ? { webhook: webhook.stats } : {}) });

  const router = express.Router() as unknown as SseRouter;
  const opener = createTokenOpener(opts.key);
  const time = { ttl: opts.tokenTtl, clockSkew: opts.tokenClockSkew };
  // Anyone can send a subscribe token, and decoding costs ~n^1.6: its own,
  // smaller cap keeps a flood of forged ones cheap (issue 15).
  const openSubscribeToken = opener({ ...time, maxLength: opts.maxSubscribeTokenLength });
  const openSubmitToken = opener({ ...time, maxLength: opts.maxTokenLength });
  // CORS is applied inside each handler rather than as a middleware layer:
  // one routing step less on every connect.
  const cors = (req: IncomingMessage, res: ServerResponse) => applyCors(opts, req, res);
  const wantsRemoteAddress = opts.onSubscribe !== undefined || opts.onUnsubscribe !== undefined || webhook !== undefined;

  router.get("/events", async (req, res) => {
    if (refusePipelined(req)) return;
    cors(req, res);
    if (hub.closed) return answerClosed(req, res);
    // Rate and instance cap before the token: a connect storm costs no decryption.
    const gated = admission.gate();
    if (gated !== undefined) return shed(req, res, opts, gated);
    const query = queryOf(req);
    const token = findToken(req, query, opts.tokenCookie);
    const opened = openSubscribeToken(token);
    const payload = parseSubscribeToken(opened.payload, opts);
    const topics = payload.topics;
    const lastEventId = findLastEventId(req, query);
    const subject = payload.sub;
    const refused = admission.admit(subject);
    if (refused !== undefined) return shed(req, res, opts, refused);
    // From here the slot is ours: given back by `sessions` when the stream ends, or below.
    // The peer's address costs a getpeername(2) syscall: only asked for when a hook or the webhook can see it.
    const remoteAddress = wantsRemoteAddress ? req.socket.remoteAddress : undefined;
    const info: SubscribeInfo = { topics, sub: subject, token: payload.payload, remoteAddress, lastEventId };
    if (opts.onSubscribe !== undefined) {
      let verdict: typeof HOOK_TIMEOUT | undefined;
      try {
        verdict = await runSubscribeHook(opts.onSubscribe, info, opts.hookTimeout);
      } catch (err) {
        admission.release(subject);
        if (isSseError(err) && err.status < 500) admission.refused();
        throw err;
      }
      if (verdict === HOOK_TIMEOUT) {
        admission.release(subject);
        return shed(req, res, opts, admission.shed("hook_timeout"));
      }
      // The client left, or the hub closed, while the hook ran.
      if (req.socket.destroyed || hub.closed) {
        admission.release(subject);
        return hub.closed ? answerClosed(req, res) : undefined;
      }
    }
    if (req.method === "HEAD") {
      admission.release(subject);
      negotiateGzip(req, res);
      writeStreamHead(res, true);
      res.end();
      return;
    }
    // From here on this connection belongs to the stream: anything pipelined
    // behind it would be queued behind a response that never ends. (HTTP/1
    // only: an HTTP/2 connection multiplexes streams and queues nothing.)
    if (req.httpVersionMajor === 1) (req.socket as StreamSocket)[kStream] = true;
    if (res.socket === null) {
      // Pipelined behind a finite response on the same connection (e.g.
      // `GET /ping`): Node hands this response the socket once that one is
      // sent. Until then nothing can be written, and Node would never emit
      // `close` for it, so nothing is subscribed yet. (Rare: no closure
      // otherwise.)
      res.once("socket", () => startStream(req, res, info, payload.presence, opened.expiresAt));
      return;
    }
    startStream(req, res, info, payload.presence, opened.expiresAt);
  });

  /**
   * With `compression` on: `Vary: Accept-Encoding` (caches must not hand a
   * gzip stream to a client that cannot read it) and, when the client accepts
   * gzip, `Content-Encoding: gzip`. True when the stream is to be compressed.
   */
  const negotiateGzip = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (!opts.compression) return false;
    appendVary(res, "Accept-Encoding");
    const gzip = acceptsGzip(req.headers["accept-encoding"]);
    if (gzip) res.setHeader("Content-Encoding", "gzip");
    return gzip;
  };

  /** Sends the stream head and subscribes; `res` owns the socket by now. */
  const startStream = (req: IncomingMessage, res: ServerResponse, info: SubscribeInfo, wantsPresence: boolean, expiresAt: number | undefined) => {
    const socket = req.socket as StreamSocket;
    // Gone while waiting for its turn, or the hub closed meanwhile: never
    // subscribed, so its admission slot is given back here.
    if (socket.destroyed || hub.closed) {
      admission.release(info.sub);
      return hub.closed ? answerClosed(req, res) : undefined;
    }
    const { topics, lastEventId } = info;
    const gzip = negotiateGzip(req, res);
    writeStreamHead(res, false);
    // Events must not wait for Nagle (a no-op where the server already set it,
    // Node's default). No TCP keep-alive: the heartbeat detects dead peers.
    socket.setNoDelay(true);
    // Node stops reading a socket, and so never sees the client close it,
    // when a request is pipelined behind output that has not drained (see
    // onStreamSocketPause), or when a request body is not read.
    if (req.httpVersionMajor === 1) socket.on("pause", onStreamSocketPause);
    // A body on `GET /events` means nothing: discard it as it comes, so it
    // never holds the socket paused.
    if (req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined) req.on("data", ignore);
    // The hub removes the subscriber on the response's `close`, which Node
    // emits when this socket closes: the response is the socket's current one.
    sessions.starting(res, info, wantsPresence);
    hub.subscribe(res, topics, lastEventId, directSocket(res), expiresAt, gzip);
    // Per-request state of the routing layer would stay reachable from the
    // request for the whole life of the stream (the `next` closure chain and
    // the parsed URL, ~2 KB per subscriber); nothing runs after this handler.
    const routed = req as { next?: unknown; _parsedUrl?: unknown };
    routed.next = undefined;
    routed._parsedUrl = undefined;
    // The connection will never carry another request: its HTTP parser
    // (~2.3 KB native) goes back to Node's pool (see ./release-parser.ts).
    if (res instanceof ServerResponse) releaseParserLater(req, res);
  };

  /**
   * A closing router must not end anyone's EventSource for good: any status
   * but 200 makes a conforming client give up, while a 200 stream that ends
   * makes it reconnect after `retry:` (jittered, so a restart does not bring
   * everyone back at once), by then to a live instance. Other clients get
   * 503 `closed`.
   */
  const answerClosed = (req: IncomingMessage, res: ServerResponse): void => {
    if (!acceptsEventStream(req)) {
      // Called from Express (which passes a throw to errorHandler) or from a
      // `socket` listener (which would not): hand it to errorHandler directly.
      errorHandler(new SseError("closed", "the SSE hub is closed"), req, res, opts.logger);
      return;
    }
    writeStreamHead(res, false);
    res.end(hub.hello());
  };

  router.post("/submit", async (req: IncomingMessage, res: ServerResponse) => {
    if (refusePipelined(req)) return;
    cors(req, res);
    // Bounded in bytes and time; see ./body.ts for why not express.raw().
    const token = (await readBody(req, res, opts)).toString("latin1").trim();
    if (token === "") throw new SseError("token_missing", "POST /submit needs a token as the request body");
    const { events, idempotencyKey } = parseSubmitPayload(openSubmitToken(token).payload, opts);
    await hub.publish(events, { idempotencyKey });
    send(res, 200);
  });

  router.post("/presence", async (req: IncomingMessage, res: ServerResponse) => {
    if (refusePipelined(req)) return;
    cors(req, res);
    // Signed like a submit body (only backends know the secret), bounded the same way.
    const token = (await readBody(req, res, opts)).toString("latin1").trim();
    if (token === "") throw new SseError("token_missing", "POST /presence needs a token as the request body");
    const topics = parsePresencePayload(openSubmitToken(token).payload, opts);
    send(res, 200, { counts: await presence.counts(topics) });
  });

  router.get("/ping", (req, res) => {
    if (refusePipelined(req)) return;
    cors(req, res);
    send(res, 200);
  });

  if (opts.health) {
    // A load-balancer check: 503 while this instance cannot deliver (closing,
    // or its broker unavailable), 200 otherwise (catching up takes moments).
    router.get("/health", (req, res) => {
      if (refusePipelined(req)) return;
      cors(req, res);
      const state = brokerState(broker);
      const status = hub.closed ? "closing" : state === undefined || state === "ready" ? "ok" : state;
      const body = state === undefined ? { status, ...stats() } : { status, broker: state, ...stats() };
      send(res, status === "closing" || status === "unavailable" ? 503 : 200, body);
    });
  }
  if (opts.metrics) {
    router.get("/metrics", (req, res) => {
      if (refusePipelined(req)) return;
      send(res, 200, prometheus(stats(), brokerState(broker)), "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  // Preflight and wrong methods on our own paths; other paths fall through to
  // the host app (the router may be mounted at "/" next to other routes).
  for (const [path, allow] of Object.entries(ROUTE_METHODS)) {
    if ((path === "/health" && !opts.health) || (path === "/metrics" && !opts.metrics)) continue;
    router.options(path, (req, res) => {
      if (refusePipelined(req)) return;
      cors(req, res);
      res.setHeader("Allow", allow);
      send(res, 204);
    });
    router.all(path, (req, res) => {
      if (refusePipelined(req)) return;
      cors(req, res);
      throw new SseError("method_not_allowed", `${req.method} is not allowed on ${path}; use ${allow.split(",")[0]}`);
    });
  }

  // Four parameters: that is how Express recognises error middleware.
  router.use((err: unknown, req: IncomingMessage, res: ServerResponse, _next: NextFunction) => errorHandler(err, req, res, opts.logger));

  Object.defineProperties(router, {
    publish: {
      value: async (events: readonly PublishEventInput[], options?: PublishOptions): Promise<void> =>
        hub.publish(parsePublishEvents(events, opts), { idempotencyKey: parseIdempotencyKey(options?.idempotencyKey) }),
    },
    close: {
      value: async (): Promise<void> => {
        hub.close();
        // Before the broker closes: withdraw this instance's counts, send the last notices.
        await presence.close();
        await webhook?.close();
        if (ownsBroker) await broker.close();
      },
    },
    presence: {
      value: async (topics: readonly string[]): Promise<Record<string, number>> => {
        if (!Array.isArray(topics) || !topics.every((t) => typeof t === "string")) {
          throw new SseError("payload_invalid", "presence() takes an array of topic names");
        }
        return presence.counts([...new Set(topics)]);
      },
    },
    stats: { get: stats, enumerable: true },
    respondError: {
      value: (req: IncomingMessage, res: ServerResponse, err: SseError): void => {
        cors(req, res);
        errorHandler(err, req, res, opts.logger);
      },
    },
  });
  return router;
}

/**
 * Marks a socket that carries an event stream (or will, once a response
 * ahead of it on the connection is sent): it may carry nothing else.
 */
const kStream = Symbol("sse-server.stream");
type StreamSocket = Socket & { [kStream]?: true };

/**
 * An event stream must be the only request its connection carries. Node
 * answers pipelined requests in order, so a response queued behind a stream
 * (which never ends) could never be sent, Node never emits `close` for it, and
 * whatever is written to it piles up in memory. A request that arrives on such
 * a connection gets the connection destroyed (the stream ends too; its client
 * reconnects). Returns true when it did that; call it before anything else.
 */
export function refusePipelined(req: IncomingMessage): boolean {
  const socket = req.socket as StreamSocket;
  if (socket[kStream] !== true) return false;
  socket.destroy();
  return true;
}

/**
 * Node pauses a server socket (stops reading it) when a request is pipelined
 * behind output that has not drained, and while a request body is not read;
 * a paused socket never reports that the client closed it, so the stream
 * would linger until a heartbeat write failed. Under a stream the first can
 * only be a request to someone else's route (ours refuse it) that can never
 * be answered in order: drop the connection. Node marks that case alone with
 * `_paused`. The second passes by itself: the stream discards its body as it
 * comes, and reading resumes on the next tick.
 */
function onStreamSocketPause(this: Socket & { _paused?: boolean }): void {
  if (this._paused === true) this.destroy();
}

function ignore(): void {}

/**
 * Status and headers of an event stream. `keepAlive` false: the connection
 * closes after the stream's last chunk instead of waiting for another request
 * (which a closing server could only refuse), still without a `Connection`
 * header: Node adds one unless it is removed, and it is illegal in HTTP/2 and
 * not for proxies to see. (With the header removed, Node takes
 * `shouldKeepAlive` alone to decide whether to close.)
 */
function writeStreamHead(res: ServerResponse, keepAlive: boolean): void {
  res.removeHeader("X-Powered-By");
  res.removeHeader("Connection");
  if (!keepAlive) res.shouldKeepAlive = false;
  res.writeHead(200, STREAM_HEADERS);
}

/*
 * Plain Node request/response helpers. The router uses no Express request or
 * response extensions (`req.query`, `res.json`, …), so it also runs in a bare
 * `http.createServer` or any Connect-style stack, and after the stream starts
 * nothing of Express is needed.
 */

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

/** Query parameters of the request (the query parser of the host app is not relied on). */
function queryOf(req: IncomingMessage): URLSearchParams {
  const url = req.url ?? "";
  const q = url.indexOf("?");
  return new URLSearchParams(q === -1 ? "" : url.slice(q + 1));
}

/** Sends a complete response: JSON for objects, text for strings, empty otherwise. */
function send(res: ServerResponse, status: number, body?: object | string, type?: string): void {
  res.statusCode = status;
  if (body === undefined) {
    res.end();
    return;
  }
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.setHeader("Content-Type", type ?? (typeof body === "string" ? "text/plain; charset=utf-8" : "application/json; charset=utf-8"));
  res.setHeader("Content-Length", Buffer.byteLength(text));
  res.end(text);
}

function appendVary(res: ServerResponse, field: string): void {
  const current = res.getHeader("Vary");
  const list = current === undefined ? [] : String(current).split(",").map((v) => v.trim()).filter(Boolean);
  if (list.includes("*") || list.some((v) => v.toLowerCase() === field.toLowerCase())) return;
  res.setHeader("Vary", [...list, field].join(", "));
}

/**
 * The socket under a plain HTTP/1.x response, for the hub's fast path. Only
 * when nothing wraps `res.write` (compression or similar middleware must see
 * every byte, so then the hub writes through `res` as usual). Never for
 * HTTP/2: an `Http2ServerResponse` is no `ServerResponse`, and its `socket`
 * is the session's, shared by every stream and framed by nghttp2, so the hub
 * writes through `res.write` into the h2 stream (whose `writableLength`
 * bounds a slow client).
 */
function directSocket(res: ServerResponse): DirectSocket | undefined {
  const socket = res.socket;
  const plain = res instanceof ServerResponse && res.write === ServerResponse.prototype.write && res.end === ServerResponse.prototype.end;
  if (socket === null || !plain || socket.destroyed) return undefined;
  return { socket, chunked: (res as unknown as { chunkedEncoding: boolean }).chunkedEncoding === true };
}

/**
 * Token from, in order: `?token=` (the original's way), `Authorization:
 * Bearer`, or the configured cookie. Tokens are secrets: never logged.
 */
function findToken(req: IncomingMessage, query: URLSearchParams, cookieName: string | undefined): string {
  const tokens = query.getAll("token");
  if (tokens.length > 1) throw new SseError("token_invalid", "token must be given once");
  if (tokens.length === 1 && tokens[0] !== "") return tokens[0]!;
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(auth);
    if (match) return match[1]!;
  }
  if (cookieName !== undefined) {
    const value = readCookie(req.headers.cookie, cookieName);
    if (value) return value;
  }
  throw new SseError("token_missing", "a subscribe token is required: ?token=, Authorization: Bearer, or cookie");
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      return value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
    }
  }
  return undefined;
}

/**
 * `Last-Event-ID` header, or `lastEventId` query parameter for clients that
 * cannot set headers. An empty id means "no resume", as in the SSE spec; an
 * id we could never have issued is passed on and answered with `sse:reset`.
 */
function findLastEventId(req: IncomingMessage, query: URLSearchParams): string | undefined {
  const header = req.headers["last-event-id"];
  const fromQuery = query.getAll("lastEventId");
  const raw = typeof header === "string" && header !== "" ? header : fromQuery.length === 1 ? fromQuery[0] : undefined;
  if (raw === undefined || raw === "") return undefined;
  // Anything we would never issue is "unknown" (the broker answers sse:reset).
  return raw.length > MAX_LAST_EVENT_ID || /[\r\n\0]/.test(raw) ? "invalid" : raw;
}

function applyCors(opts: ResolvedOptions, req: IncomingMessage, res: ServerResponse): void {
  const policy = opts.cors;
  if (policy === false) return;
  if (policy === "*") {
    res.setHeader("Access-Control-Allow-Origin", "*");
  } else {
    // Appended, not set: the host app may vary on other headers too.
    appendVary(res, "Origin");
    const origin = req.headers.origin;
    if (origin === undefined || !policy.has(origin)) return;
    res.setHeader("Access-Control-Allow-Origin", origin);
    res.setHeader("Access-Control-Allow-Credentials", "true");
  }
  if (req.method === "OPTIONS") {
    res.setHeader("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    res.setHeader("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, Cache-Control");
    res.setHeader("Access-Control-Max-Age", "86400");
  }
}

const EVENT_STREAM = /(^|,)\s*text\/event-stream\s*(;|,|$)/i;

/** Does the request list `text/event-stream` in `Accept` (as EventSource does)? Such a client must get 200, never an error status. */
function acceptsEventStream(req: IncomingMessage): boolean {
  return EVENT_STREAM.test(req.headers.accept ?? "");
}

/**
 * Answers a connection refused by admission control ({@link ShedReason}).
 *
 * WHATWG HTML, "Server-sent events", processing the response: a status other
 * than 200 (or a Content-Type other than text/event-stream) makes the user
 * agent *fail the connection*: readyState becomes CLOSED and a conforming
 * EventSource never reconnects. A normal end of a 200 stream instead makes it
 * *reestablish the connection* after its reconnection time. So a request that
 * accepts `text/event-stream` gets 200, the stream headers, a jittered
 * `retry:` (the reconnection time) and the end of the stream at once: the
 * browser comes back by itself, spread out. Other clients get `503` with
 * `Retry-After`.
 * https://html.spec.whatwg.org/multipage/server-sent-events.html#fail-the-connection
 */
function shed(req: IncomingMessage, res: ServerResponse, opts: ResolvedOptions, reason: ShedReason): void {
  // At least a second, spread over at least another: shed clients must not come back in one wave.
  const wait = Math.max(opts.retry, 1000) + Math.random() * Math.max(opts.retryJitter, 1000);
  const why = reason === "hook_timeout" ? "the subscription could not be checked in time" : `over the ${SHED_LIMIT[reason]} limit`;
  opts.logger.debug(`${req.method} ${pathOf(req)} shed: ${why}`, { reason });
  if (req.method === "GET" && acceptsEventStream(req)) {
    // Ends at once, and its connection is not reused (see writeStreamHead).
    writeStreamHead(res, false);
    res.end(frameRetry(wait));
    return;
  }
  res.setHeader("Retry-After", String(Math.ceil(wait / 1000)));
  throw new SseError("over_capacity", `${why}; retry later`);
}

const SHED_LIMIT: Readonly<Record<Exclude<ShedReason, "hook_timeout">, string>> = Object.freeze({
  connections: "maxConnections",
  subject: "maxConnectionsPerSubject",
  rate: "connectRate",
});

/**
 * The one place that maps errors to HTTP. Never echoes tokens or bodies.
 * Every error reaching here is answered; none is passed on to the host app.
 */
function errorHandler(err: unknown, req: IncomingMessage, res: ServerResponse, logger: Logger): void {
  if (res.headersSent) {
    // The stream already started; nothing useful can be sent. Drop the connection.
    res.destroy();
    return;
  }
  const sseError = toSseError(err);
  // Paths only, never the request line or headers: they may carry tokens.
  // SseError messages name the check that failed, never the token itself.
  if (sseError.code === "internal") {
    logger.error(`internal error on ${req.method} ${pathOf(req)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } else {
    logger.debug(`${req.method} ${pathOf(req)} refused: ${sseError.message}`, { status: sseError.status, code: sseError.code });
  }
  (res as { [RESPONSE_ERROR_CODE]?: string })[RESPONSE_ERROR_CODE] = sseError.code;
  if (sseError.code === "method_not_allowed") {
    const allow = ROUTE_METHODS[pathOf(req)];
    if (allow) res.setHeader("Allow", allow);
  }
  send(res, sseError.status, sseError.toJSON());
}

/** The broker's state, if it reports one ({@link BrokerHealth}). */
function brokerState(broker: Broker): BrokerState | undefined {
  return hasBrokerHealth(broker) ? broker.state : undefined;
}

/** Errors of other origin that carry an HTTP-style 4xx `status` are the client's fault; give them our code. */
function toSseError(err: unknown): SseError {
  if (isSseError(err)) return err;
  if (err === null || typeof err !== "object") return new SseError("internal", "internal error");
  const { status } = err as { status?: unknown };
  if (typeof status === "number" && status >= 400 && status < 500) {
    return new SseError("payload_invalid", "request body could not be read");
  }
  return new SseError("internal", "internal error");
}

/** Prometheus metrics: name, type, help, and how to read the value from stats. */
const METRICS: ReadonlyArray<readonly [string, "gauge" | "counter", string, (s: HubStats) => number]> = [
  ["sse_subscribers", "gauge", "Connected subscribers.", (s) => s.subscribers],
  ["sse_topics", "gauge", "Topics with at least one subscriber.", (s) => s.topics],
  ["sse_events_published_total", "counter", "Events received from the broker.", (s) => s.eventsPublished],
  ["sse_events_delivered_total", "counter", "Event frames written to subscribers.", (s) => s.eventsDelivered],
  ["sse_replays_total", "counter", "Resumes served from history.", (s) => s.replays],
  ["sse_resets_total", "counter", "Resumes answered with sse:reset.", (s) => s.resets],
  ["sse_broker_resets_total", "counter", "Stretches of the log the broker could not deliver (every subscriber got sse:reset).", (s) => s.brokerResets],
];

const BROKER_STATES: readonly BrokerState[] = ["ready", "catching_up", "unavailable"];

function prometheus(stats: RouterStats, brokerState: BrokerState | undefined): string {
  const lines: string[] = [];
  for (const [name, type, help, read] of METRICS) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${read(stats)}`);
  }
  if (brokerState !== undefined) {
    // One series per state, 1 for the current one: alerts can match on the label.
    lines.push("# HELP sse_broker_state Broker state (1 for the current one).", "# TYPE sse_broker_state gauge");
    for (const state of BROKER_STATES) lines.push(`sse_broker_state{state="${state}"} ${state === brokerState ? 1 : 0}`);
  }
  lines.push("# HELP sse_disconnects_total Subscriber disconnects by reason.", "# TYPE sse_disconnects_total counter");
  for (const [reason, n] of Object.entries(stats.disconnects)) lines.push(`sse_disconnects_total{reason="${reason}"} ${n}`);
  lines.push("# HELP sse_shed_total Connections refused by admission control, by limit.", "# TYPE sse_shed_total counter");
  for (const [reason, n] of Object.entries(stats.shed)) lines.push(`sse_shed_total{reason="${reason}"} ${n}`);
  lines.push("# HELP sse_subscribe_refused_total Subscriptions refused by the onSubscribe hook.", "# TYPE sse_subscribe_refused_total counter", `sse_subscribe_refused_total ${stats.refused}`);
  const webhook = stats.webhook;
  if (webhook !== undefined) {
    lines.push("# HELP sse_webhook_notices_total Webhook notices by outcome.", "# TYPE sse_webhook_notices_total counter");
    lines.push(`sse_webhook_notices_total{result="sent"} ${webhook.sent}`, `sse_webhook_notices_total{result="dropped"} ${webhook.dropped}`);
    lines.push("# HELP sse_webhook_queue Webhook notices waiting.", "# TYPE sse_webhook_queue gauge", `sse_webhook_queue ${webhook.queued}`);
    lines.push("# HELP sse_webhook_failures_total Failed webhook requests (retried).", "# TYPE sse_webhook_failures_total counter", `sse_webhook_failures_total ${webhook.failures}`);
  }
  return lines.join("\n") + "\n";
}
