/**
 * Example: an existing Express app that mounts the SSE hub next to its own
 * routes, the way a team would add live updates to an app they already have.
 *
 *   GET  /                        the page (public/), built on the browser client `sse-hub/client`
 *   GET  /vendor/sse-hub-client.mjs  that client (the package's dist/client.mjs), for the page's import map
 *   GET  /api/config              topics the page may offer, where the hub is
 *   GET  /api/sse-token?topics=a,b  the client's token provider: checks the topics against the
 *                                 allowlist and answers a subscribe token (text/plain)
 *   GET  /subscribe?topics=a,b    the same check for plain EventSource users: 307 to
 *                                 <BASE_PATH>/events?token=…
 *   POST /api/publish             JSON {topic, event?, data, via}: publishes an event, either
 *                                   via "http":   the exported publisher (createPublisher): a submit
 *                                                 token POSTed to <BASE_PATH>/submit, what any other
 *                                                 backend does, or
 *                                   via "router": router.publish() in process (no HTTP at all)
 *   *    <BASE_PATH>/…            the hub itself: /events, /submit, /ping, /health
 *
 * Configuration (environment): see readConfig() and the README's "Run the example".
 *
 * Run with `npm run example` (builds the library quietly, then
 * `node -r esbuild-register example-app/server.ts`).
 */
import crypto from "node:crypto";
import http from "node:http";
import path from "node:path";
import express, { type ErrorRequestHandler, type Response } from "express";
// Inside this repository the package name resolves to ./dist (Node's package
// self-reference) at run time and to ./src for the type check
// (example-app/tsconfig.json); in your app it is the installed package.
import { createPublisher, createSseRouter, isSseError, subscribeToken, type Broker, type SseRouterOptions } from "sse-hub";

/** Event names are `<topic>-update`: frames carry no topic, so the name says it (see topicOf in public/app.js). */
export const eventName = (topic: string): string => `${topic}-update`;

export interface ExampleConfig {
  secret: string;
  secretGenerated: boolean;
  port: number;
  host: string;
  basePath: string;
  topics: string[];
  heartbeatInterval: number | undefined;
  retry: number | undefined;
  /** Subscribe-token lifetime in seconds; undefined: the library's default. */
  tokenTtl: number | undefined;
  /** Where the "http" mode POSTs; undefined: this app's own `<basePath>/submit` once listening. */
  submitUrl: string | undefined;
  redisUrl: string | undefined;
}

const TOPIC_RE = /^[A-Za-z0-9_-]{1,64}$/;
// Event names end up in `event:` lines and in the page's listeners.
const EVENT_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_DATA = 4096;

/** Reads and checks the environment; throws Error with a clear message. */
export function readConfig(env: NodeJS.ProcessEnv): ExampleConfig {
  let secret = env["SSE_SECRET"];
  let secretGenerated = false;
  if (secret === undefined || secret === "") {
    secret = crypto.randomBytes(32).toString("hex");
    secretGenerated = true;
  } else if (!/^[0-9a-fA-F]{64}$/.test(secret)) {
    throw new Error(`SSE_SECRET must be 64 hex characters (32 bytes), e.g. SSE_SECRET=$(openssl rand -hex 32); got ${secret.length} characters`);
  }

  const portText = env["PORT"] ?? "3000";
  const port = Number(portText);
  if (!/^[0-9]{1,5}$/.test(portText) || port > 65535) throw new Error(`PORT must be a number from 0 to 65535; got "${portText}"`);

  let basePath = env["BASE_PATH"] ?? "/sse-server";
  if (!basePath.startsWith("/")) basePath = "/" + basePath;
  basePath = basePath.replace(/\/+$/, "");
  if (basePath === "") throw new Error("BASE_PATH must not be / in this example: the app serves its own pages at /");
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(basePath)) throw new Error(`BASE_PATH must be a simple path such as /sse-server; got "${env["BASE_PATH"]}"`);

  const topics = [...new Set((env["TOPICS"] ?? "weather,news,sports").split(",").map((t) => t.trim()).filter(Boolean))];
  if (topics.length === 0) throw new Error("TOPICS must list at least one topic, e.g. TOPICS=weather,news,sports");
  for (const t of topics) {
    if (!TOPIC_RE.test(t)) throw new Error(`TOPICS: "${t}" is not a simple name (letters, digits, - and _ only)`);
  }

  /** An optional whole number from `env[name]`, at least `min`. */
  const whole = (name: string, unit: string, min: number): number | undefined => {
    const text = env[name];
    if (text === undefined || text === "") return undefined;
    const n = Number(text);
    if (!/^[0-9]+$/.test(text) || n < min) throw new Error(`${name} must be a whole number of ${unit}${min > 0 ? ` (at least ${min})` : ""}; got "${text}"`);
    return n;
  };

  const submitUrl = env["SSE_SUBMIT_URL"] || undefined;
  // The publisher appends /submit to the hub's base URL; the variable keeps its old meaning (the full /submit URL).
  if (submitUrl !== undefined && !/^https?:\/\/.+\/submit$/.test(submitUrl)) {
    throw new Error(`SSE_SUBMIT_URL must be an http(s) URL ending in /submit, e.g. http://127.0.0.1:8000/submit; got "${submitUrl}"`);
  }
  const redisUrl = env["REDIS_URL"] || undefined;
  if (redisUrl !== undefined && !/^rediss?:\/\//.test(redisUrl)) throw new Error(`REDIS_URL must start with redis:// or rediss://; got "${redisUrl}"`);

  return {
    secret,
    secretGenerated,
    port,
    host: env["HOST"] || "127.0.0.1",
    basePath,
    topics,
    heartbeatInterval: whole("HEARTBEAT_INTERVAL", "milliseconds", 0),
    retry: whole("RETRY", "milliseconds", 0),
    // At least 2 s: Branca timestamps are whole seconds, so 1 s could expire as it is minted.
    tokenTtl: whole("SSE_TOKEN_TTL", "seconds", 2),
    submitUrl,
    redisUrl,
  };
}

/** Host part of a URL for a listen address; `any` stands in for 0.0.0.0 / ::. */
function urlHost(host: string, any: string): string {
  if (host === "0.0.0.0" || host === "::") return any;
  return host.includes(":") ? `[${host}]` : host;
}

function jsonError(res: Response, status: number, error: string, message: string): void {
  res.status(status).json({ error, message });
}

/** The router's options from the config: only what was set, so the library's defaults apply otherwise. */
export function routerOptions(config: ExampleConfig, broker?: Broker): SseRouterOptions {
  const options: SseRouterOptions = { secret: config.secret, health: true };
  if (broker) options.broker = broker;
  if (config.heartbeatInterval !== undefined) options.heartbeatInterval = config.heartbeatInterval;
  if (config.retry !== undefined) options.retry = config.retry;
  if (config.tokenTtl !== undefined) {
    options.tokenTtl = config.tokenTtl;
    // The default notice (60 s before expiry) would come at once on every
    // stream of a short-lived token, and the client would rotate every
    // second; a third of the lifetime leaves the client time to fetch a token.
    options.expiryNotice = Math.min(60, Math.max(1, Math.floor(config.tokenTtl / 3)));
  }
  return options;
}

/** Topics from `?topics=a,b`: the wanted ones, or an error the route answers with. */
function wantedTopics(config: ExampleConfig, query: unknown): { topics: string[] } | { status: number; error: string; message: string } {
  const raw = typeof query === "string" ? query : "";
  const topics = [...new Set(raw.split(",").map((t) => t.trim()).filter(Boolean))];
  if (topics.length === 0) return { status: 400, error: "no_topics", message: "pick at least one topic: ?topics=weather,news" };
  // A real app would check the signed-in user here, e.g. per-user topics.
  const denied = topics.filter((t) => !config.topics.includes(t));
  if (denied.length > 0) return { status: 403, error: "topic_forbidden", message: `not allowed to read: ${denied.join(", ")}` };
  return { topics };
}

/**
 * Builds the Express app around a new router. `submitUrl` must be set by
 * then when the "http" publish mode should work (main() sets it to this app's
 * own hub once it knows its port).
 */
export function buildApp(config: ExampleConfig, broker?: Broker) {
  const router = createSseRouter(routerOptions(config, broker));
  let publisher: ReturnType<typeof createPublisher> | undefined;
  const httpPublisher = () =>
    (publisher ??= createPublisher({ url: config.submitUrl!.replace(/submit$/, ""), secret: config.secret }));

  const app = express();
  app.disable("x-powered-by");
  // Behind nginx: req.ip / req.protocol from X-Forwarded-* of the local proxy only.
  app.set("trust proxy", "loopback");

  // 1. The hub, mounted under its prefix. Nothing in front of it buffers or
  //    compresses: the router sets its own stream headers.
  app.use(config.basePath, router);

  // 2. The app's own pages and API.
  app.use(express.static(path.join(__dirname, "public"), { index: "index.html", maxAge: 0 }));
  // The browser client as the package ships it; the page maps `sse-hub/client` here (no bundler).
  const clientFile = require.resolve("sse-hub/client");
  app.get("/vendor/sse-hub-client.mjs", (_req, res) => {
    res.sendFile(clientFile, { headers: { "Content-Type": "text/javascript; charset=utf-8", "Cache-Control": "no-cache" } });
  });

  app.get("/api/config", (_req, res) => {
    res.set("Cache-Control", "no-store").json({ topics: config.topics, basePath: config.basePath });
  });

  // The client's token provider: the browser never signs a token; the backend
  // decides what it may read. Called again before expiry (rotation).
  app.get("/api/sse-token", (req, res) => {
    const wanted = wantedTopics(config, req.query["topics"]);
    if (!("topics" in wanted)) return jsonError(res, wanted.status, wanted.error, wanted.message);
    res.set("Cache-Control", "no-store").type("text/plain").send(subscribeToken(config.secret, wanted.topics));
  });

  // The same check for plain EventSource users (the original sse-server's
  // pattern): a 307 to the hub. Relative to the host the browser used, so it
  // works the same behind a proxy.
  app.get("/subscribe", (req, res) => {
    const wanted = wantedTopics(config, req.query["topics"]);
    if (!("topics" in wanted)) return jsonError(res, wanted.status, wanted.error, wanted.message);
    const token = subscribeToken(config.secret, wanted.topics);
    const last = typeof req.query["lastEventId"] === "string" && req.query["lastEventId"] !== "" ? `&lastEventId=${encodeURIComponent(req.query["lastEventId"])}` : "";
    res.set("Cache-Control", "no-store");
    res.redirect(307, `${config.basePath}/events?token=${encodeURIComponent(token)}${last}`);
  });

  // A real app would authenticate this route (and check CSRF); the example
  // lets anyone on this machine publish to the allowlisted topics.
  app.post("/api/publish", express.json({ limit: "16kb" }), async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const { topic, data = "" } = body;
    const via = body["via"] ?? "http";
    if (typeof topic !== "string" || !config.topics.includes(topic)) {
      return jsonError(res, 400, "topic_invalid", `topic must be one of: ${config.topics.join(", ")}`);
    }
    const event = body["event"] === undefined || body["event"] === "" ? eventName(topic) : body["event"];
    if (typeof event !== "string" || !EVENT_RE.test(event)) {
      return jsonError(res, 400, "event_invalid", "event must be 1-64 characters: letters, digits, and . _ : -");
    }
    if (typeof data !== "string" || data.length > MAX_DATA) {
      return jsonError(res, 400, "data_invalid", `data must be a string of at most ${MAX_DATA} characters`);
    }
    if (via !== "http" && via !== "router") return jsonError(res, 400, "via_invalid", 'via must be "http" or "router"');

    const events = [{ topic, event, data }];
    const started = process.hrtime.bigint();
    try {
      // In process: no token, no HTTP. Over HTTP: what any other backend does.
      await (via === "router" ? router.publish(events) : httpPublisher().publish(events));
    } catch (err) {
      if (!isSseError(err)) throw err;
      return jsonError(res, 502, "publish_failed", `could not publish: ${err.message}`);
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    res.json({ ok: true, via, topic, event, ms: Math.round(ms * 10) / 10 });
  });

  app.use((req, res) => jsonError(res, 404, "not_found", `no route for ${req.method} ${req.path}`));
  // Express 5: errors from json() (bad JSON, too large) land here.
  const onError: ErrorRequestHandler = (err: { status?: unknown; message?: string }, _req, res, _next) => {
    const status = typeof err.status === "number" && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) console.error("example-app: internal error:", err);
    jsonError(res, status, status === 500 ? "internal" : "bad_request", status === 500 ? "internal error" : (err.message ?? "bad request"));
  };
  app.use(onError);

  return { app, router };
}

async function main(): Promise<void> {
  let config: ExampleConfig;
  try {
    config = readConfig(process.env);
  } catch (err) {
    console.error(`example-app: ${(err as Error).message}`);
    process.exit(2);
  }
  if (config.secretGenerated) {
    console.warn(
      "example-app: WARNING: SSE_SECRET is not set; generated a random one for this run.\n" +
        "  Tokens stop working when the app restarts, and other backends cannot publish.\n" +
        "  Set one for real use: export SSE_SECRET=$(openssl rand -hex 32)",
    );
  }

  let broker: Broker | undefined;
  if (config.redisUrl !== undefined) {
    // Loaded only when asked for: ioredis is an optional peer dependency.
    const { createRedisBroker } = await import("sse-hub/redis");
    broker = createRedisBroker(config.redisUrl);
  }

  let built: ReturnType<typeof buildApp>;
  try {
    built = buildApp(config, broker);
  } catch (err) {
    console.error(`example-app: ${(err as Error).message}`);
    process.exit(2);
  }
  const { app, router } = built;
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, resolve);
  });
  const { port } = server.address() as { port: number };
  // The URL a person opens, and the address this process calls itself on.
  const url = `http://${urlHost(config.host, "localhost")}:${port}/`;
  // The "http" publish mode talks to this very process unless told otherwise.
  config.submitUrl ??= `http://${urlHost(config.host, "127.0.0.1")}:${port}${config.basePath}/submit`;

  // Keep this line's shape: scripts and tests look for it. One line, the URL to open.
  console.log(`example-app: listening; open ${url} (hub at ${url.slice(0, -1)}${config.basePath}/, topics ${config.topics.join(", ")}${broker ? ", Redis broker" : ""})`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`example-app: ${signal}, closing ${router.stats.subscribers} event streams`);
    // A stuck close must not keep the process alive.
    setTimeout(() => {
      console.error("example-app: shutdown took too long; exiting");
      process.exit(1);
    }, 10_000).unref();
    server.close(() => process.exit(0));
    // A broker passed in is ours to close: the router closes only the one it made.
    router.close().then(() => broker?.close()).then(
      () => {
        // Streams are ended; browsers reconnect (to another instance, or to us after a restart).
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      },
      (err: unknown) => {
        console.error("example-app: close failed:", err);
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`example-app: failed to start: ${(err as Error).message}`);
    process.exit(1);
  });
}
