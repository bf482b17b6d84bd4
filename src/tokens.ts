/**
 * Token payloads: what a subscribe token and a submit token carry, how they
 * are validated after decryption, and helpers for backends to mint them.
 *
 * Payloads are MessagePack. Like the original (Rust serde + rmp), both the map
 * form `{topics: [...]}` and the positional-array form `[[...]]` are accepted,
 * and unknown keys (or extra trailing array elements) are ignored.
 */
import { Decoder, encode } from "@msgpack/msgpack";
import { brancaEncode, createBrancaCodec } from "./branca";
import { SseError } from "./errors";
import { parseSecret } from "./options";

/** One event as submitted by a backend. All three fields are strings. */
export interface EventInput {
  /** Topic the event is delivered to. */
  topic: string;
  /** SSE event name (`event:` field); CR/LF become spaces on the wire. */
  event: string;
  /** Event data; split into `data:` lines on CRLF, CR and LF. */
  data: string;
}

/** Limits applied to decoded payloads; fields of the resolved router options. */
export interface PayloadLimits {
  readonly maxTopics: number;
  readonly maxTopicLength: number;
  readonly maxEventNameLength: number;
  readonly maxEventsPerSubmit: number;
}

function bad(message: string): never {
  throw new SseError("payload_invalid", message);
}

/** One bounded decoder per set of limits (i.e. per router); Decoder is safe to reuse. */
const decoders = new WeakMap<PayloadLimits, Decoder>();

function decodeMsgpack(bytes: Uint8Array, limits: PayloadLimits): unknown {
  // Bounded decoder: a token can never make us allocate more than its own size
  // suggests (declared array/map lengths are capped before allocation).
  let decoder = decoders.get(limits);
  if (decoder === undefined) {
    decoder = new Decoder({
      maxArrayLength: Math.max(limits.maxTopics, limits.maxEventsPerSubmit) * 4 + 16,
      maxMapLength: 64,
    });
    decoders.set(limits, decoder);
  }
  try {
    return decoder.decode(bytes);
  } catch {
    return bad("token payload is not valid MessagePack");
  }
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/** Strings may arrive as msgpack `bin` from older Python encoders; accept valid UTF-8. */
function asString(value: unknown, what: string): string {
  if (typeof value === "string") return value;
  if (value instanceof Uint8Array) {
    try {
      return utf8.decode(value);
    } catch {
      return bad(`${what} is not valid UTF-8`);
    }
  }
  return bad(`${what} must be a string`);
}

/** A struct field in map form (by name) or positional-array form (by index). */
function field(payload: unknown, name: string, index: number, what: string): unknown {
  if (Array.isArray(payload)) {
    if (payload.length <= index) bad(`${what}: missing field "${name}" (position ${index})`);
    return payload[index];
  }
  if (payload !== null && typeof payload === "object" && !(payload instanceof Uint8Array)) {
    if (!Object.prototype.hasOwnProperty.call(payload, name)) bad(`${what}: missing field "${name}"`);
    return (payload as Record<string, unknown>)[name];
  }
  return bad(`${what} must be a map or an array`);
}

function checkName(value: string, what: string, max: number): string {
  if (value.length > max) bad(`${what} is longer than ${max} characters`);
  if (value.indexOf("\0") !== -1) bad(`${what} must not contain NUL`);
  return value;
}

/**
 * Validates a decoded subscribe payload and returns its topics, duplicates
 * merged (the original crashes on duplicates), in first-seen order.
 */
export function parseSubscribePayload(bytes: Uint8Array, limits: PayloadLimits): string[] {
  const payload = decodeMsgpack(bytes, limits);
  const list = field(payload, "topics", 0, "subscribe payload");
  if (!Array.isArray(list)) bad("subscribe payload: topics must be an array of strings");
  const topics = new Set<string>();
  for (const item of list) {
    topics.add(checkName(asString(item, "topic"), "topic", limits.maxTopicLength));
  }
  if (topics.size > limits.maxTopics) bad(`subscription has ${topics.size} topics; at most ${limits.maxTopics} allowed`);
  return [...topics];
}

/** Validates one event object (map or positional form) and returns a clean copy. */
export function parseEvent(raw: unknown, limits: PayloadLimits, what = "event"): EventInput {
  const topic = checkName(asString(field(raw, "topic", 0, what), `${what}.topic`), `${what}.topic`, limits.maxTopicLength);
  const event = checkName(asString(field(raw, "event", 1, what), `${what}.event`), `${what}.event`, limits.maxEventNameLength);
  const data = asString(field(raw, "data", 2, what), `${what}.data`);
  return { topic, event, data };
}

/** Validates a list of events (from a submit payload or `publish()`). */
export function parseEvents(list: unknown, limits: PayloadLimits): EventInput[] {
  if (!Array.isArray(list)) bad("events must be an array");
  if (list.length > limits.maxEventsPerSubmit) bad(`${list.length} events in one submit; at most ${limits.maxEventsPerSubmit} allowed`);
  return list.map((raw, i) => parseEvent(raw, limits, `events[${i}]`));
}

/** Validates a decoded submit payload and returns its events in order. */
export function parseSubmitPayload(bytes: Uint8Array, limits: PayloadLimits): EventInput[] {
  const payload = decodeMsgpack(bytes, limits);
  return parseEvents(field(payload, "events", 0, "submit payload"), limits);
}

/** What a token opener checks besides the key. */
export interface TokenRules {
  /** Maximum age in seconds; `0` disables the age check (and the next one). */
  readonly ttl: number;
  /** Seconds the timestamp may lie in the future. */
  readonly clockSkew: number;
  /** Longer tokens are refused before any decoding. */
  readonly maxLength: number;
}

/**
 * A verifier bound to one key: decrypts and checks a token, returning the
 * payload bytes. The codec (key schedule) is shared by every opener made from
 * it; each opener has its own rules (subscribe and submit tokens have
 * different length caps).
 */
export function createTokenOpener(key: Uint8Array): (rules: TokenRules) => (token: string) => Buffer {
  const codec = createBrancaCodec(key); // key schedule once per router, not per token
  return (rules) => {
    const options = { ttl: rules.ttl > 0 ? rules.ttl : undefined, maxFuture: rules.clockSkew, maxLength: rules.maxLength };
    return (token) => codec.decode(token, options).payload;
  };
}

/**
 * Mints a subscribe token for `GET /events?token=…`, as a backend would.
 * @param secret 64 hex characters or 32 bytes, the server's `SSE_SECRET`.
 */
export function subscribeToken(secret: string | Uint8Array, topics: readonly string[]): string {
  return brancaEncode(parseSecret(secret), encode({ topics }));
}

/**
 * Mints a submit token: the raw body of `POST /submit`.
 * @param secret 64 hex characters or 32 bytes, the server's `SSE_SECRET`.
 */
export function submitToken(secret: string | Uint8Array, events: readonly EventInput[]): string {
  return brancaEncode(
    parseSecret(secret),
    encode({ events: events.map((e) => ({ topic: e.topic, event: e.event, data: e.data })) }),
  );
}
