/**
 * Cluster-wide presence: two standalone servers (`node dist/cli.js`) on one
 * real Redis. `POST /presence` on either sums both instances; an instance
 * killed with SIGKILL (no chance to withdraw its counts) drops out when its
 * snapshot's TTL runs out; one stopped with SIGTERM withdraws at once; `sse:presence` streams
 * see the other instance's subscribers too.
 */
import { presenceToken, subscribeToken } from "../src/tokens";
import { CliServer, RedisServer, SECRET, SseClient, waitFor } from "./helpers/redis";

let redis: RedisServer;
const servers: CliServer[] = [];
const clients: SseClient[] = [];

beforeAll(async () => {
  redis = await RedisServer.start();
});
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});
afterAll(async () => {
  await redis.close();
});

async function start(): Promise<CliServer> {
  const server = await CliServer.start({ REDIS_URL: redis.url });
  servers.push(server);
  return server;
}

async function counts(base: string, topics: string[]): Promise<unknown> {
  const res = await fetch(`${base}/presence`, { method: "POST", body: presenceToken(SECRET, topics), signal: AbortSignal.timeout(10_000) });
  expect(res.status).toBe(200);
  return res.json();
}

async function subscribe(base: string, topics: string[], extra: { presence?: boolean } = {}): Promise<SseClient> {
  const client = await SseClient.open(base, subscribeToken(SECRET, topics, extra));
  clients.push(client);
  return client;
}

/** Polls POST /presence until it answers `expected` (counts of other instances arrive within about a second). */
async function expectCounts(base: string, topics: string[], expected: Record<string, number>, timeout: number, what: string): Promise<void> {
  let last: unknown;
  await waitFor(
    async () => {
      last = await counts(base, topics);
      return JSON.stringify(last) === JSON.stringify({ counts: expected });
    },
    timeout,
    `${what} (last answer ${JSON.stringify(last)})`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last answer ${JSON.stringify(last)}`);
  });
}

test("counts sum both instances; a SIGKILLed instance leaves them once its snapshot expires", async () => {
  const [a, b] = await Promise.all([start(), start()]);
  for (let i = 0; i < 2; i++) await subscribe(a.url, ["room", "a-only"]);
  for (let i = 0; i < 3; i++) await subscribe(b.url, ["room"]);
  const watcher = await subscribe(a.url, ["room"], { presence: true });
  await expectCounts(a.url, ["room", "a-only", "none"], { room: 6, "a-only": 2, none: 0 }, 10_000, "both instances counted on a");
  await expectCounts(b.url, ["room"], { room: 6 }, 10_000, "both instances counted on b");
  await waitFor(() => watcher.data("sse:presence").includes('{"room":6}'), 10_000, "sse:presence with b's subscribers");

  b.proc.kill("SIGKILL");
  await b.exited;
  // b's snapshot lives presenceTtl (10 s by default) unless refreshed; the wait is only a deadlock guard.
  await expectCounts(a.url, ["room"], { room: 3 }, 30_000, "b's subscribers to leave the counts");
  await waitFor(() => watcher.data("sse:presence").includes('{"room":3}'), 5_000, "sse:presence without b's subscribers");
}, 60_000);

test("a stopped instance (SIGTERM) withdraws its counts at once", async () => {
  const [a, b] = await Promise.all([start(), start()]);
  await subscribe(a.url, ["stop"]);
  await subscribe(b.url, ["stop"]);
  await expectCounts(a.url, ["stop"], { stop: 2 }, 10_000, "both instances counted");
  expect(await b.stop()).toBe(0);
  // No waiting for a TTL: the first answer after the stop is already without b.
  expect(await counts(a.url, ["stop"])).toEqual({ counts: { stop: 1 } });
}, 60_000);
