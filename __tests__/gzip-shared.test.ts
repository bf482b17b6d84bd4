/**
 * The shared-gzip engine (issue 16) read by an independent decoder: CPython's
 * zlib, fed chunk by chunk. Every batch must decode completely from the bytes
 * written for it (nothing waits in a compressor); a subscriber that joins or
 * falls out of step mid-stream decodes exactly its own bytes; the trailer's
 * CRC-32 and length check out (Python's `eof`); subscribers in step get the
 * very same Buffer (compressed once).
 */
import * as zlib from "node:zlib";
import fc from "fast-check";
import { GzipMember, SharedDeflate, crc32Combine, crc32Suffix, storedBlocks, type SharedBatch } from "../src/framing/gzip-shared";
import { isSseError } from "../src/errors";
import { PyGunzip } from "./helpers/pygunzip";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { corpus } = require("../bench/lib/corpus") as { corpus: (n: number, seed?: number) => Array<{ frame: Buffer }> };

let py: PyGunzip;
beforeAll(() => {
  py = new PyGunzip();
});
afterAll(() => py.close());

let keys = 0;
/** A subscriber: its member, its Python decoder, and the plain bytes it must end up with. */
class Sub {
  readonly member = new GzipMember();
  readonly key = `s${keys++}`;
  expected: Buffer[] = [];
  sent: Buffer[] = [];

  async shared(batch: SharedBatch): Promise<Buffer> {
    const bytes = this.member.shared(batch);
    await this.check(bytes, batch.plain);
    return bytes;
  }

  async own(plain: Buffer): Promise<Buffer> {
    const bytes = this.member.own(plain);
    await this.check(bytes, plain);
    return bytes;
  }

  private async check(bytes: Buffer, plain: Buffer): Promise<void> {
    this.sent.push(bytes);
    this.expected.push(plain);
    // Exactly this chunk's plain bytes, at once: not a byte held back, none early.
    expect((await py.feed(this.key, bytes)).equals(plain)).toBe(true);
  }

  async end(): Promise<void> {
    const last = this.member.end();
    expect((await py.feed(this.key, last)).length).toBe(0);
    const result = await py.end(this.key);
    expect(result).toEqual({ out: Buffer.alloc(0), eof: true, unused: Buffer.alloc(0) });
    // And Node's own gunzip agrees on the whole member, trailer included.
    expect(zlib.gunzipSync(Buffer.concat([...this.sent, last])).equals(Buffer.concat(this.expected))).toBe(true);
  }
}

describe("CRC-32 algebra", () => {
  test("crc32Combine and crc32Suffix agree with zlib.crc32 on random splits", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }), (a, b) => {
        const A = Buffer.from(a);
        const B = Buffer.from(b);
        const ab = zlib.crc32(Buffer.concat([A, B]));
        expect(crc32Combine(zlib.crc32(A), zlib.crc32(B), B.length)).toBe(ab);
        expect(crc32Suffix(zlib.crc32(A), ab, B.length)).toBe(zlib.crc32(B));
      }),
      { numRuns: 300 },
    );
  });

  test("lengths beyond 2^32 (ISIZE wraps, the CRC must not)", () => {
    // Appending n zero bytes to "" leaves crc 0 for any n, and crc(x‖0^n) = combine(crc(x), crc(0^n), n):
    // check the operator for a huge n against composing two halves.
    const c = zlib.crc32("abc");
    const z = (n: number) => crc32Combine(0, 0, n); // crc of n zero bytes appended to an empty register is 0
    expect(z(2 ** 33)).toBe(0);
    const half = crc32Combine(c, 0, 2 ** 32);
    expect(crc32Combine(half, 0, 2 ** 32)).toBe(crc32Combine(c, 0, 2 ** 33));
  });
});

test("stored blocks: exact bytes, and split at 65,535", async () => {
  expect(storedBlocks(Buffer.from("ab"))).toEqual(Buffer.from([0x00, 0x02, 0x00, 0xfd, 0xff, 0x61, 0x62]));
  expect(storedBlocks(Buffer.alloc(0)).length).toBe(0);
  const big = Buffer.alloc(65535 * 2 + 7, 0x41);
  const s = new Sub();
  const bytes = await s.own(big);
  // Own bytes of this size are deflated; the stored form is checked directly.
  expect(bytes.length).toBeLessThan(big.length);
  const stored = storedBlocks(big);
  expect(stored.length).toBe(big.length + 15);
  expect([stored[0], stored.readUInt16LE(1), stored.readUInt16LE(3)]).toEqual([0, 65535, 0]);
  // Non-final blocks only: the raw stream has no end, so inflate up to a sync point.
  expect(zlib.inflateRawSync(stored, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).equals(big)).toBe(true);
  await s.end();
});

test("an empty member (no bytes at all) is a valid gzip file", async () => {
  const s = new Sub();
  await s.end();
});

describe("one topic set, subscribers joining at different times", () => {
  const events = corpus(400).map((e) => e.frame);

  test("in-step subscribers share one Buffer; a joiner gets stored bytes for one window, then the same Buffer", async () => {
    const engine = new SharedDeflate({ windowBytes: 4096 });
    const early = new Sub();
    await early.own(Buffer.from(":\n\nretry:3000\n\n"));
    const batches: SharedBatch[] = [];
    let late: Sub | undefined;
    let lateJoinedAt = 0;
    let lateInStepAt = -1;
    for (let i = 0; i < events.length; i += 2) {
      const batch = engine.batch(Buffer.concat(events.slice(i, i + 2)));
      batches.push(batch);
      const a = await early.shared(batch);
      // `early` is in step after its own hello only once it has a window of shared bytes again.
      if (batch.seq > 40) expect(a).toBe(batch.deflated);
      if (i === 200) {
        late = new Sub();
        await late.own(Buffer.from(":\n\n"));
        lateJoinedAt = batch.endLength;
        continue; // joins after this batch
      }
      if (late !== undefined) {
        const b = await late.shared(batch);
        if (b === batch.deflated && lateInStepAt === -1) lateInStepAt = batch.startLength;
        if (lateInStepAt === -1) expect(b.subarray(-batch.plain.length).equals(batch.plain)).toBe(true);
        else expect(b).toBe(batch.deflated);
      }
    }
    // The joiner caught up after one window of uncompressed bytes, no sooner, not much later.
    expect(lateInStepAt - lateJoinedAt).toBeGreaterThanOrEqual(4096);
    expect(lateInStepAt - lateJoinedAt).toBeLessThan(4096 + 2 * 1200);
    await early.end();
    await late!.end();
    // The point of it all: with shared context the corpus shrinks ≥ 4×.
    const plain = batches.reduce((n, b) => n + b.plain.length, 0);
    const wire = batches.reduce((n, b) => n + b.deflated.length, 0);
    expect(plain / wire).toBeGreaterThanOrEqual(4);
  });

  test("a subscriber held back (replay) misses shared batches, gets them as its own, then falls back in step", async () => {
    const engine = new SharedDeflate({ windowBytes: 2048 });
    const steady = new Sub();
    const held = new Sub();
    for (const s of [steady, held]) await s.own(Buffer.from(":\n\n"));
    const missed: Buffer[] = [];
    for (let i = 0; i < 120; i++) {
      const batch = engine.batch(events[i]!);
      await steady.shared(batch);
      if (i >= 30 && i < 50) missed.push(batch.plain);
      else if (i === 50) {
        // The replay and the held live events come out as its own bytes, in one go.
        await held.own(Buffer.concat([...missed, batch.plain]));
      } else await held.shared(batch);
    }
    await steady.end();
    await held.end();
  });

  test("windowBytes 0: every batch independent, everyone in step at once", async () => {
    const engine = new SharedDeflate({ windowBytes: 0 });
    const a = new Sub();
    for (let i = 0; i < 20; i++) {
      const batch = engine.batch(events[i]!);
      expect(batch.dictLength).toBe(0);
      const bytes = await a.shared(batch);
      // The first write carries the gzip header in front of the shared bytes.
      if (i === 0) expect(bytes.subarray(10).equals(batch.deflated)).toBe(true);
      else expect(bytes).toBe(batch.deflated);
    }
    await a.end();
  });

  test("empty batches and empty own bytes write nothing but the header", async () => {
    const engine = new SharedDeflate();
    const a = new Sub();
    const first = await a.shared(engine.batch(Buffer.alloc(0)));
    expect(first.length).toBe(10);
    expect((await a.own(Buffer.alloc(0))).length).toBe(0);
    await a.shared(engine.batch(events[0]!));
    await a.end();
  });
});

test("options are validated once, with invalid_option", () => {
  for (const bad of [{ windowBytes: -1 }, { windowBytes: 32769 }, { windowBytes: 1.5 }, { level: 0 }, { level: 10 }, { level: "6" }]) {
    let err: unknown;
    try {
      new SharedDeflate(bad as never);
    } catch (e) {
      err = e;
    }
    expect(isSseError(err) && err.code === "invalid_option").toBe(true);
  }
});

test("property: random batches, joins, own bytes, gaps and ends decode exactly, chunk by chunk", async () => {
  const pool = corpus(200, 7).map((e) => e.frame);
  const chunk = fc.oneof(
    { weight: 6, arbitrary: fc.array(fc.constantFrom(...pool), { minLength: 0, maxLength: 4 }).map((l) => Buffer.concat(l)) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)) },
    { weight: 1, arbitrary: fc.integer({ min: 60000, max: 140000 }).map((n) => Buffer.alloc(n, n % 251)) },
  );
  // Per step: a shared batch, and what each of up to 4 subscriber slots does with it.
  const action = fc.constantFrom("shared", "shared", "shared", "skip", "own", "join", "end");
  const step = fc.record({ batch: chunk, own: chunk, actions: fc.array(action, { minLength: 4, maxLength: 4 }) });
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(0, 1, 300, 4096, 32768),
      fc.integer({ min: 1, max: 9 }),
      fc.array(step, { minLength: 1, maxLength: 25 }),
      async (windowBytes, level, steps) => {
        const engine = new SharedDeflate({ windowBytes, level });
        const slots: Array<Sub | undefined> = [new Sub(), undefined, undefined, undefined];
        for (const { batch: plain, own, actions } of steps) {
          const batch = engine.batch(plain);
          let inStep: Buffer | undefined;
          for (let i = 0; i < slots.length; i++) {
            const sub = slots[i];
            const act = actions[i]!;
            if (sub === undefined) {
              if (act === "join") slots[i] = new Sub();
              continue;
            }
            if (act === "skip") continue;
            if (act === "own") await sub.own(own);
            else if (act === "end") {
              await sub.end();
              slots[i] = undefined;
            } else {
              const bytes = await sub.shared(batch);
              // Compressed once: every subscriber in step holds the same Buffer.
              if (bytes === batch.deflated && bytes.length > 0) {
                if (inStep !== undefined) expect(bytes).toBe(inStep);
                inStep = bytes;
              }
            }
          }
        }
        for (const sub of slots) if (sub !== undefined) await sub.end();
      },
    ),
    { numRuns: 60, interruptAfterTimeLimit: 20_000 },
  );
});
