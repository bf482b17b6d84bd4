/**
 * Memory under stalled clients (issue 5): 300 subscribers that stop reading
 * while ~2 MB/s of events flow. Each stalled client must be disconnected
 * (stats.disconnects.slow) once its buffer bound is passed, the process's
 * memory must stay within N × maxBufferBytes + a fixed margin (frames are
 * shared, so in practice it hardly grows with N at all), everything must be
 * freed once they are gone, and a fast subscriber in the same run must get
 * every event, in order.
 *
 * Most stalled clients connect over a Unix socket to the same app: a stalled
 * loopback TCP connection soaks up ~4 MB of kernel buffers before the server
 * sees any backpressure, and 300 of them would put the whole machine's TCP
 * memory under pressure. Twenty stalled clients still use TCP.
 */
import net from "node:net";
import { subscribeToken } from "../src/tokens";
import { gc, settle } from "./helpers/gc";
import { stalledClients, type StalledClients } from "./helpers/stalled";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

const MAX_BUFFER = 64 * 1024;
const HISTORY = 1024 * 1024;
const N_UNIX = 280;
const N_TCP = 20;
const N = N_UNIX + N_TCP;
/** Events of ~10 KiB at ~2 MB/s, published every 50 ms, catching up if a tick ran late. */
const EVENT_BYTES = 10 * 1024;
const BYTES_PER_SECOND = 2 * 1000 * 1000;
const TICK_MS = 50;
const FLOOD_MIN_MS = 3000;
const MiB = 1024 * 1024;

let srv: TestServer;
let clients: StalledClients;

beforeAll(async () => {
  srv = await startServer({ retry: 0, maxBufferBytes: MAX_BUFFER, historyBytes: HISTORY, heartbeatInterval: 0 });
  clients = await stalledClients(srv, "memory");
});

afterAll(async () => {
  await clients.close();
  await srv.close();
});

test(`${N} stalled subscribers under ~2 MB/s: each is disconnected, memory stays bounded and is freed, a fast one gets everything`, async () => {
  const requestPath = `/events?token=${subscribeToken(SECRET, ["flood"])}`;
  const fast = new RawStream(`${srv.base}${requestPath}`);
  await fast.until((t) => t === ":\n\n");

  settle();
  const base = process.memoryUsage();

  for (let i = 0; i < N_UNIX; i++) clients.stall(requestPath);
  for (let i = 0; i < N_TCP; i++) clients.stall(requestPath, {}, () => net.connect(srv.port, "127.0.0.1"));
  await eventually(() => srv.router.stats.subscribers === N + 1, 15_000, `${N} stalled subscribers`);

  // With gc(), each sample is live memory (collected first); without it, the
  // samples include garbage not yet collected and only a loose bound holds.
  let peakArrayBuffers = 0;
  let peakRss = 0;
  const sample = () => {
    settle();
    const m = process.memoryUsage();
    peakArrayBuffers = Math.max(peakArrayBuffers, m.arrayBuffers);
    peakRss = Math.max(peakRss, m.rss);
  };

  // ~2 MB/s for at least a few seconds, and until every stalled client is gone.
  const payload = "x".repeat(EVENT_BYTES);
  const started = Date.now();
  let sent = 0;
  let ticks = 0;
  while ((Date.now() - started < FLOOD_MIN_MS || srv.router.stats.disconnects.slow < N) && Date.now() - started < 30_000) {
    const due = Math.ceil(((Date.now() - started + TICK_MS) / 1000) * (BYTES_PER_SECOND / EVENT_BYTES));
    const count = Math.min(Math.max(due - sent, 1), 50);
    await srv.router.publish(Array.from({ length: count }, (_, j) => ({ topic: "flood", event: "e", data: `${sent + j} ${payload}` })));
    sent += count;
    // Sampled mid-turn, every few ticks: this tick's frames are queued for every subscriber.
    if (ticks++ % 4 === 0) {
      await new Promise((r) => setImmediate(r));
      sample();
    }
    await new Promise((r) => setTimeout(r, TICK_MS));
  }
  const floodMs = Date.now() - started;
  sample();
  await srv.router.publish([{ topic: "flood", event: "end", data: "" }]);

  // Every stalled client was cut off as slow; only the fast one is left.
  expect(srv.router.stats.disconnects.slow).toBe(N);
  expect(srv.router.stats.subscribers).toBe(1);

  // The fast subscriber got every event, in order, none missing.
  await eventually(() => fast.text.slice(-64).includes("event:end\n"), 15_000, "fast subscriber to catch up");
  const events = parseEvents(fast.text);
  expect(events.pop()?.event).toBe("end");
  const seq = events.map((e) => Number(e.data.slice(0, e.data.indexOf(" "))));
  expect(seq.length).toBe(sent);
  expect(seq.every((n, i) => n === i)).toBe(true);
  expect(fast.ended).toBe(false);

  // Bounded while they were stalled: never more than each client's bound plus
  // a fixed margin (history, the in-flight batch). Per-subscriber copies of
  // the frames would break this; shared frames keep it far below.
  const grewArrayBuffers = peakArrayBuffers - base.arrayBuffers;
  const grewRss = peakRss - base.rss;
  const bound = N * MAX_BUFFER;
  if (process.env["MEMORY_STATS"]) console.log({ gc: gc !== undefined, sent, floodMs, grewArrayBuffers, grewRss, bound });
  const margin = gc ? 16 * MiB : 128 * MiB;
  expect({ grewArrayBuffers, ok: grewArrayBuffers <= bound + margin }).toEqual({ grewArrayBuffers, ok: true });
  // RSS also holds the JS heap (the fast reader's text, test bookkeeping): a generous bound.
  expect({ grewRss, ok: grewRss <= bound + margin + 128 * MiB }).toEqual({ grewRss, ok: true });

  // Freed once they are gone: no buffers retained per disconnected subscriber.
  clients.destroyAll();
  fast.close();
  await eventually(() => srv.router.stats.subscribers === 0, 5000, "fast subscriber to leave");
  await new Promise((r) => setTimeout(r, 100));
  settle();
  const after = process.memoryUsage().arrayBuffers - base.arrayBuffers;
  expect({ after, ok: after <= HISTORY + (gc ? 8 : 32) * MiB }).toEqual({ after, ok: true });
}, 90_000);

test("a stalled client learns it was cut off: its connection ends once it reads again", async () => {
  // A fresh stalled client, cut off the same way; then it starts reading.
  const requestPath = `/events?token=${subscribeToken(SECRET, ["flood2"])}`;
  const before = srv.router.stats.disconnects.slow;
  const socket = clients.stall(requestPath);
  await eventually(() => srv.router.stats.subscribers === 1, 5000, "subscriber");
  const payload = "y".repeat(16 * 1024);
  for (let i = 0; i < 200 && srv.router.stats.disconnects.slow === before; i++) {
    await srv.router.publish(Array.from({ length: 8 }, () => ({ topic: "flood2", event: "e", data: payload })));
    await new Promise((r) => setTimeout(r, 10));
  }
  expect(srv.router.stats.disconnects.slow).toBe(before + 1);
  const ended = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.on("data", () => undefined);
  socket.resume();
  await ended;
});
