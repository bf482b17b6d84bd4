/**
 * What a plain browser `EventSource` does when its token expires (issue 13),
 * observed in Debian's Chromium and pinned down here so a browser update that
 * changes it is noticed. Documented in README "In the browser".
 *
 *  A. Token in the EventSource URL: at expiry the server ends the stream;
 *     the browser reconnects to the same URL (same, now expired token, with
 *     Last-Event-ID), gets 401 and gives up for good (readyState CLOSED, no
 *     further requests).
 *  B. EventSource on the app's subscribe endpoint, which answers 307 to the
 *     hub URL with a fresh token: the browser reconnects to the REDIRECTED
 *     URL (the old token), not to the subscribe endpoint: 401, CLOSED too.
 *  So with a plain EventSource, expiry always ends in CLOSED; the app must
 *  open a new EventSource (fresh token, `lastEventId` query) itself.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { createSseRouter, type SseRouter } from "../src/adapters/express";
import { subscribeToken } from "../src/tokens";
import { launchChromium, type Chromium } from "./helpers/chromium";
import { SECRET } from "./helpers/sse";

declare const window: { log: string[] } & Record<string, unknown>;
declare const EventSource: new (url: string) => {
  readyState: number;
  onopen: (() => void) | null;
  onerror: (() => void) | null;
  addEventListener(name: string, fn: (e: { data: string; lastEventId: string }) => void): void;
};

let router: SseRouter;
let server: http.Server;
let origin: string;
let browser: Chromium;
/** Requests to the app's own routes: path, status, Last-Event-ID header, token (test-only: never log tokens). */
const requests: Array<{ path: string; status: number; lastEventId: string | undefined; token?: string }> = [];

beforeAll(async () => {
  // TTL 2 s: a token is accepted for 2-3 s after it is minted.
  router = createSseRouter({ secret: SECRET, tokenTtl: 2, expiryNotice: 0, retry: 100, retryJitter: 0, heartbeatInterval: 0 });
  const app = express();
  app.use((req, res, next) => {
    const path = req.path;
    const token = typeof req.query["token"] === "string" ? req.query["token"] : undefined;
    if (path !== "/" && path !== "/favicon.ico") {
      // Recorded when the response ends (a stream: when the server ends it).
      res.on("finish", () => requests.push({ path, status: res.statusCode, lastEventId: req.get("last-event-id"), ...(token && { token }) }));
    }
    next();
  });
  app.get("/marker", (_req, res) => {
    res.send("ok");
  });
  app.get("/", (_req, res) => {
    res.type("html").send("<!doctype html><title>t</title>");
  });
  app.get("/subscribe", (req, res) => {
    const topics = String(req.query["topics"] ?? "").split(",");
    res.redirect(307, `/sse-server/events?token=${subscribeToken(SECRET, topics)}`);
  });
  app.use("/sse-server", router);
  server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await router?.close();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => server?.close(() => resolve()));
});

/** Opens an EventSource in a fresh page; the page logs open/error(readyState)/events. */
async function openInPage(url: string) {
  const page = await browser.context.newPage();
  await page.goto(origin + "/");
  await page.evaluate((u) => {
    window.log = [];
    const es = new EventSource(u);
    window["es"] = es;
    es.onopen = () => window.log.push("open");
    es.onerror = () => window.log.push(`error:${es.readyState}`);
    es.addEventListener("n", (e) => window.log.push(`n:${e.data}:${e.lastEventId}`));
  }, url);
  return page;
}

test("A: token in the URL: at expiry the browser reconnects to the same URL, gets 401 and stays CLOSED", async () => {
  requests.length = 0;
  const token = subscribeToken(SECRET, ["a"]);
  const page = await openInPage(`/sse-server/events?token=${token}`);
  try {
    await page.waitForFunction(() => window.log.includes("open"));
    await router.publish([{ topic: "a", event: "n", data: "1" }]);
    await page.waitForFunction(() => window.log.some((l) => l.startsWith("n:1:")));
    // 0 = CONNECTING (the stream ended, it retries), 2 = CLOSED (the 401: for good).
    await page.waitForFunction(() => window.log.includes("error:2"), null, { timeout: 15_000 });
    const log = await page.evaluate(() => window.log);
    const id = log[1]!.split(":")[2]!;
    expect(log).toEqual(["open", `n:1:${id}`, "error:0", "error:2"]);
    expect(await page.evaluate(() => (window["es"] as { readyState: number }).readyState)).toBe(2);
    // The retry went to the same URL, with the last id, and was refused.
    expect(requests).toEqual([
      { path: "/sse-server/events", status: 200, lastEventId: undefined, token },
      { path: "/sse-server/events", status: 401, lastEventId: id, token },
    ]);
    // For good: the server's retry: is 100 ms; well after it, a marker
    // request from the page is the next one the server sees.
    await page.evaluate(() => new Promise((r) => setTimeout(r, 1000)).then(() => fetch("/marker")).then(() => undefined));
    expect(requests.slice(2).map((r) => r.path)).toEqual(["/marker"]);
  } finally {
    await page.close();
  }
}, 30_000);

test("B: EventSource on the app's subscribe endpoint (307 to the hub with a fresh token): it reconnects to the REDIRECTED URL (old token), gets 401 and stays CLOSED", async () => {
  requests.length = 0;
  const page = await openInPage("/subscribe?topics=b");
  try {
    await page.waitForFunction(() => window.log.includes("open"));
    await router.publish([{ topic: "b", event: "n", data: "1" }]);
    await page.waitForFunction(() => window.log.includes("error:2"), null, { timeout: 15_000 });
    const log = await page.evaluate(() => window.log);
    const id = log[1]!.split(":")[2]!;
    expect(log).toEqual(["open", `n:1:${id}`, "error:0", "error:2"]);
    const token = requests[1]?.token;
    expect(requests).toEqual([
      { path: "/subscribe", status: 307, lastEventId: undefined },
      { path: "/sse-server/events", status: 200, lastEventId: undefined, token },
      // Not /subscribe again: the browser retries the URL it ended up at.
      { path: "/sse-server/events", status: 401, lastEventId: id, token },
    ]);
    await page.evaluate(() => new Promise((r) => setTimeout(r, 1000)).then(() => fetch("/marker")).then(() => undefined));
    expect(requests.slice(3).map((r) => r.path)).toEqual(["/marker"]);
  } finally {
    await page.close();
  }
}, 30_000);
