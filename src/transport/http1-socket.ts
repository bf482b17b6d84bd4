/**
 * A connection for a plain Node HTTP/1.x response: after the head went out
 * through the response, bytes are written straight to the socket, chunk-coded
 * here when the response uses chunked transfer coding (Node would re-frame
 * each `res.write` per subscriber; here one chunk-coded Buffer serves every
 * subscriber handed the same bytes). Hand-rolled for speed (see bench/).
 */
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { OwnedConnection } from "./connection";

const CRLF = Buffer.from("\r\n");
const EMPTY = Buffer.alloc(0);

/**
 * HTTP/1.1 chunked transfer coding of `parts` as one chunk: `<hex len>\r\n`,
 * the bytes, `\r\n`.
 */
export function httpChunk(parts: readonly Buffer[], bytes: number): Buffer {
  const head = Buffer.from(bytes.toString(16) + "\r\n", "latin1");
  const out = Buffer.allocUnsafe(head.length + bytes + 2);
  head.copy(out, 0);
  let offset = head.length;
  for (const part of parts) offset += part.copy(out, offset);
  CRLF.copy(out, offset);
  return out;
}

/*
 * One-entry cache, shared by every chunked connection: the hub hands the same
 * Buffer to each subscriber of a topic in turn (they are adjacent in a flush),
 * so the chunk-coded copy is built once per Buffer, not once per subscriber.
 * Frames are never mutated once built, so identity is enough.
 */
let lastInput: Buffer | undefined;
let lastChunk: Buffer | undefined;

function chunkOf(data: Buffer): Buffer {
  if (data !== lastInput) {
    lastChunk = httpChunk([data], data.length);
    lastInput = data;
  }
  return lastChunk!;
}

export class Http1SocketConnection extends OwnedConnection<Socket> {
  constructor(
    res: ServerResponse,
    socket: Socket,
    /** Whether the response uses chunked transfer coding (no `Content-Length`, HTTP/1.1). */
    private readonly chunked: boolean,
  ) {
    // The head, the last chunk and a drop go through the response: Node sends
    // the head with the first body write and closes or keeps the connection.
    super(res, socket);
  }

  write(data: Buffer): boolean {
    const socket = this.out;
    // An empty chunk would end a chunked response.
    if (data.length === 0) return socket.writableLength <= socket.writableHighWaterMark;
    return socket.write(this.chunked ? chunkOf(data) : data);
  }

  override writeFrames(frames: readonly Buffer[]): boolean {
    if (!this.chunked) return super.writeFrames(frames);
    let bytes = 0;
    for (const frame of frames) bytes += frame.length;
    // Before cork(): returning here must not leave the socket corked.
    if (bytes === 0) return this.write(EMPTY);
    const socket = this.out;
    socket.cork();
    socket.write(Buffer.from(bytes.toString(16) + "\r\n", "latin1"));
    for (const frame of frames) socket.write(frame);
    const ok = socket.write(CRLF);
    socket.uncork();
    return ok;
  }
}
