/**
 * A connection over any `ServerResponse`-like object: Node's own when
 * something wraps its `write` (compression and similar middleware must see
 * every byte), or another stack's. Writes go through `res.write`, and
 * `flush()` when the middleware added one (a compressor buffers otherwise,
 * despite `Cache-Control: no-transform`).
 */
import type { Connection } from "./connection";

/** What a response must offer (Node's `ServerResponse` and `Http2ServerResponse` do). */
export interface ResponseLike {
  write(chunk: Buffer): boolean;
  end(): unknown;
  destroy(): unknown;
  readonly writableLength: number;
  once(event: "drain", listener: () => void): unknown;
  cork?: () => void;
  uncork?: () => void;
  /** Added by `compression` and similar middleware: push buffered output out now. */
  flush?: () => void;
}

export class ResponseConnection implements Connection {
  constructor(private readonly res: ResponseLike) {}

  open(data: Buffer): void {
    this.write(data);
  }

  write(data: Buffer): boolean {
    const ok = this.res.write(data);
    this.res.flush?.();
    return ok;
  }

  writeFrames(frames: readonly Buffer[]): boolean {
    const res = this.res;
    let ok = true;
    res.cork?.();
    for (const frame of frames) ok = res.write(frame);
    res.uncork?.();
    res.flush?.();
    return ok;
  }

  get writableLength(): number {
    return this.res.writableLength;
  }

  onDrain(listener: () => void): void {
    this.res.once("drain", listener);
  }

  end(last?: Buffer): void {
    if (last !== undefined) this.res.write(last);
    this.res.end();
  }

  destroy(): void {
    this.res.destroy();
  }
}
