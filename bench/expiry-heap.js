#!/usr/bin/env node
/**
 * Heap per subscriber with and without token expiry (issue 13), a benchmark
 * script, not a test:
 *
 *   npm run build && node bench/expiry-heap.js [--subscribers 5000] [--rounds 3]
 *
 * For each setting (`tokenTtl: 0`, no expiry; `tokenTtl: 86400`, every
 * stream in the expiry buckets), a child process (`--expose-gc`) serves a
 * router from dist/, this process opens N real subscriber sockets, and the
 * child reports heapUsed after a full GC before and after: (after - before) / N.
 * Expiry adds two numbers per subscriber and one Set entry in a bucket (no
 * timer, no closure); the ratio shows what that costs. Rounds alternate the
 * settings and the median per setting is reported.
 */
"use strict";
const { fork } = require("node:child_process");
const net = require("node:net");
const path = require("node:path");
const { parseArgs } = require("node:util");

const ROOT = path.join(__dirname, "..");
const SECRET = "11".repeat(32);

if (process.env.EXPIRY_HEAP_ROLE === "server") serve();
else
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });

function serve() {
  const express = require("express");
  const { createSseRouter } = require(path.join(ROOT, "dist", "index.js"));
  const router = createSseRouter({ secret: SECRET, tokenTtl: Number(process.env.TTL), heartbeatInterval: 0, retry: 0 });
  const app = express();
  app.use(router);
  const server = app.listen(0, "127.0.0.1", () => process.send({ port: server.address().port }));
  process.on("message", (msg) => {
    if (msg === "measure") {
      global.gc();
      global.gc();
      process.send({ heap: process.memoryUsage().heapUsed, subscribers: router.stats.subscribers });
    }
  });
}

function ask(child, msg) {
  return new Promise((resolve) => {
    child.once("message", resolve);
    child.send(msg);
  });
}

async function measure(ttl, n, token) {
  const child = fork(__filename, [], { env: { ...process.env, EXPIRY_HEAP_ROLE: "server", TTL: String(ttl) }, execArgv: ["--expose-gc"] });
  const { port } = await new Promise((resolve) => child.once("message", resolve));
  const sockets = [];
  // Warm up the code paths once so their one-time allocations are not counted.
  await openMany(port, token, 50, sockets);
  for (const s of sockets.splice(0)) s.destroy();
  for (let m = await ask(child, "measure"); m.subscribers !== 0; m = await ask(child, "measure")) await new Promise((r) => setTimeout(r, 50));
  const before = await ask(child, "measure");
  await openMany(port, token, n, sockets);
  let after = await ask(child, "measure");
  while (after.subscribers < n) {
    await new Promise((r) => setTimeout(r, 50));
    after = await ask(child, "measure");
  }
  for (const s of sockets) s.destroy();
  child.kill();
  return (after.heap - before.heap) / n;
}

/** Opens `n` raw subscriber sockets, 200 at a time, each resolved at its first heartbeat. */
async function openMany(port, token, n, sockets) {
  for (let done = 0; done < n; ) {
    const batch = Math.min(200, n - done);
    await Promise.all(
      Array.from({ length: batch }, () => new Promise((resolve, reject) => {
        const s = net.connect(port, "127.0.0.1", () => s.write(`GET /events?token=${token} HTTP/1.1\r\nHost: x\r\n\r\n`));
        s.once("data", () => resolve());
        s.once("error", reject);
        sockets.push(s);
      })),
    );
    done += batch;
  }
}

async function main() {
  const { values } = parseArgs({ options: { subscribers: { type: "string", default: "5000" }, rounds: { type: "string", default: "3" } } });
  const n = Number(values.subscribers);
  const { subscribeToken } = require(path.join(ROOT, "dist", "index.js"));
  const token = subscribeToken(SECRET, ["t"]);
  const results = { 0: [], 86400: [] };
  for (let round = 0; round < Number(values.rounds); round++) {
    for (const ttl of round % 2 === 0 ? [0, 86400] : [86400, 0]) results[ttl].push(await measure(ttl, n, token));
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const without = median(results[0]);
  const withExpiry = median(results[86400]);
  console.log(`subscribers: ${n}, rounds: ${values.rounds}`);
  console.log(`heap per subscriber, tokenTtl 0 (no expiry):  ${without.toFixed(0)} B  (${results[0].map((x) => x.toFixed(0)).join(", ")})`);
  console.log(`heap per subscriber, tokenTtl 86400 (expiry): ${withExpiry.toFixed(0)} B  (${results[86400].map((x) => x.toFixed(0)).join(", ")})`);
  console.log(`ratio (expiry / none): ${(withExpiry / without).toFixed(3)}`);
}
