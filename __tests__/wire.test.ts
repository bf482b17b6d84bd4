/**
 * Exact bytes and headers on the wire, against a real listening server.
 */
import request from "supertest";
import net from "node:net";
import { createSseRouter } from "../src/adapters/express";
import { subscribeToken } from "../src/tokens";
import { RawStream, SECRET, parseEvents, startServer, type TestServer } from "./helpers/sse";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ retry: 0 }, "/sse-server");
});
afterAll(async () => {
  await srv.close();
});

function connect(topics: string[], headers: Record<string, string> = {}): RawStream {
  return new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, topics)}`, headers);
}

/** Replace ids (`id:<epoch>-<n>`) by `id:#n` so frames compare byte for byte. */
function normalize(text: string): string {
  return text.replace(/^id:[0-9a-z]+-([0-9]+)$/gm, "id:#$1");
}

test("stream headers: event-stream, no-cache + no-transform, Expires 0, X-Accel-Buffering, CORS, no Connection", async () => {
  const s = connect(["h"]);
  await s.opened;
  expect(s.status).toBe(200);
  expect(s.headers["content-type"]).toBe("text/event-stream");
  expect(s.headers["cache-control"]).toBe("no-cache, no-transform");
  expect(s.headers["expires"]).toBe("0");
  expect(s.headers["x-accel-buffering"]).toBe("no");
  expect(s.headers["access-control-allow-origin"]).toBe("*");
  expect(s.headers["connection"]).toBeUndefined();
  expect(s.headers["transfer-encoding"]).toBe("chunked");
  s.close();
});

test("first bytes are the heartbeat comment, sent at once", async () => {
  const s = connect(["first"]);
  const text = await s.until((t) => t.length >= 3, 1000);
  expect(text).toBe(":\n\n");
  s.close();
});

test("byte-exact frames: single line, CRLF/CR/LF multi-line, empty data, CR/LF in names", async () => {
  const s = connect(["bytes"]);
  await s.until((t) => t === ":\n\n");
  await srv.router.publish([
    { topic: "bytes", event: "one", data: "hello world" },
    { topic: "bytes", event: "multi", data: "a\r\nb\rc\nd" },
    { topic: "bytes", event: "empty", data: "" },
    { topic: "bytes", event: "bad\r\nname\rx\ny", data: "x" },
    { topic: "bytes", event: "trailing", data: "line\n" },
    { topic: "bytes", event: "unicode", data: "héllo ✓ 🎉" },
  ]);
  const text = await s.until((t) => t.includes("event:unicode"));
  const events = text.slice(3);
  expect(normalize(events).replace(/id:#[0-9]+/g, "id:#")).toBe(
    "event:one\ndata:hello world\nid:#\n\n" +
      "event:multi\ndata:a\ndata:b\ndata:c\ndata:d\nid:#\n\n" +
      "event:empty\ndata:\nid:#\n\n" +
      "event:bad  name x y\ndata:x\nid:#\n\n" +
      "event:trailing\ndata:line\ndata:\nid:#\n\n" +
      "event:unicode\ndata:héllo ✓ 🎉\nid:#\n\n",
  );
  s.close();
});

test("a value that starts with a space gets one extra space (parsers strip one); nothing else changes", async () => {
  const s = connect(["spaces"]);
  await s.until((t) => t === ":\n\n");
  await srv.router.publish([
    { topic: "spaces", event: " lead", data: " x" },
    { topic: "spaces", event: "plain", data: "a\n b\r\n  c\rd " },
    { topic: "spaces", event: "   ", data: " " },
    { topic: "spaces", event: "\nname", data: "x" },
    { topic: "spaces", event: "end", data: "" },
  ]);
  const text = await s.until((t) => t.includes("event:end"));
  expect(normalize(text.slice(3)).replace(/id:#[0-9]+/g, "id:#")).toBe(
    "event:  lead\ndata:  x\nid:#\n\n" +
      "event:plain\ndata:a\ndata:  b\ndata:   c\ndata:d \nid:#\n\n" +
      "event:    \ndata:  \nid:#\n\n" +
      "event:  name\ndata:x\nid:#\n\n" +
      "event:end\ndata:\nid:#\n\n",
  );
  // Read back as a conforming parser does: every value exactly as published.
  expect(parseEvents(text).map(({ event, data }) => [event, data])).toEqual([
    [" lead", " x"],
    ["plain", "a\n b\n  c\nd "],
    ["   ", " "],
    [" name", "x"],
    ["end", ""],
  ]);
  s.close();
});

test("ids increase within the hub", async () => {
  const s = connect(["ids"]);
  await s.until((t) => t === ":\n\n");
  await srv.router.publish([1, 2, 3].map((n) => ({ topic: "ids", event: "n", data: String(n) })));
  const text = await s.until((t) => (t.match(/id:/g) ?? []).length === 3);
  const seqs = [...text.matchAll(/^id:[0-9a-z]+-([0-9]+)$/gm)].map((m) => Number(m[1]));
  expect(seqs).toHaveLength(3);
  expect(seqs[1]).toBe(seqs[0]! + 1);
  expect(seqs[2]).toBe(seqs[1]! + 1);
  s.close();
});

test("order is kept across many events and several publish calls", async () => {
  const s = connect(["order"]);
  await s.until((t) => t === ":\n\n");
  const n = 2000;
  const publishes: Promise<void>[] = [];
  for (let i = 0; i < n; i += 100) {
    publishes.push(
      srv.router.publish(Array.from({ length: 100 }, (_, j) => ({ topic: "order", event: "e", data: String(i + j) }))),
    );
  }
  await Promise.all(publishes);
  await s.until((t) => parseEvents(t).length === n);
  expect(parseEvents(s.text).map((e) => Number(e.data))).toEqual(Array.from({ length: n }, (_, i) => i));
  s.close();
});

test("several topics on one connection, only those topics, in submission order", async () => {
  const s = connect(["t1", "t2"]);
  await s.until((t) => t === ":\n\n");
  await srv.router.publish([
    { topic: "t1", event: "a", data: "1" },
    { topic: "other", event: "x", data: "no" },
    { topic: "t2", event: "b", data: "2" },
    { topic: "t1", event: "c", data: "3" },
  ]);
  await s.until((t) => t.includes("event:c"));
  expect(parseEvents(s.text).map((e) => `${e.event}=${e.data}`)).toEqual(["a=1", "b=2", "c=3"]);
  s.close();
});

test("duplicate topics in one token are merged: each event arrives once", async () => {
  const s = connect(["dup", "dup", "dup"]);
  await s.until((t) => t === ":\n\n");
  expect(srv.router.stats.topics).toBeGreaterThanOrEqual(1);
  await srv.router.publish([
    { topic: "dup", event: "once", data: "1" },
    { topic: "dup", event: "end", data: "2" },
  ]);
  await s.until((t) => t.includes("event:end"));
  expect(parseEvents(s.text).map((e) => e.event)).toEqual(["once", "end"]);
  s.close();
});

test("a subscriber with no matching events receives only the heartbeat", async () => {
  const s = connect(["quiet"]);
  await s.until((t) => t === ":\n\n");
  await srv.router.publish([{ topic: "loud", event: "x", data: "y" }]);
  // A marker on its own topic, published after: anything else would arrive before it.
  await srv.router.publish([{ topic: "quiet", event: "end", data: "" }]);
  await s.until((t) => t.includes("event:end\n"));
  expect(parseEvents(s.text).map((e) => e.event)).toEqual(["end"]);
  s.close();
});

test("GET /ping: 200, empty body, CORS", async () => {
  const res = await request(srv.server).get("/sse-server/ping");
  expect(res.status).toBe(200);
  expect(res.text).toBe("");
  expect(res.headers["access-control-allow-origin"]).toBe("*");
});

test("CORS header on every route, including errors", async () => {
  const responses = await Promise.all([
    request(srv.server).get("/sse-server/events"),
    request(srv.server).get("/sse-server/events?token=garbage"),
    request(srv.server).post("/sse-server/submit").send("garbage"),
    request(srv.server).post("/sse-server/submit"),
    request(srv.server).delete("/sse-server/events"),
    request(srv.server).get("/sse-server/submit"),
    request(srv.server).options("/sse-server/events"),
  ]);
  expect(responses.map((r) => r.status)).toEqual([401, 401, 401, 401, 405, 405, 204]);
  for (const res of responses) expect(res.headers["access-control-allow-origin"]).toBe("*");
});

test("errors are JSON with a stable code", async () => {
  const missing = await request(srv.server).get("/sse-server/events");
  expect(missing.headers["content-type"]).toMatch(/^application\/json/);
  expect(missing.body).toEqual({ error: "token_missing", message: expect.any(String) });
  const bad = await request(srv.server).get("/sse-server/events?token=garbage");
  expect(bad.body.error).toBe("token_invalid");
  const method = await request(srv.server).put("/sse-server/ping");
  expect(method.status).toBe(405);
  expect(method.body.error).toBe("method_not_allowed");
  expect(method.headers["allow"]).toBe("GET, HEAD, OPTIONS");
});

test("preflight: allowed methods and headers", async () => {
  const res = await request(srv.server)
    .options("/sse-server/events")
    .set("Origin", "https://app.example")
    .set("Access-Control-Request-Method", "GET")
    .set("Access-Control-Request-Headers", "authorization, last-event-id");
  expect(res.status).toBe(204);
  expect(res.headers["access-control-allow-methods"]).toContain("GET");
  expect(res.headers["access-control-allow-headers"]).toMatch(/Authorization/);
  expect(res.headers["access-control-allow-headers"]).toMatch(/Last-Event-ID/);
});

test("paths the router does not own fall through to the host app", async () => {
  const res = await request(srv.server).get("/sse-server/nope");
  expect(res.status).toBe(404);
  expect(res.headers["access-control-allow-origin"]).toBeUndefined();
});

test("retry line with jitter on connect when enabled", async () => {
  const other = await startServer({ retry: 1000, retryJitter: 500 });
  try {
    const values = new Set<number>();
    for (let i = 0; i < 6; i++) {
      const s = new RawStream(`${other.base}/events?token=${subscribeToken(SECRET, ["r"])}`);
      const text = await s.until((t) => /retry:\d+\n\n/.test(t));
      expect(text).toMatch(/^:\n\nretry:\d+\n\n$/);
      const ms = Number(/retry:(\d+)/.exec(text)![1]);
      expect(ms).toBeGreaterThanOrEqual(1000);
      expect(ms).toBeLessThan(1500);
      values.add(ms);
      s.close();
    }
    expect(values.size).toBeGreaterThan(1);
  } finally {
    await other.close();
  }
});

test("periodic heartbeats at the configured interval", async () => {
  const fast = await startServer({ heartbeatInterval: 50, retry: 0 });
  try {
    const s = new RawStream(`${fast.base}/events?token=${subscribeToken(SECRET, ["hb"])}`);
    const text = await s.until((t) => t.length >= 9, 2000);
    expect(text.startsWith(":\n\n:\n\n:\n\n")).toBe(true);
    s.close();
  } finally {
    await fast.close();
  }
});

test("two routers in one app are independent", async () => {
  const a = await startServer({ retry: 0 }, "/a");
  const b = createSseRouter({ secret: SECRET, retry: 0 });
  a.app.use("/b", b);
  try {
    const sa = new RawStream(`${a.base}/events?token=${subscribeToken(SECRET, ["same"])}`);
    const sb = new RawStream(`http://127.0.0.1:${a.port}/b/events?token=${subscribeToken(SECRET, ["same"])}`);
    await sa.until((t) => t === ":\n\n");
    await sb.until((t) => t === ":\n\n");
    await b.publish([{ topic: "same", event: "only-b", data: "" }]);
    await sb.until((t) => t.includes("only-b"));
    // a's own marker, published after b's event: b's would have reached sa first.
    await a.router.publish([{ topic: "same", event: "end", data: "" }]);
    await sa.until((t) => t.includes("event:end\n"));
    expect(parseEvents(sa.text).map((e) => e.event)).toEqual(["end"]);
    expect(a.router.stats.subscribers).toBe(1);
    expect(b.stats.subscribers).toBe(1);
    sa.close();
    sb.close();
  } finally {
    await b.close();
    await a.close();
  }
});

test("HTTP/1.0 clients get unchunked frames and the stream ends with the connection", async () => {
  const socket = net.connect(srv.port, "127.0.0.1");
  let text = "";
  socket.setEncoding("latin1");
  socket.on("data", (d: string) => (text += d));
  socket.write(`GET /sse-server/events?token=${subscribeToken(SECRET, ["h10"])} HTTP/1.0\r\nHost: x\r\n\r\n`);
  const deadline = Date.now() + 5000;
  while (!text.includes("\r\n\r\n:\n\n") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  await srv.router.publish([{ topic: "h10", event: "e", data: "d" }]);
  while (!text.includes("data:d") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  socket.destroy();
  expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(text).not.toMatch(/transfer-encoding/i);
  expect(normalize(text.slice(text.indexOf("\r\n\r\n") + 4))).toBe(":\n\nevent:e\ndata:d\nid:#" + /id:[0-9a-z]+-([0-9]+)/.exec(text)![1] + "\n\n");
});

test("chunked transfer coding on the wire is valid for batches and single events", async () => {
  const socket = net.connect(srv.port, "127.0.0.1");
  let raw = "";
  socket.setEncoding("latin1");
  socket.on("data", (d: string) => (raw += d));
  socket.write(`GET /sse-server/events?token=${subscribeToken(SECRET, ["chunk"])} HTTP/1.1\r\nHost: x\r\n\r\n`);
  const deadline = Date.now() + 5000;
  while (!raw.includes("\r\n\r\n") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  await srv.router.publish([{ topic: "chunk", event: "one", data: "1" }]);
  await srv.router.publish([
    { topic: "chunk", event: "two", data: "2" },
    { topic: "chunk", event: "three", data: "é" },
  ]);
  // Until the chunk carrying the last event is complete (it ends with the chunk's CRLF).
  while (!(raw.includes("event:three") && raw.endsWith("\n\n\r\n")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  socket.destroy();
  // Decode the chunked body by hand: every chunk size must match its bytes.
  const body = Buffer.from(raw.slice(raw.indexOf("\r\n\r\n") + 4), "latin1");
  let offset = 0;
  let decoded = "";
  while (offset < body.length) {
    const lineEnd = body.indexOf("\r\n", offset);
    const size = parseInt(body.subarray(offset, lineEnd).toString("latin1"), 16);
    expect(Number.isNaN(size)).toBe(false);
    decoded += body.subarray(lineEnd + 2, lineEnd + 2 + size).toString("utf8");
    expect(body.subarray(lineEnd + 2 + size, lineEnd + 4 + size).toString("latin1")).toBe("\r\n");
    offset = lineEnd + 4 + size;
  }
  expect(parseEvents(decoded).map((e) => `${e.event}=${e.data}`)).toEqual(["one=1", "two=2", "three=é"]);
});
