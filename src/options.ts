/**
 * Every option of {@link createSseRouter}, typed in one interface and resolved
 * (defaults applied, validated) exactly once by {@link resolveOptions}.
 */
import { MEMORY_BROKER_DEFAULTS, type Broker } from "./brokers/broker";
import { DEFAULT_LOGGER, type Logger } from "./logger";
import { integerOption, invalid, parseSecret, rejectUnknownKeys } from "./validate";

export { integerOption, parseSecret };

/** The options of {@link createSseRouter}: the same as the core's {@link SseHubOptions}. */
export type SseRouterOptions = SseHubOptions;
import type { SubscribeHook, UnsubscribeHook } from "./core/sessions";

export interface SseHubOptions {
  /**
   * Shared secret: 32 bytes, as 64 hex characters or a `Buffer`/`Uint8Array`.
   * The same secret the backends use to mint tokens. Required.
   */
  secret: string | Uint8Array;
  /** Maximum token age in seconds, checked against the Branca timestamp. `0` disables the check. Defaults to `86400`. */
  tokenTtl?: number;
  /**
   * Seconds before a stream's token expires (Branca timestamp + `tokenTtl`)
   * at which the stream gets `event:sse:expiring` with data
   * `{"expiresAt":<unix ms>}`, so a client can fetch a fresh token; at once
   * when less is left. At expiry the stream ends (disconnect reason
   * `expired`). `0` sends no notice (the stream still ends at expiry). No
   * effect with `tokenTtl: 0`. Defaults to `60`.
   */
  expiryNotice?: number;
  /**
   * Seconds a token's Branca timestamp may lie in the future (clocks of the
   * minting backend and this server disagree a little); tokens stamped further
   * ahead are rejected as `token_invalid`, so a far-future timestamp cannot
   * escape `tokenTtl`. Checked only while `tokenTtl` is not `0`. Defaults to `60`.
   */
  tokenClockSkew?: number;
  /** Interval of the `:` heartbeat comment in milliseconds. `0` disables periodic heartbeats. Defaults to `30000`. */
  heartbeatInterval?: number;
  /**
   * Maximum `/submit` body size in bytes, on the wire and after
   * decompression. A larger declared `Content-Length` is answered 413 before
   * the body is read. Defaults to `8192`.
   */
  bodyLimit?: number;
  /**
   * Milliseconds the whole `/submit` body may take to arrive; then 408
   * `request_timeout` and the connection is closed. Bounds slow-body attacks
   * wherever the router is mounted. `0` disables the timer. Defaults to `10000`.
   */
  bodyTimeout?: number;
  /**
   * Maximum length in characters of a `/submit` token (the request body, also
   * bounded by `bodyLimit`); longer tokens are rejected before any decoding.
   * Defaults to `16384`.
   */
  maxTokenLength?: number;
  /**
   * Maximum length in characters of a subscribe token (query, `Authorization:
   * Bearer` or cookie); longer ones get 401 `token_too_long` before any
   * decoding. Its own, smaller cap because anyone can send these and base62
   * decoding costs about n^1.6: at 4096 characters a forged token costs
   * about 0.2 ms of CPU to reject (`npm run bench:token` checks it), against
   * ~1 ms at 16,384. 4096 characters hold about 140 topics of 20
   * characters (213 of 13, e.g. `user:12345678`). Defaults to `4096`.
   */
  maxSubscribeTokenLength?: number;
  /** Maximum distinct topics in one subscription. Defaults to `256`. */
  maxTopics?: number;
  /** Maximum length of a topic name, in UTF-16 code units. Defaults to `256`. */
  maxTopicLength?: number;
  /** Maximum length of an event name. Defaults to `256`. */
  maxEventNameLength?: number;
  /** Maximum events in one `/submit` or `publish()` call. Defaults to `1000`. */
  maxEventsPerSubmit?: number;
  /**
   * Bytes that may wait in a subscriber's socket buffer. A subscriber that
   * falls further behind is disconnected (it can resume from history), never
   * silently skipped. A resume is written in pages of at most a quarter of
   * it (64 KiB at most), the next once the socket drained; live events held
   * meanwhile are bounded by half of it (past that they are read from
   * history again). Defaults to `262144` (256 KiB).
   */
  maxBufferBytes?: number;
  /** Base `retry:` value sent on connect, in ms. `0` sends no `retry:` line. Defaults to `3000`. */
  retry?: number;
  /** Random jitter added to `retry`, uniformly in `[0, retryJitter)` ms, so a restart spreads reconnects. Defaults to `2000`. */
  retryJitter?: number;
  /**
   * Bytes of event history kept for resume (`Last-Event-ID`): frame bytes
   * plus a fixed 200 bytes per event for what an entry costs besides its
   * frame. `0` disables history. Defaults to `16777216` (16 MiB).
   */
  historyBytes?: number;
  /** Maximum age of history entries in ms. `0` means no age limit. Defaults to `300000` (5 minutes). */
  historyAge?: number;
  /**
   * How long the in-memory broker remembers a `/submit` or `publish()`
   * idempotency key, in ms: a retry with the same key within it answers 200
   * without publishing again. `0` remembers none. Ignored when a `broker` is
   * passed (give the Redis broker its own `idempotencyWindow`). Defaults to
   * `300000` (5 minutes).
   */
  idempotencyWindow?: number;
  /**
   * `Access-Control-Allow-Origin` policy: `"*"` (the original's behaviour), a
   * list of allowed origins (answered with credentials allowed, for cookie
   * tokens), or `false` to send no CORS headers. Defaults to `"*"`.
   */
  cors?: "*" | readonly string[] | false;
  /** Name of a cookie that may carry the subscribe token. Defaults to `undefined` (cookies not read). */
  tokenCookie?: string;
  /**
   * Where events go and come from. Defaults to an in-memory broker owned by
   * this router (no setup, single process). Pass a shared broker (e.g.
   * `sse-hub/redis`) to fan out across processes and machines.
   */
  broker?: Broker;
  /** Serve `GET /health` with JSON stats. Defaults to `false`. */
  health?: boolean;
  /** Serve `GET /metrics` in Prometheus text format. Defaults to `false`. */
  metrics?: boolean;
  /**
   * gzip event streams for clients whose `Accept-Encoding` accepts it (others
   * get plain bytes; `Vary: Accept-Encoding` either way). Each batch of
   * events is compressed once per topic set and the same bytes go to every
   * subscriber of it, so the cost does not grow with subscribers. Defaults to `false`.
   */
  compression?: boolean;
  /**
   * Where the router logs: internal errors (`error`) and, at `debug`, why a
   * request was refused (e.g. which token check failed; never the token).
   * Defaults to a console logger that writes only warnings and errors, to stderr.
   */
  logger?: Logger;
  /**
   * Decides whether a subscription may start, before the stream's headers are
   * sent: return nothing to allow; throw or return an `SseError` to refuse with
   * its status, or return `false` for 403 `subscription_refused`. Gets the
   * topics, the token's whole payload (e.g. its `sub`), the remote address and
   * the Last-Event-ID. Defaults to `undefined` (every valid token is allowed).
   */
  onSubscribe?: SubscribeHook;
  /**
   * Told after a stream ended, with why: `client`, `slow`, `shutdown`,
   * `broker` (and `expired` where tokens expire). Errors are logged. Defaults
   * to `undefined`.
   */
  onUnsubscribe?: UnsubscribeHook;
  /**
   * Ms an async `onSubscribe` may take; slower answers shed the connection
   * like an over-capacity one (EventSource: `200` + `retry:`; others `503`).
   * Defaults to `2000`.
   */
  hookTimeout?: number;
  /** Open streams on this instance, at most; new ones over it are shed. `0`: no limit. Defaults to `0`. */
  maxConnections?: number;
  /** Open streams per subject (the token's `sub`) on this instance, at most. `0`: no limit. Defaults to `0`. */
  maxConnectionsPerSubject?: number;
  /** New streams per second on this instance (token bucket); over it they are shed. `0`: no limit. Defaults to `0`. */
  connectRate?: number;
  /** Bucket size of `connectRate`: connects allowed at once after a quiet spell. Defaults to `connectRate` (one second's worth). */
  connectBurst?: number;
  /**
   * POST subscribe/unsubscribe notices to this `http(s)` URL, in batches,
   * body = Branca token (the secret) of msgpack `{notices: [...]}`; see the
   * README. Defaults to `undefined` (no webhook).
   */
  webhookUrl?: string;
  /** Notices the webhook queue holds while the app is unreachable; more are dropped and counted. Defaults to `10000`. */
  webhookQueue?: number;
}

export interface ResolvedOptions {
  readonly key: Buffer;
  readonly tokenTtl: number;
  readonly expiryNotice: number;
  readonly tokenClockSkew: number;
  readonly heartbeatInterval: number;
  readonly bodyLimit: number;
  readonly bodyTimeout: number;
  readonly maxTokenLength: number;
  readonly maxSubscribeTokenLength: number;
  readonly maxTopics: number;
  readonly maxTopicLength: number;
  readonly maxEventNameLength: number;
  readonly maxEventsPerSubmit: number;
  readonly maxBufferBytes: number;
  readonly retry: number;
  readonly retryJitter: number;
  readonly historyBytes: number;
  readonly historyAge: number;
  readonly idempotencyWindow: number;
  readonly cors: "*" | ReadonlySet<string> | false;
  readonly tokenCookie: string | undefined;
  readonly broker: Broker | undefined;
  readonly health: boolean;
  readonly metrics: boolean;
  readonly compression: boolean;
  readonly logger: Logger;
  readonly onSubscribe: SubscribeHook | undefined;
  readonly onUnsubscribe: UnsubscribeHook | undefined;
  readonly hookTimeout: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerSubject: number;
  readonly connectRate: number;
  readonly connectBurst: number;
  readonly webhookUrl: URL | undefined;
  readonly webhookQueue: number;
}

export const DEFAULTS = Object.freeze({
  tokenTtl: 86_400,
  expiryNotice: 60,
  tokenClockSkew: 60,
  heartbeatInterval: 30_000,
  bodyLimit: 8 * 1024,
  bodyTimeout: 10_000,
  maxTokenLength: 16 * 1024,
  maxSubscribeTokenLength: 4096,
  maxTopics: 256,
  maxTopicLength: 256,
  maxEventNameLength: 256,
  maxEventsPerSubmit: 1000,
  maxBufferBytes: 256 * 1024,
  retry: 3000,
  retryJitter: 2000,
  ...MEMORY_BROKER_DEFAULTS,
  hookTimeout: 2000,
  maxConnections: 0,
  maxConnectionsPerSubject: 0,
  connectRate: 0,
  webhookQueue: 10_000,
});

function hook<T>(name: string, value: T | undefined): T | undefined {
  if (value !== undefined && typeof value !== "function") invalid(`${name} must be a function; got ${typeof value}`);
  return value;
}

function webhookUrl(value: unknown): URL | undefined {
  if (value === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = new URL(String(value));
  } catch {
    // reported below
  }
  if (typeof value !== "string" || url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    invalid("webhookUrl must be an http:// or https:// URL, e.g. http://127.0.0.1:3000/sse-notices");
  }
  return url;
}

/**
 * Every key of {@link SseRouterOptions}. `satisfies` makes the compiler insist
 * that a new option is listed here, so a misspelt key (`tokenTTL`) is always
 * reported instead of silently ignored.
 */
const OPTION_KEYS: readonly string[] = Object.keys({
  secret: 1,
  tokenTtl: 1,
  heartbeatInterval: 1,
  bodyLimit: 1,
  maxTokenLength: 1,
  maxTopics: 1,
  maxTopicLength: 1,
  maxEventNameLength: 1,
  maxEventsPerSubmit: 1,
  maxBufferBytes: 1,
  retry: 1,
  retryJitter: 1,
  historyBytes: 1,
  historyAge: 1,
  cors: 1,
  tokenCookie: 1,
  broker: 1,
  health: 1,
  metrics: 1,
  compression: 1,
  logger: 1,
  idempotencyWindow: 1,
  expiryNotice: 1,
  tokenClockSkew: 1,
  bodyTimeout: 1,
  maxSubscribeTokenLength: 1,
  onSubscribe: 1,
  onUnsubscribe: 1,
  hookTimeout: 1,
  maxConnections: 1,
  maxConnectionsPerSubject: 1,
  connectRate: 1,
  connectBurst: 1,
  webhookUrl: 1,
  webhookQueue: 1,
} satisfies Record<keyof SseRouterOptions, 1>);

function boolean(name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== "boolean") invalid(`${name} must be a boolean; got ${typeof value}`);
  return value;
}

function resolveCors(value: SseRouterOptions["cors"]): ResolvedOptions["cors"] {
  if (value === undefined || value === "*") return "*";
  if (value === false) return false;
  if (Array.isArray(value) && value.every((o) => typeof o === "string" && o.length > 0 && o !== "*")) {
    return new Set(value);
  }
  return invalid('cors must be "*", false, or an array of origins such as ["https://app.example"]');
}

export function resolveOptions(options: SseHubOptions): ResolvedOptions {
  if (options === null || typeof options !== "object") invalid("options object with a `secret` is required");
  rejectUnknownKeys("createSseRouter", options, OPTION_KEYS);
  const tokenCookie = options.tokenCookie;
  if (tokenCookie !== undefined && (typeof tokenCookie !== "string" || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(tokenCookie))) {
    invalid("tokenCookie must be a valid cookie name");
  }
  const broker = options.broker;
  if (broker !== undefined && (typeof broker !== "object" || typeof broker.publish !== "function")) {
    invalid("broker must implement the Broker interface");
  }
  if (broker !== undefined && (options.historyBytes !== undefined || options.historyAge !== undefined)) {
    // History belongs to the broker: silently ignoring these would leave the
    // operator believing resume keeps what they configured.
    invalid("historyBytes and historyAge configure the built-in in-memory broker; with `broker`, set history on the broker itself");
  }
  const logger = options.logger ?? DEFAULT_LOGGER;
  if (typeof logger !== "object" || logger === null || !(["debug", "info", "warn", "error"] as const).every((m) => typeof logger[m] === "function")) {
    invalid("logger must have debug, info, warn and error methods");
  }
  const connectRate = integerOption("connectRate", options.connectRate, DEFAULTS.connectRate, 0);
  return Object.freeze({
    key: parseSecret(options.secret),
    tokenTtl: integerOption("tokenTtl", options.tokenTtl, DEFAULTS.tokenTtl, 0),
    // Bounded so that `expiryNotice * 1000` stays a safe timer delay.
    expiryNotice: integerOption("expiryNotice", options.expiryNotice, DEFAULTS.expiryNotice, 0, 2_000_000),
    tokenClockSkew: integerOption("tokenClockSkew", options.tokenClockSkew, DEFAULTS.tokenClockSkew, 0, 2 ** 32 - 1),
    heartbeatInterval: integerOption("heartbeatInterval", options.heartbeatInterval, DEFAULTS.heartbeatInterval, 0, 2 ** 31 - 1),
    bodyLimit: integerOption("bodyLimit", options.bodyLimit, DEFAULTS.bodyLimit, 64, 64 * 1024 * 1024),
    bodyTimeout: integerOption("bodyTimeout", options.bodyTimeout, DEFAULTS.bodyTimeout, 0, 2 ** 31 - 1),
    maxTokenLength: integerOption("maxTokenLength", options.maxTokenLength, DEFAULTS.maxTokenLength, 64),
    maxSubscribeTokenLength: integerOption("maxSubscribeTokenLength", options.maxSubscribeTokenLength, DEFAULTS.maxSubscribeTokenLength, 64),
    maxTopics: integerOption("maxTopics", options.maxTopics, DEFAULTS.maxTopics, 1),
    maxTopicLength: integerOption("maxTopicLength", options.maxTopicLength, DEFAULTS.maxTopicLength, 1),
    maxEventNameLength: integerOption("maxEventNameLength", options.maxEventNameLength, DEFAULTS.maxEventNameLength, 1),
    maxEventsPerSubmit: integerOption("maxEventsPerSubmit", options.maxEventsPerSubmit, DEFAULTS.maxEventsPerSubmit, 1),
    maxBufferBytes: integerOption("maxBufferBytes", options.maxBufferBytes, DEFAULTS.maxBufferBytes, 1024),
    retry: integerOption("retry", options.retry, DEFAULTS.retry, 0, 2 ** 31 - 1),
    retryJitter: integerOption("retryJitter", options.retryJitter, DEFAULTS.retryJitter, 0, 2 ** 31 - 1),
    historyBytes: integerOption("historyBytes", options.historyBytes, DEFAULTS.historyBytes, 0),
    historyAge: integerOption("historyAge", options.historyAge, DEFAULTS.historyAge, 0),
    idempotencyWindow: integerOption("idempotencyWindow", options.idempotencyWindow, DEFAULTS.idempotencyWindow, 0),
    cors: resolveCors(options.cors),
    tokenCookie,
    broker,
    health: boolean("health", options.health),
    metrics: boolean("metrics", options.metrics),
    compression: boolean("compression", options.compression),
    logger,
    onSubscribe: hook("onSubscribe", options.onSubscribe),
    onUnsubscribe: hook("onUnsubscribe", options.onUnsubscribe),
    hookTimeout: integerOption("hookTimeout", options.hookTimeout, DEFAULTS.hookTimeout, 1, 2 ** 31 - 1),
    maxConnections: integerOption("maxConnections", options.maxConnections, DEFAULTS.maxConnections, 0),
    maxConnectionsPerSubject: integerOption("maxConnectionsPerSubject", options.maxConnectionsPerSubject, DEFAULTS.maxConnectionsPerSubject, 0),
    connectRate,
    connectBurst: integerOption("connectBurst", options.connectBurst, Math.max(1, connectRate), 1),
    webhookUrl: webhookUrl(options.webhookUrl),
    webhookQueue: integerOption("webhookQueue", options.webhookQueue, DEFAULTS.webhookQueue, 1),
  });
}
