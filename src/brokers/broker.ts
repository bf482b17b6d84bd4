/**
 * The broker (transport) is the ordered event log a hub publishes to and
 * receives from. The hub never numbers or stores events itself; the broker
 * assigns ids, keeps the bounded history used for resume, and hands every
 * event, framed once, to the hub's sink in log order.
 *
 * Two implementations: {@link MemoryBroker} (default, one process) and the
 * Redis broker in `sse-hub/redis` (many processes and machines).
 */
import { SseError } from "../errors";
import { frameEvent, frameText } from "../framing/frame";
import type { EventInput } from "../types";
import { integerOption, rejectUnknownKeys } from "../validate";

/** An event with its id, framed once; `frame` is shared by every subscriber. */
export interface FramedEvent {
  readonly id: string;
  readonly topic: string;
  readonly frame: Buffer;
}

/** Why a resume could not be served from history. */
export type ResetReason = "unknown_id" | "history_truncated";

export interface ReplayOptions {
  /**
   * Ends the page once its frames reach this many bytes (a page has at least
   * one event, so one event larger than this is still returned). Defaults to
   * no limit (everything up to the newest event).
   */
  readonly maxBytes?: number;
}

export type ReplayResult =
  | {
      readonly ok: true;
      /** Events of the page, oldest first; `frame`s are the log's shared Buffers. */
      readonly events: readonly FramedEvent[];
      /**
       * The log position this page scanned up to (an id of this log, possibly
       * of an event on another topic): pass it as `lastEventId` to read the
       * next page. The id asked for when nothing was scanned.
       */
      readonly next: string;
      /** The page reached the newest event of the log as it was when read. */
      readonly done: boolean;
    }
  | {
      readonly ok: false;
      readonly reason: ResetReason;
      /** Id of the newest event in the log (if any), so the client can resume from here next time. */
      readonly headId: string | undefined;
    };

/**
 * Receives every event of the log, in order, exactly once per broker. A
 * plain function is a valid sink; the hub's sink also has {@link BrokerSink.reset}.
 */
export interface BrokerSink {
  (events: readonly FramedEvent[]): void;
  /**
   * The broker could not deliver a stretch of the log to this hub (e.g. it
   * fell behind a trimmed history while connected) and continues after
   * `headId`: every subscriber must be told with `sse:reset` instead of
   * silently missing events. Optional, so a plain function stays a sink.
   * With `topics`, only subscribers with a topic it accepts missed the
   * stretch (a partitioned broker skipped one partition); defaults to all.
   */
  reset?(reason: ResetReason, headId: string | undefined, topics?: (topic: string) => boolean): void;
}

/** Options of one {@link Broker.publish} call. */
export interface PublishOptions {
  /**
   * Makes a retry of the same batch harmless: a second publish with the same
   * key within the broker's idempotency window resolves without appending
   * anything. Validated by the router (see `MAX_IDEMPOTENCY_KEY_LENGTH`).
   * Defaults to `undefined` (every call appends).
   */
  readonly idempotencyKey?: string;
}

/** State of a broker's connection to its log, for `/health` and `/metrics`. */
export type BrokerState = "ready" | "catching_up" | "unavailable";

/**
 * Optional broker ability: report whether the broker can accept and deliver
 * events right now. A separate interface (asked for with {@link hasBrokerHealth})
 * so brokers written before it keep working.
 */
export interface BrokerHealth {
  /**
   * `ready`: publishing and delivering. `catching_up`: connected, reading
   * what it missed before delivering live events again (moments). `unavailable`:
   * cannot publish or deliver (e.g. Redis unreachable, or closed).
   */
  readonly state: BrokerState;
}

/** Whether `broker` reports its state ({@link BrokerHealth}); `/health` and `/metrics` ask with this. */
export function hasBrokerHealth(broker: object): broker is BrokerHealth {
  const state = (broker as Partial<BrokerHealth>).state;
  return state === "ready" || state === "catching_up" || state === "unavailable";
}

/**
 * Optional broker ability: read only what this hub's subscribers need (the
 * Redis broker with `partitions` > 1 reads only the partitions of topics in
 * use). A separate interface (asked for with {@link hasBrokerInterest}), as
 * for {@link BrokerHealth}: other brokers keep working without it.
 */
export interface BrokerInterest {
  /** `added`: topics that got their first subscriber on this hub; `removed`: topics whose last subscriber left. */
  interest(added: readonly string[], removed: readonly string[]): void;
  /**
   * Asked for each new subscriber (after {@link interest}): undefined when
   * every event of `topics` published from now on reaches the sink, else a
   * promise that resolves once it does (or once the broker gave up waiting;
   * it then catches up on its own). The hub tells the subscriber it is
   * subscribed (first heartbeat, then a resume's replay) only after it.
   */
  delivering(topics: readonly string[]): Promise<void> | undefined;
}

/** Whether `broker` wants to be told which topics are in use ({@link BrokerInterest}). */
export function hasBrokerInterest(broker: object): broker is BrokerInterest {
  return typeof (broker as Partial<BrokerInterest>).interest === "function";
}

export interface Broker {
  /**
   * Attaches the hub's sink. Called once, before any publish or replay. May
   * resolve after the broker is ready (e.g. connected).
   */
  start(sink: BrokerSink): Promise<void>;
  /**
   * Appends events to the log, in order. Resolves only once the broker has
   * accepted all of them (durably, for a distributed broker), or once it
   * found `options.idempotencyKey` among the keys of its window (then it
   * appends nothing). Rejects with an `SseError` `broker_unavailable` when
   * it could not, and `closed` after {@link close}.
   */
  publish(events: readonly EventInput[], options?: PublishOptions): Promise<void>;
  /**
   * One page of the events of `topics` after `lastEventId`, oldest first, or
   * why not. The hub reads the next page from `next` until `done` (paced by
   * the subscriber's socket) and handles the overlap with live events using
   * {@link compareIds}. Every event the sink delivered is already in the log,
   * so a page read after it arrived covers it.
   */
  replay(lastEventId: string, topics: ReadonlySet<string>, options?: ReplayOptions): Promise<ReplayResult>;
  /** Orders two ids of this broker's log: negative, zero, or positive. */
  compareIds(a: string, b: string): number;
  /** Stops the broker; no sink calls after it resolves. */
  close(): Promise<void>;
}

/** Defaults of {@link MemoryBrokerOptions}; the router's `historyBytes`/`historyAge` defaults are these. */
export const MEMORY_BROKER_DEFAULTS = Object.freeze({
  historyBytes: 16 * 1024 * 1024,
  historyAge: 5 * 60_000,
  idempotencyWindow: 5 * 60_000,
});

export interface MemoryBrokerOptions {
  /**
   * Bytes kept for resume: frame bytes plus {@link HISTORY_ENTRY_OVERHEAD}
   * per event, so it bounds the memory history really retains. `0` disables
   * history. Defaults to 16 MiB.
   */
  historyBytes?: number;
  /** Maximum age of kept events in ms. `0` means no age limit. Defaults to 5 minutes. */
  historyAge?: number;
  /**
   * How long an idempotency key is remembered, in ms; `0` remembers none.
   * At most {@link MAX_IDEMPOTENCY_KEYS} keys are kept (the oldest are
   * forgotten first). Defaults to `300000` (5 minutes).
   */
  idempotencyWindow?: number;
}

/** Idempotency keys a {@link MemoryBroker} remembers at most, so memory stays bounded whatever publishers send. */
export const MAX_IDEMPOTENCY_KEYS = 100_000;

/**
 * Memory one kept event costs besides its frame bytes (the entry object, the
 * Buffer view of its frame, its slots in the log and its topic's list):
 * `node --expose-gc bench/history-memory.js` measured 190 bytes on Node 20
 * (x64). Counted in `historyBytes`, so many tiny events cannot exceed it.
 */
export const HISTORY_ENTRY_OVERHEAD = 200;

/**
 * Frames kept in history are written into slabs owned by the history (not
 * Node's shared 8 KiB pool, where one kept frame would pin a whole pool slab
 * and everything else in it). History is trimmed oldest first, so a slab is
 * freed once its last frame is trimmed: at most one partly used slab at
 * each end of the history. Frames larger than {@link SLAB_MAX_FRAME} get a
 * Buffer of their own.
 */
const SLAB_BYTES = 64 * 1024;
const SLAB_MAX_FRAME = 4 * 1024;

/** A kept event: its id and `FramedEvent` are made again when a replay returns it (fewer objects per kept event). */
interface Entry {
  readonly seq: number;
  readonly time: number;
  readonly topic: string;
  readonly frame: Buffer;
}

/** A list with a moving start, compacted when more than half of it is dead. */
interface Log {
  entries: Entry[];
  start: number;
}

/** A topic's entries; kept events share its `topic` string instead of one string each. */
interface TopicLog extends Log {
  readonly topic: string;
}

function compact(log: Log): void {
  if (log.start > 1024 && log.start * 2 > log.entries.length) {
    log.entries = log.entries.slice(log.start);
    log.start = 0;
  }
}

/** Index of the first entry of `log` with `seq > after` (entries are in seq order). */
function firstAfter(log: Log, after: number): number {
  let lo = log.start;
  let hi = log.entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (log.entries[mid]!.seq <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * In-process broker: ids are `<epoch>-<seq>`, where the epoch is random per
 * broker instance so ids from a previous process (or another hub) are
 * recognised as unknown instead of being mistaken for local ones.
 *
 * History is one log in publish order (for trimming) plus, per topic, the
 * same entries in order, so a resume costs what it returns: a binary search
 * per topic to the client's id, then a merge of the topics' lists.
 */
export class MemoryBroker implements Broker, BrokerHealth {
  readonly epoch: string;
  private readonly historyBytes: number;
  private readonly historyAge: number;
  private readonly idempotencyWindow: number;
  /** Recent idempotency keys → when they expire; insertion order is expiry order (one window for all). */
  private keys = new Map<string, number>();
  private sink: BrokerSink | undefined;
  private seq = 0;
  /** Every kept entry, oldest first. */
  private log: Log = { entries: [], start: 0 };
  /** The same entries by topic. */
  private byTopic = new Map<string, TopicLog>();
  private bytes = 0;
  private slab: Buffer = Buffer.allocUnsafeSlow(0);
  private slabUsed = 0;
  private closed = false;

  constructor(options: MemoryBrokerOptions = {}) {
    this.epoch = Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
    rejectUnknownKeys("MemoryBroker", options, ["historyBytes", "historyAge", "idempotencyWindow"]);
    this.historyBytes = integerOption("historyBytes", options.historyBytes, MEMORY_BROKER_DEFAULTS.historyBytes, 0);
    this.historyAge = integerOption("historyAge", options.historyAge, MEMORY_BROKER_DEFAULTS.historyAge, 0);
    this.idempotencyWindow = integerOption("idempotencyWindow", options.idempotencyWindow, MEMORY_BROKER_DEFAULTS.idempotencyWindow, 0);
  }

  /** Always `ready` until closed: the log is this process's memory. */
  get state(): BrokerState {
    return this.closed ? "unavailable" : "ready";
  }

  async start(sink: BrokerSink): Promise<void> {
    // The same contract as the Redis broker: one hub per broker. A second hub
    // would silently take the sink over and the first would never get an event.
    if (this.sink !== undefined) throw new SseError("invalid_option", "a MemoryBroker serves one hub; create one broker per router");
    this.sink = sink;
  }

  async publish(events: readonly EventInput[], options?: PublishOptions): Promise<void> {
    // The same contract as the Redis broker: a closed broker accepts nothing, and says so.
    if (this.closed) throw new SseError("closed", "the broker is closed");
    const now = Date.now();
    if (options?.idempotencyKey !== undefined && this.seen(options.idempotencyKey, now)) return;
    const keep = this.historyBytes > 0;
    const framed: FramedEvent[] = new Array(events.length);
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const seq = ++this.seq;
      const id = this.epoch + "-" + seq;
      if (keep) {
        let topicLog = this.byTopic.get(e.topic);
        if (topicLog === undefined) this.byTopic.set(e.topic, (topicLog = { entries: [], start: 0, topic: e.topic }));
        const entry: Entry = { seq, time: now, topic: topicLog.topic, frame: this.store(frameText(e.event, e.data, id)) };
        framed[i] = { id, topic: entry.topic, frame: entry.frame };
        this.remember(entry, topicLog);
      } else {
        framed[i] = { id, topic: e.topic, frame: frameEvent(e.event, e.data, id) };
      }
    }
    this.trim(now);
    this.sink?.(framed);
  }

  async replay(lastEventId: string, topics: ReadonlySet<string>, options: ReplayOptions = {}): Promise<ReplayResult> {
    const seq = this.parse(lastEventId);
    const headId = this.seq > 0 ? this.epoch + "-" + this.seq : undefined;
    if (seq === undefined || seq > this.seq) return { ok: false, reason: "unknown_id", headId };
    this.trim(Date.now());
    const { entries, start } = this.log;
    const firstSeq = start < entries.length ? entries[start]!.seq : this.seq + 1;
    if (seq < firstSeq - 1) return { ok: false, reason: "history_truncated", headId };
    const maxBytes = options.maxBytes ?? Infinity;
    // One cursor per topic with entries after `seq`; merged by seq.
    const lists: Entry[][] = [];
    const at: number[] = [];
    for (const topic of topics) {
      const log = this.byTopic.get(topic);
      if (log === undefined) continue;
      const i = firstAfter(log, seq);
      if (i < log.entries.length) {
        lists.push(log.entries);
        at.push(i);
      }
    }
    const events: FramedEvent[] = [];
    let bytes = 0;
    while (lists.length > 0 && bytes < maxBytes) {
      let k = 0;
      for (let j = 1; j < lists.length; j++) if (lists[j]![at[j]!]!.seq < lists[k]![at[k]!]!.seq) k = j;
      const list = lists[k]!;
      const entry = list[at[k]!]!;
      events.push({ id: this.epoch + "-" + entry.seq, topic: entry.topic, frame: entry.frame });
      bytes += entry.frame.length;
      if (++at[k]! === list.length) {
        lists.splice(k, 1);
        at.splice(k, 1);
      }
    }
    // Stopped by the size bound with events left: the next page starts after
    // the last one returned. Else everything up to the head was scanned.
    if (lists.length > 0) return { ok: true, events, next: events[events.length - 1]!.id, done: false };
    return { ok: true, events, next: headId ?? lastEventId, done: true };
  }

  compareIds(a: string, b: string): number {
    return (this.parse(a) ?? -1) - (this.parse(b) ?? -1);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.sink = undefined;
    this.log = { entries: [], start: 0 };
    this.byTopic = new Map();
    this.bytes = 0;
    this.keys.clear();
  }

  /** Number of events kept for resume, and the bytes counted for them (frames plus a fixed overhead each). */
  get history(): { events: number; bytes: number } {
    return { events: this.log.entries.length - this.log.start, bytes: this.bytes };
  }

  /** Was `key` used within the window? If not, remembers it (the caller then publishes). */
  private seen(key: string, now: number): boolean {
    if (this.idempotencyWindow === 0) return false;
    for (const [old, expires] of this.keys) {
      if (expires > now && this.keys.size < MAX_IDEMPOTENCY_KEYS) break;
      this.keys.delete(old);
    }
    const expires = this.keys.get(key);
    if (expires !== undefined && expires > now) return true;
    // Deleted first so a re-used key moves to the end: insertion order stays expiry order.
    this.keys.delete(key);
    this.keys.set(key, now + this.idempotencyWindow);
    return false;
  }

  private parse(id: string): number | undefined {
    const dash = id.lastIndexOf("-");
    if (dash <= 0 || id.slice(0, dash) !== this.epoch) return undefined;
    const digits = id.slice(dash + 1);
    if (!/^[0-9]{1,15}$/.test(digits)) return undefined;
    return Number(digits);
  }

  /** A frame's bytes in a history slab (or a Buffer of its own if large), never in Node's shared pool. */
  private store(text: string): Buffer {
    const length = Buffer.byteLength(text, "utf8");
    if (length > SLAB_MAX_FRAME) {
      const own = Buffer.allocUnsafeSlow(length);
      own.write(text, 0, length, "utf8");
      return own;
    }
    if (length > this.slab.length - this.slabUsed) {
      this.slab = Buffer.allocUnsafeSlow(SLAB_BYTES);
      this.slabUsed = 0;
    }
    const start = this.slabUsed;
    this.slab.write(text, start, length, "utf8");
    this.slabUsed = start + length;
    return this.slab.subarray(start, start + length);
  }

  private remember(entry: Entry, topicLog: TopicLog): void {
    this.log.entries.push(entry);
    topicLog.entries.push(entry);
    this.bytes += entry.frame.length + HISTORY_ENTRY_OVERHEAD;
  }

  private trim(now: number): void {
    const minTime = this.historyAge > 0 ? now - this.historyAge : -Infinity;
    const log = this.log;
    while (log.start < log.entries.length) {
      const oldest = log.entries[log.start]!;
      if (this.bytes <= this.historyBytes && oldest.time >= minTime) break;
      this.bytes -= oldest.frame.length + HISTORY_ENTRY_OVERHEAD;
      // Release the slot so the entry can be collected before compaction.
      (log.entries as (Entry | undefined)[])[log.start++] = undefined;
      // The oldest entry overall is the oldest of its topic.
      const topic = oldest.topic;
      const topicLog = this.byTopic.get(topic)!;
      (topicLog.entries as (Entry | undefined)[])[topicLog.start++] = undefined;
      if (topicLog.start === topicLog.entries.length) this.byTopic.delete(topic);
      else compact(topicLog);
    }
    compact(log);
  }
}
