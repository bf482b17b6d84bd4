/**
 * The partitioned Redis broker through a Redis Cluster failover (3 masters,
 * 1 replica each, F3's harness): the master of a partition a subscriber
 * reads is killed while events are published; once its replica took over,
 * publishing succeeds again and the subscriber has every acknowledged event
 * of its topic exactly once and in order (or an explicit `sse:reset`).
 * Publishes that fail (503) are retried with the same idempotency key, so an
 * event stored before its answer was lost is not stored twice.
 */
import Redis from "ioredis";
import { RedisBroker } from "../src/brokers/redis";
import { partitionOf } from "../src/brokers/redis/ids";
import { createSseRouter } from "../src/adapters/express";
import { subscribeToken } from "../src/tokens";
import { SECRET, SseClient, sleep, waitFor } from "./helpers/redis";
import { useRedisCluster } from "./helpers/redis-cluster";
import { serveRouter } from "./helpers/sse";

const P = 4;
const env = useRedisCluster({ replicas: 1 });

test("a master fails over: every acknowledged event of the partition reaches the subscriber once, in order", async () => {
  const key = "fo";
  const t = (() => {
    for (let i = 0; ; i++) if (partitionOf("f" + i, P) === 1) return "f" + i;
  })();
  const broker = new RedisBroker({ cluster: env.cluster.startupNodes, key, partitions: P, log: null, publishTimeout: 1000, checkInterval: 500 });
  const router = createSseRouter({ secret: SECRET, broker, retry: 0 });
  const served = await serveRouter(router);
  let client: SseClient | undefined;
  try {
    await waitFor(() => broker.ready, 10_000, "broker ready");
    client = await SseClient.open(served.base, subscribeToken(SECRET, [t]));
    const acknowledged: number[] = [];
    /** Publishes event n, retrying with its idempotency key until Redis accepts it. */
    let stopped = false;
    const publish = async (n: number) => {
      while (!stopped) {
        try {
          await router.publish([{ topic: t, event: "n", data: String(n) }], { idempotencyKey: `k${n}` });
          acknowledged.push(n);
          return;
        } catch {
          await sleep(100);
        }
      }
    };
    let n = 0;
    for (; n < 20; n++) await publish(n);
    const master = await env.cluster.masterOf(`${key}:{p1/${P}}`);
    // Its replica has the partition before the master dies (a replica that never synced is not promoted).
    const direct = new Redis({ host: "127.0.0.1", port: master.port });
    try {
      expect(await direct.wait(1, 10_000)).toBe(1);
    } finally {
      direct.disconnect();
    }
    const killed = env.cluster.kill(master);
    // Publishing goes on through the failover (each retried until accepted).
    const during = (async () => {
      for (; n < 60; n++) await publish(n);
    })();
    try {
      await killed;
    } catch (err) {
      // No failover: stop retrying, report why.
      stopped = true;
      throw err;
    }
    await during;
    await router.publish([{ topic: t, event: "end", data: "" }]);
    const got = await client.untilMarker("end", 30_000);
    const resets = got.filter((e) => e.event === "sse:reset");
    const numbers = got.filter((e) => e.event === "n").map((e) => Number(e.data));
    // Nothing twice, in order.
    expect(new Set(numbers).size).toBe(numbers.length);
    expect([...numbers].sort((a, b) => a - b)).toEqual(numbers);
    // Everything acknowledged, unless the subscriber was told.
    if (resets.length === 0) expect(numbers).toEqual(acknowledged);
    expect(acknowledged).toHaveLength(60);
  } finally {
    client?.close();
    await served.close();
    await broker.close();
  }
}, 120_000);
