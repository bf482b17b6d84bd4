/**
 * The reader: follows the stream on a connection subscribed to its channel
 * and hands every entry to the hub's sink once, in stream order.
 *
 * Redis pushes each published batch to every instance in the same instant it
 * answers the publisher, so an event that got its 200 is already on its way
 * to every instance, even if Redis dies right after. (A blocking XREAD loop
 * has a window between one reply and the next request in which accepted
 * entries sit only in Redis.) On start and after every reconnect the reader
 * subscribes first, then catches up from the stream with XREAD after the
 * last entry it delivered, then switches to the pushed batches, skipping ids
 * it already has: nothing Redis accepted is skipped, nothing is delivered
 * twice. While connected, each pushed batch names the entry before it; a
 * reader that lacks that entry (stored, never pushed) catches up the same
 * way before delivering the batch, and an idle reader compares its position
 * with the stream's head every `checkInterval`. A stretch that was trimmed
 * before it could be read is reported to the hub (`sink.reset`): every
 * subscriber gets `sse:reset`.
 *
 * Its one state ({@link ReaderState}) changes only through
 * {@link nextReaderState}; the loop in {@link RedisReader.run} acts on it and
 * sleeps until an event (connection ready or closed, a gap, close) or the
 * idle check's timer wakes it, never polling.
 */
import { decode } from "@msgpack/msgpack";
import type { BrokerSink, FramedEvent } from "../broker";
import { backoff, type Connection, type OutageLog } from "./connection";
import { ZERO, compareStreamIds, formatEventId, formatStreamId, idPrefix, parseStreamId, type StreamId } from "./ids";
import { nextReaderState, type ReaderEvent, type ReaderState } from "./reader-state";
import { syncEpoch, type StreamKeys, type SyncResult } from "./scripts";
import { field, frameEntry, missedAfter, parseInfo, result, resultOrUndefined, type Entry } from "./stream";

/** Pushed batches kept while catching up, at most (older ones are read from the stream again). */
const MAX_PENDING = 50_000;

/** How long the idle check lets a batch that is already in the stream take to arrive pushed before it reads the stream, in ms (at most). */
const PUSH_GRACE = 1000;

/** Past epochs a reader remembers (each outage that empties or rewinds Redis adds one). */
const MAX_PAST_EPOCHS = 16;

export interface ReaderOptions {
  readonly keys: StreamKeys;
  /** Pub/sub channel the publish script pushes batches on. */
  readonly channel: string;
  /** Sharded pub/sub (SSUBSCRIBE, Redis 7, on a Cluster): the publish script SPUBLISHes. */
  readonly sharded: boolean;
  /** The partition this reader follows, named in its ids; undefined with one partition (ids without it). */
  readonly partition: number | undefined;
  /** Whether a topic is in this reader's partition (a reset concerns only their subscribers); undefined: every topic. */
  readonly owns: ((topic: string) => boolean) | undefined;
  readonly readCount: number;
  readonly checkInterval: number;
  readonly log: (message: string) => void;
  readonly outage: OutageLog;
}

export class RedisReader {
  private current: ReaderState = "starting";
  private sink: BrokerSink | undefined;
  /** Epoch of the stream followed; undefined until the first sync. */
  private epochValue: string | undefined;
  /** What precedes the stream id in this reader's SSE ids (see `idPrefix`). */
  private prefix = "";
  /** Last stream id handed to the sink (or the start position). */
  private cursorValue: StreamId = ZERO;
  /** Highest `entries-added` seen for the current epoch (detects a stream restored from an older copy). */
  private knownAdded = 0;
  /** Epochs this reader followed before the current one, newest last (at most {@link MAX_PAST_EPOCHS}). */
  private pastEpochs: string[] = [];
  /**
   * Redis 7's `entries-added` of the stream as of the entry at the cursor (a
   * lower bound: it counts only entries this reader saw since an exact
   * anchor), or undefined when unknown. Tells exactly whether entries after
   * the cursor were trimmed before this reader got them.
   */
  private addedAtCursor: number | undefined;
  /** Pushed batches received while not live, delivered after the catch-up. */
  private pending: unknown[][] = [];
  private pendingEntries = 0;
  /** Counts pushed batches dropped while catching up (overflow, unreadable): the catch-up then reads the stream once more. */
  private dropped = 0;
  /** Entries received from Redis (pushed or read from the stream, duplicates included), and their bytes as received. */
  eventsRead = 0;
  bytesRead = 0;
  /** Sharded: SSUBSCRIBE was answered (see {@link catchUp}). */
  private shardSubscribed = false;
  /** Wakes the loop's current wait, if any. */
  private wake: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  /** Resolved once an epoch is known (the reader follows the stream), or on close. */
  private readonly following: Promise<void>;
  private markFollowing!: () => void;

  constructor(
    /**
     * The subscribed connection (only (S)SUBSCRIBE, UNSUBSCRIBE and PING are
     * sent on it), shared by the readers of every partition. Its owner
     * connects and disconnects it, and passes its events on: messages to
     * {@link push}, close to {@link connectionLost}, ready (of either
     * connection) to {@link connectionReady}.
     */
    private readonly conn: Connection,
    /** The command connection, for the sync script and the catch-up reads. */
    private readonly cmd: Connection,
    private readonly options: ReaderOptions,
  ) {
    this.following = new Promise<void>((resolve) => (this.markFollowing = resolve));
  }

  /** The subscribed connection closed: every reconnect may be to a Redis that restarted, so catch up (re-checking the epoch) before delivering on. */
  connectionLost(): void {
    this.enter("lost");
  }

  /** A connection is ready (the catch-up reads through the command connection, which may come up after the subscribed one). */
  connectionReady(): void {
    this.signal();
  }

  get state(): ReaderState {
    return this.current;
  }

  /** Whether the subscribed connection is up. */
  get connected(): boolean {
    return this.conn.status === "ready";
  }

  /** Epoch of the stream followed; undefined until the first sync. */
  get epoch(): string | undefined {
    return this.epochValue;
  }

  /** Last stream id delivered (its `ms` is the Redis clock of the newest entry read). */
  get cursor(): StreamId {
    return this.cursorValue;
  }

  /** Starts the loop (the owner connects the connections); resolves once live, or after `startTimeout` ms (it keeps trying). */
  async start(sink: BrokerSink, startTimeout: number): Promise<void> {
    this.sink = sink;
    let started!: () => void;
    const ready = new Promise<void>((resolve) => (started = resolve));
    this.loopDone = this.run(started);
    const timer = setTimeout(started, startTimeout);
    await ready;
    clearTimeout(timer);
  }

  /** Resolves `true` once an epoch is known, or `false` after `timeout` ms or on close. */
  async waitUntilFollowing(timeout: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeout);
      timer.unref();
    });
    await Promise.race([this.following, expired]);
    clearTimeout(timer);
    return this.epochValue !== undefined && this.current !== "closed";
  }

  /**
   * Runs the sync script on `conn` with what this reader knows, so a stream
   * that went back in time gets a new epoch before anything is added to it.
   */
  sync(conn: Connection): Promise<SyncResult> {
    const epoch = this.epochValue;
    return syncEpoch(conn, this.options.keys, epoch === undefined ? undefined : { epoch, cursor: this.cursorValue, added: this.knownAdded, pastEpochs: this.pastEpochs });
  }

  /**
   * Stops reading and unsubscribes its channel (the connection stays, for
   * the other partitions; its owner closes it); resolves when the loop has
   * ended.
   */
  close(): Promise<void> {
    const wasClosed = this.current === "closed";
    this.enter("close");
    this.sink = undefined;
    this.markFollowing();
    this.signal();
    if (!wasClosed && this.conn.status === "ready") {
      const { channel, sharded } = this.options;
      (sharded ? this.conn.sunsubscribe(channel) : this.conn.unsubscribe(channel)).catch(() => undefined);
    }
    return this.loopDone?.catch(() => undefined) ?? Promise.resolve();
  }

  private enter(event: ReaderEvent): void {
    const next = nextReaderState(this.current, event);
    if (next === this.current) return;
    this.current = next;
    this.signal();
  }

  private signal(): void {
    this.wake?.();
  }

  /** Sleeps until {@link signal} or, with `ms`, at most that long. */
  private waitForSignal(ms?: number): Promise<void> {
    if (this.current === "closed") return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(done, ms);
      timer?.unref();
      this.wake = done;
      function done() {
        clearTimeout(timer);
        resolve();
      }
    }).finally(() => {
      this.wake = undefined;
    });
  }

  /**
   * Catches up whenever the state asks for it (start, reconnect, a gap); when
   * live, runs the idle check. Pushed batches flow through {@link onMessage}
   * on their own.
   */
  private async run(started: () => void): Promise<void> {
    let failures = 0;
    while (this.current !== "closed") {
      // The catch-up reads through the command connection: wait for both (it
      // may come up after the reader, and fails fast while it is not; reading
      // anyway would log an outage and retry).
      if (this.conn.status !== "ready" || this.cmd.status !== "ready") {
        // Woken by either connection's "ready" (or by close).
        await this.waitForSignal();
        continue;
      }
      if (this.current === "live") {
        await this.idleCheck();
        continue;
      }
      try {
        // Live unless the connection was lost, a gap seen, or the reader closed meanwhile.
        if (await this.catchUp()) {
          started();
          failures = 0;
          this.options.outage.recovered();
        }
      } catch (err) {
        // Read afresh (`state`, not the narrowed `current`): close may have come during the catch-up.
        if (this.state === "closed") break;
        this.enter("failed");
        this.options.outage.failed(err);
        await this.waitForSignal(backoff(failures++));
      }
    }
  }

  /**
   * Every `checkInterval` while live: an idle subscribed connection would not
   * notice a silently dead link (half-open TCP) for minutes, so ping it (on
   * failure reconnect, then catch up, so nothing is lost meanwhile); then
   * the head check.
   */
  private async idleCheck(): Promise<void> {
    await this.waitForSignal(this.options.checkInterval);
    if (this.current !== "live" || this.conn.status !== "ready") return;
    try {
      await this.conn.ping();
    } catch (err) {
      if (this.current !== "live") return;
      this.options.outage.failed(err);
      this.conn.disconnect(true);
      return;
    }
    await this.checkHead();
  }

  /**
   * The head check (Centrifugo calls it positioning): is the stream's newest
   * entry newer than the last one read, and still so a moment later (time
   * for a batch on its way to arrive pushed)? Then it was never pushed: read
   * the stream. A failed check is left to the connection's own error handling.
   */
  private async checkHead(): Promise<void> {
    let head: StreamId | undefined;
    try {
      const last = (await this.cmd.xrevrange(this.options.keys.key, "+", "-", "COUNT", 1)) as Entry[];
      head = last.length > 0 ? parseStreamId(last[0]![0]) : undefined;
    } catch {
      return;
    }
    if (head === undefined || compareStreamIds(head, this.cursorValue) <= 0) return;
    await this.waitForSignal(Math.min(PUSH_GRACE, this.options.checkInterval));
    if (this.current !== "live" || compareStreamIds(head, this.cursorValue) <= 0) return;
    this.options.log(
      `the stream's entries after ${formatStreamId(this.cursorValue)} up to ${formatStreamId(head)} were stored but not pushed; reading them from the stream`,
    );
    this.enter("gap");
  }

  /** Reads the stream again: stops delivering pushed batches (they wait in `pending`) until the loop caught up. */
  private gap(): void {
    // Already catching up: have it read once more, since this batch was not kept.
    if (this.current === "catching_up") this.dropped++;
    this.enter("gap");
  }

  /** A pushed batch from Redis on this reader's channel. */
  push(message: Buffer): void {
    if (this.current === "closed") return;
    this.bytesRead += message.length;
    let flat: unknown[];
    try {
      flat = decode(message) as unknown[];
      if (!Array.isArray(flat)) throw new Error("not an array");
    } catch {
      // Cannot happen with our script; if it does, read the stream instead of guessing.
      this.gap();
      return;
    }
    this.eventsRead += flat.length >> 2;
    this.receive(flat);
  }

  /**
   * A pushed batch `[id, topic, event, data, ..., previous id]`: to the sink
   * when live and nothing is missing before it, else kept until a catch-up
   * has read the stream. Missing: the batch says which entry preceded it in
   * the stream, and that entry is newer than the last one this reader has
   * (it was stored but never pushed, e.g. Redis died between the XADD and
   * the PUBLISH of its batch).
   */
  private receive(flat: unknown[]): void {
    if (this.current === "live") {
      const prev = flat.length % 4 === 1 ? parseStreamId(flat[flat.length - 1]) : undefined;
      if (prev === undefined || compareStreamIds(prev, this.cursorValue) <= 0) {
        this.deliverPushed(flat);
        return;
      }
      this.options.log(
        `entries after ${formatStreamId(this.cursorValue)} up to ${formatStreamId(prev)} were stored but not pushed; reading them from the stream`,
      );
      // The catch-up reads the stream from the cursor (this batch included), in order, without duplicates.
      this.gap();
    }
    this.pending.push(flat);
    this.pendingEntries += flat.length / 4;
    if (this.pendingEntries > MAX_PENDING) {
      this.pending = [];
      this.pendingEntries = 0;
      this.dropped++;
    }
  }

  /**
   * Subscribes, makes sure the stream has an epoch, decides where to read
   * from, reads the stream up to its head, then delivers the batches pushed
   * meanwhile and goes live. Same epoch: on from the cursor. New epoch: from
   * where it starts (the start of a stream that came back empty, or the head
   * of a stream restored from an older copy), so nothing new is skipped and
   * nothing old is delivered twice. Returns early, not live, if the
   * connection was lost or the reader closed meanwhile. True when live.
   */
  private async catchUp(): Promise<boolean> {
    this.enter("sync");
    this.pending = [];
    this.pendingEntries = 0;
    const { keys, readCount } = this.options;
    // Subscribed before reading the stream: every entry is in the catch-up or pushed (or both).
    if (!this.options.sharded) await this.conn.subscribe(this.options.channel);
    else if (!this.shardSubscribed) {
      // Once: ioredis's Cluster keeps its sharded channels and subscribes
      // them again on the shard's new owner after a failover or a
      // reconnect (each SSUBSCRIBE would add another copy to its list).
      await this.conn.ssubscribe(this.options.channel);
      this.shardSubscribed = true;
    }
    const { epoch, from, head, added } = await this.sync(this.cmd);
    if (this.current !== "catching_up") return false;
    if (this.epochValue === undefined) {
      // First start: live events from now on; older ones are history.
      this.cursorValue = head;
      // Redis 6.2 reports no count (0) for a stream that has entries.
      this.addedAtCursor = compareStreamIds(head, ZERO) === 0 ? 0 : added || undefined;
    } else if (epoch !== this.epochValue) {
      this.options.log(
        compareStreamIds(from, ZERO) === 0
          ? `stream ${keys.key} was lost (Redis restarted empty?); following the new stream from its start, old event ids now get sse:reset`
          : `stream ${keys.key} went back in time (Redis restored an older copy?); reading on from ${formatStreamId(from)}, old event ids now get sse:reset`,
      );
      if (compareStreamIds(from, this.cursorValue) < 0) this.cursorValue = from;
      // A stream that came back empty starts from nothing; a restored one is known only if nothing was added since.
      this.addedAtCursor =
        compareStreamIds(this.cursorValue, ZERO) === 0 ? 0 : compareStreamIds(this.cursorValue, head) === 0 ? added || undefined : undefined;
      this.knownAdded = 0;
      this.pastEpochs.push(this.epochValue);
      if (this.pastEpochs.length > MAX_PAST_EPOCHS) this.pastEpochs.shift();
    }
    this.knownAdded = Math.max(this.knownAdded, added);
    this.epochValue = epoch;
    this.prefix = idPrefix(epoch, this.options.partition);
    this.markFollowing();
    for (;;) {
      const dropped = this.dropped;
      const multi = this.cmd.multi();
      multi.call("XINFO", "STREAM", keys.key);
      multi.call("XREAD", "COUNT", readCount, "STREAMS", keys.key, formatStreamId(this.cursorValue));
      const replies = await multi.exec();
      if (this.current !== "catching_up") return false;
      const info = parseInfo(resultOrUndefined(replies, 0));
      if (info !== undefined) this.knownAdded = Math.max(this.knownAdded, info.entriesAdded);
      if (info !== undefined && missedAfter(info, this.cursorValue, this.addedAtCursor)) {
        // The stretch cannot be read any more: skip to the head and tell every
        // subscriber (sse:reset with the head's id) rather than deliver around a silent hole.
        this.options.log(
          `this instance fell behind the stream's history (entries after ${formatStreamId(this.cursorValue)} were trimmed before it read them); ` +
            `its subscribers get sse:reset and continue after ${formatStreamId(info.lastGenerated)}: raise historyLength/historyAge`,
        );
        this.cursorValue = info.lastGenerated;
        this.addedAtCursor = info.entriesAdded || undefined;
        this.sink?.reset?.("history_truncated", formatEventId(this.prefix, info.lastGenerated), this.options.owns);
        continue;
      }
      const n = this.deliverRead(result(replies, 1));
      // At the head, and nothing pushed meanwhile was dropped: the rest is in `pending`.
      if (n < readCount && dropped === this.dropped) break;
    }
    this.enter("caught_up");
    const pending = this.pending;
    this.pending = [];
    this.pendingEntries = 0;
    // Through the gap check: one may show a later gap, then the rest waits for the next catch-up.
    for (const flat of pending) this.receive(flat);
    return this.state === "live";
  }

  /** Frames the entries of an XREAD reply once and hands them to the sink in order. */
  private deliverRead(reply: unknown): number {
    if (!Array.isArray(reply) || reply.length === 0) return 0;
    const entries = (reply[0] as [string, Entry[]])[1];
    if (!Array.isArray(entries) || entries.length === 0) return 0;
    this.eventsRead += entries.length;
    for (const [id, fields] of entries) {
      this.bytesRead += id.length;
      for (const f of fields) this.bytesRead += f.length;
    }
    const framed: FramedEvent[] = [];
    for (const [id, fields] of entries) this.take(id, field(fields, "t"), field(fields, "e"), field(fields, "d"), framed);
    if (framed.length > 0) this.sink?.(framed);
    return entries.length;
  }

  /** Frames a pushed batch `[id, topic, event, data, ...]`, skipping ids already delivered. */
  private deliverPushed(flat: readonly unknown[]): void {
    const framed: FramedEvent[] = [];
    for (let i = 0; i + 3 < flat.length; i += 4) {
      if (this.take(flat[i], flat[i + 1], flat[i + 2], flat[i + 3], framed)) this.knownAdded++;
    }
    if (framed.length > 0) this.sink?.(framed);
  }

  /** One entry after the cursor: advance, frame, collect. False if it was not new. */
  private take(id: unknown, topic: unknown, event: unknown, data: unknown, out: FramedEvent[]): boolean {
    const streamId = parseStreamId(id);
    if (streamId === undefined || compareStreamIds(streamId, this.cursorValue) <= 0) return false;
    this.cursorValue = streamId;
    if (this.addedAtCursor !== undefined) this.addedAtCursor++;
    const framed = frameEntry(this.prefix, id as string, topic, event, data);
    if (framed !== undefined) out.push(framed);
    return true;
  }
}
