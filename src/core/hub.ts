/**
 * The hub: topic map, fan-out, per-subscriber backpressure, heartbeats and
 * the resume switch-over. It hands frames to a `Connection` (../transport)
 * and knows no transfer coding; it listens for the client closing on the
 * response (`Sink`). The core owns headers, tokens and routes.
 *
 * Hot path (see bench/): the broker frames each event once into a Buffer;
 * the hub appends that same Buffer to the pending list of every subscriber
 * of its topic and schedules one flush per event-loop turn, so all events of
 * a turn reach a subscriber in a single write. No per-subscriber timers or
 * closures: one heartbeat timer per hub, one shared `close` listener, and
 * one expiry timer walking coarse buckets (./expiry.ts) for token expiry.
 */
import { hasBrokerInterest, type Broker, type BrokerInterest, type BrokerSink, type FramedEvent, type PublishOptions, type ReplayResult, type ResetReason } from "../brokers/broker";
import { SseError, isSseError } from "../errors";
import { ExpiryBuckets } from "./expiry";
import { HEARTBEAT, frameEvent, frameRetry } from "../framing/frame";
import { GzipMember, SharedDeflate, type SharedBatch } from "../framing/gzip-shared";
import type { Connection } from "../transport/connection";
import { ResponseConnection } from "../transport/response";
import type { EventInput } from "../types";

/**
 * What the hub needs of an HTTP response (a `http.ServerResponse` fits): its
 * `close`, and, when no connection is given to `subscribe`, the calls of a
 * `ResponseConnection`. Also the key under which observers know the stream.
 */
export interface Sink {
  write(chunk: Buffer): boolean;
  end(): unknown;
  destroy(): unknown;
  readonly writableLength: number;
  on(event: "close", listener: () => void): unknown;
  /** Used while a resume is paced: the next page is written once the sink drained. */
  once(event: "drain", listener: () => void): unknown;
  /** Batch a replay page's writes into one (a `http.ServerResponse` has them). */
  cork?: () => void;
  uncork?: () => void;
  /** Added by `compression` and similar middleware: push buffered output out now. */
  flush?: () => void;
}

/**
 * Why a subscriber was disconnected: the client went away, it was too slow
 * (buffer bound), the hub shut down, or its resume could not be served
 * because the broker was unavailable (it retries with the same id later),
 * or its token expired (the client reconnects with a fresh token).
 */
export type DisconnectReason = "client" | "slow" | "shutdown" | "broker" | "expired";

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
  /**
   * Times the broker could not deliver a stretch of its log to this instance
   * (e.g. it fell behind trimmed history) and every subscriber was sent
   * `sse:reset` instead.
   */
  readonly brokerResets: number;
  /** Disconnects by reason; see {@link DisconnectReason}. */
  readonly disconnects: Readonly<Record<DisconnectReason, number>>;
}

/**
 * Told when a subscriber joins and after it left (presence, admission,
 * unsubscribe hooks; see sessions.ts). Called synchronously: must not throw.
 */
export interface HubObserver {
  subscribed(sink: Sink, topics: readonly string[]): void;
  unsubscribed(sink: Sink, topics: readonly string[], reason: DisconnectReason): void;
}

export interface HubOptions {
  readonly broker: Broker;
  readonly observer?: HubObserver;
  readonly maxBufferBytes: number;
  readonly heartbeatInterval: number;
  readonly retry: number;
  readonly retryJitter: number;
  /** Ms before a stream's expiry at which it gets `sse:expiring`; 0 for no notice. */
  readonly expiryNotice: number;
}

/** Width of an expiry bucket: token timestamps are whole seconds, so expiries fall on bucket edges. */
const EXPIRY_RESOLUTION = 1000;
/** Longest delay `setTimeout` takes as given (longer ones fire at once). */
const MAX_TIMER_DELAY = 2 ** 31 - 1;

/** Most distinct `retry:` values {@link Hub.hello} hands out (jitter resolution: retryJitter ÷ this, at least 1 ms). */
const HELLO_VALUES = 1024;

/** Largest replay page, in bytes (also at most a quarter of `maxBufferBytes`). */
const MAX_PAGE_BYTES = 64 * 1024;

/**
 * A subscriber's resume, from `subscribe` until the first live event newer
 * than everything replayed. While `held` is set, pages of history are being
 * written (one page at a time, the next once the socket drained) and live
 * events are held back; then only `floor` is left: live events not newer
 * than it were in the replay already (with Redis, an entry's pushed copy can
 * arrive after a replay read it) and are dropped.
 */
class Resume {
  /** Live events held back while paging, else null (paging done). */
  held: FramedEvent[] | null = [];
  heldBytes = 0;
  /** Times `held` overflowed its bound and was dropped (those events are read from history again). */
  drops = 0;
  /** Log position the replay has covered; the next page starts after it. */
  cursor: string;
  /** Live events with ids up to this one were replayed (or precede a reset); undefined: none. */
  floor: string | undefined = undefined;
  readonly topics: ReadonlySet<string>;

  constructor(lastEventId: string, topics: readonly string[]) {
    this.cursor = lastEventId;
    this.topics = new Set(topics);
  }
}

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
  /** While resuming (see {@link Resume}), else null: the hot path checks only this. */
  resume: Resume | null = null;
  closed = false;
  /** Unix ms at which the token ends the stream; 0 when it never expires. */
  expiresAt = 0;
  /** Key of the expiry bucket this subscriber sits in (its notice, then its end). */
  expiryKey = 0;
  /** With gzip: this subscriber's member and its topic set's shared compressor. */
  gzip: GzipMember | undefined = undefined;
  gzipSet: GzipTopicSet | undefined = undefined;

  constructor(
    readonly sink: Sink,
    readonly topics: readonly string[],
    /** Where its bytes go (../transport): the hub knows no transfer coding. */
    readonly conn: Connection,
  ) {}
}

export class Hub {
  private readonly broker: Broker;
  /** The broker, if it reads only the topics in use (told as topics come and go). */
  private readonly interest: BrokerInterest | undefined;
  private readonly options: HubOptions;
  private readonly byTopic = new Map<string, Set<Subscriber>>();
  /**
   * Every subscriber, by its sink. A map here rather than a property on the
   * sink: under Express a response's prototype has been swapped, and V8 then
   * gives it a hidden class of its own for every property added (a ~1 KB
   * copy per stream, issue 17).
   */
  private readonly all = new Map<Sink, Subscriber>();
  private dirty: Subscriber[] = [];
  private readonly gzipSets = new Map<string, GzipTopicSet>();
  private flushes = 0;
  private flushScheduled = false;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly expiry = new ExpiryBuckets<Subscriber>(EXPIRY_RESOLUTION);
  private expiryTimer: NodeJS.Timeout | undefined;
  /** When the expiry timer fires (Infinity when unarmed). */
  private expiryTimerAt = Infinity;
  /** One-entry cache: subscribers noticed in one walk mostly share their expiry, so they share the frame. */
  private expiringFrame: { at: number; frame: Buffer } | undefined;
  private closing = false;
  /** {@link hello}'s Buffers by jitter step, built on first use. */
  private readonly hellos: Array<Buffer | undefined> = [];
  private readonly started: Promise<void>;
  private startFailure: SseError | undefined;
  private counters = {
    eventsPublished: 0,
    eventsDelivered: 0,
    replays: 0,
    resets: 0,
    brokerResets: 0,
    disconnects: { client: 0, slow: 0, shutdown: 0, broker: 0, expired: 0 } as Record<DisconnectReason, number>,
  };

  constructor(options: HubOptions) {
    this.options = options;
    this.broker = options.broker;
    this.interest = hasBrokerInterest(options.broker) ? options.broker : undefined;
    // The sink is the fan-out function itself (no wrapper on the hot path), with the reset notice attached.
    const sink: BrokerSink = Object.assign(this.onEvents, { reset: this.onReset });
    this.started = this.broker.start(sink).catch((err: unknown) => {
      const reason = isSseError(err) || err instanceof Error ? err.message : String(err);
      throw (this.startFailure = new SseError("broker_failed", `the broker could not start: ${reason}`, { cause: err }));
    });
    // Avoid an unhandled rejection here; start(), publish and the routes surface the error.
    this.started.catch(() => undefined);
    if (options.heartbeatInterval > 0) {
      this.heartbeatTimer = setInterval(this.heartbeat, options.heartbeatInterval);
      this.heartbeatTimer.unref();
    }
  }

  get closed(): boolean {
    return this.closing;
  }

  /** Resolves once the broker started; rejects with `broker_failed` if it could not. */
  whenStarted(): Promise<void> {
    return this.started;
  }

  /** The `broker_failed` error once the broker's start failed, else undefined. */
  get failed(): SseError | undefined {
    return this.startFailure;
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
      brokerResets: c.brokerResets,
      disconnects: { ...c.disconnects },
    };
  }

  /** Hands events to the broker; resolves once it accepted them (or knew the idempotency key). Events and key must be validated already. */
  async publish(events: readonly EventInput[], options?: PublishOptions): Promise<void> {
    if (this.closing) throw new SseError("closed", "the SSE hub is closed");
    await this.started;
    if (events.length > 0) await this.broker.publish(events, options);
  }

  /**
   * Adds a subscriber whose response headers are already sent. Writes the
   * first heartbeat (and `retry:`) at once, then live events. With
   * `lastEventId`, first replays what the subscriber missed, or `sse:reset`.
   * With `expiresAt` (unix ms), sends `sse:expiring` `expiryNotice` before it
   * (at once when less is left) and ends the stream then. With `gzip`,
   * everything written is one gzip member (the router has sent
   * `Content-Encoding: gzip`), its compression shared with the topic set.
   */
  subscribe(sink: Sink, topics: readonly string[], lastEventId?: string, conn?: Connection, expiresAt?: number, gzip = false): void {
    if (this.closing) throw new SseError("closed", "the SSE hub is closed");
    const sub = new Subscriber(sink, topics, conn ?? new ResponseConnection(sink));
    if (gzip) {
      // NUL cannot occur in a topic, so the key is unambiguous.
      const key = [...topics].sort().join("\0");
      let set = this.gzipSets.get(key);
      if (set === undefined) this.gzipSets.set(key, (set = new GzipTopicSet(key)));
      set.members++;
      sub.gzip = new GzipMember();
      sub.gzipSet = set;
    }
    // `on`, not `once`: close fires once anyway, and `once` allocates a wrapper per subscriber.
    sink.on("close", this.onSinkClose);
    this.all.set(sink, sub);
    let added: string[] | undefined;
    for (const topic of topics) {
      let set = this.byTopic.get(topic);
      if (set === undefined) {
        this.byTopic.set(topic, (set = new Set()));
        (added ??= []).push(topic);
      }
      set.add(sub);
    }
    if (this.interest !== undefined) {
      if (added !== undefined) this.interest.interest(added, []);
      const delivering = this.interest.delivering(topics);
      if (delivering !== undefined) {
        // Not yet read by the broker (a partition starting): hold live events
        // as a resume does, and say "subscribed" (the first heartbeat) once
        // every event published from then on reaches this subscriber.
        const resume = new Resume(lastEventId ?? "", topics);
        sub.resume = resume;
        const go = () => this.activate(sub, resume, lastEventId !== undefined);
        delivering.then(go, go);
        if (expiresAt !== undefined) this.scheduleExpiry(sub, expiresAt);
        this.options.observer?.subscribed(sink, topics);
        return;
      }
    }
    this.writeHello(sub);
    if (expiresAt !== undefined) this.scheduleExpiry(sub, expiresAt);
    if (lastEventId !== undefined) {
      // Registered above before asking the broker, so every event that is not
      // in the replay arrives live; live ones are held until the replay is out.
      const resume = new Resume(lastEventId, topics);
      sub.resume = resume;
      this.startReplay(sub, resume);
    }
    this.options.observer?.subscribed(sink, topics);
  }

  /** The broker delivers every topic of a subscriber that waited for it: its first heartbeat, then its replay or the live events held meanwhile. */
  private activate(sub: Subscriber, resume: Resume, resuming: boolean): void {
    if (sub.closed || sub.resume !== resume) return;
    this.writeHello(sub);
    if (resuming) this.startReplay(sub, resume);
    else this.endPaging(sub, resume);
  }

  /** The first bytes of a stream (see {@link hello}), written at once. */
  private writeHello(sub: Subscriber): void {
    const hello = this.hello();
    sub.conn.open(sub.gzip === undefined ? hello : sub.gzip.own(hello));
  }

  /** Starts a resume's replay once the broker started (or failed to: the replay then tells). */
  private startReplay(sub: Subscriber, resume: Resume): void {
    this.started.then(() => this.nextPage(sub, resume, true), () => this.nextPage(sub, resume, true));
  }

  /** Subscribers of `topic` on this hub (presence). */
  subscriberCount(topic: string): number {
    return this.byTopic.get(topic)?.size ?? 0;
  }

  /** Subscribers per topic on this hub, a snapshot (presence). */
  topicCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const [topic, set] of this.byTopic) counts.set(topic, set.size);
    return counts;
  }

  /**
   * Queues an in-band frame (e.g. `sse:presence`) for one subscriber, sent
   * with its next flush. False while it cannot take one (closed, or a resume
   * is still writing pages); the caller tries again later.
   */
  sendTo(sink: Sink, frame: Buffer): boolean {
    const sub = this.all.get(sink);
    if (sub === undefined || sub.closed || (sub.resume !== null && sub.resume.held !== null)) return false;
    this.enqueue(sub, frame, 0);
    return true;
  }

  /**
   * The first bytes of every stream: the heartbeat comment, then `retry:`
   * with this hub's jitter (drawn per call, so reconnects spread out).
   * Each distinct value's Buffer is built once and shared (a connect storm
   * would otherwise build one per stream): at most {@link HELLO_VALUES}
   * values, evenly spread over the jitter (1 ms apart up to that many).
   */
  hello(): Buffer {
    const { retry, retryJitter } = this.options;
    if (retry <= 0) return HEARTBEAT;
    // Values retry + k × jitter ÷ steps for k < steps: within [retry, retry + jitter) as before.
    const steps = Math.max(1, Math.min(Math.floor(retryJitter), HELLO_VALUES));
    const k = Math.floor(Math.random() * steps);
    let hello = this.hellos[k];
    if (hello === undefined) this.hellos[k] = hello = Buffer.concat([HEARTBEAT, frameRetry(retry + (k * retryJitter) / steps)]);
    return hello;
  }

  /** Ends every stream cleanly and stops the heartbeat. Idempotent. */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.flush();
    for (const sub of [...this.all.values()]) this.remove(sub, "shutdown");
  }

  /** The `close` listener of every sink of this hub (`this` is the sink): one function, no closure per subscriber. */
  private readonly onSinkClose = ((hub: Hub) =>
    function onSinkClose(this: Sink): void {
      const sub = hub.all.get(this);
      if (sub !== undefined) hub.remove(sub, "client");
    })(this);

  private readonly onEvents = (events: readonly FramedEvent[]): void => {
    this.counters.eventsPublished += events.length;
    for (const event of events) {
      const subs = this.byTopic.get(event.topic);
      if (subs === undefined) continue;
      for (const sub of subs) {
        if (sub.resume !== null) this.resuming(sub, sub.resume, event);
        else this.enqueue(sub, event.frame, 1);
      }
    }
  };

  /**
   * The broker skipped a stretch of its log for this instance: every
   * subscriber gets `sse:reset` (one frame shared by all) before the events
   * after `headId`. A subscriber whose resume is still being served is ended
   * instead: its replay may stop before the skipped stretch, and it resumes
   * with its own Last-Event-ID at once (the broker answers exactly for it).
   */
  private readonly onReset = (reason: ResetReason, headId: string | undefined, topics?: (topic: string) => boolean): void => {
    this.counters.brokerResets++;
    const frame = resetFrame(reason, headId);
    for (const sub of [...this.all.values()]) {
      if (topics !== undefined && !sub.topics.some(topics)) continue;
      if (sub.resume !== null && sub.resume.held !== null) this.remove(sub, "broker");
      else this.enqueue(sub, frame, 0);
    }
  };

  /** Puts a new subscriber in the bucket of its notice (or, without one, of its end). */
  private scheduleExpiry(sub: Subscriber, expiresAt: number): void {
    sub.expiresAt = expiresAt;
    const notice = this.options.expiryNotice;
    if (notice > 0 && expiresAt - notice <= Date.now()) {
      // Less than the notice is left: tell the client now, end at expiry.
      this.enqueue(sub, this.expiringFrameFor(expiresAt), 0);
      this.expire(sub, expiresAt);
    } else {
      this.expire(sub, notice > 0 ? expiresAt - notice : expiresAt);
    }
  }

  private expire(sub: Subscriber, at: number): void {
    const key = (sub.expiryKey = this.expiry.add(sub, at));
    if (key < this.expiryTimerAt) this.armExpiryTimer(key);
  }

  /** Arms the one expiry timer for bucket time `at`, replacing a later one. */
  private armExpiryTimer(at: number): void {
    if (this.closing) return;
    if (this.expiryTimer) clearTimeout(this.expiryTimer);
    this.expiryTimerAt = at;
    this.expiryTimer = setTimeout(this.walkExpiry, Math.min(MAX_TIMER_DELAY, Math.max(0, at - Date.now())));
    this.expiryTimer.unref();
  }

  /** The expiry timer: due notices get `sse:expiring` and move to their end's bucket; due ends close the stream. */
  private readonly walkExpiry = (): void => {
    this.expiryTimer = undefined;
    this.expiryTimerAt = Infinity;
    this.expiry.takeDue(Date.now(), (sub, key) => {
      if (sub.closed) return;
      if (key < sub.expiresAt) {
        this.enqueue(sub, this.expiringFrameFor(sub.expiresAt), 0);
        this.expire(sub, sub.expiresAt);
      } else {
        this.remove(sub, "expired");
      }
    });
    const next = this.expiry.next();
    if (next !== undefined && next < this.expiryTimerAt) this.armExpiryTimer(next);
  };

  private expiringFrameFor(expiresAt: number): Buffer {
    const cached = this.expiringFrame;
    if (cached !== undefined && cached.at === expiresAt) return cached.frame;
    const frame = expiringFrame(expiresAt);
    this.expiringFrame = { at: expiresAt, frame };
    return frame;
  }

  private readonly heartbeat = (): void => {
    for (const sub of this.all.values()) if (sub.resume === null || sub.resume.held === null) this.enqueue(sub, HEARTBEAT, 0);
  };

  /** A live event for a subscriber that is resuming: held, dropped as already replayed, or delivered. */
  private resuming(sub: Subscriber, resume: Resume, event: FramedEvent): void {
    const held = resume.held;
    if (held !== null) {
      held.push(event);
      resume.heldBytes += event.frame.length;
      // Held events count against the subscriber's bound. Past it, drop them
      // instead of the subscriber: they are in the log, and paging goes on
      // until a page read after this one reaches the head.
      if (resume.heldBytes > this.options.maxBufferBytes / 2) {
        resume.held = [];
        resume.heldBytes = 0;
        resume.drops++;
      }
      return;
    }
    if (resume.floor !== undefined && this.broker.compareIds(event.id, resume.floor) <= 0) return;
    // The sink delivers in log order: every later event is newer still.
    sub.resume = null;
    this.enqueue(sub, event.frame, 1);
  }

  /** Reads the next page of a resume from the broker, then writes it. */
  private nextPage(sub: Subscriber, resume: Resume, first: boolean): void {
    if (sub.closed || sub.resume !== resume) return;
    const drops = resume.drops;
    const maxBytes = Math.max(1, Math.min(MAX_PAGE_BYTES, Math.floor(this.options.maxBufferBytes / 4)));
    this.broker.replay(resume.cursor, resume.topics, { maxBytes }).then(
      (result) => this.writePage(sub, resume, result, drops, first),
      (err: unknown) =>
        // History is there but unreachable right now: end the stream so the
        // client retries with the last id it got, instead of a reset.
        isSseError(err) && err.code === "broker_unavailable"
          ? this.remove(sub, "broker")
          : this.writePage(sub, resume, { ok: false, reason: "unknown_id", headId: undefined }, drops, first),
    );
  }

  /**
   * Writes one replay page (or `sse:reset`) straight to the socket, sharing
   * the log's frame Buffers, then reads the next page at once if the socket
   * took it, else once it drained. The replay is done with a page that
   * reached the log's head and was read after every dropped held event
   * arrived; then the held events newer than the replay go out.
   */
  private writePage(sub: Subscriber, resume: Resume, result: ReplayResult, drops: number, first: boolean): void {
    if (sub.closed || sub.resume !== resume) return;
    if (!result.ok) {
      this.counters.resets++;
      this.writeDirect(sub, [resetFrame(result.reason, result.headId)]);
      // Held live events not newer than the reset's id would go backwards.
      resume.floor = result.headId;
      this.endPaging(sub, resume);
      return;
    }
    if (first) this.counters.replays++;
    const frames = result.events.map((e) => e.frame);
    const writable = frames.length === 0 || this.writeDirect(sub, frames);
    this.counters.eventsDelivered += frames.length;
    resume.cursor = result.next;
    resume.floor = result.next;
    if (result.done && resume.drops === drops) {
      this.endPaging(sub, resume);
      return;
    }
    if (writable) this.nextPage(sub, resume, false);
    else sub.conn.onDrain(() => this.nextPage(sub, resume, false));
  }

  /** The replay is out: held events newer than it follow; older ones are dropped from now on. */
  private endPaging(sub: Subscriber, resume: Resume): void {
    const held = resume.held!;
    resume.held = null;
    resume.heldBytes = 0;
    for (const event of held) {
      if (resume.floor !== undefined && this.broker.compareIds(event.id, resume.floor) <= 0) continue;
      // Held events are in log order: once one is newer, every later live one is too.
      sub.resume = null;
      this.enqueue(sub, event.frame, 1);
    }
    if (resume.floor === undefined) sub.resume = null;
  }

  /**
   * Writes frames now, batched into one socket write, without copying them
   * into a Buffer of their own (a page may be shared by many resuming
   * subscribers). Returns false once the socket wants a `drain`.
   */
  private writeDirect(sub: Subscriber, frames: readonly Buffer[]): boolean {
    if (sub.gzip !== undefined) {
      // Not a shared batch: these bytes are this subscriber's own part of its gzip member.
      const own = sub.gzip.own(frames.length === 1 ? frames[0]! : Buffer.concat(frames));
      // Nothing to write (a connection may not take an empty write: an empty HTTP/1.1 chunk ends the body).
      if (own.length === 0) return true;
      frames = [own];
    }
    return sub.conn.writeFrames(frames);
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
    // bytes once and hand the same Buffer to each (a connection that codes
    // them, e.g. HTTP/1.1 chunks, then codes them once too). Dirty
    // subscribers of one topic are adjacent, so remembering the last list
    // catches nearly all.
    let lastList: Buffer[] | null = null;
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
      const out = sub.conn;
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
      let data: Buffer;
      if (!Array.isArray(pending)) data = pending;
      else if (lastBytes !== null && sameList(lastList!, pending)) data = lastBytes;
      else {
        data = Buffer.concat(pending, bytes);
        lastList = pending;
        lastBytes = data;
      }
      out.write(data);
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
      sub.conn.write(data);
      this.counters.eventsDelivered += events[i]!;
    }
  }

  /** Detaches a subscriber; ends (shutdown) or destroys (slow) its stream. @internal */
  remove(sub: Subscriber, reason: DisconnectReason): void {
    if (sub.closed) return;
    sub.closed = true;
    sub.pending = null;
    sub.resume = null;
    if (this.all.get(sub.sink) === sub) this.all.delete(sub.sink);
    let removed: string[] | undefined;
    for (const topic of sub.topics) {
      const set = this.byTopic.get(topic);
      if (set === undefined) continue;
      set.delete(sub);
      if (set.size === 0) {
        this.byTopic.delete(topic);
        if (this.interest !== undefined) (removed ??= []).push(topic);
      }
    }
    if (removed !== undefined) this.interest!.interest([], removed);
    if (sub.expiresAt !== 0) this.expiry.delete(sub, sub.expiryKey);
    this.counters.disconnects[reason]++;
    const set = sub.gzipSet;
    if (set !== undefined && --set.members === 0) this.gzipSets.delete(set.key);
    // A slow client's buffered bytes would never drain: drop them now so memory
    // is freed at once. On shutdown, end cleanly so clients see a normal close
    // (at expiry too: the client reconnects, with a fresh token if it has one).
    if (reason === "slow") sub.conn.destroy();
    // A clean end of a gzip stream carries the trailer (CRC-32 and length).
    else if (reason !== "client") sub.conn.end(sub.gzip?.end());
    this.options.observer?.unsubscribed(sub.sink, sub.topics, reason);
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


/**
 * The `sse:reset` event: the client must rebuild its state; data says why.
 * Its id is the newest id in the log, or an empty `id:` when the log is empty,
 * which clears the browser's stale Last-Event-ID (else every reconnect would
 * send it again and get another reset).
 */
export function resetFrame(reason: ResetReason, headId: string | undefined): Buffer {
  return frameEvent("sse:reset", JSON.stringify({ reason }), headId ?? "");
}

/**
 * The `sse:expiring` event: the token ends the stream at `expiresAt` (unix
 * ms). Unlike `sse:reset` it carries no `id:` line: it is not in the event
 * log, and a frame without `id:` leaves the client's Last-Event-ID as it is,
 * so a reconnect after it still resumes from the last real event.
 */
export function expiringFrame(expiresAt: number): Buffer {
  return frameEvent("sse:expiring", JSON.stringify({ expiresAt }));
}
