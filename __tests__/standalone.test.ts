/**
 * The standalone server (`sse-server` bin, built to dist/cli.js): starts with
 * SSE_SECRET, refuses bad configuration clearly, serves a subscription end to
 * end to a real EventSource client, and exits 0 on SIGTERM.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import path from "node:path";
import { EventSource } from "eventsource";
import { createPublisher } from "../src/publisher";
import { submitToken, subscribeToken } from "../src/tokens";
import { SECRET } from "./helpers/sse";

const CLI = path.join(__dirname, "..", "dist", "cli.js");

function run(env: Record<string, string>, args: string[] = []) {
  return spawnSync(process.execPath, [CLI, ...args], {
    env: { PATH: process.env["PATH"] ?? "", ...env },
    encoding: "utf8",
    timeout: 10_000,
  });
}

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

async function start(env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, [CLI], {
    env: { PATH: process.env["PATH"] ?? "", PORT: "0", HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.on("data", (d) => (out += d));
  child.stderr!.on("data", (d) => (out += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no startup line: ${out}`)), 10_000);
    child.stdout!.on("data", () => {
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once("exit", (code) => reject(new Error(`exited ${code}: ${out}`)));
  });
  return { child, url, output: () => out };
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

test.each([
  ["missing", {}, /SSE_SECRET is not set/],
  ["too short", { SSE_SECRET: "abcd" }, /SSE_SECRET must be 64 hex characters/],
  ["not hex", { SSE_SECRET: "z".repeat(64) }, /SSE_SECRET must be 64 hex characters/],
  ["bad port", { SSE_SECRET: SECRET, PORT: "http" }, /PORT \(--port\) must be a number from 0 to 65535/],
])("refuses a %s secret/config with a clear message and exit code 2", (_name, env, message) => {
  const result = run(env as Record<string, string>);
  expect(result.status).toBe(2);
  expect(result.stderr).toMatch(message);
  expect(result.stdout).toBe("");
});

test("serves a subscription end to end under BASE_PATH, one startup line, clean SIGTERM", async () => {
  const server = await start({ SSE_SECRET: SECRET, BASE_PATH: "/sse-server/" });
  try {
    expect(server.url).toMatch(/\/sse-server$/);
    const ping = await fetch(`${server.url}/ping`);
    expect(ping.status).toBe(200);

    const received: Array<{ type: string; data: string; id: string }> = [];
    const es = new EventSource(`${server.url}/events?token=${subscribeToken(SECRET, ["weather", "news"])}`);
    const opened = new Promise<void>((resolve, reject) => {
      es.onopen = () => resolve();
      es.onerror = (e) => reject(new Error(`EventSource error ${String(e.message)}`));
    });
    for (const type of ["weather-update", "news"]) {
      es.addEventListener(type, (e) => received.push({ type, data: e.data, id: e.lastEventId }));
    }
    await opened;

    // A Python-style backend: raw Branca body, any content type.
    const res = await fetch(`${server.url}/submit`, {
      method: "POST",
      body: submitToken(SECRET, [{ topic: "weather", event: "weather-update", data: "" }]),
    });
    expect(res.status).toBe(200);
    // The Node publisher client.
    await createPublisher({ url: server.url, secret: SECRET }).publish([
      { topic: "news", event: "news", data: "a\nb" },
      { topic: "sports", event: "news", data: "not subscribed" },
    ]);

    const deadline = Date.now() + 5000;
    while (received.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    es.close();
    expect(received.map(({ type, data }) => ({ type, data }))).toEqual([
      { type: "weather-update", data: "" },
      { type: "news", data: "a\nb" },
    ]);
    expect(received[0]!.id).not.toBe("");

    const root = server.url.replace(/\/sse-server$/, "");
    for (const path of ["/events", "/sse-serverx/ping", "/sse-server/nope"]) {
      const unknown = await fetch(`${root}${path}`);
      expect(unknown.status).toBe(404);
      expect(unknown.headers.get("access-control-allow-origin")).toBe("*");
      expect(await unknown.json()).toEqual({ error: "not_found", message: expect.stringContaining(path) });
    }
    // The mount point itself, with a query, reaches the router's paths only.
    expect((await fetch(`${root}/sse-server/ping?x=1`)).status).toBe(200);
    expect((await fetch(`${root}/sse-server?x=1`)).status).toBe(404);
  } finally {
    server.child.kill("SIGTERM");
    expect(await exited(server.child)).toBe(0);
  }
  const lines = server.output().trim().split("\n");
  expect(lines[0]).toMatch(/^sse-server: listening on /);
  // Tokens are secrets: they never reach the log.
  expect(server.output()).not.toMatch(/token=[0-9A-Za-z]{20}/);
});

test("SIGTERM ends open streams cleanly and exits 0", async () => {
  const server = await start({ SSE_SECRET: SECRET });
  const res = await fetch(`${server.url}/events?token=${subscribeToken(SECRET, ["x"])}`);
  expect(res.status).toBe(200);
  const reader = res.body!.getReader();
  const first = await reader.read();
  expect(Buffer.from(first.value!).toString()).toMatch(/^:\n\n/);
  const code = exited(server.child);
  server.child.kill("SIGTERM");
  // The stream ends normally (done), not with a reset.
  let done = false;
  while (!done) done = (await reader.read()).done;
  expect(await code).toBe(0);
});

test("the publisher reports server errors with their code", async () => {
  const server = await start({ SSE_SECRET: SECRET });
  try {
    const wrongKey = createPublisher({ url: server.url, secret: "11".repeat(32) });
    await expect(wrongKey.publish([{ topic: "t", event: "e", data: "" }])).rejects.toMatchObject({ code: "token_invalid" });
  } finally {
    server.child.kill("SIGTERM");
    await exited(server.child);
  }
});

test("the 404 outside the mount point follows the router's CORS policy (one place answers errors)", async () => {
  const server = await start({ SSE_SECRET: SECRET, BASE_PATH: "/sse-server", SSE_CORS: "https://app.example" });
  try {
    const root = server.url.replace(/\/sse-server$/, "");
    const allowed = await fetch(`${root}/elsewhere`, { headers: { Origin: "https://app.example" } });
    expect(allowed.status).toBe(404);
    expect(allowed.headers.get("access-control-allow-origin")).toBe("https://app.example");
    expect(allowed.headers.get("vary")).toBe("Origin");
    const other = await fetch(`${root}/elsewhere`, { headers: { Origin: "https://evil.example" } });
    expect(other.status).toBe(404);
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
    expect(await other.json()).toEqual({ error: "not_found", message: "no route for GET /elsewhere" });
  } finally {
    server.child.kill("SIGTERM");
    expect(await exited(server.child)).toBe(0);
  }
});
