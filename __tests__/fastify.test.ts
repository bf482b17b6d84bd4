/**
 * The Fastify plugin (`sse-hub/fastify`) against real Fastify on a real
 * socket, next to the Express router serving the same requests: the same
 * bytes, statuses, headers and JSON errors, whichever framework mounts the
 * hub. Plus what only the plugin does: `fastify.sseHub`, the app's own
 * routes beside the hub's, the app's logger, and `fastify.close()` ending
 * the streams the way EventSource reconnects from.
 */
import http2 from "node:http2";
import net from "node:net";
import { Writable } from "node:stream";
import { EventSource } from "eventsource";
import Fastify, { type FastifyInstance } from "fastify";
import { sseHubPlugin, type SseHubPluginOptions } from "../src/adapters/fastify";
import { MemoryBroker, SILENT_LOGGER, createSseHub, type BrokerSink, type SseHub, type SseHubOptions } from "../src/core";
import { submitToken, subscribeToken } from "../src/tokens";
import { RawStream, SECRET, parseEvents, startServer, type TestServer } from "./helpers/sse";

interface FastifyServer {
  app: FastifyInstance;
  /** Base URL of the hub's routes (prefix included), without trailing slash. */
  base: string;
  port: number;
}

const PREFIX = "/sse-server";

/** A Fastify app with the plugin under `prefix` and a route of the app's own, listening on a free port. */
async function startFastify(options: Partial<SseHubOptions> | { hub: SseHub } = {}, prefix = PREFIX, app = Fastify()): Promise<FastifyServer> {
  const own: SseHubPluginOptions = "hub" in options ? options : { secret: SECRET, retry: 0, ...options };
  await app.register(sseHubPlugin, prefix === "" ? own : { ...own, prefix });
  app.get("/hello", async () => ({ hello: "world" }));
  app.post("/echo", async (request) => ({ got: request.body }));
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address() as net.AddressInfo;
  return { app, base: `http://127.0.0.1:${address.port}${prefix}`, port: address.port };
}

/** Replace ids (`id:<epoch>-<n>`) by `id:#n`: the two hubs' epochs differ. */
function normalize(text: string): string {
  return text.replace(/^id:[0-9a-z]+-([0-9]+)$/gm, "id:#$1");
}

/** Response headers without the ones that differ by nature between two servers (time, connection reuse). */
function comparableHeaders(raw: string[]): string[][] {
  const pairs: string[][] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name !== "date" && name !== "keep-alive" && name !== "connection") pairs.push([raw[i]!, raw[i + 1]!]);
  }
  return pairs;
}

let fy: FastifyServer;
let ex: TestServer;

beforeAll(async () => {
  fy = await startFastify();
  ex = await startServer({ retry: 0 }, PREFIX);
});

afterAll(async () => {
  await fy.app.close();
  await ex.close();
});

test("a stream through Fastify is the Express router's, byte for byte: status, headers, frames", async () => {
  const events = [
    { topic: "bytes", event: "one", data: "hello world" },
    { topic: "bytes", event: "multi", data: "a\r\nb\rc\nd" },
    { topic: "bytes", event: "empty", data: "" },
    { topic: "bytes", event: "bad\r\nname", data: " lead" },
    { topic: "bytes", event: "unicode", data: "héllo ✓ 🎉" },
    { topic: "bytes", event: "json", data: { a: [1, "x"] } },
  ];
  const token = subscribeToken(SECRET, ["bytes"]);
  const viaFastify = new RawStream(`${fy.base}/events?token=${token}`);
  const viaExpress = new RawStream(`${ex.base}/events?token=${token}`);
  await viaFastify.until((t) => t === ":\n\n");
  await viaExpress.until((t) => t === ":\n\n");
  await fy.app.sseHub.publish(events);
  await ex.router.publish(events);
  await viaFastify.until((t) => t.includes("event:json"));
  await viaExpress.until((t) => t.includes("event:json"));

  expect(viaFastify.status).toBe(200);
  expect(comparableHeaders(viaFastify.rawHeaders)).toEqual(comparableHeaders(viaExpress.rawHeaders));
  expect(viaFastify.headers["content-type"]).toBe("text/event-stream");
  expect(viaFastify.headers["connection"]).toBeUndefined();
  expect(normalize(viaFastify.text)).toBe(normalize(viaExpress.text));
  expect(normalize(viaFastify.text)).toBe(
    ":\n\n" +
      "event:one\ndata:hello world\nid:#1\n\n" +
      "event:multi\ndata:a\ndata:b\ndata:c\ndata:d\nid:#2\n\n" +
      "event:empty\ndata:\nid:#3\n\n" +
      "event:bad  name\ndata:  lead\nid:#4\n\n" +
      "event:unicode\ndata:héllo ✓ 🎉\nid:#5\n\n" +
      'event:json\ndata:{"a":[1,"x"]}\nid:#6\n\n',
  );
  viaFastify.close();
  viaExpress.close();
});

test("POST /submit publishes, whatever the body's content type (Fastify never parses it)", async () => {
  const s = new RawStream(`${fy.base}/events?token=${subscribeToken(SECRET, ["submit"])}`);
  await s.until((t) => t === ":\n\n");
  const types = ["text/plain", "application/octet-stream", "application/json", undefined];
  for (const [i, type] of types.entries()) {
    const res = await fetch(`${fy.base}/submit`, {
      method: "POST",
      headers: type === undefined ? {} : { "Content-Type": type },
      body: submitToken(SECRET, [{ topic: "submit", event: "n", data: String(i) }]),
    });
    expect([res.status, await res.text()]).toEqual([200, ""]);
  }
  await s.until((t) => parseEvents(t).length === types.length);
  expect(parseEvents(s.text).map((e) => e.data)).toEqual(["0", "1", "2", "3"]);
  s.close();
});

test("an EventSource gets what POST /submit and fastify.sseHub.publish send, and resumes with Last-Event-ID", async () => {
  const url = `${fy.base}/events?token=${subscribeToken(SECRET, ["es"])}`;
  const es = new EventSource(url);
  const received: Array<{ data: string; id: string }> = [];
  const gotThree = new Promise<void>((resolve, reject) => {
    es.addEventListener("tick", (e) => {
      received.push({ data: e.data, id: e.lastEventId });
      if (received.length === 3) resolve();
    });
    es.onerror = (e) => reject(new Error(`EventSource error ${String(e.message)}`));
  });
  await new Promise<void>((resolve) => (es.onopen = () => resolve()));
  const submit = await fetch(`${fy.base}/submit`, { method: "POST", body: submitToken(SECRET, [{ topic: "es", event: "tick", data: "a" }]) });
  expect(submit.status).toBe(200);
  await fy.app.sseHub.publish([
    { topic: "es", event: "tick", data: "b" },
    { topic: "es", event: "tick", data: "c" },
  ]);
  await gotThree;
  es.close();
  expect(received.map((e) => e.data)).toEqual(["a", "b", "c"]);

  // Missed b and c: a new connection from after `a` replays exactly those.
  const again = new RawStream(url, { "Last-Event-ID": received[0]!.id });
  await again.until((t) => parseEvents(t).length === 2);
  expect(parseEvents(again.text)).toEqual([
    { event: "tick", data: "b", id: received[1]!.id },
    { event: "tick", data: "c", id: received[2]!.id },
  ]);
  again.close();
});

/** The same requests to both servers: statuses, JSON bodies and the headers that matter must agree. */
test("errors, 405, OPTIONS, HEAD and CORS answer as the Express router does", async () => {
  const requests: Array<[string, string, RequestInit?]> = [
    ["missing token", "/events"],
    ["bad token", "/events?token=garbage"],
    ["bad submit token", "/submit", { method: "POST", body: "garbage" }],
    ["empty submit", "/submit", { method: "POST" }],
    ["DELETE /events", "/events", { method: "DELETE" }],
    ["GET /submit", "/submit"],
    ["PUT /ping", "/ping", { method: "PUT" }],
    ["PATCH /presence", "/presence", { method: "PATCH" }],
    ["OPTIONS", "/events", { method: "OPTIONS" }],
    [
      "preflight",
      "/events",
      {
        method: "OPTIONS",
        headers: { Origin: "https://app.example", "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization, last-event-id" },
      },
    ],
    ["HEAD /events", `/events?token=${subscribeToken(SECRET, ["head"])}`, { method: "HEAD" }],
    ["GET /ping", "/ping"],
    ["HEAD /ping", "/ping", { method: "HEAD" }],
  ];
  const HEADERS = ["content-type", "content-length", "allow", "vary", "cache-control", ...["origin", "methods", "headers", "max-age"].map((h) => `access-control-allow-${h}`)];
  const answer = async (base: string, [what, path, init]: [string, string, RequestInit?]) => {
    const res = await fetch(`${base}${path}`, init);
    const body = await res.text();
    return { what, status: res.status, body: body.startsWith("{") ? JSON.parse(body) : body, headers: HEADERS.map((h) => [h, res.headers.get(h)]) };
  };
  const viaFastify = [];
  const viaExpress = [];
  for (const r of requests) {
    viaFastify.push(await answer(fy.base, r));
    viaExpress.push(await answer(ex.base, r));
  }
  expect(viaFastify).toEqual(viaExpress);
  expect(viaFastify.map((r) => r.status)).toEqual([401, 401, 401, 401, 405, 405, 405, 405, 204, 204, 200, 200, 200]);
  expect(viaFastify[1]!.body).toEqual({ error: "token_invalid", message: expect.any(String) });
  expect(viaFastify[1]!.headers).toContainEqual(["content-type", "application/json; charset=utf-8"]);
  expect(viaFastify[4]!.headers).toContainEqual(["allow", "GET, HEAD, OPTIONS"]);
  expect(viaFastify[5]!.headers).toContainEqual(["allow", "POST, OPTIONS"]);
  for (const r of viaFastify) expect(r.headers).toContainEqual(["access-control-allow-origin", "*"]);
});

test("the app's own routes work beside the hub's, with Fastify's body parsing and 404", async () => {
  const hello = await fetch(`http://127.0.0.1:${fy.port}/hello`);
  expect([hello.status, await hello.json()]).toEqual([200, { hello: "world" }]);
  const echo = await fetch(`http://127.0.0.1:${fy.port}/echo`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ n: 1 }),
  });
  expect([echo.status, await echo.json()]).toEqual([200, { got: { n: 1 } }]);
  // Not the hub's: Fastify's own 404, under the prefix and outside it.
  for (const path of [`${PREFIX}/nope`, "/events"]) {
    const res = await fetch(`http://127.0.0.1:${fy.port}${path}`);
    expect(res.status).toBe(404);
    expect(await res.json()).toMatchObject({ statusCode: 404, error: "Not Found" });
  }
});

test("fastify.close() ends every stream with a clean end of a 200 response, which EventSource reconnects from", async () => {
  const own = await startFastify({ retry: 0 });
  const token = subscribeToken(SECRET, ["bye"]);
  // A raw connection: the exact end of the response on the wire.
  const raw = net.connect(own.port, "127.0.0.1");
  let wire = "";
  raw.setEncoding("latin1");
  raw.on("data", (d: string) => (wire += d));
  const rawClosed = new Promise<void>((resolve) => raw.once("close", () => resolve()));
  raw.write(`GET ${PREFIX}/events?token=${token} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`);
  const es = new EventSource(`${own.base}/events?token=${token}`);
  await new Promise<void>((resolve) => (es.onopen = () => resolve()));
  const reconnecting = new Promise<number>((resolve) => (es.onerror = () => resolve(es.readyState)));
  await new Promise<void>((resolve) => {
    const check = () => (wire.endsWith("\r\n\r\n3\r\n:\n\n\r\n") ? resolve() : raw.once("data", check));
    check();
  });
  expect(own.app.sseHub.stats.subscribers).toBe(2);

  await own.app.close();
  await rawClosed;
  expect(own.app.sseHub.closed).toBe(true);
  expect(wire).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
  // The chunked terminator: a complete response, not a reset.
  expect(wire.endsWith("\r\n0\r\n\r\n")).toBe(true);
  // The server is gone: the client keeps trying (CONNECTING), it did not give up (CLOSED).
  expect(await reconnecting).toBe(EventSource.CONNECTING);
  es.close();
});

test("{ hub }: an existing hub served at the root (no prefix), started on ready and closed with the app", async () => {
  const hub = createSseHub({ secret: SECRET, retry: 0 });
  const own = await startFastify({ hub }, "");
  expect(own.app.sseHub).toBe(hub);
  const s = new RawStream(`${own.base}/events?token=${subscribeToken(SECRET, ["root"])}`);
  await s.until((t) => t === ":\n\n");
  await hub.publish([{ topic: "root", event: "e", data: "x" }]);
  await s.until((t) => parseEvents(t).length === 1);
  await own.app.close();
  await s.closed();
  expect(hub.closed).toBe(true);
});

test("Fastify over HTTP/2 (h2c): a stream and POST /submit on one session, no connection-specific headers", async () => {
  const app = Fastify({ http2: true });
  await app.register(sseHubPlugin, { prefix: PREFIX, secret: SECRET, retry: 0 });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const session = http2.connect(`http://127.0.0.1:${(app.server.address() as net.AddressInfo).port}`);
  try {
    const stream = session.request({ ":path": `${PREFIX}/events?token=${subscribeToken(SECRET, ["h2"])}` });
    const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("response", resolve));
    let text = "";
    const waiters: Array<() => void> = [];
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      text += chunk;
      for (const w of waiters.splice(0)) w();
    });
    const until = async (predicate: () => boolean) => {
      while (!predicate()) await new Promise<void>((resolve) => waiters.push(resolve));
    };
    await until(() => text === ":\n\n");
    expect([headers[":status"], headers["content-type"], headers["connection"], headers["transfer-encoding"]]).toEqual([200, "text/event-stream", undefined, undefined]);
    const submit = session.request({ ":method": "POST", ":path": `${PREFIX}/submit` });
    submit.end(submitToken(SECRET, [{ topic: "h2", event: "e", data: "over h2" }]));
    const submitted = await new Promise<http2.IncomingHttpHeaders>((resolve) => submit.once("response", resolve));
    submit.resume();
    expect(submitted[":status"]).toBe(200);
    await until(() => parseEvents(text).length === 1);
    expect(parseEvents(text)[0]).toMatchObject({ event: "e", data: "over h2" });
    stream.close();
  } finally {
    session.close();
    await app.close();
  }
});

/** A real broker (the in-memory one) whose start fails, as one that cannot reach its backend would. */
class UnstartableBroker extends MemoryBroker {
  override async start(_sink: BrokerSink): Promise<void> {
    throw new Error("backend refused the connection");
  }
}

test("a broker that cannot start fails app.ready() with broker_failed, and the app still closes", async () => {
  const app = Fastify();
  await app.register(sseHubPlugin, { secret: SECRET, broker: new UnstartableBroker(), logger: SILENT_LOGGER });
  await expect(app.ready()).rejects.toMatchObject({ code: "broker_failed" });
  await app.close();
  expect(app.sseHub.closed).toBe(true);
});

test("invalid options fail the registration with invalid_option", async () => {
  const both = Fastify();
  await expect(both.register(sseHubPlugin, { hub: createSseHub({ secret: SECRET }), secret: SECRET } as never)).rejects.toMatchObject({
    code: "invalid_option",
    message: expect.stringContaining("secret"),
  });
  await both.close();
  const misspelled = Fastify();
  await expect(misspelled.register(sseHubPlugin, { secret: SECRET, tokenTTL: 60 } as never)).rejects.toMatchObject({
    code: "invalid_option",
    message: expect.stringContaining("tokenTTL"),
  });
  await misspelled.close();
});

test("the hub logs through the app's logger (pino), with fields and without tokens", async () => {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n")) if (line !== "") lines.push(JSON.parse(line) as Record<string, unknown>);
      callback();
    },
  });
  const own = await startFastify({}, PREFIX, Fastify({ logger: { level: "debug", stream } }));
  try {
    const token = subscribeToken(SECRET, ["secret-topic"]);
    expect((await fetch(`${own.base}/ping?token=${token}`, { method: "PUT" })).status).toBe(405);
    const refused = lines.find((l) => typeof l["msg"] === "string" && (l["msg"] as string).includes("refused"));
    expect(refused).toMatchObject({ level: 20, msg: `PUT ${PREFIX}/ping refused: PUT is not allowed on /ping; use GET`, code: "method_not_allowed", status: 405 });
    // (Fastify's own "incoming request" line has the URL, query and all: see the README on tokens in URLs.)
    expect(JSON.stringify(lines.filter((l) => l["msg"] !== "incoming request"))).not.toContain(token);
  } finally {
    await own.app.close();
  }
});
