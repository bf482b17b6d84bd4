/**
 * Admission control on real servers: the instance cap and the per-subject cap
 * shed new connections (EventSource-style requests get 200 + retry: and the
 * end of the stream; others 503 + Retry-After) and never touch open streams;
 * the connect-rate bucket under a burst of 2,000 connects while existing
 * subscribers keep receiving every event; and, in Chromium, an EventSource
 * over the cap comes back by itself and gets events once a slot frees.
 */
import http from "node:http";
import request from "supertest";
import { SILENT_LOGGER } from "../src/logger";
import { STREAM_HEADERS } from "../src/core/http";
import { subscribeToken } from "../src/tokens";
import { launchChromium } from "./helpers/chromium";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

const streams: RawStream[] = [];
afterEach(() => {
  for (const s of streams.splice(0)) s.close();
});

async function open(srv: TestServer, token: string, headers: Record<string, string> = {}): Promise<RawStream> {
  const s = new RawStream(`${srv.base}/events?token=${token}`, headers);
  streams.push(s);
  await s.opened;
  if (s.status === 200) await s.until((t) => t.length > 0);
  return s;
}

/** A shed EventSource-style answer: 200, the stream headers, only a jittered `retry:`, ended. */
async function expectShedStream(s: RawStream): Promise<void> {
  await s.closed();
  expect(s.status).toBe(200);
  for (const [name, value] of Object.entries(STREAM_HEADERS)) expect(s.headers[name.toLowerCase()]).toBe(value);
  expect(s.text).toMatch(/^retry:\d{4}\n\n$/);
}

describe("maxConnections and maxConnectionsPerSubject", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0, metrics: true, maxConnections: 3, maxConnectionsPerSubject: 2, logger: SILENT_LOGGER });
  });
  afterAll(async () => {
    await srv.close();
  });

  test("over the instance cap: 200 + retry for EventSource, 503 + Retry-After for others; open streams untouched", async () => {
    const open3 = [await open(srv, subscribeToken(SECRET, ["c"])), await open(srv, subscribeToken(SECRET, ["c"])), await open(srv, subscribeToken(SECRET, ["c"]))];
    await expectShedStream(await open(srv, subscribeToken(SECRET, ["c"]), { Accept: "text/event-stream" }));
    const other = await request(srv.server).get(`/events?token=${subscribeToken(SECRET, ["c"])}`);
    expect(other.status).toBe(503);
    expect(other.headers["retry-after"]).toMatch(/^[1-3]$/);
    expect(other.text).toBe('{"error":"over_capacity","message":"over the maxConnections limit; retry later"}');
    // Shed before the token is read: even a bad token gets the shed answer.
    expect((await request(srv.server).get("/events?token=junk")).status).toBe(503);

    await srv.router.publish([{ topic: "c", event: "still", data: "here" }]);
    for (const s of open3) await s.until((t) => t.includes("event:still"));
    expect(open3.every((s) => !s.ended)).toBe(true);

    open3[0]!.close();
    await eventually(() => srv.router.stats.subscribers === 2, 5000, "a slot to free");
    const next = await open(srv, subscribeToken(SECRET, ["c"]), { Accept: "text/event-stream" });
    expect([next.status, next.text]).toEqual([200, ":\n\n"]);
    expect(srv.router.stats.shed.connections).toBe(3);
    const metrics = await request(srv.server).get("/metrics");
    expect(metrics.text).toContain('\nsse_shed_total{reason="connections"} 3\n');
  });

  test("per subject: the token's sub is capped, other subjects and tokens without sub are not", async () => {
    const alice = () => subscribeToken(SECRET, ["s"], { sub: "alice" });
    const first = await open(srv, alice());
    await open(srv, alice());
    const over = await request(srv.server).get(`/events?token=${alice()}`);
    expect([over.status, over.text]).toEqual([503, '{"error":"over_capacity","message":"over the maxConnectionsPerSubject limit; retry later"}']);
    await expectShedStream(await open(srv, alice(), { Accept: "text/event-stream" }));
    expect((await open(srv, subscribeToken(SECRET, ["s"], { sub: "bob" }))).status).toBe(200);
    first.close();
    await eventually(() => srv.router.stats.subscribers === 2, 5000, "alice's first stream to end");
    expect((await open(srv, alice())).status).toBe(200);
    expect(srv.router.stats.shed.subject).toBe(2);
  });
});

describe("connectRate", () => {
  test("a burst of 2,000 connects is cut to the bucket; existing subscribers receive every event", async () => {
    const srv = await startServer({ retry: 0, connectRate: 100, logger: SILENT_LOGGER });
    try {
      const token = subscribeToken(SECRET, ["rate"]);
      const subscribers = [await open(srv, token), await open(srv, token), await open(srv, token)];
      const started = Date.now();
      const statuses = new Map<number, number>();
      let sent = 0;
      const publishing = (async () => {
        // Events all through the burst; the subscribers must get each one, in order.
        for (; sent < 200; sent++) {
          await srv.router.publish([{ topic: "rate", event: "n", data: String(sent) }]);
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      const agent = new http.Agent({ keepAlive: false, maxSockets: 64 });
      await Promise.all(
        Array.from(
          { length: 2000 },
          () =>
            new Promise<void>((resolve) => {
              const req = http.get(`${srv.base}/events?token=${token}`, { agent }, (res) => {
                statuses.set(res.statusCode!, (statuses.get(res.statusCode!) ?? 0) + 1);
                req.destroy();
                resolve();
              });
              req.on("error", () => resolve());
            }),
        ),
      );
      const seconds = (Date.now() - started) / 1000;
      agent.destroy();
      await publishing;
      await srv.router.publish([{ topic: "rate", event: "end", data: "" }]);
      const admitted = statuses.get(200) ?? 0;
      const shed = statuses.get(503) ?? 0;
      expect(admitted + shed).toBe(2000);
      // The bucket: a burst of 100 plus 100 per second (3 went to the subscribers).
      expect(admitted).toBeGreaterThanOrEqual(1);
      expect(admitted).toBeLessThanOrEqual(100 + Math.ceil(100 * seconds));
      expect(shed).toBeGreaterThan(0);
      expect(srv.router.stats.shed.rate).toBe(shed);
      for (const s of subscribers) {
        await s.until((t) => t.includes("event:end"), 20_000);
        expect(parseEvents(s.text).map((e) => e.data)).toEqual([...Array.from({ length: 200 }, (_, i) => String(i)), ""]);
        expect(s.ended).toBe(false);
      }
    } finally {
      await srv.close();
    }
  }, 120_000);
});

// Callbacks of page.evaluate run in the page (the project has no DOM types).
interface PageState {
  log: string[];
  a?: { close(): void };
}
declare const window: PageState & Record<string, unknown>;
declare const EventSource: new (url: string) => {
  readyState: number;
  onopen: (() => void) | null;
  onerror: (() => void) | null;
  addEventListener(name: string, fn: (e: { data: string }) => void): void;
  close(): void;
};

describe("in Chromium", () => {
  test("an EventSource over the cap comes back by itself and gets events once a slot frees", async () => {
    const srv = await startServer({ retry: 0, retryJitter: 0, maxConnections: 1, logger: SILENT_LOGGER }, "/sse", (app) => {
      app.get("/page", (_req, res) => {
        res.type("html").send("<!doctype html><title>limits</title>");
      });
    });
    const browser = await launchChromium();
    try {
      const page = await browser.context.newPage();
      await page.goto(`${srv.base.replace(/\/sse$/, "")}/page`);
      const token = subscribeToken(SECRET, ["cap"]);
      await page.evaluate((t) => {
        window.log = [];
        const watch = (name: string) => {
          const es = new EventSource(`/sse/events?token=${t}`);
          es.onopen = () => window.log.push(`${name} open`);
          es.onerror = () => window.log.push(`${name} error ${es.readyState}`);
          es.addEventListener("msg", (e) => window.log.push(`${name} ${e.data}`));
          return es;
        };
        window.a = watch("a");
        window["b"] = watch("b");
      }, token);
      const log = () => page.evaluate(() => window.log);
      // One of the two got the slot (normally a); the other is shed and keeps coming back.
      await eventually(() => srv.router.stats.shed.connections >= 2, 20_000, "the second EventSource to be shed twice");
      const first = await log();
      const holder = first.includes("a open") ? "a" : "b";
      const waiting = holder === "a" ? "b" : "a";
      expect(first.filter((l) => l === `${waiting} error 0`).length).toBeGreaterThanOrEqual(1);
      await page.evaluate((h) => (window[h] as { close(): void }).close(), holder);
      // Publish until the waiting one, reconnected by itself into the freed slot, got one.
      const deadline = Date.now() + 20_000;
      while (!(await log()).includes(`${waiting} hello`)) {
        if (Date.now() > deadline) throw new Error(`no event reached ${waiting}: ${JSON.stringify(await log())}`);
        await srv.router.publish([{ topic: "cap", event: "msg", data: "hello" }]);
        await new Promise((r) => setTimeout(r, 200));
      }
      // Shed answers never made it give up (readyState 2, CLOSED).
      expect((await log()).filter((l) => l.endsWith("error 2"))).toEqual([]);
    } finally {
      await browser.close();
      await srv.close();
    }
  }, 90_000);
});
