/**
 * The Redis broker with `partitions` > 1 on one real redis-server (issue 15,
 * "past one Redis"): a topic's events go to one of P streams, an instance
 * reads only the partitions its subscribers need (observed through its
 * per-partition counters of what it received from Redis), partitions are
 * unsubscribed and read again as topics come and go, and resume stays exact
 * for subscriptions within one partition, across instances and across a
 * partition that was not read for a while.
 */
import Redis from "ioredis";
import { RedisBroker, type RedisBrokerOptions } from "../src/brokers/redis";
import { partitionOf } from "../src/brokers/redis/ids";
import { createSseRouter, type SseRouter } from "../src/adapters/express";
import { subscribeToken, type EventInput } from "../src/tokens";
import { RedisServer, SECRET, SseClient, waitFor } from "./helpers/redis";
import { expectConsecutive, resumeRepeatedly, steadyPublisher } from "./helpers/resume";
import { serveRouter } from "./helpers/sse";

const P = 4;
let redis: RedisServer;
const cleanups: Array<() => Promise<unknown> | unknown> = [];
let keys = 0;

beforeAll(async () => {
  redis = await RedisServer.start();
}, 20_000);
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}, 20_000);
afterAll(async () => {
  await redis?.close();
});

/** The first topic `<prefix><i>` in partition `p` of `P`. */
function topicIn(p: number, prefix = "t"): string {
  for (let i = 0; ; i++) if (partitionOf(prefix + i, P) === p) return prefix + i;
}

interface Instance {
  router: SseRouter;
  broker: RedisBroker;
  base: string;
  open(topics: string[], lastEventId?: string): Promise<SseClient>;
}

/** A router on its own partitioned Redis broker (stream key `key`), served on a free port. */
async function instance(key: string, options: RedisBrokerOptions = {}): Promise<Instance> {
  const broker = new RedisBroker({ url: redis.url, key, partitions: P, log: null, ...options });
  const router = createSseRouter({ secret: SECRET, broker, retry: 0 });
  const served = await serveRouter(router);
  cleanups.push(async () => {
    await served.close();
    await broker.close();
  });
  await waitFor(() => broker.ready, 5000, "broker ready");
  return {
    router,
    broker,
    base: served.base,
    async open(topics, lastEventId) {
      const client = await SseClient.open(served.base, subscribeToken(SECRET, topics), lastEventId);
      cleanups.push(() => client.close());
      return client;
    },
  };
}

const ev = (topic: string, n: number | string, event = "n"): EventInput => ({ topic, event, data: String(n) });

test("each instance reads only the partitions of its subscribers' topics; a batch spanning partitions reaches each", async () => {
  const key = `part:${++keys}`;
  const [a, b] = [await instance(key), await instance(key)];
  const [t0, t1] = [topicIn(0), topicIn(1)];
  const onA = await a.open([t0]);
  const onB = await b.open([t1]);
  const batch: EventInput[] = [];
  for (let n = 0; n < 50; n++) batch.push(ev(n % 2 === 0 ? t0 : t1, n));
  await a.router.publish(batch);
  await b.router.publish([ev(t0, "", "end"), ev(t1, "", "end")]);
  const gotA = await onA.untilMarker();
  const gotB = await onB.untilMarker();
  expect(gotA.map((e) => Number(e.data))).toEqual(batch.filter((e) => e.topic === t0).map((e) => Number(e.data)));
  expect(gotB.map((e) => Number(e.data))).toEqual(batch.filter((e) => e.topic === t1).map((e) => Number(e.data)));
  // Ids name their partition: <epoch>.<p>.<ms>-<seq>.
  for (const e of gotA) expect(e.id).toMatch(/^[0-9a-z]+\.0\.[0-9]+-[0-9]+$/);
  for (const e of gotB) expect(e.id).toMatch(/^[0-9a-z]+\.1\.[0-9]+-[0-9]+$/);
  const statsA = a.broker.partitionStats;
  const statsB = b.broker.partitionStats;
  expect(statsA.map((s) => s.reading)).toEqual([true, false, false, false]);
  expect(statsB.map((s) => s.reading)).toEqual([false, true, false, false]);
  // 25 events and the marker of its own partition, nothing of the others.
  expect(statsA.map((s) => s.eventsRead)).toEqual([26, 0, 0, 0]);
  expect(statsB.map((s) => s.eventsRead)).toEqual([0, 26, 0, 0]);
  expect(statsA[0]!.bytesRead).toBeGreaterThan(0);
  expect(statsA[1]!.bytesRead).toBe(0);
  // Each partition's keys share a hash tag (one Redis Cluster slot), named by partition and count.
  const conn = new Redis(redis.url);
  try {
    const names = (await conn.keys(`${key}:*`)).sort();
    expect(names).toEqual([`${key}:{p0/4}`, `${key}:{p0/4}:epoch`, `${key}:{p1/4}`, `${key}:{p1/4}:epoch`].concat(names.filter((n) => n.includes("presence"))));
    expect(await conn.xlen(`${key}:{p0/4}`)).toBe(26);
  } finally {
    conn.disconnect();
  }
}, 60_000);

test("resume is exact within a partition: resumed alternately on two instances under steady publishing, never repeats or skips", async () => {
  const key = `part:${++keys}`;
  const [a, b] = [await instance(key), await instance(key)];
  const t = topicIn(2);
  const noise = topicIn(3);
  // Each batch spans two partitions: one script call per partition.
  const publisher = steadyPublisher((n) => a.router.publish([ev(noise, n), ev(t, n)]), 5);
  let result: { duplicates: number; numbers: number[] };
  try {
    result = await resumeRepeatedly((round, lastId) => (round % 2 === 0 ? a : b).open([t], lastId), 120);
  } finally {
    await publisher.stop();
  }
  const { duplicates, numbers } = result;
  expect(duplicates).toBe(0);
  expectConsecutive(numbers);
  // Neither instance read the noise partition: no subscriber of it.
  expect(a.broker.partitionStats[3]!.eventsRead).toBe(0);
  expect(b.broker.partitionStats[3]!.eventsRead).toBe(0);
}, 120_000);

test("topics come and go: a partition is unsubscribed after partitionLinger, read again for the next subscriber, and a resume spans the time it was not read", async () => {
  const key = `part:${++keys}`;
  const c = await instance(key, { partitionLinger: 50 });
  const [t0, t1] = [topicIn(0), topicIn(1)];
  // A subscriber of another partition: its marker proves what Redis pushed before it arrived.
  const other = await c.open([t1]);
  const first = await c.open([t0]);
  await c.router.publish([ev(t0, 0)]);
  await first.waitForEvents(1);
  const lastId = first.lastId!;
  first.close();
  await waitFor(() => !c.broker.partitionStats[0]!.reading, 5000, "partition 0 unsubscribed");
  const readBefore = c.broker.partitionStats[0]!.eventsRead;
  await c.router.publish([ev(t0, 1), ev(t0, 2)]);
  await c.router.publish([ev(t1, "", "end")]);
  await other.untilMarker();
  expect(c.broker.partitionStats[0]!.eventsRead).toBe(readBefore);
  // A new subscriber: the partition is read again before its first heartbeat,
  // so an event published right after it reaches it (and none from before).
  const fresh = await c.open([t0]);
  expect(c.broker.partitionStats[0]!.reading).toBe(true);
  await c.router.publish([ev(t0, 3), ev(t0, "", "end")]);
  expect((await fresh.untilMarker()).map((e) => e.data)).toEqual(["3"]);
  // A resume from before the stretch nobody here read gets every event once, in order.
  const resumed = await c.open([t0], lastId);
  await c.router.publish([ev(t0, 4), ev(t0, "", "end2")]);
  const got = await resumed.untilMarker("end2");
  expect(got.filter((e) => e.event === "n").map((e) => Number(e.data))).toEqual([1, 2, 3, 4]);
  expect(got.filter((e) => e.event === "end")).toHaveLength(1);
}, 60_000);

test("topics that flap within partitionLinger keep their partition subscribed", async () => {
  const c = await instance(`part:${++keys}`, { partitionLinger: 60_000 });
  const t0 = topicIn(0);
  for (let i = 0; i < 5; i++) {
    const client = await c.open([t0]);
    client.close();
    await waitFor(() => c.router.stats.subscribers === 0, 5000, "the subscriber gone");
  }
  expect(c.broker.partitionStats[0]!.reading).toBe(true);
});

test("a subscription spanning partitions resumes with sse:reset (its last id places it in one partition only), then live events", async () => {
  const c = await instance(`part:${++keys}`);
  const [t0, t1] = [topicIn(0), topicIn(1)];
  const first = await c.open([t0, t1]);
  await c.router.publish([ev(t0, 0), ev(t1, 1)]);
  await first.waitForEvents(2);
  first.close();
  const again = await c.open([t0, t1], first.lastId);
  await c.router.publish([ev(t1, 2), ev(t0, "", "end")]);
  const got = await again.untilMarker();
  expect(got.map((e) => e.event)).toEqual(["sse:reset", "n"]);
  expect(JSON.parse(got[0]!.data)).toEqual({ reason: "unknown_id" });
  // An empty id: the client's Last-Event-ID is cleared, the next reconnect is a fresh start.
  expect(got[0]!.id).toBe("");
});

test("an id of one partition count is unknown to another (changing partitions starts new streams); P = 1 ids are unknown with P > 1", async () => {
  const key = `part:${++keys}`;
  const c = await instance(key);
  const t0 = topicIn(0);
  const first = await c.open([t0]);
  await c.router.publish([ev(t0, 0)]);
  await first.waitForEvents(1);
  const [epoch, , streamId] = first.lastId!.split(".");
  for (const id of [`${epoch}.${streamId}`, `${epoch}.1.${streamId}`]) {
    const client = await c.open([t0], id);
    await client.waitForEvents(1);
    expect(client.events[0]!.event).toBe("sse:reset");
  }
});

test("a batch spanning partitions with an idempotency key: the retry appends nothing in any partition", async () => {
  const key = `part:${++keys}`;
  const c = await instance(key);
  const topics = [topicIn(0), topicIn(1), topicIn(2)];
  const batch = topics.map((t, i) => ev(t, i));
  await c.router.publish(batch, { idempotencyKey: "k1" });
  await c.router.publish(batch, { idempotencyKey: "k1" });
  const conn = new Redis(redis.url);
  try {
    for (let p = 0; p < 3; p++) {
      expect(await conn.xlen(`${key}:{p${p}/4}`)).toBe(1);
      expect(await conn.exists(`${key}:{p${p}/4}:idem:k1`)).toBe(1);
    }
  } finally {
    conn.disconnect();
  }
});
