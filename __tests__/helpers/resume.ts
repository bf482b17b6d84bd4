/**
 * Resume checks shared by the Redis tests: a steady publisher, a subscriber
 * that reconnects over and over with the last id it got, and the check that
 * what it got, all together, is every number once and in order.
 */
import type { SseClient } from "./redis";

/** Runs `publishOne(n)` for n = 0, 1, ... every ~`everyMs` until stopped; resolves with how many were published. */
export function steadyPublisher(publishOne: (n: number) => Promise<unknown>, everyMs: number): { stop(): Promise<number> } {
  let running = true;
  let n = 0;
  const done = (async () => {
    while (running) {
      await publishOne(n++);
      await new Promise((r) => setTimeout(r, everyMs));
    }
    return n;
  })();
  return {
    async stop() {
      running = false;
      return done;
    },
  };
}

/**
 * Resumes `rounds` times, each from the last id the previous stream got,
 * reading a couple of events each time; checks every response on its own
 * (no duplicate) and all together (no gap): the numbers are 0, 1, 2, ...
 */
export async function resumeRepeatedly(open: (round: number, lastId: string | undefined) => Promise<SseClient>, rounds: number): Promise<{ duplicates: number; numbers: number[] }> {
  const numbers: number[] = [];
  let duplicates = 0;
  let lastId: string | undefined;
  for (let round = 0; round < rounds; round++) {
    const client = await open(round, lastId);
    await client.waitForEvents(2, 10_000);
    client.close();
    const ids = client.events.map((e) => e.id!);
    duplicates += ids.length - new Set(ids).size;
    numbers.push(...client.events.map((e) => Number(e.data)));
    lastId = client.lastId;
  }
  return { duplicates, numbers };
}

/** Each number is one more than the one before (no duplicate, no gap). */
export function expectConsecutive(numbers: number[]): void {
  const wrong = numbers.findIndex((n, i) => n !== numbers[0]! + i);
  expect(wrong === -1 ? "consecutive" : `at ${wrong}: ${numbers.slice(Math.max(0, wrong - 3), wrong + 3).join(",")}`).toBe("consecutive");
}

