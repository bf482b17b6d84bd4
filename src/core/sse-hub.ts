/**
 * The framework-free core: options, token opener, hub, broker and lifecycle,
 * with request handlers for plain Node request/response objects (HTTP/1.1
 * and HTTP/2 compatibility API). Adapters (Express, Fastify, the standalone
 * server) only register these handlers; no framework is imported here.
 */
import { ServerResponse, type IncomingMessage } from "node:http";
import { readBody } from "./body";
import { acceptsGzip } from "./accept-encoding";
import { Admission, type ShedReason } from "./admission";
import { MemoryBroker, hasBrokerHealth, type Broker, type BrokerState, type PublishOptions } from "../brokers/broker";
import { SseError, isSseError } from "../errors";
import { frameRetry } from "../framing/frame";
import { Hub } from "./hub";
import { connectionFor } from "../transport";
import { releaseParserLater } from "../transport/release-parser";
import { resolveOptions, type ResolvedOptions, type SseHubOptions } from "../options";
import { Presence } from "./presence";
import { HOOK_TIMEOUT, Sessions, runSubscribeHook, type SubscribeInfo } from "./sessions";
import {
  createTokenOpener,
  parseIdempotencyKey,
  parsePresencePayload,
  parsePublishEvents,
  parseSubmitPayload,
  parseSubscribeToken,
  type OpenedToken,
  type PublishEventInput,
} from "../tokens";
import { Webhook } from "./webhook";
import {
  acceptsEventStream,
  appendVary,
  applyCors,
  findLastEventId,
  findToken,
  ignore,
  kStream,
  onStreamSocketPause,
  pathOf,
  queryOf,
  refusePipelined,
  send,
  writeStreamHead,
  type NodeHandler,
  type NodeRequest,
  type NodeResponse,
  type StreamSocket,
} from "./http";
import { prometheus } from "./metrics";
import { respondWithError } from "./respond";
import type { SseHubStats } from "./stats";

export type { SseHubStats };

/** One SSE hub: its routes as plain Node handlers, its lifecycle, and publishing. */
export interface SseHub {
  /**
   * Route path relative to the mount point (`/events`, `/submit`,
   * `/presence`, `/ping`, and `/health`, `/metrics` when enabled) → a
   * handler that answers every method on it: the route's own, `OPTIONS`
   * (CORS preflight), and 405 with `Allow` otherwise. Frameworks register
   * these under the mount point.
   */
  readonly routes: ReadonlyMap<string, NodeHandler>;
  /**
   * Dispatches by the path of `req.url` (relative to the mount point). For a
   * path that is not ours, calls `next()` when given, else answers the JSON
   * 404 `not_found`. Refuses a request pipelined behind an event stream on
   * any path (see {@link refusePipelined}).
   */
  handle(req: NodeRequest, res: NodeResponse, next?: (err?: unknown) => void): void;
  /**
   * The broker is started when the hub is created (handlers and `publish`
   * wait for it); this resolves once it did, or rejects with `broker_failed`
   * if it could not (then `/events` and `/submit` answer 503 `broker_failed`
   * too). Idempotent.
   */
  start(): Promise<void>;
  /**
   * Publishes events to this hub's topics (and, with a shared broker,
   * everywhere). Resolves once the broker accepted them. `data` may be any
   * JSON value; a non-string is sent as `JSON.stringify(data)`. With
   * `idempotencyKey`, a retry after a failure (a `broker_unavailable` may
   * still mean stored) resolves without publishing twice.
   */
  publish(events: readonly PublishEventInput[], options?: PublishOptions): Promise<void>;
  /**
   * Subscribers per topic: on this instance, plus, with a broker that shares
   * presence (Redis), every other live instance (see the README on how
   * current that is). Rejects with `broker_unavailable` while Redis is away.
   */
  presence(topics: readonly string[]): Promise<Record<string, number>>;
  /** A snapshot of counters; see {@link SseHubStats}. */
  readonly stats: SseHubStats;
  /**
   * Answers `err` exactly as the hub answers its own errors (its CORS
   * policy, the JSON body, status from the error code, logging), e.g. a
   * host's 404 for paths outside the mount point.
   */
  respondError(req: NodeRequest, res: NodeResponse, err: SseError): void;
  /** Ends every stream cleanly, stops timers, closes the broker if this hub created it. */
  close(): Promise<void>;
  /** True once {@link close} was called. */
  readonly closed: boolean;
}

/** A route's method handler; may throw or reject (the route answers the error). */
type MethodHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/**
 * Creates a hub serving `GET /events`, `POST /submit`, `POST /presence` and
 * `GET /ping` (and `/health`, `/metrics` when enabled) relative to where it
 * is mounted. Each hub owns its topic map, token verifier and (unless one is
 * passed) its broker.
 *
 * @throws SseError `invalid_option` when an option is invalid (e.g. the secret).
 */
export function createSseHub(options: SseHubOptions): SseHub {
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
  const stats = (): SseHubStats => ({ ...hub.stats, ...admission.stats, ...(webhook !== undefined ? { webhook: webhook.stats } : {}) });

  const opener = createTokenOpener(opts.key);
  const time = { ttl: opts.tokenTtl, clockSkew: opts.tokenClockSkew };
  // Anyone can send a subscribe token, and decoding costs ~n^1.6: its own,
  // smaller cap keeps a flood of forged ones cheap (issue 15).
  // While forged long ones flood in, long ones are shed unread (tokens/index.ts, InvalidTokenBudget).
  const openSubscribeToken = opener({ ...time, maxLength: opts.maxSubscribeTokenLength, shedWhenFlooded: true });
  const openSubmitToken = opener({ ...time, maxLength: opts.maxTokenLength });
  // CORS is applied inside each handler rather than as a middleware layer:
  // one routing step less on every connect.
  const cors = (req: IncomingMessage, res: ServerResponse) => applyCors(opts, req, res);
  const wantsRemoteAddress = opts.onSubscribe !== undefined || opts.onUnsubscribe !== undefined || webhook !== undefined;

  const events: MethodHandler = async (req, res) => {
    cors(req, res);
    if (hub.closed) return answerClosed(req, res);
    // A broker that could not start would leave the stream without events for good.
    if (hub.failed !== undefined) throw hub.failed;
    // Rate and instance cap before the token: a connect storm costs no decryption.
    const gated = admission.gate();
    if (gated !== undefined) return shed(req, res, opts, gated);
    const query = queryOf(req);
    const token = findToken(req, query, opts.tokenCookie);
    let opened: OpenedToken;
    try {
      opened = openSubscribeToken(token);
    } catch (err) {
      if (isSseError(err) && err.code === "over_capacity") return shed(req, res, opts, admission.shed("tokens"));
      throw err;
    }
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
  };

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
    hub.subscribe(res, topics, lastEventId, connectionFor(res), expiresAt, gzip);
    // Per-request state of a routing layer (Express: the `next` closure chain
    // and the parsed URL, ~2 KB per subscriber) would stay reachable from the
    // request for the whole life of the stream; nothing runs after this handler.
    const routed = req as { next?: unknown; _parsedUrl?: unknown };
    routed.next = undefined;
    routed._parsedUrl = undefined;
    // The connection will never carry another request: its HTTP parser
    // (~2.3 KB native) goes back to Node's pool (see ../transport/release-parser.ts).
    if (res instanceof ServerResponse) releaseParserLater(req, res);
  };

  /**
   * A closing hub must not end anyone's EventSource for good: any status
   * but 200 makes a conforming client give up, while a 200 stream that ends
   * makes it reconnect after `retry:` (jittered, so a restart does not bring
   * everyone back at once), by then to a live instance. Other clients get
   * 503 `closed`.
   */
  const answerClosed = (req: IncomingMessage, res: ServerResponse): void => {
    if (!acceptsEventStream(req)) {
      // Called from a handler or from a `socket` listener (where a throw
      // would go nowhere): answer directly.
      respondWithError(new SseError("closed", "the SSE hub is closed"), req, res, opts.logger);
      return;
    }
    writeStreamHead(res, false);
    res.end(hub.hello());
  };

  const submit: MethodHandler = async (req, res) => {
    cors(req, res);
    if (hub.failed !== undefined) throw hub.failed;
    // Bounded in bytes and time; see ../body.ts for why not a framework's body parser.
    const token = (await readBody(req, res, opts)).toString("latin1").trim();
    if (token === "") throw new SseError("token_missing", "POST /submit needs a token as the request body");
    const { events, idempotencyKey } = parseSubmitPayload(openSubmitToken(token).payload, opts);
    await hub.publish(events, { idempotencyKey });
    send(res, 200);
  };

  const presenceRoute: MethodHandler = async (req, res) => {
    cors(req, res);
    // Signed like a submit body (only backends know the secret), bounded the same way.
    const token = (await readBody(req, res, opts)).toString("latin1").trim();
    if (token === "") throw new SseError("token_missing", "POST /presence needs a token as the request body");
    const topics = parsePresencePayload(openSubmitToken(token).payload, opts);
    send(res, 200, { counts: await presence.counts(topics) });
  };

  const ping: MethodHandler = (req, res) => {
    cors(req, res);
    send(res, 200);
  };

  // A load-balancer check: 503 while this instance cannot deliver (closing,
  // its broker unavailable or failed to start), 200 otherwise (catching up takes moments).
  const health: MethodHandler = (req, res) => {
    cors(req, res);
    const state = hub.failed !== undefined ? "unavailable" : brokerState(broker);
    const status = hub.closed ? "closing" : state === undefined || state === "ready" ? "ok" : state;
    const body = state === undefined ? { status, ...stats() } : { status, broker: state, ...stats() };
    send(res, status === "closing" || status === "unavailable" ? 503 : 200, body);
  };

  const metrics: MethodHandler = (_req, res) => {
    send(res, 200, prometheus(stats(), brokerState(broker)), "text/plain; version=0.0.4; charset=utf-8");
  };

  /**
   * One route: its method handlers (GET also answers HEAD), `OPTIONS`, and
   * 405 for anything else; every error answered by {@link respondWithError}.
   */
  const route = (path: string, allow: string, methods: { GET?: MethodHandler; POST?: MethodHandler }): NodeHandler => {
    const fail = (err: unknown, req: IncomingMessage, res: ServerResponse) => respondWithError(err, req, res, opts.logger, allow);
    return (nodeReq, nodeRes) => {
      // Node's HTTP/2 compatibility request and response have every call used
      // here (where they differ, e.g. no chunked coding, the code checks
      // `httpVersionMajor` or the response's class): one narrowing, here.
      const req = nodeReq as IncomingMessage;
      const res = nodeRes as ServerResponse;
      if (refusePipelined(req)) return;
      try {
        const method = req.method;
        const handler = method === "GET" || method === "HEAD" ? methods.GET : method === "POST" ? methods.POST : undefined;
        if (handler !== undefined) {
          const done = handler(req, res);
          if (done !== undefined) done.catch((err: unknown) => fail(err, req, res));
          return;
        }
        cors(req, res);
        if (method === "OPTIONS") {
          res.setHeader("Allow", allow);
          send(res, 204);
          return;
        }
        throw new SseError("method_not_allowed", `${method} is not allowed on ${path}; use ${allow.split(",")[0]}`);
      } catch (err) {
        fail(err, req, res);
      }
    };
  };

  const routes = new Map<string, NodeHandler>([
    ["/events", route("/events", "GET, HEAD, OPTIONS", { GET: events })],
    ["/submit", route("/submit", "POST, OPTIONS", { POST: submit })],
    ["/presence", route("/presence", "POST, OPTIONS", { POST: presenceRoute })],
    ["/ping", route("/ping", "GET, HEAD, OPTIONS", { GET: ping })],
  ]);
  if (opts.health) routes.set("/health", route("/health", "GET, HEAD, OPTIONS", { GET: health }));
  if (opts.metrics) routes.set("/metrics", route("/metrics", "GET, HEAD, OPTIONS", { GET: metrics }));

  const respondError = (req: NodeRequest, res: NodeResponse, err: SseError): void => {
    cors(req as IncomingMessage, res as ServerResponse);
    respondWithError(err, req as IncomingMessage, res as ServerResponse, opts.logger);
  };

  let closing: Promise<void> | undefined;
  return {
    routes,
    handle(req, res, next) {
      // Every path, not only ours: nothing may queue behind a stream.
      if (refusePipelined(req)) return;
      const path = pathOf(req);
      const handler = routes.get(path) ?? routes.get(normalizePath(path));
      if (handler !== undefined) handler(req, res);
      else if (next !== undefined) next();
      else respondError(req, res, new SseError("not_found", `no route for ${req.method} ${path}`));
    },
    start: () => hub.whenStarted(),
    publish: async (events, options) => hub.publish(parsePublishEvents(events, opts), { idempotencyKey: parseIdempotencyKey(options?.idempotencyKey) }),
    presence: async (topics) => {
      if (!Array.isArray(topics) || !topics.every((t) => typeof t === "string")) {
        throw new SseError("payload_invalid", "presence() takes an array of topic names");
      }
      return presence.counts([...new Set(topics)]);
    },
    get stats() {
      return stats();
    },
    respondError,
    close: () =>
      (closing ??= (async () => {
        hub.close();
        // Before the broker closes: withdraw this instance's counts, send the last notices.
        await presence.close();
        await webhook?.close();
        if (ownsBroker) await broker.close();
      })()),
    get closed() {
      return hub.closed;
    },
  };
}

/**
 * Route paths match as in Express's default routing (which served them
 * before the core existed): case-insensitively, with or without one trailing
 * slash. Only tried when the exact path missed.
 */
function normalizePath(path: string): string {
  const trimmed = path.length > 1 && path.endsWith("/") ? path.slice(0, -1) : path;
  return trimmed.toLowerCase();
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
  const why =
    reason === "hook_timeout"
      ? "the subscription could not be checked in time"
      : reason === "tokens"
        ? "too many invalid long tokens lately"
        : `over the ${SHED_LIMIT[reason]} limit`;
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

const SHED_LIMIT: Readonly<Record<Exclude<ShedReason, "hook_timeout" | "tokens">, string>> = Object.freeze({
  connections: "maxConnections",
  subject: "maxConnectionsPerSubject",
  rate: "connectRate",
});

/** The broker's state, if it reports one ({@link BrokerHealth}). */
function brokerState(broker: Broker): BrokerState | undefined {
  return hasBrokerHealth(broker) ? broker.state : undefined;
}
