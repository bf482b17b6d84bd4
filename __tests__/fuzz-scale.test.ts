/**
 * Fuzz at scale (issue 15): over ten thousand generated requests per run,
 * written as raw bytes on a few keep-alive sockets (so framing the Node
 * client refuses is sent too: Transfer-Encoding lists, chunked bodies, CL+TE,
 * duplicate lengths, Content-Encoding of every kind over bodies that are
 * really compressed or not), against the standalone server (`node dist/cli.js`
 * in its own process) and the Express router. Tokens are random strings,
 * mutated valid tokens and genuine Branca around arbitrary msgpack; plus
 * queries, Authorization / Cookie / Last-Event-ID headers and bodies.
 *
 * The contract checked for every answer: no 5xx; every 4xx from our code is
 * the documented JSON `{error, message}` with the status its code maps to;
 * a 4xx without a JSON body only from Node's own HTTP parser (it answers
 * malformed framing itself and closes the connection). Meanwhile a live
 * subscriber on each server receives every numbered event a publisher
 * submits, in order, none missing, and the server process never crashes.
 *
 * Inputs are drawn up front with `fc.sample` (no shrinking: a failure names
 * the exact input and the seed). Reproduce with
 * `FUZZ_SEED=<seed> npx jest __tests__/fuzz-scale.test.ts`; `FUZZ_INPUTS`
 * sets the count per server (default 5000, so 10,000 a run); `FUZZ_DUMP=<file>` writes the
 * raw requests of a failing connection to a file. The CPU cost of rejecting is
 * measured in `bench/fuzz-cost.ts`, not here (timing is noisy in CI).
 */
import http from "node:http";
import net from "node:net";
import zlib from "node:zlib";
import { randomBytes } from "node:crypto";
import fc from "fast-check";
import { HTTP_STATUS } from "../src/errors";
import { submitToken, subscribeToken } from "../src/tokens";
import { base62, headerSafe, headerText, nasty, pct, tokenArbitraries } from "./helpers/fuzz";
import { CliServer, SECRET as CLI_SECRET } from "./helpers/redis";
import { RawStream, SECRET as ROUTER_SECRET, eventually, parseEvents, startServer, type TestServer } from "./helpers/sse";

const SEED = process.env["FUZZ_SEED"] === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(process.env["FUZZ_SEED"]);
const INPUTS = Number(process.env["FUZZ_INPUTS"] ?? 5000);
/** Keep-alive connections per server the inputs are spread over. */
const CONNECTIONS = 4;
const COOKIE = "sse_token";

// ---------------------------------------------------------------------------
// A raw HTTP/1.1 client on one socket: one request at a time, reconnecting when the server closes.

interface RawReply {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
  /** A 200 event stream (the connection is closed after its head). */
  stream: boolean;
  /** The server closed the connection after this answer. */
  closed: boolean;
}

class RawConnection {
  private socket: net.Socket | undefined;
  private buffer = Buffer.alloc(0);
  private ended = false;
  private onChange: (() => void) | undefined;

  constructor(private readonly port: number) {}

  private connect(): net.Socket {
    const socket = net.connect(this.port, "127.0.0.1");
    this.buffer = Buffer.alloc(0);
    this.ended = false;
    // Events of a socket already replaced (closed after its last answer) must not touch the new one.
    socket.on("data", (chunk: Buffer) => {
      if (socket !== this.socket) return;
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.onChange?.();
    });
    const end = () => {
      if (socket !== this.socket) return;
      this.ended = true;
      this.onChange?.();
    };
    socket.on("end", end);
    socket.on("close", end);
    socket.on("error", () => undefined);
    this.socket = socket;
    return socket;
  }

  /** Sends `bytes` (one request) and resolves with the parsed answer. */
  async request(bytes: Buffer, head: boolean): Promise<RawReply> {
    if (this.socket === undefined || this.ended || this.socket.destroyed) this.connect();
    const socket = this.socket!;
    socket.write(bytes);
    try {
      return await new Promise<RawReply>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no complete answer within 5 s")), 5000);
        this.onChange = () => {
          let reply: RawReply | undefined;
          try {
            reply = this.parse(head);
          } catch (err) {
            clearTimeout(timer);
            reject(err);
            return;
          }
          if (reply === undefined) return;
          clearTimeout(timer);
          resolve(reply);
        };
        this.onChange();
      });
    } finally {
      this.onChange = undefined;
    }
  }

  /** One complete answer from the buffer, or undefined if more bytes are needed. */
  private parse(head: boolean): RawReply | undefined {
    const end = this.buffer.indexOf("\r\n\r\n");
    if (end === -1) {
      if (this.ended) throw new Error(`connection closed without an answer: ${JSON.stringify(this.buffer.toString("latin1").slice(0, 200))}`);
      return undefined;
    }
    const lines = this.buffer.subarray(0, end).toString("latin1").split("\r\n");
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0]!);
    if (!m) throw new Error(`not an HTTP answer: ${JSON.stringify(lines[0])}`);
    const status = Number(m[1]);
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(":");
      const name = line.slice(0, colon).toLowerCase();
      const value = line.slice(colon + 1).trim();
      headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
    }
    const rest = this.buffer.subarray(end + 4);
    const done = (body: Buffer, used: number, stream = false): RawReply => {
      const leftover = rest.length - used;
      const closed = stream || this.ended || headers.get("connection")?.toLowerCase() === "close";
      // Anything after one answer to one request would mean the connection is out of step: fail loudly.
      if (leftover > 0 && !stream) {
        throw new Error(`${leftover} unexpected bytes after a ${status} answer: ${JSON.stringify(this.buffer.toString("latin1").slice(0, 1200))}`);
      }
      this.buffer = Buffer.alloc(0);
      if (closed) this.close();
      return { status, headers, body, stream, closed };
    };
    if (status === 200 && (headers.get("content-type") ?? "").startsWith("text/event-stream")) return done(Buffer.alloc(0), rest.length, true);
    if (head || status === 204 || status === 304) return done(Buffer.alloc(0), 0);
    if ((headers.get("transfer-encoding") ?? "").toLowerCase() === "chunked") {
      const parts: Buffer[] = [];
      let at = 0;
      for (;;) {
        const eol = rest.indexOf("\r\n", at);
        if (eol === -1) return this.ended ? done(Buffer.concat(parts), rest.length) : undefined;
        const size = parseInt(rest.subarray(at, eol).toString("latin1"), 16);
        if (size === 0) {
          if (rest.length < eol + 4) return undefined;
          return done(Buffer.concat(parts), eol + 4);
        }
        if (rest.length < eol + 2 + size + 2) return undefined;
        parts.push(rest.subarray(eol + 2, eol + 2 + size));
        at = eol + 2 + size + 2;
      }
    }
    const length = headers.get("content-length");
    if (length !== undefined) {
      const n = Number(length);
      if (rest.length < n) return this.ended ? done(rest, rest.length) : undefined;
      return done(rest.subarray(0, n), n);
    }
    return this.ended ? done(rest, rest.length) : undefined;
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }
}

// ---------------------------------------------------------------------------
// Inputs

type Framing = "length" | "chunked" | "te-list" | "cl-and-te" | "bad-chunked" | "two-lengths" | "none";

interface FuzzInput {
  method: string;
  target: string;
  headers: Array<[string, string]>;
  body: Buffer;
  framing: Framing;
  teValue: string;
  chunkSizes: number[];
}

function inputs(secret: string, seed: number, count: number): FuzzInput[] {
  const { VALID_SUB, VALID_SUBMIT, token } = tokenArbitraries(secret);
  const liveSubmit = submitToken(secret, [{ topic: "fuzz-a", event: "e", data: "x".repeat(100) }]);
  const queryKey = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom("token", "lastEventId", "token[]", "token[a]", "", "__proto__") },
    { weight: 1, arbitrary: fc.string({ unit: "binary-ascii", maxLength: 10 }) },
  );
  const queryValue = fc.oneof(
    { weight: 4, arbitrary: token.map((t) => pct(t)) },
    { weight: 1, arbitrary: nasty.map((s) => pct(s)) },
    { weight: 1, arbitrary: fc.constantFrom("%", "%zz", "%E0%A4%A", "%00", "%0d%0a", "%C0%80", "%F4%90%80%80") },
    { weight: 1, arbitrary: fc.constant(VALID_SUB) },
  );
  const query = fc.array(fc.tuple(queryKey, queryValue), { maxLength: 3 }).map((pairs) => pairs.map(([k, v]) => `${pct(k)}=${v}`).join("&"));
  const lastEventId = fc.oneof(
    headerText,
    fc.constantFrom("0", "-1", "1e9999", "x-99999999999999999999", "-", "0-0", "abc.0-0", ".1-1"),
    fc.tuple(base62(12), fc.nat(), fc.nat()).map(([e, a, b]) => `${e.toLowerCase()}.${a}-${b}`),
  );
  const headerPool = fc.record(
    {
      "Last-Event-ID": lastEventId,
      Authorization: fc.oneof(
        token.map((t) => `Bearer ${headerSafe(t)}`),
        fc.constant(`Bearer ${VALID_SUB}`),
        fc.constantFrom("Bearer", "Bearer ", "Basic dXNlcjpwYXNz", ""),
        headerText,
      ),
      Cookie: fc.oneof(
        token.map((t) => `${COOKIE}=${headerSafe(t).replace(/;/g, "")}`),
        fc.constant(`${COOKIE}=${VALID_SUB}`),
        fc.constantFrom(`${COOKIE}`, `;;;`, `${COOKIE}="`),
        headerText,
      ),
      Accept: fc.oneof(headerText, fc.constant("text/event-stream")),
      "Accept-Encoding": fc.constantFrom("gzip", "br", "*", "identity;q=0", ""),
      Origin: fc.oneof(headerText, fc.constant("https://a.example")),
      "Content-Type": fc.oneof(headerText, fc.constantFrom("application/octet-stream", "text/plain", "application/json")),
    },
    { requiredKeys: [] },
  );
  const rawBody = fc.oneof(
    { weight: 4, arbitrary: token.map((t) => Buffer.from(t, "utf8")) },
    { weight: 2, arbitrary: fc.constantFrom(Buffer.from(VALID_SUBMIT), Buffer.from(liveSubmit)) },
    { weight: 2, arbitrary: fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.from(b)) },
    { weight: 1, arbitrary: fc.constant(Buffer.alloc(0)) },
    { weight: 2, arbitrary: fc.integer({ min: 8193, max: 12_000 }).map((n) => Buffer.from(VALID_SUBMIT.padEnd(n, "A"))) },
  );
  // What Content-Encoding says, and what the bytes really are (they need not agree).
  const encoding = fc.constantFrom("", "", "", "gzip", "deflate", "br", "identity", "x-nope", "gzip, gzip", "gzip, identity", "GZIP");
  const actually = fc.constantFrom("plain", "plain", "gzip", "deflate", "br", "gzip-gzip", "truncated-gzip", "bomb");
  const encode = (body: Buffer, how: string): Buffer => {
    if (how === "gzip") return zlib.gzipSync(body);
    if (how === "deflate") return zlib.deflateSync(body);
    if (how === "br") return zlib.brotliCompressSync(body);
    if (how === "gzip-gzip") return zlib.gzipSync(zlib.gzipSync(body));
    if (how === "truncated-gzip") return zlib.gzipSync(body).subarray(0, 12);
    if (how === "bomb") return zlib.gzipSync(Buffer.alloc(2 * 1024 * 1024, 0x41));
    return body;
  };
  const framing = fc.oneof(
    { weight: 10, arbitrary: fc.constant<Framing>("length") },
    { weight: 4, arbitrary: fc.constant<Framing>("chunked") },
    { weight: 2, arbitrary: fc.constantFrom<Framing>("te-list", "cl-and-te", "bad-chunked", "two-lengths", "none") },
  );
  const teValue = fc.constantFrom("gzip, chunked", "chunked, gzip", "identity, chunked", "Chunked", "chunked, chunked", "x, chunked", "chunked;q=1");
  // Mostly the two token paths (where the decoding work is); every other route and method now and then.
  const routeAndMethod: fc.Arbitrary<[string, string]> = fc.oneof(
    { weight: 8, arbitrary: fc.constant<[string, string]>(["/events", "GET"]) },
    { weight: 8, arbitrary: fc.constant<[string, string]>(["/submit", "POST"]) },
    {
      weight: 4,
      arbitrary: fc.tuple(
        fc.constantFrom("/events", "/submit", "/ping", "/health", "/metrics", "/nope", "/events/", "//submit", "/EVENTS"),
        fc.constantFrom("GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE"),
      ),
    },
  );
  const input = fc
    .record({
      rm: routeAndMethod,
      q: query,
      h: headerPool,
      body: rawBody,
      ce: encoding,
      really: actually,
      framing,
      teValue,
      chunkSizes: fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 6 }),
    })
    .map(({ rm: [r, m], q, h, body, ce, really, framing: f, teValue: te, chunkSizes }): FuzzInput => {
      const headers: Array<[string, string]> = [];
      for (const [k, v] of Object.entries(h)) if (v !== undefined) headers.push([k, v]);
      if (ce !== "") headers.push(["Content-Encoding", ce]);
      // GET/HEAD with a body are legal but rare; keep most of them bare.
      const withBody = m !== "GET" && m !== "HEAD" && f !== "none";
      return {
        method: m,
        target: q === "" ? r : `${r}?${q}`,
        headers,
        body: withBody ? encode(body, really) : Buffer.alloc(0),
        framing: withBody ? f : "length",
        teValue: te,
        chunkSizes,
      };
    });
  return fc.sample(input, { numRuns: count, seed });
}

/** The request bytes for `input`, with the framing it asks for. */
function serialize(input: FuzzInput): Buffer {
  let head = `${input.method} ${input.target} HTTP/1.1\r\nHost: 127.0.0.1\r\n`;
  for (const [k, v] of input.headers) head += `${k}: ${v.replace(/[\r\n\0]/g, " ")}\r\n`;
  const { body } = input;
  const chunked = (sizes: number[], broken: boolean): Buffer => {
    const parts: Buffer[] = [];
    let at = 0;
    let i = 0;
    while (at < body.length) {
      const n = Math.min(sizes[i++ % sizes.length]!, body.length - at);
      parts.push(Buffer.from(`${broken && i === 1 ? "zz" : n.toString(16)}${i === 2 ? ";ext=1" : ""}\r\n`), body.subarray(at, at + n), Buffer.from("\r\n"));
      at += n;
    }
    parts.push(Buffer.from("0\r\n\r\n"));
    return Buffer.concat(parts);
  };
  switch (input.framing) {
    case "length":
      if (body.length > 0 || input.method === "POST") head += `Content-Length: ${body.length}\r\n`;
      return Buffer.concat([Buffer.from(head + "\r\n", "latin1"), body]);
    case "chunked":
      return Buffer.concat([Buffer.from(head + "Transfer-Encoding: chunked\r\n\r\n", "latin1"), chunked(input.chunkSizes, false)]);
    case "te-list":
      return Buffer.concat([Buffer.from(head + `Transfer-Encoding: ${input.teValue}\r\n\r\n`, "latin1"), chunked(input.chunkSizes, false)]);
    case "cl-and-te":
      return Buffer.concat([Buffer.from(head + `Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n`, "latin1"), chunked(input.chunkSizes, false)]);
    case "bad-chunked":
      return Buffer.concat([Buffer.from(head + "Transfer-Encoding: chunked\r\n\r\n", "latin1"), chunked(input.chunkSizes, true)]);
    case "two-lengths":
      return Buffer.concat([Buffer.from(head + `Content-Length: ${body.length}\r\nContent-Length: ${body.length + 1}\r\n\r\n`, "latin1"), body]);
    case "none":
      // No body, no length: a bare request (a body here would be read as the next request).
      return Buffer.from(head + "\r\n", "latin1");
  }
}

/** Framings Node's HTTP parser refuses (or may: a Transfer-Encoding list not ending in chunked). */
const MALFORMED = new Set<Framing>(["te-list", "cl-and-te", "bad-chunked", "two-lengths"]);

function describeInput(input: FuzzInput): string {
  return JSON.stringify({ ...input, body: `${input.body.length} bytes: ${input.body.toString("latin1").slice(0, 80)}` }).slice(0, 600);
}

/** Every answer's contract; returns its outcome name for the coverage tally. */
function check(reply: RawReply, input: FuzzInput, hostApp: boolean): string {
  const where = () => `seed ${SEED}: ${reply.status} for ${describeInput(input)}`;
  if (reply.status >= 500) throw new Error(`5xx: ${where()} body ${reply.body.toString().slice(0, 300)}`);
  if (reply.stream) return "stream";
  if (reply.status < 400) return String(reply.status);
  if (input.method === "HEAD") return `HEAD ${reply.status}`;
  const type = reply.headers.get("content-type") ?? "";
  if (!type.startsWith("application/json")) {
    // Node's HTTP parser refuses malformed framing or an oversized head before any app code, with an empty body, and closes.
    if ((reply.status === 400 || reply.status === 431) && reply.body.length === 0 && reply.closed) return `node ${reply.status}`;
    // Mounted in an app, paths that are not the router's fall through to the host app (Express's own 404 page).
    if (hostApp && reply.status === 404 && type.startsWith("text/html")) return "host 404";
    throw new Error(`4xx that is not our JSON: ${where()} type ${type} body ${reply.body.toString().slice(0, 200)}`);
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(reply.body.toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new Error(`4xx with a body that is not JSON: ${where()}`);
  }
  const code = json["error"] as keyof typeof HTTP_STATUS;
  const shapeOk = Object.keys(json).sort().join() === "error,message" && typeof json["message"] === "string" && (json["message"] as string).length > 0;
  if (!shapeOk || HTTP_STATUS[code] !== reply.status) throw new Error(`4xx JSON not as documented: ${where()} ${reply.body.toString().slice(0, 200)}`);
  return code;
}

// ---------------------------------------------------------------------------
// One run against one server: the fuzz inputs on CONNECTIONS sockets, and a live subscriber checked at the end.

async function fuzzServer(port: number, base: string, secret: string, hostApp: boolean): Promise<{ outcomes: Map<string, number>; published: number }> {
  const live = `live-${randomBytes(8).toString("hex")}`;
  const stream = new RawStream(`${base}/events?token=${subscribeToken(secret, [live])}`);
  await stream.until((t) => t.startsWith(":\n\n") || t.includes("\n:\n\n") || t.includes(":\n\n"));
  let publishing = true;
  let published = 0;
  const pubAgent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const publisher = (async () => {
    while (publishing) {
      const body = submitToken(secret, [{ topic: live, event: "n", data: String(published) }]);
      const status = await new Promise<number>((resolve, reject) => {
        const req = http.request(`${base}/submit`, { method: "POST", agent: pubAgent, headers: { "Content-Length": String(body.length) } }, (res) => {
          res.resume();
          res.on("end", () => resolve(res.statusCode ?? 0));
        });
        req.on("error", reject);
        req.end(body);
      });
      if (status !== 200) throw new Error(`publisher: submit ${published} answered ${status}`);
      published++;
      await new Promise((r) => setTimeout(r, 5));
    }
  })();
  publisher.catch(() => undefined);

  const all = inputs(secret, SEED, INPUTS);
  const outcomes = new Map<string, number>();
  let next = 0;
  const worker = async () => {
    const conn = new RawConnection(port);
    let previous: FuzzInput | undefined;
    const history: FuzzInput[] = [];
    try {
      while (next < all.length) {
        const input = all[next++]!;
        let reply: RawReply;
        history.push(input);
        try {
          reply = await conn.request(serialize(input), input.method === "HEAD");
        } catch (err) {
          // Node's parser may also just close on malformed framing (when an earlier answer on the connection is still being flushed): not our code.
          if (MALFORMED.has(input.framing) && /closed without an answer/.test((err as Error).message)) {
            outcomes.set("node closed", (outcomes.get("node closed") ?? 0) + 1);
            history.length = 0;
            previous = undefined;
            continue;
          }
          conn.close();
          if (process.env["FUZZ_DUMP"]) require("node:fs").writeFileSync(process.env["FUZZ_DUMP"], Buffer.concat(history.map((h) => Buffer.concat([serialize(h), Buffer.from("\n=====\n")]))));
          const before = previous === undefined ? "" : ` (after ${describeInput(previous)} on the same connection)`;
          throw new Error(`seed ${SEED}: ${(err as Error).message} for ${describeInput(input)}${before}`);
        }
        // Malformed framing can be answered (405, 401...) before Node's parser reaches the bad bytes and
        // then closes: those bytes belong to this request, so never reuse its connection for the next one.
        if (MALFORMED.has(input.framing)) conn.close();
        previous = reply.closed || MALFORMED.has(input.framing) ? undefined : input;
        if (previous === undefined) history.length = 0;
        const outcome = check(reply, input, hostApp);
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    } finally {
      conn.close();
    }
  };
  try {
    await Promise.all(Array.from({ length: CONNECTIONS }, worker));
  } finally {
    publishing = false;
    await publisher.catch(() => undefined);
    pubAgent.destroy();
  }
  await publisher;
  // Every numbered event, in order, none missing, none twice; the stream never ended.
  await stream.until((t) => t.includes(`data:${published - 1}\n`), 10_000);
  const events = parseEvents(stream.text);
  expect(events.map((e) => e.event).every((name) => name === "n")).toBe(true);
  expect(events.map((e) => Number(e.data))).toEqual(Array.from({ length: published }, (_, i) => i));
  expect(stream.ended).toBe(false);
  stream.close();
  if (process.env["FUZZ_STATS"]) console.log(base, published, Object.fromEntries(outcomes));
  return { outcomes, published };
}

/** Each layer was reached: routing, token extraction, Branca, msgpack shape, body limit and decoding, Node's parser. */
function expectCoverage(outcomes: Map<string, number>, hostApp: boolean): void {
  let total = 0;
  for (const n of outcomes.values()) total += n;
  expect(total).toBe(INPUTS);
  for (const outcome of ["200", "stream", "token_missing", "token_invalid", "payload_invalid", "payload_too_large", "method_not_allowed", hostApp ? "host 404" : "not_found", "node 400"]) {
    expect({ outcome, seen: (outcomes.get(outcome) ?? 0) > 0 }).toEqual({ outcome, seen: true });
  }
}

let cli: CliServer;
let router: TestServer;
const errorLog = jest.spyOn(console, "error");

beforeAll(async () => {
  cli = await CliServer.start({ SSE_HEALTH: "1", SSE_METRICS: "1" });
  router = await startServer({ retry: 0, tokenCookie: COOKIE, health: true, metrics: true });
}, 30_000);

afterAll(async () => {
  await cli?.stop();
  await router?.close();
  errorLog.mockRestore();
});

test(`standalone server (its own process): ${INPUTS} raw requests, no 5xx, documented 4xx, every live event delivered`, async () => {
  const port = Number(new URL(cli.url).port);
  const { outcomes, published } = await fuzzServer(port, cli.url, CLI_SECRET, false);
  expectCoverage(outcomes, false);
  expect(published).toBeGreaterThan(10);
  expect(cli.running).toBe(true);
  // The server logs internal errors (a 500 would be one); none happened.
  expect(cli.output).not.toMatch(/internal error|Error:/);
}, 90_000);

test(`Express router: ${INPUTS} raw requests, no 5xx, documented 4xx, every live event delivered`, async () => {
  const { outcomes, published } = await fuzzServer(router.port, router.base, ROUTER_SECRET, true);
  expectCoverage(outcomes, true);
  expect(published).toBeGreaterThan(10);
  expect(errorLog).not.toHaveBeenCalled();
  // Every fuzzed stream went away again (none leaked through a keep-alive socket).
  await eventually(() => router.router.stats.subscribers === 0, 5000, "fuzz streams to go away");
}, 90_000);
