/**
 * The example app on its own (no proxy), as a child process the way a person
 * runs it: configuration from the environment with clear errors, a generated
 * secret with a warning, the hub under any BASE_PATH, both publish modes, and
 * a clean exit on SIGTERM/SIGINT that ends open event streams.
 */
import { spawnSync } from "node:child_process";
import http from "node:http";
import { EventSource } from "eventsource";
import { EXAMPLE_ARGS, ROOT, requireBuiltLibrary, startExampleApp, stopAll } from "./helpers/nginx";

beforeAll(async () => {
  await requireBuiltLibrary();
});

afterAll(async () => {
  await stopAll();
});

function runBroken(env: Record<string, string>) {
  return spawnSync(process.execPath, EXAMPLE_ARGS, {
    cwd: ROOT,
    env: { PATH: process.env["PATH"] ?? "", PORT: "0", HOST: "127.0.0.1", ...env },
    encoding: "utf8",
    timeout: 10_000,
  });
}

async function publish(base: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(new URL("/api/publish", base), {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** Opens a raw event stream and resolves once the first bytes (the heartbeat) arrived. */
function openStream(url: string): Promise<{ res: http.IncomingMessage; ended: Promise<string> }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
        let text = "";
        res.setEncoding("utf8");
        const ended = new Promise<string>((done, fail) => {
          res.on("end", () => done(text));
          res.on("error", fail);
        });
        res.once("data", () => resolve({ res, ended }));
        res.on("data", (c: string) => (text += c));
      })
      .on("error", reject);
  });
}

describe("example app configuration", () => {
  test.each([
    [{ SSE_SECRET: "abc" }, /SSE_SECRET must be 64 hex characters/],
    [{ SSE_SECRET: "z".repeat(64) }, /SSE_SECRET must be 64 hex characters/],
    [{ PORT: "http" }, /PORT must be a number/],
    [{ BASE_PATH: "/" }, /BASE_PATH must not be \//],
    [{ BASE_PATH: "/a b" }, /BASE_PATH must be a simple path/],
    [{ TOPICS: " , " }, /TOPICS must list at least one topic/],
    [{ HEARTBEAT_INTERVAL: "soon" }, /HEARTBEAT_INTERVAL must be a whole number/],
    [{ RETRY: "-1" }, /RETRY must be a whole number of milliseconds; got "-1"/],
    [{ SSE_TOKEN_TTL: "1" }, /SSE_TOKEN_TTL must be a whole number of seconds \(at least 2\); got "1"/],
    [{ SSE_SUBMIT_URL: "http://127.0.0.1:8000/" }, /SSE_SUBMIT_URL must be an http\(s\) URL ending in \/submit/],
    [{ REDIS_URL: "127.0.0.1:6379" }, /REDIS_URL must start with redis:\/\//],
  ])("refuses %p with a clear message and exit code 2", (env, message) => {
    const r = runBroken(env);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).not.toMatch(/listening/);
  });

  test("without SSE_SECRET it generates one, warns, and still works end to end", async () => {
    const app = await startExampleApp({ env: { SSE_SECRET: "" } });
    try {
      expect(app.process.output()).toMatch(/WARNING: SSE_SECRET is not set; generated a random one/);
      expect(app.process.output()).toMatch(/openssl rand -hex 32/);
      const es = new EventSource(new URL("/subscribe?topics=news", app.url));
      const got = new Promise<string>((resolve) => es.addEventListener("news-update", (e) => resolve(e.data)));
      await new Promise((resolve) => (es.onopen = resolve));
      expect((await publish(app.url, { topic: "news", event: "news-update", data: "hello", via: "http" })).status).toBe(200);
      expect(await got).toBe("hello");
      es.close();
    } finally {
      await app.stop();
    }
  });
});

describe("example app", () => {
  test("mounts the hub at BASE_PATH next to its own routes; prints one line, with the URL to open", async () => {
    const app = await startExampleApp({ env: { BASE_PATH: "live/updates/", TOPICS: "alpha,beta" } });
    try {
      expect(app.url).toBe(`http://127.0.0.1:${app.port}/`);
      expect(app.process.output()).toBe(
        `example-app: listening; open http://127.0.0.1:${app.port}/ (hub at http://127.0.0.1:${app.port}/live/updates/, topics alpha, beta)\n`,
      );
      expect((await fetch(new URL("/live/updates/ping", app.url))).status).toBe(200);
      expect((await fetch(new URL("/sse-server/ping", app.url))).status).toBe(404);
      const home = await fetch(app.url);
      expect(home.status).toBe(200);
      expect(await home.text()).toContain("sse-server example");
      const config = await (await fetch(new URL("/api/config", app.url))).json();
      expect(config).toEqual({ topics: ["alpha", "beta"], basePath: "/live/updates" });
      const redirect = await fetch(new URL("/subscribe?topics=beta,alpha,beta", app.url), { redirect: "manual" });
      expect(redirect.status).toBe(307);
      expect(redirect.headers.get("location")).toMatch(/^\/live\/updates\/events\?token=/);
      expect(redirect.headers.get("cache-control")).toBe("no-store");
      // Both publish modes reach a subscriber that followed the redirect.
      const es = new EventSource(new URL("/subscribe?topics=alpha", app.url));
      const seen: string[] = [];
      const two = new Promise<void>((resolve) =>
        es.addEventListener("alpha-update", (e) => {
          seen.push(e.data);
          if (seen.length === 2) resolve();
        }),
      );
      await new Promise((resolve) => (es.onopen = resolve));
      expect((await publish(app.url, { topic: "alpha", event: "alpha-update", data: "one", via: "http" })).json).toEqual(
        expect.objectContaining({ ok: true, via: "http" }),
      );
      expect((await publish(app.url, { topic: "alpha", event: "alpha-update", data: "two", via: "router" })).json).toEqual(
        expect.objectContaining({ ok: true, via: "router" }),
      );
      await two;
      expect(seen).toEqual(["one", "two"]);
      es.close();
    } finally {
      await app.stop();
    }
  });

  test("serves the browser client's token endpoint, the client itself and /sse-server/health", async () => {
    const app = await startExampleApp({ env: { SSE_TOKEN_TTL: "30" } });
    try {
      const ok = await fetch(new URL("/api/sse-token?topics=news,weather", app.url));
      expect(ok.status).toBe(200);
      expect(ok.headers.get("content-type")).toBe("text/plain; charset=utf-8");
      expect(ok.headers.get("cache-control")).toBe("no-store");
      const token = await ok.text();
      expect(token).toMatch(/^[0-9A-Za-z]+$/);
      const denied = await fetch(new URL("/api/sse-token?topics=news,payroll", app.url));
      expect(denied.status).toBe(403);
      expect(await denied.json()).toEqual({ error: "topic_forbidden", message: "not allowed to read: payroll" });
      expect((await fetch(new URL("/api/sse-token", app.url))).status).toBe(400);

      const client = await fetch(new URL("/vendor/sse-hub-client.mjs", app.url));
      expect(client.status).toBe(200);
      expect(client.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
      expect(await client.text()).toContain("createSseClient");

      // The token works as the client sends it (Bearer); the stream shows on /health, and with
      // SSE_TOKEN_TTL=30 its expiry notice comes 10 s before expiry, not at once.
      const stream = await new Promise<http.IncomingMessage>((resolve, reject) =>
        http.get(new URL("/sse-server/events", app.url), { headers: { Authorization: `Bearer ${token}` } }, resolve).on("error", reject),
      );
      expect(stream.statusCode).toBe(200);
      let text = "";
      stream.setEncoding("utf8");
      stream.on("data", (c: string) => (text += c));
      const health = await fetch(new URL("/sse-server/health", app.url));
      expect(health.status).toBe(200);
      expect(await health.json()).toEqual(expect.objectContaining({ status: "ok", subscribers: 1 }));
      // A marker published after the stream opened: everything before it has arrived by then.
      expect((await publish(app.url, { topic: "news", data: "marker", via: "router" })).json).toEqual(
        expect.objectContaining({ ok: true, event: "news-update" }),
      );
      while (!/data:marker\nid:[^\n]+\n\n/.test(text)) await new Promise((r) => stream.once("data", r));
      expect(text).not.toContain("sse:expiring");
      expect(text).toMatch(/^:\n\n(retry:\d+\n\n)?event:news-update\ndata:marker\nid:[^\n]+\n\n$/);
      stream.destroy();

      // Plain EventSource users: the 307 passes lastEventId on to the hub.
      const redirect = await fetch(new URL("/subscribe?topics=news&lastEventId=abc", app.url), { redirect: "manual" });
      expect(redirect.status).toBe(307);
      expect(redirect.headers.get("location")).toMatch(/^\/sse-server\/events\?token=[0-9A-Za-z]+&lastEventId=abc$/);
    } finally {
      await app.stop();
    }
  });

  test("the http publish mode reports an unreachable hub as 502; the in-process mode still works", async () => {
    const app = await startExampleApp({ env: { SSE_SUBMIT_URL: "http://127.0.0.1:1/sse-server/submit" } });
    try {
      const failed = await publish(app.url, { topic: "news", event: "news-update", data: "x", via: "http" });
      expect(failed.status).toBe(502);
      expect(failed.json).toEqual(expect.objectContaining({ error: "publish_failed" }));
      const ok = await publish(app.url, { topic: "news", event: "news-update", data: "x", via: "router" });
      expect(ok.status).toBe(200);
      // Malformed JSON is a 400, not a crash.
      const bad = await fetch(new URL("/api/publish", app.url), { method: "POST", headers: { "Content-Type": "application/json" }, body: "{" });
      expect(bad.status).toBe(400);
    } finally {
      await app.stop();
    }
  });

  test.each(["SIGTERM", "SIGINT"] as const)("%s ends open event streams cleanly and exits 0", async (signal) => {
    const app = await startExampleApp();
    const redirect = await fetch(new URL("/subscribe?topics=weather,news", app.url), { redirect: "manual" });
    const streams = await Promise.all([1, 2].map(() => openStream(new URL(redirect.headers.get("location")!, app.url).toString())));
    // Exit 0 is the marker that the close finished: past its own deadline the app exits 1.
    const exit = await app.stop(signal);
    expect(exit).toEqual({ code: 0, signal: null });
    for (const { ended } of streams) expect(await ended).toMatch(/^:\n\n/);
    expect(app.process.output()).toContain(`${signal}, closing 2 event streams`);
  });
});
