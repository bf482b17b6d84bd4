/**
 * One error class for everything sse-server reports, with a stable `code`.
 *
 * Codes are part of the public API: clients see them in JSON error bodies and
 * programs can switch on `err.code`. The HTTP status for each code lives in
 * {@link HTTP_STATUS}, the single place that maps errors to HTTP.
 */
export type SseErrorCode =
  /** No token in the query string, `Authorization` header or cookie. */
  | "token_missing"
  /** Token is malformed, forged, encrypted with another key, or expired. */
  | "token_invalid"
  /** Token is longer than `maxSubscribeTokenLength` (subscribe) or `maxTokenLength` (submit); rejected before any decoding. */
  | "token_too_long"
  /** Token decrypts but its msgpack payload is not the expected shape. */
  | "payload_invalid"
  /** Request body (declared or received, or decompressed) is larger than `bodyLimit`. */
  | "payload_too_large"
  /** The request body did not arrive within `bodyTimeout`. */
  | "request_timeout"
  /** Route exists but not for this method. */
  | "method_not_allowed"
  /** No such route under the router. */
  | "not_found"
  /** The router (or its hub) has been closed. */
  | "closed"
  /** The broker (e.g. Redis) cannot accept events right now. */
  | "broker_unavailable"
  /** An option passed to a constructor is invalid (programmer error). */
  | "invalid_option"
  /** A bug or an unexpected failure on our side; details are logged, not sent. */
  | "internal";

/** HTTP status sent for each error code. */
export const HTTP_STATUS: Readonly<Record<SseErrorCode, number>> = Object.freeze({
  token_missing: 401,
  token_invalid: 401,
  token_too_long: 401,
  payload_invalid: 400,
  payload_too_large: 413,
  request_timeout: 408,
  method_not_allowed: 405,
  not_found: 404,
  closed: 503,
  broker_unavailable: 503,
  invalid_option: 500,
  internal: 500,
});

export class SseError extends Error {
  readonly code: SseErrorCode;

  constructor(code: SseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SseError";
    this.code = code;
  }

  /** HTTP status for this error. */
  get status(): number {
    return HTTP_STATUS[this.code];
  }

  /** The JSON body clients receive: `{"error": code, "message": text}`. */
  toJSON(): { error: SseErrorCode; message: string } {
    return { error: this.code, message: this.message };
  }
}

export function isSseError(err: unknown): err is SseError {
  return err instanceof SseError;
}
