/**
 * Graceful restarts must never strand a browser (issue 11, item 4). A real
 * Chromium EventSource stays on a page while the server behind it is
 * restarted again and again: SIGTERM, then a new process on the same port.
 * A conforming EventSource gives up for good on any answer but a 200 event
 * stream, so every round it must come back by itself (readyState OPEN again,
 * and a marker event published after the restart arrives), reconnecting
 * exactly once: straight to the new process, not first to the old one.
 *
 * Two setups: the standalone server (dist/cli.js), and the example app
 * behind nginx with two app instances restarted one after the other (a
 * rolling restart), nginx keeping upstream connections alive and publishers
 * publishing through it all along. The first failed in round 1 before the
 * fixes of issue 11; the second guards the proxied path (it did not catch
 * the old behaviour here: nginx's reconnects reach a stopping instance too
 * rarely).
 */
import type { Page } from "playwright-core";
import { submitToken, subscribeToken } from "../src/tokens";
import { launchChromium, type Chromium } from "./helpers/chromium";
import { TEST_SECRET, requireBuiltLibrary, startExampleApp, startNginx, stopAll, type ExampleApp } from "./helpers/nginx";
import { requireCli, startCli, type StartedCli } from "./helpers/tls";

const ROUNDS = 15;
/** Rounds of the rolling restart; each restarts both instances. */
const ROLLING_ROUNDS = 8;

// Callbacks passed to page.evaluate run in the page; the project is
// type-checked without the DOM lib, so describe what they touch.
interface PageState {
  opens: number;
  errors: number;
  markers: string[];
  readyState(): number;
}
declare const window: { sseTest?: PageState };
declare class EventSource {
  constructor(url: string);
  readyState: number;
  onopen: (() => void) | null;
  onerror: (() => void) | null;
  addEventListener(type: string, listener: (e: { data: string }) => void): void;
}

let browser: Chromium;

beforeAll(async () => {
  await requireBuiltLibrary();
  requireCli();
  browser = await launchChromium();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await stopAll();
}, 30_000);

/**
 * Opens a page at `origin` with an EventSource on `url` and records what it
 * goes through. Same origin as the stream, as behind a proxy that serves the
 * app and the hub: Chromium then also opens a spare connection that carries
 * no request until it needs one (e.g. for the EventSource's reconnect).
 */
async function openPage(url: string, origin: string): Promise<Page> {
  const page = await browser.context.newPage();
  await page.goto(origin);
  await page.evaluate((src) => {
    const es = new EventSource(src);
    const state: PageState = { opens: 0, errors: 0, markers: [], readyState: () => es.readyState };
    es.onopen = () => state.opens++;
    es.onerror = () => state.errors++;
    es.addEventListener("marker", (e) => state.markers.push(e.data));
    window.sseTest = state;
  }, url);
  await page.waitForFunction(() => window.sseTest?.readyState() === 1, null, { timeout: 10_000 });
  return page;
}

async function pageState(page: Page): Promise<{ opens: number; errors: number; markers: string[]; readyState: number }> {
  return page.evaluate(() => {
    const s = window.sseTest!;
    return { opens: s.opens, errors: s.errors, markers: [...s.markers], readyState: s.readyState() };
  });
}

/**
 * Waits until the page received `marker`, publishing it with `publish` until
 * it does (the page may still be on its way back). Fails at once if the
 * EventSource gave up (readyState CLOSED).
 */
async function expectBack(page: Page, marker: string, publish: () => Promise<void>, round: number): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const state = await pageState(page);
    if (state.readyState === 2) throw new Error(`round ${round}: the EventSource gave up (readyState CLOSED): ${JSON.stringify(state)}`);
    if (state.markers.includes(marker)) return;
    if (Date.now() > deadline) throw new Error(`round ${round}: the page did not come back within 30 s: ${JSON.stringify(state)}`);
    if (state.readyState === 1) await publish();
    await page.waitForFunction((m) => window.sseTest!.markers.includes(m) || window.sseTest!.readyState() !== 1, marker, { timeout: 1_000 }).catch(() => undefined);
  }
}

interface Standalone extends StartedCli {
  port: number;
}

/** The standalone server on `port` (0: a free one), with /health; see helpers/tls.ts. */
async function startStandalone(port: number): Promise<Standalone> {
  const started = await startCli({ SSE_SECRET: TEST_SECRET, PORT: String(port), SSE_HEALTH: "1" });
  return { ...started, port: Number(new URL(started.url).port) };
}

async function submit(base: string, data: string): Promise<void> {
  const res = await fetch(`${base}/submit`, { method: "POST", body: submitToken(TEST_SECRET, [{ topic: "t", event: "marker", data }]) });
  if (res.status !== 200) throw new Error(`/submit answered ${res.status}`);
}

test(`Chromium's EventSource comes back after each of ${ROUNDS} SIGTERM restarts of the standalone server`, async () => {
  let server = await startStandalone(0);
  const port = server.port;
  const base = `http://127.0.0.1:${port}`;
  // The page is the server's own (empty) /ping answer: same origin as the stream.
  const page = await openPage(`${base}/events?token=${subscribeToken(TEST_SECRET, ["t"])}`, `${base}/ping`);
  try {
    await expectBack(page, "start", () => submit(base, "start"), 0);
    for (let round = 1; round <= ROUNDS; round++) {
      const before = await pageState(page);
      server.child.kill("SIGTERM");
      // 0, not the exit code of the close deadline: nothing held it open.
      expect(await server.exited).toBe(0);
      server = await startStandalone(port);
      await expectBack(page, `round ${round}`, () => submit(base, `round ${round}`), round);
      const after = await pageState(page);
      // Straight back to the new process: one reconnect, no detour through the old one.
      expect({ round, opens: after.opens - before.opens }).toEqual({ round, opens: 1 });
    }
  } finally {
    await page.close();
    server.child.kill("SIGTERM");
    await server.exited;
  }
}, 240_000);

test(`a rolling restart of the example app behind nginx: Chromium's EventSource comes back every time (${ROLLING_ROUNDS} rounds)`, async () => {
  // A short retry: browsers come back while the stopped instance may still
  // be draining, the moment a kept-alive upstream connection to it would be
  // reused by nginx (and it used to answer 503, which ends EventSource).
  const env = { RETRY: "300" };
  const apps: ExampleApp[] = [await startExampleApp({ env }), await startExampleApp({ env })];
  // max_fails=0: nginx must not take the restarted instance out of rotation
  // for fail_timeout (10 s) because a request failed while it was down, or
  // stopping the other one next would leave none (502, which also ends
  // EventSource). A real rolling deploy waits for that instead.
  const nginx = await startNginx({ appPort: apps[0]!.port, appPorts: apps.map((a) => a.port), upstreamOptions: "max_fails=0" });
  // The page comes from nginx (same origin as the stream), like the example page.
  const page = await openPage(new URL("/subscribe?topics=weather", nginx.url).toString(), nginx.url);
  // Each instance has its own hub: publish on both, the page is on one of them.
  const publishAll = async (data: string) => {
    for (const app of apps) {
      const res = await fetch(new URL("/api/publish", app.url), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ topic: "weather", event: "marker", data, via: "router" }),
      });
      if (res.status !== 200) throw new Error(`/api/publish answered ${res.status}`);
    }
  };
  // Publishers keep publishing through nginx during the deploy, so nginx
  // always has upstream connections that finish a request while an instance
  // is stopping and that it may reuse for a browser's reconnect. (Answers
  // from a stopping instance may be errors: only the page is checked.)
  let publishing = true;
  const noise = (async () => {
    while (publishing) {
      await fetch(new URL("/api/publish", nginx.url), {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ topic: "news", event: "noise", data: "", via: "router" }),
      })
        .then((res) => res.arrayBuffer())
        .catch(() => undefined);
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  try {
    await expectBack(page, "start", () => publishAll("start"), 0);
    // Each round restarts both instances, one after the other; the page's
    // stream is on one of them (or moves), so every round cuts it at least once.
    for (let round = 1; round <= ROLLING_ROUNDS; round++) {
      for (const i of [0, 1]) {
        const exit = await apps[i]!.stop("SIGTERM");
        expect(exit).toEqual({ code: 0, signal: null });
        apps[i] = await startExampleApp({ port: apps[i]!.port, env });
        await expectBack(page, `round ${round}.${i}`, () => publishAll(`round ${round}.${i}`), round);
      }
    }
  } finally {
    publishing = false;
    await noise;
    await page.close();
    await nginx.stop();
  }
}, 300_000);

