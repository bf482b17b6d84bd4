/**
 * The `compression` middleware in front of the router (a common Express
 * setup) must not hold events back: the stream carries `Cache-Control:
 * no-transform`, which compression respects, so each event reaches a client
 * that sends `Accept-Encoding: gzip` at once, byte for byte.
 */
import compression from "compression";
import request from "supertest";
import { submitToken, subscribeToken } from "../src/tokens";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

/** Replace ids (`id:<epoch>-<n>`) by `id:#` so frames compare byte for byte. */
const normalize = (text: string) => text.replace(/^id:[0-9a-z]+-[0-9]+$/gm, "id:#");

describe.each([
  ["compression() defaults", {}],
  ["compression({ threshold: 0 }) (compress everything it may)", { threshold: 0 }],
])("%s", (_name, compressionOptions) => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0, health: true }, "/sse", (app) => {
      app.use(compression(compressionOptions));
    });
  });
  afterAll(async () => {
    await srv.close();
  });

  const url = (topics: string[]) => `${srv.base}/events?token=${subscribeToken(SECRET, topics)}`;

  test.each(["gzip", "gzip, deflate, br", "br;q=1.0, gzip;q=0.8, *;q=0.1"])(
    "Accept-Encoding: %s: not encoded, heartbeat and each event arrive on their own",
    async (acceptEncoding) => {
      const s = new RawStream(url(["c"]), { "Accept-Encoding": acceptEncoding });
      await s.opened;
      expect(s.status).toBe(200);
      expect(s.headers["content-encoding"]).toBeUndefined();
      expect(s.headers["cache-control"]).toBe("no-cache, no-transform");
      expect(s.headers["content-type"]).toBe("text/event-stream");
      await s.until((t) => t === ":\n\n");

      // Each event arrives before the next is published: nothing more ever
      // comes on this stream to push a held event out (the heartbeat came
      // first), so a compressor holding bytes back fails the wait. How fast
      // events arrive is bench/'s business (latency phase), not a test's.
      for (let i = 0; i < 3; i++) {
        await srv.router.publish([{ topic: "c", event: "tick", data: `n${i}\nsecond line` }]);
        await s.until((t) => t.includes(`data:n${i}\n`));
      }
      expect(normalize(s.text)).toBe(
        ":\n\n" + [0, 1, 2].map((i) => `event:tick\ndata:n${i}\ndata:second line\nid:#\n\n`).join(""),
      );
      s.close();
    },
  );

  test("a small event in a quiet stream is not held for a compression window", async () => {
    const s = await RawStream.open(url(["quiet"]), { "Accept-Encoding": "gzip" });
    // Nothing else flows after it (heartbeats are 30 s apart): a buffering
    // compressor would keep these few bytes until the wait gives up.
    await srv.router.publish([{ topic: "quiet", event: "x", data: "" }]);
    await s.until((t) => t.includes("event:x\n"));
    s.close();
  });

  test("many events through the middleware: all of them, in order", async () => {
    const s = await RawStream.open(url(["many"]), { "Accept-Encoding": "gzip" });
    const n = 500;
    for (let i = 0; i < n; i += 50) {
      await srv.router.publish(Array.from({ length: 50 }, (_, j) => ({ topic: "many", event: "e", data: `${i + j} ${"x".repeat(200)}` })));
    }
    await s.until((t) => t.includes(`data:${n - 1} `), 5000);
    expect(parseEvents(s.text).map((e) => Number(e.data.split(" ")[0]))).toEqual(Array.from({ length: n }, (_, i) => i));
    s.close();
  });

  test("a client that goes away is removed, as without the middleware", async () => {
    const before = srv.router.stats.disconnects.client;
    const s = await RawStream.open(url(["gone"]), { "Accept-Encoding": "gzip" });
    s.close();
    await eventually(() => srv.router.stats.disconnects.client === before + 1, 5000, "client disconnect");
  });

  test("the middleware is really active: other answers may still be compressed", async () => {
    // Control: with threshold 0, the JSON of /health is gzip-encoded; the stream above was not.
    const res = await request(srv.server).get("/sse/health").set("Accept-Encoding", "gzip");
    expect(res.status).toBe(200);
    if ((compressionOptions as { threshold?: number }).threshold === 0) {
      expect(res.headers["content-encoding"]).toBe("gzip");
    }
    // supertest has already gunzipped the body.
    expect(res.body).toMatchObject({ status: "ok" });
  });

  test("POST /submit and errors work behind the middleware", async () => {
    const s = await RawStream.open(url(["sub"]), { "Accept-Encoding": "gzip" });
    const ok = await request(srv.server)
      .post("/sse/submit")
      .set("Accept-Encoding", "gzip")
      .send(submitToken(SECRET, [{ topic: "sub", event: "via-submit", data: "d" }]));
    expect(ok.status).toBe(200);
    await s.until((t) => t.includes("event:via-submit\n"));
    const bad = await request(srv.server).get("/sse/events").set("Accept-Encoding", "gzip");
    expect(bad.status).toBe(401);
    expect(bad.body.error).toBe("token_missing");
    s.close();
  });
});

describe("a compressor that ignores no-transform", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0 }, "/sse", (app) => {
      app.use(compression({ threshold: 0 }));
      // Strip `no-transform`, as a misbehaving proxy or middleware would, so the stream IS gzipped.
      app.use((_req, res, next) => {
        const writeHead = res.writeHead;
        res.writeHead = function (this: typeof res, status: number, headers?: unknown) {
          if (headers && typeof headers === "object" && "Cache-Control" in headers) {
            headers = { ...(headers as Record<string, string>), "Cache-Control": "no-cache" };
          }
          return (writeHead as (s: number, h?: unknown) => typeof res).call(this, status, headers);
        } as typeof res.writeHead;
        next();
      });
    });
  });
  afterAll(async () => {
    await srv.close();
  });

  test("events still arrive at once: the hub flushes the compressor after each write", async () => {
    const zlib = await import("node:zlib");
    const http = await import("node:http");
    let text = "";
    const req = http.get(`${srv.base}/events?token=${subscribeToken(SECRET, ["gz"])}`, {
      headers: { "Accept-Encoding": "gzip" },
      agent: false,
    });
    const res = await new Promise<import("node:http").IncomingMessage>((resolve) => req.on("response", resolve));
    expect(res.headers["content-encoding"]).toBe("gzip");
    const gunzip = res.pipe(zlib.createGunzip());
    gunzip.on("data", (d: Buffer) => (text += d.toString()));
    gunzip.on("error", () => undefined);
    await eventually(() => text === ":\n\n", 2000, "heartbeat through gzip");
    await srv.router.publish([{ topic: "gz", event: "zipped", data: "hello" }]);
    await eventually(() => text.includes("data:hello\n"), 2000, "event through gzip");
    expect(normalize(text)).toBe(":\n\nevent:zipped\ndata:hello\nid:#\n\n");
    req.destroy();
  });
});
