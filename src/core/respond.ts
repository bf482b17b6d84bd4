/**
 * The one place that maps errors to HTTP: every error a handler of the hub
 * meets, and every error a host hands to `respondError`, is answered here.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { RESPONSE_ERROR_CODE, SseError, isSseError } from "../errors";
import type { Logger } from "../logger";
import { pathOf, send } from "./http";

/**
 * Answers `err`: JSON `{"error": code, "message": text}` with the code's
 * status, `Allow` on a 405 when `allow` is given. Never echoes tokens or
 * bodies. A response whose stream already started is destroyed instead.
 */
export function respondWithError(err: unknown, req: IncomingMessage, res: ServerResponse, logger: Logger, allow?: string): void {
  if (res.headersSent) {
    // The stream already started; nothing useful can be sent. Drop the connection.
    res.destroy();
    return;
  }
  const sseError = toSseError(err);
  // Paths only, never the request line or headers: they may carry tokens.
  // SseError messages name the check that failed, never the token itself.
  if (sseError.code === "internal") {
    logger.error(`internal error on ${req.method} ${pathOf(req)}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  } else {
    logger.debug(`${req.method} ${pathOf(req)} refused: ${sseError.message}`, { status: sseError.status, code: sseError.code });
  }
  (res as { [RESPONSE_ERROR_CODE]?: string })[RESPONSE_ERROR_CODE] = sseError.code;
  if (sseError.code === "method_not_allowed" && allow !== undefined) res.setHeader("Allow", allow);
  send(res, sseError.status, sseError.toJSON());
}

/** Errors of other origin that carry an HTTP-style 4xx `status` are the client's fault; give them our code. */
function toSseError(err: unknown): SseError {
  if (isSseError(err)) return err;
  if (err === null || typeof err !== "object") return new SseError("internal", "internal error");
  const { status } = err as { status?: unknown };
  if (typeof status === "number" && status >= 400 && status < 500) {
    return new SseError("payload_invalid", "request body could not be read");
  }
  return new SseError("internal", "internal error");
}
