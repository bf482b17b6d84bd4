/**
 * The router relies on no Express request/response extensions, so it also
 * serves from a bare `http.createServer` (or any Connect-style stack): the
 * standalone server uses it that way, without an Express app per request.
 */
import http from "node:http";
import type { AddressInfo } from "node:net";
import { createSseRouter } from "../src/adapters/express";
import { submitToken, subscribeToken } from "../src/tokens";
import { RawStream, SECRET, parseEvents } from "./helpers/sse";

test("events, submit, ping, errors and 404 fall-through in a bare Node server", async () => {
  const router = createSseRouter({ secret: SECRET, retry: 0, health: true });
  const server = http.createServer((req, res) =>
    router(req as never, res as never, () => {
      res.statusCode = 404;
      res.end("fallthrough");
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const s = new RawStream(`${base}/events?token=${subscribeToken(SECRET, ["bare"])}&lastEventId=`);
    await s.until((t) => t === ":\n\n");
    expect(s.headers["content-type"]).toBe("text/event-stream");

    const submit = await fetch(`${base}/submit`, {
      method: "POST",
      body: submitToken(SECRET, [{ topic: "bare", event: "e", data: "1\n2" }]),
    });
    expect(submit.status).toBe(200);
    await s.until((t) => parseEvents(t).length === 1);
    expect(parseEvents(s.text)[0]).toMatchObject({ event: "e", data: "1\n2" });

    expect((await fetch(`${base}/ping`)).status).toBe(200);
    const health = await fetch(`${base}/health`);
    expect(await health.json()).toMatchObject({ status: "ok", subscribers: 1 });

    const bad = await fetch(`${base}/events?token=nope`);
    expect(bad.status).toBe(401);
    expect(bad.headers.get("content-type")).toBe("application/json; charset=utf-8");
    expect(await bad.json()).toEqual({ error: "token_invalid", message: expect.any(String) });

    const method = await fetch(`${base}/ping`, { method: "PUT" });
    expect(method.status).toBe(405);
    expect(method.headers.get("allow")).toBe("GET, HEAD, OPTIONS");

    const other = await fetch(`${base}/elsewhere`);
    expect([other.status, await other.text()]).toEqual([404, "fallthrough"]);
    s.close();
  } finally {
    await router.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
