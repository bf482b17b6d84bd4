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
  newEpoch,
  parseEpochValue,
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
        'RedisBroker: unknown option "historylength"; did you mean "historyLength"? (known: url, redis, key, historyLength, historyAge, publishTimeout, startTimeout, readCount, idempotencyWindow, checkInterval, log, logger, presenceTtl)',
    });
  });

  test("values are checked once, at construction", () => {
    expect(codeAndMessage(() => new RedisBroker({ key: "" }))).toEqual({ code: "invalid_option", message: "key must be a non-empty string" });
    expect(codeAndMessage(() => new RedisBroker({ historyLength: 10 }))).toEqual({ code: "invalid_option", message: "historyLength must be an integer >= 1000; got 10" });
    expect(codeAndMessage(() => new RedisBroker({ url: 6379 } as never))).toEqual({ code: "invalid_option", message: "url must be a Redis URL, e.g. redis://127.0.0.1:6379" });
    expect(codeAndMessage(() => new RedisBroker({ log: "yes" } as never))).toEqual({ code: "invalid_option", message: "log must be a function or null" });
  });
});
