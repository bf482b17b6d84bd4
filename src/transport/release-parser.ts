/**
 * Frees the HTTP/1 parser of a connection that now carries an event stream
 * (issue 17: memory and CPU per stream).
 *
 * Node keeps an `HTTPParser` per connection for the connection's whole life:
 * about 2.3 KB of native memory (llhttp's state and 32 + 32 header slots)
 * plus a JS object and its callbacks. A stream holds its connection for hours
 * and never lets it carry another request (anything pipelined behind a stream
 * is refused, see `refusePipelined` in ../core/http.ts), so the parser is dead weight: about a fifth of
 * what a stream costs. Node frees the parser itself when a connection is
 * upgraded (WebSocket, CONNECT); this takes the same steps (Node 20,
 * lib/_http_server.js, `onParserExecuteCommon`, upgrade branch) once the
 * request is complete, and gives the parser back to Node's pool, where the
 * next connection takes it instead of allocating one (cheaper connects in a
 * reconnect storm).
 *
 * Afterwards the connection no longer goes through Node's HTTP parsing:
 * - bytes from the client (only a pipelined request can follow a complete
 *   `GET /events`) destroy the connection, as `refusePipelined` would;
 * - the client's FIN ends the connection, as Node's own handler does;
 * - Node's `close`, `error`, `drain` and `timeout` handling stay: they do not
 *   use the parser (on `close` the request is still aborted, so `req` emits
 *   `close` as before, and the response's `close` ends the subscriber);
 * - like an upgraded connection, it leaves the server's connection list, the
 *   one `server.closeAllConnections()` and the request timeouts walk: a host
 *   that shuts down calls `router.close()` (which ends every stream) first.
 *
 * Everything it relies on is checked first (the bound listeners by name,
 * `freeParser`); on another Node whose internals differ it does nothing and
 * the stream keeps its parser, as before.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";

interface Parser {
  incoming: IncomingMessage | null;
  _consumed?: boolean;
}

type ParsedSocket = Socket & { parser?: Parser | null; _httpMessage?: unknown };

type FreeParser = (parser: Parser, req: null, socket: Socket) => void;

/** Node's own `freeParser` (unconsume, clean, leave the connection list, back to the pool), if this Node has it. */
const freeParser: FreeParser | undefined = (() => {
  try {
    // A public built-in module (it is in `require("node:module").builtinModules`), without type declarations.
    const common = require("_http_common") as { freeParser?: unknown };
    return typeof common.freeParser === "function" ? (common.freeParser as FreeParser) : undefined;
  } catch {
    return undefined;
  }
})();

/** Streams started in this turn; released together once the parser that read them has returned. */
let queued: Array<[IncomingMessage, ServerResponse]> = [];

/**
 * Schedules the release of `req`'s connection parser; call once the stream
 * has started on `res` (HTTP/1.x only). Runs on the next check phase: the
 * parser is still on the stack while the request is being handled, and the
 * request is marked complete only after its handler returns.
 */
export function releaseParserLater(req: IncomingMessage, res: ServerResponse): void {
  if (freeParser === undefined) return;
  if (queued.length === 0) setImmediate(releaseQueued);
  queued.push([req, res]);
}

function releaseQueued(): void {
  const streams = queued;
  queued = [];
  for (const [req, res] of streams) releaseParser(req, res);
}

/** Frees the parser now if the connection is still this stream's and nothing else is on it; else leaves it alone. */
function releaseParser(req: IncomingMessage, res: ServerResponse): void {
  const socket = req.socket as ParsedSocket;
  const parser = socket.parser;
  // Only a complete request whose response is the connection's current one,
  // with nothing parsed after it (a pipelined request would be `incoming`).
  if (parser == null || parser.incoming !== req || !req.complete || socket.destroyed || res.writableEnded || socket._httpMessage !== res) return;
  const onData = boundListener(socket, "data", "bound socketOnData");
  const onEnd = boundListener(socket, "end", "bound socketOnEnd");
  const onPause = boundListener(socket, "pause", "onSocketPause");
  const onResume = boundListener(socket, "resume", "onSocketResume");
  if (onData === undefined || onEnd === undefined) return;
  // As Node's upgrade path: the handlers that feed or finish the parser go.
  socket.removeListener("data", onData);
  socket.removeListener("end", onEnd);
  // These keep a consumed socket's reading in step with the parser (Node's `unconsume`).
  if (onPause !== undefined) socket.removeListener("pause", onPause);
  if (onResume !== undefined) socket.removeListener("resume", onResume);
  // `null` for the request: Node would add a `parser` property to it (a new hidden class per request under Express, which has swapped its prototype).
  freeParser!(parser, null, socket);
  // Reads now reach JS as `data`: nothing may follow the stream's request.
  socket.on("data", onBytesAfterStream);
  socket.on("end", onClientEnd);
  socket.resume();
}

/** The listener Node registered under `name` (a bound function's name says which it is). */
function boundListener(socket: Socket, event: string, name: string): ((...args: unknown[]) => void) | undefined {
  for (const listener of socket.listeners(event)) if (listener.name === name) return listener as (...args: unknown[]) => void;
  return undefined;
}

/** A request pipelined behind a stream can never be answered: drop the connection (the stream ends; its client reconnects). */
function onBytesAfterStream(this: Socket): void {
  this.destroy();
}

/** The client half-closed: end our side too, as Node does for an HTTP connection (`allowHalfOpen` off). */
function onClientEnd(this: Socket): void {
  if (this.writable) this.end();
}
