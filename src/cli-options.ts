/**
 * Every setting of the standalone server, in one table: environment variable,
 * flag, what it maps to, how it is parsed, its default and its help text. The
 * table drives parsing (cli.ts), `--help`, and the README's settings section
 * (`npm run docs:cli` rewrites it; a test checks they match), so the three
 * cannot drift. Adding a router option to the CLI is one row.
 *
 * Router options are validated by the router's own `resolveOptions` (one
 * rule per option, in one place); this module only turns text into values.
 */
import os from "node:os";
import { SseError } from "./errors";
import { LOG_LEVELS, type LogLevel } from "./logger";
import { DEFAULTS, resolveOptions, type SseRouterOptions } from "./options";
import type { RedisBrokerOptions } from "./brokers/redis";

/** Router options an operator can set from the environment or flags. */
export type CliRouterOptions = Omit<SseRouterOptions, "secret" | "broker" | "logger">;

/** Settings of the standalone server itself (not router options). */
export interface ServerSettings {
  port: number;
  host: string | undefined;
  basePath: string;
  redisUrl: string | undefined;
  workers: number;
  logLevel: LogLevel;
  logFormat: "text" | "json";
  accessLog: boolean;
  /**
   * Milliseconds a client may take to send a request's headers (Node's
   * `server.headersTimeout`); then Node answers 408 and closes. Defaults to
   * `10000` ({@link SERVER_TIMEOUTS}).
   */
  headersTimeout?: number | undefined;
  /**
   * Milliseconds a client may take to send a whole request, headers and body
   * (Node's `server.requestTimeout`, 300 s by Node's default). It ends when the
   * request has been received, so it never limits an event stream's
   * response. Must be at least `headersTimeout`. Defaults to the headers
   * timeout plus the router's `bodyTimeout` (20 s with both defaults), so the
   * router's own JSON 408 normally comes first.
   */
  requestTimeout?: number | undefined;
  /**
   * Path of a PEM certificate (chain). With {@link tlsKey}, the server speaks
   * TLS: HTTP/2 by ALPN, HTTP/1.1 on the same port for clients without it.
   * Both or neither. Defaults to `undefined` (plain HTTP/1.1).
   */
  tlsCert?: string | undefined;
  /** Path of the PEM private key of {@link tlsCert}. Defaults to `undefined`. */
  tlsKey?: string | undefined;
}

/** Defaults of the standalone server's own http.Server timeouts. */
export const SERVER_TIMEOUTS = Object.freeze({
  headersTimeout: 10_000,
  /** How often Node checks the two timeouts (its default is 30 s, which would let them overrun by that much). */
  connectionsCheckingInterval: 1_000,
});

export interface Setting {
  /** Environment variable. */
  readonly env: string;
  /** Flag without the leading `--`, or `undefined` when there is none (the secret: argv is visible to every user in `ps`). */
  readonly flag: string | undefined;
  /** What it sets: a router option, or a setting of the server itself. */
  readonly target: { readonly router: keyof CliRouterOptions } | { readonly server: keyof ServerSettings } | { readonly secret: true };
  /** Placeholder of the value in `--help` (`undefined`: a switch, `--flag` alone turns it on). */
  readonly value: string | undefined;
  /** Text → value; throws `invalid_option` naming the setting. */
  readonly parse: (text: string, label: string) => unknown;
  /** Default as shown in `--help` and the README. */
  readonly defaultText: string;
  readonly help: string;
}

function invalid(message: string): never {
  throw new SseError("invalid_option", message);
}

/** `SSE_TOKEN_TTL (--token-ttl)`: how errors name a setting. */
export function labelOf(s: Setting): string {
  return s.flag === undefined ? s.env : `${s.env} (--${s.flag})`;
}

const integer = (text: string, label: string): number => {
  if (!/^[0-9]{1,15}$/.test(text)) invalid(`${label} must be a whole number; got "${text}"`);
  return Number(text);
};

const TRUE = new Set(["1", "true", "yes", "on"]);
const FALSE = new Set(["0", "false", "no", "off"]);
const boolean = (text: string, label: string): boolean => {
  const t = text.toLowerCase();
  if (TRUE.has(t)) return true;
  if (FALSE.has(t)) return false;
  return invalid(`${label} must be 1 or 0 (true/false); got "${text}"`);
};

const text = (value: string): string => value;

const oneOf =
  <T extends string>(values: readonly T[]) =>
  (value: string, label: string): T => {
    if (!(values as readonly string[]).includes(value)) invalid(`${label} must be one of ${values.join(", ")}; got "${value}"`);
    return value as T;
  };

const port = (value: string, label: string): number => {
  const n = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || n > 65535) invalid(`${label} must be a number from 0 to 65535; got "${value}"`);
  return n;
};

/**
 * A mount path such as `/` or `/sse-server/`. Anything else would silently
 * serve a route no client asks for (a space, a query, a missing slash), so it
 * is an error. A trailing slash is dropped: `/sse-server/` serves
 * `/sse-server/events`.
 */
export const basePath = (value: string, label: string): string => {
  if (!value.startsWith("/")) invalid(`${label} must start with "/", e.g. /sse-server/; got "${value}"`);
  if (/[?#]/.test(value)) invalid(`${label} must be a path only, without "?" or "#"; got "${value}"`);
  if (!/^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]+$/.test(value)) {
    invalid(`${label} may only contain URL path characters (no spaces or quotes); got ${JSON.stringify(value)}`);
  }
  if (value.includes("//")) invalid(`${label} must not contain "//"; got "${value}"`);
  return value.replace(/\/+$/, "") || "/";
};

export const SENTINEL_SCHEME = "redis+sentinel:";
export const SENTINEL_URL = /^redis\+sentinel:\/\/(?:([^@/]*)@)?([^@/]+)\/([^/]+)(?:\/([0-9]{1,2}))?\/?$/;

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
export function sentinelOptions(url: string): RedisBrokerOptions {
  const m = SENTINEL_URL.exec(url);
  const bad = (): never => invalid("REDIS_URL with Sentinel must look like redis+sentinel://host:26379[,host:26379...]/mymaster[/db]");
  if (!m) bad();
  const sentinels = m![2]!.split(",").map((hostPort) => {
    const hp = /^(\[[0-9a-fA-F:.]+\]|[^:\[\]]+):([0-9]{1,5})$/.exec(hostPort);
    if (!hp || Number(hp[2]) > 65535) bad();
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

const redisUrl = (value: string, label: string): string => {
  if (value.startsWith(SENTINEL_SCHEME)) {
    sentinelOptions(value); // throws on a malformed one
    return value;
  }
  let protocol = "";
  try {
    protocol = new URL(value).protocol;
  } catch {
    // reported below
  }
  if (protocol !== "redis:" && protocol !== "rediss:") {
    invalid(`${label} must look like redis://host:6379 (or rediss:// for TLS, or redis+sentinel://host:26379/mymaster)`);
  }
  return value;
};

const workers = (value: string, label: string): number => {
  if (value === "auto") return os.availableParallelism();
  const n = Number(value);
  if (!/^[0-9]{1,4}$/.test(value) || n < 1 || n > 1024) invalid(`${label} must be a number from 1 to 1024, or "auto"; got "${value}"`);
  return n;
};

/** `*`, `off`, or a comma-separated origin allowlist. */
const cors = (value: string): CliRouterOptions["cors"] => {
  if (value === "*") return "*";
  if (FALSE.has(value.toLowerCase()) || value === "none") return false;
  return value.split(",").map((o) => o.trim()).filter((o) => o !== "");
};

type NumericOption = keyof typeof DEFAULTS;

/** One row for a numeric router option; its default comes from `DEFAULTS`, so it cannot drift. */
const num = (env: string, flag: string, option: NumericOption, unit: string, help: string): Setting => ({
  env,
  flag,
  target: { router: option },
  value: unit,
  parse: integer,
  defaultText: String(DEFAULTS[option]),
  help,
});

const on = (env: string, flag: string, option: "health" | "metrics" | "compression", help: string): Setting => ({
  env,
  flag,
  target: { router: option },
  value: undefined,
  parse: boolean,
  defaultText: "off",
  help,
});

const server = (env: string, flag: string, key: keyof ServerSettings, value: string | undefined, parse: Setting["parse"], defaultText: string, help: string): Setting => ({
  env,
  flag,
  target: { server: key },
  value,
  parse,
  defaultText,
  help,
});

export const SETTINGS: readonly Setting[] = Object.freeze([
  { env: "SSE_SECRET", flag: undefined, target: { secret: true }, value: "HEX", parse: text, defaultText: "required", help: "Shared secret, 64 hex characters (`openssl rand -hex 32`); environment only, so it stays out of `ps`." },
  server("PORT", "port", "port", "N", port, "8000", "Port to listen on; 0 picks a free one."),
  server("HOST", "host", "host", "ADDR", text, "all interfaces", "Address to listen on, e.g. 127.0.0.1."),
  server("BASE_PATH", "base-path", "basePath", "PATH", basePath, "/", "Mount path, e.g. /sse-server/ for the fork's layout."),
  server("REDIS_URL", "redis-url", "redisUrl", "URL", redisUrl, "none (in-memory)", "Share events and history through Redis: redis://[user:pass@]host:port[/db], rediss://… (TLS), or redis+sentinel://[user:pass@]host:26379[,host:port…]/<master>[/db]; needs `npm install ioredis`."),
  server("WORKERS", "workers", "workers", "N", workers, "1", 'Processes on one port (node:cluster), or "auto" (one per CPU); more than 1 needs REDIS_URL.'),
  server("SSE_LOG_LEVEL", "log-level", "logLevel", "LEVEL", oneOf(LOG_LEVELS), "info", "debug, info, warn, error or silent; debug says why a request was refused."),
  server("SSE_LOG_FORMAT", "log-format", "logFormat", "FORMAT", oneOf(["text", "json"] as const), "text", "text, or json for one JSON object per line."),
  server("SSE_HEADERS_TIMEOUT", "headers-timeout", "headersTimeout", "MS", integer, String(SERVER_TIMEOUTS.headersTimeout), "Time a client may take to send request headers (then 408 and close)."),
  server("SSE_REQUEST_TIMEOUT", "request-timeout", "requestTimeout", "MS", integer, "headers + body timeout", "Time a client may take to send a whole request; never limits a stream's response."),
  server("SSE_TLS_CERT", "tls-cert", "tlsCert", "FILE", text, "none (plain HTTP)", "PEM certificate (chain); with SSE_TLS_KEY the server speaks TLS, HTTP/2 with HTTP/1.1 fallback on the same port."),
  server("SSE_TLS_KEY", "tls-key", "tlsKey", "FILE", text, "none", "PEM private key of SSE_TLS_CERT; both or neither."),
  server("SSE_ACCESS_LOG", "access-log", "accessLog", undefined, boolean, "off", "Log each request: method, path (no query string), status, error code, duration."),
  on("SSE_HEALTH", "health", "health", "Serve GET /health (JSON stats)."),
  on("SSE_METRICS", "metrics", "metrics", "Serve GET /metrics (Prometheus)."),
  on("SSE_COMPRESSION", "compression", "compression", "gzip event streams for clients that accept it, compressed once per topic set."),
  num("SSE_TOKEN_TTL", "token-ttl", "tokenTtl", "SECONDS", "Maximum token age, and the longest a stream lives (it ends when its token expires); 0 disables both."),
  num("SSE_EXPIRY_NOTICE", "expiry-notice", "expiryNotice", "SECONDS", "How long before its token expires a stream gets `sse:expiring`; 0 sends none."),
  { env: "SSE_CORS", flag: "cors", target: { router: "cors" }, value: "ORIGINS", parse: cors, defaultText: "*", help: "`*`, `off`, or a comma-separated origin allowlist (allows credentials, for cookie tokens)." },
  { env: "SSE_TOKEN_COOKIE", flag: "token-cookie", target: { router: "tokenCookie" }, value: "NAME", parse: text, defaultText: "none", help: "Cookie that may carry the subscribe token." },
  num("SSE_HEARTBEAT_INTERVAL", "heartbeat-interval", "heartbeatInterval", "MS", "Heartbeat comment interval; 0 disables."),
  num("SSE_RETRY", "retry", "retry", "MS", "`retry:` sent on connect; 0 sends none."),
  num("SSE_RETRY_JITTER", "retry-jitter", "retryJitter", "MS", "Random 0..N ms added to retry, so a restart spreads reconnects."),
  num("SSE_HISTORY_BYTES", "history-bytes", "historyBytes", "BYTES", "Event history kept for resume (in-memory broker); 0 disables."),
  num("SSE_HISTORY_AGE", "history-age", "historyAge", "MS", "Maximum age of history (also with Redis); 0 means no limit."),
  num("SSE_MAX_BUFFER_BYTES", "max-buffer-bytes", "maxBufferBytes", "BYTES", "Backlog per subscriber before it is cut (it resumes)."),
  num("SSE_BODY_LIMIT", "body-limit", "bodyLimit", "BYTES", "Maximum /submit body (413 above)."),
  num("SSE_MAX_TOKEN_LENGTH", "max-token-length", "maxTokenLength", "CHARS", "Longer /submit tokens are refused before decoding."),
  num("SSE_MAX_SUBSCRIBE_TOKEN_LENGTH", "max-subscribe-token-length", "maxSubscribeTokenLength", "CHARS", "Longer subscribe tokens (query, Bearer, cookie) are refused before decoding."),
  num("SSE_TOKEN_CLOCK_SKEW", "token-clock-skew", "tokenClockSkew", "SECONDS", "How far a token's timestamp may lie in the future (minting clocks differ)."),
  num("SSE_BODY_TIMEOUT", "body-timeout", "bodyTimeout", "MS", "Time the /submit body may take to arrive (then 408); 0 disables."),
  num("SSE_MAX_TOPICS", "max-topics", "maxTopics", "N", "Distinct topics in one subscription."),
  num("SSE_MAX_TOPIC_LENGTH", "max-topic-length", "maxTopicLength", "CHARS", "Length of a topic name."),
  num("SSE_MAX_EVENT_NAME_LENGTH", "max-event-name-length", "maxEventNameLength", "CHARS", "Length of an event name."),
  num("SSE_MAX_EVENTS_PER_SUBMIT", "max-events-per-submit", "maxEventsPerSubmit", "N", "Events in one /submit."),
  num("SSE_IDEMPOTENCY_WINDOW", "idempotency-window", "idempotencyWindow", "MS", "How long a /submit idempotency key is remembered (also with Redis); 0 remembers none."),
  num("SSE_MAX_CONNECTIONS", "max-connections", "maxConnections", "N", "Open streams on this instance; new ones over it are shed (EventSource: 200 + retry, others 503). 0: no limit."),
  num("SSE_CONNECT_RATE", "connect-rate", "connectRate", "N", "New streams per second on this instance (token bucket, burst of one second); over it they are shed. 0: no limit."),
  { env: "SSE_WEBHOOK_URL", flag: "webhook-url", target: { router: "webhookUrl" }, value: "URL", parse: text, defaultText: "none", help: "POST subscribe/unsubscribe notices here in batches, body signed like /submit (Branca of msgpack {notices})." },
] satisfies Setting[]);

export interface ParsedSettings {
  secret: string | undefined;
  server: ServerSettings;
  router: CliRouterOptions;
}

/**
 * Values from flags (which win) and the environment, parsed and validated.
 * An empty environment variable counts as unset. Router options are checked
 * with the router's own validation, one at a time, so an error names the
 * variable and flag the operator used.
 */
export function parseSettings(flags: Readonly<Record<string, string | boolean | undefined>>, env: NodeJS.ProcessEnv): ParsedSettings {
  const result: ParsedSettings = {
    secret: undefined,
    server: { port: 8000, host: undefined, basePath: "/", redisUrl: undefined, workers: 1, logLevel: "info", logFormat: "text", accessLog: false },
    router: {},
  };
  for (const s of SETTINGS) {
    const flag = s.flag === undefined ? undefined : flags[s.flag];
    const raw = flag ?? (env[s.env] || undefined);
    if (raw === undefined) continue;
    const label = labelOf(s);
    const value = typeof raw === "boolean" ? raw : s.parse(raw, label);
    if ("secret" in s.target) result.secret = value as string;
    else if ("server" in s.target) (result.server as unknown as Record<string, unknown>)[s.target.server] = value;
    else {
      const option = s.target.router;
      try {
        // Any valid secret: only this option's rule is being checked.
        resolveOptions({ secret: "00".repeat(32), [option]: value });
      } catch (err) {
        invalid(`${label}: ${(err as Error).message}`);
      }
      (result.router as Record<string, unknown>)[option] = value;
    }
  }
  return result;
}

/** Options for `node:util` `parseArgs`, from the table. */
export function argOptions(): Record<string, { type: "string" | "boolean"; short?: string }> {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
    version: { type: "boolean" },
  };
  for (const s of SETTINGS) if (s.flag !== undefined) options[s.flag] = { type: s.value === undefined ? "boolean" : "string" };
  return options;
}

function targetText(s: Setting): string {
  if ("router" in s.target) return `\`${s.target.router}\``;
  return "—";
}

/** `--help` text: usage, then two lines per setting (names, then what it does), under 80 columns where the help allows. */
export function renderHelp(version: string): string {
  const lines = [
    `sse-server ${version}: a Server-Sent Events hub (npm package sse-hub)`,
    "",
    "Usage: SSE_SECRET=<64 hex chars> sse-server [options]",
    "",
    "Every setting is an environment variable or a flag (a flag wins). Switches",
    "(flags without a value) are 1 or 0 in the environment.",
    "",
  ];
  for (const s of SETTINGS) {
    const flag = s.flag === undefined ? "" : `--${s.flag}${s.value === undefined ? "" : ` ${s.value}`}, `;
    const fallback = s.defaultText === "required" ? "required" : `default: ${s.defaultText}`;
    lines.push(`  ${flag}${s.env}  (${fallback})`, `      ${s.help.replace(/`/g, "")}`);
  }
  lines.push(
    "  -h, --help",
    "      Print this help and exit.",
    "  --version",
    "      Print the version and exit.",
    "",
    "SIGTERM/SIGINT end every stream cleanly and exit 0.",
    "",
  );
  return lines.join("\n");
}

/** The README's settings table (between the `cli-settings` markers). */
export function renderMarkdown(): string {
  const lines = ["| env | flag | router option | default | meaning |", "|---|---|---|---|---|"];
  for (const s of SETTINGS) {
    const flag = s.flag === undefined ? "—" : `\`--${s.flag}${s.value === undefined ? "" : ` ${s.value}`}\``;
    lines.push(`| \`${s.env}\` | ${flag} | ${targetText(s)} | ${s.defaultText} | ${s.help} |`);
  }
  return lines.join("\n") + "\n";
}

export const README_MARKERS = Object.freeze({ start: "<!-- cli-settings:start (generated by npm run docs:cli) -->", end: "<!-- cli-settings:end -->" });
