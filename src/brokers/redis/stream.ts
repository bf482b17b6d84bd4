/**
 * Redis replies about the stream, and what they say about lost entries:
 * pure functions, no connection (unit-tested in __tests__/redis-ids.test.ts).
 */
import type { FramedEvent } from "../broker";
import { frameEvent } from "../../framing/frame";
import { ZERO, compareStreamIds, formatEventId, parseStreamId, type StreamId } from "./ids";

/** One stream entry as XRANGE / XREAD return it: the id and flat `[name, value, ...]` fields. */
export type Entry = [id: string, fields: string[]];

/** What `XINFO STREAM` tells about the stream. */
export interface StreamInfo {
  readonly lastGenerated: StreamId;
  /** Redis 7+: entries ever added to this stream (0 when unknown). */
  readonly entriesAdded: number;
  /** Redis 7+: the largest id ever removed with XDEL (trimming does not record it). */
  readonly maxDeleted: StreamId | undefined;
  /** Id of the oldest entry still in the stream. */
  readonly firstEntry: StreamId | undefined;
  readonly length: number;
}

/** XINFO STREAM's flat `[name, value, ...]` reply, or `undefined` (e.g. no such key). */
export function parseInfo(reply: unknown): StreamInfo | undefined {
  if (!Array.isArray(reply)) return undefined;
  const map = new Map<string, unknown>();
  for (let i = 0; i + 1 < reply.length; i += 2) map.set(String(reply[i]), reply[i + 1]);
  const first = map.get("first-entry");
  return {
    lastGenerated: parseStreamId(map.get("last-generated-id")) ?? ZERO,
    entriesAdded: Number(map.get("entries-added")) || 0,
    maxDeleted: parseStreamId(map.get("max-deleted-entry-id")),
    firstEntry: Array.isArray(first) ? parseStreamId(first[0]) : undefined,
    length: Number(map.get("length")) || 0,
  };
}

/** MULTI/EXEC reply `[[err, value], ...]`: the value, or throw the command's error. */
export function result(replies: [Error | null, unknown][] | null, index: number): unknown {
  const pair = replies?.[index];
  if (pair === undefined) throw new Error("Redis transaction was aborted");
  if (pair[0]) throw pair[0];
  return pair[1];
}

/** Like {@link result}, but `undefined` when the command failed (e.g. XINFO on a missing key). */
export function resultOrUndefined(replies: [Error | null, unknown][] | null, index: number): unknown {
  const pair = replies?.[index];
  return pair === undefined || pair[0] ? undefined : pair[1];
}

/** The value of field `name` in an entry's flat fields. */
export function field(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/**
 * Frames one entry (fields `t` topic, `e` event, `d` data, as the publish
 * script writes them) under its SSE id (`prefix`: see `idPrefix`), or `undefined` for an entry that is
 * not ours (someone else wrote to the key).
 */
export function frameEntry(prefix: string, id: string, topic: unknown, event: unknown, data: unknown): FramedEvent | undefined {
  if (typeof topic !== "string") return undefined;
  const eventId = formatEventId(prefix, id);
  return { id: eventId, topic, frame: frameEvent(typeof event === "string" ? event : "", typeof data === "string" ? data : "", eventId) };
}

/**
 * Were entries newer than `after` deleted (trimmed) from the stream?
 * Trimming removes the oldest entries, so while the entry `after` (or an
 * older one) is still there, nothing newer was trimmed. Once the oldest
 * entry is newer than `after`, entries right after it may be gone: assume
 * so (a needless reset is safe; a silent gap is not). Redis 7 also records
 * the largest id removed with XDEL (`max-deleted-entry-id`).
 */
export function trimmedAfter(info: StreamInfo, after: StreamId): boolean {
  if (compareStreamIds(info.lastGenerated, after) <= 0) return false;
  if (info.maxDeleted !== undefined && compareStreamIds(info.maxDeleted, after) > 0) return true;
  // Redis 7 counts every entry ever added: all still there means none trimmed
  // (e.g. reading a stream that came back empty from its start, 0-0, which
  // the first-entry test below would take for a trimmed one).
  if (info.entriesAdded > 0 && info.entriesAdded === info.length) return false;
  // Redis 6.2 has no count: from 0-0 the first-entry test would always say
  // trimmed, and a needless reset of every subscriber after each empty
  // restart is worse than missing a trim past historyLength during one.
  if (info.entriesAdded === 0 && compareStreamIds(after, ZERO) === 0) return false;
  return info.firstEntry === undefined || compareStreamIds(info.firstEntry, after) > 0;
}

/**
 * Did entries after a reader's `cursor` leave the stream (trimmed, deleted)
 * before it read them? Exact with Redis 7's count of entries ever added when
 * `addedAtCursor` (that count as of the cursor's entry) is known: all entries
 * left are newer than the cursor, so were all added after it still there?
 * (The age bound trims the cursor's own entry after a quiet `historyAge`;
 * that alone is no loss.) Otherwise {@link trimmedAfter}'s safe guess.
 */
export function missedAfter(info: StreamInfo, cursor: StreamId, addedAtCursor: number | undefined): boolean {
  if (addedAtCursor === undefined || info.entriesAdded === 0) return trimmedAfter(info, cursor);
  if (compareStreamIds(info.lastGenerated, cursor) <= 0) return false;
  if (info.firstEntry !== undefined && compareStreamIds(info.firstEntry, cursor) <= 0) {
    // The cursor's entry (or an older one) is still there: trimming removed nothing newer; XDEL might have.
    return info.maxDeleted !== undefined && compareStreamIds(info.maxDeleted, cursor) > 0;
  }
  return info.entriesAdded - addedAtCursor > info.length;
}
