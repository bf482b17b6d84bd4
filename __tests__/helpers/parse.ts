/**
 * The one SSE parser of the test suite: `eventsource-parser` (the parser the
 * `eventsource` package uses, written to the WHATWG spec), so tests read the
 * wire as a conforming client does (one space after the colon stripped,
 * `event` defaulting to "message", blocks without data not dispatched),
 * not as our own framing code would like it to be read.
 */
import { createParser } from "eventsource-parser";

export interface SseEvent {
  event: string;
  data: string;
  /** The block's `id:` field, if it had one (`""` for an empty `id:` line). */
  id: string | undefined;
}

/** Parses every complete block of `text` (up to its last blank line). */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  const parser = createParser({
    onEvent: (e) => events.push({ event: e.event ?? "message", data: e.data, id: e.id }),
  });
  parser.feed(text);
  return events;
}

/** Parses the complete blocks of `buffer`; returns their events and the unparsed rest. */
export function parseFrames(buffer: string): { events: SseEvent[]; rest: string } {
  const end = buffer.lastIndexOf("\n\n");
  if (end === -1) return { events: [], rest: buffer };
  return { events: parseSse(buffer.slice(0, end + 2)), rest: buffer.slice(end + 2) };
}
