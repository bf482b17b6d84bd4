#!/usr/bin/env node
/**
 * Standalone server: a drop-in replacement for the original `tvdw/sse-server`
 * Docker image. Configuration from the environment (the original's way) or
 * flags:
 *
 *   SSE_SECRET   64 hex characters (required)
 *   PORT         --port       default 8000
 *   HOST         --host       default all interfaces
 *   BASE_PATH    --base-path  default "/" (e.g. "/sse-server/" for the fork)
 *   SSE_HEALTH=1 --health     serve GET /health
 *   SSE_METRICS=1 --metrics   serve GET /metrics
 *
 * Logs one startup line and never logs tokens. SIGTERM/SIGINT close every
 * stream cleanly and exit 0.
 */
import http from "node:http";
import { parseArgs } from "node:util";
import express from "express";
import { SseError } from "./errors";
import { createSseRouter, type SseRouter } from "./router";

export interface ServerConfig {
  secret: string;
  port: number;
  host: string | undefined;
  basePath: string;
  health: boolean;
  metrics: boolean;
}

function fail(message: string): never {
  throw new SseError("invalid_option", message);
}

/** Reads flags and environment into a config, or throws with a clear message. */
export function readConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ServerConfig {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: "string" },
      host: { type: "string" },
      "base-path": { type: "string" },
      health: { type: "boolean" },
      metrics: { type: "boolean" },
    },
    strict: true,
  });
  const secret = env["SSE_SECRET"];
  if (secret === undefined || secret === "") {
    fail("SSE_SECRET is not set: give it 64 hex characters, e.g. SSE_SECRET=$(openssl rand -hex 32)");
  }
  if (!/^[0-9a-fA-F]{64}$/.test(secret)) {
    fail(`SSE_SECRET must be 64 hex characters (32 bytes), e.g. from \`openssl rand -hex 32\`; got ${secret.length} characters`);
  }
  const portText = values.port ?? env["PORT"] ?? "8000";
  const port = Number(portText);
  if (!/^[0-9]{1,5}$/.test(portText) || port > 65535) fail(`PORT must be a number from 0 to 65535; got "${portText}"`);
  let basePath = values["base-path"] ?? env["BASE_PATH"] ?? "/";
  if (!basePath.startsWith("/")) basePath = "/" + basePath;
  basePath = basePath.replace(/\/+$/, "") || "/";
  const flag = (v: string | undefined) => v === "1" || v === "true";
  return {
    secret,
    port,
    host: values.host ?? (env["HOST"] || undefined),
    basePath,
    health: values.health ?? flag(env["SSE_HEALTH"]),
    metrics: values.metrics ?? flag(env["SSE_METRICS"]),
  };
}

export interface RunningServer {
  server: http.Server;
  router: SseRouter;
  url: string;
  close(): Promise<void>;
}

/** Starts the standalone server; resolves once it listens. */
export async function startServer(config: ServerConfig): Promise<RunningServer> {
  const router = createSseRouter({ secret: config.secret, health: config.health, metrics: config.metrics });
  const app = express();
  app.disable("x-powered-by");
  app.use(config.basePath, router);
  app.use((req, res) => {
    res.setHeader("Access-Control-Allow-Origin", "*");
    res.status(404).json({ error: "not_found", message: `no route for ${req.method} ${req.path}` });
  });
  const server = http.createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : config.port;
  const host = config.host ?? "0.0.0.0";
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}${config.basePath === "/" ? "" : config.basePath}`;
  let closing: Promise<void> | undefined;
  return {
    server,
    router,
    url,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        await router.close();
        server.closeIdleConnections();
        await closed;
      })();
      return closing;
    },
  };
}

async function main(): Promise<void> {
  let config: ServerConfig;
  try {
    config = readConfig(process.argv.slice(2), process.env);
  } catch (err) {
    console.error(`sse-server: ${(err as Error).message}`);
    process.exit(2);
  }
  const running = await startServer(config);
  console.log(`sse-server listening on ${running.url} (events: ${running.url}/events, submit: ${running.url}/submit)`);
  const stop = (signal: string) => {
    console.log(`sse-server: ${signal}, closing ${running.router.stats.subscribers} streams`);
    // A second signal, or a stuck close, must not keep the process alive.
    setTimeout(() => process.exit(1), 10_000).unref();
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`sse-server: failed to start: ${(err as Error).message}`);
    process.exit(1);
  });
}
