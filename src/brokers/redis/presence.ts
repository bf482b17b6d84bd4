/**
 * Cluster-wide presence on Redis (the {@link PresenceBroker} ability of the
 * Redis broker, kept here so ./index.ts only delegates to it).
 *
 * Each instance owns one hash `<key>:presence:<instance>` (`<key>:{presence}:<instance>` with partitions) (topic → count),
 * rewritten whole on every publish and given a TTL, and a member of the
 * sorted set `<key>:presence` whose score is when its hash expires (on the
 * Redis clock, so instance clock skew does not matter). Readers sum the
 * hashes of members whose score is still in the future: an instance that
 * died stops renewing and drops out when its TTL runs out, even before
 * Redis expires the key itself. Both scripts run atomically.
 */
import { randomBytes } from "node:crypto";
import type { Connection } from "./connection";

/**
 * KEYS: set, hash. ARGV: ttl ms, instance, then topic, count pairs.
 * Replaces the hash with the snapshot and renews the membership.
 */
const PUBLISH_PRESENCE = `
pcall(redis.replicate_commands)
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call("DEL", KEYS[2])
for i = 3, #ARGV, 2 do redis.call("HSET", KEYS[2], ARGV[i], ARGV[i + 1]) end
if #ARGV > 2 then redis.call("PEXPIRE", KEYS[2], ttl) end
redis.call("ZADD", KEYS[1], now + ttl, ARGV[2])
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", now)
return 1
`;

/**
 * KEYS: set. ARGV: hash key prefix, this instance (skipped), then topics.
 * Returns the sum per topic over the other live instances.
 */
const READ_PRESENCE = `
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local sums = {}
for i = 3, #ARGV do sums[i - 2] = 0 end
if #sums == 0 then return sums end
local members = redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. now, "+inf")
for _, member in ipairs(members) do
  if member ~= ARGV[2] then
    local counts = redis.call("HMGET", ARGV[1] .. member, unpack(ARGV, 3))
    for i, c in ipairs(counts) do
      if c then sums[i] = sums[i] + tonumber(c) end
    end
  end
end
return sums
`;

/** HMGET arguments per script call (Lua's `unpack` has a stack limit). */
const MAX_TOPICS_PER_READ = 4000;

export class RedisPresenceStore {
  /** This instance, in the set and in its hash's name. */
  readonly instance = randomBytes(8).toString("hex");
  private readonly setKey: string;
  private readonly prefix: string;

  /**
   * `base` is the set's key, `<key>:presence` (one partition: today's keys),
   * or with partitions `<key>:{presence}`, so the set and every instance's
   * hash `<base>:<instance>` share one Redis Cluster slot (the read script
   * reads hashes it finds in the set, which a Cluster allows only in the
   * slot of its declared key).
   */
  constructor(
    base: string,
    readonly ttl: number,
  ) {
    this.setKey = base;
    this.prefix = base + ":";
  }

  async publish(conn: Connection, counts: ReadonlyMap<string, number>): Promise<void> {
    const args: (string | number)[] = [this.ttl, this.instance];
    for (const [topic, n] of counts) if (n > 0) args.push(topic, n);
    await conn.eval(PUBLISH_PRESENCE, 2, this.setKey, this.prefix + this.instance, ...args);
  }

  async read(conn: Connection, topics: readonly string[]): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < topics.length; i += MAX_TOPICS_PER_READ) {
      const part = topics.slice(i, i + MAX_TOPICS_PER_READ);
      const sums = (await conn.eval(READ_PRESENCE, 1, this.setKey, this.prefix, this.instance, ...part)) as number[];
      for (const n of sums) out.push(Number(n) || 0);
    }
    return out;
  }

  async clear(conn: Connection): Promise<void> {
    await conn.multi().del(this.prefix + this.instance).zrem(this.setKey, this.instance).exec();
  }
}
