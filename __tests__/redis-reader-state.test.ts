/**
 * The Redis reader's state rules, without Redis: the table every state
 * change goes through (src/brokers/redis/reader-state.ts). The Redis-backed tests
 * (redis-broker, broker-faults) exercise the same rules against real outages.
 */
import { nextReaderState, type ReaderEvent, type ReaderState } from "../src/brokers/redis/reader-state";

const STATES: readonly ReaderState[] = ["starting", "catching_up", "live", "down", "closed"];
const EVENTS: readonly ReaderEvent[] = ["sync", "caught_up", "gap", "lost", "failed", "close"];

const run = (from: ReaderState, ...events: ReaderEvent[]) => events.reduce(nextReaderState, from);

test("the normal life: start, catch up, live, lose the connection, catch up again, close", () => {
  const path: ReaderState[] = [];
  let s: ReaderState = "starting";
  for (const e of ["sync", "caught_up", "lost", "sync", "caught_up", "close"] as const) path.push((s = nextReaderState(s, e)));
  expect(path).toEqual(["catching_up", "live", "down", "catching_up", "live", "closed"]);
});

test("the full table", () => {
  const table = Object.fromEntries(STATES.map((s) => [s, Object.fromEntries(EVENTS.map((e) => [e, nextReaderState(s, e)]))]));
  expect(table).toEqual({
    starting: { sync: "catching_up", caught_up: "starting", gap: "starting", lost: "starting", failed: "starting", close: "closed" },
    catching_up: { sync: "catching_up", caught_up: "live", gap: "catching_up", lost: "down", failed: "down", close: "closed" },
    live: { sync: "live", caught_up: "live", gap: "catching_up", lost: "down", failed: "live", close: "closed" },
    down: { sync: "catching_up", caught_up: "down", gap: "down", lost: "down", failed: "down", close: "closed" },
    closed: { sync: "closed", caught_up: "closed", gap: "closed", lost: "closed", failed: "closed", close: "closed" },
  });
});

test("a catch-up that ends after its connection dropped does not go live (it must catch up again after reconnecting)", () => {
  expect(run("live", "gap", "lost", "caught_up")).toBe("down");
  expect(run("starting", "sync", "lost", "caught_up")).toBe("down");
});

test("a gap while live stops delivering pushed batches until a catch-up finishes", () => {
  expect(run("live", "gap")).toBe("catching_up");
  expect(run("live", "gap", "gap", "caught_up")).toBe("live");
});

test("closed is final, whatever comes after", () => {
  for (const e of EVENTS) expect(run("live", "close", e)).toBe("closed");
  expect(run("catching_up", "close", "sync", "caught_up")).toBe("closed");
});
