#!/usr/bin/env node
/**
 * Standalone server (the `sse-server` bin, built to dist/cli.js): a drop-in
 * replacement for the original `tvdw/sse-server` Docker image. Configuration
 * from the environment (the original's way) or flags.
 *
 * Four jobs, one module each, layered one way (index → cluster, lifecycle →
 * mount → config):
 * - config.ts: the settings table (parsing, `--help`, the README section) and
 *   the checked {@link ServerConfig};
 * - mount.ts: the request listener (the core's hub under `BASE_PATH`, access log, 404);
 * - lifecycle.ts: listening (HTTP/1.1, or TLS with HTTP/2), connection
 *   tracking, graceful close on SIGTERM/SIGINT with a deadline;
 * - cluster.ts: `WORKERS` (primary and workers).
 *
 * Logs through one {@link Logger} (`SSE_LOG_LEVEL`, `SSE_LOG_FORMAT`), never
 * tokens or Redis passwords. SIGTERM/SIGINT close every stream cleanly and
 * exit 0; with workers, the primary forwards the signal, waits for every
 * worker, then exits 0.
 */
import type { Logger } from "../logger";
import { processRole, runPrimary, workerListening } from "./cluster";
import { commandOf, loggerFor, packageVersion, readConfig, renderHelp, startupLine, type ServerConfig } from "./config";
import { startServer, stopOnSignals } from "./lifecycle";

// The CLI's programmatic surface (tests and embedders import `src/cli`).
export { SERVER_TIMEOUTS, commandOf, loadTls, loggerFor, packageVersion, readConfig, redactRedisUrl, sentinelOptions, type ServerConfig } from "./config";
export { mountAt } from "./mount";
export { startServer, type RunningServer } from "./lifecycle";

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const command = commandOf(argv);
  if (command !== "serve") {
    process.stdout.write(command === "help" ? renderHelp(packageVersion()) : packageVersion() + "\n");
    return;
  }
  let config: ServerConfig;
  try {
    config = readConfig(argv, process.env);
  } catch (err) {
    // Before any logger exists (its settings may be what is wrong): plain stderr.
    console.error(`sse-server: ${(err as Error).message}`);
    process.exit(2);
  }
  const logger: Logger = loggerFor(config);
  const workers = config.workers ?? 1;
  const role = processRole(workers);
  if (role === "primary") {
    runPrimary(config, workers, logger);
    return;
  }
  const running = await startServer(config, logger);
  if (role === "worker") workerListening(running.url, stopOnSignals(running, logger, `worker ${process.pid}: `));
  else {
    // Signals are handled before the line that tells a supervisor it may send them.
    stopOnSignals(running, logger);
    logger.info(startupLine(running.url, config, 1));
  }
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`sse-server: failed to start: ${(err as Error).message}`);
    process.exit(1);
  });
}
