/**
 * Every option of {@link createSseRouter}, typed in one interface and resolved
 * (defaults applied, validated) exactly once by {@link resolveOptions}.
 */
import type { Broker } from "./broker";
import { integerOption, invalid, parseSecret } from "./validate";

export { integerOption, parseSecret };
import { DEFAULT_LOGGER, type Logger } from "./logger";
import type { SubscribeHook, UnsubscribeHook } from "./sessions";

export interface SseRouterOptions {
  /**
   * Shared secret: 32 bytes, as 64 hex characters or a `Buffer`/`Uint8Array`.
   * The same secret the backends use to mint tokens. Required.
   */
  secret: string | Uint8Array;
  /** Maximum token age in seconds, checked against the Branca timestamp. `0` disables the check. Defaults to `86400`. */
  tokenTtl?: number;
  /** Interval of the `:` heartbeat comment in milliseconds. `0` disables periodic heartbeats. Defaults to `30000`. */
  heartbeatInterval?: number;
  /** Maximum `/submit` body size in bytes. Defaults to `8192`. */
  bodyLimit?: number;
  /** Maximum token length in characters; longer tokens are rejected before any decoding. Defaults to `16384`. */
  maxTokenLength?: number;
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
  readonly heartbeatInterval: number;
  readonly bodyLimit: number;
  readonly maxTokenLength: number;
  readonly maxTopics: number;
  readonly maxTopicLength: number;
  readonly maxEventNameLength: number;
  readonly maxEventsPerSubmit: number;
  readonly maxBufferBytes: number;
  readonly retry: number;
  readonly retryJitter: number;
  readonly historyBytes: number;
  readonly historyAge: number;
  readonly cors: "*" | ReadonlySet<string> | false;
  readonly tokenCookie: string | undefined;
  readonly broker: Broker | undefined;
  readonly health: boolean;
  readonly metrics: boolean;
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
  heartbeatInterval: 30_000,
  bodyLimit: 8 * 1024,
  maxTokenLength: 16 * 1024,
  maxTopics: 256,
  maxTopicLength: 256,
  maxEventNameLength: 256,
  maxEventsPerSubmit: 1000,
  maxBufferBytes: 256 * 1024,
  retry: 3000,
  retryJitter: 2000,
  historyBytes: 16 * 1024 * 1024,
  historyAge: 5 * 60_000,
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

export function resolveOptions(options: SseRouterOptions): ResolvedOptions {
  if (options === null || typeof options !== "object") invalid("options object with a `secret` is required");
  const tokenCookie = options.tokenCookie;
  if (tokenCookie !== undefined && (typeof tokenCookie !== "string" || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(tokenCookie))) {
    invalid("tokenCookie must be a valid cookie name");
  }
  const broker = options.broker;
  if (broker !== undefined && (typeof broker !== "object" || typeof broker.publish !== "function")) {
    invalid("broker must implement the Broker interface");
  }
  const logger = options.logger ?? DEFAULT_LOGGER;
  if (typeof logger !== "object" || logger === null || !(["debug", "info", "warn", "error"] as const).every((m) => typeof logger[m] === "function")) {
    invalid("logger must have debug, info, warn and error methods");
  }
  const connectRate = integerOption("connectRate", options.connectRate, DEFAULTS.connectRate, 0);
  return Object.freeze({
    key: parseSecret(options.secret),
    tokenTtl: integerOption("tokenTtl", options.tokenTtl, DEFAULTS.tokenTtl, 0),
    heartbeatInterval: integerOption("heartbeatInterval", options.heartbeatInterval, DEFAULTS.heartbeatInterval, 0, 2 ** 31 - 1),
    bodyLimit: integerOption("bodyLimit", options.bodyLimit, DEFAULTS.bodyLimit, 64, 64 * 1024 * 1024),
    maxTokenLength: integerOption("maxTokenLength", options.maxTokenLength, DEFAULTS.maxTokenLength, 64),
    maxTopics: integerOption("maxTopics", options.maxTopics, DEFAULTS.maxTopics, 1),
    maxTopicLength: integerOption("maxTopicLength", options.maxTopicLength, DEFAULTS.maxTopicLength, 1),
    maxEventNameLength: integerOption("maxEventNameLength", options.maxEventNameLength, DEFAULTS.maxEventNameLength, 1),
    maxEventsPerSubmit: integerOption("maxEventsPerSubmit", options.maxEventsPerSubmit, DEFAULTS.maxEventsPerSubmit, 1),
    maxBufferBytes: integerOption("maxBufferBytes", options.maxBufferBytes, DEFAULTS.maxBufferBytes, 1024),
    retry: integerOption("retry", options.retry, DEFAULTS.retry, 0, 2 ** 31 - 1),
    retryJitter: integerOption("retryJitter", options.retryJitter, DEFAULTS.retryJitter, 0, 2 ** 31 - 1),
    historyBytes: integerOption("historyBytes", options.historyBytes, DEFAULTS.historyBytes, 0),
    historyAge: integerOption("historyAge", options.historyAge, DEFAULTS.historyAge, 0),
    cors: resolveCors(options.cors),
    tokenCookie,
    broker,
    health: boolean("health", options.health),
    metrics: boolean("metrics", options.metrics),
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
