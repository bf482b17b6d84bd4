/**
 * The framework-free core (issue 12): `createSseHub` served by a bare
 * `http.createServer` and by `http2.createSecureServer` through
 * `hub.handle`, the Express router as a thin layer over it, and the explicit
 * start that surfaces a broker that could not start (a broker whose start
 * rejects; one RedisBroker given to two hubs on a real redis-server)
 * instead of 200 streams that never get an event.
 */
import fs from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { MemoryBroker, type BrokerSink } from "../src/brokers/broker";
import { createSseHub, type SseHub } from "../src/core/sse-hub";
import { isSseError } from "../src/errors";
import { SILENT_LOGGER } from "../src/logger";
import { createRedisBroker } from "../src/brokers/redis";
import { createSseRouter } from "../src/adapters/express";
import { submitToken, subscribeToken } from "../src/tokens";
import { RedisServer } from "./helpers/redis";
import { RawStream, SECRET, eventually, parseEvents, serveRouter } from "./helpers/sse";
import { makeCertificate } from "./helpers/tls";

const servers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const close of servers.splice(0).reverse()) await close();
});

/** Serves `hub.handle` from a bare node:http server on a free port. */
async function serveHub(hub: SseHub): Promise<string> {
  const server = http.createServer((req, res) => hub.handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  servers.push(async () => {
    await hub.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test("createSseHub serves from a bare node:http server: its routes, events, submit and the JSON 404", async () => {
  const hub = createSseHub({ secret: SECRET, retry: 0, health: true, logger: SILENT_LOGGER });
  expect([...hub.routes.keys()]).toEqual(["/events", "/submit", "/presence", "/ping", "/health"]);
  await hub.start();
  const base = await serveHub(hub);

  const s = new RawStream(`${base}/events?token=${subscribeToken(SECRET, ["core"])}`);
  await s.until((t) => t === ":\n\n");
  expect([s.status, s.headers["content-type"]]).toEqual([200, "text/event-stream"]);
  const submit = await fetch(`${base}/submit`, { method: "POST", body: submitToken(SECRET, [{ topic: "core", event: "e", data: "1" }]) });
  expect(submit.status).toBe(200);
  await hub.publish([{ topic: "core", event: "e", data: { n: 2 } }]);
  await hub.publish([{ topic: "core", event: "end", data: "" }]);
  await s.until((t) => t.includes("event:end"));
  expect(parseEvents(s.text).map((e) => [e.event, e.data])).toEqual([
    ["e", "1"],
    ["e", '{"n":2}'],
    ["end", ""],
  ]);
  expect(hub.stats.subscribers).toBe(1);
  expect(await hub.presence(["core"])).toEqual({ core: 1 });

  const missing = await fetch(`${base}/elsewhere`);
  expect(missing.status).toBe(404);
  expect(await missing.json()).toEqual({ error: "not_found", message: "no route for GET /elsewhere" });
  const method = await fetch(`${base}/submit`, { method: "PUT" });
  expect([method.status, method.headers.get("allow")]).toEqual([405, "POST, OPTIONS"]);
  // As Express matched them: case-insensitive, one trailing slash allowed.
  expect((await fetch(`${base}/Ping/`)).status).toBe(200);
  s.close();
});

test("the Express router is a layer over its hub: router.hub, live stats, close through the hub", async () => {
  const router = createSseRouter({ secret: SECRET, retry: 0, logger: SILENT_LOGGER });
  const served = await serveRouter(router);
  servers.push(() => served.close());
  expect([...router.hub.routes.keys()]).toEqual(["/events", "/submit", "/presence", "/ping"]);
  const s = new RawStream(`${served.base}/events?token=${subscribeToken(SECRET, ["x"])}`);
  await s.until((t) => t === ":\n\n");
  // A getter, not a snapshot taken when the router was made.
  await eventually(() => router.stats.subscribers === 1, 5000, "one subscriber");
  expect(router.hub.stats.subscribers).toBe(1);
  await router.close();
  expect(router.hub.closed).toBe(true);
  await s.until(() => s.ended);
});

/** A real broker (the in-memory one) whose start fails, as a broker that cannot reach its backend would. */
class UnstartableBroker extends MemoryBroker {
  override async start(_sink: BrokerSink): Promise<void> {
    throw new Error("backend refused the connection");
  }
}

test("a broker that cannot start: start() rejects with broker_failed; /events, /submit and /health answer 503", async () => {
  const hub = createSseHub({ secret: SECRET, broker: new UnstartableBroker(), health: true, logger: SILENT_LOGGER });
  const base = await serveHub(hub);
  const err: unknown = await hub.start().then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isSseError(err) && err.code).toBe("broker_failed");
  expect((err as Error).message).toContain("backend refused the connection");

  // Even an EventSource gets the error status: reconnecting could not help.
  const events = await fetch(`${base}/events?token=${subscribeToken(SECRET, ["t"])}`, { headers: { accept: "text/event-stream" } });
  expect(events.status).toBe(503);
  expect(await events.json()).toMatchObject({ error: "broker_failed" });
  const submit = await fetch(`${base}/submit`, { method: "POST", body: submitToken(SECRET, [{ topic: "t", event: "e", data: "" }]) });
  expect(submit.status).toBe(503);
  expect(await submit.json()).toMatchObject({ error: "broker_failed" });
  const health = await fetch(`${base}/health`);
  expect(health.status).toBe(503);
  expect(await health.json()).toMatchObject({ status: "unavailable" });
  await expect(hub.publish([{ topic: "t", event: "e", data: "" }])).rejects.toMatchObject({ code: "broker_failed" });
  expect(hub.stats.subscribers).toBe(0);
});

describe("on a real redis-server", () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await RedisServer.start();
  }, 20_000);
  afterAll(async () => {
    await redis?.close();
  });

  test("one RedisBroker given to two hubs: the second's start fails clearly and it refuses streams; the first serves", async () => {
    const broker = createRedisBroker({ url: redis.url, key: "core:shared", log: null });
    const first = createSseHub({ secret: SECRET, broker, retry: 0, logger: SILENT_LOGGER });
    const second = createSseHub({ secret: SECRET, broker, retry: 0, logger: SILENT_LOGGER });
    const firstBase = await serveHub(first);
    const secondBase = await serveHub(second);
    servers.unshift(() => broker.close());
    await first.start();
    await expect(second.start()).rejects.toMatchObject({ code: "broker_failed", message: expect.stringContaining("serves one hub") });

    const token = subscribeToken(SECRET, ["shared"]);
    const refused = await fetch(`${secondBase}/events?token=${token}`);
    expect([refused.status, ((await refused.json()) as { error: string }).error]).toEqual([503, "broker_failed"]);

    const s = new RawStream(`${firstBase}/events?token=${token}`);
    await s.until((t) => t === ":\n\n");
    await first.publish([{ topic: "shared", event: "e", data: "via redis" }]);
    await s.until((t) => t.includes("via redis"));
    s.close();
  });
});

test("http2.createSecureServer with hub.handle: a stream and /submit on one h2 session", async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-core-h2-"));
  servers.push(async () => fs.rmSync(dir, { recursive: true, force: true }));
  const { cert, key } = makeCertificate(dir);
  const hub = createSseHub({ secret: SECRET, retry: 0, logger: SILENT_LOGGER });
  const server = http2.createSecureServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key), allowHTTP1: true }, (req, res) => hub.handle(req, res));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca: fs.readFileSync(cert), servername: "localhost" });
  servers.push(async () => {
    session.destroy();
    await hub.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const stream = session.request({ ":path": `/events?token=${subscribeToken(SECRET, ["h2"])}` });
  let text = "";
  const headers = await new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once("response", resolve));
  expect(headers[":status"]).toBe(200);
  expect(headers["content-type"]).toBe("text/event-stream");
  expect(headers.connection).toBeUndefined();
  stream.setEncoding("utf8");
  const got = new Promise<void>((resolve) =>
    stream.on("data", (chunk: string) => {
      text += chunk;
      if (text.includes("event:end")) resolve();
    }),
  );
  const submit = session.request({ ":method": "POST", ":path": "/submit" });
  submit.end(submitToken(SECRET, [{ topic: "h2", event: "e", data: "over h2" }]));
  const submitted = await new Promise<http2.IncomingHttpHeaders>((resolve) => submit.once("response", resolve));
  expect(submitted[":status"]).toBe(200);
  submit.resume();
  await hub.publish([{ topic: "h2", event: "end", data: "" }]);
  await got;
  expect(parseEvents(text).map((e) => e.data)).toEqual(["over h2", ""]);
  stream.close();
});
