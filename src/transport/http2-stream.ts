/**
 * A connection for an HTTP/2 stream: Node's `Http2ServerResponse`
 * (compatibility API) or a raw `ServerHttp2Stream`. nghttp2 frames the bytes
 * (DATA frames on the shared session), so nothing is coded here; writes go
 * straight to the stream, whose `writableLength` bounds a slow client (the
 * session's socket is shared by every stream and says nothing about one).
 */
import type { Http2ServerResponse, ServerHttp2Stream } from "node:http2";
import { OwnedConnection } from "./connection";

export class Http2StreamConnection extends OwnedConnection<ServerHttp2Stream> {
  /**
   * @param target the compatibility response (its head is sent with the
   *   first write, through it), or a stream whose head was already sent
   *   with `stream.respond()`.
   */
  constructor(target: Http2ServerResponse | ServerHttp2Stream) {
    super(target, "stream" in target ? target.stream : target);
  }

  write(data: Buffer): boolean {
    return this.out.write(data);
  }
}
