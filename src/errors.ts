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
  /**
   * The broker could not start (e.g. a `RedisBroker` already serving another
   * hub): this hub cannot deliver events until it is recreated. `/events`
   * and `/submit` answer it, and `hub.start()` rejects with it.
   */
  | "broker_failed"
  /**
   * The publisher client could not reach the hub at all (refused, DNS, TLS,
   * timeout): check its URL and that it runs. Never sent by the server; 502
   * only so the code has a status like every other.
   */
  | "hub_unreachable"
  /**
   * Over a connection limit (instance cap, per-subject cap, connect rate) or
   * the `onSubscribe` hook did not answer in time: come back later. An
   * EventSource is answered `200` with a `retry:` instead (see admission.ts).
   */
  | "over_capacity"
  /** The app's `onSubscribe` hook refused the subscription (use your own code for another status). */
  | "subscription_refused"
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
  broker_failed: 503,
  hub_unreachable: 502,
  over_capacity: 503,
  subscription_refused: 403,
  invalid_option: 500,
  internal: 500,
});

/**
 * Brand on every `SseError`, registered globally with `Symbol.for` so that
 * copies of this module (the CJS and ESM builds, the `sse-hub/redis`
 * bundle, two installed versions) recognise each other's errors: errors are
 * told apart by this brand and their `code`, never by class identity.
 */
const kSseError: unique symbol = Symbol.for("sse-hub.error") as never;

export class SseError extends Error {
  readonly code: SseErrorCode;
  /** @internal */
  readonly [kSseError] = true;

  constructor(code: SseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "SseError";
    this.code = code;
  }

  /** `err instanceof SseError` holds for an SseError from any copy of this module. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return isSseError(value);
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

/**
 * Set on a response (as `res[RESPONSE_ERROR_CODE]`) that the router answered
 * with an error, so an access log outside the router can report the code
 * without parsing the body.
 */
export const RESPONSE_ERROR_CODE: unique symbol = Symbol.for("sse-hub.errorCode");

/** True for an {@link SseError} made by any copy of sse-server (checks the brand, not the class). */
export function isSseError(err: unknown): err is SseError {
  return typeof err === "object" && err !== null && (err as { [kSseError]?: unknown })[kSseError] === true;
}
