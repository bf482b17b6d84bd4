/**
 * Branca token codec (https://github.com/tuupola/branca-spec):
 * base62( version 0xBA | timestamp u32 BE | nonce 24 B | XChaCha20-Poly1305(payload) ).
 *
 * TEMPORARY: delegates to the npm `branca` package. Issue 8 replaces this with
 * a linear-time codec; the exported signatures are the contract.
 */
import { SseError } from "./errors";
// eslint-disable-next-line @typescript-eslint/no-require-imports
const createBranca: (key: Buffer) => {
  encode(message: Uint8Array, timestamp?: number): string;
  decode(token: string, ttl?: number): Buffer;
  timestamp(token: string): number;
  _nonce: Uint8Array | null;
} = require("branca");

export const BRANCA_VERSION = 0xba;

export interface BrancaEncodeOptions {
  /** Unix seconds stored in the token. Defaults to now. */
  timestamp?: number;
  /** 24-byte nonce. Only for tests and spec vectors; defaults to random. */
  nonce?: Uint8Array;
}

export interface BrancaDecodeOptions {
  /** Reject tokens older than this many seconds. `undefined` or `0` disables the check. */
  ttl?: number;
  /** Current time in unix seconds, for tests. Defaults to now. */
  now?: number;
  /** Reject longer tokens before any decoding work. Defaults to no limit. */
  maxLength?: number;
}

export interface BrancaDecoded {
  payload: Buffer;
  timestamp: number;
}

export function brancaEncode(key: Uint8Array, payload: Uint8Array, opts: BrancaEncodeOptions = {}): string {
  const b = createBranca(Buffer.from(key));
  if (opts.nonce) b._nonce = opts.nonce;
  return b.encode(payload, opts.timestamp);
}

export function brancaDecode(key: Uint8Array, token: string, opts: BrancaDecodeOptions = {}): BrancaDecoded {
  if (opts.maxLength !== undefined && token.length > opts.maxLength) {
    throw new SseError("token_too_long", `token is longer than ${opts.maxLength} characters`);
  }
  const b = createBranca(Buffer.from(key));
  let payload: Buffer;
  let timestamp: number;
  try {
    payload = b.decode(token);
    timestamp = b.timestamp(token);
  } catch {
    throw new SseError("token_invalid", "token is not a valid Branca token for this secret");
  }
  if (opts.ttl) {
    const now = opts.now ?? Math.floor(Date.now() / 1000);
    if (timestamp + opts.ttl < now) throw new SseError("token_invalid", "token has expired");
  }
  return { payload, timestamp };
}
