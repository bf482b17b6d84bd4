/**
 * `WORKERS` > 1: node:cluster. The primary serves nothing itself; each worker
 * is a full standalone server (lifecycle.ts) on the shared Redis broker, all
 * on the one port. This module is the only one that knows about processes.
 */
import cluster, { type Worker } from "node:cluster";
import type { Logger } from "../logger";
import { startupLine, type ServerConfig } from "./config";

/** What this process is: the primary of `workers` > 1 processes, one of them, or the only one. */
export function processRole(workers: number): "primary" | "worker" | "single" {
  if (cluster.isWorker) return "worker";
  return workers > 1 ? "primary" : "single";
}

/** A worker tells its primary it listens; the primary prints one startup line once all do. */
interface ListeningMessage {
  type: "sse-server:listening";
  url: string;
}

function isListeningMessage(message: unknown): message is ListeningMessage {
  return typeof message === "object" && message !== null && (message as ListeningMessage).type === "sse-server:listening";
}

/**
 * The worker's side, once its server listens: reports to the primary, and
 * calls `stop` if the primary goes away (killed), so a worker never lingers
 * holding sockets.
 */
export function workerListening(url: string, stop: (reason: string) => void): void {
  process.send?.({ type: "sse-server:listening", url } satisfies ListeningMessage);
  process.once("disconnect", () => stop("primary gone"));
}

/**
 * The cluster primary: forks the workers, prints the startup line once every
 * worker listens, replaces a worker that dies, and on SIGTERM/SIGINT forwards
 * the signal, waits for every worker and exits 0 (1 if any worker's close
 * failed or timed out).
 */
export function runPrimary(config: ServerConfig, count: number, logger: Logger): void {
  const live = new Set<Worker>();
  let listening = 0;
  let up = false;
  let stopping = false;
  let failedStop = false;
  const fork = () => {
    const worker = cluster.fork();
    live.add(worker);
    worker.on("message", (message: unknown) => {
      if (!isListeningMessage(message) || up) return;
      if (++listening === count) {
        up = true;
        logger.info(startupLine(message.url, config, count));
      }
    });
  };
  cluster.on("exit", (worker, code, signal) => {
    live.delete(worker);
    if (stopping) {
      // Exit 0 only if every worker closed cleanly (a worker exits 1 when its close timed out).
      // (A worker still starting has no handler yet and is simply ended by the SIGTERM.)
      if (code !== 0 && !(code === null && signal === "SIGTERM")) failedStop = true;
      if (live.size === 0) process.exit(failedStop || process.exitCode === 1 ? 1 : 0);
      return;
    }
    if (!up) {
      // A worker that cannot start (port taken, bad Redis URL...) would fail again: give up.
      logger.error(`a worker failed to start (exit ${signal ?? code}); stopping`);
      stopping = true;
      for (const w of live) w.process.kill("SIGTERM");
      setTimeout(() => process.exit(1), 10_000).unref();
      if (live.size === 0) process.exit(1);
      process.exitCode = 1;
      return;
    }
    logger.error(`worker ${worker.process.pid} exited (${signal ?? code}); starting a new one`);
    setTimeout(fork, 500).unref();
  });
  const stop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info(`${signal}, stopping ${live.size} workers`);
    for (const worker of live) worker.process.kill("SIGTERM");
    // Workers give up by themselves (see closeDeadline); this is the backstop.
    setTimeout(() => {
      for (const worker of live) worker.process.kill("SIGKILL");
      process.exit(1);
    }, 65_000).unref();
    if (live.size === 0) process.exit(0);
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
  for (let i = 0; i < count; i++) fork();
}
