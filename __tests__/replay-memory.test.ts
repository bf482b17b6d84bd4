/**
 * Replay is paced by the socket (issue 11, item 2): 150 clients resume into
 * megabytes of history and never read. Each may cost at most about its
 * `maxBufferBytes` (one page of shared history frames in its socket buffer,
 * a bounded list of held live events), so memory stays within
 * N × maxBufferBytes + a fixed margin while live events keep flowing; a fast
 * client resuming meanwhile gets every event exactly once, in order.
 *
 * The stalled clients connect over a Unix socket (small kernel buffers, so
 * the server sees backpressure at once and the machine's TCP memory is left
 * alone), as in memory.test.ts.
 */
import { subscribeToken } from "../src/tokens";
import { gc, liveBytes } from "./helpers/gc";
import { stalledClients, type StalledClients } from "./helpers/stalled";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

const MAX_BUFFER = 64 * 1024;
const HISTORY = 8 * 1024 * 1024;
const N = 150;
const EVENT_BYTES = 1024;
/** Events in history before the clients resume: ~5 MiB. */
const BACKLOG = 5000;
const MiB = 1024 * 1024;


let srv: TestServer;
let clients: StalledClients;

beforeAll(async () => {
  srv = await startServer({ retry: 0, maxBufferBytes: MAX_BUFFER, historyBytes: HISTORY, heartbeatInterval: 0 });
  clients = await stalledClients(srv, "replay-memory");
});

afterAll(async () => {
  await clients.close();
  await srv.close();
});

const payload = "x".repeat(EVENT_BYTES);
const ev = (n: number) => ({ topic: "h", event: "e", data: `${n} ${payload}` });

test(`${N} stalled clients resuming into MBs of history: memory stays within N × maxBufferBytes + margin; a fast resume gets every event once, in order`, async () => {
  const requestPath = `/events?token=${subscribeToken(SECRET, ["h"])}`;
  // The first event's id gives the epoch; ids then count up by one per event.
  const probe = new RawStream(`${srv.base}${requestPath}`);
  await probe.until((t) => t === ":\n\n");
  await srv.router.publish([ev(0)]);
  await probe.until((t) => parseEvents(t).length === 1);
  const firstId = parseEvents(probe.text)[0]!.id!;
  probe.close();
  const epoch = firstId.slice(0, firstId.lastIndexOf("-"));
  const firstSeq = Number(firstId.slice(firstId.lastIndexOf("-") + 1));
  let sent = 1;
  while (sent < BACKLOG) {
    await srv.router.publish(Array.from({ length: 100 }, () => ev(sent++)));
  }

  const base = liveBytes();
  for (let i = 0; i < N; i++) {
    // Each resumes from a different point in the first half of the backlog.
    const from = `${epoch}-${firstSeq + Math.floor((i * BACKLOG) / (2 * N))}`;
    clients.stall(requestPath, { "Last-Event-ID": from });
  }
  await eventually(() => srv.router.stats.subscribers === N && srv.router.stats.replays === N, 15_000, `${N} resuming subscribers`);
  // Stalled, with nothing else going on: each holds what it was given until it reads.
  let peak = 0;
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 50));
    peak = Math.max(peak, liveBytes() - base);
  }

  // A fast client resumes from the oldest event while live events keep coming.
  const fast = new RawStream(`${srv.base}${requestPath}`, { "Last-Event-ID": firstId });
  for (let tick = 0; tick < 40; tick++) {
    await srv.router.publish(Array.from({ length: 20 }, () => ev(sent++)));
    await new Promise((r) => setTimeout(r, 25));
    if (tick % 5 === 0) peak = Math.max(peak, liveBytes() - base);
  }
  peak = Math.max(peak, liveBytes() - base);
  // Live memory grew by at most each stalled client's bound plus a margin
  // (history growth from the live events, the fast reader's text).
  const bound = N * MAX_BUFFER;
  const margin = 24 * MiB;
  if (process.env["MEMORY_STATS"]) console.log({ gc: gc !== undefined, peak, bound });
  expect({ peak, ok: peak <= bound + margin }).toEqual({ peak, ok: true });

  await srv.router.publish([{ topic: "h", event: "end", data: "" }]);

  await fast.until((t) => t.slice(-64).includes("event:end\n"), 30_000);
  const events = parseEvents(fast.text);
  expect(events.pop()?.event).toBe("end");
  const numbers = events.map((e) => Number(e.data.slice(0, e.data.indexOf(" "))));
  expect(numbers.length).toBe(sent - 1);
  expect(numbers.every((n, i) => n === i + 1)).toBe(true);
  expect(fast.ended).toBe(false);
  fast.close();

  clients.destroyAll();
  await eventually(() => srv.router.stats.subscribers === 0, 10_000, "everyone to leave");
}, 120_000);
