/**
 * Resume: history is the stream itself, trimmed approximately (`MAXLEN ~`
 * per entry, `MINID ~` per batch by age on the Redis clock). A replay reads
 * it with XRANGE in chunks; `XINFO STREAM` (first entry, entries added) tells
 * whether entries after the client's id may have been trimmed, checked again
 * with every chunk.
 */
import type { FramedEvent, ReplayOptions, ReplayResult } from "../broker";
import { unavailable, type Connection } from "./connection";
import { ZERO, compareStreamIds, formatEventId, formatStreamId, idPrefix, parseEpochValue, parseEventId, parseStreamId } from "./ids";
import { syncEpoch, type StreamKeys } from "./scripts";
import { field, frameEntry, parseInfo, result, resultOrUndefined, trimmedAfter, type Entry } from "./stream";

/** XRANGE COUNT of a paged replay's first chunk (later chunks of the same page double it, up to `readCount`). */
const FIRST_PAGE_COUNT = 64;

type Replies = [Error | null, unknown][] | null;

export class RedisReplayer {
  constructor(
    private readonly cmd: Connection,
    private readonly keys: StreamKeys,
    private readonly readCount: number,
    /** The partition of this stream, named in its ids; undefined with one partition. */
    private readonly partition: number | undefined = undefined,
  ) {}

  async replay(lastEventId: string, topics: ReadonlySet<string>, options: ReplayOptions = {}): Promise<ReplayResult> {
    const { key, epochKey } = this.keys;
    const wanted = parseEventId(lastEventId);
    const maxBytes = options.maxBytes ?? Infinity;
    // A paged replay reads small chunks first (a page of large events is
    // done after a few entries), doubling while the topics are sparse.
    let count = Number.isFinite(maxBytes) ? Math.min(this.readCount, FIRST_PAGE_COUNT) : this.readCount;
    let replies: Replies = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      // One snapshot: epoch, stream info and the first chunk.
      const multi = this.cmd.multi();
      multi.call("GET", epochKey);
      multi.call("XINFO", "STREAM", key);
      if (wanted) multi.call("XRANGE", key, "(" + formatStreamId(wanted.id), "+", "COUNT", count);
      try {
        replies = await multi.exec();
        // No epoch yet (Redis just came back empty): create it the one safe way, then look again.
        if (result(replies, 0) !== null || attempt > 0) break;
        await syncEpoch(this.cmd, this.keys, undefined);
      } catch (err) {
        throw unavailable(err);
      }
    }
    const epoch = parseEpochValue(result(replies, 0)).epoch;
    const prefix = idPrefix(epoch, this.partition);
    const info = parseInfo(resultOrUndefined(replies, 1));
    const head = info?.lastGenerated ?? ZERO;
    const headId = compareStreamIds(head, ZERO) > 0 ? formatEventId(prefix, head) : undefined;
    // Malformed, from another stream or partition, or newer than anything this stream produced (Redis came back empty).
    if (wanted === undefined || wanted.epoch !== epoch || wanted.partition !== this.partition || compareStreamIds(wanted.id, head) > 0) {
      return { ok: false, reason: "unknown_id", headId };
    }
    if (compareStreamIds(wanted.id, head) === 0) return { ok: true, events: [], next: lastEventId, done: true };
    if (info === undefined || trimmedAfter(info, wanted.id)) return { ok: false, reason: "history_truncated", headId };

    const events: FramedEvent[] = [];
    let bytes = 0;
    let chunk = result(replies, 2) as Entry[];
    let cursor = wanted.id;
    let done = false;
    for (;;) {
      for (const [id, fields] of chunk) {
        cursor = parseStreamId(id) ?? cursor;
        const topic = field(fields, "t");
        if (topic === undefined || !topics.has(topic)) continue;
        const framed = frameEntry(prefix, id, topic, field(fields, "e"), field(fields, "d"))!;
        events.push(framed);
        bytes += framed.frame.length;
        // The page is full: the next one starts after this entry.
        if (bytes >= maxBytes) break;
      }
      if (bytes >= maxBytes) {
        done = compareStreamIds(cursor, head) >= 0;
        break;
      }
      // Everything up to the head seen at the start is enough: newer entries reach the hub live.
      if (chunk.length < count || compareStreamIds(cursor, head) >= 0) {
        done = true;
        break;
      }
      count = Math.min(this.readCount, count * 2);
      const next = this.cmd.multi();
      next.call("XINFO", "STREAM", key);
      next.call("XRANGE", key, "(" + formatStreamId(cursor), "+", "COUNT", count);
      try {
        replies = await next.exec();
      } catch (err) {
        throw unavailable(err);
      }
      const now = parseInfo(resultOrUndefined(replies, 0));
      // Trimmed under our feet while reading (a very long replay on a busy stream).
      if (now === undefined || trimmedAfter(now, cursor)) return { ok: false, reason: "history_truncated", headId };
      chunk = result(replies, 1) as Entry[];
    }
    return { ok: true, events, next: formatEventId(prefix, cursor), done };
  }
}
