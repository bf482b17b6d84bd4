/**
 * The library's one Logger: the console logger's levels and formats, and the
 * router's `logger` option (why a request was refused, at debug, without the
 * token). The CLI's use of it is in cli.test.ts.
 */
import request from "supertest";
import { SseError } from "../src/errors";
import { createConsoleLogger, type Logger } from "../src/logger";
import { createSseRouter } from "../src/adapters/express";
import { subscribeToken } from "../src/tokens";
import { SECRET, startServer } from "./helpers/sse";

function sink() {
  const lines: string[] = [];
  return { lines, stream: { write: (line: string) => lines.push(line) } };
}

test("console logger: a level writes itself and everything more severe; text quotes only where needed", () => {
  const out = sink();
  const err = sink();
  const logger = createConsoleLogger({ level: "info", stdout: out.stream, stderr: err.stream });
  logger.debug("hidden");
  logger.info("listening on http://x", { port: 80, host: "a b", none: undefined });
  logger.warn("careful", { ok: true });
  logger.error("broken");
  expect(out.lines).toEqual(['sse-server: listening on http://x port=80 host="a b"\n']);
  expect(err.lines).toEqual(["sse-server: careful ok=true\n", "sse-server: broken\n"]);

  const silent = sink();
  const quiet = createConsoleLogger({ level: "silent", stdout: silent.stream, stderr: silent.stream });
  quiet.error("nothing");
  expect(silent.lines).toEqual([]);
});

test("console logger: JSON lines are one parseable object each, with time, level, name, msg and fields", () => {
  const out = sink();
  const logger = createConsoleLogger({ level: "debug", format: "json", stdout: out.stream, stderr: out.stream });
  logger.debug('a "quoted"\nline', { status: 401, code: "token_invalid" });
  logger.error("e");
  expect(out.lines.every((l) => l.endsWith("}\n") && l.indexOf("\n") === l.length - 1)).toBe(true);
  const [first, second] = out.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(first).toEqual({ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), level: "debug", name: "sse-server", msg: 'a "quoted"\nline', status: 401, code: "token_invalid" });
  expect(second).toMatchObject({ level: "error", msg: "e" });
});

test("an invalid logger option is refused at creation", () => {
  expect(() => createSseRouter({ secret: SECRET, logger: { info: () => undefined } as unknown as Logger })).toThrow(
    new SseError("invalid_option", "logger must have debug, info, warn and error methods"),
  );
});

test("the router logs why a request was refused, at debug, never the token", async () => {
  const lines: Array<[string, string, unknown]> = [];
  const record = (level: string) => (message: string, fields?: unknown) => lines.push([level, message, fields]);
  const logger: Logger = { debug: record("debug"), info: record("info"), warn: record("warn"), error: record("error") };
  const srv = await startServer({ logger });
  const forged = subscribeToken("22".repeat(32), ["t"]);
  try {
    expect((await request(srv.server).get("/events")).status).toBe(401);
    expect((await request(srv.server).get("/events").query({ token: forged })).status).toBe(401);
    expect((await request(srv.server).put("/ping")).status).toBe(405);
  } finally {
    await srv.close();
  }
  expect(lines).toEqual([
    ["debug", "GET /events refused: a subscribe token is required: ?token=, Authorization: Bearer, or cookie", { status: 401, code: "token_missing" }],
    ["debug", "GET /events refused: token failed authentication: forged, altered, or made with another secret", { status: 401, code: "token_invalid" }],
    ["debug", "PUT /ping refused: PUT is not allowed on /ping; use GET", { status: 405, code: "method_not_allowed" }],
  ]);
  expect(JSON.stringify(lines)).not.toContain(forged.slice(0, 20));
});
