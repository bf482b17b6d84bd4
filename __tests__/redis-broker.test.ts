/**
 * Redis broker specifics on a real redis-server: outages (fast 503, the read
 * loop picks up where it stopped), Redis restarted empty (new epoch, old ids
 * reset), several brokers on one stream, and the packaging of
 * `sse-hub/redis` (lazy ioredis, one SseError class).
 */
import { execFileSync } from "node:child_process";
import path from "node:path";
import Redis from "ioredis";
import type { FramedEvent } from "../src/brokers/broker";
import { SseError } from "../src/errors";
import { RedisBroker, createRedisBroker } from "../src/brokers/redis";
import { createSseRouter } from "../src/adapters/express";
import { submitToken, subscribeToken, type EventInput } from "../src/tokens";
import { RedisServer, SECRET, SseClient, freePort, sleep, submit, waitFor } from "./helpers/redis";
import { serveRouter } from "./helpers/sse";

let redis: RedisServer;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
let keys = 0;

beforeAll(async () => {
  redis = await RedisServer.start();
}, 20_000);

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  // Tests that stop Redis leave it running again for the next one.
  await redis.start();
}, 20_000);

afterAll(async () => {
  await redis?.close();
});

function broker(options: Partial<ConstructorParameters<typeof RedisBroker>[0]> = {}): RedisBroker {
  const b = createRedisBroker({ url: redis.url, key: `rb:${++keys}`, log: null, ...options });
  cleanups.push(() => b.close());
  return b;
}

async function started(b: RedisBroker): Promise<FramedEvent[]> {
  const received: FramedEvent[] = [];
  await b.start((events) => received.push(...events));
  return received;
}

function ev(topic: string, n: number): EventInput {
  return { topic, event: "n", data: String(n) };
}

const dataOf = (events: FramedEvent[]) => events.map((e) => /data:(.*)\n/.exec(e.frame.toString())![1]);

/** Whether the broker accepts these events now (true) or rejects them (false); for polling after an outage. */
const accepts = (b: RedisBroker, events: EventInput[]): Promise<boolean> =>
  b.publish(events).then(
    () => true,
    () => false,
  );

/** Serves `router` on a free port; closed after the test. Returns the base URL. */
async function serve(router: ReturnType<typeof createSseRouter>): Promise<string> {
  const served = await serveRouter(router);
  cleanups.push(served.close);
  return served.base;
}

test("ids are <epoch>.<stream id> and a broker starts at the head: older entries are history, not live", async () => {
  const a = broker();
  await started(a);
  await a.publish([ev("t", 1)]);
  const b = broker({ key: a.key });
  const received = await started(b);
  await a.publish([ev("t", 2)]);
  await waitFor(() => received.length === 1, 5000, "one live event");
  expect(dataOf(received)).toEqual(["2"]);
  expect(received[0]!.id).toMatch(/^[0-9a-z]+\.[0-9]+-[0-9]+$/);
});

test("two brokers on one stream deliver the same events in the same order, whoever published them", async () => {
  const a = broker();
  const ra = await started(a);
  const b = broker({ key: a.key });
  const rb = await started(b);
  const jobs: Promise<void>[] = [];
  for (let i = 0; i < 50; i++) jobs.push((i % 2 ? a : b).publish([ev("t", i * 2), ev("u", i * 2 + 1)]));
  await Promise.all(jobs);
  await waitFor(() => ra.length === 100 && rb.length === 100, 5000, "100 events on both");
  expect(rb.map((e) => e.id)).toEqual(ra.map((e) => e.id));
  expect(rb.map((e) => e.frame.toString())).toEqual(ra.map((e) => e.frame.toString()));
  // A batch stays together and in order (MULTI).
  for (let i = 0; i < 100; i += 2) expect(Number(dataOf(ra)[i + 1])).toBe(Number(dataOf(ra)[i]) + 1);
});

test("while Redis is down publish rejects at once with broker_unavailable; afterwards the read loop continues", async () => {
  const b = broker();
  const received = await started(b);
  await b.publish([ev("t", 1)]);
  await waitFor(() => received.length === 1, 5000, "first event");
  await redis.stop();
  const t0 = Date.now();
  const error = await b.publish([ev("t", 2)]).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(Date.now() - t0).toBeLessThan(2500);
  expect(error).toBeInstanceOf(SseError);
  expect((error as SseError).code).toBe("broker_unavailable");
  expect((error as SseError).status).toBe(503);
  // Rejections stay fast for the whole outage (no queue building up).
  for (let i = 0; i < 20; i++) await expect(b.publish([ev("t", 100 + i)])).rejects.toMatchObject({ code: "broker_unavailable" });
  await redis.start();
  await waitFor(() => accepts(b, [ev("t", 3)]), 10_000, "publish to succeed again");
  await waitFor(() => received.some((e) => dataOf([e])[0] === "3"), 10_000, "event after the restart");
  expect(dataOf(received).filter((d) => d === "1" || d === "3")).toEqual(["1", "3"]);
}, 30_000);

test("a dropped reader connection resumes after the last entry it read: nothing missed, nothing twice", async () => {
  const b = broker({ redis: { connectionName: "victim" } });
  const received = await started(b);
  const writer = broker({ key: b.key });
  await started(writer);
  const admin = new Redis(redis.url, { lazyConnect: true });
  cleanups.push(() => admin.disconnect());
  await admin.connect();
  let n = 0;
  let kills = 0;
  const publishing = (async () => {
    for (; n < 300; n++) {
      await writer.publish([ev("t", n)]);
      if (n % 50 === 25) {
        // Kill the reader mid-stream (once it is back from the previous kill).
        let id: string | undefined;
        await waitFor(
          async () => {
            id = /id=(\d+) .*name=victim:reader /.exec(String(await admin.call("CLIENT", "LIST")))?.[1];
            return id !== undefined;
          },
          5000,
          "the reader to reconnect",
        );
        if ((await admin.call("CLIENT", "KILL", "ID", id!)) === 1) kills++;
      }
    }
  })();
  await publishing;
  // A marker after the 300: anything delivered twice or late would show before it.
  await waitFor(() => accepts(writer, [ev("t", -1)]), 10_000, "the marker to be published");
  await waitFor(() => dataOf(received).includes("-1"), 15_000, `the marker after 300 events (have ${received.length})`);
  expect(kills).toBe(6);
  expect(dataOf(received)).toEqual([...Array.from({ length: 300 }, (_, i) => String(i)), "-1"]);
}, 30_000);

test("Redis restarted empty: a new epoch, old ids get unknown_id, new events flow to the running broker", async () => {
  const b = broker();
  const received = await started(b);
  await b.publish([ev("t", 1), ev("t", 2)]);
  await waitFor(() => received.length === 2, 5000, "two events");
  const oldId = received[0]!.id;
  await redis.stop();
  await redis.start();
  await waitFor(() => accepts(b, [ev("t", 3)]), 10_000, "publish after restart");
  await waitFor(() => received.length === 3, 10_000, "event after restart");
  const newId = received[2]!.id;
  expect(newId.split(".")[0]).not.toBe(oldId.split(".")[0]);
  const result = await b.replay(oldId, new Set(["t"]));
  expect(result).toEqual({ ok: false, reason: "unknown_id", headId: newId });
  // Ids of the new stream resume normally.
  await b.publish([ev("t", 4)]);
  await waitFor(() => received.length === 4, 5000, "4th event");
  const resumed = await b.replay(newId, new Set(["t"]));
  expect(resumed.ok && dataOf([...resumed.events])).toEqual(["4"]);
}, 30_000);

test("Redis came back with an older copy of the stream: a new epoch from the restored head, no duplicates, lost ids reset", async () => {
  const b = broker({ redis: { connectionName: "restored" } });
  const received = await started(b);
  const admin = new Redis(redis.url, { lazyConnect: true });
  cleanups.push(() => admin.disconnect());
  await admin.connect();
  await b.publish([ev("t", 1), ev("t", 2)]);
  await waitFor(() => received.length === 2, 5000, "two events");
  // A snapshot here; then more events that the "crash" will lose.
  const snapshot = [await admin.dumpBuffer(b.key), await admin.dumpBuffer(b.epochKey)] as const;
  await b.publish([ev("t", 3), ev("t", 4)]);
  await waitFor(() => received.length === 4, 5000, "four events");
  const lostId = received[3]!.id;
  const keptId = received[1]!.id;
  // "Restart" with the older copy: restore the snapshot and drop every connection of the broker.
  await admin.call("RESTORE", b.key, 0, snapshot[0]!, "REPLACE");
  await admin.call("RESTORE", b.epochKey, 0, snapshot[1]!, "REPLACE");
  await admin.call("CLIENT", "KILL", "USER", "default", "SKIPME", "yes");
  await waitFor(() => accepts(b, [ev("t", 5)]), 10_000, "publish after the restore");
  await waitFor(() => received.length >= 5, 10_000, "the new event");
  const newId = received[4]!.id;
  expect(newId.split(".")[0]).not.toBe(lostId.split(".")[0]);
  // An id from the lost stretch could otherwise look valid once new entries pass it: it is unknown now.
  expect(await b.replay(lostId, new Set(["t"]))).toEqual({ ok: false, reason: "unknown_id", headId: newId });
  expect((await b.replay(keptId, new Set(["t"]))).ok).toBe(false);
  await b.publish([ev("t", 6)]);
  await waitFor(() => dataOf(received).includes("6"), 5000, "6th event");
  // Event 6 is the marker: nothing old was delivered again before it.
  expect(dataOf(received)).toEqual(["1", "2", "3", "4", "5", "6"]);
  const resumed = await b.replay(newId, new Set(["t"]));
  expect(resumed.ok && dataOf([...resumed.events])).toEqual(["6"]);
}, 30_000);

test("start() resolves without Redis after startTimeout, publish answers broker_unavailable, and it connects once Redis appears", async () => {
  const port = await freePort();
  const b = createRedisBroker({ url: `redis://127.0.0.1:${port}`, key: "late", log: null, startTimeout: 300 });
  cleanups.push(() => b.close());
  const received: FramedEvent[] = [];
  const t0 = Date.now();
  await b.start((events) => received.push(...events));
  expect(Date.now() - t0).toBeLessThan(3000);
  expect(b.ready).toBe(false);
  await expect(b.publish([ev("t", 1)])).rejects.toMatchObject({ code: "broker_unavailable" });
  const late = await RedisServer.start(port);
  cleanups.push(() => late.close());
  await waitFor(() => b.ready, 10_000, "the broker to connect");
  await waitFor(() => accepts(b, [ev("t", 2)]), 10_000, "publish");
  await waitFor(() => received.length === 1, 5000, "delivery");
}, 30_000);

test("a long replay is read in chunks and stops at the head", async () => {
  const b = broker({ readCount: 100 });
  const received = await started(b);
  await b.publish([ev("t", 0)]);
  await waitFor(() => received.length === 1, 5000, "first");
  for (let i = 0; i < 5; i++) await b.publish(Array.from({ length: 200 }, (_, j) => ev(j % 2 ? "t" : "u", 1 + i * 200 + j)));
  await waitFor(() => received.length === 1001, 10_000, "all");
  const result = await b.replay(received[0]!.id, new Set(["t"]));
  expect(result.ok).toBe(true);
  if (result.ok) expect(result.events.map((e) => e.id)).toEqual(received.filter((e) => e.topic === "t").slice(1).map((e) => e.id));
});

test("outage lines go to the given logger (warn), not to the console", async () => {
  const lines: string[] = [];
  const record = (level: string) => (message: string) => lines.push(`${level} ${message}`);
  const logger = { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") };
  const b = broker({ log: undefined, logger });
  await started(b);
  await redis.stop();
  await waitFor(() => lines.length > 0, 5000, "an outage line");
  expect(lines[0]).toMatch(/^warn redis: Redis unreachable \(.+\); publishing answers 503 and reading retries until it is back$/);
  await redis.start();
  await waitFor(() => lines.includes("warn redis: Redis reachable again; reading on from the last event read"), 10_000, "the recovery line");
}, 30_000);

test("through the router: /submit answers 503 while Redis is down, subscribers stay connected, delivery resumes", async () => {
  const b = broker();
  const router = createSseRouter({ secret: SECRET, broker: b, heartbeatInterval: 200 });
  const base = await serve(router);
  const client = await SseClient.open(base, subscribeToken(SECRET, ["t"]));
  cleanups.push(() => client.close());
  await waitFor(() => b.ready, 5000, "broker ready");
  expect(await submit(base, submitToken(SECRET, [ev("t", 1)]))).toBe(200);
  await client.waitForEvents(1);
  await redis.stop();
  const res = await fetch(`${base}/submit`, { method: "POST", body: submitToken(SECRET, [ev("t", 2)]) });
  expect(res.status).toBe(503);
  // What the publisher can do, not the Redis client's internals ("Stream isn't writeable and enableOfflineQueue options is false").
  expect(await res.json()).toEqual({ error: "broker_unavailable", message: "the event broker (Redis) is unreachable; events were not accepted, retry shortly" });
  await sleep(500); // heartbeats keep flowing; the stream stays open
  expect(client.closed).toBe(false);
  await redis.start();
  await waitFor(async () => (await submit(base, submitToken(SECRET, [ev("t", 3)]))) === 200, 10_000, "submit 200 again");
  await waitFor(() => client.data("n").includes("3"), 10_000, "event 3");
  expect(client.data("n")).toEqual(["1", "3"]);
  expect(client.closed).toBe(false);
}, 30_000);

test("package: sse-hub/redis is its own entry, loads ioredis only when used, and shares SseError with the main entry", () => {
  const root = path.join(__dirname, "..");
  const script = `
    const main = require("sse-hub");
    const loaded = () => Object.keys(require.cache).some((k) => k.includes("/node_modules/ioredis/"));
    const before = loaded();
    const { createRedisBroker } = require("sse-hub/redis");
    const b = createRedisBroker({ url: "redis://127.0.0.1:1", log: null, startTimeout: 0 });
    b.start(() => {}).then(() => b.publish([{ topic: "t", event: "e", data: "" }])).then(
      () => console.log(JSON.stringify({ before, after: loaded(), error: null })),
      (err) => console.log(JSON.stringify({ before, after: loaded(), same: err instanceof main.SseError, code: err.code })),
    ).finally(() => b.close());
  `;
  const out = execFileSync(process.execPath, ["-e", script], { cwd: root, encoding: "utf8", timeout: 25_000 });
  expect(JSON.parse(out.trim())).toEqual({ before: false, after: true, same: true, code: "broker_unavailable" });
  const esm = `
    import { SseError } from "sse-hub";
    import { createRedisBroker, RedisBroker } from "sse-hub/redis";
    const b = createRedisBroker({ url: "redis://127.0.0.1:1", log: null });
    console.log(JSON.stringify({ cls: b instanceof RedisBroker, err: typeof SseError }));
    await b.close();
  `;
  const outEsm = execFileSync(process.execPath, ["--input-type=module", "-e", esm], { cwd: root, encoding: "utf8", timeout: 25_000 });
  expect(JSON.parse(outEsm.trim())).toEqual({ cls: true, err: "function" });
}, 60_000);

test("a resume while Redis is down ends the stream (the client retries with the same id) instead of a reset", async () => {
  const b = broker();
  const router = createSseRouter({ secret: SECRET, broker: b, retry: 0 });
  const base = await serve(router);
  await waitFor(() => b.ready, 5000, "broker ready");
  const first = await SseClient.open(base, subscribeToken(SECRET, ["t"]));
  cleanups.push(() => first.close());
  expect(await submit(base, submitToken(SECRET, [ev("t", 1)]))).toBe(200);
  await first.waitForEvents(1);
  const lastId = first.events[0]!.id!;
  await redis.stop();
  const res = await fetch(`${base}/events?token=${subscribeToken(SECRET, ["t"])}`, { headers: { "Last-Event-ID": lastId } });
  expect(res.status).toBe(200);
  const text = await res.text(); // resolves only once the server ends the stream
  expect(text).not.toContain("sse:reset");
  expect(router.stats.disconnects.broker).toBe(1);
  expect(router.stats.resets).toBe(0);
}, 30_000);
