/**
 * A connection for a plain Node HTTP/1.x response: after the head went out
 * through the response, bytes are written straight to the socket, chunk-coded
 * here when the response uses chunked transfer coding (Node would re-frame
 * each `res.write` per subscriber; here one chunk-coded Buffer serves every
 * subscriber handed the same bytes). Hand-rolled for speed (see bench/).
 */
import type { ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Connection } from "./connection";

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

export class Http1SocketConnection implements Connection {
  constructor(
    private readonly res: ServerResponse,
    private readonly socket: Socket,
    /** Whether the response uses chunked transfer coding (no `Content-Length`, HTTP/1.1). */
    private readonly chunked: boolean,
  ) {}

  open(data: Buffer): void {
    // Through the response: Node sends the head with the first body write.
    this.res.write(data);
  }

  write(data: Buffer): boolean {
    // An empty chunk would end a chunked response.
    if (data.length === 0) return this.socket.writableLength <= this.socket.writableHighWaterMark;
    return this.socket.write(this.chunked ? chunkOf(data) : data);
  }

  writeFrames(frames: readonly Buffer[]): boolean {
    const socket = this.socket;
    let ok = true;
    if (this.chunked) {
      let bytes = 0;
      for (const frame of frames) bytes += frame.length;
      // Before cork(): returning here must not leave the socket corked.
      if (bytes === 0) return this.write(EMPTY);
      socket.cork();
      socket.write(Buffer.from(bytes.toString(16) + "\r\n", "latin1"));
      for (const frame of frames) socket.write(frame);
      ok = socket.write(CRLF);
    } else {
      socket.cork();
      for (const frame of frames) ok = socket.write(frame);
    }
    socket.uncork();
    return ok;
  }

  get writableLength(): number {
    return this.socket.writableLength;
  }

  onDrain(listener: () => void): void {
    this.socket.once("drain", listener);
  }

  end(last?: Buffer): void {
    // Through the response: Node writes the last chunk and closes or keeps the connection.
    if (last !== undefined) this.res.write(last);
    this.res.end();
  }

  destroy(): void {
    this.res.destroy();
  }
}
