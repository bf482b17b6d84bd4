/**
 * A subscriber that stops reading is disconnected once its buffer bound is
 * passed, while the others keep receiving everything, in order.
 */
import { subscribeToken } from "../src/tokens";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ retry: 0, maxBufferBytes: 256 * 1024 });
});
afterAll(async () => {
  await srv.close();
});

test("a stalled subscriber is disconnected; fast ones get every event in order", async () => {
  const url = `${srv.base}/events?token=${subscribeToken(SECRET, ["flood"])}`;
  const fast = [new RawStream(url), new RawStream(url)];
  const slow = new RawStream(url);
  await Promise.all([...fast, slow].map((s) => s.until((t) => t === ":\n\n")));
  slow.pause();

  const payload = "x".repeat(32 * 1024);
  const total = 600; // ~19 MB: far more than loopback socket buffers hold
  for (let i = 0; i < total; i += 20) {
    await srv.router.publish(Array.from({ length: 20 }, (_, j) => ({ topic: "flood", event: "e", data: `${i + j} ${payload}` })));
    // Let the fast readers drain between batches, as a real publisher would pace.
    await new Promise((r) => setTimeout(r, 5));
  }
  await eventually(() => srv.router.stats.disconnects.slow === 1, 10_000, "slow disconnect");
  for (const s of fast) {
    await s.until((t) => parseEvents(t).length === total, 15_000);
    const seq = parseEvents(s.text).map((e) => Number(e.data.split(" ")[0]));
    expect(seq).toEqual(Array.from({ length: total }, (_, i) => i));
  }
  expect(srv.router.stats.subscribers).toBe(2);
  // The stalled client never got a partial, skipped sequence: what it did get is a prefix.
  const got = parseEvents(slow.text).map((e) => Number(e.data.split(" ")[0]));
  expect(got).toEqual(Array.from({ length: got.length }, (_, i) => i));
  for (const s of [...fast, slow]) s.close();
}, 60_000);

test("a client that goes away is removed from the topic map", async () => {
  const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["gone"])}`);
  await s.until((t) => t === ":\n\n");
  const before = srv.router.stats;
  s.close();
  await eventually(() => srv.router.stats.disconnects.client === before.disconnects.client + 1, 5000, "client disconnect");
  expect(srv.router.stats.subscribers).toBe(before.subscribers - 1);
});
