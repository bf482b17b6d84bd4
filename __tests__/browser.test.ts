/**
 * The example page in a real browser: headless Chromium (Debian's) driven by
 * playwright-core, through real nginx in front of the example app. A person's
 * path: pick two topics, connect, send events from the page's form and see
 * them (and the backend's) arrive in order; then the app restarts and the
 * page shows "reconnecting", comes back by itself and receives events again.
 */
import fs from "node:fs";
import path from "node:path";
import type { Page } from "playwright-core";
import { submitToken } from "../src/tokens";
import { launchChromium, type Chromium } from "./helpers/chromium";
import { ROOT, TEST_SECRET, startExampleApp, startNginx, stopAll, type ExampleApp, type Nginx } from "./helpers/nginx";

// Callbacks passed to page.evaluate/waitForFunction run in the page. The
// project is type-checked without the DOM lib, so describe what they touch.
interface PageDebug {
  events: number;
  states: string[];
  log: string[];
}
declare const window: { sseExample?: PageDebug };
declare const document: { getElementById(id: string): { textContent: string | null } | null };

const SCREENSHOT = path.join(ROOT, "test-artifacts", "example-page.png");

let app: ExampleApp;
let nginx: Nginx;
let browser: Chromium | undefined;

beforeAll(async () => {
  app = await startExampleApp();
  nginx = await startNginx({ appPort: app.port });
  browser = await launchChromium();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await stopAll();
}, 30_000);

interface Row {
  name: string;
  data: string;
  id: string;
}

/** Event rows (not the page's own notices), oldest first; the page lists newest first. */
async function eventRows(page: Page): Promise<Row[]> {
  const rows = await page.$$eval("#events tr.event", (trs) =>
    trs.map((tr) => ({
      name: tr.querySelector("td.name")?.textContent ?? "",
      data: tr.querySelector("td.data")?.textContent ?? "",
      id: tr.querySelector("td.id")?.textContent ?? "",
    })),
  );
  return rows.reverse();
}

async function waitForEventCount(page: Page, n: number, timeout = 10_000): Promise<void> {
  await page.waitForFunction((want) => (window.sseExample?.events ?? 0) >= want, n, { timeout });
}

async function sendFromPage(page: Page, ev: { topic: string; event: string; data: string; via: "http" | "router" }): Promise<void> {
  await page.selectOption("#pub-topic", ev.topic);
  await page.fill("#pub-event", ev.event);
  await page.fill("#pub-data", ev.data);
  await page.check(`input[name="via"][value="${ev.via}"]`);
  const before = await page.textContent("#publish-result");
  await page.click("#send");
  await page.waitForFunction(
    (prev) => {
      const el = document.getElementById("publish-result")!;
      return el.textContent !== prev && el.textContent !== "sending…";
    },
    before,
    { timeout: 10_000 },
  );
  const result = await page.$eval("#publish-result", (el) => ({ cls: el.className, text: el.textContent }));
  expect(result).toEqual({ cls: "ok", text: expect.stringContaining(`sent "${ev.event}" to ${ev.topic} via ${ev.via}`) });
}

async function sendFromBackend(body: { topic: string; event: string; data: string; via: "http" | "router" }): Promise<void> {
  const res = await fetch(new URL("/api/publish", nginx.url), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  expect(res.status).toBe(200);
}

test("a person subscribes, sends events and sees them live; the page survives an app restart", async () => {
  const page = await browser!.context.newPage();
  const pageErrors: string[] = [];
  page.on("pageerror", (err) => pageErrors.push(err.message));
  try {
    await personJourney(page, pageErrors);
  } catch (err) {
    // Say what the page went through, not only which wait timed out.
    const log = await page.evaluate(() => window.sseExample?.log).catch(() => undefined);
    (err as Error).message += `\n\nPage connection log:\n${(log ?? ["(none)"]).join("\n")}\nPage errors: ${pageErrors.join("; ") || "none"}`;
    throw err;
  } finally {
    await page.close();
  }
}, 120_000);

async function personJourney(page: Page, pageErrors: string[]): Promise<void> {
  await page.goto(nginx.url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 10_000 });
  expect(await page.title()).toBe("sse-server example");
  expect(await page.$$eval("#topics input", (inputs) => inputs.map((i) => (i as unknown as { value: string }).value))).toEqual(["weather", "news", "sports"]);
  expect(await page.getAttribute("#state", "data-state")).toBe("idle");

  // Subscribe to two of the three topics.
  await page.check('#topics input[value="weather"]');
  await page.check('#topics input[value="news"]');
  await page.uncheck('#topics input[value="sports"]');
  await page.click("#connect");
  await page.waitForSelector('#state[data-state="open"]', { timeout: 10_000 });
  expect(await page.textContent("#state")).toBe("open");
  expect(await page.textContent("#state-detail")).toBe(
    "Subscribed to weather, news: GET subscribe?topics=weather%2Cnews → 307 → /sse-server/events?token=…",
  );

  // From the page's form (both publish modes; "news-flash" is a name the page
  // learns from the form), and from the backend (app route, and a raw /submit).
  await sendFromPage(page, { topic: "weather", event: "weather-update", data: "rain at 5", via: "http" });
  await sendFromPage(page, { topic: "news", event: "news-flash", data: "line one\nline two", via: "router" });
  await sendFromBackend({ topic: "weather", event: "weather-update", data: "from the backend", via: "http" });
  await sendFromBackend({ topic: "sports", event: "sports-update", data: "not subscribed", via: "router" });
  const submitted = await fetch(new URL("/sse-server/submit", nginx.url), {
    method: "POST",
    body: submitToken(TEST_SECRET, [{ topic: "news", event: "news-update", data: "raw submit" }]),
  });
  expect(submitted.status).toBe(200);

  await waitForEventCount(page, 4);
  const rows = await eventRows(page);
  expect(rows.map(({ name, data }) => ({ name, data }))).toEqual([
    { name: "weather-update", data: "rain at 5" },
    { name: "news-flash", data: "line one\nline two" },
    { name: "weather-update", data: "from the backend" },
    { name: "news-update", data: "raw submit" },
  ]);
  expect(new Set(rows.map((r) => r.id)).size).toBe(4);
  expect(rows.every((r) => r.id !== "")).toBe(true);
  expect(await page.textContent("#event-count")).toBe("4");

  // The app goes away (graceful SIGTERM: it ends every stream) ...
  const exit = await app.stop("SIGTERM");
  expect(exit).toEqual({ code: 0, signal: null });
  await page.waitForSelector('#state[data-state="reconnecting"]', { timeout: 10_000 });
  expect(await page.textContent("#state")).toBe("reconnecting");
  // The browser's own retry now reaches nginx, which answers 502 with the app
  // down; EventSource gives up on an HTTP error, so the page retries by itself.
  await page.waitForFunction(() => /answered 502; retrying in/.test(document.getElementById("state-detail")!.textContent ?? ""), null, {
    timeout: 15_000,
  });
  expect(await page.getAttribute("#state", "data-state")).toBe("reconnecting");

  // ... and comes back on the same port, behind the same nginx.
  app = await startExampleApp({ port: app.port });
  await page.waitForSelector('#state[data-state="open"]', { timeout: 30_000 });
  const states = await page.evaluate(() => window.sseExample?.states ?? []);
  expect(states.slice(-2)).toEqual(["reconnecting", "open"]);
  expect(await page.$$eval("#events tr.notice td.data", (tds) => tds.map((td) => td.textContent))).toContainEqual(
    expect.stringContaining("reconnected"),
  );

  await sendFromBackend({ topic: "news", event: "news-update", data: "after the restart (backend)", via: "http" });
  await sendFromPage(page, { topic: "weather", event: "weather-update", data: "after the restart (page)", via: "router" });
  await waitForEventCount(page, 6);
  const after = (await eventRows(page)).slice(4).map(({ name, data }) => ({ name, data }));
  expect(after).toEqual([
    { name: "news-update", data: "after the restart (backend)" },
    { name: "weather-update", data: "after the restart (page)" },
  ]);

  // A picture of the page, for people (and for checking it looks right).
  fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(1024);

  expect(pageErrors).toEqual([]);
}
