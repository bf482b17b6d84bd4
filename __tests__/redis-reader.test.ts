/**
 * The Redis broker's waits are driven by events (the connection becoming
 * ready, close), not by polling: each test waits for the promise itself, with
 * a timeout far beyond the test's own, so only the event can end it.
 */
import { createRedisBroker } from "../src/brokers/redis";
import { RedisServer, freePort, waitFor } from "./helpers/redis";

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

test("waitUntilReady, asked before Redis exists, resolves true once Redis appears and the reader follows the stream", async () => {
  const port = await freePort();
  const b = createRedisBroker({ url: `redis://127.0.0.1:${port}`, key: "reader-late", log: null, startTimeout: 0 });
  cleanups.push(() => b.close());
  await b.start(() => undefined);
  expect({ ready: b.ready, state: b.state }).toEqual({ ready: false, state: "unavailable" });
  const waiting = b.waitUntilReady(600_000);
  const redis = await RedisServer.start(port);
  cleanups.push(() => redis.close());
  expect(await waiting).toBe(true);
  await waitFor(() => b.state === "ready", 10_000, "both connections up and live");
});

test("waitUntilReady resolves false as soon as the broker closes", async () => {
  const port = await freePort();
  const b = createRedisBroker({ url: `redis://127.0.0.1:${port}`, key: "reader-closed", log: null, startTimeout: 0 });
  await b.start(() => undefined);
  const waiting = b.waitUntilReady(600_000);
  await b.close();
  expect(await waiting).toBe(false);
  expect(b.state).toBe("unavailable");
  await expect(b.publish([{ topic: "t", event: "e", data: "" }])).rejects.toMatchObject({ code: "closed" });
});
