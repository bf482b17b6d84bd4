/**
 * Base62 as Branca uses it (alphabet `0-9A-Za-z`), byte-identical to the
 * `base-x` package that npm `branca` and the Rust `base-x` crate use: the bytes
 * are one big-endian number written in base 62, and each leading zero byte
 * becomes one leading `'0'` character (and back).
 *
 * Why not `base-x`: its conversion is the textbook digit-by-digit one,
 * O(n²) in the token length — ~110 ms for an 11,000-character token, which
 * made every forged long token a cheap CPU-exhaustion attack (issue 8).
 *
 * Up to 256 digits (most subscribe tokens) decoding is a schoolbook on
 * machine words (decodeShort, below). Longer texts use divide-and-conquer
 * on native BigInts:
 *  - decode: the string is cut into 8-character chunks (62^8 < 2^53, so each
 *    chunk is an exact Number), then halves are joined as `hi * 62^m + lo`.
 *    V8 multiplies big BigInts with Karatsuba, so the whole decode costs
 *    O(M(n)) ≈ O(n^1.6) with a small constant instead of O(n²) with a large
 *    one; BigInt ⇄ hex is linear.
 *  - encode: the reverse, splitting with `divmod 62^m`.
 * Two details matter for speed: V8 multiplies unbalanced operands poorly, so
 * splits are chosen so `hi` and the power have about the same bit length;
 * and 62^m = 31^m · 2^m, so we multiply by the smaller 31^m and shift.
 * The powers are cached; split sizes are rounded to 4 significant bits so the
 * cache stays small (a few dozen entries) whatever lengths callers send.
 */

/** The Branca / base-x base62 alphabet. */
export const BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/** Characters per leaf chunk: 62^8 ≈ 2.2e14 < 2^53, exact in a double. */
const CHUNK = 8;
const CHUNK_BIG = 8n;
const P62_CHUNK = 62 ** CHUNK;
const P62_CHUNK_BIG = 62n ** CHUNK_BIG;
/** Below this many chunks a plain Horner loop beats splitting. */
const HORNER_MAX_CHUNKS = 16;
/** Powers for splits above this many chunks (64 KiB of text) are not cached. */
const CACHE_MAX_CHUNKS = 8192;
/** log(31)/log(62): bits of 31^m relative to bits of an m-digit base62 number. */
const SPLIT_FRACTION = 1 / (1 + Math.log(31) / Math.log(62));
const LOG2_31 = Math.log2(31);
const CHUNK_BITS = CHUNK * Math.log2(62);
/** Below ~34 64-bit digits V8 multiplies schoolbook; operand balance does not matter. */
const KARATSUBA_BITS = 2048;

/** char code (< 128) -> digit value, or -1. */
export const DIGIT = new Int8Array(128).fill(-1);
for (let i = 0; i < 62; i++) DIGIT[BASE62_ALPHABET.charCodeAt(i)] = i;
/** digit value -> ASCII code. */
const ASCII = Uint8Array.from(BASE62_ALPHABET, (c) => c.charCodeAt(0));
const ZERO_CODE = 48; // '0'

/** 31^(8m) by chunk count m. */
const pow31Cache = new Map<number, bigint>();

function pow31Chunks(m: number): bigint {
  let p = pow31Cache.get(m);
  if (p === undefined) {
    p = 31n ** BigInt(CHUNK * m);
    if (m <= CACHE_MAX_CHUNKS) pow31Cache.set(m, p);
  }
  return p;
}

/**
 * Number of low chunks to split off from `n >= 2` chunks so that the high part
 * and 31^(8·lo) have similar bit lengths, rounded to 4 significant bits.
 */
function splitLow(n: number): number {
  let lo = Math.round(n * SPLIT_FRACTION);
  if (lo >= 16) {
    const shift = 28 - Math.clz32(lo); // round to the top 4 bits
    lo = ((lo + (1 << (shift - 1))) >>> shift) << shift;
  }
  if (lo < 1) lo = 1;
  if (lo >= n) lo = n - 1;
  return lo;
}

/** Value of chunks[a..b) as one number, chunks big-endian in base 62^8. */
function joinChunks(chunks: Float64Array, a: number, b: number): bigint {
  const n = b - a;
  if (n <= HORNER_MAX_CHUNKS) {
    let acc = BigInt(chunks[a]!);
    for (let i = a + 1; i < b; i++) acc = acc * P62_CHUNK_BIG + BigInt(chunks[i]!);
    return acc;
  }
  const lo = splitLow(n);
  const mid = b - lo;
  const high = joinChunks(chunks, a, mid);
  const low = joinChunks(chunks, mid, b);
  // high * 62^(8lo) = (high * 31^(8lo)) << 8lo. V8's Karatsuba is much slower
  // for operands of different lengths (40k x 36k bits costs more than 40k x
  // 40k), so shift the shorter factor up to the longer one's length and
  // correct the final shift; all shifts are exact.
  const p = pow31Chunks(lo);
  const highBits = Math.log2(chunks[a]! + 1) + (mid - a - 1) * CHUNK_BITS;
  const powBits = CHUNK * lo * LOG2_31;
  let s = Math.round(powBits - highBits);
  let product: bigint;
  if (powBits < KARATSUBA_BITS || s === 0) {
    product = high * p;
    s = 0;
  } else if (s > 0) {
    product = (high << BigInt(s)) * p;
  } else {
    s = -s;
    product = high * (p << BigInt(s));
  }
  const up = CHUNK * lo - s;
  return (up >= 0 ? product << BigInt(up) : product >> BigInt(-up)) + low;
}

/** Writes `v` (< 62^(8n)) as exactly 8n digits ending before `end`. */
function writeChunks(v: bigint, n: number, out: Uint8Array, end: number): void {
  if (n === 1) {
    let x = Number(v);
    for (let i = end - 1; i >= end - CHUNK; i--) {
      const q = Math.floor(x / 62);
      out[i] = ASCII[x - q * 62]!;
      x = q;
    }
    return;
  }
  if (n <= HORNER_MAX_CHUNKS) {
    for (let k = 0; k < n; k++) {
      const q = v / P62_CHUNK_BIG;
      writeChunks(v - q * P62_CHUNK_BIG, 1, out, end - k * CHUNK);
      v = q;
    }
    return;
  }
  const lo = splitLow(n);
  const shift = BigInt(CHUNK * lo);
  const p = pow31Chunks(lo);
  const q = (v >> shift) / p; // floor(v / 62^(8lo)) = floor(floor(v / 2^(8lo)) / 31^(8lo))
  const r = v - ((q * p) << shift);
  writeChunks(r, lo, out, end);
  writeChunks(q, n - lo, out, end - CHUNK * lo);
}

// ---------------------------------------------------------------------------
// Short texts (most subscribe tokens: ~200 characters) skip BigInt entirely: a
// machine-word schoolbook in doubles (hand-rolled for speed; at this size
// the BigInt path spends most of its time allocating small BigInts). Limbs
// are 24-bit, little-endian: three whole bytes each. They are left
// unnormalised (< 2^26) during the multiply-accumulate passes, so every
// product is independent of the previous one's carry (no dependency chain),
// and limb · 62^4 < 2^26 · 2^23.9 stays exact in a double; one carry pass
// normalises them at the end.

const LIMB = 16_777_216; // 2^24
const INV_LIMB = 1 / LIMB; // exact: a power of two
const GROUP = 4; // digits folded in per multiply-accumulate pass
const P62_GROUP = 62 ** GROUP;
/** Up to this many significant digits (~190 bytes) the schoolbook beats the BigInt path. */
const DIRECT_MAX_DIGITS = 256;
/** Scratch limbs: 62^256 < 2^1525, 64 limbs of 24 bits, plus a carry limb. */
const limbs = new Float64Array(Math.ceil((DIRECT_MAX_DIGITS * Math.log2(62)) / 24) + 2);

/** Decodes `text[from..)` (valid digits, first one not '0', at most DIRECT_MAX_DIGITS) after `zeros` zero bytes. */
function decodeShort(text: string, from: number, zeros: number): Buffer | undefined {
  const end = text.length;
  let n = 0;
  let pos = from;
  let width = (end - from) % GROUP || GROUP;
  let mult = 62 ** width;
  while (pos < end) {
    let prev = 0;
    for (const stop = pos + width; pos < stop; pos++) {
      const code = text.charCodeAt(pos);
      const d = code < 128 ? DIGIT[code]! : -1;
      if (d < 0) return undefined;
      prev = prev * 62 + d;
    }
    for (let i = 0; i < n; i++) {
      const x = limbs[i]! * mult;
      const hi = Math.floor(x * INV_LIMB);
      limbs[i] = x - hi * LIMB + prev;
      prev = hi;
    }
    if (prev > 0) limbs[n++] = prev;
    width = GROUP;
    mult = P62_GROUP;
  }
  let carry = 0;
  for (let i = 0; i < n; i++) {
    const x = limbs[i]! + carry;
    carry = Math.floor(x * INV_LIMB);
    limbs[i] = x - carry * LIMB;
  }
  while (carry > 0) {
    const q = Math.floor(carry * INV_LIMB);
    limbs[n++] = carry - q * LIMB;
    carry = q;
  }
  while (limbs[n - 1] === 0) n--; // the first digit is not 0, so the value is not
  const top = limbs[n - 1]!;
  const size = zeros + 3 * (n - 1) + (top >= 65536 ? 3 : top >= 256 ? 2 : 1);
  const out = Buffer.allocUnsafe(size);
  out.fill(0, 0, zeros);
  let o = size - 1;
  for (let i = 0; i < n - 1; i++, o -= 3) {
    const v = limbs[i]!;
    out[o] = v & 0xff;
    out[o - 1] = (v >>> 8) & 0xff;
    out[o - 2] = v >>> 16;
  }
  for (let v = top; v > 0; v = Math.floor(v / 256)) out[o--] = v & 0xff;
  return out;
}

/**
 * Decodes base62 text to bytes, or returns `undefined` if the text has a
 * character outside the alphabet. The alphabet is checked in one linear pass
 * before any big-number work. `""` decodes to an empty buffer.
 */
export function base62DecodeUnsafe(text: string): Buffer | undefined {
  const len = text.length;
  let zeros = 0;
  while (zeros < len && text.charCodeAt(zeros) === ZERO_CODE) zeros++;
  const digits = len - zeros;
  if (digits === 0) return Buffer.alloc(zeros);
  if (digits <= DIRECT_MAX_DIGITS) return decodeShort(text, zeros, zeros);

  // Pass 1: validate and parse 8-character chunks; the first one may be short.
  const nChunks = Math.ceil(digits / CHUNK);
  const chunks = new Float64Array(nChunks);
  let pos = zeros;
  let width = digits - (nChunks - 1) * CHUNK;
  for (let c = 0; c < nChunks; c++) {
    let v = 0;
    for (const stop = pos + width; pos < stop; pos++) {
      const code = text.charCodeAt(pos);
      const d = code < 128 ? DIGIT[code]! : -1;
      if (d < 0) return undefined;
      v = v * 62 + d;
    }
    chunks[c] = v;
    width = CHUNK;
  }

  // Pass 2: big-number join, then to bytes via hex (linear in V8).
  let hex = joinChunks(chunks, 0, nChunks).toString(16);
  if (hex.length & 1) hex = "0" + hex;
  const out = Buffer.allocUnsafe(zeros + hex.length / 2);
  out.fill(0, 0, zeros);
  out.write(hex, zeros, "hex");
  return out;
}

/** Decodes base62 text to bytes; throws `TypeError` on a character outside the alphabet. */
export function base62Decode(text: string): Buffer {
  const out = base62DecodeUnsafe(text);
  if (out === undefined) throw new TypeError("Non-base62 character");
  return out;
}

/** Encodes bytes as base62 text (leading zero bytes become leading `'0'`s). */
export function base62Encode(bytes: Uint8Array): string {
  const len = bytes.length;
  let zeros = 0;
  while (zeros < len && bytes[zeros] === 0) zeros++;
  if (zeros === len) return "0".repeat(zeros);

  const rest = Buffer.from(bytes.buffer, bytes.byteOffset + zeros, len - zeros);
  const v = BigInt("0x" + rest.toString("hex"));
  // v < 256^k = 2^(8k); enough chunks that 62^(8n) > 2^(8k), plus one spare.
  const nChunks = Math.ceil((8 * rest.length) / (CHUNK * Math.log2(62))) + 1;
  const out = Buffer.allocUnsafe(nChunks * CHUNK);
  writeChunks(v, nChunks, out, out.length);
  let first = 0;
  while (out[first] === ZERO_CODE) first++; // v > 0, so a non-zero digit exists
  return "0".repeat(zeros) + out.toString("latin1", first);
}

/** @internal exposed for tests: number of cached powers. */
export function _base62CacheSize(): number {
  return pow31Cache.size;
}

// Keep the exact-Number chunk bound honest if CHUNK is ever changed.
if (P62_CHUNK > Number.MAX_SAFE_INTEGER) throw new Error("base62: CHUNK too large");
