#!/usr/bin/env node
/**
 * Resume cost in MemoryBroker (issue 11): clients resuming from the oldest id
 * over a large history in which few events are theirs. "before" is the full
 * scan the broker used to do (every kept event after the id, filtered by
 * topic), run over the same events; "after" is `broker.replay`, which finds
 * each topic's first event after the id by binary search and merges the
 * topics' lists, so it costs what it returns.
 *
 *     npm run build && node bench/resume-index.js [events] [seconds per side]
 */
"use strict";
const { MemoryBroker } = require("../dist/index.js");

const total = Number(process.argv[2] ?? 450_000);
const seconds = Number(process.argv[3] ?? 2);

/** Resumes per second of `resume()` over about `seconds`. */
async function rate(resume) {
  const deadline = Date.now() + seconds * 1000;
  let n = 0;
  while (Date.now() < deadline) {
    for (let i = 0; i < 10; i++) await resume();
    n += 10;
  }
  return n / seconds;
}

(async () => {
  const broker = new MemoryBroker({ historyBytes: 1024 * 1024 * 1024, historyAge: 0 });
  const log = [];
  await broker.start((events) => log.push(...events));
  // One busy topic; the resuming clients read two rare ones (1 event in 1000).
  for (let i = 0; i < total; i += 1000) {
    await broker.publish(Array.from({ length: 1000 }, (_, j) => ({ topic: j === 0 ? "rare-a" : j === 500 ? "rare-b" : "busy", event: "e", data: String(i + j) })));
  }
  const topics = new Set(["rare-a", "rare-b"]);
  const from = log[0].id;

  // The old algorithm: scan every event after the id (here: all of them).
  const before = await rate(async () => {
    const out = [];
    for (let i = 1; i < log.length; i++) if (topics.has(log[i].topic)) out.push(log[i]);
    return out;
  });
  const after = await rate(() => broker.replay(from, topics));
  const check = await broker.replay(from, topics);
  const expected = log.filter((e, i) => i > 0 && topics.has(e.topic)).length;
  if (!check.ok || check.events.length !== expected) throw new Error("replay returned the wrong events");
  console.log(JSON.stringify({ events: total, returned: expected, beforePerSecond: Math.round(before), afterPerSecond: Math.round(after), ratio: +(after / before).toFixed(1) }));
  await broker.close();
})();
