/**
 * Reads the body of `POST /submit`, bounded in bytes and in time, with plain
 * Node stream calls (so the router works in any app, mounted anywhere).
 *
 * Why not `express.raw()` (body-parser): on any error it reads the rest of the
 * request to its end before answering, so a `Content-Length: 1000000000` got
 * its 413 only after a gigabyte had been received, and a body that trickles
 * was bounded only by Node's 300 s `requestTimeout`. Here:
 *  - a declared `Content-Length` above the limit is refused before a byte of
 *    the body is read;
 *  - the body must arrive within `bodyTimeout`;
 *  - on any failure reading stops and the response carries
 *    `Connection: close`, so the unread rest of the body is never parsed as a
 *    next request and never waited for.
 * Compressed bodies (`Content-Encoding` gzip, deflate, br, as body-parser
 * accepted) are decompressed; the limit applies to the bytes on the wire and
 * to the decompressed bytes (a small gzip bomb is cut at the limit).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Transform } from "node:stream";
import zlib from "node:zlib";
import { SseError } from "../errors";

/** The options that bound a body; fields of the resolved router options. */
export interface BodyLimits {
  /** Maximum bytes, on the wire and after decompression. */
  readonly bodyLimit: number;
  /** Milliseconds the whole body may take to arrive; `0` disables the timer. */
  readonly bodyTimeout: number;
}

const DECOMPRESSORS: Readonly<Record<string, () => Transform>> = Object.freeze({
  gzip: () => zlib.createGunzip(),
  deflate: () => zlib.createInflate(),
  br: () => zlib.createBrotliDecompress(),
});

const EMPTY = Buffer.alloc(0);

function tooLarge(limit: number): SseError {
  return new SseError("payload_too_large", `request body is larger than ${limit} bytes`);
}

/** The rest of this request will not be read: the connection must not carry another one. */
function closeAfterResponse(res: ServerResponse): void {
  if (!res.headersSent) res.setHeader("Connection", "close");
}

/**
 * The request body as bytes. Rejects with `SseError` `payload_too_large`
 * (413), `request_timeout` (408) or `payload_invalid` (unsupported or broken
 * encoding, aborted request); in each case the response is already marked
 * `Connection: close`.
 */
export function readBody(req: IncomingMessage, res: ServerResponse, limits: BodyLimits): Promise<Buffer> {
  // The host app's own body parser may have run first and consumed the stream.
  const parsed = (req as { body?: unknown }).body;
  if (Buffer.isBuffer(parsed)) return Promise.resolve(parsed);
  if (typeof parsed === "string") return Promise.resolve(Buffer.from(parsed, "utf8"));
  if (req.readableEnded) return Promise.resolve(EMPTY);

  const limit = limits.bodyLimit;
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > limit) {
    // Answer from the header alone: nothing of the body has been read.
    closeAfterResponse(res);
    return Promise.reject(tooLarge(limit));
  }
  const encoding = (req.headers["content-encoding"] ?? "identity").trim().toLowerCase();
  let inflate: Transform | undefined;
  if (encoding !== "identity") {
    const make = DECOMPRESSORS[encoding];
    if (make === undefined) {
      closeAfterResponse(res);
      return Promise.reject(new SseError("payload_invalid", "unsupported Content-Encoding; use gzip, deflate, br or none"));
    }
    inflate = make();
  }

  return new Promise<Buffer>((resolve, reject) => {
    const source = inflate ?? req;
    const chunks: Buffer[] = [];
    let size = 0;
    let wire = 0;
    let settled = false;
    const timer =
      limits.bodyTimeout > 0
        ? setTimeout(() => fail(new SseError("request_timeout", `request body did not arrive within ${limits.bodyTimeout} ms`)), limits.bodyTimeout)
        : undefined;

    const onWire = (chunk: Buffer) => {
      wire += chunk.length;
      if (wire > limit) fail(tooLarge(limit));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) fail(tooLarge(limit));
      else chunks.push(chunk);
    };
    const onEnd = () => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(size === 0 ? EMPTY : Buffer.concat(chunks, size));
    };
    const onError = () => fail(new SseError("payload_invalid", inflate ? "request body could not be decompressed" : "request body could not be read"));
    // The client went away before the body was complete (a complete request
    // also closes, but only after its data has been read).
    const onClose = () => {
      if (!req.complete) fail(new SseError("payload_invalid", "request was aborted"));
    };

    function cleanup(): void {
      clearTimeout(timer);
      req.off("data", onWire);
      req.off("close", onClose);
      req.off("error", onError);
      source.off("data", onData);
      source.off("end", onEnd);
      source.off("error", onError);
    }

    function fail(err: SseError): void {
      if (settled) return;
      settled = true;
      cleanup();
      if (inflate !== undefined) {
        req.unpipe(inflate);
        inflate.on("error", () => undefined).destroy();
      }
      // Stop reading; the socket is closed once the error answer is sent.
      req.pause();
      closeAfterResponse(res);
      reject(err);
    }

    req.on("close", onClose);
    req.on("error", onError);
    if (inflate !== undefined) {
      // Decompressed bytes are counted in onData; count the wire bytes too.
      req.on("data", onWire);
      source.on("error", onError);
      req.pipe(inflate);
    }
    source.on("data", onData);
    source.on("end", onEnd);
  });
}
