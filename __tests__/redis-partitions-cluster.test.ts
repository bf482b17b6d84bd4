/**
 * The Redis broker on a real Redis Cluster (3 masters, F3's harness): the
 * partitions' streams spread over the masters (one hash tag per partition),
 * batches are pushed with sharded pub/sub so an instance receives only the
 * partitions it reads, resume is exact within a partition across instances,
 * presence works (its keys share one slot), and one partition works with a
 * hash-tagged key.
 */
import { RedisBroker, type RedisBrokerOptions } from "../src/brokers/redis";
import { partitionOf } from "../src/brokers/redis/ids";
import { createSseRouter, type SseRouter } from "../src/adapters/express";
import { subscribeToken, type EventInput } from "../src/tokens";
import { SECRET, SseClient, waitFor } from "./helpers/redis";
import { useRedisCluster } from "./helpers/redis-cluster";
import { expectConsecutive, resumeRepeatedly, steadyPublisher } from "./helpers/resume";
import { serveRouter } from "./helpers/sse";

const P = 8;
const env = useRedisCluster();
const cleanups: Array<() => Promise<unknown> | unknown> = [];
let keys = 0;

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}, 20_000);

function topicIn(p: number, partitions = P): string {
  for (let i = 0; ; i++) if (partitionOf("c" + i, partitions) === p) return "c" + i;
}

interface Instance {
  router: SseRouter;
  broker: RedisBroker;
  open(topics: string[], lastEventId?: string): Promise<SseClient>;
}

async function instance(key: string, options: RedisBrokerOptions = {}): Promise<Instance> {
  const broker = new RedisBroker({ cluster: env.cluster.startupNodes, key, partitions: P, log: null, ...options });
  const router = createSseRouter({ secret: SECRET, broker, retry: 0 });
  const served = await serveRouter(router);
  cleanups.push(async () => {
    await served.close();
    await broker.close();
  });
  await waitFor(() => broker.ready, 10_000, "broker ready");
  return {
    router,
    broker,
    async open(topics, lastEventId) {
      const client = await SseClient.open(served.base, subscribeToken(SECRET, topics), lastEventId);
      cleanups.push(() => client.close());
      return client;
    },
  };
}

const ev = (topic: string, n: number | string, event = "n"): EventInput => ({ topic, event, data: String(n) });

test("the partitions' streams are spread over the masters", async () => {
  const key = `cl:${++keys}`;
  const masters = new Set<number>();
  for (let p = 0; p < P; p++) {
    const stream = `${key}:{p${p}/${P}}`;
    // Stream, epoch, idempotency keys and the sharded channel share the partition's slot.
    expect(await env.cluster.slotOf(stream + ":epoch")).toBe(await env.cluster.slotOf(stream));
    expect(await env.cluster.slotOf(`sse-server:0:${stream}`)).toBe(await env.cluster.slotOf(stream));
    masters.add((await env.cluster.masterOf(stream)).port);
  }
  expect(masters.size).toBeGreaterThan(1);
});

test("on a Cluster each instance receives only the partitions it reads (sharded pub/sub), and a batch spanning masters reaches each", async () => {
  const key = `cl:${++keys}`;
  const [a, b] = [await instance(key), await instance(key)];
  // Two partitions on different masters.
  const t0 = topicIn(0);
  let q = 1;
  while ((await env.cluster.masterOf(`${key}:{p${q}/${P}}`)).port === (await env.cluster.masterOf(`${key}:{p0/${P}}`)).port) q++;
  const t1 = topicIn(q);
  const onA = await a.open([t0]);
  const onB = await b.open([t1]);
  const batch: EventInput[] = [];
  for (let n = 0; n < 40; n++) batch.push(ev(n % 2 === 0 ? t0 : t1, n));
  await a.router.publish(batch);
  await b.router.publish([ev(t0, "", "end"), ev(t1, "", "end")]);
  expect((await onA.untilMarker()).map((e) => Number(e.data))).toEqual(batch.filter((e) => e.topic === t0).map((e) => Number(e.data)));
  expect((await onB.untilMarker()).map((e) => Number(e.data))).toEqual(batch.filter((e) => e.topic === t1).map((e) => Number(e.data)));
  const readA = a.broker.partitionStats.map((s) => s.eventsRead);
  const readB = b.broker.partitionStats.map((s) => s.eventsRead);
  expect(readA[0]).toBe(21);
  expect(readB[q]).toBe(21);
  expect(readA.reduce((x, y) => x + y)).toBe(21);
  expect(readB.reduce((x, y) => x + y)).toBe(21);
}, 60_000);

test("on a Cluster resume is exact within a partition: resumed alternately on two instances under steady publishing", async () => {
  const key = `cl:${++keys}`;
  const [a, b] = [await instance(key), await instance(key)];
  const t = topicIn(5);
  const noise = topicIn(6);
  const publisher = steadyPublisher((n) => b.router.publish([ev(noise, n), ev(t, n)]), 5);
  try {
    const { duplicates, numbers } = await resumeRepeatedly((round, lastId) => (round % 2 === 0 ? a : b).open([t], lastId), 60);
    expect(duplicates).toBe(0);
    expectConsecutive(numbers);
  } finally {
    await publisher.stop();
  }
}, 120_000);

test("on a Cluster presence counts are shared (its keys share one slot)", async () => {
  const key = `cl:${++keys}`;
  const [a, b] = [await instance(key), await instance(key)];
  await a.broker.publishPresence(new Map([["x", 2], ["y", 1]]));
  expect(await b.broker.remotePresence(["x", "y", "z"])).toEqual([2, 1, 0]);
  await a.broker.clearPresence();
  expect(await b.broker.remotePresence(["x"])).toEqual([0]);
});

test("on a Cluster one partition works with a hash-tagged key (today's layout in one slot)", async () => {
  const key = `{cl1:${++keys}}:events`;
  const [a, b] = [await instance(key, { partitions: 1 }), await instance(key, { partitions: 1 })];
  const onB = await b.open(["x"]);
  await a.router.publish([ev("x", 1), ev("x", 2)]);
  await onB.waitForEvents(2);
  expect(onB.lastId).toMatch(/^[0-9a-z]+\.[0-9]+-[0-9]+$/);
  const first = onB.events[0]!.id!;
  onB.close();
  const resumed = await a.open(["x"], first);
  await a.router.publish([ev("x", "", "end")]);
  expect((await resumed.untilMarker()).map((e) => e.data)).toEqual(["2"]);
}, 30_000);
