/**
 * The Redis Cluster test harness itself (__tests__/helpers/redis-cluster.ts):
 * three real masters that ioredis `Cluster` can use for keys on every node
 * and for sharded pub/sub (SSUBSCRIBE / SPUBLISH, Redis 7), and a master
 * killed with a replica to fail over to.
 */
import Redis, { Cluster } from "ioredis";
import { RedisCluster, useRedisCluster } from "./helpers/redis-cluster";
import { waitFor } from "./helpers/redis";

const env = useRedisCluster();
const clients: Array<Redis | Cluster> = [];

// Each test's clients go before any cluster is killed (a client left on dead nodes keeps retrying).
afterEach(() => {
  for (const c of clients.splice(0)) c.disconnect();
});

function cluster(options: ConstructorParameters<typeof Cluster>[1] = {}): Cluster {
  const c = new Cluster(env.cluster.startupNodes, options);
  clients.push(c);
  return c;
}

/** One key per master: keys whose slots are served by each of the three. */
async function keyPerMaster(): Promise<string[]> {
  const byPort = new Map<number, string>();
  for (let i = 0; byPort.size < 3 && i < 1000; i++) {
    const key = `k${i}`;
    const master = await env.cluster.masterOf(key);
    if (!byPort.has(master.port)) byPort.set(master.port, key);
  }
  return [...byPort.values()];
}

test("three masters serve all 16384 slots between them", async () => {
  const masters = (await env.cluster.nodes()).filter((n) => n.role === "master");
  expect(masters).toHaveLength(3);
  const served = masters.flatMap((m) => m.slots).reduce((sum, [a, b]) => sum + (b - a + 1), 0);
  expect(served).toBe(16384);
});

test("ioredis Cluster sets and gets keys on every master", async () => {
  const c = cluster();
  const keys = await keyPerMaster();
  expect(keys).toHaveLength(3);
  for (const key of keys) await c.set(key, `v-${key}`);
  for (const key of keys) expect(await c.get(key)).toBe(`v-${key}`);
  // Each value lives on the master the harness names (asked directly, not through the cluster client).
  for (const key of keys) {
    const direct = new Redis({ host: "127.0.0.1", port: (await env.cluster.masterOf(key)).port, lazyConnect: true });
    clients.push(direct);
    expect(await direct.get(key)).toBe(`v-${key}`);
  }
});

test("hash-tagged keys share one slot: a script may touch them together", async () => {
  const c = cluster();
  expect(await env.cluster.slotOf("events:{p3}")).toBe(await env.cluster.slotOf("events:{p3}:idem:x"));
  await c.eval("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('SET', KEYS[2], ARGV[1])", 2, "events:{p3}", "events:{p3}:idem:x", "1");
  expect(await c.get("events:{p3}:idem:x")).toBe("1");
});

test("SSUBSCRIBE / SPUBLISH deliver on channels of every master", async () => {
  const sub = cluster({ shardedSubscribers: true });
  const pub = cluster();
  const channels = await keyPerMaster();
  const received: string[] = [];
  sub.on("smessage", (channel: string, message: string) => received.push(`${channel}=${message}`));
  for (const channel of channels) await sub.ssubscribe(channel);
  for (const channel of channels) await pub.spublish(channel, "hello");
  await waitFor(() => received.length === 3, 10_000, "one message per channel");
  expect(received.sort()).toEqual(channels.map((c) => `${c}=hello`).sort());
});

describe("with a replica per master", () => {
  let replicated: RedisCluster;
  beforeAll(async () => {
    replicated = await RedisCluster.start({ replicas: 1 });
  }, 60_000);
  afterAll(async () => {
    await replicated?.close();
  });

  test("killing a master promotes its replica, and its keys are served again", async () => {
    const c = new Cluster(replicated.startupNodes);
    clients.push(c);
    await c.set("survivor", "yes");
    const before = await replicated.masterOf("survivor");
    // WAIT on that master: its replica has the value before the master dies.
    const direct = new Redis({ host: "127.0.0.1", port: before.port });
    expect(await direct.wait(1, 5000)).toBe(1);
    direct.disconnect();
    await replicated.kill(before);
    const after = await replicated.masterOf("survivor");
    expect(after.port).not.toBe(before.port);
    await waitFor(async () => (await c.get("survivor").catch(() => null)) === "yes", 20_000, "the key served by the promoted replica");
  }, 60_000);
});
