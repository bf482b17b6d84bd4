/**
 * A TypeScript user's fresh project: the packed `sse-hub` tarball installed
 * with npm next to `express`, `fastify`, `ioredis` and `@types/node` (what
 * an app using every entry has), compiled with `strict: true` and
 * `skipLibCheck: false`, so errors inside our bundled .d.ts count too. Once
 * without `@types/express` (our types must not need it) and once with it
 * (the router must still fit `app.use`). `module: nodenext` with a `.mts`
 * and a `.cts` file: the ESM (`index.d.mts`) and CommonJS (`index.d.ts`)
 * declarations of every entry, as the `exports` map hands them out.
 *
 * npm installs from its cache when it can (`--prefer-offline`; CI's `npm ci`
 * fills it with these very versions). The compiler is the repo's own.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";

const ROOT = path.join(__dirname, "..");
const TSC = path.join(ROOT, "node_modules", "typescript", "bin", "tsc");

/** The version of `name` this repo installed: the consumer gets the same (from npm's cache). */
function installed(name: string): string {
  const pkg = JSON.parse(readFileSync(path.join(ROOT, "node_modules", name, "package.json"), "utf8")) as { version: string };
  return `${name}@${pkg.version}`;
}

function npm(dir: string, args: string[]): void {
  execFileSync("npm", [...args, "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error"], {
    cwd: dir,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
}

/** Compiler output of the consumer project ("" when it compiles cleanly). */
function compile(dir: string): string {
  try {
    execFileSync(process.execPath, [TSC, "-p", dir], { cwd: dir, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return "";
  } catch (err) {
    const { stdout, stderr } = err as { stdout?: string; stderr?: string };
    return `${stdout ?? ""}${stderr ?? ""}` || String(err);
  }
}

const TSCONFIG = {
  compilerOptions: {
    strict: true,
    skipLibCheck: false,
    module: "nodenext",
    moduleResolution: "nodenext",
    target: "es2022",
    noEmit: true,
  },
  include: ["*.mts", "*.cts"],
};

/** Uses every entry without Express's types: the router served by plain node:http. */
const ESM_CONSUMER = `
import http from "node:http";
import {
  createSseRouter, createSseHub, createPublisher, subscribeToken, submitToken,
  SseError, isSseError, MemoryBroker, type SseErrorCode, type SseRouter, type SseHub, type SseHubOptions,
} from "sse-hub";
import { createSseHub as createCoreHub } from "sse-hub/core";
import { createRedisBroker, type RedisBrokerOptions } from "sse-hub/redis";
import Fastify from "fastify";
import { sseHubPlugin, type SseHubPluginOptions } from "sse-hub/fastify";

const secret = "00".repeat(32);
const router: SseRouter = createSseRouter({ secret, cors: ["https://app.example"] });
http.createServer((req, res) => router(req, res, () => router.respondError(req, res, new SseError("not_found", "no route"))));
await router.publish([{ topic: "news", event: "headline", data: { title: "t", n: 1 } }], { idempotencyKey: "k" });
const subscribers: number = router.stats.subscribers;

const hub: SseHub = createCoreHub({ secret, broker: new MemoryBroker() });
http.createServer((req, res) => hub.handle(req, res));
await hub.start();
const counts: Record<string, number> = await hub.presence(["news"]);

const publisher = createPublisher({ url: "http://127.0.0.1:8000/sse-server", secret });
await publisher.publish([{ topic: "news", event: "headline", data: "x" }]);
const tokens: string[] = [subscribeToken(secret, ["news"]), submitToken(secret, [{ topic: "news", event: "e", data: "d" }])];

try {
  await hub.publish([]);
} catch (err) {
  if (isSseError(err)) {
    const code: SseErrorCode = err.code;
    const status: number = err.status;
    console.log(code, status);
  }
}

const redisOptions: RedisBrokerOptions = { url: "redis://127.0.0.1:6379", historyLength: 10_000 };
const shared: SseHubOptions = { secret, broker: createRedisBroker(redisOptions) };

const app = Fastify({ logger: false });
await app.register(sseHubPlugin, { prefix: "/sse-server", secret, heartbeatInterval: 15_000 });
app.post("/notify", async () => {
  await app.sseHub.publish([{ topic: "news", event: "headline", data: "from a route" }]);
  return { subscribers: app.sseHub.stats.subscribers };
});
const other = Fastify();
const given: SseHubPluginOptions = { hub: createSseHub(shared) };
await other.register(sseHubPlugin, given);
// @ts-expect-error: a hub, or the options to make one, not both
await other.register(sseHubPlugin, { hub, secret });
// @ts-expect-error: unknown option keys are type errors (and rejected at run time)
createSseHub({ secret, tokenTTL: 60 });
const h2 = Fastify({ http2: true });
await h2.register(sseHubPlugin, { secret });
h2.sseHub.close();

console.log(subscribers, counts, tokens);
`;

/** The same through CommonJS (`index.d.ts`, `redis.d.ts`, …): no top-level await there. */
const CJS_CONSUMER = `
import http = require("node:http");
import sseHub = require("sse-hub");
import redis = require("sse-hub/redis");
import fastifyEntry = require("sse-hub/fastify");
import Fastify = require("fastify");

const secret = "00".repeat(32);
const router: sseHub.SseRouter = sseHub.createSseRouter({ secret });
http.createServer((req, res) => router(req, res, () => res.end()));
const broker: redis.RedisBroker = redis.createRedisBroker("redis://127.0.0.1:6379");

async function main(): Promise<void> {
  const app = Fastify();
  await app.register(fastifyEntry.sseHubPlugin, { secret, broker });
  await app.register(fastifyEntry.default, { prefix: "/other", secret });
  const error = new sseHub.SseError("token_invalid", "bad token");
  console.log(error.status, app.sseHub.stats.topics);
}
void main();
`;

/** Express with its types: the router is what \`app.use\` takes. */
const EXPRESS_CONSUMER = `
import express from "express";
import { createSseRouter } from "sse-hub";

const sse = createSseRouter({ secret: "00".repeat(32) });
const app = express();
app.use("/sse-server", sse);
app.use(sse);
app.get("/stats", (_req, res) => {
  res.json(sse.stats);
});
await sse.close();
`;

let dir = "";

beforeAll(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), "sse-hub-types-"));
  // dist/ is current (jest's globalSetup); packing it must not rebuild it (`prepare`) under other tests.
  execFileSync("npm", ["pack", "--ignore-scripts", "--silent", "--pack-destination", dir], { cwd: ROOT, encoding: "utf8" });
  const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
  writeFileSync(path.join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true }));
  writeFileSync(path.join(dir, "tsconfig.json"), JSON.stringify(TSCONFIG));
  writeFileSync(path.join(dir, "consumer.mts"), ESM_CONSUMER);
  writeFileSync(path.join(dir, "consumer.cts"), CJS_CONSUMER);
  npm(dir, ["install", `./${tarball}`, ...["express", "fastify", "ioredis", "@types/node"].map(installed)]);
}, 180_000);

afterAll(() => {
  if (dir !== "") rmSync(dir, { recursive: true, force: true });
});

test("a strict project without @types/express compiles against every entry, ESM and CommonJS", () => {
  expect(compile(dir)).toBe("");
}, 180_000);

test("with @types/express the router is what app.use takes", () => {
  npm(dir, ["install", installed("@types/express")]);
  writeFileSync(path.join(dir, "express-consumer.mts"), EXPRESS_CONSUMER);
  expect(compile(dir)).toBe("");
}, 180_000);
