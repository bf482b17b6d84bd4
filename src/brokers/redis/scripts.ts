/**
 * The two Lua scripts of the broker, and typed calls to them. Each runs
 * atomically in Redis: no other client's command runs between its steps.
 */
import type { EventInput } from "../../types";
import type { Connection } from "./connection";
import { result } from "./stream";
import { ZERO, formatStreamId, newEpoch, parseEpochValue, parseStreamId, type StreamId } from "./ids";

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

/**
 * The same script pushing with SPUBLISH (sharded pub/sub, Redis 7) for a
 * Redis Cluster: the channel carries the partition's hash tag, so it is in
 * the slot of the script's keys and only that shard's subscribers get it.
 */
const SPUBLISH_SCRIPT = PUBLISH_SCRIPT.replace('redis.call("PUBLISH"', 'redis.call("SPUBLISH"');

/** The stream's keys: the stream itself and its epoch (`<key>:epoch`). */
export interface StreamKeys {
  readonly key: string;
  readonly epochKey: string;
}

/** What an instance knows of the stream, for {@link SYNC_SCRIPT}'s "went back in time" check. */
export interface KnownPosition {
  readonly epoch: string;
  /** Last stream id read. */
  readonly cursor: StreamId;
  /** Highest `entries-added` seen in this epoch. */
  readonly added: number;
  /** Epochs followed before this one: seeing one of them again means Redis went back to older data. */
  readonly pastEpochs: readonly string[];
}

export interface SyncResult {
  readonly epoch: string;
  /** Where in the stream the epoch is valid from. */
  readonly from: StreamId;
  readonly head: StreamId;
  /** Redis 7's `entries-added` (0 when unknown). */
  readonly added: number;
}

/**
 * Runs {@link SYNC_SCRIPT} on `conn`. With `known`, renews the epoch if the
 * stream is behind it; without, only creates a missing epoch.
 */
export async function syncEpoch(conn: Connection, keys: StreamKeys, known: KnownPosition | undefined): Promise<SyncResult> {
  const reply = (await conn.eval(
    SYNC_SCRIPT,
    2,
    keys.epochKey,
    keys.key,
    newEpoch(),
    known?.epoch ?? "",
    formatStreamId(known?.cursor ?? ZERO),
    known?.added ?? 0,
    known?.pastEpochs.join(" ") ?? "",
  )) as [string, string, number];
  const { epoch, from } = parseEpochValue(reply[0]);
  return { epoch, from, head: parseStreamId(reply[1]) ?? ZERO, added: Number(reply[2]) || 0 };
}

export interface PublishBatch {
  readonly maxLen: number;
  /** MINID for the age bound (`""` for none). */
  readonly minId: string;
  readonly channel: string;
  /** Push with SPUBLISH (a Cluster's sharded channel) instead of PUBLISH. */
  readonly sharded: boolean;
  /** Idempotency window in ms; with `idempotencyKey`, the key is remembered this long. */
  readonly window: number;
  /** Full Redis key `<key>:idem:<k>`, or undefined for none. */
  readonly idempotencyKey: string | undefined;
  /** Replicas that must have the batch before it counts as stored (`WAIT`), 0 for none. */
  readonly waitReplicas: number;
  /** How long `WAIT` waits for them, in ms. */
  readonly waitTimeout: number;
}

/**
 * Runs {@link PUBLISH_SCRIPT}: the number of events appended, or -1 for a
 * known idempotency key. With `waitReplicas`, `WAIT` follows the script in
 * the same pipeline (so on a Cluster it goes to the node that ran it), and
 * fewer replicas than asked within `waitTimeout` is an error: the caller
 * answers 503 and a retry with the same idempotency key appends nothing
 * (and waits for the replicas again).
 */
export async function publishBatch(conn: Connection, key: string, events: readonly EventInput[], batch: PublishBatch): Promise<number> {
  const args: (string | number)[] = [batch.maxLen, batch.minId, batch.channel, batch.window];
  for (const e of events) args.push(e.topic, e.event, e.data);
  const keys = batch.idempotencyKey === undefined ? [key] : [key, batch.idempotencyKey];
  const script = batch.sharded ? SPUBLISH_SCRIPT : PUBLISH_SCRIPT;
  if (batch.waitReplicas === 0) return Number(await conn.eval(script, keys.length, ...keys, ...args));
  const replies = await conn.pipeline().eval(script, keys.length, ...keys, ...args).call("WAIT", batch.waitReplicas, batch.waitTimeout).exec();
  const appended = Number(result(replies, 0));
  const replicas = Number(result(replies, 1));
  if (replicas < batch.waitReplicas) {
    throw new Error(`stored on the primary but confirmed by ${replicas} of ${batch.waitReplicas} replicas within ${batch.waitTimeout} ms`);
  }
  return appended;
}

