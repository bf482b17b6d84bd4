/**
 * Stream ids, event ids and epochs: pure functions, no Redis (unit-tested in
 * __tests__/redis-ids.test.ts).
 *
 * An SSE id is `<epoch>.<ms>-<seq>`: the stream id of the entry, prefixed
 * with the epoch of the stream it belongs to, so an id from a stream that was
 * lost (Redis restarted empty) or restored from an older copy is recognised
 * as unknown instead of looking valid once new entries pass it. With
 * `partitions` > 1 the id also names its partition (each partition is a
 * stream of its own, with its own epoch): `<epoch>.<partition>.<ms>-<seq>`.
 * Both shapes are "an id prefix, a dot, a stream id": the prefix is what the
 * reader and the replayer put before every stream id of their partition.
 */
import { randomBytes } from "node:crypto";

/** A stream id `ms-seq`, as numbers (both stay far below 2^53 for `*` ids). */
export interface StreamId {
  readonly ms: number;
  readonly seq: number;
}

/** `0-0`: before every entry (the position of an empty stream). */
export const ZERO: StreamId = Object.freeze({ ms: 0, seq: 0 });

// At most 15 digits each, so both parts stay exact as numbers.
const STREAM_ID = /^([0-9]{1,15})-([0-9]{1,15})$/;
const EPOCH = /^[0-9a-z]{1,16}$/;

/** `"ms-seq"` → its parts, or `undefined` for anything else (including non-strings). */
export function parseStreamId(text: unknown): StreamId | undefined {
  if (typeof text !== "string") return undefined;
  const m = STREAM_ID.exec(text);
  return m ? { ms: Number(m[1]), seq: Number(m[2]) } : undefined;
}

/** Negative, zero or positive as `a` is before, equal to or after `b` in the stream. */
export function compareStreamIds(a: StreamId, b: StreamId): number {
  return a.ms - b.ms || a.seq - b.seq;
}

export function formatStreamId(id: StreamId): string {
  return id.ms + "-" + id.seq;
}

/** Partitions a broker may have at most (a partition number in an id has at most 4 digits). */
export const MAX_PARTITIONS = 1024;

const PARTITION = /^(0|[1-9][0-9]{0,3})$/;

/**
 * What goes before the stream id in the SSE ids of one partition's stream:
 * the epoch alone when the broker has one partition (today's ids, so streams
 * and clients of earlier versions keep resuming), `<epoch>.<partition>` with
 * more.
 */
export function idPrefix(epoch: string, partition: number | undefined): string {
  return partition === undefined ? epoch : epoch + "." + partition;
}

/** The SSE id of a stream entry: `<prefix>.<ms>-<seq>` (see {@link idPrefix}). */
export function formatEventId(prefix: string, id: StreamId | string): string {
  return prefix + "." + (typeof id === "string" ? id : formatStreamId(id));
}

/** A parsed SSE id: `partition` is undefined for the one-partition shape `<epoch>.<ms>-<seq>`. */
export interface EventId {
  readonly epoch: string;
  readonly partition?: number;
  readonly id: StreamId;
}

/** `<epoch>.<ms>-<seq>` or `<epoch>.<partition>.<ms>-<seq>` → parts, or `undefined` if it is not one of ours. */
export function parseEventId(id: string): EventId | undefined {
  const dot = id.indexOf(".");
  if (dot <= 0) return undefined;
  const epoch = id.slice(0, dot);
  if (!EPOCH.test(epoch)) return undefined;
  const rest = id.slice(dot + 1);
  const second = rest.indexOf(".");
  if (second === -1) {
    const streamId = parseStreamId(rest);
    return streamId ? { epoch, id: streamId } : undefined;
  }
  const partition = rest.slice(0, second);
  const streamId = parseStreamId(rest.slice(second + 1));
  return PARTITION.test(partition) && streamId ? { epoch, partition: Number(partition), id: streamId } : undefined;
}

/**
 * Orders two SSE ids of this broker: by partition (ids of different
 * partitions are not in one order; this only makes the order total), then
 * by stream position (the epoch is not compared: ids of one stream share
 * it). Ids that are not ours sort before ours.
 */
export function compareEventIds(a: string, b: string): number {
  const pa = parseEventId(a);
  const pb = parseEventId(b);
  if (pa === undefined || pb === undefined) return (pa ? 1 : 0) - (pb ? 1 : 0);
  return (pa.partition ?? -1) - (pb.partition ?? -1) || compareStreamIds(pa.id, pb.id);
}

/**
 * The partition of a topic: 32-bit FNV-1a of its UTF-8 bytes, modulo
 * `partitions`. Every instance (and every version) must agree on it, so it
 * is pinned by test vectors (__tests__/redis-ids.test.ts); FNV-1a because it
 * is tiny, fast on short strings and spreads them well. Hand-rolled: a
 * dependency for ten lines would be heavier than the code.
 */
export function partitionOf(topic: string, partitions: number): number {
  if (partitions === 1) return 0;
  return fnv1a(topic) % partitions;
}

/** 32-bit FNV-1a of the UTF-8 bytes of `text`, as an unsigned number. */
export function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  const bytes = Buffer.from(text, "utf8");
  for (let i = 0; i < bytes.length; i++) {
    hash ^= bytes[i]!;
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

/**
 * The epoch key holds `<epoch>@<stream id>`: the epoch, and from where in the
 * stream it is valid (`0-0` for a stream that started empty). Readers that
 * see a new epoch continue from there. A bare `<epoch>` (no `@`) is valid
 * from `0-0`.
 */
export function parseEpochValue(value: unknown): { epoch: string; from: StreamId } {
  const text = String(value);
  const at = text.indexOf("@");
  if (at === -1) return { epoch: text, from: ZERO };
  return { epoch: text.slice(0, at), from: parseStreamId(text.slice(at + 1)) ?? ZERO };
}

/** A new epoch: 48 random bits in base 36, short in every frame, unique enough per Redis dataset. */
export function newEpoch(): string {
  return parseInt(randomBytes(6).toString("hex"), 16).toString(36);
}
