/**
 * The webhook against a real local HTTP receiver: while it is down, streams
 * are unaffected and notices wait (retried with backoff); once it is up they
 * arrive, signed like /submit (Branca of msgpack); past the queue bound they
 * are dropped and counted in stats and /metrics.
 */
import { execFileSync } from "node:child_process";
import http from "node:http";
import path from "node:path";
import { decode } from "@msgpack/msgpack";
import request from "supertest";
import { brancaDecode } from "../src/tokens/branca";
import { SILENT_LOGGER } from "../src/logger";
import { subscribeToken } from "../src/tokens";
import type { WebhookNotice } from "../src/core/webhook";
import { freePort } from "./helpers/redis";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

const KEY = Buffer.from(SECRET, "hex");

/** A receiver that verifies and decodes each batch like an app would (and keeps the raw bodies). */
async function receiver(port: number, notices: WebhookNotice[], bodies: string[] = []): Promise<http.Server> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("latin1");
      bodies.push(body);
      const { notices: batch } = decode(brancaDecode(KEY, body).payload) as { notices: WebhookNotice[] };
      notices.push(...batch);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}

const streams: RawStream[] = [];
afterEach(() => {
  for (const s of streams.splice(0)) s.close();
});

async function open(srv: TestServer, sub: string): Promise<RawStream> {
  const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["w"], { sub })}`);
  streams.push(s);
  await s.until((t) => t.startsWith(":\n\n"));
  return s;
}

test("notices wait while the app is down, streams go on, and arrive once it is back", async () => {
  const port = await freePort();
  const srv = await startServer({ retry: 0, logger: SILENT_LOGGER, webhookUrl: `http://127.0.0.1:${port}/sse-notices` });
  try {
    const [a, b, c] = [await open(srv, "a"), await open(srv, "b"), await open(srv, "c")];
    a.close();
    await eventually(() => srv.router.stats.webhook!.failures >= 1, 5000, "a failed webhook request");
    // Streams are not held up by the failing webhook: every event, in order.
    const events = Array.from({ length: 50 }, (_, i) => ({ topic: "w", event: "n", data: String(i) }));
    await srv.router.publish([...events, { topic: "w", event: "end", data: "" }]);
    for (const s of [b, c]) {
      await s.until((t) => t.includes("event:end"));
      expect(parseEvents(s.text).map((e) => e.data)).toEqual([...events.map((e) => e.data), ""]);
    }
    // Three subscribes and a's unsubscribe (once the server saw it go) wait in the queue.
    await eventually(() => srv.router.stats.webhook!.queued === 4, 5000, "four queued notices");
    expect(srv.router.stats.webhook).toMatchObject({ sent: 0, dropped: 0, queued: 4 });

    const notices: WebhookNotice[] = [];
    const bodies: string[] = [];
    const app = await receiver(port, notices, bodies);
    try {
      await eventually(() => notices.length === 4, 15_000, "the queued notices");
      const brief = notices.map((n) => `${n.type} ${n.sub} ${n.reason ?? ""}`.trim());
      expect(brief).toEqual(["subscribe a", "subscribe b", "subscribe c", "unsubscribe a client"]);
      const first = notices[0]!;
      expect(Object.keys(first).sort()).toEqual(["remoteAddress", "sub", "time", "topics", "type"]);
      expect(first.topics).toEqual(["w"]);
      expect(typeof first.time).toBe("number");
      // The receiver has them; the hub counts them once it read the answer.
      await eventually(() => srv.router.stats.webhook!.sent === 4, 5000, "the answer to be read");
      expect(srv.router.stats.webhook).toMatchObject({ sent: 4, dropped: 0, queued: 0 });
      // A Python backend reads it with the Branca code it mints tokens with (an independent implementation).
      const tool = path.join(__dirname, "fixtures", "branca_tool.py");
      const decoded = JSON.parse(execFileSync("/usr/bin/python3", [tool, "decode", SECRET, bodies[0]!], { encoding: "utf8" })) as { payload: { notices: WebhookNotice[] } };
      expect(decoded.payload.notices.map((n) => [n.type, n.sub])).toEqual(notices.slice(0, decoded.payload.notices.length).map((n) => [n.type, n.sub]));
    } finally {
      await srv.close();
      app.close();
    }
  } finally {
    await srv.close();
  }
}, 30_000);

test("past the queue bound notices are dropped and counted in stats and /metrics", async () => {
  const port = await freePort();
  const srv = await startServer({ retry: 0, logger: SILENT_LOGGER, metrics: true, webhookQueue: 2, webhookUrl: `http://127.0.0.1:${port}/` });
  try {
    for (const sub of ["1", "2", "3", "4", "5"]) await open(srv, sub);
    expect(srv.router.stats.webhook).toMatchObject({ dropped: 3, queued: 2 });
    const metrics = await request(srv.server).get("/metrics");
    expect(metrics.text).toContain('\nsse_webhook_notices_total{result="dropped"} 3\n');
    expect(metrics.text).toContain("\nsse_webhook_queue 2\n");
  } finally {
    await srv.close();
  }
});
