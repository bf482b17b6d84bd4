/**
 * fast-check arbitraries shared by the fuzz tests (fuzz.test.ts: a few
 * thousand requests one at a time with shrinking; fuzz-scale.test.ts: over
 * ten thousand on raw keep-alive sockets against the standalone server and
 * the Express router). Tokens are built for a given secret, since the two
 * kinds of test servers use different ones.
 */
import fc from "fast-check";
import { encode } from "@msgpack/msgpack";
import { brancaEncode } from "../../src/tokens/branca";
import { BASE62_ALPHABET } from "../../src/tokens/base62";
import { submitToken, subscribeToken } from "../../src/tokens";

/** Any other 32-byte key: tokens that decrypt with it are forgeries for us. */
const OTHER_KEY = Buffer.alloc(32, 7);

export const base62Char = fc.constantFrom(...BASE62_ALPHABET.split(""));
export const base62 = (maxLength: number) => fc.string({ unit: base62Char, maxLength });
/** Any code point, plus the characters that break naive parsers. */
export const nasty = fc.oneof(
  fc.string({ unit: "binary", maxLength: 64 }),
  fc.string({ unit: fc.constantFrom("\0", "\r", "\n", "\u2028", "\ud800", "\udfff", "%", ";", "=", "\"", " ", "\t", "a"), maxLength: 32 }),
);

export type Edit = { kind: "flip" | "insert" | "delete"; at: number; ch: string };
export const edit: fc.Arbitrary<Edit> = fc.record({
  kind: fc.constantFrom("flip" as const, "insert" as const, "delete" as const),
  at: fc.nat(),
  ch: fc.oneof({ weight: 5, arbitrary: base62Char }, { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 2 }) }),
});

export function applyEdits(token: string, edits: readonly Edit[]): string {
  let t = token;
  for (const e of edits) {
    const at = t.length === 0 ? 0 : e.at % t.length;
    if (e.kind === "flip") t = t.slice(0, at) + e.ch + t.slice(at + 1);
    else if (e.kind === "insert") t = t.slice(0, at) + e.ch + t.slice(at);
    else t = t.slice(0, at) + t.slice(at + 1);
  }
  return t;
}

export const mutatedToken = (valid: string) =>
  fc.oneof(
    fc.tuple(fc.constant(valid), fc.array(edit, { minLength: 1, maxLength: 4 })).map(([t, es]) => applyEdits(t, es)),
    fc.nat({ max: valid.length }).map((n) => valid.slice(0, n)),
    fc.tuple(fc.constant(valid), base62(40)).map(([t, s]) => t + s),
    fc.constant(valid + valid),
    fc.constant("0" + valid),
  );

/** Raw msgpack headers with absurd declared lengths, optionally under a `topics`/`events` key. */
export const hugeHeaders = [
  [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4G elements
  [0xdf, 0xff, 0xff, 0xff, 0xff], // map32 of 4G entries
  [0xdb, 0xff, 0xff, 0xff, 0xff], // str32 of 4 GB
  [0xc6, 0xff, 0xff, 0xff, 0xff], // bin32 of 4 GB
  [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32 of 4 GB
  [0xdc, 0xff, 0xff], // array16 of 65535
  [0xde, 0xff, 0xff], // map16 of 65535
  [0xd9, 0xff], // str8 of 255
  [0xc1], // never used
];
export const hugeMsgpack = fc
  .tuple(
    fc.constantFrom("", "topics", "events"),
    fc.constantFrom(...hugeHeaders),
    fc.uint8Array({ maxLength: 32 }),
  )
  .map(([key, head, tail]) => {
    const prefix = key === "" ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x81, 0xa0 | key.length]), Buffer.from(key)]);
    return Buffer.concat([prefix, Buffer.from(head), tail]);
  });
/** Nesting far deeper than any real payload: `[[[[...]]]]` or `{a:{a:{...}}}`. */
export const deepMsgpack = fc
  .tuple(fc.integer({ min: 1, max: 4000 }), fc.constantFrom(0x91, 0x81), fc.boolean())
  .map(([depth, op, topicsKey]) => {
    const step = op === 0x91 ? [0x91] : [0x81, 0xa1, 0x61];
    const body = Buffer.alloc(depth * step.length);
    for (let i = 0; i < depth; i++) body.set(step, i * step.length);
    const prefix = topicsKey ? Buffer.from([0x81, 0xa6, ...Buffer.from("topics")]) : Buffer.alloc(0);
    return Buffer.concat([prefix, body, Buffer.from([0xc0])]);
  });

export const anyString = fc.oneof(fc.string(), nasty, fc.anything());
export const looseEvent = fc.oneof(
  fc.record({ topic: anyString, event: anyString, data: anyString }, { requiredKeys: [] }),
  fc.tuple(anyString, anyString, anyString),
  fc.anything(),
);
/** Values shaped somewhat like payloads (to get past the first checks), and anything at all. */
export const payloadValue = fc.oneof(
  fc.anything({ maxDepth: 4 }),
  fc.record({ topics: fc.anything() }),
  fc.record({ topics: fc.array(anyString, { maxLength: 20 }) }),
  fc.tuple(fc.array(anyString, { maxLength: 20 })),
  fc.record({ events: fc.anything() }),
  fc.record({ events: fc.array(looseEvent, { maxLength: 10 }) }),
  fc.tuple(fc.array(looseEvent, { maxLength: 10 })),
);
export const payloadBytes: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 6, arbitrary: payloadValue.map((v) => safeEncode(v)) },
  { weight: 2, arbitrary: hugeMsgpack },
  { weight: 1, arbitrary: deepMsgpack },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }) },
);

export function safeEncode(value: unknown): Uint8Array {
  try {
    return encode(value);
  } catch {
    return encode(String(value));
  }
}

const now = () => Math.floor(Date.now() / 1000);
export const timestamp = fc.oneof(
  { weight: 6, arbitrary: fc.constant(undefined) },
  { weight: 1, arbitrary: fc.constantFrom(0, 1, 0xffffffff) },
  { weight: 1, arbitrary: fc.integer({ min: -200_000, max: 200_000 }).map((d) => Math.max(0, now() + d)) },
);
/** Header values Node's client accepts (it refuses CR, LF, NUL and other controls). */
export const headerText = fc.string({
  unit: fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) },
    { weight: 1, arbitrary: fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)) },
    { weight: 1, arbitrary: fc.constant("\t") },
  ),
  maxLength: 300,
});
/** Percent-encodes the UTF-8 form (lone surrogates become U+FFFD, as a browser would send). */
export const pct = (s: string) => encodeURIComponent(Buffer.from(s, "utf8").toString("utf8"));
export const headerSafe = (s: string) => s.replace(/[^\t\x20-\x7e\x80-\xff]/g, "?");

/** Subscribe/submit tokens for `secret` (64 hex): valid ones, and every kind of broken, mutated or forged one. */
export function tokenArbitraries(secret: string) {
  const KEY = Buffer.from(secret, "hex");
  const VALID_SUB = subscribeToken(secret, ["fuzz-a", "fuzz-b"]);
  const VALID_SUBMIT = submitToken(secret, [{ topic: "fuzz-a", event: "e", data: "d" }]);
  /** A genuine Branca token (right key, mostly) around arbitrary bytes. */
  const brancaAround = fc
    .tuple(payloadBytes, timestamp, fc.boolean(), fc.nat(9))
    .map(([bytes, ts, , keyPick]) => brancaEncode(keyPick === 0 ? OTHER_KEY : KEY, bytes, ts === undefined ? {} : { timestamp: ts }));

  const token = fc.oneof(
    { weight: 2, arbitrary: fc.string({ maxLength: 200 }) },
    { weight: 1, arbitrary: nasty },
    { weight: 2, arbitrary: base62(400) },
    { weight: 1, arbitrary: base62(4000) },
    { weight: 3, arbitrary: mutatedToken(VALID_SUB) },
    { weight: 1, arbitrary: mutatedToken(VALID_SUBMIT) },
    { weight: 5, arbitrary: brancaAround },
  );
  return { VALID_SUB, VALID_SUBMIT, brancaAround, token };
}
