/**
 * Token expiry on live streams (issue 13), on the wire with exact bytes:
 * `sse:expiring` (no id) before expiry, the end of the stream at expiry
 * (reason `expired` in stats and /metrics), 401 for the expired token on
 * reconnect, and `tokenTtl: 0` never ending a stream.
 */
import { encode } from "@msgpack/msgpack";
import { brancaEncode } from "../src/tokens/branca";
import { parseSecret } from "../src/options";
import { RawStream, SECRET, parseEvents, startServer, type TestServer } from "./helpers/sse";

const TTL = 3;
let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ retry: 0, heartbeatInterval: 0, tokenTtl: TTL, expiryNotice: 1, metrics: true });
});
afterAll(async () => {
  await srv.close();
});

/** A token minted at `timestamp` (unix s); with the router's TTL it is refused from `(timestamp + TTL + 1) * 1000`. */
function tokenAt(timestamp: number, topics: string[]): string {
  return brancaEncode(parseSecret(SECRET), encode({ topics }), { timestamp });
}

const nowS = () => Math.floor(Date.now() / 1000);
const expiring = (at: number) => `event:sse:expiring\ndata:{"expiresAt":${at}}\n\n`;

test("sse:expiring comes expiryNotice before expiry, events flow, the stream ends at expiry; the token then gets 401", async () => {
  const topic = `exp-${Math.random()}`;
  const ts = nowS();
  const expiresAt = (ts + TTL + 1) * 1000;
  const token = tokenAt(ts, [topic]);
  const before = srv.router.stats.disconnects.expired;
  const s = new RawStream(`${srv.base}/events?token=${token}`);
  await s.until((t) => t === ":\n\n");
  await srv.router.publish([{ topic, event: "n", data: "1" }]);
  await s.until((t) => parseEvents(t).length === 1);

  await s.until((t) => t.includes("sse:expiring"), 10_000);
  // Never early: the notice is due at expiresAt - 1 s.
  expect(Date.now()).toBeGreaterThanOrEqual(expiresAt - 1000);
  await srv.router.publish([{ topic, event: "n", data: "2" }]);
  await s.closed(10_000);
  expect(Date.now()).toBeGreaterThanOrEqual(expiresAt);
  const ids = parseEvents(s.text).filter((e) => e.event === "n").map((e) => e.id!);
  expect(s.text).toBe(
    `:\n\nevent:n\ndata:1\nid:${ids[0]}\n\n` + expiring(expiresAt) + `event:n\ndata:2\nid:${ids[1]}\n\n`,
  );
  expect(srv.router.stats.disconnects.expired).toBe(before + 1);

  // The browser would reconnect with the same URL: the token is expired now.
  const again = await fetch(`${srv.base}/events?token=${token}&lastEventId=${ids[1]}`);
  expect(again.status).toBe(401);
  expect(await again.text()).toBe('{"error":"token_invalid","message":"token has expired"}');

  const metrics = await (await fetch(`${srv.base}/metrics`)).text();
  expect(metrics).toContain(`sse_disconnects_total{reason="expired"} ${before + 1}\n`);
}, 20_000);

test("less than expiryNotice left: sse:expiring at once (after the heartbeat), then the end", async () => {
  const other = await startServer({ retry: 0, heartbeatInterval: 0, tokenTtl: TTL, expiryNotice: 60 });
  try {
    const ts = nowS();
    const s = new RawStream(`${other.base}/events?token=${tokenAt(ts, ["t"])}`);
    await s.until((t) => t.length > 3);
    expect(s.text).toBe(":\n\n" + expiring((ts + TTL + 1) * 1000));
    await s.closed(10_000);
    expect(s.text).toBe(":\n\n" + expiring((ts + TTL + 1) * 1000));
  } finally {
    await other.close();
  }
}, 20_000);

test("expiryNotice 0: no notice, the stream still ends at expiry", async () => {
  const other = await startServer({ retry: 0, heartbeatInterval: 0, tokenTtl: 1, expiryNotice: 0 });
  try {
    const ts = nowS();
    const s = new RawStream(`${other.base}/events?token=${tokenAt(ts, ["t"])}`);
    await s.closed(10_000);
    expect(Date.now()).toBeGreaterThanOrEqual((ts + 2) * 1000);
    expect(s.text).toBe(":\n\n");
    expect(other.router.stats.disconnects.expired).toBe(1);
  } finally {
    await other.close();
  }
});

test("tokenTtl 0: an old token is accepted and its stream never gets a notice or ends", async () => {
  const other = await startServer({ retry: 0, heartbeatInterval: 0, tokenTtl: 0, expiryNotice: 5 });
  try {
    const s = new RawStream(`${other.base}/events?token=${tokenAt(1, ["t"])}`);
    await s.until((t) => t === ":\n\n");
    await other.router.publish([{ topic: "t", event: "n", data: "x" }]);
    await s.until((t) => parseEvents(t).length === 1);
    expect(s.text).toMatch(/^:\n\nevent:n\ndata:x\nid:[^\n]+\n\n$/);
    expect(s.ended).toBe(false);
    s.close();
  } finally {
    await other.close();
  }
});

test("expiryNotice is validated", async () => {
  await expect(startServer({ expiryNotice: -1 })).rejects.toMatchObject({ code: "invalid_option", message: "expiryNotice must be an integer between 0 and 2000000; got -1" });
  await expect(startServer({ expiryNotice: 1.5 as number })).rejects.toMatchObject({ code: "invalid_option" });
});

test("no timer per stream: 30 streams with different expiries add at most one timer", async () => {
  const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;
  const other = await startServer({ retry: 0, heartbeatInterval: 0, tokenTtl: 600, expiryNotice: 1 });
  try {
    const base = timers();
    const streams = Array.from({ length: 30 }, (_, i) => new RawStream(`${other.base}/events?token=${tokenAt(nowS() - i * 10, ["t"])}`));
    for (const s of streams) await s.until((t) => t === ":\n\n");
    expect(other.router.stats.subscribers).toBe(30);
    expect(timers() - base).toBeLessThanOrEqual(1);
    for (const s of streams) s.close();
  } finally {
    await other.close();
  }
});
