/**
 * Plain Node request/response helpers of the core: no framework's request
 * or response extensions (`req.query`, `res.json`, …) are used, so the same
 * handlers serve a bare `http.createServer`, `http2.createSecureServer`,
 * Express, Fastify or any Connect-style stack.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Socket } from "node:net";
import { SseError } from "../errors";
import type { ResolvedOptions } from "../options";

/** A request as Node's HTTP/1.1 and HTTP/2 (compatibility API) servers hand it to a request listener. */
export type NodeRequest = IncomingMessage | Http2ServerRequest;
/** A response as Node's HTTP/1.1 and HTTP/2 (compatibility API) servers hand it to a request listener. */
export type NodeResponse = ServerResponse | Http2ServerResponse;
/**
 * A request listener of the hub. Never throws and never rejects: it answers
 * every error itself (the one place that maps errors to HTTP).
 */
export type NodeHandler = (req: NodeRequest, res: NodeResponse) => void;

/** Headers of every event stream; frozen so nothing mutates them per request. */
export const STREAM_HEADERS: Readonly<Record<string, string>> = Object.freeze({
  "Content-Type": "text/event-stream",
  // `no-transform` keeps compression middleware and proxies from buffering.
  "Cache-Control": "no-cache, no-transform",
  Expires: "0",
  // nginx: pass events through at once even where proxy_buffering is on.
  "X-Accel-Buffering": "no",
});

/**
 * Marks a socket that carries an event stream (or will, once a response
 * ahead of it on the connection is sent): it may carry nothing else.
 */
export const kStream = Symbol("sse-server.stream");
export type StreamSocket = Socket & { [kStream]?: true };

/**
 * An event stream must be the only request its connection carries. Node
 * answers pipelined requests in order, so a response queued behind a stream
 * (which never ends) could never be sent, Node never emits `close` for it, and
 * whatever is written to it piles up in memory. A request that arrives on such
 * a connection gets the connection destroyed (the stream ends too; its client
 * reconnects). Returns true when it did that; call it before anything else.
 * (An HTTP/2 session is never marked: it multiplexes streams.)
 */
export function refusePipelined(req: NodeRequest): boolean {
  const socket = req.socket as StreamSocket;
  if (socket[kStream] !== true) return false;
  socket.destroy();
  return true;
}

/**
 * Node pauses a server socket (stops reading it) when a request is pipelined
 * behind output that has not drained, and while a request body is not read;
 * a paused socket never reports that the client closed it, so the stream
 * would linger until a heartbeat write failed. Under a stream the first can
 * only be a request to someone else's route (ours refuse it) that can never
 * be answered in order: drop the connection. Node marks that case alone with
 * `_paused`. The second passes by itself: the stream discards its body as it
 * comes, and reading resumes on the next tick.
 */
export function onStreamSocketPause(this: Socket & { _paused?: boolean }): void {
  if (this._paused === true) this.destroy();
}

export function ignore(): void {}

/**
 * Status and headers of an event stream. `keepAlive` false: the connection
 * closes after the stream's last chunk instead of waiting for another request
 * (which a closing server could only refuse), still without a `Connection`
 * header: Node adds one unless it is removed, and it is illegal in HTTP/2 and
 * not for proxies to see. (With the header removed, Node takes
 * `shouldKeepAlive` alone to decide whether to close.)
 */
export function writeStreamHead(res: ServerResponse, keepAlive: boolean): void {
  res.removeHeader("X-Powered-By");
  res.removeHeader("Connection");
  if (!keepAlive) res.shouldKeepAlive = false;
  res.writeHead(200, STREAM_HEADERS);
}

/** The path of `req.url`, without the query. */
export function pathOf(req: NodeRequest): string {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  return q === -1 ? url : url.slice(0, q);
}

/** Query parameters of the request (the query parser of the host app is not relied on). */
export function queryOf(req: IncomingMessage): URLSearchParams {
  const url = req.url ?? "";
  const q = url.indexOf("?");
  return new URLSearchParams(q === -1 ? "" : url.slice(q + 1));
}

/** Sends a complete response: JSON for objects, text for strings, empty otherwise. */
export function send(res: ServerResponse, status: number, body?: object | string, type?: string): void {
  res.statusCode = status;
  if (body === undefined) {
    res.end();
    return;
  }
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.setHeader("Content-Type", type ?? (typeof body === "string" ? "text/plain; charset=utf-8" : "application/json; charset=utf-8"));
  res.setHeader("Content-Length", Buffer.byteLength(text));
  res.end(text);
}

export function appendVary(res: ServerResponse, field: string): void {
  const current = res.getHeader("Vary");
  const list = current === undefined ? [] : String(current).split(",").map((v) => v.trim()).filter(Boolean);
  if (list.includes("*") || list.some((v) => v.toLowerCase() === field.toLowerCase())) return;
  res.setHeader("Vary", [...list, field].join(", "));
}

/**
 * Token from, in order: `?token=` (the original's way), `Authorization:
 * Bearer`, or the configured cookie. Tokens are secrets: never logged.
 */
export function findToken(req: IncomingMessage, query: URLSearchParams, cookieName: string | undefined): string {
  const tokens = query.getAll("token");
  if (tokens.length > 1) throw new SseError("token_invalid", "token must be given once");
  if (tokens.length === 1 && tokens[0] !== "") return tokens[0]!;
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const match = /^Bearer[ ]+(\S+)\s*$/i.exec(auth);
    if (match) return match[1]!;
  }
  if (cookieName !== undefined) {
    const value = readCookie(req.headers.cookie, cookieName);
    if (value) return value;
  }
  throw new SseError("token_missing", "a subscribe token is required: ?token=, Authorization: Bearer, or cookie");
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      return value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
    }
  }
  return undefined;
}

const MAX_LAST_EVENT_ID = 256;

/**
 * `Last-Event-ID` header, or `lastEventId` query parameter for clients that
 * cannot set headers. An empty id means "no resume", as in the SSE spec; an
 * id we could never have issued is passed on and answered with `sse:reset`.
 */
export function findLastEventId(req: IncomingMessage, query: URLSearchParams): string | undefined {
  const header = req.headers["last-event-id"];
  const fromQuery = query.getAll("lastEventId");
  const raw = typeof header === "string" && header !== "" ? header : fromQuery.length === 1 ? fromQuery[0] : undefined;
  if (raw === undefined || raw === "") return undefined;
  // Anything we would never issue is "unknown" (the broker answers sse:reset).
  return raw.length > MAX_LAST_EVENT_ID || /[\r\n\0]/.test(raw) ? "invalid" : raw;
}

export function applyCors(opts: ResolvedOptions, req: IncomingMessage, res: ServerResponse): void {
  const policy = opts.cors;
  if (policy === false) return;
  if (policy === "*") {
    res.setHeader("Access-Control-Allow-Origin", "*");
  } else {
    // Appended, not set: the host app may vary on other headers too.
    appendVary(res, "Origin");
    const origin = req.headers.origin;
    if (origin === undefined || !policy.has(origin)) return;
    res.setHeader("Access-Control-Allow-Origin", origin);
    res.setHeader("Access-Control-Allow-Credentials", "true");
  }
  if (req.method === "OPTIONS") {
    res.setHeader("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    res.setHeader("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, Cache-Control");
    res.setHeader("Access-Control-Max-Age", "86400");
  }
}

const EVENT_STREAM = /(^|,)\s*text\/event-stream\s*(;|,|$)/i;

/** Does the request list `text/event-stream` in `Accept` (as EventSource does)? Such a client must get 200, never an error status. */
export function acceptsEventStream(req: IncomingMessage): boolean {
  return EVENT_STREAM.test(req.headers.accept ?? "");
}
