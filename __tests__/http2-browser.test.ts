/**
 * Why HTTP/2 matters for SSE (issue 12): over HTTP/1.1 a browser opens at
 * most 6 connections per origin, so a 7th tab's EventSource hangs until
 * another one closes; over HTTP/2 every tab's stream shares one connection.
 * Real Chromium, the standalone server (dist/cli.js) with a self-signed
 * certificate made here (Chromium runs with --ignore-certificate-errors).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import http from "node:http";
import https from "node:https";
import type { Page } from "playwright-core";
import { submitToken, subscribeToken } from "../src/tokens";
import { launchChromium, type Chromium } from "./helpers/chromium";
import { SECRET } from "./helpers/sse";
import { makeCertificate, requireCli, startCli, type StartedCli } from "./helpers/tls";

jest.setTimeout(90_000);

let dir: string;
let browser: Chromium;
const servers: StartedCli[] = [];

beforeAll(async () => {
  requireCli();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-h2-browser-"));
  makeCertificate(dir);
  browser = await launchChromium({ args: ["--ignore-certificate-errors"] });
});
afterAll(async () => {
  await browser?.close();
  for (const s of servers) s.child.kill("SIGKILL");
  fs.rmSync(dir, { recursive: true, force: true });
});

async function start(tls: boolean): Promise<StartedCli> {
  const env: Record<string, string> = { SSE_RETRY: "0", SSE_HEARTBEAT_INTERVAL: "0" };
  if (tls) Object.assign(env, { SSE_TLS_CERT: path.join(dir, "cert.pem"), SSE_TLS_KEY: path.join(dir, "key.pem") });
  const server = await startCli(env);
  servers.push(server);
  return server;
}

/** Publishes with node:http(s), trusting the test certificate for this request only. */
async function publish(url: string, events: Array<{ topic: string; event: string; data: string }>): Promise<void> {
  const tls = url.startsWith("https:");
  const options = { method: "POST", ...(tls ? { ca: fs.readFileSync(path.join(dir, "cert.pem")) } : {}) };
  await new Promise<void>((resolve, reject) => {
    const req = (tls ? https : http).request(`${url}/submit`, options, (res) => {
      res.resume();
      res.on("end", () => (res.statusCode === 200 ? resolve() : reject(new Error(`submit ${res.statusCode}`))));
    });
    req.on("error", reject);
    req.end(submitToken(SECRET, events));
  });
}

// Page-side code as strings: the test project has no DOM types.
const OPENED = "window.opened === true";
const PROTOCOL = "performance.getEntriesByType('navigation')[0].nextHopProtocol";
const gotAtLeast = (n: number) => `window.got.length >= ${n}`;

/**
 * Tabs on the server's origin (its /ping page), each then with one
 * EventSource that records event `n`. All pages load first: over HTTP/1.1
 * a 7th page load would itself wait for a free connection.
 */
async function openTabs(url: string, count: number): Promise<Page[]> {
  const pages: Page[] = [];
  for (let i = 0; i < count; i++) {
    const page = await browser.context.newPage();
    await page.goto(`${url}/ping`);
    pages.push(page);
  }
  for (const page of pages) await subscribe(page);
  return pages;
}

async function subscribe(page: Page): Promise<void> {
  await page.evaluate(`
    window.got = [];
    window.opened = false;
    window.es = new EventSource("/events?token=${subscribeToken(SECRET, ["seq"])}");
    window.es.onopen = () => { window.opened = true; };
    window.es.addEventListener("n", (e) => window.got.push(Number(e.data)));
  `);
}

const got = (page: Page) => page.evaluate("window.got") as Promise<number[]>;
const wait = (page: Page, condition: string) => page.waitForFunction(condition, undefined, { timeout: 20_000 });

test("10 tabs of one origin over HTTP/2 all receive a numbered sequence (one h2 connection, no 6-per-origin limit)", async () => {
  const server = await start(true);
  const pages = await openTabs(server.url, 10);
  for (const page of pages) await wait(page, OPENED);
  for (const page of pages) {
    // The page and its stream came over HTTP/2.
    expect(await page.evaluate(PROTOCOL)).toBe("h2");
  }
  for (let n = 1; n <= 20; n++) await publish(server.url, [{ topic: "seq", event: "n", data: String(n) }]);
  for (const page of pages) {
    await wait(page, gotAtLeast(20));
    expect(await got(page)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  }
  await Promise.all(pages.map((p) => p.close()));
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
});

test("the contrast over HTTP/1.1: the 7th tab's EventSource waits until another tab's stream closes", async () => {
  const server = await start(false);
  const pages = await openTabs(server.url, 7);
  expect(await pages[0]!.evaluate(PROTOCOL)).toBe("http/1.1");
  // Six streams open; an event delivered to all six is the marker that the
  // seventh had every chance to connect and did not.
  for (const page of pages.slice(0, 6)) await wait(page, OPENED);
  await publish(server.url, [{ topic: "seq", event: "n", data: "1" }]);
  for (const page of pages.slice(0, 6)) await wait(page, gotAtLeast(1));
  expect(await pages[6]!.evaluate(OPENED)).toBe(false);
  expect(await got(pages[6]!)).toEqual([]);
  // One tab lets go of its connection: the seventh gets it.
  await pages[0]!.evaluate("window.es.close()");
  await wait(pages[6]!, OPENED);
  await Promise.all(pages.map((p) => p.close()));
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
});
