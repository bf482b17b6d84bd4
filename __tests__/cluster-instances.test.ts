/**
 * Two standalone servers (`node dist/cli.js`, separate processes) sharing one
 * Redis: an event submitted to either reaches subscribers on both, once and
 * in order, and a client can resume on the other instance.
 */
import { submitToken, subscribeToken, type EventInput } from "../src/tokens";
import { CliServer, RedisServer, SECRET, submit, waitFor, twoInstancesOnRedis } from "./helpers/redis";

const env = twoInstancesOnRedis();
let redis: RedisServer;
let a: CliServer;
let b: CliServer;
beforeAll(() => {
  ({ redis, a, b } = env);
});
const subscribe = env.subscribe;

async function send(server: CliServer, events: EventInput[]): Promise<void> {
  const status = await submit(server.url, submitToken(SECRET, events));
  if (status !== 200) throw new Error(`submit to ${server.url} answered ${status}`);
}

test("the startup line names the broker (without credentials)", () => {
  expect(a.output).toMatch(/^sse-server: listening on http:\/\/127\.0\.0\.1:\d+ \(events: .*\), broker redis:\/\/127\.0\.0\.1:\d+\n/);
});

test("an event submitted on B reaches a subscriber on A exactly once", async () => {
  const onA = await subscribe(a, ["once"]);
  await send(b, [{ topic: "once", event: "hello", data: "from B" }]);
  await send(b, [{ topic: "once", event: "end", data: "" }]);
  expect(await onA.untilMarker()).toEqual([{ event: "hello", data: "from B", id: expect.stringMatching(/^[0-9a-z]+\.\d+-\d+$/) }]);
});

test("a burst of 1000 events submitted to B arrives on A in submission order", async () => {
  const onA = await subscribe(a, ["burst"]);
  const skip = 0;
  // 200 sequential submits of 5 events each (the body limit is 8 KiB).
  for (let i = 0; i < 1000; i += 5) {
    await send(b, Array.from({ length: 5 }, (_, j) => ({ topic: "burst", event: "n", data: String(i + j) })));
  }
  await send(b, [{ topic: "burst", event: "end", data: "" }]);
  const got = (await onA.untilMarker("end", 20_000)).slice(skip);
  expect(got.map((e) => e.data)).toEqual(Array.from({ length: 1000 }, (_, i) => String(i)));
  // Ids are unique and increasing (ms-seq compared numerically).
  const key = (id: string) => id.split(".")[1]!.split("-").map(Number) as [number, number];
  for (let i = 1; i < got.length; i++) {
    const [pm, ps] = key(got[i - 1]!.id!);
    const [m, s] = key(got[i]!.id!);
    expect(m > pm || (m === pm && s > ps)).toBe(true);
  }
}, 60_000);

test("three subscribers over A and B on overlapping topics each get exactly their events", async () => {
  const s1 = await subscribe(a, ["x", "y"]);
  const s2 = await subscribe(b, ["y", "z"]);
  const s3 = await subscribe(a, ["z"]);
  const from = [0, 0, 0];
  const topics = ["x", "y", "z", "w"];
  const sent: Array<{ topic: string; data: string }> = [];
  for (let i = 0; i < 60; i++) {
    const topic = topics[i % 4]!;
    const data = `${topic}${i}`;
    sent.push({ topic, data });
    await send(i % 3 === 0 ? a : b, [{ topic, event: "m", data }]);
  }
  const want = (ts: string[]) => sent.filter((e) => ts.includes(e.topic)).map((e) => e.data);
  const expected = [want(["x", "y"]), want(["y", "z"]), want(["z"])];
  await send(b, ["x", "y", "z"].map((topic) => ({ topic, event: "end", data: "" })));
  const got = await Promise.all([s1, s2, s3].map((c) => c.untilMarker()));
  got.forEach((events, i) => expect(events.slice(from[i]).map((e) => e.data)).toEqual(expected[i]));
}, 40_000);

test("resume across instances: read on A, disconnect, reconnect to B with Last-Event-ID: exactly the missed events, then live ones", async () => {
  const onA = await subscribe(a, ["r"]);
  const skip = 0;
  await send(a, [1, 2, 3].map((n) => ({ topic: "r", event: "n", data: String(n) })));
  await waitFor(() => onA.events.length >= skip + 3, 10_000, "3 events on A");
  const lastId = onA.lastId!;
  onA.close();
  // Missed while away, submitted on B, mixed with other topics.
  for (let n = 4; n <= 7; n++) await send(b, [{ topic: "r", event: "n", data: String(n) }, { topic: "other", event: "n", data: "x" }]);
  const onB = await subscribe(b, ["r"], lastId);
  await waitFor(() => onB.events.length >= 4, 10_000, "replayed events");
  for (let n = 8; n <= 9; n++) await send(a, [{ topic: "r", event: "n", data: String(n) }]);
  await send(a, [{ topic: "r", event: "end", data: "" }]);
  expect((await onB.untilMarker()).map((e) => e.data)).toEqual(["4", "5", "6", "7", "8", "9"]);
  expect(onB.events.some((e) => e.event === "sse:reset")).toBe(false);
}, 30_000);
