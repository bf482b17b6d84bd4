/**
 * Our Branca codec (src/tokens/branca.ts, src/tokens/base62.ts) against:
 *  - the official spec test vectors (tuupola/branca-spec test_vectors.json,
 *    checked in as __tests__/fixtures/branca-test-vectors.json);
 *  - the draft-irtf-cfrg-xchacha HChaCha20 vector;
 *  - npm `branca` (base-x + libsodium) as an oracle, in both directions;
 *  - `base-x` itself for the base62 layer, byte for byte;
 * plus every documented rejection and its error code.
 */
import { randomBytes, randomInt } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import fc from "fast-check";
import {
  BRANCA_MIN_BYTES,
  BRANCA_MIN_TOKEN_LENGTH,
  BRANCA_VERSION,
  brancaDecode,
  brancaEncode,
  createBrancaCodec,
  hchacha20,
  headerBounds,
} from "../src/tokens/branca";
import { BASE62_ALPHABET, base62Decode, base62DecodeUnsafe, base62Encode } from "../src/tokens/base62";
import { SseError, type SseErrorCode } from "../src/errors";

/* eslint-disable @typescript-eslint/no-require-imports */
type NpmBranca = {
  encode(message: Uint8Array, timestamp?: number): string;
  decode(token: string, ttl?: number): Buffer;
  timestamp(token: string): number;
  _nonce: Uint8Array | null;
};
const npmBranca = require("branca") as (key: Buffer) => NpmBranca;
const baseX = (require("base-x") as (alphabet: string) => {
  encode(b: Uint8Array): string;
  decodeUnsafe(s: string): Uint8Array | undefined;
})(BASE62_ALPHABET);
const sodium = require("libsodium-wrappers") as { ready: Promise<void> };
/* eslint-enable @typescript-eslint/no-require-imports */

interface Vector {
  id: number;
  comment: string;
  key: string;
  nonce: string | null;
  timestamp: number;
  token: string;
  msg: string;
  is_valid: boolean;
}
const spec = JSON.parse(readFileSync(path.join(__dirname, "fixtures/branca-test-vectors.json"), "utf8")) as {
  numberOfTests: number;
  testGroups: { testType: string; tests: Vector[] }[];
};
const vectors = spec.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, group: g.testType })));

const KEY = randomBytes(32);
const OTHER_KEY = randomBytes(32);

function codeOf(fn: () => unknown): SseErrorCode | "no error" | "not an SseError" {
  try {
    fn();
    return "no error";
  } catch (err) {
    return err instanceof SseError ? err.code : "not an SseError";
  }
}

/** Payload bytes with `zeros` leading zero bytes, then random bytes. */
function payload(size: number, zeros = 0): Buffer {
  const b = randomBytes(size);
  b.fill(0, 0, Math.min(zeros, size));
  return b;
}

/** Decodes a token to its raw bytes (header | ciphertext | tag). */
const raw = (token: string) => base62Decode(token);

beforeAll(async () => {
  await sodium.ready; // npm branca uses libsodium-wrappers, which initialises asynchronously
});

describe("spec test vectors", () => {
  test("all 18 vectors are present", () => {
    expect(vectors).toHaveLength(spec.numberOfTests);
    expect(vectors).toHaveLength(18);
  });

  const valid = vectors.filter((v) => v.is_valid);
  // In the "decoding" group, is_valid=false means the token must be refused.
  // In the "encoding and decoding" group it means *encoding* must fail (#2:
  // a 2-byte nonce); #2's token itself is well-formed (its nonce is the ASCII
  // text "beefbeef...") and decodes with every implementation, npm branca too.
  const invalid = vectors.filter((v) => !v.is_valid && v.group === "decoding");

  test.each(valid.map((v) => [v.id, v.comment, v] as const))("#%i %s decodes", (_id, _c, v) => {
    const out = brancaDecode(Buffer.from(v.key), v.token);
    expect(out.payload.toString("hex")).toBe(v.msg);
    expect(out.timestamp).toBe(v.timestamp);
  });

  test.each(valid.map((v) => [v.id, v.comment, v] as const))("#%i %s encodes to the exact token", (_id, _c, v) => {
    const token = brancaEncode(Buffer.from(v.key), Buffer.from(v.msg, "hex"), {
      timestamp: v.timestamp,
      nonce: Buffer.from(v.nonce!, "hex"),
    });
    expect(token).toBe(v.token);
  });

  // #17's key is 11 bytes: a configuration error (invalid_option), not a bad
  // token; every other invalid vector is a token the server must refuse.
  test.each(invalid.filter((v) => v.id !== 17).map((v) => [v.id, v.comment, v] as const))(
    "#%i %s is rejected as token_invalid",
    (_id, _c, v) => {
      expect(codeOf(() => brancaDecode(Buffer.from(v.key), v.token))).toBe("token_invalid");
      // Also with a TTL and a far-future `now`: still invalid, not "expired".
      expect(codeOf(() => brancaDecode(Buffer.from(v.key), v.token, { ttl: 1, now: 2 ** 33 }))).toBe("token_invalid");
    },
  );

  test("#17 a key of the wrong length is refused as invalid_option, for decode and encode", () => {
    const v = vectors.find((x) => x.id === 17)!;
    expect(Buffer.from(v.key)).toHaveLength(11);
    expect(codeOf(() => brancaDecode(Buffer.from(v.key), v.token))).toBe("invalid_option");
    expect(codeOf(() => brancaEncode(Buffer.from(v.key), Buffer.alloc(1)))).toBe("invalid_option");
    expect(codeOf(() => createBrancaCodec(Buffer.alloc(33)))).toBe("invalid_option");
    expect(codeOf(() => createBrancaCodec(Buffer.alloc(0)))).toBe("invalid_option");
  });

  test("#2 encoding with a 2-byte nonce is refused (invalid_option)", () => {
    const v = vectors.find((x) => x.id === 2)!;
    expect(v.group).toBe("encoding and decoding");
    expect(codeOf(() => brancaEncode(Buffer.from(v.key), Buffer.from(v.msg, "hex"), { nonce: Buffer.from(v.nonce!, "hex") }))).toBe(
      "invalid_option",
    );
    // Its token was made with another nonce: decodable, but not the encoding of these inputs.
    const out = brancaDecode(Buffer.from(v.key), v.token);
    expect(raw(v.token).subarray(5, 29).toString()).toBe("beefbeefbeefbeefbeefbeef");
    expect(out.payload.toString("hex")).toBe(v.msg);
  });

  test("npm branca (the oracle) and ours agree on every vector", () => {
    const run = (fn: () => { payload: Buffer; timestamp: number }) => {
      try {
        const { payload, timestamp } = fn();
        return `${payload.toString("hex")}@${timestamp}`;
      } catch {
        return "rejected";
      }
    };
    for (const v of vectors) {
      const key = Buffer.from(v.key);
      const theirs = run(() => {
        const b = npmBranca(key);
        return { payload: b.decode(v.token), timestamp: b.timestamp(v.token) };
      });
      const ours = run(() => brancaDecode(key, v.token));
      expect([v.id, ours]).toEqual([v.id, theirs]);
      if (v.is_valid) expect(ours).toBe(`${v.msg}@${v.timestamp}`);
      if (!v.is_valid && v.group === "decoding") expect(ours).toBe("rejected");
    }
  });

  describe("TTL (spec: expired when timestamp + ttl < now)", () => {
    const v = vectors.find((x) => x.id === 5)!; // timestamp 123206400
    const key = Buffer.from(v.key);
    const ts = v.timestamp;

    test("valid up to and including timestamp + ttl", () => {
      expect(brancaDecode(key, v.token, { ttl: 3600, now: ts }).timestamp).toBe(ts);
      expect(brancaDecode(key, v.token, { ttl: 3600, now: ts + 3600 }).timestamp).toBe(ts);
      // A token from the future is not expired.
      expect(brancaDecode(key, v.token, { ttl: 3600, now: ts - 100 }).timestamp).toBe(ts);
    });

    test("expired one second later", () => {
      expect(codeOf(() => brancaDecode(key, v.token, { ttl: 3600, now: ts + 3601 }))).toBe("token_invalid");
      expect(() => brancaDecode(key, v.token, { ttl: 3600, now: ts + 3601 })).toThrow(/expired/);
    });

    test("against the real clock: a 1996 token with a one-hour TTL is expired", () => {
      expect(codeOf(() => brancaDecode(key, v.token, { ttl: 3600 }))).toBe("token_invalid");
    });

    test("ttl undefined, 0 or negative disables the check", () => {
      expect(brancaDecode(key, v.token, { now: 2 ** 40 }).timestamp).toBe(ts);
      expect(brancaDecode(key, v.token, { ttl: 0, now: 2 ** 40 }).timestamp).toBe(ts);
      expect(brancaDecode(key, v.token, { ttl: -5, now: 2 ** 40 }).timestamp).toBe(ts);
    });

    test("maxFuture: a timestamp up to maxFuture ahead is accepted, one second more is not", () => {
      expect(brancaDecode(key, v.token, { ttl: 3600, maxFuture: 60, now: ts - 60 }).timestamp).toBe(ts);
      expect(codeOf(() => brancaDecode(key, v.token, { ttl: 3600, maxFuture: 60, now: ts - 61 }))).toBe("token_invalid");
      expect(() => brancaDecode(key, v.token, { ttl: 3600, maxFuture: 60, now: ts - 61 })).toThrow(/in the future/);
      expect(codeOf(() => brancaDecode(key, v.token, { ttl: 3600, maxFuture: 0, now: ts - 1 }))).toBe("token_invalid");
      // Only together with a TTL: without one the timestamp is not checked at all.
      expect(brancaDecode(key, v.token, { maxFuture: 0, now: 0 }).timestamp).toBe(ts);
    });

    test("maxFuture rejects the maximum timestamp (2^32-1), which would otherwise never expire", () => {
      const max = vectors.find((x) => x.id === 4)!;
      const now = Math.floor(Date.now() / 1000);
      expect(brancaDecode(Buffer.from(max.key), max.token, { ttl: 86_400, now }).timestamp).toBe(2 ** 32 - 1);
      expect(codeOf(() => brancaDecode(Buffer.from(max.key), max.token, { ttl: 86_400, maxFuture: 60, now }))).toBe("token_invalid");
    });

    test("max timestamp (2^32-1) never overflows into expiry", () => {
      const max = vectors.find((x) => x.id === 4)!;
      expect(brancaDecode(Buffer.from(max.key), max.token, { ttl: 1, now: 2 ** 32 }).timestamp).toBe(2 ** 32 - 1);
    });
  });
});

describe("HChaCha20", () => {
  test("draft-irtf-cfrg-xchacha-03 §2.2.1 vector", () => {
    const key = Buffer.from("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "hex");
    const words = new Uint32Array(8);
    for (let i = 0; i < 8; i++) words[i] = key.readUInt32LE(4 * i);
    const input = Buffer.from("000000090000004a0000000031415927", "hex");
    expect(hchacha20(words, input).toString("hex")).toBe(
      "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc",
    );
    // Same input at an offset.
    expect(hchacha20(words, Buffer.concat([Buffer.alloc(5), input]), 5).toString("hex")).toBe(
      "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc",
    );
  });
});

describe("base62 is byte-identical to base-x", () => {
  const same = (bytes: Uint8Array) => {
    const expected = baseX.encode(bytes);
    expect(base62Encode(bytes)).toBe(expected);
    expect(base62Decode(expected).equals(Buffer.from(bytes))).toBe(true);
  };

  test("edge cases: empty, zeros, leading zeros, 0xff runs, single bytes", () => {
    same(new Uint8Array(0));
    for (let n = 1; n <= 40; n++) {
      same(new Uint8Array(n)); // all zero bytes -> all '0'
      same(new Uint8Array(n).fill(0xff));
      same(payload(n, 1));
      same(payload(n, 3));
    }
    for (let b = 0; b < 256; b++) same(Uint8Array.of(b));
    for (let b = 0; b < 256; b++) same(Uint8Array.of(0, 0, b));
    expect(base62Decode("")).toHaveLength(0);
    expect(base62Decode("000").equals(Buffer.alloc(3))).toBe(true);
  });

  test("every size from 0 to 600 bytes, and large sizes up to 11 KB", () => {
    for (let n = 0; n <= 600; n++) same(payload(n, n % 7 === 0 ? 2 : 0));
    // base-x is quadratic: ~0.2 s per 11 KB conversion, so only a few large ones.
    for (const n of [1000, 2047, 3000, 4096, 6000, 8249, 11_000]) same(payload(n, n % 2 ? 9 : 0));
  });

  test("round trip of 100 KB (too slow to compare with base-x)", () => {
    const b = payload(100_000, 4);
    const text = base62Encode(b);
    expect(text.startsWith("0000") && !text.startsWith("00000")).toBe(true);
    expect(base62Decode(text).equals(b)).toBe(true);
  });

  test("decoding arbitrary base62 strings (including leading '0's) matches base-x", () => {
    for (let i = 0; i < 2000; i++) {
      const len = randomInt(0, 400);
      let s = "";
      for (let j = 0; j < len; j++) s += BASE62_ALPHABET[Math.random() < 0.15 ? 0 : randomInt(62)];
      expect(base62Decode(s).equals(Buffer.from(baseX.decodeUnsafe(s)!))).toBe(true);
    }
  });

  test("characters outside the alphabet are refused, wherever they are", () => {
    const good = base62Encode(payload(300));
    for (const bad of ["_", "-", "+", "/", "=", " ", "\n", "\0", "é", "€", "😀", "\u0130", "\u00ff", "\u0100", "\ud800"]) {
      for (const at of [0, 1, 7, 8, 9, 150, good.length - 1, good.length]) {
        const s = good.slice(0, at) + bad + good.slice(at);
        expect(base62DecodeUnsafe(s)).toBeUndefined();
        expect(baseX.decodeUnsafe(s)).toBeUndefined();
        expect(() => base62Decode(s)).toThrow(TypeError);
      }
    }
  });

  test("property: encode matches base-x and round-trips", () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat({ max: 12 }), (bytes, zeros) => {
        const b = Buffer.concat([Buffer.alloc(zeros), bytes]);
        const text = base62Encode(b);
        return text === baseX.encode(b) && base62Decode(text).equals(b);
      }),
      { numRuns: 300 },
    );
  });

  test("property: decode of any base62 string matches base-x and re-encodes to itself", () => {
    const digit = fc.constantFrom(...BASE62_ALPHABET.split(""));
    fc.assert(
      fc.property(fc.array(digit, { maxLength: 2500 }), (chars) => {
        const s = chars.join("");
        const d = base62Decode(s);
        return d.equals(Buffer.from(baseX.decodeUnsafe(s)!)) && base62Encode(d) === s;
      }),
      { numRuns: 300 },
    );
  });
});

describe("round trips against npm branca", () => {
  const sizes = [0, 1, 29, 100, 1000, 6000, ...Array.from({ length: 8 }, () => randomInt(0, 7000))];
  const cases = sizes.flatMap((n) => [
    [n, 0],
    [n, 5],
  ]);

  test.each(cases)("%i bytes, %i leading zero bytes: ours encodes, npm branca decodes", (n, zeros) => {
    const msg = payload(n, zeros);
    const ts = randomInt(0, 2 ** 32);
    const token = brancaEncode(KEY, msg, { timestamp: ts });
    const b = npmBranca(KEY);
    expect(b.decode(token).equals(msg)).toBe(true);
    expect(b.timestamp(token)).toBe(ts);
  });

  test.each(cases)("%i bytes, %i leading zero bytes: npm branca encodes, ours decodes", (n, zeros) => {
    const msg = payload(n, zeros);
    const ts = randomInt(0, 2 ** 32);
    const token = npmBranca(KEY).encode(msg, ts);
    const out = brancaDecode(KEY, token);
    expect(out.payload.equals(msg)).toBe(true);
    expect(out.timestamp).toBe(ts);
  });

  test("same nonce and timestamp give the same token as npm branca", () => {
    for (const n of [0, 1, 45, 500, 4000]) {
      const msg = payload(n, n % 3);
      const nonce = randomBytes(24);
      const b = npmBranca(KEY);
      b._nonce = nonce;
      expect(brancaEncode(KEY, msg, { nonce, timestamp: 1_700_000_000 })).toBe(b.encode(msg, 1_700_000_000));
    }
  });

  test("property: random payloads, timestamps and nonces agree with npm branca both ways", () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.integer({ min: 0, max: 2 ** 32 - 1 }),
        fc.uint8Array({ minLength: 24, maxLength: 24 }),
        (msg, ts, nonce) => {
          const ours = brancaEncode(KEY, msg, { timestamp: ts, nonce });
          const b = npmBranca(KEY);
          b._nonce = nonce;
          const theirs = b.encode(msg, ts);
          const back = brancaDecode(KEY, theirs);
          return ours === theirs && back.timestamp === ts && back.payload.equals(Buffer.from(msg));
        },
      ),
      { numRuns: 150 },
    );
  });

  test("default timestamp is now, default nonce is random", () => {
    const before = Math.floor(Date.now() / 1000);
    const a = brancaEncode(KEY, Buffer.from("x"));
    const b = brancaEncode(KEY, Buffer.from("x"));
    const after = Math.floor(Date.now() / 1000);
    expect(a).not.toBe(b);
    const ts = brancaDecode(KEY, a).timestamp;
    expect(ts).toBeGreaterThanOrEqual(before);
    expect(ts).toBeLessThanOrEqual(after);
    expect(raw(a).subarray(5, 29).equals(raw(b).subarray(5, 29))).toBe(false);
  });

  test("createBrancaCodec binds the key once and copies it", () => {
    const key = Buffer.from(KEY);
    const codec = createBrancaCodec(key);
    const token = codec.encode(Buffer.from("hello"));
    key.fill(0); // mutating the caller's buffer does not affect the codec
    expect(codec.decode(token).payload.toString()).toBe("hello");
    expect(brancaDecode(KEY, token).payload.toString()).toBe("hello");
  });
});

describe("rejections", () => {
  const msg = Buffer.from("hello, topic list");
  const token = brancaEncode(KEY, msg, { timestamp: 1_700_000_000 });

  test("over maxLength -> token_too_long, checked before anything else", () => {
    expect(brancaDecode(KEY, token, { maxLength: token.length }).payload.equals(msg)).toBe(true);
    expect(codeOf(() => brancaDecode(KEY, token, { maxLength: token.length - 1 }))).toBe("token_too_long");
    // Even garbage that is not base62 at all is "too long" first.
    expect(codeOf(() => brancaDecode(KEY, "!".repeat(20_000), { maxLength: 15_000 }))).toBe("token_too_long");
    expect(codeOf(() => brancaDecode(KEY, "!".repeat(15_000), { maxLength: 15_000 }))).toBe("token_invalid");
    expect(codeOf(() => createBrancaCodec(KEY).decode(token, { maxLength: 10 }))).toBe("token_too_long");
  });

  test("non-base62 characters -> token_invalid", () => {
    for (const bad of ["_", "-", "+", "/", "=", " ", "%20", "\0", "é", "😀"]) {
      for (const at of [1, 30, token.length - 1, token.length]) {
        expect(codeOf(() => brancaDecode(KEY, token.slice(0, at) + bad + token.slice(at)))).toBe("token_invalid");
      }
      expect(codeOf(() => brancaDecode(KEY, token.slice(0, 40) + bad + token.slice(41)))).toBe("token_invalid");
    }
  });

  test("wrong version byte -> token_invalid (even with a valid tag over that header)", () => {
    for (const version of [0x00, 0x01, 0xb9, 0xbb, 0xff]) {
      const bin = raw(token);
      bin[0] = version;
      expect(codeOf(() => brancaDecode(KEY, base62Encode(bin)))).toBe("token_invalid");
    }
    // A leading '0' character is a leading zero byte, i.e. version 0x00.
    expect(codeOf(() => brancaDecode(KEY, "0" + token))).toBe("token_invalid");
    expect(codeOf(() => brancaDecode(KEY, "0".repeat(token.length)))).toBe("token_invalid");
  });

  test("truncated -> token_invalid", () => {
    for (let cut = 1; cut < token.length; cut += 3) {
      expect(codeOf(() => brancaDecode(KEY, token.slice(0, token.length - cut)))).toBe("token_invalid");
    }
    expect(codeOf(() => brancaDecode(KEY, ""))).toBe("token_invalid");
    // Binary truncation: header + tag minus one byte, and header + tag only.
    const bin = raw(token);
    expect(codeOf(() => brancaDecode(KEY, base62Encode(bin.subarray(0, BRANCA_MIN_BYTES - 1))))).toBe("token_invalid");
    expect(codeOf(() => brancaDecode(KEY, base62Encode(bin.subarray(0, BRANCA_MIN_BYTES))))).toBe("token_invalid");
    expect(codeOf(() => brancaDecode(KEY, base62Encode(bin.subarray(0, bin.length - 1))))).toBe("token_invalid");
  });

  test("shortest possible token is accepted; anything shorter is refused before decoding", () => {
    const empty = brancaEncode(KEY, new Uint8Array(0), { timestamp: 0, nonce: new Uint8Array(24) });
    expect(empty.length).toBeGreaterThanOrEqual(BRANCA_MIN_TOKEN_LENGTH);
    expect(brancaDecode(KEY, empty).payload).toHaveLength(0);
    const min = base62Encode(Buffer.concat([Buffer.from([BRANCA_VERSION]), Buffer.alloc(BRANCA_MIN_BYTES - 1)]));
    expect(min).toHaveLength(BRANCA_MIN_TOKEN_LENGTH);
    expect(codeOf(() => brancaDecode(KEY, min))).toBe("token_invalid");
    expect(codeOf(() => brancaDecode(KEY, "z".repeat(BRANCA_MIN_TOKEN_LENGTH - 1)))).toBe("token_invalid");
  });

  test("every single-bit flip of the binary token (forgery) -> token_invalid", () => {
    const bin = raw(token);
    for (let i = 0; i < bin.length; i++) {
      for (const bit of [0x01, 0x80]) {
        const forged = Buffer.from(bin);
        forged[i]! ^= bit;
        expect([i, bit, codeOf(() => brancaDecode(KEY, base62Encode(forged)))]).toEqual([i, bit, "token_invalid"]);
      }
    }
  });

  test("changed characters in the text (forgery) -> token_invalid", () => {
    for (let i = 0; i < token.length; i++) {
      const c = token[i]!;
      const other = BASE62_ALPHABET[(BASE62_ALPHABET.indexOf(c) + 1 + randomInt(61)) % 62]!;
      const forged = token.slice(0, i) + other + token.slice(i + 1);
      expect([i, codeOf(() => brancaDecode(KEY, forged))]).toEqual([i, "token_invalid"]);
    }
  });

  test("a large forged token (valid header, garbage body) -> token_invalid", () => {
    const bin = raw(brancaEncode(KEY, randomBytes(8192)));
    randomBytes(8192).copy(bin, 29);
    expect(codeOf(() => brancaDecode(KEY, base62Encode(bin)))).toBe("token_invalid");
  });

  test("wrong key -> token_invalid", () => {
    expect(codeOf(() => brancaDecode(OTHER_KEY, token))).toBe("token_invalid");
    expect(codeOf(() => createBrancaCodec(OTHER_KEY).decode(token))).toBe("token_invalid");
  });

  test("expired -> token_invalid", () => {
    expect(codeOf(() => brancaDecode(KEY, token, { ttl: 60, now: 1_700_000_061 }))).toBe("token_invalid");
    expect(brancaDecode(KEY, token, { ttl: 60, now: 1_700_000_060 }).payload.equals(msg)).toBe(true);
  });

  test("a non-string token -> token_invalid", () => {
    for (const t of [undefined, null, 42, Buffer.from(token), {}]) {
      expect(codeOf(() => brancaDecode(KEY, t as unknown as string))).toBe("token_invalid");
    }
  });

  test("bad encode options -> invalid_option", () => {
    for (const timestamp of [-1, 2 ** 32, 1.5, Number.NaN, Infinity]) {
      expect(codeOf(() => brancaEncode(KEY, msg, { timestamp }))).toBe("invalid_option");
    }
    for (const n of [0, 12, 23, 25, 32]) {
      expect(codeOf(() => brancaEncode(KEY, msg, { nonce: new Uint8Array(n) }))).toBe("invalid_option");
    }
  });

  test("errors are SseError with HTTP 401 for tokens", () => {
    try {
      brancaDecode(OTHER_KEY, token);
      throw new Error("not rejected");
    } catch (err) {
      expect(err).toBeInstanceOf(SseError);
      expect((err as SseError).status).toBe(401);
      expect((err as SseError).message).not.toContain(token);
    }
  });
});

describe("large forged tokens (their cost is measured by bench/token-codec.ts, not here)", () => {
  test("a forged ~15,000-character token (valid header, bad tag) is rejected as token_invalid", () => {
    const bin = raw(brancaEncode(KEY, randomBytes(11_100)));
    bin[bin.length - 1]! ^= 1;
    const forged = base62Encode(bin);
    expect(forged.length).toBeGreaterThan(14_900);
    expect(codeOf(() => brancaDecode(KEY, forged))).toBe("token_invalid");
    expect(codeOf(() => brancaDecode(KEY, forged, { maxLength: 16_000 }))).toBe("token_invalid");
  });

  test("tokens of 2,000 and 8,000 payload bytes decode to their payloads", () => {
    for (const n of [2_000, 8_000]) {
      const msg = randomBytes(n);
      expect(brancaDecode(KEY, brancaEncode(KEY, msg)).payload.equals(msg)).toBe(true);
    }
  });
});

describe("early rejections from the first characters (headerBounds)", () => {
  /** The message of the SseError `fn` throws. */
  function messageOf(fn: () => unknown): string {
    try {
      fn();
      return "no error";
    } catch (err) {
      return err instanceof SseError ? `${err.code}: ${err.message}` : "not an SseError";
    }
  }
  const base62Text = (min: number, max: number) =>
    fc
      .tuple(fc.integer({ min: 1, max: 61 }), fc.array(fc.integer({ min: 0, max: 61 }), { minLength: min - 1, maxLength: max - 1 }))
      .map(([first, rest]) => BASE62_ALPHABET[first]! + rest.map((d) => BASE62_ALPHABET[d]!).join(""));

  test("property: the bounds always contain the decoded version byte and timestamp (random texts and tokens)", () => {
    let pinned = 0;
    const check = (text: string): boolean => {
      const b = headerBounds(text);
      if (b === undefined) return true;
      pinned++;
      const bin = base62Decode(text);
      if (bin[0] !== b.version) return false;
      if (b.version !== BRANCA_VERSION) return true;
      const ts = bin.readUInt32BE(1);
      return ts >= b.minTimestamp && ts <= b.maxTimestamp && b.maxTimestamp - b.minTimestamp < 120;
    };
    fc.assert(fc.property(base62Text(BRANCA_MIN_TOKEN_LENGTH, 600), check), { numRuns: 2000 });
    // Genuine headers: every timestamp edge (0, 2^32-1, byte carries) and lengths up to the 16 KiB cap.
    const timestamps = fc.oneof(fc.constantFrom(0, 1, 255, 256, 0xffff, 0x10000, 0xffffff, 0x1000000, 0xfffffffe, 0xffffffff), fc.nat(0xffffffff));
    fc.assert(
      fc.property(timestamps, fc.integer({ min: 0, max: 12_000 }), fc.nat(255), (ts, size, fill) => {
        const bin = Buffer.alloc(BRANCA_MIN_BYTES + size, fill);
        bin[0] = BRANCA_VERSION;
        bin.writeUInt32BE(ts, 1);
        // (At the exact edges, e.g. timestamp 0 with zero bytes after it, the bounds may straddle 0xB9/0xBA: undefined, full decode.)
        return check(base62Encode(bin));
      }),
      { numRuns: 300 },
    );
    expect(pinned).toBeGreaterThan(2000);
  });

  test("a wrong version byte is refused before the rest is read (a bad last character does not matter)", () => {
    const bin = raw(brancaEncode(KEY, randomBytes(11_000)));
    for (const version of [0x01, 0xb9, 0xbb, 0xff]) {
      bin[0] = version;
      const text = base62Encode(bin);
      expect(messageOf(() => brancaDecode(KEY, text.slice(0, -1) + "!"))).toBe("token_invalid: token does not start with the Branca version byte");
    }
  });

  test("an expired or future timestamp is refused before the rest is read, with the exact check's error", () => {
    const now = 1_800_000_000;
    const opts = { ttl: 60, maxFuture: 30, now };
    for (const size of [10, 3_000, 11_000]) {
      const msg = randomBytes(size);
      const stale = brancaEncode(KEY, msg, { timestamp: now - 60 - 200 });
      const future = brancaEncode(KEY, msg, { timestamp: now + 30 + 200 });
      expect(messageOf(() => brancaDecode(KEY, stale, opts))).toBe("token_invalid: token has expired");
      expect(messageOf(() => brancaDecode(KEY, stale.slice(0, -1) + "!", opts))).toBe("token_invalid: token has expired");
      expect(messageOf(() => brancaDecode(KEY, future.slice(0, -1) + "!", opts))).toBe("token_invalid: token timestamp is in the future");
    }
  });

  test("genuine tokens at the very edges of the time window still pass, at every length", () => {
    const now = 1_800_000_000;
    const opts = { ttl: 60, maxFuture: 30, now };
    for (let size = 0; size <= 4_000; size += 97) {
      const msg = randomBytes(size);
      for (const timestamp of [now - 60, now - 59, now, now + 29, now + 30]) {
        expect(brancaDecode(KEY, brancaEncode(KEY, msg, { timestamp }), opts).payload.equals(msg)).toBe(true);
      }
      // One second further out: refused, by the early check or the exact one, with the same code.
      expect(codeOf(() => brancaDecode(KEY, brancaEncode(KEY, msg, { timestamp: now - 61 }), opts))).toBe("token_invalid");
      expect(codeOf(() => brancaDecode(KEY, brancaEncode(KEY, msg, { timestamp: now + 31 }), opts))).toBe("token_invalid");
    }
  });
});
