/**
 * The standalone server through Redis Sentinel (`REDIS_URL=redis+sentinel://…`):
 * URL parsing, and a real master + replica + sentinel where the master is
 * failed over (by command, and by killing it): submits work again on the new
 * master and a subscriber keeps receiving events.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Redis from "ioredis";
import { readConfig, redactRedisUrl, sentinelOptions } from "../src/cli";
import { submitToken, subscribeToken } from "../src/tokens";
import { CliServer, RedisServer, SECRET, SseClient, freePort, requireTools, submit, waitFor } from "./helpers/redis";

test("redis+sentinel:// URLs become ioredis sentinel options; malformed ones are invalid_option; logs hide the password", () => {
  const env = { SSE_SECRET: SECRET };
  const url = "redis+sentinel://user:p%40ss@127.0.0.1:26379,[::1]:26380/my%20master/2";
  expect(readConfig([], { ...env, REDIS_URL: url }).redisUrl).toBe(url);
  const options = sentinelOptions(url);
  expect(options.url).toBe("redis://127.0.0.1/2");
  expect(options.redis).toMatchObject({
    sentinels: [
      { host: "127.0.0.1", port: 26379 },
      { host: "::1", port: 26380 },
    ],
    name: "my master",
    username: "user",
    password: "p@ss",
  });
  expect(redactRedisUrl(url)).toBe("redis+sentinel://127.0.0.1:26379,[::1]:26380/my%20master/2");
  for (const bad of ["redis+sentinel://", "redis+sentinel://h:1", "redis+sentinel://h/m", "redis+sentinel://h:99999/m", "redis+sentinel://h:1/m/x"]) {
    expect(() => readConfig([], { ...env, REDIS_URL: bad })).toThrow(expect.objectContaining({ code: "invalid_option", message: expect.stringContaining("redis+sentinel://") }));
  }
});

describe("through a real Sentinel", () => {
  beforeAll(() => requireTools("redis-server", "redis-sentinel"));

  let master: RedisServer;
  let replica: ChildProcess;
  let replicaPort: number;
  let sentinel: ChildProcess;
  let sentinelClient: Redis;
  let server: CliServer;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-sentinel-"));

  function startProcess(cmd: string, args: string[], ready: RegExp): Promise<ChildProcess> {
    const proc = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    return new Promise((resolve, reject) => {
      const onData = (c: Buffer) => {
        out += c.toString();
        if (ready.test(out)) resolve(proc);
      };
      proc.stdout!.on("data", onData);
      proc.stderr!.on("data", onData);
      proc.once("exit", (code) => reject(new Error(`${cmd} exited (${code}):\n${out}`)));
    });
  }
  const replicaArgs = () => ["--port", String(replicaPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir];
  const masterPort = async () => Number(((await sentinelClient.call("SENTINEL", "get-master-addr-by-name", "m")) as string[])[1]);
  const send = (data: string) => submit(server.url, submitToken(SECRET, [{ topic: "s", event: "n", data }]));

  beforeAll(async () => {
    master = await RedisServer.start();
    replicaPort = await freePort();
    replica = await startProcess("redis-server", [...replicaArgs(), "--replicaof", "127.0.0.1", String(master.port)], /Ready to accept connections/);
    const sentinelPort = await freePort();
    const conf = path.join(dir, "sentinel.conf");
    fs.writeFileSync(conf, `port ${sentinelPort}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor m 127.0.0.1 ${master.port} 1\nsentinel down-after-milliseconds m 2000\nsentinel failover-timeout m 10000\n`);
    sentinel = await startProcess("redis-sentinel", [conf], /Sentinel ID is/);
    sentinelClient = new Redis({ host: "127.0.0.1", port: sentinelPort });
    await waitFor(async () => ((await sentinelClient.call("SENTINEL", "replicas", "m")) as unknown[]).length > 0, 15_000, "sentinel to see the replica");
    server = await CliServer.start({ REDIS_URL: `redis+sentinel://127.0.0.1:${sentinelPort}/m` });
  }, 60_000);

  afterAll(async () => {
    await server?.stop();
    sentinelClient?.disconnect();
    sentinel?.kill("SIGKILL");
    replica?.kill("SIGKILL");
    await master?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("SENTINEL FAILOVER: submits are accepted again on the new master, and still reach a subscriber", async () => {
    const sub = await SseClient.open(server.url, subscribeToken(SECRET, ["s"]));
    expect(await send("before")).toBe(200);
    const oldPort = await masterPort();
    await sentinelClient.call("SENTINEL", "failover", "m");
    await waitFor(async () => (await masterPort()) !== oldPort, 20_000, "the failover");
    await waitFor(async () => (await send("after")) === 200, 20_000, "a submit accepted by the new master");
    await waitFor(() => sub.data("n").includes("after"), 10_000, "the subscriber to get the event submitted after the failover");
    expect(sub.data("n")[0]).toBe("before");
    sub.close();
  }, 60_000);

  test("the master killed and failed over: the instance follows the new master", async () => {
    const oldPort = await masterPort();
    // Whichever process is master now (the replica process after the previous test).
    const victimIsReplicaProcess = oldPort === replicaPort;
    if (victimIsReplicaProcess) {
      const exited = new Promise((r) => replica.once("exit", r));
      replica.kill("SIGKILL");
      await exited;
    } else await master.stop();
    await waitFor(async () => (await masterPort()) !== oldPort, 30_000, "sentinel to promote the replica");
    // The old master comes back at once (empty, as a master: nothing told it otherwise yet), as a
    // restarted machine would; Sentinel turns it into a replica. The instance must keep publishing.
    if (victimIsReplicaProcess) replica = await startProcess("redis-server", replicaArgs(), /Ready to accept connections/);
    else await master.start();
    await waitFor(async () => (await send("after kill")) === 200, 30_000, "a submit accepted by the new master");
    for (let i = 0; i < 20; i++) {
      await waitFor(async () => (await send(`later ${i}`)) === 200, 30_000, `submit ${i} after the old master returned`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }, 90_000);
});
