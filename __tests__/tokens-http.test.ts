/**
 * Tokens over HTTP: tokens minted by an independent implementation (Python,
 * Debian's PyNaCl + msgpack, as the original's backends do) are accepted in
 * map and positional-array form; each kind of bad token gets its documented
 * 4xx; /submit limits and shapes.
 */
import { execFileSync } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { encode } from "@msgpack/msgpack";
import request from "supertest";
import { brancaEncode } from "../src/tokens/branca";
import { submitToken, subscribeToken } from "../src/tokens";
import { RawStream, SECRET, parseEvents, startServer, type TestServer } from "./helpers/sse";

const TOOL = path.join(__dirname, "fixtures", "branca_tool.py");
const KEY = Buffer.from(SECRET, "hex");
const OTHER_SECRET = "00".repeat(31) + "01";

function python(...args: string[]): string {
  return execFileSync("/usr/bin/python3", [TOOL, ...args], { encoding: "utf8" }).trim();
}

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ retry: 0 });
});
afterAll(async () => {
  await srv.close();
});

/**
 * GET that never waits on an open event stream (a 200 is closed at once), so
 * a token wrongly accepted fails the test instead of hanging it.
 */
function getOnce(url: string): Promise<{ status: number; body: { error?: string; message?: string } }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      if (res.statusCode === 200) {
        req.destroy();
        resolve({ status: 200, body: {} });
        return;
      }
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on("error", reject);
  });
}

async function expectError(res: { status: number; body: { error?: string; message?: string } }, status: number, code: string): Promise<void> {
  expect({ status: res.status, error: res.body?.error }).toEqual({ status, error: code });
  expect(typeof res.body.message).toBe("string");
}

describe("tokens from an independent Python implementation", () => {
  test.each([
    ["map form", [] as string[]],
    ["positional-array form", ["--array"]],
  ])("subscribe and submit in %s", async (_name, flags) => {
    const sub = python("encode", SECRET, JSON.stringify({ topics: ["py", "py2"] }), ...flags);
    const s = new RawStream(`${srv.base}/events?token=${sub}`);
    await s.until((t) => t === ":\n\n");
    const body = python(
      "encode",
      SECRET,
      JSON.stringify({
        events: [
          { topic: "py", event: "weather-update", data: "" },
          { topic: "nope", event: "x", data: "y" },
          { topic: "py2", event: "news", data: "line1\nline2" },
        ],
      }),
      ...flags,
    );
    const res = await request(srv.server).post("/submit").set("Content-Type", "application/octet-stream").send(body);
    expect(res.status).toBe(200);
    await s.until((t) => t.includes("event:news"));
    expect(parseEvents(s.text).map(({ event, data }) => ({ event, data }))).toEqual([
      { event: "weather-update", data: "" },
      { event: "news", data: "line1\nline2" },
    ]);
    s.close();
  });

  test("unknown keys in the payload are ignored", async () => {
    const sub = python("encode", SECRET, JSON.stringify({ topics: ["extra"], user: 42, admin: true }));
    const s = new RawStream(`${srv.base}/events?token=${sub}`);
    await s.opened;
    expect(s.status).toBe(200);
    const body = python(
      "encode",
      SECRET,
      JSON.stringify({ events: [{ topic: "extra", event: "e", data: "d", priority: 5 }], trace: "x" }),
    );
    expect((await request(srv.server).post("/submit").send(body)).status).toBe(200);
    await s.until((t) => t.includes("event:e"));
    s.close();
  });

  test("our tokens decode with the Python implementation", () => {
    const decoded = JSON.parse(python("decode", SECRET, subscribeToken(SECRET, ["a", "b"])));
    expect(decoded.payload).toEqual({ topics: ["a", "b"] });
    expect(Math.abs(decoded.timestamp - Date.now() / 1000)).toBeLessThan(5);
    const submit = JSON.parse(python("decode", SECRET, submitToken(SECRET, [{ topic: "t", event: "e", data: "d" }])));
    expect(submit.payload).toEqual({ events: [{ topic: "t", event: "e", data: "d" }] });
  });
});

describe("Python-made tokens near the edges of the time window (the early header check must never refuse them)", () => {
  // This server's TTL is a day and the clock skew allowance 60 s (defaults): inside by 10 s either way.
  const topics = (n: number) => Array.from({ length: n }, (_, i) => `topic-${i}`.padEnd(24, "x"));
  test.each([1, 12, 90])("%i topics, stamped just inside the TTL and the clock skew: streams open", async (n) => {
    const now = Math.floor(Date.now() / 1000);
    for (const timestamp of [now - 86_400 + 10, now + 50]) {
      const token = python("encode", SECRET, JSON.stringify({ topics: topics(n) }), "--timestamp", String(timestamp));
      expect(await getOnce(`${srv.base}/events?token=${token}`)).toEqual({ status: 200, body: {} });
    }
  });

  test("expired 10 minutes ago, with a last character that is not base62: 401 token_invalid (expired, decided first)", async () => {
    const token = python("encode", SECRET, JSON.stringify({ topics: topics(90) }), "--timestamp", String(Math.floor(Date.now() / 1000) - 86_400 - 600));
    const res = await getOnce(`${srv.base}/events?token=${token.slice(0, -1)}%21`);
    await expectError(res, 401, "token_invalid");
    expect(res.body.message).toBe("token has expired");
  });
});

describe("bad tokens get their documented 4xx", () => {
  const now = Math.floor(Date.now() / 1000);
  const good = subscribeToken(SECRET, ["x"]);
  const cases: Array<[string, () => string, number, string]> = [
    ["expired (older than the 86400 s TTL)", () => python("encode", SECRET, '{"topics":["x"]}', "--timestamp", String(now - 86_401)), 401, "token_invalid"],
    ["forged (one character changed)", () => good.slice(0, 40) + (good[40] === "a" ? "b" : "a") + good.slice(41), 401, "token_invalid"],
    ["truncated", () => good.slice(0, good.length - 10), 401, "token_invalid"],
    ["wrong key", () => subscribeToken(OTHER_SECRET, ["x"]), 401, "token_invalid"],
    ["not base62", () => good.slice(0, 20) + "!@#" + good.slice(23), 401, "token_invalid"],
    ["wrong version byte", () => python("encode", SECRET, '{"topics":["x"]}').replace(/^./, "A"), 401, "token_invalid"],
    ["not msgpack", () => brancaEncode(KEY, Buffer.from("this is not msgpack \xc1")), 400, "payload_invalid"],
    ["msgpack but wrong shape", () => brancaEncode(KEY, encode({ topics: "weather" })), 400, "payload_invalid"],
    ["msgpack with non-string topic", () => brancaEncode(KEY, encode({ topics: ["a", 7] })), 400, "payload_invalid"],
    ["msgpack missing topics", () => brancaEncode(KEY, encode({ channels: ["a"] })), 400, "payload_invalid"],
  ];
  test.each(cases)("/events with %s", async (_name, make, status, code) => {
    const res = await request(srv.server).get(`/events?token=${make()}`);
    await expectError(res, status, code);
  });

  test("future timestamps (Python-minted): within tokenClockSkew (60 s) accepted, beyond it 401, on /events and /submit", async () => {
    // A few seconds of margin either side of the 60 s allowance: the clock
    // ticks between minting here and checking in the server.
    const at = (offset: number) => String(Math.floor(Date.now() / 1000) + offset);
    const sub = (offset: number) => python("encode", SECRET, '{"topics":["future"]}', "--timestamp", at(offset));
    const submitBody = (offset: number) =>
      python("encode", SECRET, JSON.stringify({ events: [{ topic: "future", event: `e${offset}`, data: "" }] }), "--timestamp", at(offset));

    const inside = new RawStream(`${srv.base}/events?token=${sub(55)}`);
    await inside.until((t) => t === ":\n\n");
    expect(inside.status).toBe(200);
    expect((await request(srv.server).post("/submit").send(submitBody(55))).status).toBe(200);
    await inside.until((t) => t.includes("event:e55"));

    for (const offset of [65, 3600]) {
      const res = await getOnce(`${srv.base}/events?token=${sub(offset)}`);
      await expectError(res, 401, "token_invalid");
      expect(res.body.message).toMatch(/in the future/);
      await expectError(await request(srv.server).post("/submit").send(submitBody(offset)), 401, "token_invalid");
    }
    // The largest timestamp Branca can carry (year 2106): would never expire.
    const max = python("encode", SECRET, '{"topics":["future"]}', "--timestamp", String(0xffffffff));
    await expectError(await getOnce(`${srv.base}/events?token=${max}`), 401, "token_invalid");
    const maxSubmit = python("encode", SECRET, '{"events":[{"topic":"future","event":"max","data":""}]}', "--timestamp", String(0xffffffff));
    await expectError(await request(srv.server).post("/submit").send(maxSubmit), 401, "token_invalid");
    // A marker after the refused submits: had any been delivered, it would come before.
    await srv.router.publish([{ topic: "future", event: "end", data: "" }]);
    await inside.until((t) => t.includes("event:end\n"));
    expect(parseEvents(inside.text).map((e) => e.event)).toEqual(["e55", "end"]);
    inside.close();
  });

  test("tokenClockSkew is configurable; with tokenTtl 0 timestamps are not checked at all", async () => {
    const strict = await startServer({ tokenClockSkew: 0 });
    const noTtl = await startServer({ tokenTtl: 0, tokenClockSkew: 0 });
    try {
      const ahead = python("encode", SECRET, '{"topics":["x"]}', "--timestamp", String(Math.floor(Date.now() / 1000) + 30));
      await expectError(await getOnce(`${strict.base}/events?token=${ahead}`), 401, "token_invalid");
      const ok = new RawStream(`${noTtl.base}/events?token=${ahead}`);
      await ok.opened;
      expect(ok.status).toBe(200);
      ok.close();
    } finally {
      await strict.close();
      await noTtl.close();
    }
  });

  test("subscribe tokens have their own cap (maxSubscribeTokenLength, default 4096) in query, Bearer and cookie; submit tokens keep maxTokenLength", async () => {
    const cookieSrv = await startServer({ retry: 0, tokenCookie: "sse" });
    try {
      // The documented capacity: 142 topics of 20 characters fit in 4096.
      const topics = (n: number, len: number) => Array.from({ length: n }, (_, i) => String(i).padStart(len, "x"));
      const fits = subscribeToken(SECRET, topics(142, 20));
      expect(fits.length).toBeLessThanOrEqual(4096);
      expect(subscribeToken(SECRET, topics(143, 20)).length).toBeGreaterThan(4096);
      expect(subscribeToken(SECRET, topics(213, 13)).length).toBeLessThanOrEqual(4096);
      const ok = new RawStream(`${cookieSrv.base}/events?token=${fits}`);
      await ok.opened;
      expect(ok.status).toBe(200);
      ok.close();

      // 4097 characters: refused unread, wherever the token comes from.
      const long = subscribeToken(SECRET, topics(143, 20));
      const over = "A".repeat(4097);
      for (const t of [over, long]) {
        const viaQuery = await getOnce(`${cookieSrv.base}/events?token=${t}`);
        await expectError(viaQuery, 401, "token_too_long");
        expect(viaQuery.body.message).toMatch(/longer than 4096/);
        await expectError(await request(cookieSrv.server).get("/events").set("Authorization", `Bearer ${t}`), 401, "token_too_long");
        await expectError(await request(cookieSrv.server).get("/events").set("Cookie", `sse=${t}`), 401, "token_too_long");
      }

      // A /submit token longer than 4096 is fine (bodyLimit 8192 and maxTokenLength apply).
      const body = submitToken(SECRET, [{ topic: "t", event: "e", data: "x".repeat(4000) }]);
      expect(body.length).toBeGreaterThan(4096);
      expect((await request(cookieSrv.server).post("/submit").send(body)).status).toBe(200);
    } finally {
      await cookieSrv.close();
    }
  });

  test("both caps are options: maxSubscribeTokenLength and maxTokenLength", async () => {
    const strict = await startServer({ maxSubscribeTokenLength: 1000, maxTokenLength: 2000, bodyLimit: 4096 });
    try {
      await expectError(await getOnce(`${strict.base}/events?token=${"A".repeat(1001)}`), 401, "token_too_long");
      await expectError(await request(strict.server).post("/submit").send("A".repeat(2001)), 401, "token_too_long");
      await expectError(await request(strict.server).post("/submit").send("A".repeat(1500)), 401, "token_invalid");
      // Node itself answers 431 for a request line beyond its 16 KiB header limit.
      expect((await request(srv.server).get(`/events?token=${"A".repeat(20_000)}`)).status).toBe(431);
    } finally {
      await strict.close();
    }
  });

  test("/events without a token: 401 token_missing", async () => {
    await expectError(await request(srv.server).get("/events"), 401, "token_missing");
    await expectError(await request(srv.server).get("/events?token="), 401, "token_missing");
  });

  test("the token may come from Authorization: Bearer", async () => {
    const s = new RawStream(`${srv.base}/events`, { Authorization: `Bearer ${subscribeToken(SECRET, ["bearer"])}` });
    await s.opened;
    expect(s.status).toBe(200);
    s.close();
  });

  test("a token given twice in the query is rejected", async () => {
    await expectError(await request(srv.server).get(`/events?token=${good}&token=${good}`), 401, "token_invalid");
  });

  test("a subscribe token over the topic limits is rejected", async () => {
    const many = Array.from({ length: 257 }, (_, i) => `t${i}`);
    await expectError(await request(srv.server).get(`/events?token=${subscribeToken(SECRET, many)}`), 400, "payload_invalid");
    const long = "x".repeat(257);
    await expectError(await request(srv.server).get(`/events?token=${subscribeToken(SECRET, [long])}`), 400, "payload_invalid");
  });
});

describe("/submit", () => {
  test("submit to a topic without subscribers succeeds", async () => {
    const res = await request(srv.server).post("/submit").send(submitToken(SECRET, [{ topic: "nobody", event: "e", data: "" }]));
    expect(res.status).toBe(200);
    expect(res.text).toBe("");
  });

  test("an empty event list is fine", async () => {
    expect((await request(srv.server).post("/submit").send(submitToken(SECRET, []))).status).toBe(200);
  });

  test("oversized body: 413 payload_too_large", async () => {
    const big = submitToken(SECRET, [{ topic: "t", event: "e", data: "x".repeat(9000) }]);
    expect(big.length).toBeGreaterThan(8192);
    await expectError(await request(srv.server).post("/submit").send(big), 413, "payload_too_large");
  });

  test("a large body just under the limit is accepted", async () => {
    const body = submitToken(SECRET, [{ topic: "t", event: "e", data: "x".repeat(5500) }]);
    expect(body.length).toBeLessThanOrEqual(8192);
    expect((await request(srv.server).post("/submit").send(body)).status).toBe(200);
  });

  test("no body: 401 token_missing", async () => {
    await expectError(await request(srv.server).post("/submit"), 401, "token_missing");
  });

  const shapes: Array<[string, unknown]> = [
    ["events not an array", { events: "x" }],
    ["event missing data", { events: [{ topic: "t", event: "e" }] }],
    ["event missing topic", { events: [{ event: "e", data: "d" }] }],
    ["event field not a string", { events: [{ topic: "t", event: 5, data: "d" }] }],
    ["event is a number", { events: [42] }],
    ["payload is a string", "events"],
    ["NUL in event name", { events: [{ topic: "t", event: "a\0b", data: "d" }] }],
    ["missing events key", { topics: ["t"] }],
  ];
  test.each(shapes)("wrong shape (%s): 400 payload_invalid", async (_name, payload) => {
    await expectError(await request(srv.server).post("/submit").send(brancaEncode(KEY, encode(payload))), 400, "payload_invalid");
  });

  test("an invalid submit delivers nothing (all or nothing)", async () => {
    const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["atomic"])}`);
    await s.until((t) => t === ":\n\n");
    const body = brancaEncode(KEY, encode({ events: [{ topic: "atomic", event: "first", data: "" }, { topic: "atomic" }] }));
    expect((await request(srv.server).post("/submit").send(body)).status).toBe(400);
    await srv.router.publish([{ topic: "atomic", event: "end", data: "" }]);
    await s.until((t) => t.includes("event:end\n"));
    expect(parseEvents(s.text).map((e) => e.event)).toEqual(["end"]);
    s.close();
  });

  test("a submit token in the wrong key: 401", async () => {
    await expectError(
      await request(srv.server).post("/submit").send(submitToken(OTHER_SECRET, [{ topic: "t", event: "e", data: "" }])),
      401,
      "token_invalid",
    );
  });
});
