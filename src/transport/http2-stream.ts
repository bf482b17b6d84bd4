/**
 * A connection for an HTTP/2 stream: Node's `Http2ServerResponse`
 * (compatibility API) or a raw `ServerHttp2Stream`. nghttp2 frames the bytes
 * (DATA frames on the shared session), so nothing is coded here; writes go
 * straight to the stream, whose `writableLength` bounds a slow client (the
 * session's socket is shared by every stream and says nothing about one).
 */
import type { Http2ServerResponse, ServerHttp2Stream } from "node:http2";
import type { Connection } from "./connection";

/** What is used of the compatibility response or of the stream itself. */
interface Target {
  write(chunk: Buffer): boolean;
  end(): unknown;
  destroy(): unknown;
}

export class Http2StreamConnection implements Connection {
  private readonly stream: ServerHttp2Stream;
  private readonly target: Target;
  /**
   * @param target the compatibility response (its head is sent with the
   *   first write, through it), or a stream whose head was already sent
   *   with `stream.respond()`.
   */
  constructor(target: Http2ServerResponse | ServerHttp2Stream) {
    this.stream = "stream" in target ? target.stream : target;
    this.target = target;
  }

  open(data: Buffer): void {
    this.target.write(data);
  }

  write(data: Buffer): boolean {
    return this.stream.write(data);
  }

  writeFrames(frames: readonly Buffer[]): boolean {
    const stream = this.stream;
    let ok = true;
    stream.cork();
    for (const frame of frames) ok = stream.write(frame);
    stream.uncork();
    return ok;
  }

  get writableLength(): number {
    return this.stream.writableLength;
  }

  onDrain(listener: () => void): void {
    this.stream.once("drain", listener);
  }

  end(last?: Buffer): void {
    if (last !== undefined) this.target.write(last);
    this.target.end();
  }

  destroy(): void {
    this.target.destroy();
  }
}
