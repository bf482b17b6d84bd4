/**
 * The example page in a real browser: headless Chromium (Debian's) driven by
 * playwright-core, the page on `sse-hub/client`. What a visitor sees:
 * - opened as `/?topics=weather,news` through nginx it connects at once and
 *   lists each event with its topic (events sent from its form, from the
 *   backend and by a raw /submit); it fits a 390 px wide phone screen;
 * - two tabs share one stream (the server's /sse-server/health says 1), one
 *   leads, both show every event; when the leader closes mid-sequence the
 *   other takes over and still shows every event once, in order;
 * - with a token lifetime of a few seconds the page shows token rotations and
 *   a numbered sequence arrives complete, in order, once;
 * - after a restart of the app (in-memory broker: the history is gone) the
 *   page shows the reset and receives again; with REDIS_URL it shows no reset
 *   and gets what was published while the app was down.
 * Every wait is for a marker (an event, a state) the page shows.
 */
import fs from "node:fs";
import path from "node:path";
import type { Page } from "playwright-core";
import { submitToken } from "../src/tokens";
import { launchChromium, type Chromium } from "./helpers/chromium";
import { RedisServer } from "./helpers/redis";
import { ROOT, TEST_SECRET, startExampleApp, startNginx, stopAll, type ExampleApp } from "./helpers/nginx";

// Callbacks passed to page.evaluate/waitForFunction run in the page. The
// project is type-checked without the DOM lib, so describe what they touch.
interface PageDebug {
  events: number;
  resets: number;
  rotations: number;
  leader: boolean;
  states: string[];
  log: string[];
}
declare const window: { sseExample?: PageDebug; innerWidth: number };
declare const document: {
  getElementById(id: string): { textContent: string | null } | null;
  documentElement: { scrollWidth: number };
  querySelectorAll(selector: string): ArrayLike<{ getBoundingClientRect(): { right: number } }>;
};

const ARTIFACTS = path.join(ROOT, "test-artifacts");

let browser: Chromium;
let phone: Chromium;

beforeAll(async () => {
  browser = await launchChromium();
  phone = await launchChromium({ viewport: { width: 390, height: 844 } });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await phone?.close();
  await stopAll();
}, 30_000);

interface Row {
  topic: string;
  data: string;
  id: string;
}

/** Event rows (not the page's own notices), oldest first; the page lists newest first. */
async function eventRows(page: Page): Promise<Row[]> {
  const rows = await page.$$eval("#events li.event", (lis) =>
    lis.map((li) => ({
      topic: li.querySelector(".topic")?.textContent ?? "",
      data: li.querySelector(".data")?.textContent ?? "",
      id: (li.querySelector(".id")?.textContent ?? "").replace(/^id /, ""),
    })),
  );
  return rows.reverse();
}

const debugOf = (page: Page) => page.evaluate(() => window.sseExample!);

/** Runs `body` with `page`, adding what the page went through to a failure. */
async function withPage(page: Page, body: (page: Page) => Promise<void>): Promise<void> {
  const errors: string[] = [];
  page.on("pageerror", (err) => errors.push(err.message));
  try {
    await body(page);
    expect(errors).toEqual([]);
  } catch (err) {
    const log = await page.evaluate(() => window.sseExample?.log).catch(() => undefined);
    (err as Error).message += `\n\nPage log:\n${(log ?? ["(none)"]).join("\n")}\nPage errors: ${errors.join("; ") || "none"}`;
    throw err;
  }
}

async function openPage(context: Chromium, url: string): Promise<Page> {
  const page = await context.context.newPage();
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  return page;
}

async function waitForEvents(page: Page, n: number, timeout = 15_000): Promise<void> {
  await page.waitForFunction((want) => (window.sseExample?.events ?? 0) >= want, n, { timeout });
}

async function publish(base: string, body: { topic: string; data: string; via: "http" | "router"; event?: string }): Promise<void> {
  const res = await fetch(new URL("/api/publish", base), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
}

async function sendFromPage(page: Page, ev: { topic: string; data: string; via: "http" | "router" }): Promise<void> {
  await page.selectOption("#pub-topic", ev.topic);
  await page.fill("#pub-data", ev.data);
  await page.check(`input[name="via"][value="${ev.via}"]`);
  const before = await page.textContent("#publish-result");
  await page.click("#send");
  await page.waitForFunction(
    (prev) => {
      const text = document.getElementById("publish-result")!.textContent;
      return text !== prev && text !== "sending…";
    },
    before,
    { timeout: 10_000 },
  );
  expect(await page.$eval("#publish-result", (el) => ({ cls: el.className, text: el.textContent }))).toEqual({
    cls: "ok",
    text: expect.stringContaining(`sent to ${ev.topic} via ${ev.via}`),
  });
}

test("opened as /?topics=weather,news through nginx, the page connects at once and shows each event's topic; it fits 390 px", async () => {
  const app = await startExampleApp();
  const nginx = await startNginx({ appPort: app.port });
  for (const [context, file] of [
    [browser, "example-page.png"],
    [phone, "example-page-390.png"],
  ] as const) {
    const page = await openPage(context, new URL("/?topics=weather,news", nginx.url).toString());
    await withPage(page, async () => {
      expect(await page.title()).toBe("sse-server example");
      await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
      expect(await page.textContent("#state-detail")).toBe("Subscribed to weather, news");
      expect(await page.$$eval("#topics input", (inputs) => inputs.map((i) => [(i as unknown as { value: string }).value, (i as unknown as { checked: boolean }).checked]))).toEqual([
        ["weather", true],
        ["news", true],
        ["sports", false],
      ]);
      expect(await page.textContent("#leader")).toBe("leads: holds the connection");

      // From the page's form (both publish modes), the backend (the app's
      // route; sports is not subscribed) and a raw /submit, as another backend would.
      await sendFromPage(page, { topic: "weather", data: "rain at 5", via: "http" });
      await sendFromPage(page, { topic: "news", data: "line one\nline two", via: "router" });
      await publish(nginx.url, { topic: "sports", data: "not subscribed", via: "router" });
      const submitted = await fetch(new URL("/sse-server/submit", nginx.url), {
        method: "POST",
        body: submitToken(TEST_SECRET, [{ topic: "news", event: "news-update", data: "raw submit, a long line that a phone has to wrap: ".repeat(3) }]),
      });
      expect(submitted.status).toBe(200);
      await waitForEvents(page, 3);
      const rows = await eventRows(page);
      expect(rows.map(({ topic, data }) => ({ topic, data }))).toEqual([
        { topic: "weather", data: "rain at 5" },
        { topic: "news", data: "line one\nline two" },
        { topic: "news", data: "raw submit, a long line that a phone has to wrap: ".repeat(3) },
      ]);
      expect(new Set(rows.map((r) => r.id)).size).toBe(3);
      expect(await page.textContent("#last-id")).toBe(rows[2]!.id);
      expect(await page.textContent("#event-count")).toBe("3");
      // The health line counts this page's stream (refreshed every 3 s).
      await page.waitForFunction(() => document.getElementById("streams")!.textContent === "1", null, { timeout: 10_000 });

      // Nothing sticks out sideways (at 390 px: no horizontal scrolling, every element inside the viewport).
      const overflow = await page.evaluate(() => {
        let right = 0;
        const all = document.querySelectorAll("body *");
        for (let i = 0; i < all.length; i++) right = Math.max(right, all[i]!.getBoundingClientRect().right);
        return { scrollWidth: document.documentElement.scrollWidth, right: Math.ceil(right), width: window.innerWidth };
      });
      expect(overflow.scrollWidth).toBeLessThanOrEqual(overflow.width);
      expect(overflow.right).toBeLessThanOrEqual(overflow.width);

      // A picture of the page, for people (and for checking it looks right).
      fs.mkdirSync(ARTIFACTS, { recursive: true });
      await page.screenshot({ path: path.join(ARTIFACTS, file), fullPage: true });
      expect(fs.statSync(path.join(ARTIFACTS, file)).size).toBeGreaterThan(1024);
    });
    await page.close();
  }
}, 120_000);

test("two tabs share one stream: /sse-server/health says 1, one tab leads, both show every event; the leader closes mid-sequence and the other takes over without a gap", async () => {
  const app = await startExampleApp();
  const tabs = [await openPage(browser, new URL("/?topics=weather", app.url).toString())];
  await tabs[0]!.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
  tabs.push(await openPage(browser, new URL("/?topics=weather", app.url).toString()));
  await tabs[1]!.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
  await withPage(tabs[1]!, async () => {
    expect((await Promise.all(tabs.map(debugOf))).map((d) => d.leader)).toEqual([true, false]);
    expect(await tabs[1]!.textContent("#leader")).toBe("follows: another tab leads");
    const health = await fetch(new URL("/sse-server/health", app.url));
    expect(await health.json()).toEqual(expect.objectContaining({ status: "ok", subscribers: 1 }));

    const sent = Array.from({ length: 10 }, (_, n) => `event ${n + 1}`);
    // Both publish modes, alternating.
    for (const [n, data] of sent.entries()) await publish(app.url, { topic: "weather", data, via: n % 2 ? "http" : "router" });
    for (const tab of tabs) {
      await waitForEvents(tab, sent.length);
      expect((await eventRows(tab)).map((r) => `${r.topic}: ${r.data}`)).toEqual(sent.map((d) => `weather: ${d}`));
    }
    // Still one stream after all that.
    expect(await (await fetch(new URL("/sse-server/health", app.url))).json()).toEqual(expect.objectContaining({ subscribers: 1 }));

    // The leading tab goes; the sequence goes on meanwhile, every 50 ms.
    const closing = tabs[0]!.close();
    for (let n = 11; n <= 30; n++) {
      await publish(app.url, { topic: "weather", data: `event ${n}`, via: "router" });
      sent.push(`event ${n}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    await closing;
    await waitForEvents(tabs[1]!, sent.length);
    expect((await eventRows(tabs[1]!)).map((r) => r.data)).toEqual(sent);
    await tabs[1]!.waitForFunction(() => window.sseExample!.leader, null, { timeout: 10_000 });
    expect(await tabs[1]!.textContent("#leader")).toBe("leads: holds the connection");
  });
  await tabs[1]!.close();
  await app.stop();
}, 90_000);

test("with SSE_TOKEN_TTL=3 the page shows token rotations and a numbered sequence arrives complete, in order, once", async () => {
  // The app sends the expiry notice a third of the lifetime before expiry (1 s).
  const app = await startExampleApp({ env: { SSE_TOKEN_TTL: "3" } });
  const page = await openPage(browser, new URL("/?topics=news", app.url).toString());
  await withPage(page, async () => {
    await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
    // Every 100 ms until the page has seen at least 3 rotations (about 2 s each).
    const sent: string[] = [];
    while ((await debugOf(page)).rotations < 3) {
      const data = `n${sent.length + 1}`;
      await publish(app.url, { topic: "news", data, via: "router" });
      sent.push(data);
      await new Promise((r) => setTimeout(r, 100));
      if (sent.length > 600) throw new Error("no 3 rotations within 600 events");
    }
    // A final marker: everything published before it has arrived when it has.
    await publish(app.url, { topic: "news", data: "end", via: "router" });
    sent.push("end");
    await page.waitForFunction((n) => window.sseExample!.events >= n, sent.length, { timeout: 15_000 });
    const rows = await eventRows(page);
    expect(rows.map((r) => r.data)).toEqual(sent);
    expect(Number(await page.textContent("#rotations"))).toBeGreaterThanOrEqual(3);
  });
  await page.close();
  await app.stop();
}, 120_000);

test("after an app restart (in-memory broker) the page shows the reset, then receives again", async () => {
  let app: ExampleApp = await startExampleApp();
  const page = await openPage(browser, new URL("/?topics=sports", app.url).toString());
  await withPage(page, async () => {
    await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
    await publish(app.url, { topic: "sports", data: "before", via: "router" });
    await waitForEvents(page, 1);
    expect(await page.textContent("#resets")).toBe("0");

    expect(await app.stop("SIGTERM")).toEqual({ code: 0, signal: null });
    await page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
    app = await startExampleApp({ port: app.port });
    // The new process has no history for the page's last id: it says so.
    await page.waitForFunction(() => document.getElementById("resets")!.textContent === "1", null, { timeout: 30_000 });
    expect(await page.$$eval("#events li.notice .data", (els) => els.map((e) => e.textContent))).toEqual([
      expect.stringMatching(/^sse:reset \(\w+\): events may have been missed/),
    ]);
    await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
    await publish(app.url, { topic: "sports", data: "after", via: "http" });
    await waitForEvents(page, 2);
    expect((await eventRows(page)).map((r) => r.data)).toEqual(["before", "after"]);
  });
  await page.close();
  await app.stop();
}, 90_000);

test("after an app restart with REDIS_URL the page shows no reset and gets what was published meanwhile", async () => {
  const redis = await RedisServer.start();
  const env = { REDIS_URL: redis.url };
  let app: ExampleApp = await startExampleApp({ env });
  expect(app.process.output()).toContain(", Redis broker)");
  const page = await openPage(browser, new URL("/?topics=sports", app.url).toString());
  try {
    await withPage(page, async () => {
      await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
      await publish(app.url, { topic: "sports", data: "before", via: "router" });
      await waitForEvents(page, 1);
      expect(await app.stop("SIGTERM")).toEqual({ code: 0, signal: null });
      await page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
      // Another backend publishes while the app is down (straight into Redis, through a second app instance).
      const other = await startExampleApp({ env });
      await publish(other.url, { topic: "sports", data: "while down", via: "router" });
      await other.stop();
      app = await startExampleApp({ port: app.port, env });
      await publish(app.url, { topic: "sports", data: "after", via: "http" });
      await waitForEvents(page, 3, 30_000);
      expect((await eventRows(page)).map((r) => r.data)).toEqual(["before", "while down", "after"]);
      expect(await page.textContent("#resets")).toBe("0");
    });
  } finally {
    await page.close();
    await app.stop();
    await redis.close();
  }
}, 90_000);
