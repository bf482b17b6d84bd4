/**
 * The Express side: routes, headers, token extraction, CORS, and the one
 * place that turns errors into HTTP responses. The only module that imports
 * Express.
 */
import { ServerResponse, type IncomingMessage } from "node:http";
import express, { type NextFunction, type Request, type Response, type Router } from "express";
import { Admission, type AdmissionStats, type ShedReason } from "./admission";
import { MemoryBroker } from "./broker";
import { RESPONSE_ERROR_CODE, SseError, isSseError } from "./errors";
import { frameRetry } from "./frame";
import { Hub, type DirectSocket, type HubStats } from "./hub";
import type { Logger } from "./logger";
import { resolveOptions, type ResolvedOptions, type SseRouterOptions } from "./options";
import { Presence } from "./presence";
import { HOOK_TIMEOUT, Sessions, runSubscribeHook, type SubscribeInfo } from "./sessions";
import { createTokenOpener, parsePresencePayload, parsePublishEvents, parseSubmitPayload, parseSubscribeToken, type PublishEventInput } from "./tokens";
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
   * JSON value; a non-string is sent as `JSON.stringify(data)`.
   */
  publish(events: readonly PublishEventInput[]): Promise<void>;
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
  const broker = opts.broker ?? new MemoryBroker({ historyBytes: opts.historyBytes, historyAge: opts.historyAge });
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
  const openToken = createTokenOpener(opts.key, opts.tokenTtl, opts.maxTokenLength);
  // CORS is applied inside each handler rather than as a middleware layer:
  // one routing step less on every connect.
  const cors = (req: IncomingMessage, res: ServerResponse) => applyCors(opts, req, res);

  router.get("/events", async (req, res) => {
    cors(req, res);
    if (hub.closed) throw new SseError("closed", "the SSE hub is closed");
    // Rate and instance cap before the token: a connect storm costs no decryption.
    const gated = admission.gate();
    if (gated !== undefined) return shed(req, res, opts, gated);
    const query = queryOf(req);
    const token = findToken(req, query, opts.tokenCookie);
    const payload = parseSubscribeToken(openToken(token), opts);
    const topics = payload.topics;
    const lastEventId = findLastEventId(req, query);
    const subject = payload.sub;
    const refused = admission.admit(subject);
    if (refused !== undefined) return shed(req, res, opts, refused);
    // From here the slot is ours: given back by `sessions` when the stream ends, or below.
    const info: SubscribeInfo = { topics, sub: subject, token: payload.payload, remoteAddress: req.socket.remoteAddress, lastEventId };
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
        if (hub.closed) throw new SseError("closed", "the SSE hub is closed");
        return;
      }
    }
    res.removeHeader("X-Powered-By");
    // Node adds `Connection: keep-alive` unless told otherwise; the header is
    // illegal in HTTP/2 and proxies must not see it.
    res.removeHeader("Connection");
    res.writeHead(200, STREAM_HEADERS);
    if (req.method === "HEAD") {
      admission.release(subject);
      res.end();
      return;
    }
    // Events must not wait for Nagle (a no-op where the server already set it,
    // Node's default). No TCP keep-alive: the heartbeat detects dead peers.
    req.socket.setNoDelay(true);
    sessions.starting(res, info, payload.presence);
    hub.subscribe(res, topics, lastEventId, directSocket(res));
    // Per-request state of the routing layer would stay reachable from the
    // request for the whole life of the stream (the `next` closure chain and
    // the parsed URL, ~2 KB per subscriber); nothing runs after this handler.
    const routed = req as { next?: unknown; _parsedUrl?: unknown };
    routed.next = undefined;
    routed._parsedUrl = undefined;
  });

  router.post(
    "/submit",
    (req: IncomingMessage, res: ServerResponse, next: NextFunction) => {
      cors(req, res);
      next();
    },
    express.raw({ type: () => true, limit: opts.bodyLimit }),
    async (req: Request, res: Response) => {
      const body: unknown = req.body;
      const token = Buffer.isBuffer(body) ? body.toString("latin1").trim() : "";
      if (token === "") throw new SseError("token_missing", "POST /submit needs a token as the request body");
      const events = parseSubmitPayload(openToken(token), opts);
      await hub.publish(events);
      send(res, 200);
    },
  );

  router.post(
    "/presence",
    (req: IncomingMessage, res: ServerResponse, next: NextFunction) => {
      cors(req, res);
      next();
    },
    express.raw({ type: () => true, limit: opts.bodyLimit }),
    async (req: Request, res: Response) => {
      const body: unknown = req.body;
      const token = Buffer.isBuffer(body) ? body.toString("latin1").trim() : "";
      if (token === "") throw new SseError("token_missing", "POST /presence needs a token as the request body");
      const topics = parsePresencePayload(openToken(token), opts);
      send(res, 200, { counts: await presence.counts(topics) });
    },
  );

  router.get("/ping", (req, res) => {
    cors(req, res);
    send(res, 200);
  });

  if (opts.health) {
    router.get("/health", (req, res) => {
      cors(req, res);
      send(res, hub.closed ? 503 : 200, { status: hub.closed ? "closing" : "ok", ...stats() });
    });
  }
  if (opts.metrics) {
    router.get("/metrics", (_req, res) => {
      send(res, 200, prometheus(stats()), "text/plain; version=0.0.4; charset=utf-8");
    });
  }

  // Preflight and wrong methods on our own paths; other paths fall through to
  // the host app (the router may be mounted at "/" next to other routes).
  for (const [path, allow] of Object.entries(ROUTE_METHODS)) {
    if ((path === "/health" && !opts.health) || (path === "/metrics" && !opts.metrics)) continue;
    router.options(path, (req, res) => {
      cors(req, res);
      res.setHeader("Allow", allow);
      send(res, 204);
    });
    router.all(path, (req, res) => {
      cors(req, res);
      throw new SseError("method_not_allowed", `${req.method} is not allowed on ${path}; use ${allow.split(",")[0]}`);
    });
  }

  // Four parameters: that is how Express recognises error middleware.
  router.use((err: unknown, req: IncomingMessage, res: ServerResponse, _next: NextFunction) => errorHandler(err, req, res, opts.logger));

  Object.defineProperties(router, {
    publish: {
      value: async (events: readonly PublishEventInput[]): Promise<void> => hub.publish(parsePublishEvents(events, opts)),
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
  });
  return router;
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
 * every byte, so then the hub writes through `res` as usual).
 */
function directSocket(res: ServerResponse): DirectSocket | undefined {
  const socket = res.socket;
  const plain = res.write === ServerResponse.prototype.write && res.end === ServerResponse.prototype.end;
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
  if (req.method === "GET" && EVENT_STREAM.test(req.headers.accept ?? "")) {
    res.removeHeader("X-Powered-By");
    res.removeHeader("Connection");
    res.writeHead(200, STREAM_HEADERS);
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

/** Errors from body-parser and friends carry `type`/`status`; give them our codes. */
function toSseError(err: unknown): SseError {
  if (isSseError(err)) return err;
  if (err === null || typeof err !== "object") return new SseError("internal", "internal error");
  const { type, status } = err as { type?: unknown; status?: unknown };
  if (type === "entity.too.large") return new SseError("payload_too_large", "request body is larger than the limit");
  if (type === "request.aborted") return new SseError("payload_invalid", "request was aborted");
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
];

function prometheus(stats: RouterStats): string {
  const lines: string[] = [];
  for (const [name, type, help, read] of METRICS) {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, `${name} ${read(stats)}`);
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
