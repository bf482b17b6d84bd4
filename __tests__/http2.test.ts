/**
 * The standalone server over TLS (issue 12, HTTP/2): HTTP/2 by ALPN and
 * HTTP/1.1 on the same port, many event streams and /submit multiplexed on
 * one session, no connection-specific headers on h2, the slow-client bound on
 * an h2 stream, client close noticed, and SIGTERM ending h2 streams and
 * sessions promptly. Real processes (dist/cli.js), a self-signed certificate
 * made here with openssl.
 */
import { spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { submitToken, subscribeToken } from "../src/tokens";
import { RedisServer, hasRedisServer } from "./helpers/redis";
import { SECRET, eventually } from "./helpers/sse";
import { CLI, makeCertificate, requireCli, startCli, type StartedCli } from "./helpers/tls";

let dir: string;
let cert: Buffer;

beforeAll(() => {
  requireCli();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-h2-"));
  makeCertificate(dir);
  cert = fs.readFileSync(path.join(dir, "cert.pem"));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const children = new Set<ChildProcess>();
afterEach(() => {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
});

async function startTls(env: Record<string, string> = {}): Promise<StartedCli> {
  const started = await startCli({
    SSE_TLS_CERT: path.join(dir, "cert.pem"),
    SSE_TLS_KEY: path.join(dir, "key.pem"),
    // Exact bytes: no jittered retry, no heartbeat timing.
    SSE_RETRY: "0",
    SSE_HEARTBEAT_INTERVAL: "0",
    SSE_HEALTH: "1",
    ...env,
  });
  children.add(started.child);
  expect(started.url).toMatch(/^https:\/\//);
  return started;
}

/** One HTTP/2 session that trusts the test certificate. */
async function connect(url: string, settings?: http2.Settings): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(url, { ca: cert, ...(settings ? { settings } : {}) });
  await new Promise<void>((resolve, reject) => {
    session.once("connect", () => resolve());
    session.once("error", reject);
  });
  expect(session.alpnProtocol).toBe("h2");
  return session;
}

/** An event stream on an h2 session: status, headers and every byte as text. */
class H2Stream {
  status = 0;
  headers: http2.IncomingHttpHeaders = {};
  text = "";
  ended = false;
  closed = false;
  readonly stream: http2.ClientHttp2Stream;
  constructor(session: http2.ClientHttp2Session, topics: string[]) {
    this.stream = session.request({ ":path": `/events?token=${subscribeToken(SECRET, topics)}` });
    this.stream.setEncoding("utf8");
    this.stream.on("response", (headers) => {
      this.headers = headers;
      this.status = Number(headers[":status"]);
    });
    this.stream.on("data", (chunk: string) => (this.text += chunk));
    this.stream.on("end", () => (this.ended = true));
    this.stream.on("close", () => (this.closed = true));
    this.stream.on("error", () => undefined);
  }
}

/** Waits until every stream got its first heartbeat: from then on each is subscribed. */
function streamsOpen(streams: readonly H2Stream[], ms = 10_000): Promise<void> {
  return eventually(() => streams.every((s) => s.text === ":\n\n"), ms, `${streams.length} streams open`);
}

/** A complete request on the session: status and body. */
function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<{ status: number; headers: http2.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers);
    let status = 0;
    let response: http2.IncomingHttpHeaders = {};
    let text = "";
    req.setEncoding("utf8");
    req.on("response", (h) => {
      response = h;
      status = Number(h[":status"]);
    });
    req.on("data", (c: string) => (text += c));
    req.on("end", () => resolve({ status, headers: response, body: text }));
    req.on("error", reject);
    req.end(body);
  });
}

function submit(session: http2.ClientHttp2Session, events: Array<{ topic: string; event: string; data: string }>) {
  return h2Request(session, { ":method": "POST", ":path": "/submit" }, submitToken(SECRET, events));
}

async function health(session: http2.ClientHttp2Session): Promise<{ subscribers: number; disconnects: Record<string, number> }> {
  const res = await h2Request(session, { ":path": "/health" });
  return JSON.parse(res.body) as { subscribers: number; disconnects: Record<string, number> };
}

/** Ids vary per run (`<epoch>-<n>`): keep the sequence number only. */
const normalize = (text: string) => text.replace(/^id:[0-9a-z]+-([0-9]+)$/gm, "id:#$1");

/** Headers that are per-connection in HTTP/1.1 and forbidden in HTTP/2 (RFC 9113 §8.2.2). */
const CONNECTION_SPECIFIC = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"];

test("30 event streams and /submit over ONE h2 session: every stream gets every event, exact bytes, no connection headers; client close is noticed", async () => {
  const server = await startTls();
  const session = await connect(server.url);
  const streams = Array.from({ length: 30 }, (_, i) => new H2Stream(session, i % 2 === 0 ? ["news", "all"] : ["all"]));
  // Subscribed once the first heartbeat arrived on every stream.
  await streamsOpen(streams);
  for (const s of streams) {
    expect(s.status).toBe(200);
    expect(s.headers["content-type"]).toBe("text/event-stream");
    expect(s.headers["cache-control"]).toBe("no-cache, no-transform");
    expect(s.headers["x-accel-buffering"]).toBe("no");
    for (const name of CONNECTION_SPECIFIC) expect(s.headers[name]).toBeUndefined();
  }
  expect((await health(session)).subscribers).toBe(30);

  const submitted = await submit(session, [
    { topic: "all", event: "one", data: "a\nb" },
    { topic: "news", event: "two", data: "" },
    { topic: "other", event: "never", data: "x" },
  ]);
  expect(submitted.status).toBe(200);
  expect(submitted.body).toBe("");
  for (const name of CONNECTION_SPECIFIC) expect(submitted.headers[name]).toBeUndefined();
  // The marker: once it is on every stream, nothing before it is missing.
  expect((await submit(session, [{ topic: "all", event: "end", data: "." }])).status).toBe(200);
  await eventually(() => streams.every((s) => s.text.includes("event:end\n")), 10_000, "marker on every stream");
  streams.forEach((s, i) => {
    expect(normalize(s.text)).toBe(
      ":\n\n" +
        "event:one\ndata:a\ndata:b\nid:#1\n\n" +
        (i % 2 === 0 ? "event:two\ndata:\nid:#2\n\n" : "") +
        "event:end\ndata:.\nid:#4\n\n",
    );
  });

  // Closing a stream (RST_STREAM CANCEL) must unsubscribe it: the session stays.
  for (const s of streams.slice(0, 10)) s.stream.close(http2.constants.NGHTTP2_CANCEL);
  await eventually(() => streams.slice(0, 10).every((s) => s.closed), 5000, "streams closed");
  let stats = await health(session);
  for (let i = 0; stats.subscribers !== 20 && i < 100; i++) stats = await health(session);
  expect(stats.subscribers).toBe(20);
  expect(stats.disconnects["client"]).toBe(10);
  session.close();
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
}, 30_000);

test("resume over h2: Last-Event-ID replays the missed events, then live ones follow", async () => {
  const server = await startTls();
  const session = await connect(server.url);
  const first = new H2Stream(session, ["t"]);
  await streamsOpen([first]);
  for (const data of ["1", "2", "3"]) expect((await submit(session, [{ topic: "t", event: "e", data }])).status).toBe(200);
  await eventually(() => first.text.includes("data:3\n"), 5000, "three events");
  const firstId = /^id:(.+)$/m.exec(first.text)![1]!;
  first.stream.close();
  const resumed = session.request({ ":path": `/events?token=${subscribeToken(SECRET, ["t"])}`, "last-event-id": firstId });
  let text = "";
  resumed.setEncoding("utf8");
  resumed.on("data", (c: string) => (text += c));
  await eventually(() => text.includes("data:3\n"), 5000, "replay");
  expect((await submit(session, [{ topic: "t", event: "e", data: "4" }])).status).toBe(200);
  await eventually(() => text.includes("data:4\n"), 5000, "live after replay");
  expect(normalize(text)).toBe(":\n\nevent:e\ndata:2\nid:#2\n\nevent:e\ndata:3\nid:#3\n\nevent:e\ndata:4\nid:#4\n\n");
  session.close();
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
}, 30_000);

test("an HTTP/1.1 client over TLS on the same port still works (chunked stream, /submit, /ping)", async () => {
  const server = await startTls();
  const agent = new https.Agent({ ca: cert, keepAlive: false });
  try {
    const { port } = new URL(server.url);
    const res = await new Promise<import("node:http").IncomingMessage>((resolve, reject) => {
      https.get({ host: "127.0.0.1", port, path: `/events?token=${subscribeToken(SECRET, ["t"])}`, agent }, resolve).on("error", reject);
    });
    expect(res.httpVersion).toBe("1.1");
    expect((res.socket as import("node:tls").TLSSocket).alpnProtocol).toBe(false);
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toBe("text/event-stream");
    expect(res.headers["transfer-encoding"]).toBe("chunked");
    expect(res.headers["connection"]).toBeUndefined();
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => (text += c));
    await eventually(() => text === ":\n\n", 5000, "first heartbeat");
    // The publisher's way in: POST over HTTP/1.1 + TLS.
    const status = await new Promise<number>((resolve, reject) => {
      const req = https.request({ host: "127.0.0.1", port, path: "/submit", method: "POST", agent }, (r) => {
        r.resume();
        resolve(r.statusCode!);
      });
      req.on("error", reject);
      req.end(submitToken(SECRET, [{ topic: "t", event: "e", data: "1" }]));
    });
    expect(status).toBe(200);
    await eventually(() => text.includes("event:e\n"), 5000, "event over HTTP/1.1");
    expect(normalize(text)).toBe(":\n\nevent:e\ndata:1\nid:#1\n\n");
    res.destroy();
  } finally {
    agent.destroy();
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
  }
}, 30_000);

test("an idle HTTP/1.1 keep-alive connection over TLS is closed by the server (keep-alive timeout, as without TLS)", async () => {
  const server = await startTls();
  const { port } = new URL(server.url);
  // A raw client: it never closes by itself, so an end can only come from the server.
  const socket = tls.connect({ host: "127.0.0.1", port: Number(port), ca: cert, ALPNProtocols: ["http/1.1"] });
  socket.on("error", () => undefined);
  let text = "";
  socket.setEncoding("latin1");
  socket.on("data", (d: string) => (text += d));
  const ended = new Promise<void>((resolve) => socket.once("end", () => resolve()));
  socket.write("GET /ping HTTP/1.1\r\nHost: localhost\r\n\r\n");
  await eventually(() => text.includes("\r\n\r\n"), 5000, "the /ping response");
  expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  expect(text).toMatch(/\r\nKeep-Alive: timeout=5\r\n/);
  // The marker: the server ends the idle connection (Node's HTTP/2 server sets no keep-alive timeout for HTTP/1.1).
  await ended;
  socket.destroy();
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
}, 30_000);

test("a slow h2 stream is cut at the buffer bound; another stream of the same topic gets every event", async () => {
  // 16 KiB bound; the slow session grants no flow-control window, so every
  // byte the server writes stays buffered in its h2 stream (writableLength).
  const server = await startTls({ SSE_MAX_BUFFER_BYTES: "16384" });
  const fast = await connect(server.url);
  const slowSession = await connect(server.url, { initialWindowSize: 0 });
  const slow = new H2Stream(slowSession, ["t"]);
  const good = new H2Stream(fast, ["t"]);
  await eventually(() => good.text === ":\n\n" && slow.status === 200, 5000, "both streams open");
  expect((await health(fast)).subscribers).toBe(2);
  const data = "x".repeat(3000);
  let sent = 0;
  // Publish until the slow stream is cut (bounded: far more than 16 KiB).
  while (!slow.closed && sent < 100) {
    expect((await submit(fast, [{ topic: "t", event: "e", data: String(sent) + data }])).status).toBe(200);
    sent++;
  }
  expect(slow.closed).toBe(true);
  expect(slow.text).toBe(""); // no window: not even the heartbeat got through
  expect(sent).toBeGreaterThan(4); // the bound, not something else, cut it
  expect((await submit(fast, [{ topic: "t", event: "end", data: "." }])).status).toBe(200);
  await eventually(() => good.text.includes("event:end\n"), 10_000, "marker on the fast stream");
  const got = [...good.text.matchAll(/^data:([0-9]+)x/gm)].map((m) => Number(m[1]));
  expect(got).toEqual(Array.from({ length: sent }, (_, i) => i));
  const stats = await health(fast);
  expect(stats.disconnects["slow"]).toBe(1);
  expect(stats.subscribers).toBe(1);
  fast.close();
  slowSession.destroy();
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
}, 30_000);

test("SIGTERM ends h2 streams (END_STREAM), sends GOAWAY, and exits 0 with an idle HTTP/1.1 connection and an unfinished handshake open", async () => {
  const server = await startTls();
  const session = await connect(server.url);
  const streams = Array.from({ length: 5 }, () => new H2Stream(session, ["t"]));
  await streamsOpen(streams);
  let goaway = false;
  session.on("goaway", () => (goaway = true));
  const sessionClosed = new Promise<void>((resolve) => session.once("close", () => resolve()));
  // A keep-alive HTTP/1.1 connection, idle after one request.
  const { port } = new URL(server.url);
  const agent = new https.Agent({ ca: cert, keepAlive: true });
  await new Promise<void>((resolve, reject) => {
    https.get({ host: "127.0.0.1", port, path: "/ping", agent }, (r) => {
      r.resume();
      r.on("end", () => resolve());
    }).on("error", reject);
  });
  // A TCP connection that never starts its TLS handshake: without the
  // shutdown ending it, the server would wait for the 120 s handshake timeout.
  const raw = net.connect(Number(port), "127.0.0.1");
  await new Promise<void>((resolve) => raw.once("connect", () => resolve()));
  raw.on("error", () => undefined);
  // A request answered after that connect means the server's loop has accepted it.
  expect((await health(session)).subscribers).toBe(5);

  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
  await sessionClosed;
  expect(goaway).toBe(true);
  for (const s of streams) {
    expect(s.ended).toBe(true); // a clean end, not a reset
    expect(s.stream.rstCode).toBe(http2.constants.NGHTTP2_NO_ERROR);
  }
  raw.destroy();
  agent.destroy();
}, 30_000);

test("SIGTERM exits 0 promptly while a client keeps an idle h2 connection open (browsers do; a graceful session close alone would wait for it)", async () => {
  const server = await startTls();
  const { port } = new URL(server.url);
  // A client that, like a browser holding an idle connection, never closes
  // its side: it does not answer the server's end with its own.
  const socket = tls.connect({ host: "127.0.0.1", port: Number(port), ca: cert, ALPNProtocols: ["h2"], allowHalfOpen: true } as tls.ConnectionOptions);
  await new Promise<void>((resolve, reject) => {
    socket.once("secureConnect", () => resolve());
    socket.once("error", reject);
  });
  expect(socket.alpnProtocol).toBe("h2");
  socket.on("error", () => undefined);
  // Connection preface and an empty SETTINGS frame; the server's SETTINGS back means its session is up.
  socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]));
  await new Promise<void>((resolve) => socket.once("data", () => resolve()));
  const ended = new Promise<void>((resolve) => socket.once("end", () => resolve()));
  server.child.kill("SIGTERM");
  expect(await server.exited).toBe(0);
  await ended; // the server's side closed first, as it must
  socket.destroy();
}, 30_000);

test("WORKERS=2 with TLS: h2 sessions on either worker get every event (shared Redis), SIGTERM exits 0", async () => {
  if (!hasRedisServer()) throw new Error("redis-server is required for this test");
  const redis = await RedisServer.start();
  try {
    const server = await startTls({ WORKERS: "2", REDIS_URL: redis.url });
    expect(server.output()).toMatch(/listening on https:\/\/127\.0\.0\.1:\d+ .*2 workers/);
    // Several sessions: the primary hands connections to the workers in turn.
    const sessions = await Promise.all(Array.from({ length: 4 }, () => connect(server.url)));
    const streams = sessions.map((session) => new H2Stream(session, ["t"]));
    await streamsOpen(streams);
    for (let n = 0; n < 3; n++) expect((await submit(sessions[n % 4]!, [{ topic: "t", event: "e", data: String(n) }])).status).toBe(200);
    await eventually(() => streams.every((s) => s.text.includes("data:2\n")), 10_000, "every event on every stream");
    for (const s of streams) expect([...s.text.matchAll(/^data:(.*)$/gm)].map((m) => m[1])).toEqual(["0", "1", "2"]);
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    // Ended cleanly (END_STREAM), not reset; may be read just after the exit.
    await eventually(() => streams.every((s) => s.ended), 5000, "streams ended");
    for (const session of sessions) session.destroy();
  } finally {
    await redis.close();
  }
}, 60_000);

describe("TLS settings are checked at startup", () => {
  function run(env: Record<string, string>) {
    return spawnSync(process.execPath, [CLI], { env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, PORT: "0", ...env }, encoding: "utf8", timeout: 10_000 });
  }
  test.each([
    ["a certificate without key", () => ({ SSE_TLS_CERT: path.join(dir, "cert.pem") }), /SSE_TLS_CERT \(--tls-cert\) and SSE_TLS_KEY \(--tls-key\) go together; only SSE_TLS_CERT is set/],
    ["a key without certificate", () => ({ SSE_TLS_KEY: path.join(dir, "key.pem") }), /go together; only SSE_TLS_KEY is set/],
    ["a missing file", () => ({ SSE_TLS_CERT: path.join(dir, "nope.pem"), SSE_TLS_KEY: path.join(dir, "key.pem") }), /SSE_TLS_CERT \(--tls-cert\) cannot be read: ENOENT/],
    ["a key of another certificate", () => {
      const other = fs.mkdtempSync(path.join(dir, "other-"));
      return { SSE_TLS_CERT: path.join(dir, "cert.pem"), SSE_TLS_KEY: makeCertificate(other).key };
    }, /not a usable PEM certificate and matching key: .*mismatch/],
  ])("%s: exit 2 with a clear message", (_name, env, message) => {
    const result = run(env());
    expect(result.stderr).toMatch(message);
    expect(result.status).toBe(2);
    expect(result.stderr).not.toMatch(/BEGIN|PRIVATE/);
  });
});
