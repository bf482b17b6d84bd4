/**
 * A connection over any `ServerResponse`-like object: Node's own when
 * something wraps its `write` (compression and similar middleware must see
 * every byte), or another stack's. Writes go through `res.write`, and
 * `flush()` when the middleware added one (a compressor buffers otherwise,
 * despite `Cache-Control: no-transform`).
 */
import { OwnedConnection } from "./connection";

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

export class ResponseConnection extends OwnedConnection<ResponseLike> {
  constructor(res: ResponseLike) {
    super(res, res);
  }

  override open(data: Buffer): void {
    this.write(data);
  }

  write(data: Buffer): boolean {
    const ok = this.out.write(data);
    this.out.flush?.();
    return ok;
  }

  override writeFrames(frames: readonly Buffer[]): boolean {
    const ok = super.writeFrames(frames);
    this.out.flush?.();
    return ok;
  }
}
