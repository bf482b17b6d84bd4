"use strict";
/**
 * One hub instance for bench/partitions.js, run as a child process (fork):
 * the library from dist/ (router + Redis broker, as an app would mount it)
 * on a free port, so each instance has its own pid (its CPU time and its
 * sockets to Redis are measured from outside, per process).
 *
 * Config comes as JSON in PARTITION_INSTANCE: { key, secret, broker }
 * (`broker`: RedisBroker options: `url` or `cluster`, `partitions`). Messages:
 * parent → "stats" → { router, broker (per-partition counters), cpu };
 * startup → { port } or { error }.
 * Not a general server: the bench is its only user.
 */
const http = require("node:http");
const path = require("node:path");
const express = require("express");

const DIST = path.join(__dirname, "..", "..", "dist");
const { createSseRouter } = require(path.join(DIST, "index.js"));
const { createRedisBroker } = require(path.join(DIST, "redis.js"));

async function main() {
  const cfg = JSON.parse(process.env.PARTITION_INSTANCE);
  let broker;
  try {
    broker = createRedisBroker({ key: cfg.key, log: null, ...cfg.broker });
  } catch (err) {
    // e.g. `partitions` on a build without partitioning: the bench reports the run as skipped.
    process.send({ error: err.message });
    return;
  }
  const router = createSseRouter({ secret: cfg.secret, broker });
  const app = express();
  app.use("/", router);
  const server = http.createServer(app);
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  if (typeof broker.waitUntilReady === "function") await broker.waitUntilReady(10_000);
  process.on("message", (msg) => {
    if (msg === "stats") {
      // `partitionStats`: what the partitioned broker read of each partition (events, bytes); undefined before it.
      process.send({ stats: { router: router.stats, broker: broker.partitionStats ?? null, cpu: process.cpuUsage() } });
    }
  });
  process.on("disconnect", () => process.exit(0));
  process.send({ port: server.address().port });
}

main().catch((err) => {
  process.send?.({ error: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
