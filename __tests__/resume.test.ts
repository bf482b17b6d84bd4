/**
 * Lossless resume: Last-Event-ID (header or lastEventId query parameter)
 * replays exactly the missed events of the subscriber's topics, then live
 * ones, with no gap and no duplicate; sse:reset when history cannot serve it.
 */
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { subscribeToken } from "../src/tokens";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ retry: 0 });
});
afterAll(async () => {
  await srv.close();
});

function url(server: TestServer, topics: string[], query = ""): string {
  return `${server.base}/events?token=${subscribeToken(SECRET, topics)}${query}`;
}

const ev = (topic: string, data: string) => ({ topic, event: "n", data });

/** The id of the last of `events` as a subscriber of `topics` received it; the subscriber then goes away. */
async function idSeen(server: TestServer, topics: string[], events: Array<ReturnType<typeof ev>>): Promise<string> {
  const s = await RawStream.open(url(server, topics));
  await server.router.publish(events);
  await s.until((t) => parseEvents(t).length === events.length);
  const id = parseEvents(s.text).at(-1)!.id!;
  s.close();
  return id;
}

test.each([
  ["Last-Event-ID header", (id: string) => ({ headers: { "Last-Event-ID": id }, query: "" })],
  ["lastEventId query parameter", (id: string) => ({ headers: {}, query: `&lastEventId=${encodeURIComponent(id)}` })],
])("resume with %s: exactly the missed events of my topics, then live", async (_name, how) => {
  const topic = `r-${Math.random()}`;
  const first = await RawStream.open(url(srv, [topic, `${topic}-b`]));
  await srv.router.publish([1, 2, 3].map((n) => ev(topic, String(n))));
  await first.until((t) => parseEvents(t).length === 3);
  const lastId = parseEvents(first.text)[2]!.id!;
  first.close();

  await srv.router.publish([
    ev(topic, "4"),
    ev("someone-else", "x"),
    ev(`${topic}-b`, "5"),
    ev(topic, "6"),
  ]);
  const { headers, query } = how(lastId);
  const again = new RawStream(url(srv, [topic, `${topic}-b`], query), headers);
  await again.until((t) => parseEvents(t).length === 3);
  await srv.router.publish([ev(topic, "7")]);
  await again.until((t) => parseEvents(t).length === 4);
  const got = parseEvents(again.text);
  expect(got.map((e) => e.data)).toEqual(["4", "5", "6", "7"]);
  // Ids keep increasing across the replay/live boundary.
  const seqs = got.map((e) => Number(e.id!.split("-")[1]));
  expect([...seqs].sort((a, b) => a - b)).toEqual(seqs);
  expect(new Set(seqs).size).toBe(seqs.length);
  again.close();
});

test("resume at the newest id replays nothing and continues live", async () => {
  const topic = `head-${Math.random()}`;
  const id = await idSeen(srv, [topic], [ev(topic, "1")]);
  const again = await RawStream.open(url(srv, [topic]), { "Last-Event-ID": id });
  await srv.router.publish([ev(topic, "2")]);
  await again.until((t) => parseEvents(t).length === 1);
  expect(parseEvents(again.text).map((e) => e.data)).toEqual(["2"]);
  again.close();
});

test.each([
  ["an id from another process (unknown epoch)", "zzzz1234-5"],
  ["garbage", "not-an-id"],
  ["an id in the future", "FUTURE"],
])("unknown id (%s) gives one sse:reset, then live events", async (_name, raw) => {
  const topic = `u-${Math.random()}`;
  const before = srv.router.stats.resets;
  let id = raw;
  if (raw === "FUTURE") {
    await srv.router.publish([ev("x", "x")]);
    const [epoch, seq] = (await idSeen(srv, ["x"], [ev("x", "y")])).split("-");
    id = `${epoch}-${Number(seq) + 1000}`;
  }
  const s = new RawStream(url(srv, [topic]), { "Last-Event-ID": id });
  await s.until((t) => t.includes("sse:reset"));
  await srv.router.publish([ev(topic, "live")]);
  await s.until((t) => parseEvents(t).length === 2);
  const got = parseEvents(s.text);
  expect(got[0]!.event).toBe("sse:reset");
  expect(JSON.parse(got[0]!.data)).toEqual({ reason: "unknown_id" });
  expect(got[1]!.data).toBe("live");
  expect(srv.router.stats.resets).toBe(before + 1);
  s.close();
});

test("history overflow (by bytes) gives sse:reset with reason history_truncated", async () => {
  const small = await startServer({ retry: 0, historyBytes: 2000 });
  try {
    const id = await idSeen(small, ["t"], [ev("t", "first")]);
    await small.router.publish(Array.from({ length: 100 }, (_, i) => ev("t", `filler ${i} ${"x".repeat(50)}`)));
    const again = new RawStream(url(small, ["t"]), { "Last-Event-ID": id });
    await again.until((t) => t.includes("sse:reset"));
    const reset = parseEvents(again.text)[0]!;
    expect(JSON.parse(reset.data)).toEqual({ reason: "history_truncated" });
    // The reset carries the newest id, so the next reconnect resumes from there.
    expect(reset.id).toMatch(/-101$/);
    again.close();
  } finally {
    await small.close();
  }
});

test("history by age: events older than historyAge are gone -> sse:reset", async () => {
  const short = await startServer({ retry: 0, historyAge: 100 });
  try {
    const id = await idSeen(short, ["t"], [ev("t", "a")]);
    await short.router.publish([ev("t", "b")]);
    await new Promise((r) => setTimeout(r, 250));
    const again = new RawStream(url(short, ["t"]), { "Last-Event-ID": id });
    await again.until((t) => t.includes("sse:reset"));
    expect(JSON.parse(parseEvents(again.text)[0]!.data).reason).toBe("history_truncated");
    again.close();
  } finally {
    await short.close();
  }
});

test("historyBytes 0 disables history: any resume is a reset", async () => {
  const none = await startServer({ retry: 0, historyBytes: 0 });
  try {
    const s = await RawStream.open(url(none, ["t"]));
    await none.router.publish([ev("t", "a"), ev("t", "b")]);
    await s.until((t) => parseEvents(t).length === 2);
    const id = parseEvents(s.text)[0]!.id!;
    s.close();
    const again = new RawStream(url(none, ["t"]), { "Last-Event-ID": id });
    await again.until((t) => t.includes("sse:reset"));
    again.close();
  } finally {
    await none.close();
  }
});

test("switch-over under concurrent publishing: no gap, no duplicate (many iterations)", async () => {
  const topic = "race";
  let n = 0;
  let running = true;
  // Publisher: a steady stream of numbered events, many per event-loop turn.
  const publisher = (async () => {
    while (running) {
      const batch = Array.from({ length: 5 }, () => ev(topic, String(n++)));
      await srv.router.publish(batch);
      await new Promise((r) => setImmediate(r));
    }
  })();
  try {
    const watcher = new RawStream(url(srv, [topic]));
    await watcher.until((t) => parseEvents(t).length > 10);
    for (let i = 0; i < 40; i++) {
      const seen = parseEvents(watcher.text);
      const from = seen[seen.length - 1]!;
      const start = Number(from.data) + 1;
      const s = new RawStream(url(srv, [topic]), { "Last-Event-ID": from.id! });
      await s.until((t) => parseEvents(t).length >= 30, 5000);
      s.close();
      const nums = parseEvents(s.text).map((e) => Number(e.data));
      expect(nums.slice(0, 30)).toEqual(Array.from({ length: 30 }, (_, j) => start + j));
    }
    watcher.close();
  } finally {
    running = false;
    await publisher;
  }
  expect(srv.router.stats.disconnects.slow).toBe(0);
}, 60_000);

test("a client disconnected for being slow resumes losslessly", async () => {
  const tight = await startServer({ retry: 0, maxBufferBytes: 16 * 1024 });
  try {
    const s = await RawStream.open(url(tight, ["big"]));
    let published = 0;
    await tight.router.publish([0, 1, 2].map(() => ev("big", `${published++} small`)));
    await s.until((t) => parseEvents(t).length === 3);
    s.pause();
    const payload = "y".repeat(16 * 1024);
    while (tight.router.stats.disconnects.slow === 0 && published < 3000) {
      await tight.router.publish(Array.from({ length: 10 }, () => ev("big", `${published++} ${payload}`)));
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(tight.router.stats.disconnects.slow).toBe(1);
    await tight.router.publish([ev("big", `${published++} last`)]);
    // Resume from the last complete event the stalled client actually saw.
    const got = parseEvents(s.text);
    s.close();
    const again = new RawStream(url(tight, ["big"]), { "Last-Event-ID": got[got.length - 1]!.id! });
    await again.until((t) => parseEvents(t).length === published - got.length, 15_000);
    const all = [...got, ...parseEvents(again.text)].map((e) => Number(e.data.split(" ")[0]));
    expect(all).toEqual(Array.from({ length: published }, (_, i) => i));
    again.close();
  } finally {
    await tight.close();
  }
}, 60_000);

test("close(): streams end cleanly, a new hub answers old ids with sse:reset", async () => {
  const first = await startServer({ retry: 0 });
  const s = await RawStream.open(url(first, ["t"]));
  await first.router.publish([ev("t", "before")]);
  await s.until((t) => parseEvents(t).length === 1);
  const id = parseEvents(s.text)[0]!.id!;
  await first.router.close();
  await s.closed();
  expect(first.router.stats.disconnects.shutdown).toBe(1);
  await expect(first.router.publish([ev("t", "after")])).rejects.toMatchObject({ code: "closed" });
  await first.close();

  const second = await startServer({ retry: 0 });
  try {
    const again = new RawStream(url(second, ["t"]), { "Last-Event-ID": id });
    await again.until((t) => t.includes("sse:reset"));
    expect(JSON.parse(parseEvents(again.text)[0]!.data)).toEqual({ reason: "unknown_id" });
    // Nothing published yet on the new hub: an empty id clears the client's stale one.
    expect(again.text).toContain('event:sse:reset\ndata:{"reason":"unknown_id"}\nid:\n\n');
    expect(parseEvents(again.text)[0]!.id).toBe("");
    again.close();
  } finally {
    await second.close();
  }
});

test("stats count replays and resets", async () => {
  await eventually(() => srv.router.stats.replays >= 2, 1000, "replays");
  expect(srv.router.stats.resets).toBeGreaterThanOrEqual(3);
});

test("history trimmed while a paced replay waits for the client: the events it got, then sse:reset history_truncated, then live", async () => {
  const paced = await startServer({ retry: 0, maxBufferBytes: 16 * 1024, historyBytes: 2 * 1024 * 1024, heartbeatInterval: 0 });
  // A Unix socket: small kernel buffers, so the replay soon waits for the client to read.
  const socketPath = path.join(os.tmpdir(), `sse-resume-${process.pid}-${Date.now()}.sock`);
  const unixServer = http.createServer(paced.app);
  await new Promise<void>((resolve) => unixServer.listen(socketPath, resolve));
  const client = net.connect(socketPath);
  try {
    const probe = await RawStream.open(url(paced, ["p"]));
    await paced.router.publish([ev("p", "0")]);
    await probe.until((t) => parseEvents(t).length === 1);
    const from = parseEvents(probe.text)[0]!.id!;
    probe.close();
    const payload = "z".repeat(1024);
    for (let i = 1; i <= 1500; i += 100) await paced.router.publish(Array.from({ length: 100 }, (_, j) => ev("p", `${i + j} ${payload}`)));

    let text = "";
    client.setEncoding("latin1");
    client.write(`GET /events?token=${subscribeToken(SECRET, ["p"])} HTTP/1.1\r\nHost: x\r\nLast-Event-ID: ${from}\r\n\r\n`);
    client.pause();
    const replays = paced.router.stats.replays;
    await eventually(() => paced.router.stats.replays === replays + 1, 5000, "the replay to start");
    // ~3 MiB on another topic: everything the client has not been sent yet is trimmed.
    for (let i = 0; i < 30; i++) await paced.router.publish(Array.from({ length: 100 }, () => ev("other", payload)));
    client.on("data", (chunk: string) => (text += chunk));
    client.resume();
    await eventually(() => text.includes("sse:reset"), 10_000, "sse:reset");
    await paced.router.publish([ev("p", "live")]);
    await eventually(() => text.includes("data:live"), 10_000, "the live event");
    // Chunked transfer coding around the frames: take the body's SSE lines only.
    const body = ("\r\n" + text.slice(text.indexOf("\r\n\r\n") + 4)).replace(/\r\n[0-9a-f]+\r\n/g, "");
    const got = parseEvents(body);
    const resetAt = got.findIndex((e) => e.event === "sse:reset");
    const replayed = got.slice(0, resetAt).map((e) => Number(e.data.split(" ")[0]));
    expect(replayed.length).toBeLessThan(1500);
    expect(replayed).toEqual(Array.from({ length: replayed.length }, (_, i) => i + 1));
    expect(JSON.parse(got[resetAt]!.data)).toEqual({ reason: "history_truncated" });
    expect(got.slice(resetAt + 1).map((e) => e.data)).toEqual(["live"]);
  } finally {
    client.destroy();
    await paced.close();
    unixServer.closeAllConnections();
    await new Promise<void>((resolve) => unixServer.close(() => resolve()));
  }
}, 60_000);
