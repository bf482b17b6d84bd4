/**
 * Resume with the Redis broker under steady publishing (issue 11, item 3 and
 * the busy-backlog item): a replay's XRANGE can see an entry whose pushed
 * copy reaches the hub only after the replay was written, so the hub must
 * drop live events not newer than what it replayed, whenever they arrive;
 * and a large backlog is paged as the socket drains, so a reader that keeps
 * up catches up in one connection even while the stream is busy.
 */
import { RedisBroker } from "../src/brokers/redis";
import type { SseRouterOptions } from "../src/options";
import { createSseRouter, type SseRouter } from "../src/adapters/express";
import { submitToken, subscribeToken, type EventInput } from "../src/tokens";
import { CliServer, SECRET, SseClient, submit, twoInstancesOnRedis, waitFor } from "./helpers/redis";
import { expectConsecutive, resumeRepeatedly, steadyPublisher } from "./helpers/resume";
import { serveRouter } from "./helpers/sse";

const env = twoInstancesOnRedis();
const cleanups: Array<() => Promise<unknown> | unknown> = [];
let keys = 0;

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
}, 20_000);

/** A router on its own Redis broker (its own stream key), served on a free port. */
async function routerOnRedis(options: Partial<SseRouterOptions> = {}): Promise<{ router: SseRouter; base: string }> {
  const broker = new RedisBroker({ url: env.redis.url, key: `resume:${++keys}`, log: null });
  const router = createSseRouter({ secret: SECRET, broker, retry: 0, ...options });
  const served = await serveRouter(router);
  cleanups.push(async () => {
    await served.close();
    await broker.close();
  });
  await waitFor(() => broker.ready, 5000, "broker ready");
  return { router, base: served.base };
}

const ev = (n: number, data = ""): EventInput => ({ topic: "t", event: "n", data: `${n}${data}` });

test("one instance: resuming hundreds of times under an event every ~5 ms never repeats or skips an event", async () => {
  const { router, base } = await routerOnRedis();
  const token = subscribeToken(SECRET, ["t"]);
  const publisher = steadyPublisher((n) => router.publish([ev(n)]), 5);
  try {
    const { duplicates, numbers } = await resumeRepeatedly((_round, lastId) => SseClient.open(base, token, lastId), 300);
    expect(duplicates).toBe(0);
    expectConsecutive(numbers);
  } finally {
    await publisher.stop();
  }
}, 120_000);

test("two instances: published on one, resumed alternately on both, never repeats or skips an event", async () => {
  const publisher = steadyPublisher((n) => submit(env.a.url, submitToken(SECRET, [ev(n)])), 5);
  try {
    const servers: CliServer[] = [env.a, env.b];
    const { duplicates, numbers } = await resumeRepeatedly((round, lastId) => env.subscribe(servers[round % 2]!, ["t"], lastId), 300);
    expect(duplicates).toBe(0);
    expectConsecutive(numbers);
  } finally {
    await publisher.stop();
  }
}, 120_000);

test("a backlog of several MB while the topic stays busy: a reader that keeps up catches up in one connection, every event once, in order", async () => {
  const { router, base } = await routerOnRedis({ maxBufferBytes: 64 * 1024 });
  const token = subscribeToken(SECRET, ["t"]);
  const first = await SseClient.open(base, token);
  cleanups.push(() => first.close());
  await router.publish([ev(0)]);
  await first.waitForEvents(1);
  const from = first.lastId!;
  first.close();
  // ~6 MB of history after `from`.
  const payload = " " + "x".repeat(1000);
  let n = 1;
  for (let batch = 0; batch < 60; batch++) await router.publish(Array.from({ length: 100 }, () => ev(n++, payload)));
  const backlog = n;
  // The topic stays busy while the reader catches up: its live events are
  // more than the bound allows to hold while the replay is being written.
  const publisher = steadyPublisher((i) => router.publish(Array.from({ length: 10 }, (_, j) => ev(backlog + i * 10 + j, payload))), 2);
  let published: number;
  const reader = await SseClient.open(base, token, from);
  cleanups.push(() => reader.close());
  try {
    await waitFor(() => reader.events.length >= backlog - 1 || reader.closed, 60_000, "the backlog");
  } finally {
    published = backlog + (await publisher.stop()) * 10;
  }
  await router.publish([{ topic: "t", event: "end", data: "" }]);
  await waitFor(() => reader.events.some((e) => e.event === "end") || reader.closed, 30_000, "the end marker");
  expect(reader.closed).toBe(false);
  expect(router.stats.disconnects.slow).toBe(0);
  const numbers = reader.data("n").map((d) => Number.parseInt(d, 10));
  expect(numbers.length).toBe(published - 1);
  expectConsecutive(numbers);
  expect(numbers[0]).toBe(1);
}, 120_000);
