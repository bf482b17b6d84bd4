/**
 * Redis comes back with an older copy of its data that carries an older
 * epoch (found by the chaos soak: a stale AOF/RDB, or a lagging replica
 * promoted by Sentinel). The broker had moved on to a newer epoch meanwhile
 * (Redis had restarted empty once). It must not take the old epoch back as
 * if another instance had renewed it: that replayed the whole old stream to
 * live subscribers (thousands of duplicates, out of order) and made its
 * stale ids resumable. It renews the epoch instead.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import Redis from "ioredis";
import { submitToken, subscribeToken } from "../src/tokens";
import { CliServer, SECRET, SseClient, freePort, requireTools, submit, waitFor } from "./helpers/redis";

describe("Redis restored from an older snapshot with an older epoch", () => {
  beforeAll(() => requireTools("redis-server"));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-stale-"));
  let port: number;
  let redis: ChildProcess | undefined;
  let server: CliServer;

  async function startRedis(): Promise<void> {
    const proc = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    await new Promise<void>((resolve, reject) => {
      const onData = (c: Buffer) => {
        out += c.toString();
        if (out.includes("Ready to accept connections")) resolve();
      };
      proc.stdout!.on("data", onData);
      proc.stderr!.on("data", onData);
      proc.once("exit", (code) => reject(new Error(`redis-server exited (${code}):\n${out}`)));
    });
    redis = proc;
  }
  async function killRedis(): Promise<void> {
    const proc = redis!;
    redis = undefined;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGKILL");
    await exited;
  }
  const send = (data: string) => submit(server.url, submitToken(SECRET, [{ topic: "t", event: "n", data }]));
  const sendUntilAccepted = (data: string) => waitFor(async () => (await send(data)) === 200, 20_000, `"${data}" to be accepted`);

  beforeAll(async () => {
    port = await freePort();
    await startRedis();
    server = await CliServer.start({ REDIS_URL: `redis://127.0.0.1:${port}` });
  }, 30_000);

  afterAll(async () => {
    await server?.stop();
    if (redis) await killRedis();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("a live subscriber gets nothing twice, and an id from the stale epoch gets sse:reset", async () => {
    const sub = await SseClient.open(server.url, subscribeToken(SECRET, ["t"]));
    for (const d of ["old-1", "old-2", "old-3"]) expect(await send(d)).toBe(200);
    await waitFor(() => sub.data("n").length === 3, 10_000, "the first events");
    const staleId = sub.lastId!;
    // Snapshot of epoch 1 and its stream, kept aside.
    const client = new Redis({ host: "127.0.0.1", port });
    await client.call("SAVE");
    client.disconnect();
    fs.copyFileSync(path.join(dir, "dump.rdb"), path.join(dir, "stale.rdb"));

    // Redis restarts empty: epoch 2.
    await killRedis();
    fs.rmSync(path.join(dir, "dump.rdb"));
    await startRedis();
    await sendUntilAccepted("mid-1");
    await waitFor(() => sub.data("n").includes("mid-1"), 10_000, "an event of epoch 2");

    // Redis restarts from the old snapshot: epoch 1 and its old stream are back.
    await killRedis();
    fs.copyFileSync(path.join(dir, "stale.rdb"), path.join(dir, "dump.rdb"));
    await startRedis();
    await sendUntilAccepted("new-1");
    await waitFor(() => sub.data("n").includes("new-1"), 10_000, "an event after the stale restore");
    expect(await send("new-2")).toBe(200);
    await waitFor(() => sub.data("n").includes("new-2"), 10_000, "one more live event");

    // Exactly once each, in order: the old stream was not replayed.
    expect(sub.data("n")).toEqual(["old-1", "old-2", "old-3", "mid-1", "new-1", "new-2"]);
    expect(sub.closed).toBe(false);
    sub.close();

    // Ids of the old epoch are not resumable as if nothing had happened.
    const resumed = await SseClient.open(server.url, subscribeToken(SECRET, ["t"]), staleId);
    await resumed.waitForEvents(1);
    expect(resumed.events[0]).toEqual({ event: "sse:reset", data: JSON.stringify({ reason: "unknown_id" }), id: expect.any(String) });
    resumed.close();
  }, 90_000);
});
