/**
 * `sse-hub/client` in real Chromium against a real Express app with
 * `createSseRouter` and a token endpoint (issue 13). The test page imports
 * the built browser bundle (dist/client.mjs). Every wait is for a marker
 * (events shown by the page, the server's subscriber count), never a sleep.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import express from "express";
import type { Page } from "playwright-core";
import type { SseRouterOptions } from "../src/options";
import { createSseRouter, type SseRouter } from "../src/adapters/express";
import { encode } from "@msgpack/msgpack";
import { brancaEncode } from "../src/tokens/branca";
import { parseSecret } from "../src/options";
import { subscribeToken } from "../src/tokens";
import { createRedisBroker, type RedisBroker } from "../src/brokers/redis";
import { launchChromium, type Chromium } from "./helpers/chromium";
import { RedisServer } from "./helpers/redis";
import { SECRET, eventually } from "./helpers/sse";

interface TestPage {
  got: number[];
  states: string[];
  resets: string[];
  client: { leader: boolean; state: string; lastEventId: string | undefined };
}
declare const window: TestPage;

const ROOT = path.join(__dirname, "..");
const BUNDLE = path.join(ROOT, "dist", "client.mjs");

const PAGE = `<!doctype html><meta charset="utf-8"><title>client test</title>
<script type="module">
import { createSseClient } from "/client.mjs";
const q = new URLSearchParams(location.search);
window.got = []; window.states = []; window.resets = [];
window.client = createSseClient({
  url: q.get("url") || "/sse-server/events",
  topics: q.get("topics").split(","),
  share: q.get("share") !== "0",
  token: async (topics) => (await fetch("/token?topics=" + encodeURIComponent(topics.join(",")))).text(),
  onState: (s) => window.states.push(s),
  onReset: (r) => window.resets.push(r.reason),
});
window.client.on("n", (n) => window.got.push(n));
window.client.on("m", (m) => window.got.push(m));
window.client.on("message", (m) => window.got.push("message:" + m));
document.body.dataset.ready = "true";
</script><body></body>`;

interface App {
  router: SseRouter;
  server: http.Server;
  port: number;
  origin: string;
  /** Token requests the app answered, with their topics. */
  tokens: string[][];
  /** The next token handed out is this many seconds old (e.g. expired). */
  staleNext: number;
  /** Token requests wait until the returned function is called (to hold a new leader back). */
  holdTokens(): () => void;
  close(): Promise<void>;
}

async function startApp(options: Partial<SseRouterOptions>, port = 0): Promise<App> {
  const router = createSseRouter({ secret: SECRET, retry: 200, retryJitter: 100, ...options });
  const tokens: string[][] = [];
  let gate: Promise<void> | undefined;
  const app = express();
  app.get("/", (_req, res) => {
    res.type("html").send(PAGE);
  });
  app.get("/client.mjs", (_req, res) => {
    res.type("text/javascript").send(fs.readFileSync(BUNDLE));
  });
  app.get("/token", async (req, res) => {
    const topics = String(req.query["topics"]).split(",");
    tokens.push(topics);
    await gate;
    const age = result.staleNext;
    result.staleNext = 0;
    const token = age > 0 ? brancaEncode(parseSecret(SECRET), encode({ topics }), { timestamp: Math.floor(Date.now() / 1000) - age }) : subscribeToken(SECRET, topics);
    res.type("text").send(token);
  });
  // A hand-written stream for the client's parser: CRLF and bare CR line
  // ends, a CRLF split across writes, multi-line data, a comment, an event
  // without id, a field without colon, and "id" with a NUL (ignored).
  app.get("/raw/events", (_req, res) => {
    res.writeHead(200, { "Content-Type": "text/event-stream" });
    res.write(":hi\r\nretry:50\r\n\r\nevent:n\r\ndata:1\r\nid:r1\r\n\r");
    setTimeout(() => {
      res.write("\nevent:n\rdata: 2\rid:r2\r\revent:m\ndata:[1,\ndata:2]\n\n");
      res.write("event:n\ndata:3\nid:r\u00003\n\ndata\n\nevent:n\ndata:4\nid:r4\n\n");
    }, 20);
  });
  app.use("/sse-server", router);
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  const bound = (server.address() as AddressInfo).port;
  const result: App = {
    staleNext: 0,
    router,
    server,
    port: bound,
    origin: `http://127.0.0.1:${bound}`,
    tokens,
    holdTokens() {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return () => {
        gate = undefined;
        release();
      };
    },
    async close() {
      await router.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return result;
}

let browser: Chromium;
const apps: App[] = [];

beforeAll(async () => {
  // The page loads the built bundle; build it when this checkout has none.
  if (!fs.existsSync(BUNDLE)) execFileSync("npx", ["tsup"], { cwd: ROOT });
  browser = await launchChromium();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  for (const app of apps) await app.close().catch(() => undefined);
});

async function open(app: App, query: string): Promise<Page> {
  const page = await browser.context.newPage();
  page.on("pageerror", (err) => {
    throw err;
  });
  await page.goto(`${app.origin}/?${query}`);
  await page.waitForFunction(() => (window as unknown as { client?: unknown }).client !== undefined);
  return page;
}

const seq = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

async function publishSeq(app: App, topic: string, from: number, to: number): Promise<void> {
  for (const n of seq(from, to)) await app.router.publish([{ topic, event: "n", data: String(n) }]);
}

async function waitGot(page: Page, n: number, timeout = 20_000): Promise<void> {
  await page.waitForFunction((want) => window.got.length >= want, n, { timeout });
}

test("8 tabs share one stream; every tab gets every event; the leader closes mid-sequence: the rest still get it all exactly once, in order", async () => {
  const app = await startApp({});
  apps.push(app);
  const pages: Page[] = [];
  for (let i = 0; i < 8; i++) pages.push(await open(app, i % 2 === 0 ? "topics=a" : "topics=a,b"));
  for (const p of pages) await p.waitForFunction(() => window.client.state === "open");
  await eventually(() => app.router.stats.subscribers === 1, 10_000, "one stream");
  const leaders = await Promise.all(pages.map((p) => p.evaluate(() => window.client.leader)));
  expect(leaders.filter(Boolean)).toHaveLength(1);
  // The leader asked for the union of the tabs' topics.
  await eventually(() => app.tokens.some((t) => t.includes("a") && t.includes("b")), 10_000, "union token");

  await publishSeq(app, "a", 1, 10);
  for (const p of pages) await waitGot(p, 10);
  const leader = pages[leaders.indexOf(true)]!;
  // Events 11..15 reach the leader; it closes while the group may not have seen them all.
  await publishSeq(app, "a", 11, 15);
  await waitGot(leader, 15);
  // The next leader is held at its token request while 16..20 are published,
  // so it must fetch them from history (resuming from the group's last id).
  const release = app.holdTokens();
  const asked = app.tokens.length;
  await leader.close();
  const rest = pages.filter((p) => p !== leader);
  await eventually(() => app.tokens.length > asked, 10_000, "the new leader's token request");
  // The closed tab's socket may reach the server after the new leader asked for its token:
  // wait for it, so 16..20 below are published with no stream open and must come from history.
  await eventually(() => app.router.stats.subscribers === 0, 10_000, "the old leader's stream to close");
  await publishSeq(app, "a", 16, 20);
  release();
  await publishSeq(app, "a", 21, 30);
  for (const p of rest) await waitGot(p, 30);
  for (const p of rest) expect(await p.evaluate(() => window.got)).toEqual(seq(1, 30));
  const nowLeading = await Promise.all(rest.map((p) => p.evaluate(() => window.client.leader)));
  expect(nowLeading.filter(Boolean)).toHaveLength(1);
  await eventually(() => app.router.stats.subscribers === 1, 10_000, "one stream after the handover");
  for (const p of rest) await p.close();
}, 90_000);

test("token TTL of a few seconds: a sequence every 100 ms across at least 3 expiries arrives complete, in order, once", async () => {
  const app = await startApp({ tokenTtl: 2, expiryNotice: 1 });
  apps.push(app);
  const page = await open(app, "topics=ttl");
  await page.waitForFunction(() => window.client.state === "open");
  let n = 0;
  // At least 3 rotations (4 tokens) and at least 60 events.
  while (app.tokens.length < 4 || n < 60) {
    await app.router.publish([{ topic: "ttl", event: "n", data: String(++n) }]);
    await new Promise((r) => setTimeout(r, 100));
  }
  await waitGot(page, n);
  expect(await page.evaluate(() => window.got)).toEqual(seq(1, n));
  expect(await page.evaluate(() => window.resets)).toEqual([]);
  // Rotations are quiet: the page never saw the connection as lost.
  expect(await page.evaluate(() => window.states)).toEqual(["open"]);
  await page.close();
}, 90_000);

test("server restart with the in-memory broker: the reset callback fires, then events flow again", async () => {
  let app = await startApp({});
  const page = await open(app, "topics=r");
  await page.waitForFunction(() => window.client.state === "open");
  await publishSeq(app, "r", 1, 3);
  await waitGot(page, 3);
  const port = app.port;
  await app.close();
  await page.waitForFunction(() => window.client.state === "reconnecting");
  app = await startApp({}, port);
  apps.push(app);
  await page.waitForFunction(() => window.resets.length === 1, null, { timeout: 20_000 });
  expect(await page.evaluate(() => window.resets)).toEqual(["unknown_id"]);
  await page.waitForFunction(() => window.client.state === "open");
  await publishSeq(app, "r", 4, 5);
  await waitGot(page, 5);
  expect(await page.evaluate(() => window.got)).toEqual(seq(1, 5));
  expect(await page.evaluate(() => window.states)).toEqual(["open", "reconnecting", "open"]);
  await page.close();
}, 60_000);

test("server restart with Redis: lossless, no reset (events published meanwhile by another instance arrive)", async () => {
  const redis = await RedisServer.start();
  const brokers: RedisBroker[] = [];
  const broker = () => {
    const b = createRedisBroker({ url: redis.url, key: "client-restart", log: null });
    brokers.push(b);
    return b;
  };
  // Another instance on the same Redis, publishing while the app is down.
  const other = createSseRouter({ secret: SECRET, broker: broker() });
  try {
    let app = await startApp({ broker: broker() });
    const page = await open(app, "topics=rr");
    await page.waitForFunction(() => window.client.state === "open");
    await publishSeq(app, "rr", 1, 3);
    await waitGot(page, 3);
    const port = app.port;
    await app.close();
    await page.waitForFunction(() => window.client.state === "reconnecting");
    for (const n of seq(4, 6)) await other.publish([{ topic: "rr", event: "n", data: String(n) }]);
    app = await startApp({ broker: broker() }, port);
    apps.push(app);
    await page.waitForFunction(() => window.client.state === "open", null, { timeout: 20_000 });
    await publishSeq(app, "rr", 7, 8);
    await waitGot(page, 8);
    expect(await page.evaluate(() => window.got)).toEqual(seq(1, 8));
    expect(await page.evaluate(() => window.resets)).toEqual([]);
    await page.close();
  } finally {
    await other.close();
    for (const b of brokers) await b.close();
    await redis.close();
  }
}, 60_000);

test("a 401 (expired token from the provider): the client asks for a fresh token at once and connects", async () => {
  const app = await startApp({ tokenTtl: 60 });
  apps.push(app);
  app.staleNext = 3600;
  const page = await open(app, "topics=e401");
  await page.waitForFunction(() => window.client.state === "open");
  expect(app.tokens).toEqual([["e401"], ["e401"]]);
  await publishSeq(app, "e401", 1, 2);
  await waitGot(page, 2);
  expect(await page.evaluate(() => window.got)).toEqual([1, 2]);
  await page.close();
});

test("the parser: CRLF, CR, a line end split across chunks, multi-line data, comments, events without id", async () => {
  const app = await startApp({});
  apps.push(app);
  const page = await open(app, "topics=x&share=0&url=/raw/events");
  await waitGot(page, 6);
  expect(await page.evaluate(() => window.got)).toEqual([1, 2, [1, 2], 3, "message:", 4]);
  expect(await page.evaluate(() => window.client.lastEventId)).toBe("r4");
  await page.close();
});

test("share: false: one stream per tab", async () => {
  const app = await startApp({});
  apps.push(app);
  const pages = [await open(app, "topics=s&share=0"), await open(app, "topics=s&share=0")];
  for (const p of pages) await p.waitForFunction(() => window.client.state === "open");
  await eventually(() => app.router.stats.subscribers === 2, 10_000, "two streams");
  await publishSeq(app, "s", 1, 3);
  for (const p of pages) await waitGot(p, 3);
  for (const p of pages) expect(await p.evaluate(() => window.got)).toEqual([1, 2, 3]);
  for (const p of pages) await p.close();
});
