/**
 * The standalone server's request listener: the hub under `basePath`,
 * pipelining refused on every path, an optional access log, and a JSON 404
 * for anything else. Knows nothing of sockets, TLS or processes
 * (lifecycle.ts) nor of settings (config.ts).
 */
import { RESPONSE_ERROR_CODE, SseError } from "../errors";
import type { Logger } from "../logger";
import type { NodeHandler, NodeRequest, NodeResponse, SseHub } from "../core";
import { pathOf, refusePipelined } from "../core/http";

/**
 * Serves `hub` under `basePath` with a bare Node request listener (for
 * `http.createServer` and `http2.createSecureServer` alike): no framework per
 * request. An Express app would add its own per-request state to every open
 * stream (measured: ~4 KB of heap per subscriber) and cost connects/s.
 * Anything outside the hub's routes gets a JSON 404.
 */
export function mountAt(basePath: string, hub: SseHub, accessLog?: Logger): NodeHandler {
  // Answered by the hub, the one place that maps errors to HTTP (CORS policy, JSON body, logging).
  const notFound = (req: NodeRequest, res: NodeResponse, path: string) =>
    hub.respondError(req, res, new SseError("not_found", `no route for ${req.method} ${path}`));
  return (req, res) => {
    // Every path, also those outside basePath that never reach the hub: nothing may queue behind a stream.
    if (refusePipelined(req)) return;
    const path = pathOf(req);
    if (accessLog !== undefined) logAccess(accessLog, req, res, path);
    if (basePath !== "/") {
      if (path !== basePath && !path.startsWith(basePath + "/")) return notFound(req, res, path);
      const rest = req.url!.slice(basePath.length);
      req.url = rest.startsWith("/") ? rest : "/" + rest;
    }
    // `next` means "not ours": the 404 names the full path, not the one under basePath.
    hub.handle(req, res, () => notFound(req, res, path));
  };
}

/**
 * One access-log line when the response is done (for a stream: when it ends,
 * so the duration is the stream's life). The path only: the query string may
 * hold a token.
 */
function logAccess(logger: Logger, req: NodeRequest, res: NodeResponse, path: string): void {
  const start = performance.now();
  res.once("close", () => {
    const code = (res as { [RESPONSE_ERROR_CODE]?: string })[RESPONSE_ERROR_CODE];
    logger.info(`${req.method} ${path} ${res.statusCode}`, {
      method: req.method,
      path,
      status: res.statusCode,
      code,
      ms: Math.round(performance.now() - start),
    });
  });
}
