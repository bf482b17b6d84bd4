/**
 * What the hub writes a stream's bytes to. The hub hands over complete SSE
 * frames (already gzip-coded when the stream is compressed: that is content
 * coding, the hub's business); how they travel (HTTP/1.1 chunked coding
 * straight to the socket, a response object some middleware wraps, an HTTP/2
 * stream) is the connection's.
 *
 * The client closing the stream is not reported here: the hub listens for
 * `close` on the response itself with one shared listener (no closure per
 * connection).
 */
export interface Connection {
  /** Writes the first bytes of the body; they go out with the response head. */
  open(data: Buffer): void;
  /**
   * Writes `data` as one piece. False once more than the high-water mark is
   * buffered (wait for {@link onDrain} before writing more of a replay).
   * The same Buffer may be handed to many connections in one flush.
   */
  write(data: Buffer): boolean;
  /** Writes several frames as one piece, without copying them into one Buffer. */
  writeFrames(frames: readonly Buffer[]): boolean;
  /** Bytes accepted but not yet handed to the kernel (the slow-client bound). */
  readonly writableLength: number;
  /** Calls `listener` once, the next time the buffered bytes drained. */
  onDrain(listener: () => void): void;
  /** Ends the stream cleanly, after `last` when given (a gzip trailer). */
  end(last?: Buffer): void;
  /** Drops the stream and its buffered bytes at once (a client too slow to keep up). */
  destroy(): void;
}

/** Where a connection writes body bytes and reads backpressure from: a socket, an h2 stream, or the response itself. */
export interface ByteSink {
  write(chunk: Buffer): boolean;
  readonly writableLength: number;
  once(event: "drain", listener: () => void): unknown;
  cork?: () => void;
  uncork?: () => void;
}

/** What owns the stream: its first write sends the response head; it ends and drops the stream. */
export interface StreamOwner {
  write(chunk: Buffer): boolean;
  end(): unknown;
  destroy(): unknown;
}

/**
 * What every connection shares: bytes go to `out` (which also tells the
 * backpressure), while the head, the end and a drop go through `owner`, so
 * the response's own bookkeeping (last chunk, keep-alive, `close`) stays
 * Node's. Subclasses decide how `write` codes the bytes.
 */
export abstract class OwnedConnection<Out extends ByteSink = ByteSink> implements Connection {
  constructor(
    protected readonly owner: StreamOwner,
    protected readonly out: Out,
  ) {}

  abstract write(data: Buffer): boolean;

  open(data: Buffer): void {
    this.owner.write(data);
  }

  writeFrames(frames: readonly Buffer[]): boolean {
    const out = this.out;
    let ok = true;
    out.cork?.();
    for (const frame of frames) ok = out.write(frame);
    out.uncork?.();
    return ok;
  }

  get writableLength(): number {
    return this.out.writableLength;
  }

  onDrain(listener: () => void): void {
    this.out.once("drain", listener);
  }

  end(last?: Buffer): void {
    if (last !== undefined) this.owner.write(last);
    this.owner.end();
  }

  destroy(): void {
    this.owner.destroy();
  }
}
