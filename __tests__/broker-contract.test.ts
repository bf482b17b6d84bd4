/**
 * The Broker contract, one suite run against every implementation: the
 * in-process MemoryBroker and the Redis broker on a real redis-server.
 */
import { MemoryBroker, hasBrokerHealth, type Broker, type FramedEvent } from "../src/brokers/broker";
import { SseError } from "../src/errors";
import { frameEvent } from "../src/framing/frame";
import { RedisBroker } from "../src/brokers/redis";
import type { EventInput } from "../src/tokens";
import { RedisServer, hasRedisServer, sleep, waitFor } from "./helpers/redis";

interface Harness {
  /** A started broker whose sink appends to `received`. `small` bounds history to roughly 1000 short events. */
  create(small?: boolean, idempotencyWindow?: number): Promise<{ broker: Broker; received: FramedEvent[] }>;
  /** How many events to publish so that the first ones are out of a small history. */
  overflow: number;
  /** A well-formed id of the same broker kind that is newer than `id` (never issued yet). */
  newerThan(id: string): string;
  /** A well-formed id of the same kind from another log (another process, another Redis). */
  foreign(id: string): string;
}

let redis: RedisServer | undefined;
const open: Broker[] = [];
let keys = 0;

const memoryHarness: Harness = {
  async create(small = false, idempotencyWindow?: number) {
    const broker = new MemoryBroker({ ...(small ? { historyBytes: 50_000 } : {}), idempotencyWindow });
    const received: FramedEvent[] = [];
    await broker.start((events) => received.push(...events));
    open.push(broker);
    return { broker, received };
  },
  overflow: 3000,
  newerThan(id) {
    const dash = id.lastIndexOf("-");
    return id.slice(0, dash + 1) + (Number(id.slice(dash + 1)) + 1000);
  },
  foreign(id) {
    return "zz" + id;
  },
};

const redisHarness: Harness = {
  async create(small = false, idempotencyWindow?: number) {
    const broker = new RedisBroker({
      url: redis!.url,
      key: `contract:${++keys}`,
      log: null,
      idempotencyWindow,
      ...(small ? { historyLength: 1000 } : {}),
    });
    const received: FramedEvent[] = [];
    await broker.start((events) => received.push(...events));
    open.push(broker);
    return { broker, received };
  },
  overflow: 3000,
  newerThan(id) {
    const [epoch, rest] = id.split(".") as [string, string];
    return `${epoch}.${Number(rest.split("-")[0]) + 100_000}-0`;
  },
  foreign(id) {
    return "zz" + id;
  },
};

beforeAll(async () => {
  if (hasRedisServer()) redis = await RedisServer.start();
}, 20_000);

afterEach(async () => {
  await Promise.all(open.splice(0).map((b) => b.close()));
});

afterAll(async () => {
  await redis?.close();
});

function events(topic: string, count: number, from = 0): EventInput[] {
  return Array.from({ length: count }, (_, i) => ({ topic, event: "e" + (from + i), data: `data ${from + i}\nline 2` }));
}

const suites: Array<[string, Harness]> = [
  ["MemoryBroker", memoryHarness],
  ["RedisBroker", redisHarness],
];

describe.each(suites)("Broker contract: %s", (name, h) => {
  beforeAll(() => {
    if (name === "RedisBroker" && redis === undefined) throw new Error("redis-server is not installed (apt-get install redis-server)");
  });

  test("delivers every published event to the sink once, in publish order, framed once with its id", async () => {
    const { broker, received } = await h.create();
    const published = [...events("a", 1), ...events("b", 5, 1), ...events("a", 10, 6)];
    await broker.publish(published.slice(0, 1));
    await broker.publish(published.slice(1, 6));
    await broker.publish(published.slice(6));
    // A marker last: anything delivered twice would come before it.
    await broker.publish([{ topic: "z", event: "end", data: "" }]);
    await waitFor(() => received.some((e) => e.topic === "z"), 5000, "sink delivery up to the marker");
    expect(received).toHaveLength(published.length + 1);
    expect(received[published.length]!.topic).toBe("z");
    received.slice(0, published.length).forEach((got, i) => {
      const want = published[i]!;
      expect(got.topic).toBe(want.topic);
      expect(got.frame.equals(frameEvent(want.event, want.data, got.id))).toBe(true);
      if (i > 0) expect(broker.compareIds(received[i - 1]!.id, got.id)).toBeLessThan(0);
    });
    expect(new Set(received.map((e) => e.id)).size).toBe(published.length + 1);
  });

  test("publish resolves once the events are in the log (replay sees them at once)", async () => {
    const { broker, received } = await h.create();
    await broker.publish(events("a", 1));
    await waitFor(() => received.length === 1, 5000, "first event");
    const first = received[0]!.id;
    await broker.publish(events("a", 3, 1));
    const result = await broker.replay(first, new Set(["a"]));
    expect(result.ok).toBe(true);
    if (result.ok) expect(result.events.map((e) => e.frame.toString())).toEqual(
      events("a", 3, 1).map((e, i) => frameEvent(e.event, e.data, result.events[i]!.id).toString()),
    );
  });

  test("replay after an id returns only the given topics, oldest first, up to the newest", async () => {
    const { broker, received } = await h.create();
    await broker.publish([...events("a", 2), ...events("b", 2, 2), ...events("c", 2, 4)]);
    await waitFor(() => received.length === 6, 5000, "6 events");
    const after = received[0]!.id;
    await broker.publish([...events("b", 1, 6), ...events("a", 1, 7)]);
    await waitFor(() => received.length === 8, 5000, "8 events");
    const result = await broker.replay(after, new Set(["a", "b"]));
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    const want = received.slice(1).filter((e) => e.topic === "a" || e.topic === "b");
    expect(result.events.map((e) => e.id)).toEqual(want.map((e) => e.id));
    expect(result.events.map((e) => e.frame.toString())).toEqual(want.map((e) => e.frame.toString()));

    expect(result).toMatchObject({ next: received[7]!.id, done: true });

    const none = await broker.replay(received[7]!.id, new Set(["a", "b", "c"]));
    expect(none).toEqual({ ok: true, events: [], next: received[7]!.id, done: true });
    const other = await broker.replay(after, new Set(["zzz"]));
    expect(other).toEqual({ ok: true, events: [], next: received[7]!.id, done: true });
  });

  test("paged replay (maxBytes): pages end once full, continue from next, and together return every event once, in order", async () => {
    const { broker, received } = await h.create();
    // Three topics interleaved, of different sizes; the client reads two of them.
    const published: EventInput[] = [];
    for (let i = 0; i < 600; i++) published.push({ topic: ["a", "b", "c"][i % 3]!, event: "e", data: `${i} ${"x".repeat(i % 7 === 0 ? 2000 : 20)}` });
    await broker.publish(events("a", 1));
    await waitFor(() => received.length === 1, 5000, "first event");
    for (let i = 0; i < published.length; i += 100) await broker.publish(published.slice(i, i + 100));
    await waitFor(() => received.length === 601, 5000, "all events");
    const topics = new Set(["a", "c"]);
    const want = received.slice(1).filter((e) => topics.has(e.topic));
    const got: FramedEvent[] = [];
    let cursor = received[0]!.id;
    let pages = 0;
    const maxBytes = 4096;
    for (;;) {
      const page = await broker.replay(cursor, topics, { maxBytes });
      if (!page.ok) throw new Error(`reset: ${page.reason}`);
      pages++;
      const bytes = page.events.reduce((n, e) => n + e.frame.length, 0);
      // Full means: at most one event past the bound.
      if (page.events.length > 1) expect(bytes - page.events[page.events.length - 1]!.frame.length).toBeLessThan(maxBytes);
      if (!page.done) {
        expect(page.events.length).toBeGreaterThan(0);
        expect(bytes).toBeGreaterThanOrEqual(maxBytes);
      }
      got.push(...page.events);
      expect(broker.compareIds(page.next, cursor)).toBeGreaterThanOrEqual(0);
      cursor = page.next;
      if (page.done) break;
      expect(pages).toBeLessThan(1000);
    }
    expect(pages).toBeGreaterThan(5);
    expect(got.map((e) => e.id)).toEqual(want.map((e) => e.id));
    expect(got.map((e) => e.frame.toString())).toEqual(want.map((e) => e.frame.toString()));
    expect(cursor).toBe(received[600]!.id);
  });

  test("a paged replay whose next page was trimmed meanwhile gets history_truncated", async () => {
    const { broker, received } = await h.create(true);
    await broker.publish(events("a", 100));
    await waitFor(() => received.length === 100, 5000, "events");
    const page = await broker.replay(received[0]!.id, new Set(["a"]), { maxBytes: 1 });
    expect(page.ok && !page.done && page.events.length).toBe(1);
    if (!page.ok) return;
    for (let sent = 0; sent < h.overflow; sent += 1000) await broker.publish(events("a", 1000, sent));
    await waitFor(() => received.length === h.overflow + 100, 10_000, "all events");
    const head = received[received.length - 1]!.id;
    expect(await broker.replay(page.next, new Set(["a"]), { maxBytes: 1 })).toEqual({ ok: false, reason: "history_truncated", headId: head });
  });

  test("an unknown id (malformed, from another log, or newer than the log) gets unknown_id with the head id", async () => {
    const { broker, received } = await h.create();
    await broker.publish(events("a", 3));
    await waitFor(() => received.length === 3, 5000, "3 events");
    const head = received[2]!.id;
    for (const id of ["garbage", "", "1-2", "invalid", h.foreign(head), h.newerThan(head)]) {
      const result = await broker.replay(id, new Set(["a"]));
      expect({ id, result }).toEqual({ id, result: { ok: false, reason: "unknown_id", headId: head } });
    }
  });

  test("an id whose successors were trimmed from history gets history_truncated", async () => {
    const { broker, received } = await h.create(true);
    await broker.publish(events("a", 1));
    await waitFor(() => received.length === 1, 5000, "first event");
    const oldest = received[0]!.id;
    for (let sent = 0; sent < h.overflow; sent += 1000) await broker.publish(events("a", 1000, sent));
    await waitFor(() => received.length === h.overflow + 1, 10_000, "all events");
    const head = received[received.length - 1]!.id;
    const result = await broker.replay(oldest, new Set(["a"]));
    expect(result).toEqual({ ok: false, reason: "history_truncated", headId: head });
    // Recent ids are still served.
    const recent = await broker.replay(received[received.length - 3]!.id, new Set(["a"]));
    expect(recent.ok && recent.events.map((e) => e.id)).toEqual(received.slice(-2).map((e) => e.id));
  });

  test("compareIds orders ids numerically (9 < 10), equal ids compare 0", async () => {
    const { broker, received } = await h.create();
    for (let i = 0; i < 12; i++) await broker.publish(events("a", 1, i));
    await broker.publish(events("a", 12, 12));
    await waitFor(() => received.length === 24, 5000, "24 events");
    const ids = received.map((e) => e.id);
    for (let i = 0; i < ids.length; i++) {
      expect(broker.compareIds(ids[i]!, ids[i]!)).toBe(0);
      for (let j = i + 1; j < ids.length; j++) {
        expect(Math.sign(broker.compareIds(ids[i]!, ids[j]!))).toBe(-1);
        expect(Math.sign(broker.compareIds(ids[j]!, ids[i]!))).toBe(1);
      }
    }
    const shuffled = [...ids].reverse().sort((x, y) => broker.compareIds(x, y));
    expect(shuffled).toEqual(ids);
  });

  test("a broker serves one hub: a second start() rejects with invalid_option and the first sink keeps receiving", async () => {
    const { broker, received } = await h.create();
    const second: FramedEvent[] = [];
    const error = await broker.start((evs) => second.push(...evs)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(SseError);
    expect((error as SseError).code).toBe("invalid_option");
    await broker.publish(events("a", 3));
    await waitFor(() => received.length === 3, 5000, "the first sink's events");
    expect(second).toEqual([]);
  });

  test("after close(): publish rejects with SseError closed, and no sink calls", async () => {
    const { broker, received } = await h.create();
    await broker.publish(events("a", 5));
    await broker.close();
    const count = received.length;
    const error = await broker.publish(events("a", 5)).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(SseError);
    expect((error as SseError).code).toBe("closed");
    expect((error as SseError).status).toBe(503);
    await sleep(200);
    expect(received.length).toBe(count);
  });

  test("an idempotency key publishes once within the window; other keys and no key publish; after the window it publishes again", async () => {
    const { broker, received } = await h.create(false, 1500);
    await broker.publish(events("a", 2), { idempotencyKey: "k1" });
    await broker.publish(events("a", 2, 10), { idempotencyKey: "k1" }); // a retry: nothing appended
    await broker.publish(events("a", 1, 20), { idempotencyKey: "k2" });
    await broker.publish(events("a", 1, 30));
    await broker.publish(events("a", 1, 31));
    await waitFor(() => received.length >= 5, 5000, "5 events");
    // Then the window passes: the same key is new again (a marker ends the wait, no fixed sleep).
    await sleep(1600);
    await broker.publish(events("a", 1, 40), { idempotencyKey: "k1" });
    await broker.publish(events("a", 1, 50), { idempotencyKey: "marker" });
    await waitFor(() => received.some((e) => e.frame.includes("e50")), 5000, "the marker");
    expect(received.map((e) => /event:(\S+)/.exec(e.frame.toString())![1])).toEqual(["e0", "e1", "e20", "e30", "e31", "e40", "e50"]);
    // And the retry left nothing in history either.
    const replayed = await broker.replay(received[0]!.id, new Set(["a"]));
    expect(replayed.ok && replayed.events.map((e) => e.id)).toEqual(received.slice(1).map((e) => e.id));
  });

  test("reports its state (BrokerHealth): ready once started, unavailable once closed", async () => {
    const { broker } = await h.create();
    expect(hasBrokerHealth(broker)).toBe(true);
    if (!hasBrokerHealth(broker)) return;
    await waitFor(() => broker.state === "ready", 5000, "ready");
    await broker.close();
    expect(broker.state).toBe("unavailable");
  });
});
