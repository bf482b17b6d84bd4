/**
 * `compression: true` end to end (issue 16): real server, real sockets, and
 * CPython's zlib as the decoder, fed each piece of the response body as it
 * arrives. Events decode on arrival; a joiner decodes everything after it
 * joined; both match a plain subscriber byte for byte; subscribers in step
 * receive identical compressed bytes; resume, shutdown (gzip trailer) and the
 * slow-client cut work as without compression; `Accept-Encoding` q-values.
 */
import http from "node:http";
import { randomBytes } from "node:crypto";
import { acceptsGzip } from "../src/core/accept-encoding";
import { createSseRouter } from "../src/adapters/express";
import { subscribeToken } from "../src/tokens";
import { PyGunzip } from "./helpers/pygunzip";
import { RawStream, SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

/** Replace ids (`id:<epoch>-<n>`) by `id:#` so frames compare byte for byte. */
const normalize = (text: string) => text.replace(/^id:[0-9a-z]+-[0-9]+$/gm, "id:#");

let py: PyGunzip;
let keys = 0;
beforeAll(() => {
  py = new PyGunzip();
});
afterAll(() => py.close());

/** A gzip event stream read through Python's decoder, piece by piece as the socket delivers it. */
class GzStream {
  status = 0;
  headers: http.IncomingHttpHeaders = {};
  /** Decoded text so far. */
  text = "";
  /** Compressed body bytes so far. */
  raw: Buffer[] = [];
  ended = false;
  paused = false;
  readonly key = `h${keys++}`;
  readonly opened: Promise<void>;
  private res: http.IncomingMessage | undefined;
  private readonly req: http.ClientRequest;
  private chain: Promise<void> = Promise.resolve();
  private waiters: Array<() => void> = [];
  error: Error | undefined;

  constructor(url: string, headers: Record<string, string> = { "Accept-Encoding": "gzip" }) {
    this.req = http.get(url, { headers, agent: false });
    this.req.on("error", () => undefined);
    this.opened = new Promise((resolve) => {
      this.req.on("response", (res) => {
        this.res = res;
        this.status = res.statusCode ?? 0;
        this.headers = res.headers;
        res.on("data", (d: Buffer) => {
          this.raw.push(d);
          this.chain = this.chain
            .then(() => py.feed(this.key, d))
            .then((out) => {
              this.text += out.toString("utf8");
              this.wake();
            })
            .catch((e: Error) => {
              this.error = e;
              this.wake();
            });
        });
        res.on("close", () => {
          this.chain = this.chain.then(() => {
            this.ended = true;
            this.wake();
          });
        });
        resolve();
      });
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  async until(pred: (text: string) => boolean, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!pred(this.text)) {
      if (this.error) throw this.error;
      if (Date.now() > end) throw new Error(`timeout; decoded so far: ${JSON.stringify(this.text.slice(-300))}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 50);
      });
    }
    if (this.error) throw this.error;
  }

  /** Waits for the end of the body; then Python's verdict on the trailer. */
  async finish(): Promise<{ eof: boolean; unused: Buffer; out: Buffer }> {
    await eventually(() => this.ended, 5000, "end of stream");
    await this.chain;
    return py.end(this.key);
  }

  pause(): void {
    this.res?.pause();
    this.res?.socket?.pause();
  }

  close(): void {
    this.req.destroy();
  }
}

describe("Accept-Encoding: gzip, q-values", () => {
  test.each([
    ["gzip", true],
    ["GZIP", true],
    ["x-gzip", true],
    ["gzip, deflate, br", true],
    ["br;q=1.0, gzip;q=0.8, *;q=0.1", true],
    ["gzip;q=0", false],
    ["gzip; q=0.000", false],
    ["gzip;q=0, *", false],
    ["*;q=0.5", true],
    ["*", true],
    ["*;q=0", false],
    ["br, deflate", false],
    ["identity", false],
    ["", false],
    ["gzip;q=1.5", false],
    ["gzip;q=abc", false],
    ["gzip;level=1", true],
    ["gzip;q=0.001", true],
    ["gzip;q=0, gzip;q=0.5", true],
  ])("%j → %s", (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });
  test("no header: plain", () => expect(acceptsGzip(undefined)).toBe(false));
});

describe("compression: true", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0, compression: true, maxBufferBytes: 64 * 1024 });
  });
  afterAll(async () => {
    await srv.close();
  });
  const url = (topics: string[]) => `${srv.base}/events?token=${subscribeToken(SECRET, topics)}`;

  test("headers: Content-Encoding gzip, Vary, no-transform; refusals and unknown codings get plain", async () => {
    const gz = new GzStream(url(["h"]));
    await gz.opened;
    expect(gz.status).toBe(200);
    expect(gz.headers["content-encoding"]).toBe("gzip");
    expect(gz.headers["vary"]).toBe("Accept-Encoding");
    expect(gz.headers["cache-control"]).toBe("no-cache, no-transform");
    expect(gz.headers["content-type"]).toBe("text/event-stream");
    await gz.until((t) => t === ":\n\n");
    gz.close();
    for (const ae of ["gzip;q=0", "br", undefined]) {
      const plain = new RawStream(url(["h"]), ae === undefined ? {} : { "Accept-Encoding": ae });
      await plain.until((t) => t === ":\n\n");
      expect(plain.headers["content-encoding"]).toBeUndefined();
      expect(plain.headers["vary"]).toBe("Accept-Encoding");
      plain.close();
    }
  });

  test("each event decodes on arrival; a joiner decodes all after it joined; both equal the plain stream; in-step subscribers get the same bytes", async () => {
    const plain = new RawStream(url(["t"]));
    const early = new GzStream(url(["t"]));
    await Promise.all([plain.until((t) => t === ":\n\n"), early.until((t) => t === ":\n\n")]);
    const data = (i: number) => JSON.stringify({ type: "trade", symbol: ["BTC-USD", "ETH-USD", "AAPL"][i % 3], price: 100 + (i % 17) / 4, size: (i * 37) % 1000, seq: i });
    let late: GzStream | undefined;
    let plainAtJoin = 0;
    for (let i = 0; i < 150; i++) {
      await srv.router.publish([{ topic: "t", event: "trade", data: data(i) }]);
      // Nothing is held back in a compressor: the event decodes from what has arrived.
      await early.until((t) => t.includes(`"seq":${i}}`));
      if (late) await late.until((t) => t.includes(`"seq":${i}}`));
      await plain.until((t) => t.includes(`"seq":${i}}`));
      if (i === 40) {
        plainAtJoin = plain.text.length;
        late = new GzStream(url(["t"]));
        await late.until((t) => t === ":\n\n");
      }
    }
    expect(normalize(early.text)).toBe(normalize(plain.text));
    expect(normalize(late!.text)).toBe(":\n\n" + normalize(plain.text.slice(plainAtJoin)));
    // Once both are in step (more than a window of events later), the last events
    // arrive as the very same compressed bytes, much smaller than plain.
    const tail = async (s: GzStream) => {
      const mark = s.raw.length;
      for (let i = 150; i < 170; i++) {
        await srv.router.publish([{ topic: "t", event: "trade", data: data(i) }]);
        await s.until((t) => t.includes(`"seq":${i}}`));
      }
      return Buffer.concat(s.raw.slice(mark));
    };
    const [a, b] = await Promise.all([tail(early), (async () => {
      const mark = late!.raw.length;
      await late!.until((t) => t.includes(`"seq":169}`));
      return Buffer.concat(late!.raw.slice(mark));
    })()]);
    expect(a.equals(b)).toBe(true);
    const plainTail = plain.text.slice(plain.text.indexOf(`"seq":150}`));
    expect(a.length * 3).toBeLessThan(Buffer.byteLength(plainTail));
    for (const s of [plain, early, late!]) s.close();
  });

  test("resume (Last-Event-ID) under compression: the missed events, then live ones", async () => {
    const first = new GzStream(url(["r"]));
    await first.until((t) => t === ":\n\n");
    await srv.router.publish([1, 2, 3].map((n) => ({ topic: "r", event: "e", data: `n${n}` })));
    await first.until((t) => t.includes("data:n3\n"));
    const ids = parseEvents(first.text).map((e) => e.id!);
    first.close();
    await srv.router.publish([4, 5].map((n) => ({ topic: "r", event: "e", data: `n${n}` })));
    const again = new GzStream(url(["r"]), { "Accept-Encoding": "gzip", "Last-Event-ID": ids[0]! });
    await again.until((t) => t.includes("data:n5\n"));
    await srv.router.publish([{ topic: "r", event: "e", data: "n6" }]);
    await again.until((t) => t.includes("data:n6\n"));
    expect(parseEvents(again.text).map((e) => e.data)).toEqual(["n2", "n3", "n4", "n5", "n6"]);
    again.close();
  });

  test("a resume of many pages (paced by the socket) and an sse:reset decode the same under compression", async () => {
    const first = new GzStream(url(["pages"]));
    await first.until((t) => t === ":\n\n");
    await srv.router.publish([{ topic: "pages", event: "e", data: "start" }]);
    await first.until((t) => t.includes("data:start\n"));
    const from = parseEvents(first.text)[0]!.id!;
    first.close();
    // ~90 KB of history: several replay pages at maxBufferBytes 64 KiB.
    const n = 300;
    for (let i = 0; i < n; i += 50) {
      await srv.router.publish(Array.from({ length: 50 }, (_, j) => ({ topic: "pages", event: "e", data: `${i + j} ${"y".repeat(250)}` })));
    }
    const again = new GzStream(url(["pages"]), { "Accept-Encoding": "gzip", "Last-Event-ID": from });
    await again.until((t) => t.includes(`data:${n - 1} `), 10_000);
    await srv.router.publish([{ topic: "pages", event: "e", data: "live" }]);
    await again.until((t) => t.includes("data:live\n"));
    expect(parseEvents(again.text).map((e) => e.data.split(" ")[0])).toEqual([...Array.from({ length: n }, (_, i) => String(i)), "live"]);
    again.close();

    const reset = new GzStream(url(["pages"]), { "Accept-Encoding": "gzip", "Last-Event-ID": "nonsense-1" });
    await reset.until((t) => t.includes("event:sse:reset\n"));
    expect(parseEvents(reset.text)[0]).toMatchObject({ event: "sse:reset", data: '{"reason":"unknown_id"}' });
    reset.close();
  });

  test("a stalled compressed subscriber is cut like a plain one (the bound counts compressed bytes)", async () => {
    const before = srv.router.stats.disconnects.slow;
    const fast = new GzStream(url(["flood"]));
    const slow = new GzStream(url(["flood"]));
    await Promise.all([fast, slow].map((s) => s.until((t) => t === ":\n\n")));
    slow.pause();
    // Random payloads do not compress: the stalled socket fills up as plain would.
    // Up to ~25 MB, far more than loopback socket buffers hold; stops at the cut.
    for (let i = 0; i < 800 && srv.router.stats.disconnects.slow === before; i += 20) {
      await srv.router.publish(Array.from({ length: 20 }, (_, j) => ({ topic: "flood", event: "e", data: `${i + j} ${randomBytes(24 * 1024).toString("base64")}` })));
      await fast.until((t) => t.includes(`\ndata:${i + 19} `), 15_000);
    }
    await eventually(() => srv.router.stats.disconnects.slow === before + 1, 10_000, "slow disconnect");
    const seq = parseEvents(fast.text).map((e) => Number(e.data.split(" ")[0]));
    expect(seq).toEqual(Array.from({ length: seq.length }, (_, i) => i));
    fast.close();
    slow.close();
  }, 60_000);
});

test("shutdown ends each gzip stream with a valid trailer (CRC-32 and length checked by Python)", async () => {
  const srv = await startServer({ retry: 0, compression: true });
  const s = new GzStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["end"])}`);
  await s.until((t) => t === ":\n\n");
  await srv.router.publish([{ topic: "end", event: "bye", data: "last" }]);
  await s.until((t) => t.includes("data:last\n"));
  await srv.router.close();
  expect(await s.finish()).toEqual({ eof: true, unused: Buffer.alloc(0), out: Buffer.alloc(0) });
  expect(normalize(s.text)).toBe(":\n\nevent:bye\ndata:last\nid:#\n\n");
  srv.server.closeAllConnections();
  await new Promise((r) => srv.server.close(r));
});

test("compression off (the default): gzip is never sent and Vary is untouched", async () => {
  const srv = await startServer({ retry: 0 });
  const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["off"])}`, { "Accept-Encoding": "gzip" });
  await s.until((t) => t === ":\n\n");
  expect(s.headers["content-encoding"]).toBeUndefined();
  expect(s.headers["vary"] ?? "").not.toContain("Accept-Encoding");
  s.close();
  await srv.close();
});

test("compression must be a boolean: invalid_option", () => {
  expect(() => createSseRouter({ secret: SECRET, compression: "gzip" as never })).toThrow(expect.objectContaining({ code: "invalid_option" }));
});
