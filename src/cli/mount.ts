/**
 * The standalone server's request listener: the router under `basePath`,
 * pipelining refused on every path, an optional access log, and a JSON 404
 * for anything else. Knows nothing of sockets, TLS or processes
 * (lifecycle.ts) nor of settings (config.ts).
 */
import type http from "node:http";
import { RESPONSE_ERROR_CODE, SseError } from "../errors";
import type { Logger } from "../logger";
import { refusePipelined, type SseRouter } from "../router";

/**
 * Serves `router` under `basePath` with a bare Node request listener: no
 * Express app per request. The router needs none (it uses plain Node request
 * and response calls), and an app would add its own per-request state to every
 * open stream (measured: ~4 KB of heap per subscriber) and cost connects/s.
 * Anything outside the router's routes gets a JSON 404.
 */
export function mountAt(basePath: string, router: SseRouter, accessLog?: Logger): http.RequestListener {
  // Answered by the router, the one place that maps errors to HTTP (CORS policy, JSON body, logging).
  const notFound = (req: http.IncomingMessage, res: http.ServerResponse, path: string) =>
    router.respondError(req, res, new SseError("not_found", `no route for ${req.method} ${path}`));
  return (req, res) => {
    // Every path, not only the router's: nothing may queue behind a stream.
    if (refusePipelined(req)) return;
    const url = req.url ?? "/";
    const path = url.split("?", 1)[0]!;
    if (accessLog !== undefined) logAccess(accessLog, req, res, path);
    if (basePath !== "/") {
      if (path !== basePath && !path.startsWith(basePath + "/")) return notFound(req, res, path);
      const rest = url.slice(basePath.length);
      req.url = rest.startsWith("/") ? rest : "/" + rest;
    }
    // Express's Router is a (req, res, next) function; `next` means "not ours".
    (router as unknown as (req: http.IncomingMessage, res: http.ServerResponse, next: () => void) => void)(req, res, () =>
      notFound(req, res, path),
    );
  };
}

/**
 * One access-log line when the response is done (for a stream: when it ends,
 * so the duration is the stream's life). The path only: the query string may
 * hold a token.
 */
function logAccess(logger: Logger, req: http.IncomingMessage, res: http.ServerResponse, path: string): void {
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
