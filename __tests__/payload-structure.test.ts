/**
 * The linear structure check that runs before a token payload is decoded
 * (src/tokens/index.ts checkStructure): it refuses only what the MessagePack
 * decoder would refuse too, plus nesting deeper than MAX_PAYLOAD_DEPTH;
 * every real payload shape passes. Over HTTP: a too-deep genuine submit
 * token is a 400 `payload_invalid`, one just within the limit is accepted.
 */
import { decode, encode } from "@msgpack/msgpack";
import fc from "fast-check";
import request from "supertest";
import { MAX_PAYLOAD_DEPTH, checkStructure, submitToken } from "../src/tokens";
import { brancaEncode } from "../src/tokens/branca";
import { deepMsgpack, hugeMsgpack, payloadBytes, payloadValue, safeEncode } from "./helpers/fuzz";
import { SECRET, startServer, type TestServer } from "./helpers/sse";

const KEY = Buffer.from(SECRET, "hex");

function decodes(bytes: Uint8Array): boolean {
  try {
    decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** `{a: {a: … {a: nil}}}`: `depth` nested maps. */
function nested(depth: number): unknown {
  let v: unknown = null;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

describe("checkStructure", () => {
  test("property: what it refuses as invalid MessagePack, the decoder refuses too", () => {
    fc.assert(
      fc.property(fc.oneof(payloadBytes, hugeMsgpack, deepMsgpack, fc.uint8Array({ maxLength: 64 })), (bytes) => {
        const verdict = checkStructure(bytes);
        if (verdict === undefined || verdict.includes("nested deeper")) return true;
        return !decodes(bytes);
      }),
      { numRuns: 3000 },
    );
  });

  test("property: every value the encoder makes, within the depth limit, passes", () => {
    fc.assert(
      fc.property(payloadValue, (value) => checkStructure(safeEncode(value)) === undefined),
      { numRuns: 2000 },
    );
    for (const bytes of [encode({ topics: ["a", "b"], sub: "u", presence: true }), encode([["a"], "u", false]), encode({ events: [{ topic: "t", event: "e", data: "x".repeat(70_000) }], idempotencyKey: "k" })]) {
      expect(checkStructure(bytes)).toBeUndefined();
    }
  });

  test(`nesting: ${MAX_PAYLOAD_DEPTH} levels pass, one more is refused`, () => {
    expect(checkStructure(encode(nested(MAX_PAYLOAD_DEPTH)))).toBeUndefined();
    expect(checkStructure(encode(nested(MAX_PAYLOAD_DEPTH + 1)))).toBe(`token payload is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`);
    expect(checkStructure(Buffer.alloc(5000, 0x91))).toBe(`token payload is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`);
  });
});

describe("over HTTP", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0 });
  });
  afterAll(async () => {
    await srv.close();
  });

  test("a genuine submit token nested too deeply: 400 payload_invalid; at the limit: accepted", async () => {
    const deep = brancaEncode(KEY, encode({ events: [], x: nested(MAX_PAYLOAD_DEPTH) }));
    const res = await request(srv.server).post("/submit").send(deep);
    expect({ status: res.status, error: res.body.error }).toEqual({ status: 400, error: "payload_invalid" });
    expect(res.body.message).toBe(`token payload is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`);
    const ok = brancaEncode(KEY, encode({ events: [{ topic: "t", event: "e", data: "d" }], x: nested(MAX_PAYLOAD_DEPTH - 1) }));
    expect((await request(srv.server).post("/submit").send(ok)).status).toBe(200);
    expect((await request(srv.server).post("/submit").send(submitToken(SECRET, [{ topic: "t", event: "e", data: "d" }]))).status).toBe(200);
  });
});
