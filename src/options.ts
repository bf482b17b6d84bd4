/**
 * Every option of {@link createSseRouter}, typed in one interface and resolved
 * (defaults applied, validated) exactly once by {@link resolveOptions}.
 */
import type { Broker } from "./broker";
import { SseError } from "./errors";

export interface SseRouterOptions {
  /**
   * Shared secret: 32 bytes, as 64 hex characters or a `Buffer`/`Uint8Array`.
   * The same secret the backends use to mint tokens. Required.
   */
  secret: string | Uint8Array;
  /** Maximum token age in seconds, checked against the Branca timestamp. `0` disables the check. Defaults to `86400`. */
  tokenTtl?: number;
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
   * silently skipped. Defaults to `262144` (256 KiB).
   */
  maxBufferBytes?: number;
  /** Base `retry:` value sent on connect, in ms. `0` sends no `retry:` line. Defaults to `3000`. */
  retry?: number;
  /** Random jitter added to `retry`, uniformly in `[0, retryJitter)` ms, so a restart spreads reconnects. Defaults to `2000`. */
  retryJitter?: number;
  /** Bytes of event history kept for resume (`Last-Event-ID`). `0` disables history. Defaults to `16777216` (16 MiB). */
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
   * `sse-server/redis`) to fan out across processes and machines.
   */
  broker?: Broker;
  /** Serve `GET /health` with JSON stats. Defaults to `false`. */
  health?: boolean;
  /** Serve `GET /metrics` in Prometheus text format. Defaults to `false`. */
  metrics?: boolean;
}

export interface ResolvedOptions {
  readonly key: Buffer;
  readonly tokenTtl: number;
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
  readonly cors: "*" | ReadonlySet<string> | false;
  readonly tokenCookie: string | undefined;
  readonly broker: Broker | undefined;
  readonly health: boolean;
  readonly metrics: boolean;
}

export const DEFAULTS = Object.freeze({
  tokenTtl: 86_400,
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
  historyBytes: 16 * 1024 * 1024,
  historyAge: 5 * 60_000,
});

function invalid(message: string): never {
  throw new SseError("invalid_option", message);
}

/**
 * Turns the secret into its 32 key bytes, or throws a clear error. Never
 * silently pads, truncates or falls back: a wrong secret must fail at startup.
 */
export function parseSecret(secret: unknown, what = "secret"): Buffer {
  if (typeof secret === "string") {
    if (!/^[0-9a-fA-F]{64}$/.test(secret)) {
      invalid(`${what} must be 64 hex characters (32 bytes), e.g. from \`openssl rand -hex 32\`; got ${secret.length} characters${secret.length === 64 ? " with non-hex characters" : ""}`);
    }
    return Buffer.from(secret, "hex");
  }
  if (secret instanceof Uint8Array) {
    if (secret.length !== 32) invalid(`${what} must be 32 bytes; got ${secret.length}`);
    return Buffer.from(secret);
  }
  return invalid(`${what} is required: 64 hex characters or a 32-byte Buffer`);
}

/** An optional integer option in `[min, max]`, or `fallback`; anything else throws `invalid_option`. */
export function integerOption(name: string, value: unknown, fallback: number, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    invalid(`${name} must be an integer ${range}; got ${String(value)}`);
  }
  return value;
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
  return Object.freeze({
    key: parseSecret(options.secret),
    tokenTtl: integerOption("tokenTtl", options.tokenTtl, DEFAULTS.tokenTtl, 0),
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
    cors: resolveCors(options.cors),
    tokenCookie,
    broker,
    health: boolean("health", options.health),
    metrics: boolean("metrics", options.metrics),
  });
}
