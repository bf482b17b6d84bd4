/**
 * The standalone server with WORKERS: several processes on one port
 * (node:cluster), each a full instance on the shared Redis broker.
 */
import { spawnSync } from "node:child_process";
import { submitToken, subscribeToken } from "../src/tokens";
import { CLI, CliServer, RedisServer, SECRET, SseClient, childPids, serverPidOfClientPort, submit, waitFor } from "./helpers/redis";

let redis: RedisServer;
const clients: SseClient[] = [];

beforeAll(async () => {
  redis = await RedisServer.start();
}, 20_000);

afterEach(() => {
  for (const c of clients.splice(0)) c.close();
});

afterAll(async () => {
  await redis?.close();
});

test("WORKERS>1 without REDIS_URL is refused with a clear message and exit code 2", () => {
  for (const [env, args] of [
    [{ WORKERS: "2" }, []],
    [{}, ["--workers", "3"]],
  ] as const) {
    const run = spawnSync(process.execPath, [CLI, ...args], {
      env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, PORT: "0", ...env },
      encoding: "utf8",
      timeout: 15_000,
    });
    expect(run.status).toBe(2);
    expect(run.stderr).toMatch(/needs REDIS_URL/);
    expect(run.stdout).toBe("");
  }
  const bad = spawnSync(process.execPath, [CLI], {
    env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, WORKERS: "many", REDIS_URL: redis.url },
    encoding: "utf8",
    timeout: 15_000,
  });
  expect(bad.status).toBe(2);
  expect(bad.stderr).toMatch(/WORKERS \(--workers\) must be a number from 1 to 1024/);
}, 30_000);

test("WORKERS=2 with Redis: subscribers spread over both workers all receive every event; SIGTERM stops all and exits 0", async () => {
  const server = await CliServer.start({ REDIS_URL: redis.url, WORKERS: "2" }, [], 30_000);
  try {
    // One startup line, from the primary, once both workers listen.
    expect(server.output.match(/listening on/g)).toHaveLength(1);
    expect(server.output).toMatch(/, 2 workers, broker redis:\/\/127\.0\.0\.1:\d+/);
    const workers = childPids(server.pid);
    expect(workers).toHaveLength(2);
    const port = Number(new URL(server.url).port);

    const subs: SseClient[] = [];
    for (let i = 0; i < 8; i++) {
      const c = await SseClient.open(server.url, subscribeToken(SECRET, ["w"]));
      clients.push(c);
      subs.push(c);
    }
    const owners = subs.map((c) => serverPidOfClientPort(port, c.localPort, workers));
    expect(owners.every((pid) => pid !== undefined)).toBe(true);
    expect(new Set(owners).size).toBe(2); // both workers hold subscribers

    // Submits also land on either worker; every subscriber gets every event, in order.
    for (let i = 0; i < 20; i++) {
      expect(await submit(server.url, submitToken(SECRET, [{ topic: "w", event: "n", data: String(i) }]))).toBe(200);
    }
    expect(await submit(server.url, submitToken(SECRET, [{ topic: "w", event: "end", data: "" }]))).toBe(200);
    for (const c of subs) expect((await c.untilMarker()).map((e) => e.data)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));

    // Graceful shutdown: the primary forwards SIGTERM, streams end, every process exits.
    expect(await server.stop()).toBe(0);
    await waitFor(() => subs.every((c) => c.closed), 5000, "streams to end");
    for (const pid of workers) expect(alive(pid)).toBe(false);
  } finally {
    await server.stop();
  }
}, 60_000);

test("a worker that dies is replaced; the others keep serving", async () => {
  const server = await CliServer.start({ REDIS_URL: redis.url, WORKERS: "2" }, [], 30_000);
  try {
    const [victim] = childPids(server.pid);
    process.kill(victim!, "SIGKILL");
    await waitFor(() => childPids(server.pid).length === 2 && !childPids(server.pid).includes(victim!), 15_000, "a new worker");
    expect(server.output).toMatch(/worker \d+ exited \(SIGKILL\); starting a new one/);
    const c = await SseClient.open(server.url, subscribeToken(SECRET, ["v"]));
    clients.push(c);
    await waitFor(async () => (await submit(server.url, submitToken(SECRET, [{ topic: "v", event: "n", data: "x" }]))) === 200 && c.events.length > 0, 15_000, "delivery");
    expect(server.running).toBe(true);
    expect(await server.stop()).toBe(0);
  } finally {
    await server.stop();
  }
}, 60_000);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
