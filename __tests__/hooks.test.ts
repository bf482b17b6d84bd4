/**
 * Subscribe hooks on a real server: `onSubscribe` sees the token's whole
 * payload and refuses by its `sub` with the hook's own 4xx; a slow async hook
 * is shed at `hookTimeout`; `onUnsubscribe` is told why each stream ended
 * (client, slow, shutdown).
 */
import { encode } from "@msgpack/msgpack";
import request from "supertest";
import { brancaEncode } from "../src/tokens/branca";
import { SseError } from "../src/errors";
import { parseSettings } from "../src/cli-options";
import { createSseRouter } from "../src/adapters/express";
import type { SubscribeInfo, UnsubscribeReason } from "../src/core/sessions";
import { subscribeToken } from "../src/tokens";
import { RawStream, SECRET, eventually, startServer, type TestServer } from "./helpers/sse";

const KEY = Buffer.from(SECRET, "hex");

describe("onSubscribe", () => {
  let srv: TestServer;
  const seen: SubscribeInfo[] = [];
  beforeAll(async () => {
    srv = await startServer({
      retry: 0,
      hookTimeout: 200,
      async onSubscribe(info) {
        seen.push(info);
        if (info.sub === "mallory") return new SseError("subscription_refused", "mallory may not listen");
        if (info.sub === "revoked") throw new SseError("token_invalid", "this user's session was revoked");
        if (info.sub === "slowpoke") return new Promise<void>(() => undefined);
        return undefined;
      },
    });
  });
  afterAll(async () => {
    await srv.close();
  });

  test("refuses by the token's sub with the hook's status; allows others; sees the whole payload", async () => {
    const refused = await request(srv.server).get(`/events?token=${subscribeToken(SECRET, ["t"], { sub: "mallory" })}`);
    expect([refused.status, refused.text]).toEqual([403, '{"error":"subscription_refused","message":"mallory may not listen"}']);
    const revoked = await request(srv.server).get(`/events?token=${subscribeToken(SECRET, ["t"], { sub: "revoked" })}`);
    expect([revoked.status, revoked.text]).toEqual([401, '{"error":"token_invalid","message":"this user\'s session was revoked"}']);

    const token = brancaEncode(KEY, encode({ topics: ["t", "u", "t"], sub: "alice", tenant: "acme" }));
    const s = new RawStream(`${srv.base}/events?token=${token}`, { "Last-Event-ID": "nope-1" });
    await s.until((t) => t.startsWith(":\n\n"));
    expect(s.status).toBe(200);
    s.close();
    const alice = seen.find((i) => i.sub === "alice")!;
    expect({ ...alice, remoteAddress: alice.remoteAddress?.replace(/^::ffff:/, "") }).toEqual({
      topics: ["t", "u"],
      sub: "alice",
      token: { topics: ["t", "u", "t"], sub: "alice", tenant: "acme" },
      remoteAddress: "127.0.0.1",
      lastEventId: "nope-1",
    });
    expect(srv.router.stats.refused).toBe(2);
  });

  test("an async hook slower than hookTimeout sheds: EventSource gets 200 + retry, others 503 + Retry-After", async () => {
    const token = subscribeToken(SECRET, ["t"], { sub: "slowpoke" });
    const es = new RawStream(`${srv.base}/events?token=${token}`, { Accept: "text/event-stream" });
    await es.closed();
    expect(es.status).toBe(200);
    expect(es.headers["content-type"]).toBe("text/event-stream");
    expect(es.text).toMatch(/^retry:\d{4}\n\n$/);
    const other = await request(srv.server).get(`/events?token=${token}`);
    expect(other.status).toBe(503);
    expect(other.headers["retry-after"]).toMatch(/^[1-9][0-9]*$/);
    expect(other.text).toBe('{"error":"over_capacity","message":"the subscription could not be checked in time; retry later"}');
    expect(srv.router.stats.shed.hook_timeout).toBe(2);
  });
});

describe("onUnsubscribe reasons", () => {
  let srv: TestServer;
  const ended: Array<{ sub: string | undefined; reason: UnsubscribeReason }> = [];
  beforeAll(async () => {
    srv = await startServer({
      retry: 0,
      maxBufferBytes: 1024,
      onUnsubscribe: (info, reason) => {
        ended.push({ sub: info.sub, reason });
      },
    });
  });

  async function open(sub: string): Promise<RawStream> {
    const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["r"], { sub })}`);
    await s.until((t) => t.startsWith(":\n\n"));
    return s;
  }

  test("client, slow and shutdown", async () => {
    const client = await open("client");
    const slow = await open("slow");
    await open("stays");
    client.close();
    await eventually(() => ended.some((e) => e.sub === "client"), 5000, "the client's unsubscribe");

    // A client that stops reading is cut once its backlog passes maxBufferBytes.
    slow.pause();
    const big = "x".repeat(64 * 1024);
    for (let i = 0; i < 200 && !ended.some((e) => e.sub === "slow"); i++) {
      await srv.router.publish([{ topic: "r", event: "big", data: big }]);
      await new Promise((r) => setTimeout(r, 10));
    }
    slow.close();
    await srv.close();
    expect(ended).toEqual([
      { sub: "client", reason: "client" },
      { sub: "slow", reason: "slow" },
      { sub: "stays", reason: "shutdown" },
    ]);
  });
});

test("onUnsubscribe gets reason expired when a stream's token expires", async () => {
  const ended: Array<{ sub: string | undefined; reason: UnsubscribeReason }> = [];
  // tokenTtl 1: the token minted now expires within about two seconds, and its stream ends then.
  const srv = await startServer({ retry: 0, tokenTtl: 1, expiryNotice: 0, onUnsubscribe: (info, reason) => void ended.push({ sub: info.sub, reason }) });
  try {
    const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["x"], { sub: "soon" })}`);
    await s.until((t) => t.startsWith(":\n\n"));
    await s.closed(10_000);
    await eventually(() => ended.length === 1, 5000, "the unsubscribe notice");
    expect(ended).toEqual([{ sub: "soon", reason: "expired" }]);
    expect(srv.router.stats.disconnects.expired).toBe(1);
  } finally {
    await srv.close();
  }
});

describe("options of issue 14 are validated once, with invalid_option", () => {
  test.each([
    [{ onSubscribe: 5 }, "onSubscribe must be a function; got number"],
    [{ onUnsubscribe: "x" }, "onUnsubscribe must be a function; got string"],
    [{ hookTimeout: 0 }, "hookTimeout must be an integer between 1 and 2147483647; got 0"],
    [{ maxConnections: -1 }, "maxConnections must be an integer >= 0; got -1"],
    [{ maxConnectionsPerSubject: 1.5 }, "maxConnectionsPerSubject must be an integer >= 0; got 1.5"],
    [{ connectRate: "10" }, "connectRate must be an integer >= 0; got 10"],
    [{ connectBurst: 0 }, "connectBurst must be an integer >= 1; got 0"],
    [{ webhookUrl: "ftp://example.com/" }, "webhookUrl must be an http:// or https:// URL, e.g. http://127.0.0.1:3000/sse-notices"],
    [{ webhookQueue: 0 }, "webhookQueue must be an integer >= 1; got 0"],
  ])("%j", (bad, message) => {
    expect(() => createSseRouter({ secret: SECRET, ...(bad as object) })).toThrow(expect.objectContaining({ code: "invalid_option", message }));
  });
});

test("standalone settings SSE_MAX_CONNECTIONS, SSE_CONNECT_RATE, SSE_WEBHOOK_URL reach the router options", () => {
  const env = { SSE_MAX_CONNECTIONS: "5000", SSE_CONNECT_RATE: "200", SSE_WEBHOOK_URL: "http://127.0.0.1:3000/notices" };
  expect(parseSettings({}, env).router).toEqual({ maxConnections: 5000, connectRate: 200, webhookUrl: "http://127.0.0.1:3000/notices" });
  expect(parseSettings({ "max-connections": "7" }, {}).router).toEqual({ maxConnections: 7 });
  expect(() => parseSettings({}, { SSE_WEBHOOK_URL: "127.0.0.1:3000" })).toThrow(
    "SSE_WEBHOOK_URL (--webhook-url): webhookUrl must be an http:// or https:// URL, e.g. http://127.0.0.1:3000/sse-notices",
  );
});
