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
import { SseError } from "../errors";
import type { EventInput } from "../types";
import { parseSecret } from "../validate";

export type { EventInput } from "../types";

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

/**
 * Deepest container nesting a payload may have. Real payloads nest 3 levels
 * (submit: map → events array → event map); 32 leaves room for an app's own
 * claims in a subscribe token (hooks see the whole payload).
 */
export const MAX_PAYLOAD_DEPTH = 32;

/** Bytes after a head byte of a scalar (0x00..0xff), or -1 for containers and variable-length heads. */
const FIXED_SIZE = new Int8Array(256).fill(0);
for (const [head, size] of [
  [0xca, 4], [0xcb, 8], [0xcc, 1], [0xcd, 2], [0xce, 4], [0xcf, 8],
  [0xd0, 1], [0xd1, 2], [0xd2, 4], [0xd3, 8], [0xd4, 2], [0xd5, 3], [0xd6, 5], [0xd7, 9], [0xd8, 17],
] as const) {
  FIXED_SIZE[head] = size;
}
const depthScratch = new Float64Array(MAX_PAYLOAD_DEPTH + 1);

/**
 * One linear pass over the MessagePack structure, allocating nothing, before
 * the real decode: refuses nesting deeper than MAX_PAYLOAD_DEPTH, and
 * declared lengths or element counts the remaining bytes cannot hold. Why:
 * @msgpack/msgpack has no depth limit, and a genuine (right key) token of
 * 10 KB of `{a:{a:{a:…}}}` took ~2–15 ms to decode, superlinear in the depth.
 * (Only the secret's holder can make such a token, but a buggy backend is
 * reason enough.) Returns an error message, or undefined if the structure is
 * plausible; the decoder still does the full validation.
 * @internal exported for tests.
 */
export function checkStructure(b: Uint8Array): string | undefined {
  const len = b.length;
  const left = depthScratch; // values still to read at each open level
  let depth = 0;
  left[0] = 1;
  let pos = 0;
  for (;;) {
    while (left[depth] === 0) {
      if (depth === 0) return undefined;
      depth--;
    }
    left[depth]!--;
    if (pos >= len) return "token payload is not valid MessagePack";
    const head = b[pos++]!;
    let count = 0; // elements of a container
    let skip = 0; // bytes of a scalar after its head (and length)
    if (head < 0x80 || head >= 0xe0 || head === 0xc0 || head === 0xc2 || head === 0xc3) {
      // fixint, nil, booleans: the head is the value
    } else if (head < 0x90) count = 2 * (head & 0x0f);
    else if (head < 0xa0) count = head & 0x0f;
    else if (head < 0xc0) skip = head & 0x1f;
    else if (head === 0xc1) return "token payload is not valid MessagePack";
    else if (FIXED_SIZE[head]! > 0) skip = FIXED_SIZE[head]!;
    else {
      // Variable length: 1, 2 or 4 length bytes (big-endian), then the body.
      const lenBytes = head === 0xc4 || head === 0xc7 || head === 0xd9 ? 1 : head === 0xc5 || head === 0xc8 || head === 0xda || head === 0xdc || head === 0xde ? 2 : 4;
      if (pos + lenBytes > len) return "token payload is not valid MessagePack";
      let n = 0;
      for (let i = 0; i < lenBytes; i++) n = n * 256 + b[pos++]!;
      if (head >= 0xdc) count = head >= 0xde ? 2 * n : n; // array16/32, map16/32
      else skip = head === 0xc7 || head === 0xc8 || head === 0xc9 ? n + 1 : n; // ext: type byte
    }
    if (count > 0) {
      // Every element takes at least one byte.
      if (count > len - pos) return "token payload is not valid MessagePack";
      if (depth === MAX_PAYLOAD_DEPTH) return `token payload is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`;
      left[++depth] = count;
    } else {
      pos += skip;
      if (pos > len) return "token payload is not valid MessagePack";
    }
  }
}

function decodeMsgpack(bytes: Uint8Array, limits: PayloadLimits): unknown {
  const structural = checkStructure(bytes);
  if (structural !== undefined) bad(structural);
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
  // An empty topic or event name is a backend bug, not a wish: nothing could be
  // delivered to it (an empty `event:` would even turn into a "message" event).
  if (value.length === 0) bad(`${what} must not be empty`);
  if (value.length > max) bad(`${what} is longer than ${max} characters`);
  if (value.indexOf("\0") !== -1) bad(`${what} must not contain NUL`);
  return value;
}

/** A subscribe token's payload, validated. */
export interface SubscribePayload {
  /** Distinct topics, in first-seen order. */
  readonly topics: string[];
  /** Optional subject (e.g. a user id): per-subject limits and hooks. */
  readonly sub: string | undefined;
  /** The stream wants `sse:presence` events. */
  readonly presence: boolean;
  /** The whole decoded payload (map or positional array), unknown keys included, for hooks. */
  readonly payload: unknown;
}

/** An optional field: absent, or `nil`, is `undefined` (older tokens, other encoders). */
function optionalField(payload: unknown, name: string, index: number): unknown {
  if (Array.isArray(payload)) return payload[index] ?? undefined;
  return (payload as Record<string, unknown>)[name] ?? undefined;
}

/** Topics of a subscribe or presence payload: strings, duplicates merged, at least one, within limits. */
function parseTopics(list: unknown, limits: PayloadLimits, what: string): string[] {
  if (!Array.isArray(list)) bad(`${what}: topics must be an array of strings`);
  const topics = new Set<string>();
  for (const item of list) {
    topics.add(checkName(asString(item, "topic"), "topic", limits.maxTopicLength));
  }
  if (topics.size > limits.maxTopics) bad(`${what} has ${topics.size} topics; at most ${limits.maxTopics} allowed`);
  // Otherwise an endless stream that can never deliver anything.
  if (topics.size === 0) bad(`${what} has no topics; give at least one`);
  return [...topics];
}

/**
 * Validates a decoded subscribe payload: `topics` (duplicates merged, the
 * original crashes on them), and the optional `sub` (string) and `presence`
 * (boolean), by name in map form or at positions 1 and 2 in array form.
 */
export function parseSubscribeToken(bytes: Uint8Array, limits: PayloadLimits): SubscribePayload {
  const payload = decodeMsgpack(bytes, limits);
  const topics = parseTopics(field(payload, "topics", 0, "subscribe payload"), limits, "subscription");
  const rawSub = optionalField(payload, "sub", 1);
  const sub = rawSub === undefined ? undefined : checkName(asString(rawSub, "sub"), "sub", limits.maxTopicLength);
  const rawPresence = optionalField(payload, "presence", 2);
  if (rawPresence !== undefined && typeof rawPresence !== "boolean") bad("subscribe payload: presence must be a boolean");
  return { topics, sub, presence: rawPresence === true, payload };
}

/** The topics of a subscribe payload; see {@link parseSubscribeToken}. */
export function parseSubscribePayload(bytes: Uint8Array, limits: PayloadLimits): string[] {
  return parseSubscribeToken(bytes, limits).topics;
}

/** Validates a decoded `POST /presence` payload `{topics: [...]}` and returns its topics. */
export function parsePresencePayload(bytes: Uint8Array, limits: PayloadLimits): string[] {
  return parseTopics(field(decodeMsgpack(bytes, limits), "topics", 0, "presence payload"), limits, "presence query");
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

/** Any JSON value: what `publish()` accepts as `data` besides a string. */
export type JsonValue = string | number | boolean | null | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** An event for in-process `publish()`: like {@link EventInput}, but `data` may be any JSON value. */
export interface PublishEventInput {
  topic: string;
  event: string;
  /** A string is sent as is; any other JSON value is sent as `JSON.stringify(data)`. */
  data: string | JsonValue;
}

/**
 * Validates the events of `publish()`: non-string `data` is serialized once
 * with `JSON.stringify` (as better-sse does), then everything is checked like
 * a `/submit` payload, so `/submit` itself stays strings-only and byte-compatible.
 */
export function parsePublishEvents(list: unknown, limits: PayloadLimits): EventInput[] {
  // Within the limit only: a too-long list is reported by parseEvents without serializing it first.
  if (!Array.isArray(list) || list.length > limits.maxEventsPerSubmit) return parseEvents(list, limits);
  return parseEvents(list.map(withJsonData), limits);
}

function withJsonData(raw: unknown, i: number): unknown {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return raw;
  const data = (raw as { data?: unknown }).data;
  if (data === undefined || typeof data === "string" || data instanceof Uint8Array) return raw;
  let json: string | undefined;
  try {
    json = JSON.stringify(data);
  } catch (err) {
    // BigInt, cycles: say which event, not just "TypeError".
    return bad(`events[${i}].data cannot be serialized as JSON: ${(err as Error).message}`);
  }
  return { ...(raw as object), data: json };
}


/** Longest idempotency key accepted, in UTF-16 code units (a UUID has 36): keeps remembered keys small. */
export const MAX_IDEMPOTENCY_KEY_LENGTH = 128;

/**
 * Validates an optional idempotency key (from a submit payload or
 * `publish()`): absent (`undefined`, msgpack nil) or a non-empty string of
 * at most {@link MAX_IDEMPOTENCY_KEY_LENGTH} characters.
 */
export function parseIdempotencyKey(value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined;
  const key = asString(value, "idempotencyKey");
  if (key === "") bad("idempotencyKey must not be empty");
  return checkName(key, "idempotencyKey", MAX_IDEMPOTENCY_KEY_LENGTH);
}

/** A validated submit payload. */
export interface SubmitPayload {
  readonly events: EventInput[];
  readonly idempotencyKey: string | undefined;
}

/**
 * Validates a decoded submit payload: its events in order and its optional
 * idempotency key (`idempotencyKey` beside `events`, or the second element
 * of the positional form; servers before it ignore it as an unknown key).
 */
export function parseSubmitPayload(bytes: Uint8Array, limits: PayloadLimits): SubmitPayload {
  const payload = decodeMsgpack(bytes, limits);
  const events = parseEvents(field(payload, "events", 0, "submit payload"), limits);
  const key = Array.isArray(payload) ? payload[1] : (payload as Record<string, unknown>)["idempotencyKey"];
  return { events, idempotencyKey: parseIdempotencyKey(key) };
}

/** An opened token: its payload and, when a TTL applies, the moment it stops being accepted. */
export interface OpenedToken {
  readonly payload: Buffer;
  /**
   * Unix ms from which this token is rejected as expired, or `undefined`
   * when the TTL is 0 (never). The Branca check rejects when `timestamp + ttl
   * < now` in whole seconds, so the token is accepted through the whole
   * second `timestamp + ttl`: it expires at `(timestamp + ttl + 1) * 1000`.
   * Live streams end exactly then, so a reconnect with it is refused (401).
   */
  readonly expiresAt: number | undefined;
}

/** What a token opener checks besides the key. */
export interface TokenRules {
  /** Maximum age in seconds; `0` disables the age check (and the next one). */
  readonly ttl: number;
  /** Seconds the timestamp may lie in the future. */
  readonly clockSkew: number;
  /** Longer tokens are refused before any decoding. */
  readonly maxLength: number;
  /**
   * Shed long tokens unverified while failed verifications of long tokens
   * exceed their CPU budget (see {@link InvalidTokenBudget}); the opener then
   * throws `over_capacity`. For subscribe tokens, which anyone can send.
   */
  readonly shedWhenFlooded?: boolean;
}

/**
 * Tokens up to this many characters are always verified: ~15 µs each at
 * 200 characters, no more than the HTTP request around them, and most
 * subscribe tokens (a few topics) are that short.
 */
export const ALWAYS_VERIFIED_LENGTH = 1024;
/** Milliseconds per second (5 % of a core) that failed verifications of long tokens may use. */
export const INVALID_TOKEN_BUDGET_MS = 50;

/**
 * Admission control for the CPU that forged tokens cost (issue 15). A
 * forged token at the subscribe cap (4,096 characters) needs a full base62
 * decode and an AEAD pass to be refused (~0.15–0.25 ms, the same as a
 * genuine one: nothing cheaper can tell them apart), so a flood of them eats
 * the core that delivers events. Time spent on *failed* verifications of
 * long tokens is charged to a bucket that refills at
 * {@link INVALID_TOKEN_BUDGET_MS} per second (that much burst); once it is
 * empty, and until it is full again, long tokens are refused without being read: the router answers
 * them as it sheds any connection (EventSource: `200` + `retry:`, others
 * `503` + `Retry-After`). Short tokens are always verified, so subscribers
 * with ordinary tokens never notice a flood; subscribers with long genuine
 * tokens are shed with the flood while it lasts, and come back after it.
 * Genuine long tokens never drain the bucket.
 */
export class InvalidTokenBudget {
  private level = INVALID_TOKEN_BUDGET_MS;
  private refilled = performance.now();
  /**
   * Once spent, long tokens are shed until the bucket is full again (1 s
   * after the last failure): no flapping between one verification per
   * trickle of refill and shedding, and a clear "flood is over" moment.
   */
  private shedding = false;

  private refill(now: number): void {
    this.level = Math.min(INVALID_TOKEN_BUDGET_MS, this.level + ((now - this.refilled) / 1000) * INVALID_TOKEN_BUDGET_MS);
    this.refilled = now;
  }

  /** True if a long token may be verified now. */
  allows(now: number): boolean {
    if (this.shedding) {
      this.refill(now);
      this.shedding = this.level < INVALID_TOKEN_BUDGET_MS;
    }
    return !this.shedding;
  }

  /** Charges `ms` spent on a failed verification. */
  charge(ms: number, now: number): void {
    this.refill(now);
    this.level -= ms;
    if (this.level <= 0) this.shedding = true;
  }
}

/**
 * A verifier bound to one key: decrypts and checks a token, returning the
 * payload bytes and its expiry. The codec (key schedule) is shared by every
 * opener made from it; each opener has its own rules (subscribe and submit
 * tokens have different length caps).
 */
export function createTokenOpener(key: Uint8Array): (rules: TokenRules) => (token: string) => OpenedToken {
  const codec = createBrancaCodec(key); // key schedule once per router, not per token
  return (rules) => {
    const ttl = rules.ttl;
    const options = { ttl: ttl > 0 ? ttl : undefined, maxFuture: rules.clockSkew, maxLength: rules.maxLength };
    const open = (token: string): OpenedToken => {
      const { payload, timestamp } = codec.decode(token, options);
      return { payload, expiresAt: ttl > 0 ? (timestamp + ttl + 1) * 1000 : undefined };
    };
    if (rules.shedWhenFlooded !== true) return open;
    const budget = new InvalidTokenBudget();
    return (token) => {
      // Over maxLength is refused by the codec at once, whatever the budget.
      if (typeof token !== "string" || token.length <= ALWAYS_VERIFIED_LENGTH || token.length > rules.maxLength) return open(token);
      const start = performance.now();
      if (!budget.allows(start)) {
        throw new SseError("over_capacity", "too many invalid long tokens lately; retry later");
      }
      try {
        return open(token);
      } catch (err) {
        budget.charge(performance.now() - start, performance.now());
        throw err;
      }
    };
  };
}

/**
 * Mints a subscribe token for `GET /events?token=…`, as a backend would.
 * @param secret 64 hex characters or 32 bytes, the server's `SSE_SECRET`.
 */
export function subscribeToken(secret: string | Uint8Array, topics: readonly string[], extra: SubscribeTokenExtras = {}): string {
  // Fail here, in the backend that mints it, not later as a 400 in the browser.
  if (!Array.isArray(topics) || topics.length === 0) bad("subscribeToken needs at least one topic");
  for (const topic of topics) if (topic === "") bad("topic must not be empty");
  if (extra.sub !== undefined && (typeof extra.sub !== "string" || extra.sub === "")) bad("sub must be a non-empty string");
  const payload: Record<string, unknown> = { topics };
  if (extra.sub !== undefined) payload["sub"] = extra.sub;
  if (extra.presence !== undefined) payload["presence"] = extra.presence === true;
  return brancaEncode(parseSecret(secret), encode(payload));
}

/** Optional keys of a subscribe token (older servers ignore them). */
export interface SubscribeTokenExtras {
  /** Subject, e.g. a user id: per-subject limits, hooks and webhook notices see it. */
  sub?: string;
  /** `true`: the stream gets `sse:presence` events with its topics' subscriber counts. */
  presence?: boolean;
}

/**
 * Mints a token for `POST /presence` (its raw body): the topics to count.
 * @param secret 64 hex characters or 32 bytes, the server's `SSE_SECRET`.
 */
export function presenceToken(secret: string | Uint8Array, topics: readonly string[]): string {
  if (!Array.isArray(topics) || topics.length === 0) bad("presenceToken needs at least one topic");
  return brancaEncode(parseSecret(secret), encode({ topics }));
}

/**
 * Mints a submit token: the raw body of `POST /submit`.
 * @param secret 64 hex characters or 32 bytes, the server's `SSE_SECRET`.
 * @param options.idempotencyKey sent as `idempotencyKey` beside `events`: a
 *   retry with the same key within the server's window publishes nothing again.
 */
export function submitToken(
  secret: string | Uint8Array,
  events: readonly EventInput[],
  options: { idempotencyKey?: string } = {},
): string {
  // Only what the server would surely refuse; its limits are its own (and tests mint over-limit tokens on purpose).
  events.forEach((e, i) => {
    if (e.topic === "") bad(`events[${i}].topic must not be empty`);
    if (e.event === "") bad(`events[${i}].event must not be empty`);
  });
  const payload: { events: EventInput[]; idempotencyKey?: string } = {
    events: events.map((e) => ({ topic: e.topic, event: e.event, data: e.data })),
  };
  // Left out when absent, so tokens without a key stay byte-compatible with older minting code.
  if (options.idempotencyKey !== undefined) payload.idempotencyKey = options.idempotencyKey;
  return brancaEncode(parseSecret(secret), encode(payload));
}
