/**
 * The hub: topic map, fan-out, per-subscriber backpressure, heartbeats and
 * the resume switch-over. It knows HTTP only as a writable response (`Sink`);
 * the router owns headers, tokens and routes.
 *
 * Hot path (see bench/): the broker frames each event once into a Buffer;
 * the hub appends that same Buffer to the pending list of every subscriber
 * of its topic and schedules one flush per event-loop turn, so all events of
 * a turn reach a subscriber in a single write. No per-subscriber timers or
 * closures: one heartbeat timer per hub, one shared `close` listener.
 */
import type { Broker, FramedEvent, ReplayResult, ResetReason } from "./broker";
import { SseError, isSseError } from "./errors";
import { HEARTBEAT, frameEvent, frameRetry, httpChunk } from "./frame";
import { GzipMember, SharedDeflate, type SharedBatch } from "./gzip-shared";
import type { EventInput } from "./types";

/** What the hub needs of an HTTP response (a `http.ServerResponse` fits). */
export interface Sink {
  write(chunk: Buffer): boolean;
  end(): unknown;
  destroy(): unknown;
  readonly writableLength: number;
  on(event: "close", listener: () => void): unknown;
  /** Added by `compression` and similar middleware: push buffered output out now. */
  flush?: () => void;
}

/**
 * The response's socket, when the router knows nothing else writes to the
 * response (no compression or other middleware wrapping `res.write`). The hub
 * then writes pre-framed bytes to it directly, `chunked` telling whether the
 * response uses HTTP/1.1 chunked transfer coding.
 */
export interface DirectSocket {
  readonly socket: { write(chunk: Buffer): boolean; readonly writableLength: number };
  readonly chunked: boolean;
}

/**
 * Why a subscriber was disconnected: the client went away, it was too slow
 * (buffer bound), the hub shut down, or its resume could not be served
 * because the broker was unavailable (it retries with the same id later).
 */
export type DisconnectReason = "client" | "slow" | "shutdown" | "broker";

export interface HubStats {
  /** Connected subscribers. */
  readonly subscribers: number;
  /** Topics with at least one subscriber. */
  readonly topics: number;
  /** Events received from the broker (published here or on another instance). */
  readonly eventsPublished: number;
  /** Event frames handed to subscriber sockets (one per event per subscriber). */
  readonly eventsDelivered: number;
  /** Subscribers that asked to resume and got the missed events. */
  readonly replays: number;
  /** Subscribers that asked to resume and got `sse:reset` instead. */
  readonly resets: number;
  /** Disconnects by reason; see {@link DisconnectReason}. */
  readonly disconnects: Readonly<Record<DisconnectReason, number>>;
}

export interface HubOptions {
  readonly broker: Broker;
  readonly maxBufferBytes: number;
  readonly heartbeatInterval: number;
  readonly retry: number;
  readonly retryJitter: number;
}

const kSubscriber = Symbol("sse-server.subscriber");

/** The shared compressor of one topic set (subscribers whose sorted topics are equal), and its batch of this flush. */
class GzipTopicSet {
  readonly engine = new SharedDeflate();
  members = 0;
  /** Majority vote (Boyer–Moore) over this flush's pending lists; `flush` tells flushes apart. */
  flush = -1;
  candidate: Buffer | Buffer[] | null = null;
  votes = 0;
  batch: SharedBatch | undefined = undefined;

  constructor(readonly key: string) {}
}

class Subscriber {
  /** Frames waiting for this turn's flush: one Buffer, or several. */
  pending: Buffer | Buffer[] | null = null;
  pendingBytes = 0;
  pendingEvents = 0;
  /** While a resume is being served: live events held back, else null. */
  held: FramedEvent[] | null = null;
  heldBytes = 0;
  closed = false;
  /** With gzip: this subscriber's member and its topic set's shared compressor. */
  gzip: GzipMember | undefined = undefined;
  gzipSet: GzipTopicSet | undefined = undefined;

  constructor(
    readonly hub: Hub,
    readonly sink: Sink,
    readonly topics: readonly string[],
    readonly direct: DirectSocket | undefined,
  ) {}
}

type SinkWithSubscriber = Sink & { [kSubscriber]?: Subscriber };

export class Hub {
  private readonly broker: Broker;
  private readonly options: HubOptions;
  private readonly byTopic = new Map<string, Set<Subscriber>>();
  private readonly all = new Set<Subscriber>();
  private dirty: Subscriber[] = [];
  private readonly gzipSets = new Map<string, GzipTopicSet>();
  private flushes = 0;
  private flushScheduled = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private readonly started: Promise<void>;
  private counters = {
    eventsPublished: 0,
    eventsDelivered: 0,
    replays: 0,
    resets: 0,
    disconnects: { client: 0, slow: 0, shutdown: 0, broker: 0 } as Record<DisconnectReason, number>,
  };

  constructor(options: HubOptions) {
    this.options = options;
    this.broker = options.broker;
    this.started = this.broker.start(this.onEvents);
    // Avoid an unhandled rejection here; publish/subscribe surface the error.
    this.started.catch(() => undefined);
    if (options.heartbeatInterval > 0) {
      this.heartbeatTimer = setInterval(this.heartbeat, options.heartbeatInterval);
      this.heartbeatTimer.unref();
    }
  }

  get closed(): boolean {
    return this.closing;
  }

  get stats(): HubStats {
    const c = this.counters;
    return {
      subscribers: this.all.size,
      topics: this.byTopic.size,
      eventsPublished: c.eventsPublished,
      eventsDelivered: c.eventsDelivered,
      replays: c.replays,
      resets: c.resets,
      disconnects: { ...c.disconnects },
    };
  }

  /** Hands events to the broker; resolves once it accepted them. Events must be validated already. */
  async publish(events: readonly EventInput[]): Promise<void> {
    if (this.closing) throw new SseError("closed", "the SSE hub is closed");
    await this.started;
    if (events.length > 0) await this.broker.publish(events);
  }

  /**
   * Adds a subscriber whose response headers are already sent. Writes the
   * first heartbeat (and `retry:`) at once, then live events. With
   * `lastEventId`, first replays what the subscriber missed, or `sse:reset`.
   * With `gzip`, everything written is one gzip member (the router has sent
   * `Content-Encoding: gzip`), its compression shared with the topic set.
   */
  subscribe(sink: Sink, topics: readonly string[], lastEventId?: string, direct?: DirectSocket, gzip = false): void {
    if (this.closing) throw new SseError("closed", "the SSE hub is closed");
    const sub = new Subscriber(this, sink, topics, direct);
    if (gzip) {
      // NUL cannot occur in a topic, so the key is unambiguous.
      const key = [...topics].sort().join("\0");
      let set = this.gzipSets.get(key);
      if (set === undefined) this.gzipSets.set(key, (set = new GzipTopicSet(key)));
      set.members++;
      sub.gzip = new GzipMember();
      sub.gzipSet = set;
    }
    (sink as SinkWithSubscriber)[kSubscriber] = sub;
    // `on`, not `once`: close fires once anyway, and `once` allocates a wrapper per subscriber.
    sink.on("close", onSinkClose);
    this.all.add(sub);
    for (const topic of topics) {
      let set = this.byTopic.get(topic);
      if (set === undefined) this.byTopic.set(topic, (set = new Set()));
      set.add(sub);
    }
    let hello = HEARTBEAT;
    const { retry, retryJitter } = this.options;
    if (retry > 0) hello = Buffer.concat([HEARTBEAT, frameRetry(retry + Math.random() * retryJitter)]);
    sink.write(sub.gzip === undefined ? hello : sub.gzip.own(hello));
    sink.flush?.();
    if (lastEventId !== undefined) {
      // Registered above before asking the broker, so every event that is not
      // in the replay arrives live; live ones are held until the replay is out.
      sub.held = [];
      this.started
        .then(() => this.broker.replay(lastEventId, new Set(topics)))
        .then(
          (result) => this.finishReplay(sub, result),
          (err: unknown) =>
            // History is there but unreachable right now: end the stream so the
            // client retries with the same Last-Event-ID, instead of a reset.
            isSseError(err) && err.code === "broker_unavailable"
              ? this.remove(sub, "broker")
              : this.finishReplay(sub, { ok: false, reason: "unknown_id", headId: undefined }),
        );
    }
  }

  /** Ends every stream cleanly and stops the heartbeat. Idempotent. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.flush();
    for (const sub of [...this.all]) this.remove(sub, "shutdown");
  }

  private readonly onEvents = (events: readonly FramedEvent[]): void => {
    this.counters.eventsPublished += events.length;
    for (const event of events) {
      const subs = this.byTopic.get(event.topic);
      if (subs === undefined) continue;
      for (const sub of subs) {
        if (sub.held !== null) this.hold(sub, event);
        else this.enqueue(sub, event.frame, 1);
      }
    }
  };

  private readonly heartbeat = (): void => {
    for (const sub of this.all) if (sub.held === null) this.enqueue(sub, HEARTBEAT, 0);
  };

  private hold(sub: Subscriber, event: FramedEvent): void {
    sub.held!.push(event);
    sub.heldBytes += event.frame.length;
    if (sub.heldBytes > this.options.maxBufferBytes) this.remove(sub, "slow");
  }

  private finishReplay(sub: Subscriber, result: ReplayResult): void {
    if (sub.closed || sub.held === null) return;
    const held = sub.held;
    sub.held = null;
    sub.heldBytes = 0;
    let last: string | undefined;
    if (result.ok) {
      this.counters.replays++;
      for (const event of result.events) {
        this.enqueue(sub, event.frame, 1);
        last = event.id;
      }
    } else {
      this.counters.resets++;
      this.enqueue(sub, resetFrame(result.reason, result.headId), 0);
      // Held live events not newer than the reset's id would go backwards.
      last = result.headId;
    }
    for (const event of held) {
      // Held live events that the replay already contained are skipped: no duplicates.
      if (last === undefined || this.broker.compareIds(event.id, last) > 0) this.enqueue(sub, event.frame, 1);
    }
  }

  private enqueue(sub: Subscriber, frame: Buffer, events: number): void {
    const pending = sub.pending;
    if (pending === null) {
      sub.pending = frame;
      this.dirty.push(sub);
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // setImmediate (not a microtask): events from every request handled
        // in this I/O phase are coalesced into one write per subscriber.
        setImmediate(this.flush);
      }
    } else if (Array.isArray(pending)) {
      pending.push(frame);
    } else {
      sub.pending = [pending, frame];
    }
    sub.pendingBytes += frame.length;
    sub.pendingEvents += events;
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const dirty = this.dirty;
    this.dirty = [];
    const max = this.options.maxBufferBytes;
    // Subscribers of the same topics have the same pending frames: build the
    // bytes once and hand the same Buffer to each. Dirty subscribers of one
    // topic are adjacent, so remembering the last list catches nearly all.
    const singles = new Map<Buffer, Buffer>();
    let lastList: Buffer[] | null = null;
    let lastChunked = false;
    let lastBytes: Buffer | null = null;
    let gzipSubs: Subscriber[] | undefined;
    let gzipPending: Array<Buffer | Buffer[]> | undefined;
    let gzipEvents: number[] | undefined;
    for (const sub of dirty) {
      const pending = sub.pending;
      const bytes = sub.pendingBytes;
      const events = sub.pendingEvents;
      sub.pending = null;
      sub.pendingBytes = 0;
      sub.pendingEvents = 0;
      if (sub.closed || pending === null) continue;
      const direct = sub.direct;
      const out = direct === undefined ? sub.sink : direct.socket;
      // Never skip an event: a subscriber still holding more than its bound
      // from earlier turns is disconnected. (This turn's batch is not counted,
      // so one large batch cannot cut off a client that keeps up.)
      if (out.writableLength > max) {
        this.remove(sub, "slow");
        continue;
      }
      if (sub.gzip !== undefined) {
        // Second pass, once each topic set's shared batch of this flush is known.
        (gzipSubs ??= []).push(sub);
        (gzipPending ??= []).push(pending);
        (gzipEvents ??= []).push(events);
        continue;
      }
      const chunked = direct !== undefined && direct.chunked;
      let data: Buffer;
      if (!Array.isArray(pending)) {
        if (!chunked) data = pending;
        else {
          let wrapped = singles.get(pending);
          if (wrapped === undefined) singles.set(pending, (wrapped = httpChunk([pending], bytes)));
          data = wrapped;
        }
      } else if (lastBytes !== null && lastChunked === chunked && sameList(lastList!, pending)) {
        data = lastBytes;
      } else {
        data = chunked ? httpChunk(pending, bytes) : Buffer.concat(pending, bytes);
        lastList = pending;
        lastChunked = chunked;
        lastBytes = data;
      }
      out.write(data);
      // A middleware that compresses despite `no-transform` buffers until told.
      if (direct === undefined) sub.sink.flush?.();
      this.counters.eventsDelivered += events;
    }
    if (gzipSubs !== undefined) this.flushGzip(gzipSubs, gzipPending!, gzipEvents!);
  };

  /**
   * Writes the gzip subscribers' pending frames. Per topic set, the pending
   * list most of its subscribers have this flush (live events and
   * heartbeats; a replay or reset makes a subscriber's list its own) is
   * compressed once as the shared batch; each subscriber gets the shared
   * bytes, or its own (see gzip-shared.ts: any choice decodes right, the
   * vote only makes the common case cheap).
   */
  private flushGzip(subs: readonly Subscriber[], pendings: ReadonlyArray<Buffer | Buffer[]>, events: readonly number[]): void {
    const flush = ++this.flushes;
    for (let i = 0; i < subs.length; i++) {
      const set = subs[i]!.gzipSet!;
      const pending = pendings[i]!;
      if (set.flush !== flush) {
        set.flush = flush;
        set.candidate = pending;
        set.votes = 1;
        set.batch = undefined;
      } else if (samePending(set.candidate!, pending)) set.votes++;
      else if (--set.votes === 0) {
        set.candidate = pending;
        set.votes = 1;
      }
    }
    // One chunk-coded copy per shared Buffer, as for plain subscribers.
    const chunks = new Map<Buffer, Buffer>();
    for (let i = 0; i < subs.length; i++) {
      const sub = subs[i]!;
      const set = sub.gzipSet!;
      const pending = pendings[i]!;
      let data: Buffer;
      if (samePending(set.candidate!, pending)) {
        data = sub.gzip!.shared((set.batch ??= set.engine.batch(Array.isArray(pending) ? Buffer.concat(pending) : pending)));
      } else {
        data = sub.gzip!.own(Array.isArray(pending) ? Buffer.concat(pending) : pending);
      }
      if (data.length === 0) continue;
      const direct = sub.direct;
      if (direct === undefined) {
        sub.sink.write(data);
        sub.sink.flush?.();
      } else if (!direct.chunked) direct.socket.write(data);
      else {
        let chunk = chunks.get(data);
        if (chunk === undefined) chunks.set(data, (chunk = httpChunk([data], data.length)));
        direct.socket.write(chunk);
      }
      this.counters.eventsDelivered += events[i]!;
    }
  }

  /** Detaches a subscriber; ends (shutdown) or destroys (slow) its stream. @internal */
  remove(sub: Subscriber, reason: DisconnectReason): void {
    if (sub.closed) return;
    sub.closed = true;
    sub.pending = null;
    sub.held = null;
    this.all.delete(sub);
    for (const topic of sub.topics) {
      const set = this.byTopic.get(topic);
      if (set === undefined) continue;
      set.delete(sub);
      if (set.size === 0) this.byTopic.delete(topic);
    }
    this.counters.disconnects[reason]++;
    const set = sub.gzipSet;
    if (set !== undefined && --set.members === 0) this.gzipSets.delete(set.key);
    // A slow client's buffered bytes would never drain: drop them now so memory
    // is freed at once. On shutdown, end cleanly so clients see a normal close.
    if (reason === "slow") sub.sink.destroy();
    else if (reason === "shutdown" || reason === "broker") {
      // A clean end of a gzip stream carries the trailer (CRC-32 and length).
      if (sub.gzip !== undefined) sub.sink.write(sub.gzip.end());
      sub.sink.end();
    }
  }
}

/** Same pending frames: the same Buffer, or lists of the same Buffers. */
function samePending(a: Buffer | Buffer[], b: Buffer | Buffer[]): boolean {
  if (a === b) return true;
  return Array.isArray(a) && Array.isArray(b) && sameList(a, b);
}

function sameList(a: readonly Buffer[], b: readonly Buffer[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Shared `close` listener for every sink: no closure per subscriber. */
function onSinkClose(this: Sink): void {
  const sub = (this as SinkWithSubscriber)[kSubscriber];
  if (sub !== undefined) sub.hub.remove(sub, "client");
}

/**
 * The `sse:reset` event: the client must rebuild its state; data says why.
 * Its id is the newest id in the log, or an empty `id:` when the log is empty,
 * which clears the browser's stale Last-Event-ID (else every reconnect would
 * send it again and get another reset).
 */
export function resetFrame(reason: ResetReason, headId: string | undefined): Buffer {
  return frameEvent("sse:reset", JSON.stringify({ reason }), headId ?? "");
}
