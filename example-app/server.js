#!/usr/bin/env node
/**
 * Example: an existing Express app that mounts the SSE hub next to its own
 * routes, the way a team would add live updates to an app they already have.
 *
 *   GET  /                      a static page (public/): pick topics, watch events, send events
 *   GET  /api/config            topics the page may offer, event names to listen for
 *   GET  /subscribe?topics=a,b  the backend decides what the visitor may read (an allowlist),
 *                               mints a subscribe token and answers 307 to <BASE_PATH>/events?token=…
 *   POST /api/publish           JSON {topic, event, data, via}: publishes an event, either
 *                                 via "http":   submitToken + POST <BASE_PATH>/submit (what a Python
 *                                               or any other backend does), or
 *                                 via "router": router.publish() in process (no HTTP at all)
 *   *    <BASE_PATH>/…          the hub itself: /events, /submit, /ping (default /sse-server/)
 *
 * Configuration (environment):
 *   SSE_SECRET          64 hex characters; generated per run (with a warning) when absent
 *   PORT                default 3000 (0 picks a free port)
 *   HOST                default 127.0.0.1 (use 0.0.0.0 in a container)
 *   BASE_PATH           where the hub is mounted, default /sse-server
 *   TOPICS              the allowlist, default weather,news,sports
 *   HEARTBEAT_INTERVAL  heartbeat period in ms, default the library's 30000
 *   RETRY               base reconnect delay (`retry:`) in ms, default the library's 3000
 *   SSE_SUBMIT_URL      where the "http" mode POSTs; default this app's own <BASE_PATH>/submit
 *
 * Plain CommonJS, no build step: only the library needs `npm run build`.
 */
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");
const path = require("node:path");
const express = require("express");

let sse;
try {
  // Inside this repository, the package name resolves to ./dist (Node's
  // package self-reference); in your app it is the installed package.
  sse = require("sse-hub");
} catch (err) {
  console.error(`example-app: cannot load the sse-hub library (${err.message}).\nRun \`npm run build\` first (or \`npm run example\`, which builds and starts).`);
  process.exit(1);
}
const { createSseRouter, subscribeToken, submitToken } = sse;

/** Reads and checks the environment; throws Error with a clear message. */
function readConfig(env) {
  let secret = env.SSE_SECRET;
  let secretGenerated = false;
  if (secret === undefined || secret === "") {
    secret = crypto.randomBytes(32).toString("hex");
    secretGenerated = true;
  } else if (!/^[0-9a-fA-F]{64}$/.test(secret)) {
    throw new Error(`SSE_SECRET must be 64 hex characters (32 bytes), e.g. SSE_SECRET=$(openssl rand -hex 32); got ${secret.length} characters`);
  }

  const portText = env.PORT ?? "3000";
  const port = Number(portText);
  if (!/^[0-9]{1,5}$/.test(portText) || port > 65535) throw new Error(`PORT must be a number from 0 to 65535; got "${portText}"`);

  let basePath = env.BASE_PATH ?? "/sse-server";
  if (!basePath.startsWith("/")) basePath = "/" + basePath;
  basePath = basePath.replace(/\/+$/, "");
  if (basePath === "") throw new Error("BASE_PATH must not be / in this example: the app serves its own pages at /");
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(basePath)) throw new Error(`BASE_PATH must be a simple path such as /sse-server; got "${env.BASE_PATH}"`);

  const topics = [...new Set((env.TOPICS ?? "weather,news,sports").split(",").map((t) => t.trim()).filter(Boolean))];
  if (topics.length === 0) throw new Error("TOPICS must list at least one topic, e.g. TOPICS=weather,news,sports");
  for (const t of topics) {
    if (!TOPIC_RE.test(t)) throw new Error(`TOPICS: "${t}" is not a simple name (letters, digits, - and _ only)`);
  }

  /** An optional whole number of milliseconds from `env[name]`. */
  const milliseconds = (name) => {
    const text = env[name];
    if (text === undefined || text === "") return undefined;
    const ms = Number(text);
    if (!Number.isInteger(ms) || ms < 0) throw new Error(`${name} must be a whole number of milliseconds; got "${text}"`);
    return ms;
  };
  const heartbeatInterval = milliseconds("HEARTBEAT_INTERVAL");
  const retry = milliseconds("RETRY");

  return {
    secret,
    secretGenerated,
    port,
    host: env.HOST || "127.0.0.1",
    basePath,
    topics,
    heartbeatInterval,
    retry,
    submitUrl: env.SSE_SUBMIT_URL || undefined,
  };
}

const TOPIC_RE = /^[A-Za-z0-9_-]{1,64}$/;
// Event names end up in `event:` lines and in the page's addEventListener calls.
const EVENT_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const MAX_DATA = 4096;

/** Host part of a URL for a listen address; `any` stands in for 0.0.0.0 / ::. */
function urlHost(host, any) {
  if (host === "0.0.0.0" || host === "::") return any;
  return host.includes(":") ? `[${host}]` : host;
}

function jsonError(res, status, error, message) {
  res.status(status).json({ error, message });
}

/** Builds the Express app around a created router. Returns { app, router, setSubmitUrl }. */
function buildApp(config) {
  const router = createSseRouter({
    secret: config.secret,
    ...(config.heartbeatInterval !== undefined ? { heartbeatInterval: config.heartbeatInterval } : {}),
    ...(config.retry !== undefined ? { retry: config.retry } : {}),
  });

  const app = express();
  app.disable("x-powered-by");
  // Behind nginx: req.ip / req.protocol from X-Forwarded-* of the local proxy only.
  app.set("trust proxy", "loopback");

  // 1. The hub, mounted under its prefix. Nothing in front of it buffers or
  //    compresses: the router sets its own stream headers.
  app.use(config.basePath, router);

  // 2. The app's own pages and API.
  app.use(express.static(path.join(__dirname, "public"), { index: "index.html", maxAge: 0 }));

  app.get("/api/config", (_req, res) => {
    res.set("Cache-Control", "no-store").json({
      topics: config.topics,
      // EventSource only delivers named events to listeners for that name,
      // so the page listens for these (plus any name typed into its form).
      eventNames: ["message", ...config.topics.map((t) => `${t}-update`)],
      basePath: config.basePath,
    });
  });

  // The pattern the original sse-server README recommends: the browser never
  // signs a token; the backend decides what it may read and redirects.
  app.get("/subscribe", (req, res) => {
    const raw = typeof req.query.topics === "string" ? req.query.topics : "";
    const wanted = [...new Set(raw.split(",").map((t) => t.trim()).filter(Boolean))];
    if (wanted.length === 0) return jsonError(res, 400, "no_topics", "pick at least one topic: /subscribe?topics=weather,news");
    const denied = wanted.filter((t) => !config.topics.includes(t));
    // A real app would check the signed-in user here, e.g. per-user topics.
    if (denied.length > 0) return jsonError(res, 403, "topic_forbidden", `not allowed to read: ${denied.join(", ")}`);
    const token = subscribeToken(config.secret, wanted);
    res.set("Cache-Control", "no-store");
    // Relative to the host the browser used, so it works the same behind a proxy.
    // The browser keeps its Last-Event-ID header across this redirect.
    res.redirect(307, `${config.basePath}/events?token=${encodeURIComponent(token)}`);
  });

  // A real app would authenticate this route (and check CSRF); the example
  // lets anyone on this machine publish to the allowlisted topics.
  app.post("/api/publish", express.json({ limit: "16kb" }), async (req, res) => {
    const body = req.body ?? {};
    const { topic, data = "" } = body;
    const event = body.event === undefined || body.event === "" ? "message" : body.event;
    const via = body.via ?? "http";
    if (typeof topic !== "string" || !config.topics.includes(topic)) {
      return jsonError(res, 400, "topic_invalid", `topic must be one of: ${config.topics.join(", ")}`);
    }
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
      if (via === "router") {
        // In process: no token, no HTTP; the router validates and fans out.
        await router.publish(events);
      } else {
        // What any backend does (see the original README's Python snippet):
        // mint a submit token with the shared secret and POST it as the raw body.
        const upstream = await fetch(config.submitUrl, {
          method: "POST",
          headers: { "Content-Type": "application/octet-stream" },
          body: submitToken(config.secret, events),
          signal: AbortSignal.timeout(10_000),
        });
        if (upstream.status !== 200) {
          const text = await upstream.text();
          return jsonError(res, 502, "submit_failed", `${config.submitUrl} answered ${upstream.status}: ${text.slice(0, 300)}`);
        }
        await upstream.arrayBuffer().catch(() => undefined);
      }
    } catch (err) {
      return jsonError(res, 502, "publish_failed", `could not publish: ${err.message}`);
    }
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    res.json({ ok: true, via, topic, event, ms: Math.round(ms * 10) / 10 });
  });

  app.use((req, res) => jsonError(res, 404, "not_found", `no route for ${req.method} ${req.path}`));
  // Express 5: errors from json() (bad JSON, too large) land here.
  app.use((err, _req, res, _next) => {
    const status = typeof err.status === "number" && err.status >= 400 && err.status < 500 ? err.status : 500;
    if (status === 500) console.error("example-app: internal error:", err);
    jsonError(res, status, status === 500 ? "internal" : "bad_request", status === 500 ? "internal error" : err.message);
  });

  return { app, router };
}

async function main() {
  let config;
  try {
    config = readConfig(process.env);
  } catch (err) {
    console.error(`example-app: ${err.message}`);
    process.exit(2);
  }
  if (config.secretGenerated) {
    console.warn(
      "example-app: WARNING: SSE_SECRET is not set; generated a random one for this run.\n" +
        "  Tokens stop working when the app restarts, and other backends cannot publish.\n" +
        "  Set one for real use: export SSE_SECRET=$(openssl rand -hex 32)",
    );
  }

  let built;
  try {
    built = buildApp(config);
  } catch (err) {
    console.error(`example-app: ${err.message}`);
    process.exit(2);
  }
  const { app, router } = built;
  const server = http.createServer(app);
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, resolve);
  });
  const { port } = server.address();
  // The URL a person opens, and the address this process calls itself on.
  const url = `http://${urlHost(config.host, "localhost")}:${port}/`;
  // The "http" publish mode talks to this very process unless told otherwise.
  config.submitUrl ??= `http://${urlHost(config.host, "127.0.0.1")}:${port}${config.basePath}/submit`;

  console.log(`example-app: SSE hub at ${url.slice(0, -1)}${config.basePath}/ (events, submit, ping); topics: ${config.topics.join(", ")}`);
  // Keep this line's shape: scripts and tests look for it.
  console.log(`example-app: listening; open ${url}`);

  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    console.log(`example-app: ${signal}, closing ${router.stats.subscribers} event streams`);
    // A stuck close must not keep the process alive.
    setTimeout(() => {
      console.error("example-app: shutdown took too long; exiting");
      process.exit(1);
    }, 10_000).unref();
    server.close(() => process.exit(0));
    router.close().then(
      () => {
        // Streams are ended; browsers reconnect (to another instance, or to us after a restart).
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      },
      (err) => {
        console.error("example-app: close failed:", err);
        process.exit(1);
      },
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`example-app: failed to start: ${err.message}`);
    process.exit(1);
  });
}

module.exports = { readConfig, buildApp };
