/**
 * Presence: how many subscribers each topic has, in this process and, with a
 * broker that can share them (Redis), across every live instance; and the
 * `sse:presence` events for streams whose token asked for them.
 *
 * - Local counts come straight from the hub's topic map (always current).
 * - A {@link PresenceBroker} publishes this instance's counts (a full
 *   snapshot, at most once per {@link PRESENCE_INTERVAL} after a change, and
 *   as a heartbeat every third of its TTL) and sums the other live
 *   instances' snapshots. A dead instance stops renewing its snapshot and
 *   drops out when the TTL runs out. A broker without the ability (the
 *   in-memory one) means local counts only.
 * - `sse:presence` streams are served by one timer for the hub (never one per
 *   stream): at most once per interval it reads the counts of every watched
 *   topic (one broker call for all of them), and each stream whose topics
 *   changed gets one event with all of its topics, so a stream receives at
 *   most one per interval however many joins and leaves happened.
 */
import type { Broker } from "../brokers/broker";
import { frameEvent } from "../framing/frame";
import type { Sink } from "./hub";
import type { Logger } from "../logger";

/**
 * The optional broker ability behind cluster-wide presence. The router asks
 * for it with {@link isPresenceBroker}; brokers without it give local counts.
 */
export interface PresenceBroker {
  /** Replaces this instance's published counts with `counts` (a full snapshot) and renews their TTL. */
  publishPresence(counts: ReadonlyMap<string, number>): Promise<void>;
  /** Per topic (same order), the sum of the counts published by the other live instances. */
  remotePresence(topics: readonly string[]): Promise<number[]>;
  /** Withdraws this instance's counts at once (graceful stop). */
  clearPresence(): Promise<void>;
  /** Ms after which the counts of an instance that stopped publishing are ignored. */
  readonly presenceTtl: number;
}

export function isPresenceBroker(broker: Broker): broker is Broker & PresenceBroker {
  const b = broker as Partial<PresenceBroker>;
  return typeof b.publishPresence === "function" && typeof b.remotePresence === "function" && typeof b.clearPresence === "function";
}

/** Most one `sse:presence` event per stream per this many ms; also the snapshot throttle. */
export const PRESENCE_INTERVAL = 1000;

/** What presence needs of the hub. */
export interface PresenceSource {
  subscriberCount(topic: string): number;
  topicCounts(): Map<string, number>;
  sendTo(sink: Sink, frame: Buffer): boolean;
}

interface Watcher {
  readonly sink: Sink;
  readonly topics: readonly string[];
  /** JSON of the last event sent, so unchanged counts are not sent again. */
  last: string | undefined;
}

export class Presence {
  private readonly remote: PresenceBroker | undefined;
  private readonly watchers = new Map<Sink, Watcher>();
  private readonly byTopic = new Map<string, Set<Watcher>>();
  /** Counts last seen for the watched topics. */
  private readonly known = new Map<string, number>();
  /** Watchers owed an event whatever changed (new, or their last one could not be queued). */
  private readonly fresh = new Set<Watcher>();
  private localDirty = false;
  private timer: NodeJS.Timeout | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private lastTick = 0;
  private ticking = false;
  private closed = false;
  private failing = false;

  constructor(
    private readonly hub: PresenceSource,
    broker: Broker,
    private readonly logger: Logger,
    private readonly interval = PRESENCE_INTERVAL,
  ) {
    this.remote = isPresenceBroker(broker) ? broker : undefined;
    if (this.remote !== undefined) {
      // Three renewals per TTL: one lost write does not make a live instance vanish.
      this.heartbeat = setInterval(() => this.publish(), Math.max(100, Math.floor(this.remote.presenceTtl / 3)));
      this.heartbeat.unref();
    }
  }

  /** Subscribers per topic: this instance's (current) plus the other live instances' (see the class comment). */
  async counts(topics: readonly string[]): Promise<Record<string, number>> {
    const remote = this.remote === undefined ? undefined : await this.remote.remotePresence(topics);
    // fromEntries defines own properties: a topic named "__proto__" is just a key.
    return Object.fromEntries(topics.map((t, i) => [t, this.hub.subscriberCount(t) + (remote?.[i] ?? 0)]));
  }

  /** Local counts changed (a subscriber joined or left). */
  changed(): void {
    // Nobody to tell: no other instances, no sse:presence streams (counts are read from the hub on demand).
    if (this.remote === undefined && this.watchers.size === 0) return;
    this.localDirty = true;
    this.schedule();
  }

  /** A stream whose token has `presence: true`: it gets `sse:presence` for `topics` from the next tick on. */
  watch(sink: Sink, topics: readonly string[]): void {
    const watcher: Watcher = { sink, topics, last: undefined };
    this.watchers.set(sink, watcher);
    for (const topic of topics) {
      let set = this.byTopic.get(topic);
      if (set === undefined) this.byTopic.set(topic, (set = new Set()));
      set.add(watcher);
    }
    this.fresh.add(watcher);
    this.schedule();
  }

  unwatch(sink: Sink): void {
    const watcher = this.watchers.get(sink);
    if (watcher === undefined) return;
    this.watchers.delete(sink);
    this.fresh.delete(watcher);
    for (const topic of watcher.topics) {
      const set = this.byTopic.get(topic);
      if (set === undefined) continue;
      set.delete(watcher);
      if (set.size === 0) {
        this.byTopic.delete(topic);
        this.known.delete(topic);
      }
    }
  }

  /** Stops the timers and withdraws this instance's counts from the cluster. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.heartbeat !== undefined) clearInterval(this.heartbeat);
    await this.remote?.clearPresence().catch(() => undefined);
  }

  private schedule(): void {
    if (this.timer !== undefined || this.ticking || this.closed) return;
    // Ticks are at least `interval` apart: that is the per-stream rate bound.
    const delay = Math.max(0, this.lastTick + this.interval - Date.now());
    this.timer = setTimeout(this.tick, delay);
    this.timer.unref();
  }

  private publish(): void {
    const remote = this.remote;
    if (remote === undefined || this.closed) return;
    remote.publishPresence(this.hub.topicCounts()).then(
      () => {
        if (this.failing) this.logger.info("presence: publishing counts again");
        this.failing = false;
      },
      (err: unknown) => {
        // Once per outage; the broker logs the outage itself too.
        if (!this.failing) this.logger.warn(`presence: could not publish this instance's counts (${(err as Error).message}); retrying`);
        this.failing = true;
      },
    );
  }

  private readonly tick = async (): Promise<void> => {
    this.timer = undefined;
    this.lastTick = Date.now();
    this.ticking = true;
    try {
      if (this.localDirty) {
        this.localDirty = false;
        this.publish();
      }
      if (this.watchers.size > 0) await this.notify();
    } finally {
      this.ticking = false;
    }
    // With other instances, their changes are only seen by asking: poll while anyone watches.
    if (this.localDirty || this.fresh.size > 0 || (this.remote !== undefined && this.watchers.size > 0)) this.schedule();
  };

  /** One event to each watcher whose topics' counts changed since its last one. */
  private async notify(): Promise<void> {
    const topics = [...this.byTopic.keys()];
    let counts: Record<string, number>;
    try {
      counts = await this.counts(topics);
    } catch {
      return; // broker away: try again next tick (publish() logs the outage)
    }
    if (this.closed) return;
    const due = new Set(this.fresh);
    this.fresh.clear();
    for (const topic of topics) {
      const n = counts[topic]!;
      if (this.known.get(topic) === n) continue;
      this.known.set(topic, n);
      for (const watcher of this.byTopic.get(topic) ?? []) due.add(watcher);
    }
    // Watchers of the same topics share one frame.
    const frames = new Map<string, Buffer>();
    for (const watcher of due) {
      if (this.watchers.get(watcher.sink) !== watcher) continue;
      const json = JSON.stringify(Object.fromEntries(watcher.topics.map((t) => [t, this.known.get(t) ?? counts[t] ?? 0])));
      if (json === watcher.last) continue;
      let frame = frames.get(json);
      if (frame === undefined) frames.set(json, (frame = frameEvent("sse:presence", json)));
      if (this.hub.sendTo(watcher.sink, frame)) watcher.last = json;
      else this.fresh.add(watcher);
    }
  }
}
