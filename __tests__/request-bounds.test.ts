/**
 * Requests are bounded in size and time (issue 11), checked with raw sockets:
 *  - `/submit` with a huge declared Content-Length gets 413 from the header
 *    alone, before any body byte was sent, and the connection is closed;
 *  - a chunked body that grows past the limit gets 413 while it is still
 *    being sent (nothing waits for its end);
 *  - a body that trickles gets the router's 408 `request_timeout`;
 *  - the standalone server's headersTimeout / requestTimeout cut slow
 *    requests, while an event stream lives on past both.
 */
import net from "node:net";
import type { AddressInfo } from "node:net";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { startServer as startStandalone, type RunningServer, type ServerConfig } from "../src/cli";
import { createSseRouter } from "../src/adapters/express";
import { submitToken, subscribeToken } from "../src/tokens";
import { RawStream, SECRET, parseEvents, startServer, type TestServer } from "./helpers/sse";

/** A raw HTTP/1.1 connection recording everything the server sends, and whether it closed. */
class RawClient {
  readonly socket: net.Socket;
  text = "";
  closed = false;
  private waiters: Array<() => void> = [];

  constructor(port: number) {
    this.socket = net.connect(port, "127.0.0.1");
    this.socket.setEncoding("latin1");
    this.socket.on("data", (d: string) => {
      this.text += d;
      this.wake();
    });
    // The server may reset a socket it stopped reading; what arrived before counts.
    this.socket.on("error", () => undefined);
    this.socket.on("close", () => {
      this.closed = true;
      this.wake();
    });
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  write(data: string): void {
    if (!this.socket.destroyed) this.socket.write(data);
  }

  /** Resolves once `predicate()` holds; event-driven (data or close), with a generous safety timeout. */
  async until(predicate: () => boolean, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!predicate()) {
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(this.text.slice(0, 500))}, closed=${this.closed}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1000);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The complete response (head and Content-Length body) once it has arrived. */
  async response(): Promise<{ head: string; body: string }> {
    await this.until(() => {
      const end = this.text.indexOf("\r\n\r\n");
      if (end === -1) return this.closed;
      const length = /\r\ncontent-length: *(\d+)/i.exec(this.text.slice(0, end));
      return this.closed || (length !== null && this.text.length >= end + 4 + Number(length[1]));
    });
    const end = this.text.indexOf("\r\n\r\n");
    return { head: this.text.slice(0, end), body: this.text.slice(end + 4) };
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function expectJsonError(res: { head: string; body: string }, statusLine: string, code: string): void {
  expect(res.head.split("\r\n")[0]).toBe(statusLine);
  expect(res.head).toMatch(/\r\nConnection: close(\r\n|$)/);
  expect(res.head).toMatch(/\r\nAccess-Control-Allow-Origin: \*(\r\n|$)/);
  const body = JSON.parse(res.body) as { error: string; message: string };
  expect(body).toEqual({ error: code, message: expect.any(String) });
  expect(Buffer.byteLength(res.body)).toBe(Number(/\r\nContent-Length: (\d+)/.exec(res.head)![1]));
}

describe("/submit body bounds (router, any app)", () => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startServer({ retry: 0, bodyTimeout: 500 });
  });
  afterAll(async () => {
    await srv.close();
  });

  test("Content-Length of 1 GB: 413 payload_too_large from the header alone, then the connection closes", async () => {
    const c = new RawClient(srv.port);
    // Headers only: not one byte of the body is ever sent, so an answer at
    // all proves the server did not wait for the body.
    c.write("POST /submit HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1073741824\r\n\r\n");
    const res = await c.response();
    expectJsonError(res, "HTTP/1.1 413 Payload Too Large", "payload_too_large");
    await c.until(() => c.closed);
    c.destroy();
  });

  test("a chunked body growing past bodyLimit gets 413 while it is still being sent", async () => {
    const c = new RawClient(srv.port);
    c.write("POST /submit HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    const chunk = "400\r\n" + "A".repeat(1024) + "\r\n";
    let sent = 0;
    // 1 KiB at a time until an answer arrives; the body is never finished.
    while (!c.text.includes("\r\n\r\n") && !c.closed && sent < 1024) {
      c.write(chunk);
      sent++;
      await new Promise((r) => setImmediate(r));
    }
    const res = await c.response();
    expectJsonError(res, "HTTP/1.1 413 Payload Too Large", "payload_too_large");
    expect(sent).toBeLessThan(1024); // answered long before the client stopped
    await c.until(() => c.closed);
  });

  test("a body that trickles: 408 request_timeout after bodyTimeout, connection closed", async () => {
    const c = new RawClient(srv.port);
    c.write("POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n");
    const trickle = setInterval(() => c.write("A"), 50);
    try {
      const res = await c.response();
      expectJsonError(res, "HTTP/1.1 408 Request Timeout", "request_timeout");
      await c.until(() => c.closed);
    } finally {
      clearInterval(trickle);
    }
  });

  test("a normal submit on a keep-alive connection still works, twice", async () => {
    const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["ok"])}`);
    await s.until((t) => t === ":\n\n");
    const c = new RawClient(srv.port);
    for (const n of [1, 2]) {
      const body = submitToken(SECRET, [{ topic: "ok", event: "e", data: String(n) }]);
      const before = c.text.length;
      c.write(`POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      await c.until(() => c.text.slice(before).includes("\r\n\r\n"));
      expect(c.text.slice(before).split("\r\n")[0]).toBe("HTTP/1.1 200 OK");
    }
    expect(c.closed).toBe(false);
    await s.until((t) => parseEvents(t).length === 2);
    c.destroy();
    s.close();
  });

  test("compressed bodies (gzip, deflate, br) are still accepted; an unknown Content-Encoding is 400 and closes", async () => {
    const s = new RawStream(`${srv.base}/events?token=${subscribeToken(SECRET, ["zip"])}`);
    await s.until((t) => t === ":\n\n");
    const compressors: Record<string, (b: Buffer) => Buffer> = { gzip: gzipSync, deflate: deflateSync, br: brotliCompressSync };
    for (const [encoding, compress] of Object.entries(compressors)) {
      const body = compress(Buffer.from(submitToken(SECRET, [{ topic: "zip", event: encoding, data: "x" }])));
      const c = new RawClient(srv.port);
      c.write(`POST /submit HTTP/1.1\r\nHost: x\r\nContent-Encoding: ${encoding}\r\nContent-Length: ${body.length}\r\n\r\n`);
      c.socket.write(body);
      const res = await c.response();
      expect([encoding, res.head.split("\r\n")[0]]).toEqual([encoding, "HTTP/1.1 200 OK"]);
      c.destroy();
    }
    await s.until((t) => parseEvents(t).length === 3);
    expect(parseEvents(s.text).map((e) => e.event)).toEqual(["gzip", "deflate", "br"]);
    s.close();

    const c = new RawClient(srv.port);
    c.write("POST /submit HTTP/1.1\r\nHost: x\r\nContent-Encoding: x-nope\r\nContent-Length: 10\r\n\r\n");
    expectJsonError(await c.response(), "HTTP/1.1 400 Bad Request", "payload_invalid");
    await c.until(() => c.closed);
  });

  test("bodyTimeout is validated like every option", async () => {
    for (const bad of [-1, 1.5, "10000", 2 ** 31]) {
      expect(() => createSseRouter({ secret: SECRET, bodyTimeout: bad as number })).toThrow(/bodyTimeout must be an integer/);
    }
  });
});

const BASE_CONFIG: ServerConfig = {
  secret: SECRET,
  port: 0,
  host: "127.0.0.1",
  basePath: "/",
  redisUrl: undefined,
  logLevel: "silent",
  logFormat: "text",
  accessLog: false,
  router: {},
};

describe("standalone server: headersTimeout and requestTimeout", () => {
  let running: RunningServer;
  let port: number;
  beforeAll(async () => {
    running = await startStandalone({ ...BASE_CONFIG, headersTimeout: 300, requestTimeout: 600 });
    port = (running.server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await running.close();
  });

  test("slow headers and a slow body are cut; an event stream opened before both lives on past them", async () => {
    const stream = new RawStream(`http://127.0.0.1:${port}/events?token=${subscribeToken(SECRET, ["long"])}`);
    await stream.until((t) => t.startsWith(":\n\n"));

    // Headers that never finish: cut after headersTimeout.
    const slowHeaders = new RawClient(port);
    slowHeaders.write("GET /ping HTTP/1.1\r\nHost: x\r\n");
    const dribble = setInterval(() => slowHeaders.write("X-A: b\r\n"), 50);
    // Headers complete, body trickles; the router's bodyTimeout (10 s) is
    // longer than requestTimeout here, so Node's own 408 comes first.
    const slowBody = new RawClient(port);
    slowBody.write("POST /submit HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n");
    const trickle = setInterval(() => slowBody.write("A"), 50);
    try {
      await slowHeaders.until(() => slowHeaders.closed);
      await slowBody.until(() => slowBody.closed);
    } finally {
      clearInterval(dribble);
      clearInterval(trickle);
    }
    expect(slowHeaders.text.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");
    expect(slowBody.text.split("\r\n")[0]).toBe("HTTP/1.1 408 Request Timeout");

    // The stream is older than both cut requests, so it outlived requestTimeout.
    expect(stream.ended).toBe(false);
    await running.hub.publish([{ topic: "long", event: "still", data: "here" }]);
    await stream.until((t) => t.includes("event:still"));
    expect(parseEvents(stream.text).map((e) => e.data)).toEqual(["here"]);
    stream.close();
  });

  test("requestTimeout below headersTimeout is refused", async () => {
    await expect(
      startStandalone({ ...BASE_CONFIG, headersTimeout: 500, requestTimeout: 100 }),
    ).rejects.toMatchObject({ code: "invalid_option" });
  });
});
