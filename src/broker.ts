/**
 * The broker (transport) is the ordered event log a hub publishes to and
 * receives from. The hub never numbers or stores events itself; the broker
 * assigns ids, keeps the bounded history used for resume, and hands every
 * event, framed once, to the hub's sink in log order.
 *
 * Two implementations: {@link MemoryBroker} (default, one process) and the
 * Redis broker in `sse-server/redis` (many processes and machines).
 */
import { SseError } from "./errors";
import { frameEvent } from "./frame";
import type { EventInput } from "./tokens";

/** An event with its id, framed once; `frame` is shared by every subscriber. */
export interface FramedEvent {
  readonly id: string;
  readonly topic: string;
  readonly frame: Buffer;
}

/** Why a resume could not be served from history. */
export type ResetReason = "unknown_id" | "history_truncated";

export type ReplayResult =
  | { readonly ok: true; readonly events: readonly FramedEvent[] }
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
   */
  reset?(reason: ResetReason, headId: string | undefined): void;
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
   * Events of `topics` after `lastEventId`, oldest first, or why not. The
   * hub handles the overlap with live events using {@link compareIds}.
   */
  replay(lastEventId: string, topics: ReadonlySet<string>): Promise<ReplayResult>;
  /** Orders two ids of this broker's log: negative, zero, or positive. */
  compareIds(a: string, b: string): number;
  /** Stops the broker; no sink calls after it resolves. */
  close(): Promise<void>;
}

export interface MemoryBrokerOptions {
  /** Bytes of framed events kept for resume. `0` disables history. Defaults to 16 MiB. */
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

interface Entry {
  readonly seq: number;
  readonly event: FramedEvent;
  readonly time: number;
}

/**
 * In-process broker: ids are `<epoch>-<seq>`, where the epoch is random per
 * broker instance so ids from a previous process (or another hub) are
 * recognised as unknown instead of being mistaken for local ones.
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
  /** History ring as an array with a moving start, compacted when half is dead. */
  private entries: Entry[] = [];
  private start0 = 0;
  private bytes = 0;
  private closed = false;

  constructor(options: MemoryBrokerOptions = {}) {
    this.epoch = Date.now().toString(36) + Math.random().toString(36).slice(2, 6);
    this.historyBytes = options.historyBytes ?? 16 * 1024 * 1024;
    this.historyAge = options.historyAge ?? 5 * 60_000;
    this.idempotencyWindow = options.idempotencyWindow ?? 5 * 60_000;
  }

  /** Always `ready` until closed: the log is this process's memory. */
  get state(): BrokerState {
    return this.closed ? "unavailable" : "ready";
  }

  async start(sink: BrokerSink): Promise<void> {
    this.sink = sink;
  }

  async publish(events: readonly EventInput[], options?: PublishOptions): Promise<void> {
    // The same contract as the Redis broker: a closed broker accepts nothing, and says so.
    if (this.closed) throw new SseError("closed", "the broker is closed");
    const now = Date.now();
    if (options?.idempotencyKey !== undefined && this.seen(options.idempotencyKey, now)) return;
    const framed: FramedEvent[] = new Array(events.length);
    for (let i = 0; i < events.length; i++) {
      const e = events[i]!;
      const seq = ++this.seq;
      const id = this.epoch + "-" + seq;
      const event: FramedEvent = { id, topic: e.topic, frame: frameEvent(e.event, e.data, id) };
      framed[i] = event;
      this.remember(seq, event, now);
    }
    this.trim(now);
    this.sink?.(framed);
  }

  async replay(lastEventId: string, topics: ReadonlySet<string>): Promise<ReplayResult> {
    const seq = this.parse(lastEventId);
    const headId = this.seq > 0 ? this.epoch + "-" + this.seq : undefined;
    if (seq === undefined || seq > this.seq) return { ok: false, reason: "unknown_id", headId };
    this.trim(Date.now());
    // Entries hold consecutive seqs, so the first one after `seq` is found by arithmetic.
    const firstSeq = this.start0 < this.entries.length ? this.entries[this.start0]!.seq : this.seq + 1;
    if (seq < firstSeq - 1) return { ok: false, reason: "history_truncated", headId };
    const events: FramedEvent[] = [];
    for (let i = this.start0 + (seq + 1 - firstSeq); i < this.entries.length; i++) {
      const event = this.entries[i]!.event;
      if (topics.has(event.topic)) events.push(event);
    }
    return { ok: true, events };
  }

  compareIds(a: string, b: string): number {
    return (this.parse(a) ?? -1) - (this.parse(b) ?? -1);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.sink = undefined;
    this.entries = [];
    this.start0 = 0;
    this.bytes = 0;
    this.keys.clear();
  }

  /** Number of events and bytes currently kept for resume. */
  get history(): { events: number; bytes: number } {
    return { events: this.entries.length - this.start0, bytes: this.bytes };
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

  private remember(seq: number, event: FramedEvent, now: number): void {
    if (this.historyBytes === 0) return;
    this.entries.push({ seq, event, time: now });
    this.bytes += event.frame.length;
  }

  private trim(now: number): void {
    const minTime = this.historyAge > 0 ? now - this.historyAge : -Infinity;
    while (this.start0 < this.entries.length) {
      const oldest = this.entries[this.start0]!;
      if (this.bytes <= this.historyBytes && oldest.time >= minTime) break;
      this.bytes -= oldest.event.frame.length;
      this.start0++;
    }
    if (this.start0 > 1024 && this.start0 * 2 > this.entries.length) {
      this.entries = this.entries.slice(this.start0);
      this.start0 = 0;
    }
  }
}
