/**
 * The Redis broker's pure parts, without a Redis server: stream ids, event
 * ids, epoch values, the trim checks on XINFO replies, and its options.
 */
import { RedisBroker, createRedisBroker } from "../src/brokers/redis";
import {
  ZERO,
  compareEventIds,
  compareStreamIds,
  formatEventId,
  formatStreamId,
  fnv1a,
  idPrefix,
  newEpoch,
  parseEpochValue,
  partitionOf,
  parseEventId,
  parseStreamId,
} from "../src/brokers/redis/ids";
import { frameEntry, missedAfter, parseInfo, trimmedAfter, type StreamInfo } from "../src/brokers/redis/stream";

const id = (ms: number, seq = 0) => ({ ms, seq });

describe("stream ids", () => {
  test("parse and format round-trip", () => {
    expect(parseStreamId("1700000000000-3")).toEqual({ ms: 1700000000000, seq: 3 });
    expect(formatStreamId({ ms: 1700000000000, seq: 3 })).toBe("1700000000000-3");
    expect(parseStreamId("0-0")).toEqual(ZERO);
  });

  test("anything else is undefined: not a string, no dash, signs, spaces, 16 digits", () => {
    for (const bad of [undefined, null, 5, "", "5", "5-", "-5", "a-1", "1-b", " 1-1", "1-1 ", "+1-1", "1.0-1", "1234567890123456-0", "0-1234567890123456"]) {
      expect(parseStreamId(bad)).toBeUndefined();
    }
  });

  test("order: by ms, then seq", () => {
    expect(compareStreamIds(id(1, 5), id(2, 0))).toBeLessThan(0);
    expect(compareStreamIds(id(2, 1), id(2, 0))).toBeGreaterThan(0);
    expect(compareStreamIds(id(2, 1), id(2, 1))).toBe(0);
  });
});

describe("event ids <epoch>.<ms>-<seq>", () => {
  test("format and parse", () => {
    expect(formatEventId("k3x9", id(17, 2))).toBe("k3x9.17-2");
    expect(formatEventId("k3x9", "17-2")).toBe("k3x9.17-2");
    expect(parseEventId("k3x9.17-2")).toEqual({ epoch: "k3x9", id: id(17, 2) });
  });

  test("ids that are not ours are undefined", () => {
    for (const bad of ["", "17-2", ".17-2", "K3X9.17-2", "k3x9.", "k3x9.17", "k3x9.17-2.1", "abcdefghijklmnopq.1-1", "42"]) {
      expect(parseEventId(bad)).toBeUndefined();
    }
  });

  test("compared by stream position; foreign ids sort first", () => {
    expect(compareEventIds("a.1-0", "b.2-0")).toBeLessThan(0);
    expect(compareEventIds("a.3-0", "a.2-9")).toBeGreaterThan(0);
    expect(compareEventIds("a.3-0", "a.3-0")).toBe(0);
    expect(compareEventIds("42", "a.0-0")).toBeLessThan(0);
    expect(compareEventIds("a.0-0", "42")).toBeGreaterThan(0);
    expect(compareEventIds("x", "y")).toBe(0);
  });
});

describe("partitioned ids <epoch>.<partition>.<ms>-<seq> and the topic hash", () => {
  test("one partition keeps today's ids; more name the partition", () => {
    expect(formatEventId(idPrefix("k3x9", undefined), id(17, 2))).toBe("k3x9.17-2");
    expect(formatEventId(idPrefix("k3x9", 3), id(17, 2))).toBe("k3x9.3.17-2");
    expect(parseEventId("k3x9.3.17-2")).toEqual({ epoch: "k3x9", partition: 3, id: id(17, 2) });
    expect(parseEventId("k3x9.0.17-2")).toEqual({ epoch: "k3x9", partition: 0, id: id(17, 2) });
    expect(parseEventId("k3x9.17-2")!.partition).toBeUndefined();
    for (const bad of ["k3x9.03.17-2", "k3x9.12345.17-2", "k3x9.-1.17-2", "k3x9..17-2", "k3x9.a.17-2", "k3x9.1.2.17-2", "k3x9.1.17"]) {
      expect(parseEventId(bad)).toBeUndefined();
    }
  });

  test("compared by partition, then position", () => {
    expect(compareEventIds("a.1.5-0", "a.1.6-0")).toBeLessThan(0);
    expect(compareEventIds("a.2.1-0", "a.1.9-0")).toBeGreaterThan(0);
    expect(compareEventIds("a.1.5-0", "a.1.5-0")).toBe(0);
  });

  test("FNV-1a 32-bit test vectors (every instance and version must hash a topic the same way)", () => {
    expect(fnv1a("")).toBe(0x811c9dc5);
    expect(fnv1a("a")).toBe(0xe40c292c);
    expect(fnv1a("foobar")).toBe(0xbf9cf968);
    // UTF-8 bytes, not UTF-16 code units.
    expect(fnv1a("ünï")).toBe(0x1b521a56);
    expect(partitionOf("user:42", 16)).toBe(0x2f6b7b82 % 16);
    expect(partitionOf("anything", 1)).toBe(0);
  });

  test("topics spread over the partitions", () => {
    const counts = new Array(16).fill(0);
    for (let i = 0; i < 16_000; i++) counts[partitionOf(`user:${i}`, 16)]++;
    for (const n of counts) expect(Math.abs(n - 1000)).toBeLessThan(150);
  });
});

describe("epoch values <epoch>@<stream id>", () => {
  test("the epoch and where it starts; a bare epoch or a bad id starts at 0-0", () => {
    expect(parseEpochValue("k3x9@1700000000000-4")).toEqual({ epoch: "k3x9", from: id(1700000000000, 4) });
    expect(parseEpochValue("k3x9")).toEqual({ epoch: "k3x9", from: ZERO });
    expect(parseEpochValue("k3x9@junk")).toEqual({ epoch: "k3x9", from: ZERO });
  });

  test("new epochs are short base-36 words that parse as event-id epochs, and differ", () => {
    const epochs = new Set(Array.from({ length: 100 }, newEpoch));
    expect(epochs.size).toBe(100);
    for (const e of epochs) {
      expect(e).toMatch(/^[0-9a-z]{1,10}$/);
      expect(parseEventId(formatEventId(e, ZERO))?.epoch).toBe(e);
    }
  });
});

describe("XINFO STREAM and the trim checks", () => {
  const info = (over: Partial<StreamInfo>): StreamInfo => ({
    lastGenerated: id(100),
    entriesAdded: 0,
    maxDeleted: undefined,
    firstEntry: id(50),
    length: 10,
    ...over,
  });

  test("parseInfo reads the flat reply (Redis 7 fields optional)", () => {
    const reply = ["length", 3, "last-generated-id", "9-1", "max-deleted-entry-id", "0-0", "entries-added", 5, "first-entry", ["7-0", ["t", "a"]]];
    expect(parseInfo(reply)).toEqual({ lastGenerated: id(9, 1), entriesAdded: 5, maxDeleted: ZERO, firstEntry: id(7), length: 3 });
    expect(parseInfo(["length", 0, "last-generated-id", "0-0", "first-entry", null])).toEqual({
      lastGenerated: ZERO,
      entriesAdded: 0,
      maxDeleted: undefined,
      firstEntry: undefined,
      length: 0,
    });
    expect(parseInfo(null)).toBeUndefined();
  });

  test("trimmedAfter: nothing newer, or the entry still there: not trimmed", () => {
    expect(trimmedAfter(info({}), id(100))).toBe(false);
    expect(trimmedAfter(info({ firstEntry: id(50) }), id(50))).toBe(false);
    expect(trimmedAfter(info({ firstEntry: id(50) }), id(60))).toBe(false);
  });

  test("trimmedAfter: oldest entry newer than the id, or an XDEL past it: maybe trimmed", () => {
    expect(trimmedAfter(info({ firstEntry: id(50) }), id(40))).toBe(true);
    expect(trimmedAfter(info({ firstEntry: undefined, length: 0 }), id(40))).toBe(true);
    expect(trimmedAfter(info({ maxDeleted: id(70) }), id(60))).toBe(true);
  });

  test("trimmedAfter: every entry ever added still there (Redis 7), or 0-0 on Redis 6.2: not trimmed", () => {
    expect(trimmedAfter(info({ entriesAdded: 10, length: 10 }), ZERO)).toBe(false);
    expect(trimmedAfter(info({ entriesAdded: 0 }), ZERO)).toBe(false);
    expect(trimmedAfter(info({ entriesAdded: 11, length: 10 }), ZERO)).toBe(true);
  });

  test("missedAfter: exact with the count at the cursor, else trimmedAfter's guess", () => {
    // The cursor's own entry aged out, but all 4 entries added after it are there: nothing missed.
    expect(missedAfter(info({ entriesAdded: 14, length: 4, firstEntry: id(61) }), id(60), 10)).toBe(false);
    // 5 added after it, 4 left: one was trimmed before it was read.
    expect(missedAfter(info({ entriesAdded: 15, length: 4, firstEntry: id(61) }), id(60), 10)).toBe(true);
    // Cursor entry still there: only an XDEL past it counts.
    expect(missedAfter(info({ entriesAdded: 15, firstEntry: id(50) }), id(60), 10)).toBe(false);
    expect(missedAfter(info({ entriesAdded: 15, firstEntry: id(50), maxDeleted: id(70) }), id(60), 10)).toBe(true);
    // At the head: nothing to miss.
    expect(missedAfter(info({ entriesAdded: 15, length: 1, firstEntry: id(100) }), id(100), 3)).toBe(false);
    // Count unknown: the guess.
    expect(missedAfter(info({ firstEntry: id(61) }), id(60), undefined)).toBe(true);
  });

  test("frameEntry frames ours once under the SSE id and skips entries without a topic", () => {
    const framed = frameEntry("e1", "5-0", "t", "n", "hi")!;
    expect({ id: framed.id, topic: framed.topic, frame: framed.frame.toString() }).toEqual({ id: "e1.5-0", topic: "t", frame: "event:n\ndata:hi\nid:e1.5-0\n\n" });
    expect(frameEntry("e1", "5-0", undefined, "n", "hi")).toBeUndefined();
  });
});

describe("options", () => {
  const codeAndMessage = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      return { code: (err as { code?: string }).code, message: (err as Error).message };
    }
    return undefined;
  };

  test("a misspelled option is an invalid_option naming it and what was meant", () => {
    expect(codeAndMessage(() => createRedisBroker({ historylength: 5000 } as never))).toEqual({
      code: "invalid_option",
      message:
        'RedisBroker: unknown option "historylength"; did you mean "historyLength"? (known: url, cluster, redis, key, partitions, partitionLinger, waitReplicas, historyLength, historyAge, publishTimeout, startTimeout, readCount, idempotencyWindow, checkInterval, log, logger, presenceTtl)',
    });
  });

  test("values are checked once, at construction", () => {
    expect(codeAndMessage(() => new RedisBroker({ key: "" }))).toEqual({ code: "invalid_option", message: "key must be a non-empty string" });
    expect(codeAndMessage(() => new RedisBroker({ historyLength: 10 }))).toEqual({ code: "invalid_option", message: "historyLength must be an integer >= 1000; got 10" });
    expect(codeAndMessage(() => new RedisBroker({ url: 6379 } as never))).toEqual({ code: "invalid_option", message: "url must be a Redis URL, e.g. redis://127.0.0.1:6379" });
    expect(codeAndMessage(() => new RedisBroker({ log: "yes" } as never))).toEqual({ code: "invalid_option", message: "log must be a function or null" });
  });

  test("partitions and cluster", () => {
    expect(codeAndMessage(() => new RedisBroker({ partitions: 0 }))).toEqual({ code: "invalid_option", message: "partitions must be an integer between 1 and 1024; got 0" });
    expect(codeAndMessage(() => new RedisBroker({ partitions: 4, key: "{sse}:events" }))?.message).toMatch(/must not contain \{ or \}/);
    expect(codeAndMessage(() => new RedisBroker({ cluster: [] }))?.message).toMatch(/cluster must be a non-empty array/);
    expect(codeAndMessage(() => new RedisBroker({ cluster: [{ host: "h", port: 1, tls: true }] } as never))?.message).toMatch(/unknown option "tls"/);
    expect(codeAndMessage(() => new RedisBroker({ cluster: [{ host: "h", port: 70000 }] }))?.message).toMatch(/cluster port must be an integer between 1 and 65535/);
    expect(codeAndMessage(() => new RedisBroker({ cluster: [{ host: "h", port: 7000 }], url: "redis://h" }))?.message).toMatch(/either url .* or cluster/);
    expect(codeAndMessage(() => new RedisBroker({ cluster: [{ host: "h", port: 7000 }] }))?.message).toMatch(/key needs a hash tag/);
    expect(codeAndMessage(() => new RedisBroker({ partitionLinger: -1 }))?.message).toMatch(/partitionLinger must be an integer/);
  });
});
