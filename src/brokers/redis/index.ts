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
 * - `index.ts` (this file): options, and {@link RedisBroker} composing them.
 */
import type Redis from "ioredis";
import type { RedisOptions } from "ioredis";
import type { Broker, BrokerHealth, BrokerSink, BrokerState, PublishOptions, ReplayOptions, ReplayResult } from "../broker";
import { SseError } from "../../errors";
import { DEFAULT_LOGGER, type Logger } from "../../logger";
import type { EventInput } from "../../types";
import { integerOption, invalid, rejectUnknownKeys } from "../../validate";
import type { PresenceBroker } from "../../core/presence";
import { OutageLog, openConnections, unavailable } from "./connection";
import { compareEventIds } from "./ids";
import { RedisPublisher } from "./publisher";
import { RedisReader } from "./reader";
import { RedisPresenceStore } from "./presence";
import { RedisReplayer } from "./replayer";

export interface RedisBrokerOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379/0` or `rediss://user:pass@host:6380`. Defaults to `redis://127.0.0.1:6379`. */
  url?: string;
  /** Extra ioredis options (TLS, sentinels, password...). Reconnect and queueing options are set by the broker. Defaults to none (`connectTimeout` 3000 ms, `keepAlive` 10000 ms, `connectionName` `"sse-server"` unless given). */
  redis?: RedisOptions;
  /** Stream key. Instances that share events must use the same key. Defaults to `"sse-server:events"`. */
  key?: string;
  /**
   * Entries kept in the stream for resume (approximate `MAXLEN ~`, so a few
   * hundred more may be kept). At least `1000`, since the stream is also the
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
  /** How long `start()` waits for the first connection before resolving anyway (it keeps trying in the background), in ms. Defaults to `5000`. */
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
  "redis",
  "key",
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
  readonly redis: RedisOptions | undefined;
  readonly key: string;
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

function settings(options: RedisBrokerOptions): Settings {
  if (typeof options !== "object" || options === null) invalid("RedisBroker options must be an object or a Redis URL");
  rejectUnknownKeys("RedisBroker", options, OPTION_KEYS);
  const key = options.key ?? "sse-server:events";
  if (typeof key !== "string" || key === "") invalid("key must be a non-empty string");
  const url = options.url ?? "redis://127.0.0.1:6379";
  if (typeof url !== "string" || url === "") invalid("url must be a Redis URL, e.g. redis://127.0.0.1:6379");
  if (options.redis !== undefined && (typeof options.redis !== "object" || options.redis === null)) invalid("redis must be an object of ioredis options");
  if (options.log !== undefined && options.log !== null && typeof options.log !== "function") invalid("log must be a function or null");
  const logger = options.logger ?? DEFAULT_LOGGER;
  const log = options.log === undefined ? (m: string) => logger.warn("redis: " + m) : options.log;
  return {
    url,
    redis: options.redis,
    key,
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
 * A {@link Broker} on a Redis Stream. Create one per process with
 * {@link createRedisBroker} and pass it to `createSseRouter({ broker })`;
 * close it after the router.
 */
export class RedisBroker implements Broker, BrokerHealth, PresenceBroker {
  /** Stream key; the epoch lives at `${key}:epoch`. */
  readonly key: string;
  readonly epochKey: string;
  /** Pub/sub channel of the stream (channels are global to a Redis server, so it names the database too). */
  readonly channel: string;
  private readonly startTimeout: number;
  /** Commands: publish, replay, catching up. Never blocks; fails fast while disconnected. */
  private readonly cmd: Redis;
  private readonly reader: RedisReader;
  private readonly publisher: RedisPublisher;
  private readonly replayer: RedisReplayer;
  /** Cluster-wide subscriber counts (see ./presence.ts). */
  private readonly presence: RedisPresenceStore;
  private started = false;

  constructor(options: RedisBrokerOptions = {}) {
    const s = settings(options);
    this.key = s.key;
    this.epochKey = s.key + ":epoch";
    this.startTimeout = s.startTimeout;
    const { cmd, reader, db } = openConnections(s.url, s.redis, s.publishTimeout);
    this.cmd = cmd;
    this.channel = `sse-server:${db}:${s.key}`;
    const keys = { key: this.key, epochKey: this.epochKey };
    const outage = new OutageLog(s.log);
    this.reader = new RedisReader(reader, cmd, { keys, channel: this.channel, readCount: s.readCount, checkInterval: s.checkInterval, log: s.log, outage });
    this.publisher = new RedisPublisher(cmd, this.reader, {
      key: this.key,
      channel: this.channel,
      historyLength: s.historyLength,
      historyAge: s.historyAge,
      idempotencyWindow: s.idempotencyWindow,
    });
    this.replayer = new RedisReplayer(cmd, keys, s.readCount);
    this.presence = new RedisPresenceStore(this.key, s.presenceTtl);
    // An error on either connection starts an outage (logged once); the reader ends it.
    const onError = (err: Error) => {
      if (this.reader.state !== "closed") outage.failed(err);
    };
    cmd.on("error", onError);
    reader.on("error", onError);
  }

  /** Connects, finds the stream's head and starts reading. Resolves when following the stream, or after `startTimeout` (then keeps trying). */
  async start(sink: BrokerSink): Promise<void> {
    if (this.started) throw new SseError("invalid_option", "a RedisBroker serves one hub; create one broker per router");
    this.started = true;
    this.cmd.connect().catch(() => undefined);
    await this.reader.start(sink, this.startTimeout);
  }

  /** True once the reader follows the stream (publishing before that would not reach this instance's subscribers). */
  get ready(): boolean {
    return this.reader.epoch !== undefined && this.reader.state !== "closed";
  }

  /**
   * `ready` while both connections are up and pushed batches go straight to
   * the hub; `catching_up` while connected and reading the stream after a
   * (re)connect or a gap; `unavailable` while a connection is down (or
   * before the first sync, or after close): publishing answers 503 then.
   */
  get state(): BrokerState {
    if (!this.ready) return "unavailable";
    if (this.cmd.status !== "ready" || !this.reader.connected) return "unavailable";
    return this.reader.state === "live" ? "ready" : "catching_up";
  }

  /** Resolves `true` once {@link ready} (after `start()`), or `false` after `timeout` ms. */
  waitUntilReady(timeout: number): Promise<boolean> {
    return this.reader.waitUntilFollowing(timeout);
  }

  async publish(events: readonly EventInput[], options?: PublishOptions): Promise<void> {
    if (this.reader.state === "closed") throw new SseError("closed", "the Redis broker is closed");
    return this.publisher.publish(events, options);
  }

  replay(lastEventId: string, topics: ReadonlySet<string>, options?: ReplayOptions): Promise<ReplayResult> {
    return this.replayer.replay(lastEventId, topics, options);
  }

  compareIds(a: string, b: string): number {
    return compareEventIds(a, b);
  }

  get presenceTtl(): number {
    return this.presence.ttl;
  }

  async publishPresence(counts: ReadonlyMap<string, number>): Promise<void> {
    if (this.reader.state === "closed") return;
    await this.presence.publish(this.cmd, counts).catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  async remotePresence(topics: readonly string[]): Promise<number[]> {
    if (this.reader.state === "closed") throw new SseError("closed", "the Redis broker is closed");
    return this.presence.read(this.cmd, topics).catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  async clearPresence(): Promise<void> {
    if (this.reader.state === "closed") return;
    await this.presence.clear(this.cmd).catch((err: unknown) => {
      throw unavailable(err);
    });
  }

  async close(): Promise<void> {
    if (this.reader.state === "closed") return;
    const readerDone = this.reader.close();
    await this.cmd.quit().catch(() => this.cmd.disconnect());
    this.cmd.disconnect();
    await readerDone;
  }
}

/** Creates a {@link RedisBroker}; pass it as `createSseRouter({ broker })`. */
export function createRedisBroker(options: RedisBrokerOptions | string = {}): RedisBroker {
  return new RedisBroker(typeof options === "string" ? { url: options } : options);
}
