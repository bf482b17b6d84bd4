/**
 * MemoryBroker history (issue 11, degraded items): `historyBytes` bounds the
 * memory history really retains (frames are not slices of Node's shared
 * buffer pool, and a fixed per-event overhead is counted), and a resume is
 * served from a per-topic index (correct events, order and resets whatever
 * the mix of topics, trimming and compaction; the speed is in
 * bench/resume-index.js).
 */
import v8 from "node:v8";
import vm from "node:vm";
import { HISTORY_ENTRY_OVERHEAD, MemoryBroker, type FramedEvent, type ReplayResult } from "../src/brokers/broker";
import type { EventInput } from "../src/tokens";

/** A real gc() (no --expose-gc needed). */
function findGc(): () => void {
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
}
const gc = findGc();

function liveBytes(): number {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

const MiB = 1024 * 1024;

async function started(options: ConstructorParameters<typeof MemoryBroker>[0]): Promise<{ broker: MemoryBroker; received: FramedEvent[] }> {
  const broker = new MemoryBroker(options);
  const received: FramedEvent[] = [];
  await broker.start((events) => received.push(...events));
  return { broker, received };
}

test("many tiny events under a small historyBytes retain a few × historyBytes at most (no pinned pool slabs)", async () => {
  const historyBytes = 1 * MiB;
  const broker = new MemoryBroker({ historyBytes, historyAge: 0 });
  await broker.start(() => undefined);
  const garbage: Buffer[] = [];
  const before = liveBytes();
  for (let i = 0; i < 300_000; i += 10) {
    const batch: EventInput[] = [];
    for (let j = 0; j < 10; j++) {
      // What a request does meanwhile: small pooled Buffers that die soon
      // (parsing, token decoding), between the frames in Node's pool slabs.
      garbage.push(Buffer.from(`request ${i + j} ${"x".repeat(300)}`));
      batch.push({ topic: `t${j}`, event: "e", data: String(i + j) });
    }
    await broker.publish(batch);
    garbage.length = 0;
  }
  const retained = liveBytes() - before;
  const { events, bytes } = broker.history;
  if (process.env["MEMORY_STATS"]) console.log({ retained, events, bytes });
  expect(bytes).toBeLessThanOrEqual(historyBytes);
  expect(events).toBeGreaterThan(historyBytes / (64 + HISTORY_ENTRY_OVERHEAD));
  expect({ retained, ok: retained <= 3 * historyBytes }).toEqual({ retained, ok: true });
  await broker.close();
});

test("frames kept in history are not slices of Node's buffer pool", async () => {
  const { broker, received } = await started({});
  await broker.publish([{ topic: "t", event: "e", data: "tiny" }, { topic: "t", event: "e", data: "x".repeat(10_000) }]);
  for (const e of received) expect(e.frame.buffer.byteLength).not.toBe(Buffer.poolSize);
  await broker.close();
});

/** What a replay must return: the received events of `topics` after `after`, in order. */
function expected(received: FramedEvent[], afterIndex: number, topics: Set<string>): string[] {
  return received.slice(afterIndex + 1).filter((e) => topics.has(e.topic)).map((e) => e.id);
}

/** Every page of a replay from `from`, with `maxBytes`, concatenated. */
async function replayAll(broker: MemoryBroker, from: string, topics: Set<string>, maxBytes?: number): Promise<ReplayResult & { ok: true }> {
  const events: FramedEvent[] = [];
  let cursor = from;
  for (;;) {
    const page = await broker.replay(cursor, topics, maxBytes === undefined ? {} : { maxBytes });
    if (!page.ok) throw new Error(`reset ${page.reason}`);
    events.push(...page.events);
    cursor = page.next;
    if (page.done) return { ok: true, events, next: cursor, done: true };
  }
}

test("indexed resume: random topics, ids and page sizes give exactly the events a full scan gives, in order, across trimming and compaction", async () => {
  // Small history: trimming and the per-topic compaction run many times.
  const { broker, received } = await started({ historyBytes: 200_000, historyAge: 0 });
  let seed = 42;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const topicNames = Array.from({ length: 12 }, (_, i) => `topic-${i}`);
  for (let round = 0; round < 60; round++) {
    const batch: EventInput[] = Array.from({ length: 1 + Math.floor(random() * 200) }, (_, i) => {
      // Skewed: topic-0 is busy, the others rare.
      const t = random() < 0.6 ? 0 : 1 + Math.floor(random() * 11);
      return { topic: topicNames[t]!, event: "e", data: `${round}.${i} ${"y".repeat(Math.floor(random() * 300))}` };
    });
    await broker.publish(batch);
    const kept = broker.history.events;
    const oldestKept = received.length - kept;
    for (let probe = 0; probe < 5; probe++) {
      const topics = new Set(topicNames.filter(() => random() < 0.3));
      topics.add("nobody");
      // Resume from the event just before the oldest kept one, or from any kept one.
      const afterIndex = oldestKept - 1 + Math.floor(random() * kept);
      const from = received[afterIndex]!.id;
      const want = expected(received, afterIndex, topics);
      const whole = await broker.replay(from, topics);
      expect(whole.ok && whole.events.map((e) => e.id)).toEqual(want);
      const paged = await replayAll(broker, from, topics, 1 + Math.floor(random() * 3000));
      expect(paged.events.map((e) => e.id)).toEqual(want);
      expect(paged.events.map((e) => e.frame)).toEqual(received.slice(afterIndex + 1).filter((e) => topics.has(e.topic)).map((e) => e.frame));
      expect(paged.next).toBe(received[received.length - 1]!.id);
    }
    // One before the oldest kept event's predecessor: its successor is gone.
    if (oldestKept >= 2) {
      expect(await broker.replay(received[oldestKept - 2]!.id, new Set(topicNames))).toEqual({
        ok: false,
        reason: "history_truncated",
        headId: received[received.length - 1]!.id,
      });
    }
  }
  expect(received.length - broker.history.events).toBeGreaterThan(2000);
  await broker.close();
});

test("a topic whose events were all trimmed, then published again, is served from its new events only", async () => {
  const { broker, received } = await started({ historyBytes: 20_000, historyAge: 0 });
  await broker.publish([{ topic: "rare", event: "e", data: "old" }]);
  for (let i = 0; i < 10; i++) await broker.publish(Array.from({ length: 20 }, () => ({ topic: "busy", event: "e", data: "z".repeat(100) })));
  const mark = received[received.length - 1]!.id;
  await broker.publish([{ topic: "rare", event: "e", data: "new" }]);
  const result = await broker.replay(mark, new Set(["rare"]));
  expect(result.ok && result.events.map((e) => e.frame.toString())).toEqual([`event:e\ndata:new\nid:${received[received.length - 1]!.id}\n\n`]);
  await broker.close();
});

test("by age: a paged resume reset once the events after its position aged out", async () => {
  const { broker, received } = await started({ historyAge: 100 });
  await broker.publish(Array.from({ length: 10 }, (_, i) => ({ topic: "t", event: "e", data: String(i) })));
  const page = await broker.replay(received[0]!.id, new Set(["t"]), { maxBytes: 1 });
  expect(page).toMatchObject({ ok: true, done: false, next: received[1]!.id });
  await new Promise((r) => setTimeout(r, 150));
  await broker.publish([{ topic: "t", event: "e", data: "late" }]);
  const next = await broker.replay(received[1]!.id, new Set(["t"]), { maxBytes: 1 });
  expect(next).toEqual({ ok: false, reason: "history_truncated", headId: received[received.length - 1]!.id });
  await broker.close();
});
