/**
 * Faults of the Redis broker while connected, on a real redis-server:
 * entries that are in the stream but were never pushed (Redis died between
 * a batch's XADD and its PUBLISH), a reader behind trimmed history, a Redis
 * that answers after the publish timeout (idempotent retries), and /health
 * as a load-balancer check while Redis is down.
 */
import Redis from "ioredis";
import { RedisBroker, createRedisBroker, type RedisBrokerOptions } from "../src/brokers/redis";
import { createPublisher } from "../src/publisher";
import { submitToken, subscribeToken, type EventInput } from "../src/tokens";
import { RedisServer, SseClient, waitFor } from "./helpers/redis";
import { SECRET, startServer, type TestServer } from "./helpers/sse";

let redis: RedisServer;
let admin: Redis;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
let keys = 0;

beforeAll(async () => {
  redis = await RedisServer.start();
  admin = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await admin.connect();
}, 20_000);

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  // A test that paused or stopped Redis leaves it running for the next one.
  if (redis.pid !== undefined) process.kill(redis.pid, "SIGCONT");
  await redis.start();
}, 20_000);

afterAll(async () => {
  admin.disconnect();
  await redis?.close();
});

/** A broker on a fresh stream key (or `key`), closed after the test. */
function broker(options: Partial<RedisBrokerOptions> = {}): RedisBroker {
  const b = createRedisBroker({ url: redis.url, key: `faults:${++keys}`, log: null, ...options });
  cleanups.push(() => b.close());
  return b;
}

/** A router on `b` served on a free port (health and metrics on); closed after the test. */
async function instance(b: RedisBroker, setup?: Parameters<typeof startServer>[2]): Promise<TestServer> {
  const srv = await startServer({ broker: b, health: true, metrics: true, retry: 0 }, "/", setup);
  cleanups.push(() => srv.close());
  await waitFor(() => b.ready, 10_000, "the broker to follow the stream");
  return srv;
}

async function subscribe(srv: TestServer, topics: string[]): Promise<SseClient> {
  const client = await SseClient.open(srv.base, subscribeToken(SECRET, topics));
  cleanups.push(() => client.close());
  return client;
}

const ev = (data: string): EventInput => ({ topic: "t", event: "n", data });

/** An entry written straight into the stream with the broker's field layout: stored, never pushed. */
const storeWithoutPush = (key: string, data: string): Promise<string | null> => admin.xadd(key, "*", "t", "t", "e", "n", "d", data);

test("an entry stored but never pushed is delivered before the next pushed batch, to every instance, in order, once", async () => {
  // A long idle check: only the previous-id check of the next batch can find the entry here.
  const a = broker({ checkInterval: 600_000 });
  const b = broker({ key: a.key, checkInterval: 600_000 });
  const [srvA, srvB] = [await instance(a), await instance(b)];
  const subs = [await subscribe(srvA, ["t"]), await subscribe(srvA, ["t", "u"]), await subscribe(srvB, ["t"])];
  await srvA.router.publish([ev("1")]);
  for (const s of subs) await s.waitForEvents(1);
  await storeWithoutPush(a.key, "2");
  await srvB.router.publish([ev("3"), ev("4")]);
  for (const s of subs) await s.waitForEvents(4);
  await srvA.router.publish([ev("5")]);
  for (const s of subs) await s.waitForEvents(5);
  const ids = (await admin.xrange(a.key, "-", "+")).map(([id]) => id);
  for (const s of subs) {
    expect(s.data("n")).toEqual(["1", "2", "3", "4", "5"]);
    expect(s.events.map((e) => e.id!.split(".")[1])).toEqual(ids);
  }
  expect(srvA.router.stats.brokerResets).toBe(0);
}, 30_000);

test("an entry stored but never pushed reaches subscribers while nothing else is published (idle check against the stream head)", async () => {
  const a = broker({ checkInterval: 200 });
  const srv = await instance(a);
  const sub = await subscribe(srv, ["t"]);
  await srv.router.publish([ev("1")]);
  await sub.waitForEvents(1);
  await storeWithoutPush(a.key, "2");
  await sub.waitForEvents(2, 10_000);
  await srv.router.publish([ev("3")]);
  await sub.waitForEvents(3);
  expect(sub.data("n")).toEqual(["1", "2", "3"]);
}, 30_000);

test("a gap that history no longer covers: every subscriber gets sse:reset with the head id, then the events after it", async () => {
  const a = broker({ checkInterval: 600_000 });
  const srv = await instance(a);
  const subs = [await subscribe(srv, ["t"]), await subscribe(srv, ["t"])];
  await srv.router.publish([ev("1")]);
  for (const s of subs) await s.waitForEvents(1);
  // Entries this reader never got, then the oldest of them and the reader's own position trimmed away.
  const unpushed = [await storeWithoutPush(a.key, "2"), await storeWithoutPush(a.key, "3"), await storeWithoutPush(a.key, "4")];
  await admin.xtrim(a.key, "MINID", unpushed[1]!);
  // The batch that reveals the gap is part of the stretch the reset stands for: it is the head the reset carries.
  await srv.router.publish([ev("5")]);
  for (const s of subs) await s.waitForEvents(2);
  const head = (await admin.xrevrange(a.key, "+", "-", "COUNT", 1))[0]![0];
  await srv.router.publish([ev("6")]);
  for (const s of subs) await s.waitForEvents(3);
  const epoch = subs[0]!.events[0]!.id!.split(".")[0];
  for (const s of subs) {
    expect(s.events.map((e) => e.event)).toEqual(["n", "sse:reset", "n"]);
    expect(s.events[1]).toEqual({ event: "sse:reset", data: JSON.stringify({ reason: "history_truncated" }), id: `${epoch}.${head}` });
    expect(s.data("n")).toEqual(["1", "6"]);
  }
  expect(srv.router.stats.brokerResets).toBe(1);
  // Resuming from the reset's id gets exactly what followed it.
  const resumed = await a.replay(subs[0]!.events[1]!.id!, new Set(["t"]));
  expect(resumed.ok && resumed.events.map((e) => e.id)).toEqual([subs[0]!.events[2]!.id]);
}, 30_000);

test("a reconnect after the reader's own last entry was trimmed (a quiet historyAge), with nothing missed, resets nobody", async () => {
  const a = broker({ checkInterval: 600_000, redis: { connectionName: "aged" } });
  const srv = await instance(a);
  const sub = await subscribe(srv, ["t"]);
  await srv.router.publish([ev("1")]);
  await sub.waitForEvents(1);
  // While the reader is away: a new entry arrives and the age bound trims everything older (the reader's entry).
  const second = await storeWithoutPush(a.key, "2");
  await admin.xtrim(a.key, "MINID", second!);
  const id = /id=(\d+) [^\n]*name=aged:reader /.exec(String(await admin.call("CLIENT", "LIST")))![1]!;
  await admin.call("CLIENT", "KILL", "ID", id);
  await sub.waitForEvents(2, 10_000);
  await srv.router.publish([ev("3")]);
  await sub.waitForEvents(3);
  expect(sub.events.map((e) => e.event)).toEqual(["n", "n", "n"]);
  expect(sub.data("n")).toEqual(["1", "2", "3"]);
  expect(srv.router.stats.brokerResets).toBe(0);
}, 30_000);

test("Redis came back empty and another instance published first: no false 'fell behind' and no reset, the new stream is read from its start", async () => {
  const lines: string[] = [];
  const a = broker({ log: (m) => lines.push(m), redis: { connectionName: "emptied" }, checkInterval: 600_000 });
  const srv = await instance(a);
  const sub = await subscribe(srv, ["t"]);
  await srv.router.publish([ev("1")]);
  await sub.waitForEvents(1);
  // What this reader finds after Redis restarted empty and another instance
  // already created a new epoch and published: then its connection drops.
  await admin.del(a.key);
  await admin.set(a.epochKey, "zzzzzz@0-0");
  await storeWithoutPush(a.key, "2");
  const id = /id=(\d+) [^\n]*name=emptied:reader /.exec(String(await admin.call("CLIENT", "LIST")))![1]!;
  await admin.call("CLIENT", "KILL", "ID", id);
  await sub.waitForEvents(2, 10_000);
  expect(sub.data("n")).toEqual(["1", "2"]);
  expect(sub.events[1]!.id).toMatch(/^zzzzzz\./);
  expect(lines.some((l) => l.includes("was lost"))).toBe(true);
  expect(lines.filter((l) => /fell behind|missed/.test(l))).toEqual([]);
  expect(srv.router.stats.brokerResets).toBe(0);
}, 30_000);

test("idempotency key across instances: submit to A, the same token retried on B, one event everywhere", async () => {
  const a = broker();
  const b = broker({ key: a.key });
  const [srvA, srvB] = [await instance(a), await instance(b)];
  const subs = [await subscribe(srvA, ["t"]), await subscribe(srvB, ["t"])];
  const token = submitToken(SECRET, [ev("once")], { idempotencyKey: "7b0d6d0e-5a3c-4f0b-9b59-6e1f3c9a0a11" });
  for (const base of [srvA.base, srvB.base]) {
    const res = await fetch(`${base}/submit`, { method: "POST", body: token });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
  }
  // A new token with the same key (a backend that re-mints on retry) is recognised too.
  const reminted = await fetch(`${srvB.base}/submit`, {
    method: "POST",
    body: submitToken(SECRET, [ev("once")], { idempotencyKey: "7b0d6d0e-5a3c-4f0b-9b59-6e1f3c9a0a11" }),
  });
  expect(reminted.status).toBe(200);
  await srvA.router.publish([ev("marker")], { idempotencyKey: "marker-1" });
  await srvA.router.publish([ev("marker again")], { idempotencyKey: "marker-1" });
  await srvB.router.publish([ev("end")]);
  for (const s of subs) {
    await waitFor(() => s.data("n").includes("end"), 10_000, "the end marker");
    expect(s.data("n")).toEqual(["once", "marker", "end"]);
  }
  expect(await admin.xlen(a.key)).toBe(3);
}, 30_000);

test("Redis paused past the publish timeout: the first attempt gets 503 yet is stored; the publisher's retry with the same key delivers once", async () => {
  const a = broker({ publishTimeout: 300 });
  const statuses: number[] = [];
  const srv = await instance(a, (app) =>
    app.use((req, res, next) => {
      if (req.path === "/submit") res.on("finish", () => statuses.push(res.statusCode));
      next();
    }),
  );
  const sub = await subscribe(srv, ["t"]);
  await srv.router.publish([ev("before")]);
  await sub.waitForEvents(1);
  const publisher = createPublisher({ url: srv.base, secret: SECRET, retries: 20, retryDelay: 100 });
  process.kill(redis.pid!, "SIGSTOP");
  const publishing = publisher.publish([ev("paused")], { idempotencyKey: "pause-1" });
  await waitFor(() => statuses.includes(503), 10_000, "the first attempt's 503");
  process.kill(redis.pid!, "SIGCONT");
  await publishing;
  await srv.router.publish([ev("after")]);
  await waitFor(() => sub.data("n").includes("after"), 10_000, "the marker after the retry");
  expect(sub.data("n")).toEqual(["before", "paused", "after"]);
  expect(statuses[0]).toBe(503);
  expect(statuses[statuses.length - 1]).toBe(200);
  // Without a key the publisher does not retry: a 503 is the caller's to handle.
  const sent = statuses.length;
  process.kill(redis.pid!, "SIGSTOP");
  const failed = await publisher.publish([ev("no key")]).then(
    () => undefined,
    (err: unknown) => err,
  );
  process.kill(redis.pid!, "SIGCONT");
  expect(failed).toMatchObject({ code: "broker_unavailable" });
  expect(statuses.slice(sent)).toEqual([503]);
}, 40_000);

test("/health is a load-balancer check: 200 ready, 503 while Redis is down, 200 again once it is back; /metrics has the state", async () => {
  const a = broker();
  const srv = await instance(a);
  const health = async () => {
    const res = await fetch(`${srv.base}/health`);
    return { status: res.status, body: (await res.json()) as { status: string; broker: string } };
  };
  const gauge = async (state: string) => {
    const text = await (await fetch(`${srv.base}/metrics`)).text();
    return Number(new RegExp(`^sse_broker_state\\{state="${state}"\\} (\\d)$`, "m").exec(text)![1]);
  };
  expect(await health()).toMatchObject({ status: 200, body: { status: "ok", broker: "ready" } });
  expect(await gauge("ready")).toBe(1);
  await redis.stop();
  await waitFor(async () => (await health()).status === 503, 10_000, "/health to answer 503");
  expect((await health()).body).toMatchObject({ status: "unavailable", broker: "unavailable" });
  expect([await gauge("ready"), await gauge("unavailable")]).toEqual([0, 1]);
  await redis.start();
  await waitFor(async () => (await health()).body.status === "ok", 10_000, "/health to say ok again");
  expect(await health()).toMatchObject({ status: 200, body: { status: "ok", broker: "ready" } });
  expect(await gauge("ready")).toBe(1);
}, 30_000);
