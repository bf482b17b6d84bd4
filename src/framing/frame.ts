/**
 * SSE wire framing, pure functions only (no sockets, no state), so the exact
 * bytes can be tested and every event is framed once and shared by all of its
 * subscribers.
 *
 * Frame layout (compatible with the original server, which had no `id:`):
 *
 *     event:<name>\n
 *     data:<line 1>\n
 *     data:<line n>\n
 *     id:<id>\n
 *     \n
 *
 * The `id:` line comes last so the original's `event:`/`data:` prefix is kept
 * byte for byte for clients that matched on it. A value that starts with a
 * space gets one extra space after the colon (see `field`), since parsers
 * strip one.
 */

/** A heartbeat: one empty comment line. Sent on connect and every interval. */
export const HEARTBEAT: Buffer = Buffer.from(":\n\n");

const LINE_BREAK = /\r\n|\r|\n/;
const NAME_BREAK = /[\r\n]/g;

/** CR or LF in an event name would end the field early: replace with a space (as the original does). */
export function sanitizeEventName(name: string): string {
  return name.replace(NAME_BREAK, " ");
}

const SPACE = 0x20;

/**
 * `<field>:` followed by `value`, with one extra space when the value itself
 * starts with a space: a conforming SSE parser strips exactly one space after
 * the colon, so `data: x` would arrive as `x`. Only such values get the extra
 * byte; every other frame stays byte-identical to the original server's.
 */
function field(name: "event:" | "data:", value: string): string {
  return (value.charCodeAt(0) === SPACE ? name + " " : name) + value + "\n";
}

/**
 * The text of one event frame. `id` is omitted when `undefined`.
 *
 * A name of only spaces arrives as those spaces (the extra leading space
 * keeps it from collapsing into the empty name, which clients would read as
 * `message`; `/submit` and `publish()` refuse empty names).
 */
export function frameText(event: string, data: string, id?: string): string {
  let text = field("event:", sanitizeEventName(event));
  // Fast path: most data has no line break; avoid split's array allocation.
  if (data.indexOf("\n") === -1 && data.indexOf("\r") === -1) {
    text += field("data:", data);
  } else {
    for (const line of data.split(LINE_BREAK)) text += field("data:", line);
  }
  if (id !== undefined) text += "id:" + id + "\n";
  return text + "\n";
}

/** One event frame as bytes, ready to be written to every subscriber. */
export function frameEvent(event: string, data: string, id?: string): Buffer {
  return Buffer.from(frameText(event, data, id), "utf8");
}

/** `retry:<ms>` field telling the client how long to wait before reconnecting. */
export function frameRetry(ms: number): Buffer {
  return Buffer.from("retry:" + Math.floor(ms) + "\n\n");
}
