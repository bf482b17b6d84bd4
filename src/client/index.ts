/**
 * `sse-hub/client`: the browser half (issue 13). One lossless stream per
 * browser: tabs of one origin elect a leader with the Web Locks API; only the
 * leader connects (to the union of the topics every tab wants) and fans
 * events out over `BroadcastChannel`. When the leader tab goes, the next tab
 * takes the lock and resumes from the last id the group saw. Without those
 * APIs (or with `share: false`) each tab connects on its own.
 *
 * Zero runtime dependencies; see ./stream.ts for the connection itself.
 */
import { SseError } from "../errors";
import { Stream } from "./stream";
import type { ConnectionState } from "./types";

export type { ConnectionState } from "./types";

export interface SseClientOptions {
  /** URL of the hub's events route, absolute or relative to the page, e.g. `"/sse-server/events"`. Required. */
  url: string;
  /** Topics this tab wants. Required, at least one. */
  topics: readonly string[];
  /**
   * Returns a subscribe token for `topics` (usually a `fetch` to the app's
   * backend). Called before the first connect, on `sse:expiring`, after a 401
   * and when the shared topics grow; with sharing, only in the leader tab, with
   * the union of the tabs' topics. Required.
   */
  token: (topics: string[]) => Promise<string>;
  /** Called when the server answers `sse:reset`: resume was impossible, rebuild your state. Defaults to none. */
  onReset?: (info: { reason: string }) => void;
  /** Called on every state change, with whether this tab holds the connection. Defaults to none. */
  onState?: (state: ConnectionState, leader: boolean) => void;
  /** Share one connection among the tabs of this origin. Defaults to `true` (where Web Locks and BroadcastChannel exist). */
  share?: boolean;
  /** Turns event data into the listener's value. Defaults to `JSON.parse`, falling back to the string when it is not JSON. */
  parse?: (name: string, data: string) => unknown;
  /** Resume from this event id on the first connect. Defaults to `undefined` (live events only). */
  lastEventId?: string;
  /** Upper bound of the reconnect backoff in ms. Defaults to `30000`. */
  maxDelay?: number;
}

/** A live subscription. `E` maps event names to the type of their (parsed) data. */
export interface SseClient<E extends Record<string, unknown>> {
  /** Listens to one event name; returns the function that stops listening. */
  on<K extends keyof E & string>(name: K, listener: (data: E[K], id: string | undefined) => void): () => void;
  readonly state: ConnectionState;
  /** Whether this tab holds the connection (always true without sharing). */
  readonly leader: boolean;
  /** The last event id this tab saw: where a reconnect resumes. */
  readonly lastEventId: string | undefined;
  /** Stops: closes the connection (another tab takes over) and every listener. Idempotent. */
  close(): void;
}

/** Messages between the tabs of one group. */
type Msg =
  | { t: "hello" | "here"; tab: string; topics: string[] }
  | { t: "bye"; tab: string }
  | { t: "ev"; n: string; d: string; i: string | undefined }
  | { t: "st"; s: ConnectionState };

/** Recent ids kept to drop the duplicates a leader handover can bring. */
const SEEN = 1000;

function invalid(message: string): never {
  throw new SseError("invalid_option", message);
}

function defaultParse(_name: string, data: string): unknown {
  try {
    return JSON.parse(data);
  } catch {
    return data;
  }
}

/**
 * Subscribes to `topics` at the hub `url`; see {@link SseClientOptions}.
 * @throws SseError `invalid_option` when an option is invalid.
 */
export function createSseClient<E extends Record<string, unknown> = Record<string, unknown>>(options: SseClientOptions): SseClient<E> {
  const { url, token, onReset, onState } = options;
  const topics = [...new Set(options.topics)];
  if (typeof url !== "string" || url === "") invalid("url must be the hub's events URL");
  if (topics.length === 0 || !topics.every((t) => typeof t === "string" && t !== "")) invalid("topics must be a non-empty array of strings");
  if (typeof token !== "function") invalid("token must be an async function returning a subscribe token");
  const parse = options.parse ?? defaultParse;
  const maxDelay = options.maxDelay ?? 30_000;
  if (!(maxDelay >= 1)) invalid("maxDelay must be a number >= 1");

  const listeners = new Map<string, Set<(data: never, id: string | undefined) => void>>();
  const seen = new Set<string>();
  let lastId = options.lastEventId || undefined;
  let state: ConnectionState = "connecting";
  let leader = false;
  let closed = false;
  let stream: Stream | undefined;
  let release: (() => void) | undefined;

  const share = options.share !== false && typeof BroadcastChannel === "function" && !!navigator.locks;
  const tab = Math.random().toString(36).slice(2);
  const others = new Map<string, string[]>();
  // The lock and channel are per hub URL: tabs talking to another hub are another group.
  const key = "sse-server:" + new URL(url, location.href).href;
  const channel = share ? new BroadcastChannel(key) : undefined;
  const post = (msg: Msg) => channel?.postMessage(msg);

  const setState = (s: ConnectionState) => {
    if (s === state || closed) return;
    state = s;
    onState?.(s, leader);
  };

  /** One event, from this tab's stream or the leader's: de-duplicated by id, then delivered. Returns whether it was new. */
  const receive = (name: string, data: string, id: string | undefined): boolean => {
    if (closed) return false;
    if (id) {
      if (seen.has(id)) return false;
      seen.add(id);
      if (seen.size > SEEN) seen.delete(seen.values().next().value!);
    }
    // An empty id (a reset with empty history) clears the resume point.
    if (id !== undefined) lastId = id || undefined;
    if (name === "sse:reset") onReset?.(JSON.parse(data) as { reason: string });
    else if (!name.startsWith("sse:")) {
      const set = listeners.get(name);
      if (set) {
        const value = parse(name, data) as never;
        for (const fn of set) fn(value, id);
      }
    }
    return true;
  };

  const union = () => [...new Set([...topics, ...[...others.values()].flat()])];

  const lead = () => {
    leader = true;
    stream = new Stream(url, token, union(), {
      event: (n, d, i) => {
        if (receive(n, d, i)) post({ t: "ev", n, d, i });
      },
      state: (s) => {
        post({ t: "st", s });
        setState(s);
      },
      lastId: () => lastId,
    }, maxDelay, state !== "connecting");
  };

  if (channel) {
    channel.onmessage = (e: MessageEvent<Msg>) => {
      const m = e.data;
      if (m.t === "ev") receive(m.n, m.d, m.i);
      else if (m.t === "st") setState(m.s);
      else if (m.t === "bye") others.delete(m.tab);
      else {
        others.set(m.tab, m.topics);
        if (m.t === "hello") {
          // Tell the newcomer who is here (it may lead one day), and the state.
          post({ t: "here", tab, topics });
          if (leader) post({ t: "st", s: state });
        }
        stream?.want(union());
      }
    };
    post({ t: "hello", tab, topics });
    addEventListener("pagehide", () => post({ t: "bye", tab }));
    // Held until this tab closes (or close()): the browser then grants it to the next tab.
    void navigator.locks.request(key, () => {
      if (closed) return;
      lead();
      return new Promise<void>((r) => (release = r));
    });
  } else {
    lead();
  }

  return {
    on(name, listener) {
      let set = listeners.get(name);
      if (!set) listeners.set(name, (set = new Set()));
      set.add(listener as (data: never, id: string | undefined) => void);
      return () => void set.delete(listener as (data: never, id: string | undefined) => void);
    },
    get state() {
      return state;
    },
    get leader() {
      return leader;
    },
    get lastEventId() {
      return lastId;
    },
    close() {
      if (closed) return;
      stream?.stop();
      post({ t: "bye", tab });
      channel?.close();
      release?.();
      state = "closed";
      onState?.(state, leader);
      closed = true;
      listeners.clear();
    },
  };
}
