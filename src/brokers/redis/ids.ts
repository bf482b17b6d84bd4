/**
 * Stream ids, event ids and epochs: pure functions, no Redis (unit-tested in
 * __tests__/redis-ids.test.ts).
 *
 * An SSE id is `<epoch>.<ms>-<seq>`: the stream id of the entry, prefixed
 * with the epoch of the stream it belongs to, so an id from a stream that was
 * lost (Redis restarted empty) or restored from an older copy is recognised
 * as unknown instead of looking valid once new entries pass it.
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

/** The SSE id of a stream entry: `<epoch>.<ms>-<seq>`. */
export function formatEventId(epoch: string, id: StreamId | string): string {
  return epoch + "." + (typeof id === "string" ? id : formatStreamId(id));
}

/** `<epoch>.<ms>-<seq>` → parts, or `undefined` if it is not one of ours. */
export function parseEventId(id: string): { epoch: string; id: StreamId } | undefined {
  const dot = id.indexOf(".");
  if (dot <= 0) return undefined;
  const epoch = id.slice(0, dot);
  const streamId = parseStreamId(id.slice(dot + 1));
  return EPOCH.test(epoch) && streamId ? { epoch, id: streamId } : undefined;
}

/**
 * Orders two SSE ids of this broker by stream position (the epoch is not
 * compared: ids of one stream share it). Ids that are not ours sort before ours.
 */
export function compareEventIds(a: string, b: string): number {
  const pa = parseEventId(a);
  const pb = parseEventId(b);
  if (pa === undefined || pb === undefined) return (pa ? 1 : 0) - (pb ? 1 : 0);
  return compareStreamIds(pa.id, pb.id);
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
