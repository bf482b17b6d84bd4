/**
 * Options that shape the HTTP surface, against a real listening server:
 * where tokens come from (query, Bearer, cookie) and in which order, CORS
 * policies, payload limits with clear 4xx, opt-in /health and /metrics, and
 * validation of every option at construction time.
 */
import request from "supertest";
import { createSseRouter } from "../src/adapters/express";
import { MemoryBroker } from "../src/brokers/broker";
import { SseError } from "../src/errors";
import type { SseRouterOptions } from "../src/options";
import { submitToken, subscribeToken, type EventInput } from "../src/tokens";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

const COOKIE = "sse_token";

async function expectError(res: request.Response, status: number, code: string, message?: RegExp): Promise<void> {
  expect({ status: res.status, error: res.body?.error }).toEqual({ status, error: code });
  expect(res.headers["content-type"]).toMatch(/^application\/json/);
  expect(typeof res.body.message).toBe("string");
  if (message) expect(res.body.message).toMatch(message);
}

/** Opens a stream and waits for its first heartbeat. */
async function open(url: string, headers: Record<string, string> = {}): Promise<RawStream> {
  const s = new RawStream(url, headers);
  await s.opened;
  expect(s.status).toBe(200);
  await s.until((t) => t.startsWith(":\n\n"));
  return s;
}

describe("where the subscribe token comes from", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0, tokenCookie: COOKIE });
  });
  afterAll(async () => {
    await srv.close();
  });

  /** Publishes one event to each topic and returns, per stream, which topics it got. */
  async function topicsReceived(streams: RawStream[], topics: string[]): Promise<string[][]> {
    await srv.router.publish(topics.map((topic) => ({ topic, event: "which", data: topic })));
    await srv.router.publish([{ topic: "__end", event: "end", data: "" }]);
    // Every stream below also subscribes "__end", so it marks the end of the batch.
    await Promise.all(streams.map((s) => s.until((t) => t.includes("event:end"))));
    return streams.map((s) => parseEvents(s.text).filter((e) => e.event === "which").map((e) => e.data));
  }

  test("Authorization: Bearer (any case, extra spaces)", async () => {
    const a = await open(`${srv.base}/events`, { Authorization: `Bearer ${subscribeToken(SECRET, ["bearer-a", "__end"])}` });
    const b = await open(`${srv.base}/events`, { Authorization: `bearer    ${subscribeToken(SECRET, ["bearer-b", "__end"])}  ` });
    expect(await topicsReceived([a, b], ["bearer-a", "bearer-b"])).toEqual([["bearer-a"], ["bearer-b"]]);
    a.close();
    b.close();
  });

  test("other Authorization schemes are not tokens: 401 token_missing", async () => {
    await expectError(await request(srv.server).get("/events").set("Authorization", "Basic dXNlcjpwYXNz"), 401, "token_missing");
    await expectError(await request(srv.server).get("/events").set("Authorization", "Bearer"), 401, "token_missing");
    await expectError(await request(srv.server).get("/events").set("Authorization", "Bearer not-a-token"), 401, "token_invalid");
  });

  test("the configured cookie, among others, plain or quoted", async () => {
    const plain = await open(`${srv.base}/events`, { Cookie: `a=1; ${COOKIE}=${subscribeToken(SECRET, ["cookie-a", "__end"])}; b=2` });
    const quoted = await open(`${srv.base}/events`, { Cookie: `${COOKIE}="${subscribeToken(SECRET, ["cookie-b", "__end"])}"` });
    expect(await topicsReceived([plain, quoted], ["cookie-a", "cookie-b"])).toEqual([["cookie-a"], ["cookie-b"]]);
    plain.close();
    quoted.close();
  });

  test("a cookie of another name is not read: 401 token_missing", async () => {
    await expectError(
      await request(srv.server).get("/events").set("Cookie", `other_token=${subscribeToken(SECRET, ["x"])}`),
      401,
      "token_missing",
    );
    await expectError(await request(srv.server).get("/events").set("Cookie", `${COOKIE}=`), 401, "token_missing");
  });

  test("cookies are not read unless tokenCookie is set", async () => {
    const plain = await startServer({ retry: 0 });
    try {
      await expectError(
        await request(plain.server).get("/events").set("Cookie", `${COOKIE}=${subscribeToken(SECRET, ["x"])}`),
        401,
        "token_missing",
        /token/,
      );
    } finally {
      await plain.close();
    }
  });

  test("precedence: ?token= first, then Bearer, then cookie", async () => {
    const q = subscribeToken(SECRET, ["from-query", "__end"]);
    const b = subscribeToken(SECRET, ["from-bearer", "__end"]);
    const c = subscribeToken(SECRET, ["from-cookie", "__end"]);
    const all = await open(`${srv.base}/events?token=${q}`, { Authorization: `Bearer ${b}`, Cookie: `${COOKIE}=${c}` });
    const noQuery = await open(`${srv.base}/events`, { Authorization: `Bearer ${b}`, Cookie: `${COOKIE}=${c}` });
    const emptyQuery = await open(`${srv.base}/events?token=`, { Authorization: `Bearer ${b}` });
    const cookieOnly = await open(`${srv.base}/events`, { Authorization: "Basic eDp5", Cookie: `${COOKIE}=${c}` });
    expect(await topicsReceived([all, noQuery, emptyQuery, cookieOnly], ["from-query", "from-bearer", "from-cookie"])).toEqual([
      ["from-query"],
      ["from-bearer"],
      ["from-bearer"],
      ["from-cookie"],
    ]);
    for (const s of [all, noQuery, emptyQuery, cookieOnly]) s.close();
  });

  test("a bad token in a higher place is not skipped for a good one lower down: 401", async () => {
    const good = subscribeToken(SECRET, ["x"]);
    await expectError(await request(srv.server).get("/events?token=garbage").set("Authorization", `Bearer ${good}`), 401, "token_invalid");
    await expectError(
      await request(srv.server).get("/events").set("Authorization", "Bearer garbage").set("Cookie", `${COOKIE}=${good}`),
      401,
      "token_invalid",
    );
  });
});

describe("CORS", () => {
  const A = "https://a.example";
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0, cors: [A, "https://b.example"] });
  });
  afterAll(async () => {
    await srv.close();
  });

  function vary(res: { headers: Record<string, unknown> }): string[] {
    return String(res.headers["vary"] ?? "")
      .split(",")
      .map((v) => v.trim().toLowerCase())
      .filter(Boolean);
  }

  test("allowlist: an allowed origin gets itself back, credentials allowed, Vary: Origin", async () => {
    const res = await request(srv.server).get("/ping").set("Origin", A);
    expect(res.status).toBe(200);
    expect(res.headers["access-control-allow-origin"]).toBe(A);
    expect(res.headers["access-control-allow-credentials"]).toBe("true");
    expect(vary(res)).toContain("origin");
  });

  test("allowlist: the event stream and error answers carry the same headers", async () => {
    const s = await open(`${srv.base}/events?token=${subscribeToken(SECRET, ["cors"])}`, { Origin: A });
    expect(s.headers["access-control-allow-origin"]).toBe(A);
    expect(s.headers["access-control-allow-credentials"]).toBe("true");
    expect(vary(s)).toContain("origin");
    s.close();
    // So a browser can read the JSON error of a bad token or an oversize body.
    const unauthorized = await request(srv.server).get("/events").set("Origin", A);
    expect(unauthorized.status).toBe(401);
    expect(unauthorized.headers["access-control-allow-origin"]).toBe(A);
    const tooLarge = await request(srv.server).post("/submit").set("Origin", A).send("x".repeat(9000));
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.headers["access-control-allow-origin"]).toBe(A);
  });

  test("allowlist: other origins, and requests without Origin, get no Access-Control-Allow-Origin", async () => {
    for (const origin of ["https://c.example", "https://a.example.evil", "http://a.example", "null", undefined]) {
      const req = request(srv.server).get("/ping");
      const res = origin === undefined ? await req : await req.set("Origin", origin);
      expect(res.status).toBe(200);
      expect(res.headers["access-control-allow-origin"]).toBeUndefined();
      expect(res.headers["access-control-allow-credentials"]).toBeUndefined();
      // Caches must still key on Origin: the answer differs per origin.
      expect(vary(res)).toContain("origin");
    }
  });

  test("allowlist: Vary set by the host app is kept, Origin added", async () => {
    const app = await startServer({ cors: [A] }, "/", (a) =>
      a.use((_req, res, next) => {
        res.setHeader("Vary", "Accept-Language");
        next();
      }),
    );
    try {
      const res = await request(app.server).get("/ping").set("Origin", A);
      expect(vary(res)).toEqual(expect.arrayContaining(["accept-language", "origin"]));
    } finally {
      await app.close();
    }
  });

  test("preflight from an allowed origin: 204, methods, every header the library reads, max-age", async () => {
    for (const [path, method, headers] of [
      ["/events", "GET", "authorization, last-event-id, cache-control"],
      ["/submit", "POST", "content-type"],
      ["/events", "GET", "Authorization,Last-Event-ID"],
    ] as const) {
      const res = await request(srv.server)
        .options(path)
        .set("Origin", A)
        .set("Access-Control-Request-Method", method)
        .set("Access-Control-Request-Headers", headers);
      expect(res.status).toBe(204);
      expect(res.headers["access-control-allow-origin"]).toBe(A);
      expect(res.headers["access-control-allow-credentials"]).toBe("true");
      const methods = String(res.headers["access-control-allow-methods"]).split(/\s*,\s*/);
      expect(methods).toContain(method);
      const allowed = String(res.headers["access-control-allow-headers"]).toLowerCase().split(/\s*,\s*/);
      for (const h of headers.toLowerCase().split(/\s*,\s*/)) expect(allowed).toContain(h);
      expect(Number(res.headers["access-control-max-age"])).toBeGreaterThan(0);
    }
  });

  test("preflight from another origin: no Access-Control-Allow-* at all", async () => {
    const res = await request(srv.server)
      .options("/events")
      .set("Origin", "https://c.example")
      .set("Access-Control-Request-Method", "GET")
      .set("Access-Control-Request-Headers", "authorization");
    expect(res.status).toBe(204);
    expect(Object.keys(res.headers).filter((h) => h.startsWith("access-control-"))).toEqual([]);
  });

  test('default "*": any origin, never with credentials', async () => {
    const star = await startServer();
    try {
      const res = await request(star.server).get("/ping").set("Origin", "https://anything.example");
      expect(res.headers["access-control-allow-origin"]).toBe("*");
      expect(res.headers["access-control-allow-credentials"]).toBeUndefined();
    } finally {
      await star.close();
    }
  });

  test("cors: false sends no CORS headers anywhere: stream, ping, errors, preflight", async () => {
    const off = await startServer({ retry: 0, cors: false });
    try {
      const s = await open(`${off.base}/events?token=${subscribeToken(SECRET, ["nocors"])}`, { Origin: A });
      const answers = [
        s,
        await request(off.server).get("/ping").set("Origin", A),
        await request(off.server).get("/events").set("Origin", A),
        await request(off.server).post("/submit").set("Origin", A).send("garbage"),
        await request(off.server).delete("/events").set("Origin", A),
        await request(off.server)
          .options("/events")
          .set("Origin", A)
          .set("Access-Control-Request-Method", "GET")
          .set("Access-Control-Request-Headers", "authorization"),
      ];
      expect(answers.map((r) => ("status" in r ? r.status : 0))).toEqual([200, 200, 401, 401, 405, 204]);
      for (const r of answers) {
        expect(Object.keys(r.headers).filter((h) => h.startsWith("access-control-"))).toEqual([]);
        expect(vary(r)).not.toContain("origin");
      }
      s.close();
    } finally {
      await off.close();
    }
  });
});

describe("payload limits give clear 4xx", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0, maxTopics: 3, maxTopicLength: 10, maxEventsPerSubmit: 5, maxEventNameLength: 8, bodyLimit: 2048 });
  });
  afterAll(async () => {
    await srv.close();
  });

  const sub = (topics: string[]) => request(srv.server).get(`/events?token=${subscribeToken(SECRET, topics)}`);
  const submit = (events: EventInput[]) => request(srv.server).post("/submit").send(submitToken(SECRET, events));
  const ev = (topic: string, event = "e"): EventInput => ({ topic, event, data: "" });

  /** A subscribe request that is accepted opens a stream; check the status and close it. */
  async function accepted(topics: string[]): Promise<void> {
    const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, topics)}`);
    await s.opened;
    expect(s.status).toBe(200);
    s.close();
  }

  test("topics per token (maxTopics), counted after merging duplicates", async () => {
    await accepted(["a", "b", "c"]);
    await accepted(["a", "b", "c", "a", "b", "c"]);
    await expectError(await sub(["a", "b", "c", "d"]), 400, "payload_invalid", /4 topics.*at most 3/);
  });

  test("topic length (maxTopicLength), in UTF-16 code units", async () => {
    await accepted(["x".repeat(10)]);
    await accepted(["é".repeat(10)]);
    await accepted(["🎉".repeat(5)]);
    await expectError(await sub(["x".repeat(11)]), 400, "payload_invalid", /topic is longer than 10/);
    await expectError(await sub(["🎉".repeat(6)]), 400, "payload_invalid", /longer than 10/);
    await expectError(await submit([ev("x".repeat(11))]), 400, "payload_invalid", /topic is longer than 10/);
  });

  test("events per submit (maxEventsPerSubmit); a rejected submit delivers nothing", async () => {
    const s = await open(`${srv.base}/events?token=${subscribeToken(SECRET, ["lim"])}`);
    await expectError(await submit(Array.from({ length: 6 }, () => ev("lim"))), 400, "payload_invalid", /6 events.*at most 5/);
    expect((await submit(Array.from({ length: 5 }, () => ev("lim")))).status).toBe(200);
    expect((await submit([{ topic: "lim", event: "end", data: "" }])).status).toBe(200);
    // The marker comes after the rejected submit: had it delivered anything, it would show before.
    await s.until((t) => t.includes("event:end\n"));
    expect(parseEvents(s.text).filter((e) => e.event !== "end")).toHaveLength(5);
    s.close();
  });

  test("event name length (maxEventNameLength)", async () => {
    expect((await submit([ev("t", "12345678")])).status).toBe(200);
    await expectError(await submit([ev("t", "123456789")]), 400, "payload_invalid", /event is longer than 8/);
  });

  test("NUL in topics and event names", async () => {
    await expectError(await sub(["a\0b"]), 400, "payload_invalid", /NUL/);
    await expectError(await submit([ev("a\0b")]), 400, "payload_invalid", /NUL/);
    await expectError(await submit([ev("t", "a\0")]), 400, "payload_invalid", /NUL/);
    // NUL in data is just data.
    expect((await submit([{ topic: "t", event: "e", data: "a\0b" }])).status).toBe(200);
  });

  test("bodyLimit: 413 payload_too_large", async () => {
    await expectError(await request(srv.server).post("/submit").send("A".repeat(2049)), 413, "payload_too_large");
  });

  test("publish() applies the same limits and throws SseError payload_invalid", async () => {
    await expect(srv.router.publish(Array.from({ length: 6 }, () => ev("t")))).rejects.toMatchObject({ code: "payload_invalid" });
    await expect(srv.router.publish([ev("x".repeat(11))])).rejects.toBeInstanceOf(SseError);
    await expect(srv.router.publish([ev("t", "a\0")])).rejects.toMatchObject({ code: "payload_invalid" });
    // Any JSON value is fine as data (see input-edges.test.ts); what JSON cannot hold is not.
    await expect(srv.router.publish([{ topic: "t", event: "e", data: 5n } as unknown as EventInput])).rejects.toMatchObject({
      code: "payload_invalid",
    });
    await expect(srv.router.publish([{ topic: "t", event: "e" } as unknown as EventInput])).rejects.toMatchObject({
      code: "payload_invalid",
    });
  });
});

describe("/health and /metrics", () => {
  test("/health is off by default: the path falls through to the host app", async () => {
    const srv = await startServer();
    try {
      expect((await request(srv.server).get("/health")).status).toBe(404);
      expect((await request(srv.server).get("/metrics")).status).toBe(404);
      srv.app.get("/health", (_req, res) => {
        res.type("text/plain").send("host app");
      });
      const res = await request(srv.server).get("/health");
      expect({ status: res.status, text: res.text }).toEqual({ status: 200, text: "host app" });
    } finally {
      await srv.close();
    }
  });

  test("/health (opt-in): JSON stats; 503 once closed", async () => {
    const srv = await startServer({ retry: 0, health: true }, "/sse");
    try {
      const s = await open(`${srv.base}/events?token=${subscribeToken(SECRET, ["h1", "h2"])}`);
      await srv.router.publish([{ topic: "h1", event: "e", data: "" }]);
      await s.until((t) => t.includes("event:e"));
      const res = await request(srv.server).get("/sse/health");
      expect(res.status).toBe(200);
      expect(res.headers["content-type"]).toMatch(/^application\/json/);
      expect(res.headers["access-control-allow-origin"]).toBe("*");
      expect(res.body).toEqual({
        status: "ok",
        broker: "ready",
        subscribers: 1,
        topics: 2,
        eventsPublished: 1,
        eventsDelivered: 1,
        replays: 0,
        resets: 0,
        brokerResets: 0,
        disconnects: { client: 0, slow: 0, shutdown: 0, broker: 0, expired: 0 },
        // Admission control (issue 14).
        shed: { connections: 0, subject: 0, rate: 0, hook_timeout: 0, tokens: 0 },
        refused: 0,
      });
      expect((await request(srv.server).post("/sse/health")).status).toBe(405);
      await srv.router.close();
      const closed = await request(srv.server).get("/sse/health");
      expect(closed.status).toBe(503);
      expect(closed.body).toMatchObject({ status: "closing", broker: "unavailable", subscribers: 0, disconnects: { shutdown: 1 } });
      s.close();
    } finally {
      await srv.close();
    }
  });

  test("/metrics (opt-in): Prometheus text with subscribers, events published, disconnects by reason", async () => {
    const srv = await startServer({ retry: 0, metrics: true });
    try {
      const metrics = async (): Promise<Map<string, number>> => {
        const res = await request(srv.server).get("/metrics");
        expect(res.status).toBe(200);
        expect(res.headers["content-type"]).toMatch(/^text\/plain; version=0\.0\.4/);
        const values = new Map<string, number>();
        const typed = new Set<string>();
        for (const line of res.text.split("\n")) {
          if (line === "") continue;
          const meta = /^# (HELP|TYPE) ([a-z_]+) (.+)$/.exec(line);
          if (meta) {
            if (meta[1] === "TYPE") {
              expect(meta[3]).toMatch(/^(gauge|counter)$/);
              if (meta[3] === "counter") expect(meta[2]).toMatch(/_total$/);
              typed.add(meta[2]!);
            }
            continue;
          }
          const sample = /^([a-z_]+)(\{[a-z]+="[a-z_]+"\})? ([0-9]+)$/.exec(line);
          expect({ line, ok: sample !== null }).toEqual({ line, ok: true });
          expect(typed).toContain(sample![1]);
          values.set(sample![1]! + (sample![2] ?? ""), Number(sample![3]));
        }
        expect(res.text.endsWith("\n")).toBe(true);
        return values;
      };
      const before = await metrics();
      expect(before.get("sse_subscribers")).toBe(0);
      expect(before.get("sse_events_published_total")).toBe(0);
      for (const reason of ["client", "slow", "shutdown", "broker", "expired"]) expect(before.get(`sse_disconnects_total{reason="${reason}"}`)).toBe(0);
      expect(before.get("sse_broker_resets_total")).toBe(0);
      // The in-memory broker is always ready: one series per state, 1 for the current one.
      expect([before.get('sse_broker_state{state="ready"}'), before.get('sse_broker_state{state="catching_up"}'), before.get('sse_broker_state{state="unavailable"}')]).toEqual([1, 0, 0]);

      const a = await open(`${srv.base}/events?token=${subscribeToken(SECRET, ["m"])}`);
      const b = await open(`${srv.base}/events?token=${subscribeToken(SECRET, ["m"])}`);
      await srv.router.publish([
        { topic: "m", event: "e", data: "1" },
        { topic: "m", event: "e", data: "2" },
        { topic: "nobody", event: "e", data: "3" },
      ]);
      await a.until((t) => parseEvents(t).length === 2);
      await b.until((t) => parseEvents(t).length === 2);
      const during = await metrics();
      expect(during.get("sse_subscribers")).toBe(2);
      expect(during.get("sse_events_published_total")).toBe(3);
      expect(during.get("sse_events_delivered_total")).toBe(4);

      a.close();
      await eventually(() => srv.router.stats.disconnects.client === 1, 5000, "client disconnect");
      const after = await metrics();
      expect(after.get("sse_subscribers")).toBe(1);
      expect(after.get('sse_disconnects_total{reason="client"}')).toBe(1);
      b.close();
    } finally {
      await srv.close();
    }
  });
});

describe("option validation: every bad option throws SseError invalid_option with a clear message", () => {
  const hex = SECRET;
  const cases: Array<[string, unknown, RegExp]> = [
    ["no options", undefined, /options/],
    ["null options", null, /options/],
    ["missing secret", {}, /secret is required/],
    ["numeric secret", { secret: 42 }, /secret is required/],
    ["short hex secret", { secret: "abc" }, /64 hex characters.*got 3 characters/],
    ["63 hex characters", { secret: hex.slice(1) }, /64 hex.*got 63/],
    ["65 hex characters", { secret: hex + "0" }, /64 hex.*got 65/],
    ["64 non-hex characters", { secret: "g".repeat(64) }, /non-hex/],
    ["hex secret with spaces", { secret: ` ${hex} ` }, /64 hex/],
    ["31-byte buffer", { secret: Buffer.alloc(31, 1) }, /32 bytes; got 31/],
    ["33-byte Uint8Array", { secret: new Uint8Array(33) }, /32 bytes; got 33/],
    ["negative tokenTtl", { secret: hex, tokenTtl: -1 }, /tokenTtl must be an integer/],
    ["fractional tokenTtl", { secret: hex, tokenTtl: 1.5 }, /tokenTtl/],
    ["non-integer heartbeatInterval", { secret: hex, heartbeatInterval: 1.5 }, /heartbeatInterval must be an integer/],
    ["negative heartbeatInterval", { secret: hex, heartbeatInterval: -1 }, /heartbeatInterval/],
    ["heartbeatInterval beyond setInterval's range", { secret: hex, heartbeatInterval: 2 ** 31 }, /heartbeatInterval/],
    ["heartbeatInterval as a string", { secret: hex, heartbeatInterval: "30000" }, /heartbeatInterval/],
    ["NaN bodyLimit", { secret: hex, bodyLimit: NaN }, /bodyLimit/],
    ["bodyLimit 0", { secret: hex, bodyLimit: 0 }, /bodyLimit/],
    ["Infinity retry", { secret: hex, retry: Infinity }, /retry/],
    ["negative tokenClockSkew", { secret: hex, tokenClockSkew: -1 }, /tokenClockSkew must be an integer/],
    ["fractional tokenClockSkew", { secret: hex, tokenClockSkew: 0.5 }, /tokenClockSkew/],
    ["tokenClockSkew as a string", { secret: hex, tokenClockSkew: "60" }, /tokenClockSkew/],
    ["maxTopics 0", { secret: hex, maxTopics: 0 }, /maxTopics/],
    ["maxSubscribeTokenLength below 64", { secret: hex, maxSubscribeTokenLength: 63 }, /maxSubscribeTokenLength must be an integer >= 64/],
    ["maxSubscribeTokenLength as a string", { secret: hex, maxSubscribeTokenLength: "4096" }, /maxSubscribeTokenLength/],
    ["tiny maxBufferBytes", { secret: hex, maxBufferBytes: 10 }, /maxBufferBytes/],
    ["negative historyBytes", { secret: hex, historyBytes: -1 }, /historyBytes/],
    ["idempotencyWindow not an integer", { secret: hex, idempotencyWindow: 1.5 }, /idempotencyWindow must be an integer >= 0/],
    ["cors as a single origin string", { secret: hex, cors: "https://a.example" }, /cors must be/],
    ["cors true", { secret: hex, cors: true }, /cors must be/],
    ["cors null", { secret: hex, cors: null }, /cors must be/],
    ['cors ["*"]', { secret: hex, cors: ["*"] }, /cors must be/],
    ["cors with an empty origin", { secret: hex, cors: [""] }, /cors must be/],
    ["cors with a non-string", { secret: hex, cors: [42] }, /cors must be/],
    ["empty tokenCookie", { secret: hex, tokenCookie: "" }, /tokenCookie must be a valid cookie name/],
    ["tokenCookie with a space", { secret: hex, tokenCookie: "sse token" }, /tokenCookie/],
    ["tokenCookie with ;", { secret: hex, tokenCookie: "a;b" }, /tokenCookie/],
    ["tokenCookie with =", { secret: hex, tokenCookie: "a=b" }, /tokenCookie/],
    ["tokenCookie not a string", { secret: hex, tokenCookie: 5 }, /tokenCookie/],
    ["broker without publish", { secret: hex, broker: {} }, /broker/],
    ["health not a boolean", { secret: hex, health: "yes" }, /health must be a boolean/],
    ["metrics not a boolean", { secret: hex, metrics: 1 }, /metrics must be a boolean/],
    ["a misspelt key (tokenTTL)", { secret: hex, tokenTTL: 60 }, /unknown option "tokenTTL"; did you mean "tokenTtl"\?/],
    ["an unknown key", { secret: hex, port: 8000 }, /unknown option "port" \(known: secret, tokenTtl/],
    ["history options beside a broker", { secret: hex, broker: new MemoryBroker(), historyBytes: 1024 }, /historyBytes and historyAge configure the built-in/],
  ];
  test.each(cases)("%s", (_name, options, message) => {
    let thrown: unknown;
    try {
      createSseRouter(options as SseRouterOptions);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(SseError);
    expect((thrown as SseError).code).toBe("invalid_option");
    expect((thrown as SseError).message).toMatch(message);
  });

  test.each<[string, () => unknown, RegExp]>([
    ["MemoryBroker with a misspelt key", () => new MemoryBroker({ historybytes: 1 } as never), /MemoryBroker: unknown option "historybytes"; did you mean "historyBytes"/],
    ["MemoryBroker with a negative historyAge", () => new MemoryBroker({ historyAge: -5 }), /historyAge must be an integer >= 0/],
  ])("%s", (_name, make, message) => {
    expect(make).toThrow(message);
  });

  test("the message never echoes the secret", () => {
    const almost = hex.slice(0, 63) + "z";
    expect(() => createSseRouter({ secret: almost })).toThrow(SseError);
    try {
      createSseRouter({ secret: almost });
    } catch (err) {
      expect((err as Error).message).not.toContain(almost.slice(0, 16));
    }
  });

  test("good options construct a working router", async () => {
    const ok = createSseRouter({
      secret: Buffer.from(hex, "hex"),
      tokenTtl: 0,
      heartbeatInterval: 0,
      cors: ["https://a.example"],
      tokenCookie: "__Host-sse",
      health: true,
      metrics: false,
    });
    expect(ok.stats.subscribers).toBe(0);
    await ok.close();
  });
});
