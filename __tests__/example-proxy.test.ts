/**
 * The example app behind real nginx (example-app/nginx.conf.template, started
 * by example-app/run-nginx.sh on a free port): the hub under /sse-server/ with
 * the prefix kept, the app's own pages next to it, and events passing through
 * the proxy at once (no buffering) with heartbeats keeping the stream alive.
 */
import http from "node:http";
import { EventSource } from "eventsource";
import { submitToken, subscribeToken } from "../src/tokens";
import { TEST_SECRET, startExampleApp, startNginx, stopAll, type ExampleApp, type Nginx } from "./helpers/nginx";

// Short enough to see several heartbeats in a test.
const HEARTBEAT_MS = 2_000;

let app: ExampleApp;
let nginx: Nginx;
const sources: EventSource[] = [];

beforeAll(async () => {
  app = await startExampleApp({ env: { HEARTBEAT_INTERVAL: String(HEARTBEAT_MS) } });
  nginx = await startNginx({ appPort: app.port });
}, 60_000);

afterEach(() => {
  for (const es of sources.splice(0)) es.close();
});

afterAll(async () => {
  await stopAll();
});

const url = (p: string) => new URL(p, nginx.url).toString();

async function publish(body: Record<string, string>): Promise<{ ok: boolean; via: string }> {
  const res = await fetch(url("/api/publish"), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { ok: boolean; via: string; message?: string };
  if (res.status !== 200) throw new Error(`publish answered ${res.status}: ${json.message}`);
  return json;
}

interface Received {
  type: string;
  data: string;
  id: string;
}

/** An EventSource through the proxy, recording the named events it listens for. */
async function subscribe(topics: string, names: readonly string[]): Promise<{ es: EventSource; received: Received[]; next: () => Promise<Received> }> {
  const es = new EventSource(url(`/subscribe?topics=${topics}`));
  sources.push(es);
  const received: Received[] = [];
  const waiters: Array<(r: Received) => void> = [];
  for (const name of names) {
    es.addEventListener(name, (e) => {
      const r = { type: e.type, data: e.data, id: e.lastEventId };
      received.push(r);
      waiters.shift()?.(r);
    });
  }
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("EventSource through nginx did not open within 5 s: is the proxy buffering the stream?")), 5_000);
    es.onopen = () => {
      clearTimeout(timer);
      resolve();
    };
    es.onerror = (e) => {
      clearTimeout(timer);
      reject(new Error(`EventSource through nginx failed: ${e.message ?? "error"} (status ${e.code})`));
    };
  });
  es.onerror = null;
  let taken = 0;
  const next = () =>
    new Promise<Received>((resolve, reject) => {
      if (received.length > taken) return resolve(received[taken++]!);
      const timer = setTimeout(() => reject(new Error("no event within 5 s")), 5_000);
      waiters.push((r) => {
        clearTimeout(timer);
        taken++;
        resolve(r);
      });
    });
  return { es, received, next };
}

describe("example app behind nginx", () => {
  test("serves the page and its assets through the proxy", async () => {
    const page = await fetch(url("/"));
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(page.headers.get("server")).toBe("nginx");
    const html = await page.text();
    expect(html).toContain("<title>sse-server example</title>");
    expect(html).toContain('<script type="module" src="app.js"></script>');
    expect(html).toContain('"sse-hub/client": "./vendor/sse-hub-client.mjs"');
    for (const asset of ["/app.js", "/style.css", "/vendor/sse-hub-client.mjs"]) {
      const res = await fetch(url(asset));
      expect(res.status).toBe(200);
      expect((await res.text()).length).toBeGreaterThan(500);
    }
    const config = await (await fetch(url("/api/config"))).json();
    expect(config).toEqual(expect.objectContaining({ topics: ["weather", "news", "sports"], basePath: "/sse-server" }));
  });

  test("/sse-server/ping answers through the proxy, with the prefix passed on unchanged", async () => {
    const ping = await fetch(url("/sse-server/ping"));
    expect(ping.status).toBe(200);
    expect(await ping.text()).toBe("");
    expect(ping.headers.get("access-control-allow-origin")).toBe("*");
    // The hub lives only under the prefix: nginx must not strip it.
    const bare = await fetch(url("/ping"));
    expect(bare.status).toBe(404);
  });

  test("/subscribe checks the allowlist and redirects 307 to /sse-server/events", async () => {
    const ok = await fetch(url("/subscribe?topics=weather,news"), { redirect: "manual" });
    expect(ok.status).toBe(307);
    expect(ok.headers.get("location")).toMatch(/^\/sse-server\/events\?token=[0-9A-Za-z]+$/);
    const denied = await fetch(url("/subscribe?topics=weather,payroll"), { redirect: "manual" });
    expect(denied.status).toBe(403);
    expect(await denied.json()).toEqual({ error: "topic_forbidden", message: "not allowed to read: payroll" });
    const none = await fetch(url("/subscribe"), { redirect: "manual" });
    expect(none.status).toBe(400);
  });

  test("stream headers survive the proxy; heartbeats pass through unbuffered, one per interval", async () => {
    const token = subscribeToken(TEST_SECRET, ["weather"]);
    const started = performance.now();
    let beats = 0;
    const { headers } = await new Promise<{ headers: http.IncomingHttpHeaders }>((resolve, reject) => {
      // Like a browser: it accepts compressed responses, but a stream must not be compressed (gzip buffers).
      const req = http.get(url(`/sse-server/events?token=${token}`), { headers: { "Accept-Encoding": "gzip, deflate, br" } }, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
        let buffer = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => {
          buffer += chunk;
          let end: number;
          while ((end = buffer.indexOf("\n\n")) !== -1) {
            const block = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            if (block === ":" || block.startsWith(":\n")) beats++;
          }
          // Three heartbeats are a few bytes: a buffering proxy (or gzip) would hold them far past the guard below.
          if (beats >= 3) {
            clearTimeout(guard);
            req.destroy();
            resolve({ headers: res.headers });
          }
        });
      });
      req.on("error", (err) => {
        if (!req.destroyed) reject(err);
      });
      // A deadlock guard only: how fast bytes pass through is not a test's business (bench/).
      const guard = setTimeout(() => {
        req.destroy();
        reject(new Error(`${beats} of 3 heartbeats through nginx within ${HEARTBEAT_MS * 2 + 15_000} ms: is the proxy buffering the stream?`));
      }, HEARTBEAT_MS * 2 + 15_000);
    });
    const elapsed = performance.now() - started;
    expect(headers["content-type"]).toBe("text/event-stream");
    expect(headers["cache-control"]).toContain("no-cache");
    expect(headers["content-length"]).toBeUndefined();
    expect(headers["content-encoding"]).toBeUndefined();
    // One on connect, then the hub's one timer, once per interval (its first
    // tick may fall right after the connect): the server sent all of them
    // within `elapsed`. Counted, not timed one by one: a busy client reads two at once.
    expect(beats).toBeLessThanOrEqual(Math.floor(elapsed / (HEARTBEAT_MS * 0.9)) + 2);
  });

  test("events submitted through the proxy reach an EventSource through the proxy promptly, in order", async () => {
    const { next } = await subscribe("weather,news", ["weather-update", "news-update", "message"]);
    const sent: Array<Record<string, string>> = [
      { topic: "weather", event: "weather-update", data: "sunny", via: "http" },
      { topic: "news", event: "news-update", data: "line 1\nline 2", via: "router" },
      { topic: "weather", event: "message", data: "", via: "http" },
      { topic: "news", event: "news-update", data: "{\"n\":4}", via: "router" },
    ];
    let lastId = "";
    // Each event arrives before the next is published. A proxy that held
    // bytes back (buffering, gzip) would keep an event for kilobytes more,
    // far past next()'s guard; latency itself is measured in bench/.
    for (const ev of sent) {
      const arrival = next();
      const answer = await publish(ev);
      expect(answer).toEqual(expect.objectContaining({ ok: true, via: ev["via"] }));
      const got = await arrival;
      expect({ type: got.type, data: got.data }).toEqual({ type: ev["event"], data: ev["data"] });
      expect(got.id).not.toBe("");
      expect(got.id).not.toBe(lastId);
      lastId = got.id;
    }
  });

  test("a backend's raw POST /sse-server/submit through the proxy is delivered; other topics are not", async () => {
    const { next, received } = await subscribe("sports", ["sports-update", "weather-update"]);
    const arrival = next();
    const res = await fetch(url("/sse-server/submit"), {
      method: "POST",
      body: submitToken(TEST_SECRET, [
        { topic: "weather", event: "weather-update", data: "not for sports fans" },
        { topic: "sports", event: "sports-update", data: "2:1" },
      ]),
    });
    expect(res.status).toBe(200);
    const got = await arrival;
    expect(got).toEqual(expect.objectContaining({ type: "sports-update", data: "2:1" }));
    // The weather event came first in the same batch: had it been delivered, it would be here already.
    expect(received.map((r) => r.data)).toEqual(["2:1"]);
    // A forged token is refused through the proxy as well.
    const forged = await fetch(url("/sse-server/submit"), { method: "POST", body: submitToken("00".repeat(32), []) });
    expect(forged.status).toBe(401);
  });

  test("the publish route validates its input", async () => {
    const post = (body: unknown) =>
      fetch(url("/api/publish"), { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    expect((await post({ topic: "payroll", event: "x", data: "" })).status).toBe(400);
    expect((await post({ topic: "news", event: "bad name", data: "" })).status).toBe(400);
    expect((await post({ topic: "news", event: "x", data: 5 })).status).toBe(400);
    expect((await post({ topic: "news", event: "x", data: "", via: "carrier-pigeon" })).status).toBe(400);
  });
});
