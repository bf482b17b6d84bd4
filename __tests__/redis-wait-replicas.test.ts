/**
 * Option `waitReplicas` on a real primary + replica: `publish()` resolves
 * only once a replica has the batch (`WAIT`), so an acknowledged event
 * survives the primary's loss (the Sentinel split brain of docs/DEPLOY.md);
 * with the replica paused it answers `broker_unavailable`, and the retry
 * with the same idempotency key appends nothing and succeeds once the
 * replica is back.
 */
import Redis from "ioredis";
import { RedisBroker } from "../src/brokers/redis";
import { RedisServer, waitFor } from "./helpers/redis";

let primary: RedisServer;
let replica: RedisServer;
let broker: RedisBroker | undefined;
const conns: Redis[] = [];

beforeAll(async () => {
  primary = await RedisServer.start();
  replica = await RedisServer.start(undefined, ["--replicaof", "127.0.0.1", String(primary.port)]);
  const conn = new Redis(replica.url);
  conns.push(conn);
  await waitFor(async () => /master_link_status:up/.test(await conn.info("replication")), 20_000, "the replica in sync");
}, 40_000);
afterAll(async () => {
  if (replica?.pid !== undefined) process.kill(replica.pid, "SIGCONT");
  await broker?.close();
  for (const c of conns) c.disconnect();
  await replica?.close();
  await primary?.close();
});

test("publish resolves once a replica has the batch; with the replica paused it is 503, and the retry with its key appends nothing", async () => {
  broker = new RedisBroker({ url: primary.url, key: "wait", waitReplicas: 1, publishTimeout: 2000, log: null });
  await broker.start(() => undefined);
  const onReplica = new Redis(replica.url);
  conns.push(onReplica);
  await broker.publish([{ topic: "t", event: "n", data: "1" }], { idempotencyKey: "k1" });
  // Acknowledged: the replica has it already.
  expect(await onReplica.xlen("wait")).toBe(1);

  process.kill(replica.pid!, "SIGSTOP");
  const failed = await broker.publish([{ topic: "t", event: "n", data: "2" }], { idempotencyKey: "k2" }).then(
    () => undefined,
    (err: { code?: string }) => err.code,
  );
  expect(failed).toBe("broker_unavailable");
  process.kill(replica.pid!, "SIGCONT");
  await broker.publish([{ topic: "t", event: "n", data: "2" }], { idempotencyKey: "k2" });
  // Stored once (by the first attempt), now on the replica too.
  expect(await onReplica.xlen("wait")).toBe(2);
  const onPrimary = new Redis(primary.url);
  conns.push(onPrimary);
  expect((await onPrimary.xrange("wait", "-", "+")).map(([, fields]) => fields[fields.indexOf("d") + 1])).toEqual(["1", "2"]);
}, 30_000);
