/**
 * One event-stream connection driven to be lossless: fetch-based (the token
 * travels in `Authorization`, never in the URL; the HTTP status is visible, so
 * a 401 is told apart from a network error), reconnecting with `lastEventId`,
 * exponential backoff with full jitter based on the server's `retry:`, and a
 * fresh token on `sse:expiring`, after a 401 and when the topics grow.
 *
 * A rotation (new token or topics) closes the old stream, then opens the new
 * one with the last id: the server replays what came in between from its
 * history, so nothing is lost; nothing is duplicated since only one stream is
 * ever read at a time.
 */
import type { ConnectionState } from "./types";

/** Where a stream reports to: every event frame (id `undefined` when the frame has none) and state changes. */
export interface StreamSink {
  event(name: string, data: string, id: string | undefined): void;
  state(state: ConnectionState): void;
  /** The last event id seen (by this tab or, when shared, by the group): where a reconnect resumes. */
  lastId(): string | undefined;
}

export class Stream {
  private token: string | undefined;
  /** Base delay in ms; the server's `retry:` replaces it. */
  private retry = 1000;
  private attempt = 0;
  private ctl: AbortController | undefined;
  private stopped = false;
  private rotating = false;
  /** expiresAt of the last `sse:expiring` acted on: a provider handing out the same old token must not loop. */
  private rotatedFor = 0;

  constructor(
    private readonly url: string,
    private readonly getToken: (topics: string[]) => Promise<string>,
    public topics: string[],
    private readonly sink: StreamSink,
    private readonly maxDelay: number,
    /** Whether the group was connected before (a new leader taking over reports "reconnecting"). */
    private opened: boolean,
  ) {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.ctl?.abort();
  }

  /** Subscribes to more topics: a rotation when the set grows. */
  want(topics: readonly string[]): void {
    const grown = topics.filter((t) => !this.topics.includes(t));
    if (grown.length === 0) return;
    this.topics = [...this.topics, ...grown];
    this.rotate();
  }

  /** Fetches a fresh token while the current stream still runs, then switches streams. */
  private rotate(): void {
    const topics = this.topics;
    this.getToken([...topics]).then(
      (token) => {
        // Topics grew again while this token was on its way: that call rotates.
        if (this.stopped || topics !== this.topics) return;
        this.token = token;
        this.rotating = true;
        this.ctl?.abort();
      },
      // No fresh token now: keep the old stream; its end (or 401) asks again.
      () => undefined,
    );
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const ctl = (this.ctl = new AbortController());
      if (!this.rotating) this.sink.state(this.opened ? "reconnecting" : "connecting");
      this.rotating = false;
      let wait = true;
      try {
        const token = (this.token ??= await this.getToken([...this.topics]));
        const url = new URL(this.url, location.href);
        const last = this.sink.lastId();
        if (last !== undefined) url.searchParams.set("lastEventId", last);
        const res = await fetch(url, {
          headers: { Accept: "text/event-stream", Authorization: "Bearer " + token },
          cache: "no-store",
          signal: ctl.signal,
        });
        if (res.status === 401) {
          // Expired (or revoked): the next attempt gets a fresh token; at once the first time.
          this.token = undefined;
          wait = this.attempt > 0;
        } else if (res.ok && res.body) {
          this.attempt = 0;
          this.opened = true;
          this.sink.state("open");
          await this.read(res.body);
        }
      } catch {
        // Network error, abort (rotation or stop), or the token provider failed: handled below.
      }
      if (this.stopped) return;
      if (this.rotating) continue;
      if (wait) {
        // Full jitter: anywhere in [0, retry * 2^attempt), capped.
        const ms = Math.random() * Math.min(this.maxDelay, this.retry * 2 ** this.attempt);
        await new Promise((r) => setTimeout(r, ms));
      }
      this.attempt++;
    }
  }

  /** Parses `text/event-stream` (WHATWG rules) and hands each event to the sink. */
  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    let name = "";
    let data: string | undefined;
    let id: string | undefined;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      // Lines end in CRLF, LF or CR; a CR at the very end may be half of a CRLF.
      let m: RegExpExecArray | null;
      const eol = /\r\n|\r(?!$)|\n/g;
      let from = 0;
      while ((m = eol.exec(buf)) !== null) {
        const line = buf.slice(from, m.index);
        from = m.index + m[0].length;
        if (line === "") {
          if (data !== undefined) this.dispatch(name || "message", data, id);
          name = "";
          data = id = undefined;
          continue;
        }
        const colon = line.indexOf(":");
        if (colon === 0) continue; // comment (heartbeat)
        const field = colon < 0 ? line : line.slice(0, colon);
        let val = colon < 0 ? "" : line.slice(colon + 1);
        if (val[0] === " ") val = val.slice(1);
        if (field === "event") name = val;
        else if (field === "data") data = data === undefined ? val : data + "\n" + val;
        else if (field === "id" && !val.includes("\0")) id = val;
        else if (field === "retry" && /^\d+$/.test(val)) this.retry = Math.max(1, +val);
      }
      buf = buf.slice(from);
    }
  }

  private dispatch(name: string, data: string, id: string | undefined): void {
    if (name === "sse:expiring") {
      const at = (JSON.parse(data) as { expiresAt: number }).expiresAt;
      if (at !== this.rotatedFor) {
        this.rotatedFor = at;
        this.rotate();
      }
    }
    this.sink.event(name, data, id);
  }
}
