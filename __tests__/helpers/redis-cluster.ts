/**
 * A real Redis Cluster for tests: N masters (and optionally replicas), each a
 * `redis-server --cluster-enabled yes` child process on free local ports,
 * joined with `redis-cli --cluster create`, ready once every node reports
 * `cluster_state:ok` with all 16384 slots served and every node known.
 *
 * ```ts
 * const env = useRedisCluster(); // beforeAll starts it, afterAll kills it
 * test("...", async () => {
 *   const cluster = new Redis.Cluster(env.cluster.startupNodes);
 * });
 * ```
 *
 * Each node's cluster bus port is chosen free too (`cluster-port`, Redis 7):
 * the default `port + 10000` may be taken or above 65535 for an ephemeral port.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { RedisServer, freePort, requireTools, waitFor } from "./redis";

export interface RedisClusterOptions {
  /** Master nodes (each serves a third, for 3, of the 16384 slots). Defaults to `3`. */
  masters?: number;
  /** Replicas per master: with 1, killing a master fails over to its replica. Defaults to `0`. */
  replicas?: number;
  /** `cluster-node-timeout` in ms: how long until a silent node is marked failed (and its replica promoted). Defaults to `1000`. */
  nodeTimeout?: number;
  /** How long starting (and each wait for `cluster_state:ok`) may take, in ms. Defaults to `30000`. */
  timeout?: number;
}

/** One line of `CLUSTER NODES`, the fields the tests need. */
export interface ClusterNodeInfo {
  id: string;
  port: number;
  role: "master" | "replica";
  /** The cluster agreed that the node failed (flag `fail`; a single node's suspicion, `fail?`, does not count). */
  failed: boolean;
  /** Slot ranges served (masters), e.g. `[[0, 5460]]`. */
  slots: Array<[number, number]>;
}

/** Runs `redis-cli` with `args`; resolves with its stdout, rejects on a non-zero exit or after `timeout` ms. */
export function redisCli(args: readonly string[], timeout = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile("redis-cli", [...args], { timeout, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(" ")} failed: ${err.message}\n${stdout}${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `CLUSTER INFO` of the node on `port` as a map, or undefined when it does not answer. */
async function clusterInfo(port: number): Promise<Map<string, string> | undefined> {
  try {
    const out = await redisCli(["-h", "127.0.0.1", "-p", String(port), "cluster", "info"], 2000);
    return new Map(
      out
        .split(/\r?\n/)
        .filter((line) => line.includes(":"))
        .map((line) => [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()]),
    );
  } catch {
    return undefined;
  }
}

export class RedisCluster {
  private readonly busPorts = new Map<RedisServer, number>();

  private constructor(
    /** Every node started, masters first in creation order (roles can change after a failover: see {@link nodes}). */
    readonly servers: readonly RedisServer[],
    private readonly replicas: number,
    private readonly timeout: number,
  ) {}

  /** Where an ioredis `Cluster` starts: every node. */
  get startupNodes(): Array<{ host: string; port: number }> {
    return this.servers.map((s) => ({ host: "127.0.0.1", port: s.port }));
  }

  /** The nodes still running (not killed with {@link kill}). */
  get running(): RedisServer[] {
    return this.servers.filter((s) => s.pid !== undefined);
  }

  /** Starts the nodes, creates the cluster, waits until it serves every slot. */
  static async start(options: RedisClusterOptions = {}): Promise<RedisCluster> {
    requireTools("redis-server", "redis-cli");
    const masters = options.masters ?? 3;
    const replicas = options.replicas ?? 0;
    const nodeTimeout = options.nodeTimeout ?? 1000;
    const timeout = options.timeout ?? 30_000;
    if (!Number.isInteger(masters) || masters < 3) throw new Error("a Redis Cluster needs at least 3 masters");
    const count = masters * (1 + replicas);
    const servers: RedisServer[] = [];
    const cluster = new RedisCluster(servers, replicas, timeout);
    try {
      // Ports one after the other: two free ports per node, all distinct.
      const ports = new Set<number>();
      while (ports.size < 2 * count) ports.add(await freePort());
      const list = [...ports];
      const started = await Promise.all(
        Array.from({ length: count }, (_, i) => {
          const port = list[2 * i]!;
          const bus = list[2 * i + 1]!;
          return RedisServer.start(port, (dir) => [
            "--cluster-enabled", "yes",
            "--cluster-config-file", path.join(dir, `nodes-${port}.conf`),
            "--cluster-port", String(bus),
            "--cluster-node-timeout", String(nodeTimeout),
          ]).then((server) => {
            cluster.busPorts.set(server, bus);
            return server;
          });
        }),
      );
      servers.push(...started);
      await redisCli(
        ["--cluster", "create", ...servers.map((s) => `127.0.0.1:${s.port}`), "--cluster-replicas", String(replicas), "--cluster-yes"],
        timeout,
      );
      await cluster.waitUntilOk(count);
      return cluster;
    } catch (err) {
      await cluster.close();
      throw err;
    }
  }

  /**
   * Waits until every running node says `cluster_state:ok`, all 16384 slots
   * served by healthy masters, and (when given) knows `knownNodes` nodes.
   */
  async waitUntilOk(knownNodes?: number, timeout = this.timeout): Promise<void> {
    let last = "";
    await waitFor(
      async () => {
        const infos = await Promise.all(this.running.map((s) => clusterInfo(s.port)));
        last = infos.map((info, i) => `${this.running[i]?.port}: ${info ? `${info.get("cluster_state")} slots_ok=${info.get("cluster_slots_ok")} known=${info.get("cluster_known_nodes")}` : "no answer"}`).join("; ");
        return infos.every(
          (info) =>
            info !== undefined &&
            info.get("cluster_state") === "ok" &&
            info.get("cluster_slots_ok") === "16384" &&
            (knownNodes === undefined || info.get("cluster_known_nodes") === String(knownNodes)),
        );
      },
      timeout,
      "cluster_state:ok on every node",
    ).catch((err: Error) => {
      throw new Error(`${err.message} (last seen: ${last})`);
    });
  }

  /** `CLUSTER NODES` as seen by a running node. */
  async nodes(): Promise<ClusterNodeInfo[]> {
    const via = this.running[0];
    if (!via) throw new Error("no cluster node is running");
    const out = await redisCli(["-h", "127.0.0.1", "-p", String(via.port), "cluster", "nodes"]);
    return out
      .split(/\r?\n/)
      .filter(Boolean)
      .map((line) => {
        // <id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot> <slot> ...
        const cols = line.split(" ");
        const flags = cols[2]!.split(",");
        return {
          id: cols[0]!,
          port: Number(/:(\d+)@/.exec(cols[1]!)![1]),
          role: flags.includes("master") ? ("master" as const) : ("replica" as const),
          failed: flags.includes("fail"),
          slots: cols
            .slice(8)
            .filter((s) => /^\d+(-\d+)?$/.test(s))
            .map((s) => {
              const [a, b] = s.split("-").map(Number);
              return [a!, b ?? a!] as [number, number];
            }),
        };
      });
  }

  /** The cluster slot of `key` (CRC16 of its hash tag or the whole key, mod 16384), as the server computes it. */
  async slotOf(key: string): Promise<number> {
    const via = this.running[0];
    if (!via) throw new Error("no cluster node is running");
    return Number((await redisCli(["-h", "127.0.0.1", "-p", String(via.port), "cluster", "keyslot", key])).trim());
  }

  /** The running server of the master that serves `key` now. */
  async masterOf(key: string): Promise<RedisServer> {
    const slot = await this.slotOf(key);
    const master = (await this.nodes()).find((n) => n.role === "master" && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b));
    const server = master && this.running.find((s) => s.port === master.port);
    if (!server) throw new Error(`no running master serves slot ${slot}`);
    return server;
  }

  /**
   * Kills `server` (SIGKILL: a crash). With replicas, waits until the
   * survivors promoted its replica and serve every slot again; without, the
   * cluster stays down for that node's slots (`cluster_state:fail`).
   */
  async kill(server: RedisServer): Promise<void> {
    const port = server.port;
    await server.stop("SIGKILL");
    if (this.replicas === 0) return;
    // Until the survivors agree it failed they still report ok: wait for that first.
    await waitFor(async () => (await this.nodes()).some((n) => n.port === port && n.failed), this.timeout, `node ${port} marked failed`);
    await this.waitUntilOk();
  }

  /** Kills every node and removes their directories. */
  async close(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.close()));
  }
}

/** A cluster started by jest's beforeAll and killed by afterAll; `cluster` is set once beforeAll ran. */
export interface ClusterEnv {
  cluster: RedisCluster;
}

/** Registers beforeAll/afterAll hooks that start a {@link RedisCluster} with `options` and close it. */
export function useRedisCluster(options: RedisClusterOptions = {}): ClusterEnv {
  const env = {} as ClusterEnv;
  beforeAll(async () => {
    env.cluster = await RedisCluster.start(options);
  }, (options.timeout ?? 30_000) * 2);
  afterAll(async () => {
    await env.cluster?.close();
  }, 30_000);
  return env;
}
