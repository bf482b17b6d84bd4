#!/usr/bin/env node
/**
 * Measures what one event kept in MemoryBroker's history costs besides its
 * frame bytes (the `HISTORY_ENTRY_OVERHEAD` counted in `historyBytes`):
 * publishes many tiny events into an unbounded history, collects garbage,
 * and divides the growth of heap + external memory by the number of events.
 *
 *     npm run build && node --expose-gc bench/history-memory.js [events]
 */
"use strict";
const { MemoryBroker } = require("../dist/index.js");

if (typeof gc !== "function") {
  console.error("run with node --expose-gc");
  process.exit(1);
}
const count = Number(process.argv[2] ?? 400_000);
const live = () => {
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
};

(async () => {
  const broker = new MemoryBroker({ historyBytes: 1e12, historyAge: 0 });
  let frameBytes = 0;
  await broker.start((events) => {
    for (const e of events) frameBytes += e.frame.length;
  });
  const before = live();
  for (let i = 0; i < count; i += 100) {
    // Fresh strings per event, as decoded from a /submit token.
    await broker.publish(Array.from({ length: 100 }, (_, j) => ({ topic: "topic-" + ((i + j) % 50), event: "e", data: String(i + j) })));
  }
  const after = live();
  const { events } = broker.history;
  const perEvent = (after - before) / events;
  console.log(JSON.stringify({ events, frameBytesPerEvent: +(frameBytes / events).toFixed(1), retainedPerEvent: +perEvent.toFixed(1), overheadPerEvent: +(perEvent - frameBytes / events).toFixed(1) }));
  await broker.close();
})();
