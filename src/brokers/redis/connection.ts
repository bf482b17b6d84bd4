/**
 * Loading ioredis, opening the broker's two connections, and how their
 * failures are told: to publishers (what they can do) and to the log (once
 * per outage).
 */
import type Redis from "ioredis";
import type { Cluster, ClusterNode, ClusterOptions, RedisOptions } from "ioredis";
import { SseError } from "../../errors";

/**
 * ioredis is an optional peer dependency: without it, loading `sse-hub/redis`
 * must say what to do, not Node's bare "Cannot find module 'ioredis'". So it
 * is loaded with `require` inside a try (types come from `import type` only).
 * The ESM build gets a module-scoped `require` from `createRequire` (a banner
 * in tsup.config.ts), so both builds resolve ioredis from this file's place.
 */
function loadIoredis(): typeof Redis {
  let mod: typeof Redis & { default?: typeof Redis };
  try {
    mod = require("ioredis");
  } catch (err) {
    // Only ioredis itself missing; a broken install of it keeps Node's own error.
    if ((err as NodeJS.ErrnoException).code === "MODULE_NOT_FOUND" && /['"]ioredis['"]/.test((err as Error).message)) {
      throw Object.assign(
        new Error("sse-hub/redis needs the ioredis package, which is not installed: run `npm install ioredis` next to sse-hub", { cause: err }),
        { code: "MODULE_NOT_FOUND" },
      );
    }
    throw err;
  }
  return mod.default ?? mod;
}

/** Loaded when this module is: `require("sse-hub/redis")` fails at once without it. */
const RedisClient = loadIoredis();

/** Reconnect delay after `attempt` failures: 50 ms doubling, at most 1 s. */
export const backoff = (attempt: number): number => Math.min(50 * 2 ** Math.min(attempt, 5), 1000);

/** A connection to one Redis server (or a Sentinel-managed primary), or to a Redis Cluster: the broker uses what both have. */
export type Connection = Redis | Cluster;

export interface Connections {
  /** Commands: publish, replay, catching up. Never blocks; fails fast while disconnected. */
  readonly cmd: Connection;
  /** Subscribed to the streams' channels: every published batch is pushed here. */
  readonly reader: Connection;
  /** The database number (channels are global to a Redis server, so the channel names it); 0 on a Cluster. */
  readonly db: number;
}

/** Where the broker connects: a URL (one server, or Sentinel through `options`), or the seed nodes of a Redis Cluster. */
export interface ConnectionTarget {
  readonly url: string;
  readonly options: RedisOptions | undefined;
  readonly cluster: readonly ClusterNode[] | undefined;
}

/** Creates (without connecting) the command and reader connections. */
export function openConnections(target: ConnectionTarget, commandTimeout: number): Connections {
  const { url, options } = target;
  const base: RedisOptions = {
    ...options,
    // RESP2 replies have the same shape in ioredis 5 and 6.
    protocol: 2,
    lazyConnect: true,
    // Fail fast instead of queueing while Redis is away; retry forever in the background.
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    autoResendUnfulfilledCommands: false,
    // The reader subscribes again itself, then catches up (see RedisReader).
    autoResubscribe: false,
    retryStrategy: backoff,
    connectTimeout: options?.connectTimeout ?? 3000,
    keepAlive: options?.keepAlive ?? 10_000,
    commandTimeout,
  } as RedisOptions;
  // CLIENT LIST shows `<name>:cmd` and `<name>:reader` for each instance.
  const name = options?.connectionName ?? "sse-server";
  if (target.cluster !== undefined) {
    const cluster = (connectionName: string): Cluster => {
      const clusterOptions: ClusterOptions = {
        redisOptions: { ...base, lazyConnect: undefined, connectionName } as RedisOptions,
        lazyConnect: true,
        enableOfflineQueue: false,
        clusterRetryStrategy: backoff,
        // Sharded pub/sub: each partition's batches are pushed only by the shard that owns its slot, to the readers of that partition.
        shardedSubscribers: true,
        scaleReads: "master",
      } as ClusterOptions;
      return new RedisClient.Cluster(target.cluster as ClusterNode[], clusterOptions);
    };
    return { cmd: cluster(name + ":cmd"), reader: cluster(name + ":reader"), db: 0 };
  }
  const cmd = new RedisClient(url, { ...base, connectionName: name + ":cmd" } as RedisOptions);
  const reader = new RedisClient(url, { ...base, connectionName: name + ":reader" } as RedisOptions);
  return { cmd, reader, db: Number((cmd.options as { db?: number }).db ?? 0) };
}

/**
 * What a publisher is told while Redis is away: what it can do, not the Redis
 * client's internals (e.g. "Stream isn't writeable and enableOfflineQueue
 * options is false"); those stay on `cause`, and the outage itself is logged
 * once by {@link OutageLog}.
 */
export function unavailable(err: unknown): SseError {
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
 * Logs an outage once when it starts (an error on either connection) and
 * once when the reader follows the stream again, however many errors and
 * reconnect attempts lie between.
 */
export class OutageLog {
  private down = false;

  constructor(private readonly log: (message: string) => void) {}

  failed(err: unknown): void {
    if (this.down) return;
    this.down = true;
    this.log(`Redis unreachable (${describe(err)}); publishing answers 503 and reading retries until it is back`);
  }

  recovered(): void {
    if (!this.down) return;
    this.down = false;
    this.log("Redis reachable again; reading on from the last event read");
  }
}
