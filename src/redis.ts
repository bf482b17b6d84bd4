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
 */
import { randomBytes } from "node:crypto";
import { decode } from "@msgpack/msgpack";
import Redis, { type RedisOptions } from "ioredis";
import type { Broker, BrokerHealth, BrokerSink, BrokerState, FramedEvent, PublishOptions, ReplayOptions, ReplayResult } from "./broker";
import { SseError } from "./errors";
import { frameEvent } from "./frame";
import { DEFAULT_LOGGER, type Logger } from "./logger";
import type { EventInput } from "./types";
import { integerOption } from "./validate";
import type { PresenceBroker } from "./presence";
import { RedisPresenceStore } from "./redis-presence";

export interface RedisBrokerOptions {
  /** Redis URL, e.g. `redis://127.0.0.1:6379/0` or `rediss://user:pass@host:6380`. Defaults to `redis://127.0.0.1:6379`. */
  url?: string;
  /** Extra ioredis options (TLS, sentinels, password...). Reconnect and queueing options are set by the broker. */
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

/** A stream id `ms-seq`, as numbers (both stay far below 2^53 for `*` ids). */
interface StreamId {
  readonly ms: number;
  readonly seq: number;
}

interface StreamInfo {
  readonly lastGenerated: StreamId;
  /** Redis 7+: entries ever added to this stream (0 when unknown). */
  readonly entriesAdded: number;
  /** Redis 7+: the largest id ever removed with XDEL (trimming does not record it). */
  readonly maxDeleted: StreamId | undefined;
  /** Id of the oldest entry still in the stream. */
  readonly firstEntry: StreamId | undefined;
  readonly length: number;
}

type Entry = [id: string, fields: string[]];

const ZERO: StreamId = Object.freeze({ ms: 0, seq: 0 });
const STREAM_ID = /^([0-9]{1,15})-([0-9]{1,15})$/;
const EPOCH = /^[0-9a-z]{1,16}$/;

function parseStreamId(text: unknown): StreamId | undefined {
  if (typeof text !== "string") return undefined;
  const m = STREAM_ID.exec(text);
  return m ? { ms: Number(m[1]), seq: Number(m[2]) } : undefined;
}

function compareStreamIds(a: StreamId, b: StreamId): number {
  return a.ms - b.ms || a.seq - b.seq;
}

function formatStreamId(id: StreamId): string {
  return id.ms + "-" + id.seq;
}

/** `<epoch>.<ms>-<seq>` → parts, or `undefined` if it is not one of ours. */
function parseEventId(id: string): { epoch: string; id: StreamId } | undefined {
  const dot = id.indexOf(".");
  if (dot <= 0) return undefined;
  const epoch = id.slice(0, dot);
  const streamId = parseStreamId(id.slice(dot + 1));
  return EPOCH.test(epoch) && streamId ? { epoch, id: streamId } : undefined;
}

/**
 * The epoch key holds `<epoch>@<stream id>`: the epoch, and from where in the
 * stream it is valid (`0-0` for a stream that started empty). Readers that
 * see a new epoch continue from there.
 */
function parseEpochValue(value: unknown): { epoch: string; from: StreamId } {
  const text = String(value);
  const at = text.indexOf("@");
  if (at === -1) return { epoch: text, from: ZERO };
  return { epoch: text.slice(0, at), from: parseStreamId(text.slice(at + 1)) ?? ZERO };
}

/**
 * Runs on every (re)connect of either connection (before the first read or
 * publish on it), atomically: creates the epoch if missing (Redis came back
 * empty, or first use), and renews it if
 * the stream went back in time compared with what this instance saw (its
 * last read id, or its count of entries ever added), or if the stored epoch
 * is one this instance already left behind: Redis came back with an older
 * copy of the data (a stale AOF or RDB, a lagging replica promoted) that
 * carries an older epoch with its older stream. Accepting it as if another
 * instance had renewed the epoch would replay that whole old stream to live
 * subscribers and make its stale ids resumable. Returns
 * `[epochValue, lastGeneratedId, entriesAdded]`.
 *
 * KEYS: epoch key, stream key. ARGV: candidate epoch, known epoch ("" if
 * none), known last read id, known entries-added, epochs this instance
 * followed before (space-separated, "" if none).
 */
const SYNC_SCRIPT = `
local function id(text)
  local ms, seq = string.match(text, "^(%d+)-(%d+)$")
  return tonumber(ms or 0), tonumber(seq or 0)
end
local function less(a, b)
  local am, as = id(a)
  local bm, bs = id(b)
  return am < bm or (am == bm and as < bs)
end
local head, added = "0-0", 0
if redis.call("EXISTS", KEYS[2]) == 1 then
  local info = redis.call("XINFO", "STREAM", KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == "last-generated-id" then head = info[i + 1]
    elseif info[i] == "entries-added" then added = tonumber(info[i + 1]) end
  end
end
local value = redis.call("GET", KEYS[1])
if not value then
  -- A fresh (empty) stream starts at 0-0. Nobody adds to the stream before
  -- this script ran on their connection, so entries without an epoch mean the
  -- key was deleted: the new epoch starts at the head (nothing re-delivered).
  value = ARGV[1] .. "@" .. head
  redis.call("SET", KEYS[1], value)
elseif ARGV[2] ~= "" and string.match(value, "^[^@]+") == ARGV[2] then
  if less(head, ARGV[3]) or added < tonumber(ARGV[4]) then
    value = ARGV[1] .. "@" .. head
    redis.call("SET", KEYS[1], value)
  end
elseif string.find(" " .. ARGV[5] .. " ", " " .. string.match(value, "^[^@]+") .. " ", 1, true) then
  value = ARGV[1] .. "@" .. head
  redis.call("SET", KEYS[1], value)
end
return {value, head, added}
`;

/**
 * Appends one batch and pushes it to every instance, atomically.
 * KEYS: stream, then the idempotency key (optional). ARGV: MAXLEN, MINID (""
 * for none), channel, idempotency window in ms, then topic, event, data of
 * each event. PUBLISHes msgpack `[id, topic, event, data, ..., previous id]`:
 * the id of the stream's newest entry before this batch (`0-0` if none), so a
 * reader whose last entry is older knows it missed one (stored, never pushed)
 * and reads it from the stream first. The previous id comes last: readers of
 * older versions take elements four at a time and ignore it.
 * Returns the number of events appended, or -1 for a known idempotency key
 * (a retry of a batch that is already in). The key is set after the XADDs,
 * so a script that failed half-way leaves no key behind. (No comments inside
 * the script: Redis hashes its whole text on every EVAL.)
 */
const PUBLISH_SCRIPT = `
pcall(redis.replicate_commands)
if KEYS[2] and redis.call("EXISTS", KEYS[2]) == 1 then return -1 end
local last = redis.call("XREVRANGE", KEYS[1], "+", "-", "COUNT", 1)
local prev = "0-0"
if #last > 0 then prev = last[1][1] end
local out = {}
for i = 5, #ARGV, 3 do
  local id = redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*", "t", ARGV[i], "e", ARGV[i + 1], "d", ARGV[i + 2])
  out[#out + 1] = id
  out[#out + 1] = ARGV[i]
  out[#out + 1] = ARGV[i + 1]
  out[#out + 1] = ARGV[i + 2]
end
local n = #out / 4
out[#out + 1] = prev
if ARGV[2] ~= "" then redis.call("XTRIM", KEYS[1], "MINID", "~", ARGV[2]) end
if KEYS[2] then redis.call("SET", KEYS[2], "1", "PX", ARGV[4]) end
redis.call("PUBLISH", ARGV[3], cmsgpack.pack(out))
return n
`;

/** XRANGE COUNT of a paged replay's first chunk (later chunks of the same page double it, up to `readCount`). */
const FIRST_PAGE_COUNT = 64;

/** Past epochs a reader remembers (each outage that empties or rewinds Redis adds one). */
const MAX_PAST_EPOCHS = 16;

/** Pushed batches kept while catching up, at most (older ones are read from the stream again). */
const MAX_PENDING = 50_000;

/** How long the idle check lets a batch that is already in the stream take to arrive pushed before it reads the stream, in ms (at most). */
const PUSH_GRACE = 1000;

function newEpoch(): string {
  // 48 random bits in base 36: short in every frame, unique enough per Redis dataset.
  return parseInt(randomBytes(6).toString("hex"), 16).toString(36);
}

/** XINFO STREAM's flat `[name, value, ...]` reply. */
function parseInfo(reply: unknown): StreamInfo | undefined {
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
function result(replies: [Error | null, unknown][] | null, index: number): unknown {
  const pair = replies?.[index];
  if (pair === undefined) throw new Error("Redis transaction was aborted");
  if (pair[0]) throw pair[0];
  return pair[1];
}

/** Like {@link result}, but `undefined` when the command failed (e.g. XINFO on a missing key). */
function resultOrUndefined(replies: [Error | null, unknown][] | null, index: number): unknown {
  const pair = replies?.[index];
  return pair === undefined || pair[0] ? undefined : pair[1];
}

function field(fields: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
  return undefined;
}

/** Reconnect delay after `attempt` failures: 50 ms doubling, at most 1 s. */
const backoff = (attempt: number): number => Math.min(50 * 2 ** Math.min(attempt, 5), 1000);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/**
 * What a publisher is told while Redis is away: what it can do, not the Redis
 * client's internals (e.g. "Stream isn't writeable and enableOfflineQueue
 * options is false"); those stay on `cause`, and the outage itself is logged
 * once by the read loop.
 */
function unavailable(err: unknown): SseError {
  return new SseError("broker_unavailable", "the event broker (Redis) is unreachable; events were not accepted, retry shortly", { cause: err });
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === "MaxRetriesPerRequestError") return "connection lost";
    return (err as NodeJS.ErrnoException).code ?? err.message;
  }
  return String(err);
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
  private readonly historyLength: number;
  private readonly historyAge: number;
  private readonly readCount: number;
  private readonly startTimeout: number;
  private readonly idempotencyWindow: number;
  private readonly checkInterval: number;
  private readonly log: (message: string) => void;
  /** Pub/sub channel of the stream (channels are global to a Redis server, so it names the database too). */
  readonly channel: string;
  /** Commands: publish, replay, catching up. Never blocks; fails fast while disconnected. */
  private readonly cmd: Redis;
  /** Subscribed to {@link channel}: every published batch is pushed here. */
  private readonly reader: Redis;
  private sink: BrokerSink | undefined;
  private closed = false;
  /** Epoch of the stream the reader follows; undefined until the first sync. */
  private epoch: string | undefined;
  /** Last stream id the reader handed to the sink (or its start position). */
  private cursor: StreamId = ZERO;
  /** The reader must re-check epoch and position before reading (start, reconnect, error). */
  private needSync = true;
  /** Highest `entries-added` seen for the current epoch (detects a stream restored from an older copy). */
  private knownAdded = 0;
  /**
   * Redis 7's `entries-added` of the stream as of the entry at {@link cursor}
   * (a lower bound: it counts only entries this reader saw since an exact
   * anchor), or undefined when unknown. Tells exactly whether entries after
   * the cursor were trimmed before this reader got them.
   */
  private addedAtCursor: number | undefined;

  /** Epochs this reader followed before the current one, newest last (at most {@link MAX_PAST_EPOCHS}): seeing one again means Redis went back to older data. */
  private pastEpochs: string[] = [];
  /** The command connection ran the sync script since it (re)connected; publishing waits for it. */
  private cmdSynced: Promise<void> | undefined;
  /** Pushed batches go straight to the sink (else into `pending` while catching up). */
  private live = false;
  private pending: unknown[][] = [];
  private pendingEntries = 0;
  /** Counts times `pending` overflowed and was dropped (its entries are read from the stream again). */
  private overflows = 0;
  private down = false;
  private loopDone: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  /** Cluster-wide subscriber counts (see redis-presence.ts). */
  private readonly presence: RedisPresenceStore;

  constructor(options: RedisBrokerOptions = {}) {
    this.key = options.key ?? "sse-server:events";
    if (typeof this.key !== "string" || this.key === "") throw new SseError("invalid_option", "key must be a non-empty string");
    this.epochKey = this.key + ":epoch";
    this.historyLength = integerOption("historyLength", options.historyLength, 100_000, 1000);
    this.historyAge = integerOption("historyAge", options.historyAge, 5 * 60_000, 0);
    this.readCount = integerOption("readCount", options.readCount, 1000, 1);
    this.startTimeout = integerOption("startTimeout", options.startTimeout, 5000, 0);
    this.idempotencyWindow = integerOption("idempotencyWindow", options.idempotencyWindow, 5 * 60_000, 0);
    this.checkInterval = integerOption("checkInterval", options.checkInterval, 15_000, 1, 2 ** 31 - 1);
    this.presence = new RedisPresenceStore(this.key, integerOption("presenceTtl", options.presenceTtl, 10_000, 300, 3_600_000));
    const publishTimeout = integerOption("publishTimeout", options.publishTimeout, 5000, 1);
    const logger = options.logger ?? DEFAULT_LOGGER;
    const log = options.log === undefined ? (m: string) => logger.warn("redis: " + m) : options.log;
    this.log = log ?? (() => undefined);

    const base: RedisOptions = {
      ...options.redis,
      // RESP2 replies have the same shape in ioredis 5 and 6.
      protocol: 2,
      lazyConnect: true,
      // Fail fast instead of queueing while Redis is away; retry forever in the background.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      // The read loop subscribes again itself, then catches up (see loop()).
      autoResubscribe: false,
      retryStrategy: backoff,
      connectTimeout: options.redis?.connectTimeout ?? 3000,
      keepAlive: options.redis?.keepAlive ?? 10_000,
    } as RedisOptions;
    const url = options.url ?? "redis://127.0.0.1:6379";
    // CLIENT LIST shows `<name>:cmd` and `<name>:reader` for each instance.
    const name = options.redis?.connectionName ?? "sse-server";
    this.cmd = new Redis(url, { ...base, commandTimeout: publishTimeout, connectionName: name + ":cmd" } as RedisOptions);
    this.reader = new Redis(url, { ...base, commandTimeout: publishTimeout, connectionName: name + ":reader" } as RedisOptions);
    const db = Number((this.cmd.options as { db?: number }).db ?? 0);
    this.channel = `sse-server:${db}:${this.key}`;
    this.reader.on("messageBuffer", (channel: Buffer, message: Buffer) => this.onMessage(channel, message));
    const onError = (err: Error) => this.markDown(err);
    this.cmd.on("error", onError);
    this.reader.on("error", onError);
    // Every reconnect may be to a Redis that restarted: re-check before reading or publishing on.
    this.reader.on("close", () => {
      this.needSync = true;
      this.live = false;
      this.wake?.();
    });
    this.cmd.on("close", () => {
      this.cmdSynced = undefined;
    });
    this.reader.on("ready", () => this.wake?.());
    this.cmd.on("ready", () => this.wake?.());
  }

  /** Connects, finds the stream's head and starts the read loop. Resolves when following the stream, or after `startTimeout` (then keeps trying). */
  async start(sink: BrokerSink): Promise<void> {
    if (this.sink !== undefined) throw new SseError("invalid_option", "a RedisBroker serves one hub; create one broker per router");
    this.sink = sink;
    this.cmd.connect().catch(() => undefined);
    this.reader.connect().catch(() => undefined);
    let started!: () => void;
    const ready = new Promise<void>((resolve) => (started = resolve));
    this.loopDone = this.loop(started);
    const timer = setTimeout(started, this.startTimeout);
    await ready;
    clearTimeout(timer);
  }

  /** True once the reader follows the stream (publishing before that would not reach this instance's subscribers). */
  get ready(): boolean {
    return this.epoch !== undefined && !this.closed;
  }

  /**
   * `ready` while both connections are up and pushed batches go straight to
   * the hub; `catching_up` while connected and reading the stream after a
   * (re)connect or a gap; `unavailable` while a connection is down (or
   * before the first sync, or after close): publishing answers 503 then.
   */
  get state(): BrokerState {
    if (this.closed || this.epoch === undefined) return "unavailable";
    if (this.cmd.status !== "ready" || !this.readerReady()) return "unavailable";
    return this.live ? "ready" : "catching_up";
  }

  /** Resolves `true` once {@link ready} (after `start()`), or `false` after `timeout` ms. */
  async waitUntilReady(timeout: number): Promise<boolean> {
    const deadline = Date.now() + timeout;
    while (!this.ready && !this.closed && Date.now() < deadline) await sleep(Math.min(20, Math.max(1, deadline - Date.now())));
    return this.ready;
  }

  async publish(events: readonly EventInput[], options?: PublishOptions): Promise<void> {
    if (this.closed) throw new SseError("closed", "the Redis broker is closed");
    if (events.length === 0) return;
    if (this.epoch === undefined) throw new SseError("broker_unavailable", "the event broker (Redis) is not connected yet; events were not accepted, retry shortly");
    if (this.cmdSynced === undefined) {
      // First publish on this connection: make sure a restored (older) stream gets a new epoch before anything is added to it.
      const synced = this.runSync(this.cmd).then(() => undefined);
      this.cmdSynced = synced;
      synced.catch(() => {
        if (this.cmdSynced === synced) this.cmdSynced = undefined;
      });
    }
    try {
      await this.cmdSynced;
    } catch (err) {
      throw unavailable(err);
    }
    const args: (string | number)[] = [this.historyLength];
    // Age bound on Redis's own clock (the ids the reader saw), so instance clock skew cannot over-trim.
    args.push(this.historyAge > 0 && this.cursor.ms > this.historyAge ? String(this.cursor.ms - this.historyAge) : "");
    args.push(this.channel, this.idempotencyWindow);
    for (const e of events) args.push(e.topic, e.event, e.data);
    // The key lives in Redis, so a retry is recognised on any instance of the stream.
    const key = options?.idempotencyKey;
    const keys = key === undefined || this.idempotencyWindow === 0 ? [this.key] : [this.key, this.key + ":idem:" + key];
    try {
      await this.cmd.eval(PUBLISH_SCRIPT, keys.length, ...keys, ...args);
    } catch (err) {
      // Reported to the caller (503); the read loop logs outages.
      throw unavailable(err);
    }
  }

  async replay(lastEventId: string, topics: ReadonlySet<string>, options: ReplayOptions = {}): Promise<ReplayResult> {
    const wanted = parseEventId(lastEventId);
    const maxBytes = options.maxBytes ?? Infinity;
    // A paged replay reads small chunks first (a page of large events is
    // done after a few entries), doubling while the topics are sparse.
    let count = Number.isFinite(maxBytes) ? Math.min(this.readCount, FIRST_PAGE_COUNT) : this.readCount;
    let replies: [Error | null, unknown][] | null = null;
    for (let attempt = 0; attempt < 2; attempt++) {
      // One snapshot: epoch, stream info and the first chunk.
      const multi = this.cmd.multi();
      multi.call("GET", this.epochKey);
      multi.call("XINFO", "STREAM", this.key);
      if (wanted) multi.call("XRANGE", this.key, "(" + formatStreamId(wanted.id), "+", "COUNT", count);
      try {
        replies = await multi.exec();
        // No epoch yet (Redis just came back empty): create it the one safe way, then look again.
        if (result(replies, 0) !== null || attempt > 0) break;
        await this.runSync(this.cmd, false);
      } catch (err) {
        throw unavailable(err);
      }
    }
    const epoch = parseEpochValue(result(replies, 0)).epoch;
    const info = parseInfo(resultOrUndefined(replies, 1));
    const head = info?.lastGenerated ?? ZERO;
    const headId = compareStreamIds(head, ZERO) > 0 ? epoch + "." + formatStreamId(head) : undefined;
    // Malformed, from another stream, or newer than anything this stream produced (Redis came back empty).
    if (wanted === undefined || wanted.epoch !== epoch || compareStreamIds(wanted.id, head) > 0) {
      return { ok: false, reason: "unknown_id", headId };
    }
    if (compareStreamIds(wanted.id, head) === 0) return { ok: true, events: [], next: lastEventId, done: true };
    if (info === undefined || this.trimmedAfter(info, wanted.id)) return { ok: false, reason: "history_truncated", headId };

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
        const eventId = epoch + "." + id;
        const frame = frameEvent(field(fields, "e") ?? "", field(fields, "d") ?? "", eventId);
        events.push({ id: eventId, topic, frame });
        bytes += frame.length;
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
      next.call("XINFO", "STREAM", this.key);
      next.call("XRANGE", this.key, "(" + formatStreamId(cursor), "+", "COUNT", count);
      try {
        replies = await next.exec();
      } catch (err) {
        throw unavailable(err);
      }
      const now = parseInfo(resultOrUndefined(replies, 0));
      // Trimmed under our feet while reading (a very long replay on a busy stream).
      if (now === undefined || this.trimmedAfter(now, cursor)) return { ok: false, reason: "history_truncated", headId };
      chunk = result(replies, 1) as Entry[];
    }
    return { ok: true, events, next: epoch + "." + formatStreamId(cursor), done };
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

  compareIds(a: string, b: string): number {
    const pa = parseEventId(a);
    const pb = parseEventId(b);
    if (pa === undefined || pb === undefined) return (pa ? 1 : 0) - (pb ? 1 : 0);
    return compareStreamIds(pa.id, pb.id);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.sink = undefined;
    this.wake?.();
    // disconnect() (not QUIT): nothing to flush on the subscribed connection.
    this.reader.disconnect();
    await this.cmd.quit().catch(() => this.cmd.disconnect());
    this.cmd.disconnect();
    await this.loopDone?.catch(() => undefined);
  }

  /**
   * Were entries newer than `after` deleted (trimmed) from the stream?
   * Trimming removes the oldest entries, so while the entry `after` (or an
   * older one) is still there, nothing newer was trimmed. Once the oldest
   * entry is newer than `after`, entries right after it may be gone: assume
   * so (a needless reset is safe; a silent gap is not). Redis 7 also records
   * the largest id removed with XDEL (`max-deleted-entry-id`).
   */
  private trimmedAfter(info: StreamInfo, after: StreamId): boolean {
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
   * Did entries after the cursor leave the stream (trimmed, deleted) before
   * this reader read them? Exact with Redis 7's count of entries ever added
   * when the count at the cursor is known: all entries left are newer than
   * the cursor, so were all added after it still there? (The age bound trims
   * the cursor's own entry after a quiet `historyAge`; that alone is no
   * loss.) Otherwise {@link trimmedAfter}'s safe guess.
   */
  private missedAfterCursor(info: StreamInfo): boolean {
    const at = this.addedAtCursor;
    if (at === undefined || info.entriesAdded === 0) return this.trimmedAfter(info, this.cursor);
    if (compareStreamIds(info.lastGenerated, this.cursor) <= 0) return false;
    if (info.firstEntry !== undefined && compareStreamIds(info.firstEntry, this.cursor) <= 0) {
      // The cursor's entry (or an older one) is still there: trimming removed nothing newer; XDEL might have.
      return info.maxDeleted !== undefined && compareStreamIds(info.maxDeleted, this.cursor) > 0;
    }
    return info.entriesAdded - at > info.length;
  }

  private markDown(err: unknown): void {
    if (this.closed || this.down) return;
    this.down = true;
    this.log(`Redis unreachable (${describe(err)}); publishing answers 503 and reading retries until it is back`);
  }

  private markUp(): void {
    if (!this.down) return;
    this.down = false;
    this.log("Redis reachable again; reading on from the last event read");
  }

  private readerReady(): boolean {
    return this.reader.status === "ready";
  }

  /** Waits for a state change (reader connected or closed, resync needed, close) or at most `ms`. */
  private waitWake(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
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
   * (Re)subscribes and catches up whenever needed (start, reconnect, a
   * message it could not read); between those, pushed batches flow through
   * {@link onMessage} on their own.
   */
  private async loop(started: () => void): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      try {
        // The catch-up reads through the command connection: wait for both
        // (it may come up after the reader, and fails fast while it is not).
        if (!this.readerReady() || this.cmd.status !== "ready") {
          await this.waitWake(1000);
          continue;
        }
        if (!this.needSync) {
          await this.waitWake(this.checkInterval);
          if (this.needSync || this.closed || !this.readerReady()) continue;
          // An idle subscribed connection would not notice a silently dead
          // link (half-open TCP) for minutes: ping it; on failure reconnect
          // (then catch up from the stream, so nothing is lost meanwhile).
          await this.reader.ping().catch((err: unknown) => {
            if (this.closed || this.needSync) return;
            this.markDown(err);
            this.reader.disconnect(true);
          });
          if (!this.needSync && !this.closed) await this.checkHead();
          continue;
        }
        this.needSync = false;
        this.live = false;
        this.pending = [];
        this.pendingEntries = 0;
        // Subscribed before reading the stream: every entry is in the catch-up or pushed (or both).
        await this.reader.subscribe(this.channel);
        await this.catchUp();
        started();
        failures = 0;
        this.markUp();
      } catch (err) {
        if (this.closed) break;
        this.needSync = true;
        this.live = false;
        this.markDown(err);
        await sleep(backoff(failures++));
      }
    }
  }

  /** A pushed batch from Redis. */
  private onMessage(channel: Buffer, message: Buffer): void {
    if (this.closed || channel.toString() !== this.channel) return;
    let flat: unknown[];
    try {
      flat = decode(message) as unknown[];
      if (!Array.isArray(flat)) throw new Error("not an array");
    } catch {
      // Cannot happen with our script; if it does, read the stream instead of guessing.
      this.resync();
      return;
    }
    this.receive(flat);
  }

  /**
   * A pushed batch: to the sink when live and nothing is missing before it,
   * else kept until a catch-up has read the stream. Missing: the batch says
   * which entry preceded it in the stream, and that entry is newer than the
   * last one this reader has (it was stored but never pushed, e.g. Redis
   * died between the XADD and the PUBLISH of its batch).
   */
  private receive(flat: unknown[]): void {
    if (this.live) {
      const prev = flat.length % 4 === 1 ? parseStreamId(flat[flat.length - 1]) : undefined;
      if (prev === undefined || compareStreamIds(prev, this.cursor) <= 0) {
        this.deliverPushed(flat);
        return;
      }
      this.log(`entries after ${formatStreamId(this.cursor)} up to ${formatStreamId(prev)} were stored but not pushed; reading them from the stream`);
      // The catch-up reads the stream from the cursor (this batch included), in order, without duplicates.
      this.resync();
    }
    this.pending.push(flat);
    this.pendingEntries += flat.length / 4;
    if (this.pendingEntries > MAX_PENDING) {
      this.pending = [];
      this.pendingEntries = 0;
      this.overflows++;
    }
  }

  /** Stops delivering pushed batches and has the loop catch up from the stream (they wait in `pending`). */
  private resync(): void {
    this.needSync = true;
    this.live = false;
    this.wake?.();
  }

  /**
   * The idle check (Centrifugo calls it positioning): is the stream's newest
   * entry newer than the last one read, and still so a moment later (time
   * for a batch on its way to arrive pushed)? Then it was never pushed: read
   * the stream. A failed check is left to the connection's own error handling.
   */
  private async checkHead(): Promise<void> {
    let head: StreamId | undefined;
    try {
      const last = (await this.cmd.xrevrange(this.key, "+", "-", "COUNT", 1)) as Entry[];
      head = last.length > 0 ? parseStreamId(last[0]![0]) : undefined;
    } catch {
      return;
    }
    if (head === undefined || compareStreamIds(head, this.cursor) <= 0) return;
    await this.waitWake(Math.min(PUSH_GRACE, this.checkInterval));
    if (this.closed || this.needSync || !this.live || compareStreamIds(head, this.cursor) <= 0) return;
    this.log(`the stream's entries after ${formatStreamId(this.cursor)} up to ${formatStreamId(head)} were stored but not pushed; reading them from the stream`);
    this.resync();
  }

  /** Runs {@link SYNC_SCRIPT} on `conn` with what this instance knows. */
  private async runSync(conn: Redis, check = true): Promise<{ epoch: string; from: StreamId; head: StreamId; added: number }> {
    const reply = (await conn.eval(
      SYNC_SCRIPT,
      2,
      this.epochKey,
      this.key,
      newEpoch(),
      check ? (this.epoch ?? "") : "",
      formatStreamId(this.cursor),
      this.knownAdded,
      check ? this.pastEpochs.join(" ") : "",
    )) as [string, string, number];
    const { epoch, from } = parseEpochValue(reply[0]);
    return { epoch, from, head: parseStreamId(reply[1]) ?? ZERO, added: Number(reply[2]) || 0 };
  }

  /**
   * On start and after every reconnect (already subscribed): make sure the
   * stream has an epoch, decide where to read from, read the stream up to its
   * head, then deliver the batches pushed meanwhile and go live. Same epoch:
   * on from the cursor. New epoch: from where it starts (the start of a
   * stream that came back empty, or the head of a stream restored from an
   * older copy), so nothing new is skipped and nothing old is delivered twice.
   */
  private async catchUp(): Promise<void> {
    const { epoch, from, head, added } = await this.runSync(this.cmd);
    if (this.epoch === undefined) {
      // First start: live events from now on; older ones are history.
      this.cursor = head;
      // Redis 6.2 reports no count (0) for a stream that has entries.
      this.addedAtCursor = compareStreamIds(head, ZERO) === 0 ? 0 : added || undefined;
    } else if (epoch !== this.epoch) {
      this.log(
        compareStreamIds(from, ZERO) === 0
          ? `stream ${this.key} was lost (Redis restarted empty?); following the new stream from its start, old event ids now get sse:reset`
          : `stream ${this.key} went back in time (Redis restored an older copy?); reading on from ${formatStreamId(from)}, old event ids now get sse:reset`,
      );
      if (compareStreamIds(from, this.cursor) < 0) this.cursor = from;
      // A stream that came back empty starts from nothing; a restored one is known only if nothing was added since.
      this.addedAtCursor =
        compareStreamIds(this.cursor, ZERO) === 0 ? 0 : compareStreamIds(this.cursor, head) === 0 ? added || undefined : undefined;
      this.knownAdded = 0;
      this.pastEpochs.push(this.epoch);
      if (this.pastEpochs.length > MAX_PAST_EPOCHS) this.pastEpochs.shift();
    }
    this.knownAdded = Math.max(this.knownAdded, added);
    this.epoch = epoch;
    for (;;) {
      const overflows = this.overflows;
      const multi = this.cmd.multi();
      multi.call("XINFO", "STREAM", this.key);
      multi.call("XREAD", "COUNT", this.readCount, "STREAMS", this.key, formatStreamId(this.cursor));
      const replies = await multi.exec();
      const info = parseInfo(resultOrUndefined(replies, 0));
      if (info !== undefined) this.knownAdded = Math.max(this.knownAdded, info.entriesAdded);
      if (info !== undefined && this.missedAfterCursor(info)) {
        // The stretch cannot be read any more: skip to the head and tell every
        // subscriber (sse:reset with the head's id) rather than deliver around a silent hole.
        this.log(
          `this instance fell behind the stream's history (entries after ${formatStreamId(this.cursor)} were trimmed before it read them); ` +
            `its subscribers get sse:reset and continue after ${formatStreamId(info.lastGenerated)}: raise historyLength/historyAge`,
        );
        this.cursor = info.lastGenerated;
        this.addedAtCursor = info.entriesAdded || undefined;
        if (!this.closed) this.sink?.reset?.("history_truncated", this.epoch + "." + formatStreamId(info.lastGenerated));
        continue;
      }
      const n = this.deliverRead(result(replies, 1));
      // At the head, and nothing pushed meanwhile was dropped: the rest is in `pending`.
      if (n < this.readCount && overflows === this.overflows) break;
    }
    this.live = true;
    const pending = this.pending;
    this.pending = [];
    this.pendingEntries = 0;
    // Through the gap check: one may show a later gap, then the rest waits for the next catch-up.
    for (const flat of pending) this.receive(flat);
  }

  /** Frames the entries of an XREAD reply once and hands them to the sink in order. */
  private deliverRead(reply: unknown): number {
    if (!Array.isArray(reply) || reply.length === 0) return 0;
    const entries = (reply[0] as [string, Entry[]])[1];
    if (!Array.isArray(entries) || entries.length === 0) return 0;
    const framed: FramedEvent[] = [];
    for (const [id, fields] of entries) this.take(id, field(fields, "t"), field(fields, "e"), field(fields, "d"), framed);
    if (framed.length > 0 && !this.closed) this.sink?.(framed);
    return entries.length;
  }

  /** Frames a pushed batch `[id, topic, event, data, ...]`, skipping ids already delivered. */
  private deliverPushed(flat: readonly unknown[]): void {
    const framed: FramedEvent[] = [];
    for (let i = 0; i + 3 < flat.length; i += 4) {
      if (this.take(flat[i], flat[i + 1], flat[i + 2], flat[i + 3], framed) && this.live) this.knownAdded++;
    }
    if (framed.length > 0 && !this.closed) this.sink?.(framed);
  }

  /** One entry after the cursor: advance, frame, collect. False if it was not new. */
  private take(id: unknown, topic: unknown, event: unknown, data: unknown, out: FramedEvent[]): boolean {
    const streamId = parseStreamId(id);
    if (streamId === undefined || compareStreamIds(streamId, this.cursor) <= 0) return false;
    this.cursor = streamId;
    if (this.addedAtCursor !== undefined) this.addedAtCursor++;
    // Not ours (someone else wrote to the key): skip it.
    if (typeof topic !== "string") return true;
    const eventId = this.epoch! + "." + (id as string);
    out.push({ id: eventId, topic, frame: frameEvent(typeof event === "string" ? event : "", typeof data === "string" ? data : "", eventId) });
    return true;
  }
}

/** Creates a {@link RedisBroker}; pass it as `createSseRouter({ broker })`. */
export function createRedisBroker(options: RedisBrokerOptions | string = {}): RedisBroker {
  return new RedisBroker(typeof options === "string" ? { url: options } : options);
}
