/**
 * Input edge cases (issue 18): a subscription that could never deliver is a
 * 400, empty topic and event names are refused by the helpers and by
 * /submit, and in-process publish() takes any JSON value as data while
 * /submit stays strings-only.
 */
import { encode } from "@msgpack/msgpack";
import request from "supertest";
import { brancaEncode } from "../src/tokens/branca";
import { SseError } from "../src/errors";
import { parseSecret } from "../src/options";
import { submitToken, subscribeToken } from "../src/tokens";
import { RawStream, SECRET, startServer, type TestServer } from "./helpers/sse";

let srv: TestServer;
beforeAll(async () => {
  srv = await startServer({ retry: 0 });
});
afterAll(() => srv.close());

/** A token with any payload, bypassing the helpers' own checks (as a buggy backend in another language would). */
const raw = (payload: unknown) => brancaEncode(parseSecret(SECRET), encode(payload));

function expectBody(res: request.Response, status: number, body: object): void {
  expect(res.status).toBe(status);
  expect(res.headers["content-type"]).toBe("application/json; charset=utf-8");
  expect(JSON.parse(res.text)).toEqual(body);
}

test("a subscription with zero topics is 400 payload_invalid, not an endless stream", async () => {
  for (const payload of [{ topics: [] }, [[]]]) {
    const res = await request(srv.server).get("/events").query({ token: raw(payload) });
    expectBody(res, 400, { error: "payload_invalid", message: "subscription has no topics; give at least one" });
  }
  expect(srv.router.stats.subscribers).toBe(0);
});

test("an empty topic in a subscription is 400 payload_invalid", async () => {
  const res = await request(srv.server).get("/events").query({ token: raw({ topics: ["news", ""] }) });
  expectBody(res, 400, { error: "payload_invalid", message: "topic must not be empty" });
});

test("/submit refuses an empty topic or event name with 400 and delivers nothing", async () => {
  const stream = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["t"])}`);
  await stream.until((t) => t.startsWith(":\n\n"));
  const emptyTopic = await request(srv.server).post("/submit").send(raw({ events: [{ topic: "", event: "e", data: "x" }] }));
  expectBody(emptyTopic, 400, { error: "payload_invalid", message: "events[0].topic must not be empty" });
  const emptyEvent = await request(srv.server).post("/submit").send(raw({ events: [{ topic: "t", event: "e", data: "1" }, { topic: "t", event: "", data: "2" }] }));
  expectBody(emptyEvent, 400, { error: "payload_invalid", message: "events[1].event must not be empty" });
  // A valid submit afterwards is the first (and only) event the subscriber sees: the refused batches were refused whole.
  expect((await request(srv.server).post("/submit").send(submitToken(SECRET, [{ topic: "t", event: "ok", data: "3" }]))).status).toBe(200);
  await stream.until((t) => t.includes("event:ok\n"));
  expect(stream.text).toMatch(/^:\n\nevent:ok\ndata:3\nid:[^\n]+\n\n$/);
  stream.close();
});

test("subscribeToken and submitToken throw on empty topics and event names", () => {
  const thrown = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      return { name: (err as Error).name, code: (err as SseError).code, message: (err as Error).message };
    }
    return undefined;
  };
  expect(thrown(() => subscribeToken(SECRET, []))).toEqual({ name: "SseError", code: "payload_invalid", message: "subscribeToken needs at least one topic" });
  expect(thrown(() => subscribeToken(SECRET, ["a", ""]))).toEqual({ name: "SseError", code: "payload_invalid", message: "topic must not be empty" });
  expect(thrown(() => submitToken(SECRET, [{ topic: "", event: "e", data: "" }]))).toEqual({
    name: "SseError",
    code: "payload_invalid",
    message: "events[0].topic must not be empty",
  });
  expect(thrown(() => submitToken(SECRET, [{ topic: "t", event: "", data: "" }]))).toEqual({
    name: "SseError",
    code: "payload_invalid",
    message: "events[0].event must not be empty",
  });
});

test("publish() sends a non-string data as JSON, once; a string as is", async () => {
  const stream = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["json"])}`);
  await stream.until((t) => t.startsWith(":\n\n"));
  await srv.router.publish([
    { topic: "json", event: "obj", data: { a: [1, "x\ny"], b: null } },
    { topic: "json", event: "num", data: 42 },
    { topic: "json", event: "str", data: '{"already":"json"}' },
  ]);
  await stream.until((t) => t.includes("event:str\n"));
  const frames = stream.text.replace(/id:[^\n]*\n/g, "");
  // "x\ny" inside JSON is the two characters \ and n, so the data stays one line.
  expect(frames).toBe(':\n\nevent:obj\ndata:{"a":[1,"x\\ny"],"b":null}\n\nevent:num\ndata:42\n\nevent:str\ndata:{"already":"json"}\n\n');
  stream.close();
});

test("/submit stays strings-only: a number as data is 400, as in the original", async () => {
  const res = await request(srv.server).post("/submit").send(raw({ events: [{ topic: "t", event: "e", data: 42 }] }));
  expectBody(res, 400, { error: "payload_invalid", message: "events[0].data must be a string" });
});
