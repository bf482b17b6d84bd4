/**
 * Which connection a stream gets: decided here, once per stream.
 */
import { ServerResponse } from "node:http";
import { Http2ServerResponse } from "node:http2";
import type { Connection } from "./connection";
import { Http1SocketConnection } from "./http1-socket";
import { Http2StreamConnection } from "./http2-stream";
import { ResponseConnection, type ResponseLike } from "./response";

export type { Connection } from "./connection";
export type { ResponseLike } from "./response";

/**
 * The connection for a response whose stream head is set (`writeHead`):
 * straight to the socket for a plain HTTP/1.x `ServerResponse`, straight to
 * the h2 stream for a plain `Http2ServerResponse`, and through the response
 * whenever something wrapped its `write` or `end` (compression or similar
 * middleware must see every byte) or it is another stack's object.
 */
export function connectionFor(res: ResponseLike): Connection {
  if (res instanceof ServerResponse) {
    const socket = res.socket;
    if (socket !== null && !socket.destroyed && res.write === ServerResponse.prototype.write && res.end === ServerResponse.prototype.end) {
      return new Http1SocketConnection(res, socket, (res as ServerResponse & { chunkedEncoding?: boolean }).chunkedEncoding === true);
    }
  } else if (res instanceof Http2ServerResponse) {
    if (res.write === Http2ServerResponse.prototype.write && res.end === Http2ServerResponse.prototype.end) return new Http2StreamConnection(res);
  }
  return new ResponseConnection(res);
}
