/**
 * Redis faults under two standalone servers (separate processes): Redis
 * killed while subscribers are connected and a publisher is submitting, then
 * started again on the same port (empty: no persistence).
 */
import { submitToken, subscribeToken } from "../src/tokens";
import { CliServer, RedisServer, SECRET, rssOf, sleep, submit, waitFor, twoInstancesOnRedis } from "./helpers/redis";

const env = twoInstancesOnRedis();
let redis: RedisServer;
let a: CliServer;
let b: CliServer;
beforeAll(() => {
  ({ redis, a, b } = env);
});
const subscribe = env.subscribe;

test("Redis down under load: submits get 503 one after another (not queued), nobody crashes, memory stays flat; after restart every acknowledged event reached every subscriber", async () => {
  const subs = [await subscribe(a, ["f"]), await subscribe(a, ["f", "g"]), await subscribe(b, ["f"]), await subscribe(b, ["f"])];
  const acked: string[] = [];
  const statuses = new Map<number, number>();
  const unavailable = { a: 0, b: 0 };
  let running = true;
  let seq = 0;
  // Two publishers, one per instance, each submitting sequentially as fast as answered.
  const publisher = async (server: CliServer, name: "a" | "b") => {
    while (running) {
      const data = `${name}${seq++}`;
      const status = await submit(server.url, submitToken(SECRET, [{ topic: "f", event: "n", data }]));
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
      if (status === 200) acked.push(data);
      else if (status === 503) unavailable[name]++;
      else await sleep(10);
    }
  };
  const publishing = Promise.all([publisher(a, "a"), publisher(b, "b")]);

  await waitFor(() => acked.length >= 100, 15_000, "100 acknowledged events before the outage");
  const rssBefore = [rssOf(a.pid), rssOf(b.pid)];
  await redis.stop(); // SIGKILL: a crash
  const ackedBeforeOutage = acked.length;
  // Submits during the outage are answered 503, each before the next is
  // sent: not queued, not hung, and not held for the publish timeout (5 s
  // each would take minutes for 100 in a row; the wait is a deadlock guard).
  await waitFor(() => unavailable.a >= 100 && unavailable.b >= 100, 30_000, "100 submits answered 503 by each instance during the outage");
  const rssDuring = [rssOf(a.pid), rssOf(b.pid)];
  await redis.start(); // same port, empty
  await waitFor(() => acked.length >= ackedBeforeOutage + 100, 20_000, "100 acknowledged events after the restart");
  running = false;
  await publishing;

  expect([...statuses.keys()].sort()).toEqual([200, 503]);
  // Both processes survived, with flat memory (no queue growing during the outage).
  expect(a.running && b.running).toBe(true);
  for (let i = 0; i < 2; i++) expect(rssDuring[i]! - rssBefore[i]!).toBeLessThan(40 * 1024 * 1024);
  // Every event that got a 200 reached every subscriber; the streams never closed.
  await waitFor(() => subs.every((s) => acked.every((d) => s.data("n").includes(d))), 10_000, "every acknowledged event everywhere").catch((err) => {
    const missing = subs.map((s, i) => `sub ${i}: ` + acked.map((d, k) => (s.data("n").includes(d) ? "" : `${d}@${k}`)).filter(Boolean).join(" "));
    throw new Error(`${(err as Error).message}; acked before outage ${ackedBeforeOutage} of ${acked.length}; missing: ${missing.join("; ")}`);
  });
  for (const s of subs) {
    expect(s.closed).toBe(false);
    const got = s.data("n");
    expect(new Set(got).size).toBe(got.length); // and none twice
  }
}, 90_000);

test("Redis restarted empty: a client resuming with an old id gets sse:reset, then live events", async () => {
  // Retried until 200 after a restart: with an idempotency key, so a 503 that was stored after all cannot deliver twice.
  const send = async (server: CliServer, data: string, topic = "e") =>
    submit(server.url, submitToken(SECRET, [{ topic, event: "n", data }], { idempotencyKey: `${server.pid}:${topic}:${data}` }));
  // After the previous test's restart, each instance reconnects on its own backoff (up to 1 s).
  for (const server of [a, b]) await waitFor(async () => (await send(server, "", "warm-up")) === 200, 15_000, "submits to work");
  const first = await subscribe(a, ["e"]);
  expect(await send(b, "1")).toBe(200);
  await first.waitForEvents(1);
  const oldId = first.lastId!;
  first.close();
  const watcher = await subscribe(b, ["e"]);
  await redis.stop();
  await redis.start();
  await waitFor(async () => (await send(b, "2")) === 200, 15_000, "submits to work again");
  // B's read loop has caught up with the new stream (else "2" could still arrive live after the reset).
  await waitFor(() => watcher.data("n").includes("2"), 10_000, "B to deliver event 2");
  const resumed = await subscribe(b, ["e"], oldId);
  await resumed.waitForEvents(1);
  expect(resumed.events[0]).toEqual({ event: "sse:reset", data: JSON.stringify({ reason: "unknown_id" }), id: expect.any(String) });
  // The reset carries the new stream's head, from which the client resumes.
  expect(resumed.events[0]!.id!.split(".")[0]).not.toBe(oldId.split(".")[0]);
  // A reconnects on its own backoff (up to 1 s): it may not be back yet.
  await waitFor(async () => (await send(a, "3")) === 200, 15_000, "submits to A to work again");
  await waitFor(() => resumed.data("n").includes("3"), 10_000, "a live event after the reset");
  expect(resumed.data("n")).toEqual(["3"]);
}, 40_000);
