/**
 * A stream's connection gives its HTTP parser back to Node (src/transport/release-parser.ts,
 * issue 17) and still behaves as an HTTP connection carrying one stream:
 * events flow, a client that closes or half-closes is noticed at once, bytes
 * after the stream's request drop the connection, and the host app's `close`
 * listeners on the request still fire. Raw `net` sockets: half-closes and
 * stray bytes are what this is about.
 */
import net from "node:net";
import type { Socket } from "node:net";
import { subscribeToken } from "../src/tokens";
import { SECRET, eventually, startServer, type TestServer } from "./helpers/sse";

const TOKEN = subscribeToken(SECRET, ["t"]);
const EVENTS = `GET /events?token=${TOKEN} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n`;

type ServerSocket = Socket & { parser?: unknown };

let srv: TestServer;
let serverSockets: ServerSocket[];
let requestsClosed: number;

beforeEach(async () => {
  serverSockets = [];
  requestsClosed = 0;
  srv = await startServer({ heartbeatInterval: 0, retry: 0 }, "/", (app) => {
    // A host app's middleware that watches its requests end, before the router.
    app.use((req, _res, next) => {
      req.on("close", () => requestsClosed++);
      next();
    });
  });
  srv.server.on("connection", (socket: ServerSocket) => serverSockets.push(socket));
});

afterEach(async () => {
  await srv.close();
});

/** A raw connection with a live stream whose server side has let go of its parser. */
async function openStream(): Promise<{ client: Socket; text: () => string; gone: Promise<void> }> {
  const client = net.connect(srv.port, "127.0.0.1");
  let text = "";
  client.setEncoding("latin1");
  client.on("data", (d: string) => (text += d));
  client.on("error", () => undefined);
  const gone = new Promise<void>((resolve) => client.once("close", () => resolve()));
  client.write(EVENTS);
  await eventually(() => text.endsWith("3\r\n:\n\n\r\n"), 5000, "the stream's first heartbeat");
  await eventually(() => serverSockets.length === 1 && serverSockets[0]!.parser === null, 5000, "the parser to be released");
  return { client, text: () => text, gone };
}

test("events still flow after the parser is released, and the client closing ends the subscriber", async () => {
  const s = await openStream();
  await srv.router.publish([{ topic: "t", event: "e", data: "hello" }]);
  await eventually(() => /event:e\ndata:hello\nid:[^\n]+\n\n\r\n$/.test(s.text()), 5000, "the event");
  s.client.destroy();
  await eventually(() => srv.router.stats.subscribers === 0, 5000, "no subscribers");
  expect(srv.router.stats.disconnects.client).toBe(1);
  await eventually(() => requestsClosed === 1, 5000, "the request's close event");
});

test("a client that half-closes gets the connection ended, and the subscriber is removed", async () => {
  const s = await openStream();
  s.client.end();
  await s.gone;
  await eventually(() => srv.router.stats.subscribers === 0, 5000, "no subscribers");
  expect(srv.router.stats.disconnects.client).toBe(1);
  await eventually(() => requestsClosed === 1, 5000, "the request's close event");
});

test("bytes after the stream's request drop the connection", async () => {
  const s = await openStream();
  s.client.write("GET /ping HTTP/1.1\r\nHost: x\r\n\r\n");
  await s.gone;
  // Nothing but the stream was ever answered on it.
  expect(s.text().split("HTTP/1.1 ").length - 1).toBe(1);
  await eventually(() => srv.router.stats.subscribers === 0, 5000, "no subscribers");
});

test("the released parser is reused by the next connection, which works as usual", async () => {
  const first = await openStream();
  const res = await fetch(`${srv.base}/ping`);
  expect(res.status).toBe(200);
  // The first stream is untouched by its parser serving another connection.
  await srv.router.publish([{ topic: "t", event: "e", data: "still here" }]);
  await eventually(() => first.text().includes("data:still here\n"), 5000, "the event on the first stream");
  first.client.destroy();
  await eventually(() => srv.router.stats.subscribers === 0, 5000, "no subscribers");
});
