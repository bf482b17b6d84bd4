/**
 * Redis broker: many hub instances (processes, machines) share one ordered
 * event log, a Redis Stream. Import it from `sse-hub/redis` so that apps
 * without Redis never load `ioredis` (an optional peer dependency).
 *
 * ```ts
 * import { createSseRouter } from "sse-hub";
 * import { createRedisBroker } from "sse-hub/redis";
 *
 * const broker = createRedisBroker({ url: process.env.REDIS_URL });
 * const sse = createSseRouter({ secret, broker });
 * // on shutdown: await sse.close(); await broker.close();
 * ```
 *
 * Design (see docs/DEPLOY.md):
 *
 * - Every instance appends to one stream (`key`): one Lua script per
 *   published batch XADDs its events in order and, in the same atomic step,
 *   PUBLISHes them (with their new ids) on the stream's channel. `publish()`
 *   resolves once Redis answered; while Redis is unreachable it rejects at
 *   once with `SseError("broker_unavailable")` (no offline queue, a short
 *   command timeout), which `/submit` answers with 503.
 * - Every instance reads on a dedicated connection subscribed to that
 *   channel: Redis pushes each batch to every instance in the same instant it
 *   answers the publisher, so an event that got its 200 is already on its
 *   way to every instance, even if Redis dies right after. (A blocking XREAD
 *   loop has a window between one reply and the next request in which
 *   accepted entries sit only in Redis.) The reader frames each entry once
 *   and hands batches to the hub's sink in stream order. On start and after
 *   every reconnect it subscribes first, then catches up from the stream
 *   with XREAD after the last entry it delivered, then switches to the
 *   pushed batches, skipping ids it already has: nothing Redis accepted is
 *   skipped, nothing is delivered twice. While connected, each pushed batch
 *   names the entry before it; a reader that lacks that entry (stored, never
 *   pushed) catches up the same way before delivering the batch, and an idle
 *   reader compares its position with the stream's head every
 *   `checkInterval`. A stretch that was trimmed before it could be read is
 *   reported to the hub (`sink.reset`): every subscriber gets `sse:reset`.
 * - `publish()` with an idempotency key checks and sets `<key>:idem:<k>` in
 *   the same script as the XADDs, so a retry (after a 503 that may have been
 *   stored) appends nothing, whichever instance it reaches.
 * - SSE ids are `<epoch>.<stream id>`. The epoch is a random word stored in
 *   Redis next to the stream (`<key>:epoch`, created with SET NX). If Redis
 *   comes back empty, the stream and the epoch are gone together and a new
 *   epoch is created, so every id issued before is recognised as unknown and
 *   resuming clients get `sse:reset` (a bare stream id could instead look
 *   like a valid old id once new entries had larger ids). If Redis comes
 *   back with an older copy of the stream (a snapshot, a lost AOF tail), the
 *   first instance to reconnect notices (its last read id or its count of
 *   entries is ahead of the stream) and renews the epoch, before any
 *   instance publishes again: ids in the lost stretch cannot be resumed
 *   from as if nothing had happened.
 * - Partitions (option `partitions`, default 1): with P > 1 the log is P
 *   streams; a topic's events go to partition `fnv1a(topic) mod P`, each
 *   partition with its own epoch, idempotency keys and channel, all in one
 *   Redis Cluster slot (hash tag `{p<n>/<P>}`). A batch that spans partitions
 *   is one script call per partition; `publish()` resolves when all are
 *   stored (order and atomicity hold within a partition, i.e. per topic). An
 *   instance reads only the partitions of topics its subscribers use (the hub
 *   says which, {@link BrokerInterest}), subscribing as they come and
 *   unsubscribing `partitionLinger` after the last one went. Ids name their
 *   partition: `<epoch>.<p>.<ms>-<seq>`. A resume is exact when the
 *   subscription's topics are all in one partition; a subscription spanning
 *   several gets `sse:reset` on resume (its last id says where it is in one
 *   partition only). On a Redis Cluster batches are pushed with sharded
 *   pub/sub (SPUBLISH/SSUBSCRIBE), so each reader gets only its partitions.
 * - History is the stream itself, trimmed approximately (`MAXLEN ~` per
 *   entry, `MINID ~` per batch by age on the Redis clock). Resume reads it
 *   with XRANGE in chunks; `XINFO STREAM` (first entry) tells whether
 *   entries after the client's id may have been trimmed.
 *
 * Layout of this folder (one concern, one state each):
 *
 * - `ids.ts`: stream ids, event ids `<epoch>.<ms>-<seq>`, epoch values (pure).
 * - `stream.ts`: XINFO / MULTI replies and the trim checks (pure).
 * - `scripts.ts`: the two Lua scripts, their argument layouts, typed calls.
 * - `connection.ts`: loading ioredis, the two connections, outage logging.
 * - `reader-state.ts` / `reader.ts`: the subscribed reader, one explicit state.
 * - `publisher.ts`: publish with idempotency (its state: synced or not).
 * - `replayer.ts`: paged XRANGE replay (stateless).
 * - `partition.ts`: one partition's keys, publisher, replayer and reader.
 * - `index.ts` (this file): options, and {@link RedisBroker} composing them.
 */
import type { ClusterNode, RedisOptions } from "ioredis";
import type {
  Broker,
  BrokerHealth,
  BrokerInterest,
  BrokerSink,
  BrokerState,
  PublishOptions,
  ReplayOptions,
  ReplayResult,
} from "../broker";
import { SseError } from "../../errors";
import { DEFAULT_LOGGER, type Logger } from "../../logger";
import type { EventInput } from "../../types";
import { integerOption, invalid, rejectUnknownKeys } from "../../validate";
import type { PresenceBroker } from "../../core/presence";
import { OutageLog, openConnections, unavailable, type Connection } from "./connection";
import { MAX_PARTITIONS, compareEventIds, partitionOf } from "./ids";
import { Partition, type PartitionStats } from "./partition";
import { RedisPresenceStore } from "./presence";

export type { PartitionStats } from "./partition";

/** A Redis Cluster seed node: the broker discovers the others from it. */
export interface RedisClusterNode {
  host: string;
  port: number;
}

export interface RedisBrokerOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379/0` or `rediss://user:pass@host:6380`. Not with `cluster`. Defaults to `redis://127.0.0.1:6379`. */
  url?: string;
  /**
   * Seed nodes of a Redis Cluster (Redis 7+: batches are pushed with sharded
   * pub/sub), e.g. `[{ host: "10.0.0.1", port: 6379 }]`; the others are
   * discovered. Not with `url`. With `partitions` 1 the `key` must carry a
   * hash tag (e.g. `{sse}:events`) so its keys share a slot. Defaults to none (one server, or Sentinel through `redis`).
   */
  cluster?: RedisClusterNode[];
  /** Extra ioredis options (TLS, sentinels, password...); with `cluster`, used for every node. Reconnect and queueing options are set by the broker. Defaults to none (`connectTimeout` 3000 ms, `keepAlive` 10000 ms, `connectionName` `"sse-server"` unless given). */
  redis?: RedisOptions;
  /** Stream key. Instances that share events must use the same key. Defaults to `"sse-server:events"`. */
  key?: string;
  /**
   * Streams the log is split into (1 to 1024): a topic's events go to
   * partition `fnv1a(topic) mod partitions`, and an instance reads only the
   * partitions its subscribers' topics are in. Every instance on the key must
   * use the same value; changing it starts new streams (old ids get
   * `sse:reset`). With more than 1, ids name their partition and a resume of
   * a subscription whose topics span partitions gets `sse:reset` (see
   * docs/DEPLOY.md, "Partitions and Redis Cluster"). Defaults to `1` (one stream, today's keys and ids).
   */
  partitions?: number;
  /**
   * With `partitions` > 1: how long an instance keeps reading a partition
   * after the last subscriber of its topics left, in ms, so topics that come
   * and go do not resubscribe each time. Defaults to `30000`.
   */
  partitionLinger?: number;
  /**
   * Entries kept in the stream for resume (approximate `MAXLEN ~`, so a few
   * hundred more may be kept), per partition. At least `1000`, since the stream is also the
   * transport every instance reads from. Defaults to `100000`.
   */
  historyLength?: number;
  /** Maximum age of kept entries in ms (approximate `MINID ~`, on the Redis clock). `0` means no age limit. Defaults to `300000` (5 minutes). */
  historyAge?: number;
  /**
   * How long `publish()` waits for an answer from a connected but silent Redis
   * before rejecting with `broker_unavailable`, in ms. (A lost connection
   * rejects at once.) After a timeout the events may still have been
   * accepted. Defaults to `5000`.
   */
  publishTimeout?: number;
  /**
   * Replicas that must have a published batch before `publish()` (and
   * `/submit`) reports it stored: `WAIT <waitReplicas>` after each publish
   * script, for up to half of `publishTimeout`; fewer is answered
   * `broker_unavailable` (503), and a retry with the same idempotency key
   * appends nothing and waits again. Closes the Sentinel split brain where a
   * failed-over old primary acknowledges events the new one never gets, for
   * a Redis you cannot give `min-replicas-to-write` (see docs/DEPLOY.md).
   * Defaults to `0` (acknowledged once the primary has it).
   */
  waitReplicas?: number;
  /** How long `start()` waits for the first connection before resolving anyway (it keeps trying in the background), in ms; with partitions, also how long a new subscriber waits for its partitions' readers. Defaults to `5000`. */
  startTimeout?: number;
  /** Entries per XREAD / XRANGE call (catching up, resuming). Defaults to `1000`. */
  readCount?: number;
  /**
   * How long an idempotency key given to `publish()` (or in a `/submit`
   * payload) is remembered in Redis, in ms, for every instance on the stream:
   * a retry with the same key within it appends nothing. `0` remembers none.
   * Defaults to `300000` (5 minutes).
   */
  idempotencyWindow?: number;
  /**
   * How often the idle reader checks its connection (PING) and its position
   * against the stream's newest entry, in ms: an entry that is in the stream
   * but was never pushed (Redis died between the two) is read from the stream
   * at the latest about this long after it was added, even if nothing else is
   * published. Defaults to `15000`.
   */
  checkInterval?: number;
  /**
   * Receives one line on every state change (Redis down / back / emptied,
   * entries read from the stream that were not pushed, reader fell behind the
   * trimmed history). Pass `null` to silence. Defaults to `logger.warn`.
   */
  log?: ((message: string) => void) | null;
  /** Logger for those lines when `log` is not given (e.g. the router's). Defaults to the library's console logger (warnings to stderr). */
  logger?: Logger;
  /**
   * Presence: an instance's published subscriber counts expire this many ms
   * after its last renewal (renewed every third of it), so a dead instance
   * leaves the cluster-wide counts within this time. Defaults to `10000`.
   */
  presenceTtl?: number;
}

/** Every key of {@link RedisBrokerOptions}: anything else is a mistake (e.g. `historylength`), reported at once. */
const OPTION_KEYS: readonly (keyof RedisBrokerOptions)[] = Object.freeze([
  "url",
  "cluster",
  "redis",
  "key",
  "partitions",
  "partitionLinger",
  "waitReplicas",
  "historyLength",
  "historyAge",
  "publishTimeout",
  "startTimeout",
  "readCount",
  "idempotencyWindow",
  "checkInterval",
  "log",
  "logger",
  "presenceTtl",
]);

/** The options, validated once, with their defaults. */
interface Settings {
  readonly url: string;
  readonly cluster: readonly ClusterNode[] | undefined;
  readonly redis: RedisOptions | undefined;
  readonly key: string;
  readonly partitions: number;
  readonly partitionLinger: number;
  readonly waitReplicas: number;
  readonly historyLength: number;
  readonly historyAge: number;
  readonly publishTimeout: number;
  readonly startTimeout: number;
  readonly readCount: number;
  readonly idempotencyWindow: number;
  readonly checkInterval: number;
  readonly presenceTtl: number;
  readonly log: (message: string) => void;
}

/** Redis Cluster's hash tag rule: the text between the first `{` and the next `}`, if not empty. */
function hasHashTag(key: string): boolean {
  const open = key.indexOf("{");
  if (open === -1) return false;
  const close = key.indexOf("}", open + 1);
  return close > open + 1;
}

function clusterNodes(value: unknown): ClusterNode[] | undefined {
  if (value === undefined) return undefined;
  const shape = "cluster must be a non-empty array of { host, port } seed nodes";
  if (!Array.isArray(value) || value.length === 0) invalid(shape);
  return value.map((node: unknown) => {
    if (typeof node !== "object" || node === null) invalid(shape);
    rejectUnknownKeys("RedisBroker cluster node", node, ["host", "port"]);
    const { host, port } = node as Partial<RedisClusterNode>;
    if (typeof host !== "string" || host === "") invalid(shape + "; host must be a non-empty string");
    return { host, port: integerOption("cluster port", port, 6379, 1, 65535) };
  });
}

function settings(options: RedisBrokerOptions): Settings {
  if (typeof options !== "object" || options === null) invalid("RedisBroker options must be an object or a Redis URL");
  rejectUnknownKeys("RedisBroker", options, OPTION_KEYS);
  const key = options.key ?? "sse-server:events";
  if (typeof key !== "string" || key === "") invalid("key must be a non-empty string");
  const url = options.url ?? "redis://127.0.0.1:6379";
  if (typeof url !== "string" || url === "") invalid("url must be a Redis URL, e.g. redis://127.0.0.1:6379");
  const cluster = clusterNodes(options.cluster);
  if (cluster !== undefined && options.url !== undefined) invalid("give either url (one Redis server) or cluster (seed nodes of a Redis Cluster), not both");
  if (options.redis !== undefined && (typeof options.redis !== "object" || options.redis === null)) invalid("redis must be an object of ioredis options");
  if (options.log !== undefined && options.log !== null && typeof options.log !== "function") invalid("log must be a function or null");
  const partitions = integerOption("partitions", options.partitions, 1, 1, MAX_PARTITIONS);
  // The partition's own hash tag must be the first one in its keys.
  if (partitions > 1 && /[{}]/.test(key)) invalid("key must not contain { or } when partitions > 1 (each partition's keys get a hash tag of their own)");
  if (partitions === 1 && cluster !== undefined && !hasHashTag(key)) {
    invalid(`with cluster and one partition, key needs a hash tag so its stream, epoch and idempotency keys share a slot, e.g. "{${key}}"; or set partitions > 1`);
  }
  const logger = options.logger ?? DEFAULT_LOGGER;
  const log = options.log === undefined ? (m: string) => logger.warn("redis: " + m) : options.log;
  return {
    url,
    cluster,
    redis: options.redis,
    key,
    partitions,
    partitionLinger: integerOption("partitionLinger", options.partitionLinger, 30_000, 0, 2 ** 31 - 1),
    waitReplicas: integerOption("waitReplicas", options.waitReplicas, 0, 0, 100),
    historyLength: integerOption("historyLength", options.historyLength, 100_000, 1000),
    historyAge: integerOption("historyAge", options.historyAge, 5 * 60_000, 0),
    publishTimeout: integerOption("publishTimeout", options.publishTimeout, 5000, 1),
    startTimeout: integerOption("startTimeout", options.startTimeout, 5000, 0),
    readCount: integerOption("readCount", options.readCount, 1000, 1),
    idempotencyWindow: integerOption("idempotencyWindow", options.idempotencyWindow, 5 * 60_000, 0),
    checkInterval: integerOption("checkInterval", options.checkInterval, 15_000, 1, 2 ** 31 - 1),
    presenceTtl: integerOption("presenceTtl", options.presenceTtl, 10_000, 300, 3_600_000),
    log: log ?? (() => undefined),
  };
}

/**
 * A {@link Broker} on Redis Streams. Create one per process with
 * {@link createRedisBroker} and pass it to `createSseRouter({ broker })`;
 * close it after the router.
 */
export class RedisBroker implements Broker, BrokerHealth, BrokerInterest, PresenceBroker {
  /** Stream key as configured (with partitions, the streams are `<key>:{p<n>/<P>}`); the epoch lives at `${key}:epoch` with one partition. */
  readonly key: string;
  readonly epochKey: string;
  /** Pub/sub channel of the (first partition's) stream (channels are global to a Redis server, so it names the database too). */
  readonly channel: string;
  /** Number of partitions (streams) of the log. */
  readonly partitions: number;
  private readonly startTimeout: number;
  private readonly partitionLinger: number;
  /** Commands: publish, replay, catching up. Never blocks; fails fast while disconnected. */
  private readonly cmd: Connection;
  /** Subscribed to the channels of the partitions read. */
  private readonly conn: Connection;
  private readonly parts: Partition[];
  /** Partitions by channel, for pushed batches. */
  private readonly byChannel = new Map<string, Partition>();
  /** Cluster-wide subscriber counts (see ./presence.ts). */
  private readonly presence: RedisPresenceStore;
  private sink: BrokerSink | undefined;
  private started = false;
  private closed = false;

  constructor(options: RedisBrokerOptions = {}) {
    const s = settings(options);
    this.key = s.key;
    this.partitions = s.partitions;
    this.startTimeout = s.startTimeout;
    this.partitionLinger = s.partitionLinger;
    const { cmd, reader, db } = openConnections({ url: s.url, options: s.redis, cluster: s.cluster }, s.publishTimeout);
    this.cmd = cmd;
    this.conn = reader;
    const outage = new OutageLog(s.log);
    const sharded = s.cluster !== undefined;
    this.parts = [];
    for (let i = 0; i < s.partitions; i++) {
      const part = new Partition(i, cmd, reader, { ...s, db, sharded, outage });
      this.parts.push(part);
      this.byChannel.set(part.channel, part);
    }
    this.epochKey = this.parts[0]!.keys.epochKey;
    this.channel = this.parts[0]!.channel;
    this.presence = new RedisPresenceStore(s.partitions === 1 ? s.key + ":presence" : s.key + ":{presence}", s.presenceTtl);
    // One listener per connection event, passed to the partitions (not one per partition: up to 1024).
    const onMessage = (channel: Buffer, message: Buffer) => this.byChannel.get(channel.toString())?.reader?.push(message);
    reader.on(sharded ? "smessageBuffer" : "messageBuffer", onMessage);
    reader.on("close", () => {
      for (const part of this.parts) part.reader?.connectionLost();
    });
    const onReady = () => {
      for (const part of this.parts) part.reader?.connectionReady();
    };
    reader.on("ready", onReady);
    cmd.on("ready", onReady);
    // Readers end an outage once they caught up; with partitions none may be reading.
    cmd.on("ready", () => {
      if (!this.parts.some((part) => part.reader !== undefined)) outage.recovered();
    });
    cmd.on("close", () => {
      for (const part of this.parts) part.publisher.connectionLost();
    });
    // An error on either connection starts an outage (logged once); a reader ends it.
    const onError = (err: Error) => {
      if (!this.closed) outage.failed(err);
    };
    cmd.on("error", onError);
    reader.on("error", onError);
  }

  /**
   * Connects, finds the stream's head and starts reading. Resolves when
   * following the stream (with partitions: when the command connection is
   * up; partitions are read as subscribers need them), or after
   * `startTimeout` (then keeps trying).
   */
  async start(sink: BrokerSink): Promise<void> {
    if (this.started) throw new SseError("invalid_option", "a RedisBroker serves one hub; create one broker per router");
    this.started = true;
    this.sink = sink;
    this.cmd.connect().catch(() => undefined);
    this.conn.connect().catch(() => undefined);
    if (this.partitions === 1) await this.parts[0]!.startReader(sink, this.startTimeout, undefined);
    else await this.waitUntilReady(this.startTimeout);
  }

  /** True once the broker can publish and deliver (one partition: the reader follows the stream; more: the command connection is up). */
  get ready(): boolean {
    if (this.closed) return false;
    if (this.partitions === 1) return this.parts[0]!.reader?.epoch !== undefined;
    return this.started && this.cmd.status === "ready";
  }

  /**
   * `ready` while both connections are up and pushed batches go straight to
   * the hub; `catching_up` while connected and reading a stream after a
   * (re)connect or a gap; `unavailable` while a connection is down (or
   * before the first sync, or after close): publishing answers 503 then.
   */
  get state(): BrokerState {
    if (!this.ready) return "unavailable";
    if (this.cmd.status !== "ready") return "unavailable";
    let catchingUp = false;
    for (const part of this.parts) {
      const reader = part.reader;
      if (reader === undefined) continue;
      if (!reader.connected) return "unavailable";
      if (reader.state !== "live") catchingUp = true;
    }
    return catchingUp ? "catching_up" : "ready";
  }

  /** Resolves `true` once {@link ready} (after `start()`), or `false` after `timeout` ms. */
  async waitUntilReady(timeout: number): Promise<boolean> {
    if (this.partitions === 1) return this.parts[0]!.reader?.waitUntilFollowing(timeout) ?? false;
    if (this.ready) return true;
    let done!: () => void;
    const ready = new Promise<void>((resolve) => (done = resolve));
    const timer = setTimeout(done, timeout);
    timer.unref();
    this.cmd.once("ready", done);
    await ready;
    clearTimeout(timer);
    this.cmd.off("ready", done);
    return this.ready;
  }

  /** What this instance read of each partition (events and bytes received from Redis), e.g. to see it reads only what its subscribers need. */
  get partitionStats(): PartitionStats[] {
    return this.parts.map((part) => part.stats);
  }

  /** The partition of `topic` (see {@link RedisBrokerOptions.partitions}). */
  partitionOf(topic: string): number {
    return partitionOf(topic, this.partitions);
  }

  interest(added: readonly string[], removed: readonly string[]): void {
    if (this.partitions === 1 || this.closed) return;
    for (const topic of added) {
      const part = this.parts[partitionOf(topic, this.partitions)]!;
      if (part.topicsInUse++ > 0) continue;
      if (part.lingerTimer !== undefined) {
        clearTimeout(part.lingerTimer);
        part.lingerTimer = undefined;
      }
      if (part.reader === undefined && this.sink !== undefined) {
        const partitions = this.partitions;
        const index = part.index;
        part.startReader(this.sink, this.startTimeout, (t) => partitionOf(t, partitions) === index).catch(() => undefined);
      }
    }
    for (const topic of removed) {
      const part = this.parts[partitionOf(topic, this.partitions)]!;
      if (--part.topicsInUse > 0) continue;
      part.lingerTimer = setTimeout(() => {
        part.lingerTimer = undefined;
        if (part.topicsInUse === 0) part.stopReader().catch(() => undefined);
      }, this.partitionLinger);
      part.lingerTimer.unref();
    }
  }

  delivering(topics: readonly string[]): Promise<void> | undefined {
    if (this.partitions === 1) return undefined;
    let waits: Promise<boolean>[] | undefined;
    for (const topic of topics) {
      const reader = this.parts[partitionOf(topic, this.partitions)]!.reader;
      // Following: subscribed and positioned, so everything published from now on reaches the sink.
      if (reader !== undefined && reader.epoch === undefined) (waits ??= []).push(reader.waitUntilFollowing(this.startTimeout));
    }
    return waits === undefined ? undefined : Promise.all(waits).then(() => undefined);
  }

  async publish(events: readonly EventInput[], options?: PublishOptions): Promise<void> {
    if (this.closed) throw new SseError("closed", "the Redis broker is closed");
    if (this.partitions === 1) return this.parts[0]!.publisher.publish(events, options);
    // One script per partition, in parallel; each keeps its events' order.
    // The same idempotency key is checked per partition, so a retry after a
    // partial failure appends only what is missing.
    const byPart = new Map<Partition, EventInput[]>();
    for (const event of events) {
      const part = this.parts[partitionOf(event.topic, this.partitions)]!;
      let list = byPart.get(part);
      if (list === undefined) byPart.set(part, (list = []));
      list.push(event);
    }
    await Promise.all([...byPart].map(([part, list]) => part.publisher.publish(list, options)));
  }

  replay(lastEventId: string, topics: ReadonlySet<string>, options?: ReplayOptions): Promise<ReplayResult> {
    if (this.partitions === 1) return this.parts[0]!.replayer.replay(lastEventId, topics, options);
    let part: Partition | undefined;
    for (const topic of topics) {
      const p = this.parts[partitionOf(topic, this.partitions)]!;
      if (part !== undefined && p !== part) {
        // The id says where the subscriber is in one partition only: resuming
        // the others could lose or repeat events, so say so (docs/DEPLOY.md).
        return Promise.resolve({ ok: false, reason: "unknown_id", headId: undefined });
      }
      part = p;
    }
    if (part === undefined) return Promise.resolve({ ok: true, events: [], next: lastEventId, done: true });
    return part.replayer.replay(lastEventId, topics, options);
  }

  compareIds(a: string, b: string): number {
    return compareEventIds(a, b);
  }

  get presenceTtl(): number {
    return this.presence.ttl;
  }

  async publishPresence(counts: ReadonlyMap<string, number>): Promise<void> {
    if (this.closed) return;
    await this.presence.publish(this.cmd, counts).catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  async remotePresence(topics: readonly string[]): Promise<number[]> {
    if (this.closed) throw new SseError("closed", "the Redis broker is closed");
    return this.presence.read(this.cmd, topics).catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  async clearPresence(): Promise<void> {
    if (this.closed) return;
    await this.presence.clear(this.cmd).catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sink = undefined;
    const readers: Promise<void>[] = [];
    for (const part of this.parts) {
      if (part.lingerTimer !== undefined) clearTimeout(part.lingerTimer);
      readers.push(part.stopReader());
    }
    // disconnect() (not QUIT): nothing to flush on the subscribed connection.
    this.conn.disconnect();
    await this.cmd.quit().catch(() => this.cmd.disconnect());
    this.cmd.disconnect();
    await Promise.all(readers);
  }
}

/** Creates a {@link RedisBroker}; pass it as `createSseRouter({ broker })`. */
export function createRedisBroker(options: RedisBrokerOptions | string = {}): RedisBroker {
  return new RedisBroker(typeof options === "string" ? { url: options } : options);
}
