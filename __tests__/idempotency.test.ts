/**
 * Idempotency keys with the in-memory broker, over real HTTP: in the submit
 * payload (map and positional form), through `router.publish()` and the Node
 * publisher; invalid keys are a clean 400.
 */
import { encode } from "@msgpack/msgpack";
import { brancaEncode } from "../src/tokens/branca";
import { createPublisher } from "../src/publisher";
import { submitToken, subscribeToken, type EventInput } from "../src/tokens";
import { RawStream, SECRET, parseEvents, startServer, type TestServer } from "./helpers/sse";

let srv: TestServer;
beforeEach(async () => {
  srv = await startServer({ retry: 0 });
});
afterEach(async () => {
  await srv.close();
});

const key = Buffer.from(SECRET, "hex");
const ev = (data: string): EventInput => ({ topic: "t", event: "n", data });
const post = (body: string) => fetch(`${srv.base}/submit`, { method: "POST", body });

async function stream(): Promise<RawStream> {
  const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["t"])}`);
  await s.opened;
  return s;
}

test("/submit with the same idempotency key publishes once (a re-minted token too); another key or none publishes", async () => {
  const s = await stream();
  for (const body of [
    submitToken(SECRET, [ev("a")], { idempotencyKey: "k-1" }),
    submitToken(SECRET, [ev("a again")], { idempotencyKey: "k-1" }),
    // Positional form, as rmp-serde writes a struct: [events, idempotencyKey].
    brancaEncode(key, encode([[["t", "n", "b"]], "k-2"])),
    brancaEncode(key, encode([[["t", "n", "b again"]], "k-2"])),
    submitToken(SECRET, [ev("c")]),
    brancaEncode(key, encode({ events: [["t", "n", "d"]], idempotencyKey: null })),
  ]) {
    const res = await post(body);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe("");
  }
  await srv.router.publish([ev("e")], { idempotencyKey: "k-3" });
  await srv.router.publish([ev("e again")], { idempotencyKey: "k-3" });
  await srv.router.publish([ev("end")]);
  const text = await s.until((t) => t.includes("data:end"));
  expect(parseEvents(text).map((e) => e.data)).toEqual(["a", "b", "c", "d", "e", "end"]);
  s.close();
});

test.each([
  ["empty", "", "idempotencyKey must not be empty"],
  ["too long", "k".repeat(129), "idempotencyKey is longer than 128 characters"],
  ["not a string", 42, "idempotencyKey must be a string"],
])("an idempotency key that is %s is answered 400 payload_invalid, nothing published", async (_name, bad, message) => {
  const res = await post(brancaEncode(key, encode({ events: [["t", "n", "x"]], idempotencyKey: bad })));
  expect(res.status).toBe(400);
  expect(await res.json()).toEqual({ error: "payload_invalid", message });
  await expect(srv.router.publish([ev("x")], { idempotencyKey: bad as string })).rejects.toMatchObject({ code: "payload_invalid", message });
  expect(srv.router.stats.eventsPublished).toBe(0);
});

test("the publisher sends the key and does not retry a 4xx", async () => {
  await srv.close();
  let submits = 0;
  srv = await startServer({ retry: 0 }, "/", (app) =>
    app.use((req, _res, next) => {
      if (req.path === "/submit") submits++;
      next();
    }),
  );
  const s = await stream();
  const publisher = createPublisher({ url: srv.base, secret: SECRET, retryDelay: 0 });
  await publisher.publish([ev("p")], { idempotencyKey: "p-1" });
  await publisher.publish([ev("p again")], { idempotencyKey: "p-1" });
  const forged = createPublisher({ url: srv.base, secret: "00".repeat(32), retryDelay: 0 });
  await expect(forged.publish([ev("forged")], { idempotencyKey: "p-2" })).rejects.toMatchObject({ code: "token_invalid" });
  expect(submits).toBe(3);
  await srv.router.publish([ev("end")]);
  const text = await s.until((t) => t.includes("data:end"));
  expect(parseEvents(text).map((e) => e.data)).toEqual(["p", "end"]);
  expect(() => createPublisher({ url: srv.base, secret: SECRET, retries: -1 })).toThrow(/retries must be an integer between 0 and 100/);
  s.close();
});
