/**
 * Compress once, send to all (issue 16): gzip event streams whose CPU and
 * memory do not grow with the number of subscribers. Pure: no sockets, no hub.
 *
 * One {@link SharedDeflate} per topic set compresses each batch of event
 * frames once; the same Buffer is written to every subscriber of that topic
 * set. Each subscriber has a {@link GzipMember}: its own gzip header, its own
 * bytes when it must not use the shared ones, and its own CRC-32 and length
 * for the trailer.
 *
 * ## Why the bytes every subscriber receives are one valid gzip member
 *
 * RFC 1952 §2.3: a member is a 10-byte header, deflate data, then CRC-32 and
 * ISIZE (length mod 2^32) of the uncompressed bytes. A subscriber's deflate
 * data is a concatenation of chunks, each one a sequence of complete blocks
 * with BFINAL = 0 that ends on a byte boundary, closed by one final empty
 * block. A chunk is one of:
 *
 * - **shared**: `deflateRawSync(batch, { dictionary: D, finishFlush:
 *   Z_SYNC_FLUSH })`, where D is the last `windowBytes` of the topic set's
 *   plain stream before this batch. The sync flush ends the output with an
 *   empty stored block, whose header is padded to a byte boundary (RFC 1951
 *   §3.2.4), so the next chunk's first block header starts at bit 0 of the
 *   next byte, where the decoder looks for it. zlib sees nothing but D and
 *   the batch, so every back-reference (RFC 1951 §3.2.3: a distance into the
 *   previously decoded output, across block boundaries) points into D or
 *   into the batch itself.
 * - **stored**: the batch as stored blocks (RFC 1951 §3.2.4: BTYPE 00, LEN,
 *   NLEN, raw bytes; at most 65,535 bytes each), byte-aligned by construction
 *   and referring to nothing. Built once per batch and shared too.
 * - **own**: bytes only this subscriber gets (its first `retry:`/heartbeat, a
 *   replay, `sse:reset`): stored blocks, or for larger ones an independent
 *   `deflateRawSync` without dictionary (no reference before its own start).
 *
 * A subscriber may be sent the shared chunk only when its decoder's output
 * ends with D, i.e. it has received the shared batches just before this one
 * without a gap and without own bytes in between, for at least |D| bytes
 * (stored and shared decode to the same plain bytes). Otherwise it gets the
 * stored chunk, and after `windowBytes` of those it is in step. So every
 * batch is a join point for whoever has the last `windowBytes`: no periodic
 * full flush (which would cost everyone ratio) is needed, and a joiner's
 * extra cost is bounded by `windowBytes` of uncompressed bytes.
 *
 * Every chunk ends flushed, so each event decodes the moment it arrives.
 *
 * Node offers no public synchronous deflate stream that keeps its state
 * between calls (`_processChunk` closes the handle after one sync call);
 * `deflateRawSync` with a `dictionary` is the documented way to give each
 * call the context, and it leaves no native state per topic set in between.
 */
import * as zlib from "node:zlib";
import { SseError } from "../errors";

export interface SharedDeflateOptions {
  /**
   * Bytes of the most recent shared plain text each batch is compressed
   * against (the deflate dictionary), 0 to 32768. More gives a better ratio;
   * a subscriber that joins or falls out of step receives this many bytes
   * uncompressed before it gets the shared bytes. Defaults to `8192`.
   */
  readonly windowBytes?: number;
  /** zlib compression level, 1 (fastest) to 9 (smallest). Defaults to `6`. */
  readonly level?: number;
}

export const GZIP_DEFAULTS = Object.freeze({ windowBytes: 8192, level: 6 });

const EMPTY = Buffer.alloc(0);
/** ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL=0 OS=255 (unknown): RFC 1952 §2.3.1. */
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 0xff]);
/** A final (BFINAL 1) fixed-Huffman block holding only end-of-block: bits 1, 10, 0000000. */
const FINAL_EMPTY_BLOCK = Buffer.from([0x03, 0x00]);
const MAX_STORED = 65535;
/** Own bytes shorter than this are sent stored: deflate would barely shrink them. */
const OWN_DEFLATE_MIN = 128;

function invalid(message: string): never {
  throw new SseError("invalid_option", message);
}

function intOption(name: string, value: unknown, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    invalid(`${name} must be an integer from ${min} to ${max}; got ${String(value)}`);
  }
  return value;
}

/** One batch of one topic set, compressed once. Every field is shared by all its subscribers. */
export class SharedBatch {
  private storedBytes: Buffer | undefined;

  constructor(
    /** Position in the topic set's sequence of batches. */
    readonly seq: number,
    readonly plain: Buffer,
    /** Raw deflate of `plain` against the `dictLength` stream bytes before it, sync-flushed. */
    readonly deflated: Buffer,
    readonly dictLength: number,
    /** Stream length and CRC-32 before and after this batch. */
    readonly startLength: number,
    readonly startCrc: number,
    readonly endLength: number,
    readonly endCrc: number,
  ) {}

  /** `plain` as stored blocks, for subscribers not in step; built on first use, then shared. */
  get stored(): Buffer {
    return (this.storedBytes ??= storedBlocks(this.plain));
  }
}

/** The shared compressor of one topic set. */
export class SharedDeflate {
  private readonly windowBytes: number;
  private readonly zlibOptions: zlib.ZlibOptions;
  /** The last `windowBytes` of the stream: the next batch's dictionary. */
  private window: Buffer = EMPTY;
  private seq = 0;
  private length = 0;
  private crc = 0;

  /** @throws SseError `invalid_option` */
  constructor(options: SharedDeflateOptions = {}) {
    this.windowBytes = intOption("windowBytes", options.windowBytes, GZIP_DEFAULTS.windowBytes, 0, 32768);
    const level = intOption("level", options.level, GZIP_DEFAULTS.level, 1, 9);
    this.zlibOptions = { level, finishFlush: zlib.constants.Z_SYNC_FLUSH };
  }

  /** Compresses one batch for every subscriber of this topic set. */
  batch(plain: Buffer): SharedBatch {
    const dict = this.window;
    const deflated =
      plain.length === 0 ? EMPTY : zlib.deflateRawSync(plain, dict.length > 0 ? { ...this.zlibOptions, dictionary: dict } : this.zlibOptions);
    const startLength = this.length;
    const startCrc = this.crc;
    this.length += plain.length;
    this.crc = zlib.crc32(plain, startCrc);
    const w = this.windowBytes;
    if (plain.length >= w) this.window = w === 0 ? EMPTY : Buffer.from(plain.subarray(plain.length - w));
    else if (plain.length > 0) {
      const keep = Math.min(dict.length, w - plain.length);
      this.window = Buffer.concat([dict.subarray(dict.length - keep), plain], keep + plain.length);
    }
    return new SharedBatch(this.seq++, plain, deflated, dict.length, startLength, startCrc, this.length, this.crc);
  }
}

/**
 * One subscriber's gzip member. O(1) work per shared batch: the CRC of a run
 * of shared batches is derived at its end from the stream CRCs at both ends
 * ({@link crc32Suffix}), not updated per batch.
 */
export class GzipMember {
  private started = false;
  private ended = false;
  /** CRC-32 and length of everything before the current run. */
  private crc = 0;
  private length = 0;
  /** The current run of consecutive shared batches: last seq (-1: none), stream positions. */
  private runSeq = -1;
  private runStartLength = 0;
  private runStartCrc = 0;
  private runEndLength = 0;
  private runEndCrc = 0;

  /** Bytes to write for a shared batch: the shared compressed bytes when in step, else the shared stored ones. */
  shared(batch: SharedBatch): Buffer {
    if (this.ended) throw new Error("gzip member already ended");
    let inStep = false;
    if (this.runSeq !== -1 && this.runSeq === batch.seq - 1) {
      inStep = this.runEndLength - this.runStartLength >= batch.dictLength;
    } else {
      this.closeRun();
      this.runStartLength = batch.startLength;
      this.runStartCrc = batch.startCrc;
      inStep = batch.dictLength === 0;
    }
    this.runSeq = batch.seq;
    this.runEndLength = batch.endLength;
    this.runEndCrc = batch.endCrc;
    const body = inStep ? batch.deflated : batch.stored;
    return this.withHeader(body);
  }

  /** Bytes to write for plain bytes only this subscriber gets. Ends the run of shared batches. */
  own(plain: Buffer): Buffer {
    if (this.ended) throw new Error("gzip member already ended");
    this.closeRun();
    this.crc = zlib.crc32(plain, this.crc);
    this.length += plain.length;
    let body = plain.length < OWN_DEFLATE_MIN ? storedBlocks(plain) : zlib.deflateRawSync(plain, { finishFlush: zlib.constants.Z_SYNC_FLUSH });
    if (body.length > plain.length + 5 * Math.ceil(plain.length / MAX_STORED)) body = storedBlocks(plain);
    return this.withHeader(body);
  }

  /** The last bytes of the stream: a final empty block, CRC-32 and ISIZE (with the header if nothing was sent). */
  end(): Buffer {
    if (this.ended) return EMPTY;
    this.closeRun();
    this.ended = true;
    const trailer = Buffer.allocUnsafe(10);
    FINAL_EMPTY_BLOCK.copy(trailer, 0);
    trailer.writeUInt32LE(this.crc >>> 0, 2);
    trailer.writeUInt32LE(this.length % 2 ** 32, 6);
    return this.withHeader(trailer);
  }

  private withHeader(body: Buffer): Buffer {
    if (this.started) return body;
    this.started = true;
    return Buffer.concat([GZIP_HEADER, body]);
  }

  /** Folds the current run of shared batches into crc/length. */
  private closeRun(): void {
    if (this.runSeq === -1) return;
    const n = this.runEndLength - this.runStartLength;
    this.crc = crc32Combine(this.crc, crc32Suffix(this.runStartCrc, this.runEndCrc, n), n);
    this.length += n;
    this.runSeq = -1;
  }
}

/** `plain` as non-final stored blocks (RFC 1951 §3.2.4); empty input gives no bytes. */
export function storedBlocks(plain: Buffer): Buffer {
  if (plain.length === 0) return EMPTY;
  const blocks = Math.ceil(plain.length / MAX_STORED);
  const out = Buffer.allocUnsafe(plain.length + 5 * blocks);
  let o = 0;
  for (let i = 0; i < plain.length; i += MAX_STORED) {
    const n = Math.min(MAX_STORED, plain.length - i);
    out[o] = 0x00; // BFINAL 0, BTYPE 00, then padding to the byte boundary
    out.writeUInt16LE(n, o + 1);
    out.writeUInt16LE(~n & 0xffff, o + 3);
    o += 5 + plain.copy(out, o + 5, i, i + n);
  }
  return out;
}

/*
 * CRC-32 algebra (zlib's crc32_combine, crc32.c, ported): Node has
 * `zlib.crc32` (≥ 20.15) but no combine. A CRC register update is linear over
 * GF(2), so appending n zero bytes is multiplication by x^(8n) mod P.
 */
const POLY = 0xedb88320;

/** a·b mod P, reflected bit order (zlib's multmodp). `a` must be non-zero. */
function multmodp(a: number, b: number): number {
  let m = 0x80000000;
  let p = 0;
  for (;;) {
    if (a & m) {
      p ^= b;
      if ((a & (m - 1)) === 0) break;
    }
    m >>>= 1;
    b = b & 1 ? (b >>> 1) ^ POLY : b >>> 1;
  }
  return p >>> 0;
}

/** x^(2^k) mod P for k = 0..31. */
const X2N: number[] = (() => {
  const table = [];
  let p = 1 << 30; // x^1
  table.push(p);
  for (let k = 1; k < 32; k++) table.push((p = multmodp(p, p)));
  return table;
})();

/** x^(n·2^k) mod P (zlib's x2nmodp); n up to 2^53. */
function x2nmodp(n: number, k: number): number {
  let p = 0x80000000; // x^0
  while (n > 0) {
    if (n % 2 === 1) p = multmodp(X2N[k & 31]!, p);
    n = Math.floor(n / 2);
    k++;
  }
  return p;
}

/** CRC-32 of A‖B from crc(A), crc(B) and |B| (zlib's crc32_combine). */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  return (multmodp(x2nmodp(lengthB, 3), crcA >>> 0) ^ crcB) >>> 0;
}

/** CRC-32 of B from crc(A), crc(A‖B) and |B|: the inverse of {@link crc32Combine}. */
export function crc32Suffix(crcA: number, crcAB: number, lengthB: number): number {
  return (crcAB ^ multmodp(x2nmodp(lengthB, 3), crcA >>> 0)) >>> 0;
}
