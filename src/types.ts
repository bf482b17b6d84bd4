/**
 * Public data types shared by every layer. A leaf module: it imports nothing,
 * so framing, tokens, brokers and the hub can all depend on it without cycles.
 */

/** One event as submitted by a backend. All three fields are strings. */
export interface EventInput {
  /** Topic the event is delivered to. */
  topic: string;
  /** SSE event name (`event:` field); CR/LF become spaces on the wire. */
  event: string;
  /** Event data; split into `data:` lines on CRLF, CR and LF. */
  data: string;
}
