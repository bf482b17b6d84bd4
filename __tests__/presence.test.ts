/**
 * Presence in one process: `router.presence()`, `POST /presence` (counts and
 * token errors), the optional token keys `sub` and `presence` in both payload
 * forms, and `sse:presence` events: exact JSON, at most one per second per
 * stream, coalesced, only for streams that asked.
 */
import { encode } from "@msgpack/msgpack";
import request from "supertest";
import { brancaEncode } from "../src/tokens/branca";
import { presenceToken, submitToken, subscribeToken } from "../src/tokens";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

const KEY = Buffer.from(SECRET, "hex");

let srv: TestServer;
const streams: RawStream[] = [];
beforeAll(async () => {
  srv = await startServer({ retry: 0, bodyLimit: 256 });
});
afterEach(() => {
  for (const s of streams.splice(0)) s.close();
});
afterAll(async () => {
  await srv.close();
});

async function open(token: string): Promise<RawStream> {
  const s = new RawStream(`${srv.base}/events?token=${token}`);
  streams.push(s);
  await s.until((t) => t.startsWith(":\n\n"));
  return s;
}

/** `sse:presence` events of a stream, with the time each was complete. */
function presenceLog(s: RawStream): Array<{ data: string; at: number }> {
  const log: Array<{ data: string; at: number }> = [];
  let seen = 0;
  const timer = setInterval(() => {
    const events = parseEvents(s.text).filter((e) => e.event === "sse:presence");
    for (; seen < events.length; seen++) log.push({ data: events[seen]!.data, at: Date.now() });
  }, 5);
  timer.unref();
  return log;
}

describe("presence counts", () => {
  test("router.presence() and POST /presence count this hub's subscribers per topic", async () => {
    await open(subscribeToken(SECRET, ["p1", "p2"]));
    await open(subscribeToken(SECRET, ["p1"]));
    await expect(srv.router.presence(["p1", "p2", "p3"])).resolves.toEqual({ p1: 2, p2: 1, p3: 0 });
    const res = await request(srv.server).post("/presence").set("Content-Type", "application/octet-stream").send(presenceToken(SECRET, ["p2", "p1", "__proto__"]));
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBe("*");
    expect(res.text).toBe('{"counts":{"p2":1,"p1":2,"__proto__":0}}');
  });

  test("a stream that ends leaves the counts", async () => {
    const s = await open(subscribeToken(SECRET, ["gone"]));
    await expect(srv.router.presence(["gone"])).resolves.toEqual({ gone: 1 });
    s.close();
    await eventually(() => srv.router.stats.subscribers === 0, 5000, "the stream to end");
    await expect(srv.router.presence(["gone"])).resolves.toEqual({ gone: 0 });
  });

  test("POST /presence token errors: 401 missing or bad, 400 bad shape, 413 too large", async () => {
    const post = (body: string) => request(srv.server).post("/presence").set("Content-Type", "application/octet-stream").send(body);
    const missing = await post("");
    expect([missing.status, missing.text]).toEqual([401, '{"error":"token_missing","message":"POST /presence needs a token as the request body"}']);
    const forged = await post(presenceToken("00".repeat(31) + "01", ["a"]));
    expect([forged.status, forged.body.error]).toEqual([401, "token_invalid"]);
    const shape = await post(brancaEncode(KEY, encode({ topics: "a" })));
    expect([shape.status, shape.text]).toEqual([400, '{"error":"payload_invalid","message":"presence query: topics must be an array of strings"}']);
    const empty = await post(brancaEncode(KEY, encode({ topics: [] })));
    expect([empty.status, empty.body.error]).toEqual([400, "payload_invalid"]);
    const big = await post(presenceToken(SECRET, ["x".repeat(400)]));
    expect([big.status, big.body.error]).toEqual([413, "payload_too_large"]);
    const get = await request(srv.server).get("/presence");
    expect([get.status, get.headers["allow"]]).toEqual([405, "POST, OPTIONS"]);
  });

  test("presence() rejects what is not a list of topic names", async () => {
    await expect(srv.router.presence("a" as unknown as string[])).rejects.toMatchObject({ code: "payload_invalid" });
  });
});

describe("subscribe token keys sub and presence", () => {
  test("positional form [topics, sub, presence] and map form are both read; bad types are 400", async () => {
    const positional = await open(brancaEncode(KEY, encode([["pos"], "alice", true])));
    await positional.until((t) => t.includes("event:sse:presence"));
    expect(positional.text).toBe(':\n\nevent:sse:presence\ndata:{"pos":1}\n\n');
    const badSub = await request(srv.server).get(`/events?token=${brancaEncode(KEY, encode({ topics: ["a"], sub: 5 }))}`);
    expect([badSub.status, badSub.body.error]).toEqual([400, "payload_invalid"]);
    const badPresence = await request(srv.server).get(`/events?token=${brancaEncode(KEY, encode({ topics: ["a"], presence: "yes" }))}`);
    expect([badPresence.status, badPresence.text]).toEqual([400, '{"error":"payload_invalid","message":"subscribe payload: presence must be a boolean"}']);
    // nil means absent, as older encoders write optional fields.
    const nil = await open(brancaEncode(KEY, encode({ topics: ["nil"], sub: null, presence: null })));
    expect(nil.status).toBe(200);
  });
});

describe("sse:presence events", () => {
  test("at most one per second per stream, coalesced, exact JSON of the stream's topics; none without presence: true", async () => {
    const watcher = await open(subscribeToken(SECRET, ["room", "lobby"], { sub: "w", presence: true }));
    const plain = await open(subscribeToken(SECRET, ["room"]));
    const log = presenceLog(watcher);
    // The watcher counts itself: it is a subscriber of both topics.
    await watcher.until((t) => t.includes('data:{"room":2,"lobby":1}'));

    // 20 joins at once: coalesced into one or two events (a tick may fall inside the burst), never 20.
    await Promise.all(Array.from({ length: 20 }, () => open(subscribeToken(SECRET, ["room"]))));
    await eventually(() => log.some((e) => e.data === '{"room":22,"lobby":1}'), 5000, "the count after the burst");
    const afterBurst = log.length;
    expect(afterBurst).toBeGreaterThanOrEqual(2);
    expect(afterBurst).toBeLessThanOrEqual(4);

    // One leaves, one joins lobby: one more event with both counts.
    streams[2]!.close();
    await open(subscribeToken(SECRET, ["lobby"]));
    await eventually(() => log.some((e) => e.data === '{"room":21,"lobby":2}'), 5000, "the count after a leave and a join");

    const gaps = log.slice(1).map((e, i) => e.at - log[i]!.at);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(900);
    // Unchanged counts are never sent twice in a row.
    const data = log.map((e) => e.data);
    for (let i = 1; i < data.length; i++) expect(data[i]).not.toBe(data[i - 1]);

    // The plain stream got none: proven by order, with a marker event after everything.
    await request(srv.server).post("/submit").send(submitToken(SECRET, [{ topic: "room", event: "end", data: "" }]));
    await plain.until((t) => t.includes("event:end"));
    expect(parseEvents(plain.text).map((e) => e.event)).toEqual(["end"]);
  });
});
