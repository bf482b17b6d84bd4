/**
 * The reader's one state, and every way it changes: a pure table, so the
 * rules are tested without Redis (__tests__/redis-reader-state.test.ts).
 *
 * - `starting`: created or started, not yet reading (no connection yet).
 * - `catching_up`: subscribed, reading the stream up to its head; pushed
 *   batches wait in `pending` (start, reconnect, or a gap seen while live).
 * - `live`: pushed batches go straight to the sink.
 * - `down`: the connection dropped or a catch-up failed; waits for the
 *   connection, then catches up from the last entry delivered.
 * - `closed`: final.
 */
export type ReaderState = "starting" | "catching_up" | "live" | "down" | "closed";

/**
 * - `sync`: the connection is ready and a catch-up begins.
 * - `caught_up`: the catch-up read the stream up to its head.
 * - `gap`: entries are missing before a pushed batch (stored, never pushed),
 *   or a batch could not be read: read the stream again.
 * - `lost`: the subscribed connection closed.
 * - `failed`: a catch-up failed (a command error, Redis went away).
 * - `close`: the broker closes.
 */
export type ReaderEvent = "sync" | "caught_up" | "gap" | "lost" | "failed" | "close";

/**
 * The state after `event` in `state`. An event that does not apply leaves
 * the state as it is: above all, a catch-up that finishes after its
 * connection was lost (`down`) or after close must not make the reader
 * `live`, and nothing leaves `closed`.
 */
export function nextReaderState(state: ReaderState, event: ReaderEvent): ReaderState {
  if (state === "closed" || event === "close") return "closed";
  switch (event) {
    case "sync":
      return state === "live" ? state : "catching_up";
    case "caught_up":
      return state === "catching_up" ? "live" : state;
    case "gap":
      return state === "live" ? "catching_up" : state;
    case "lost":
      // Never connected yet: still starting (health says unavailable either way).
      return state === "starting" ? state : "down";
    case "failed":
      return state === "catching_up" ? "down" : state;
  }
}
