/**
 * The standalone server's command line (issue 18): --help and --version, every
 * setting from one table (parsing, help and the README cannot drift), clear
 * errors for bad values, logs (levels, JSON lines, access log without tokens
 * or query strings, why a request got 401), a missing ioredis, and the
 * publisher telling an unreachable hub from a refusing one.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { encode } from "@msgpack/msgpack";
import { brancaEncode } from "../src/tokens/branca";
import { README_MARKERS, SETTINGS, renderMarkdown } from "../src/cli-options";
import { parseSecret } from "../src/options";
import { createPublisher } from "../src/publisher";
import { submitToken, subscribeToken } from "../src/tokens";
import { installWithoutIoredis } from "./helpers/package-copy";
import { SECRET } from "./helpers/sse";

const ROOT = path.join(__dirname, "..");
const CLI = path.join(ROOT, "dist", "cli.js");
const VERSION = (JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")) as { version: string }).version;

beforeAll(() => {
  // Build only when dist/ is missing: a rebuild empties dist/ under other test files.
  if (existsSync(CLI)) return;
  const build = spawnSync("npx", ["tsup"], { cwd: ROOT, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`build failed: ${build.stderr}`);
}, 120_000);

function run(env: Record<string, string>, args: string[] = [], cli = CLI) {
  return spawnSync(process.execPath, [cli, ...args], { env: { PATH: process.env["PATH"] ?? "", ...env }, encoding: "utf8", timeout: 10_000 });
}

interface Started {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  stop(): Promise<number | null>;
}

/** Starts the CLI and resolves with its URL once the startup line (text or JSON) appears. */
async function start(env: Record<string, string>, args: string[] = []): Promise<Started> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, PORT: "0", HOST: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no startup line: ${out}${err}`)), 10_000);
    child.stdout!.on("data", (d) => {
      out += d;
      const m = /listening on (http:\/\/[^\s"]+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then((code) => reject(new Error(`exited ${code}: ${out}${err}`)));
  });
  return {
    child,
    url,
    stdout: () => out,
    stderr: () => err,
    stop: () => {
      child.kill("SIGTERM");
      return exited;
    },
  };
}

async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

/** Reads a stream until `predicate` holds on the text so far, then cancels it. */
async function readUntil(res: Response, predicate: (text: string) => boolean): Promise<string> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let text = "";
  while (!predicate(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  await reader.cancel();
  return text;
}

describe("help, version, and the one settings table", () => {
  test("--help prints every setting's variable and flag, exit 0, nothing on stderr", () => {
    for (const flag of ["--help", "-h"]) {
      const result = run({}, [flag]);
      expect({ status: result.status, stderr: result.stderr }).toEqual({ status: 0, stderr: "" });
      expect(result.stdout.startsWith(`sse-server ${VERSION}: a Server-Sent Events hub (npm package sse-hub)\n\nUsage: `)).toBe(true);
      for (const s of SETTINGS) {
        expect(result.stdout).toContain(s.flag === undefined ? `  ${s.env}  (` : `  --${s.flag}${s.value === undefined ? "" : ` ${s.value}`}, ${s.env}  (`);
      }
    }
    // Even with no SSE_SECRET and a mistyped flag next to it.
    expect(run({}, ["--bogus", "--help"]).status).toBe(0);
  });

  test("--version prints the package version, exit 0", () => {
    const result = run({}, ["--version"]);
    expect({ status: result.status, stdout: result.stdout, stderr: result.stderr }).toEqual({ status: 0, stdout: `${VERSION}\n`, stderr: "" });
  });

  test("the README's settings table is the one rendered from the code (npm run docs:cli rewrites it)", () => {
    const readme = readFileSync(path.join(ROOT, "README.md"), "utf8");
    const start = readme.indexOf(README_MARKERS.start);
    const end = readme.indexOf(README_MARKERS.end);
    expect(start).toBeGreaterThan(-1);
    expect(readme.slice(start + README_MARKERS.start.length + 1, end)).toBe(renderMarkdown());
  });
});

describe("bad configuration: exit 2, one line naming the setting", () => {
  test.each([
    [["--bogus"], {}, "sse-server: unknown option --bogus; run sse-server --help for the list\n"],
    [["serve"], {}, "sse-server: unexpected argument serve; settings are flags (--port 8000) or environment variables; run sse-server --help\n"],
    [[], { BASE_PATH: "/sse server" }, 'sse-server: BASE_PATH (--base-path) may only contain URL path characters (no spaces or quotes); got "/sse server"\n'],
    [[], { BASE_PATH: "sse-server/" }, 'sse-server: BASE_PATH (--base-path) must start with "/", e.g. /sse-server/; got "sse-server/"\n'],
    [["--base-path", "/x?y=1"], {}, 'sse-server: BASE_PATH (--base-path) must be a path only, without "?" or "#"; got "/x?y=1"\n'],
    [[], { SSE_TOKEN_TTL: "1d" }, 'sse-server: SSE_TOKEN_TTL (--token-ttl) must be a whole number; got "1d"\n'],
    [[], { SSE_MAX_TOPICS: "0" }, "sse-server: SSE_MAX_TOPICS (--max-topics): maxTopics must be an integer >= 1; got 0\n"],
    [[], { SSE_HEALTH: "maybe" }, 'sse-server: SSE_HEALTH (--health) must be 1 or 0 (true/false); got "maybe"\n'],
    [[], { SSE_LOG_LEVEL: "verbose" }, 'sse-server: SSE_LOG_LEVEL (--log-level) must be one of debug, info, warn, error, silent; got "verbose"\n'],
    [[], { SSE_TOKEN_COOKIE: "a b" }, "sse-server: SSE_TOKEN_COOKIE (--token-cookie): tokenCookie must be a valid cookie name\n"],
  ])("%j %j", (args, env, stderr) => {
    const result = run({ SSE_SECRET: SECRET, ...env }, args);
    expect({ status: result.status, stdout: result.stdout, stderr: result.stderr }).toEqual({ status: 2, stdout: "", stderr });
  });
});

describe("settings reach the router", () => {
  test("router options from the environment and flags (a flag wins) shape the stream", async () => {
    const server = await start({ SSE_RETRY: "9999", SSE_RETRY_JITTER: "0", SSE_CORS: "https://a.example, https://b.example" }, ["--retry", "1234", "--base-path", "/hub/"]);
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/hub$/);
      const res = await fetch(`${server.url}/events?token=${subscribeToken(SECRET, ["t"])}`, { headers: { Origin: "https://b.example" } });
      expect(res.status).toBe(200);
      expect(res.headers.get("access-control-allow-origin")).toBe("https://b.example");
      expect(res.headers.get("access-control-allow-credentials")).toBe("true");
      // Jitter 0: exactly the flag's retry, not the environment's.
      expect(await readUntil(res, (t) => t.includes("retry:") && t.endsWith("\n\n"))).toBe(":\n\nretry:1234\n\n");
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  test("SSE_TOKEN_TTL is applied: an old token is refused", async () => {
    const server = await start({ SSE_TOKEN_TTL: "1", SSE_MAX_EVENTS_PER_SUBMIT: "1" });
    try {
      const old = brancaEncode(parseSecret(SECRET), encode({ topics: ["t"] }), { timestamp: Math.floor(Date.now() / 1000) - 60 });
      const res = await fetch(`${server.url}/events?token=${old}`);
      expect({ status: res.status, body: await res.json() }).toEqual({ status: 401, body: { error: "token_invalid", message: "token has expired" } });
      const two = submitToken(SECRET, [
        { topic: "t", event: "e", data: "1" },
        { topic: "t", event: "e", data: "2" },
      ]);
      const submit = await fetch(`${server.url}/submit`, { method: "POST", body: two });
      expect({ status: submit.status, body: await submit.json() }).toEqual({
        status: 400,
        body: { error: "payload_invalid", message: "2 events in one submit; at most 1 allowed" },
      });
    } finally {
      await server.stop();
    }
  });
});

describe("logs", () => {
  test("JSON lines parse; the access log has path, status, code and duration but never a token or query string; debug says why a 401", async () => {
    const server = await start({ SSE_LOG_FORMAT: "json", SSE_LOG_LEVEL: "debug", SSE_ACCESS_LOG: "1", SSE_MAX_SUBSCRIBE_TOKEN_LENGTH: "1000" });
    const good = subscribeToken(SECRET, ["t"]);
    const forged = subscribeToken("11".repeat(32), ["t"]);
    const notBase62 = "not-base62-" + "x".repeat(80);
    const expired = brancaEncode(parseSecret(SECRET), encode({ topics: ["t"] }), { timestamp: 1 });
    try {
      const stream = await fetch(`${server.url}/events?token=${good}&lastEventId=abc`);
      await readUntil(stream, (t) => t.startsWith(":\n\n"));
      expect((await fetch(`${server.url}/events?token=${forged}`)).status).toBe(401);
      expect((await fetch(`${server.url}/events`, { headers: { Authorization: `Bearer ${"A".repeat(2000)}` } })).status).toBe(401);
      expect((await fetch(`${server.url}/events?token=${notBase62}`)).status).toBe(401);
      expect((await fetch(`${server.url}/events`, { headers: { Authorization: `Bearer ${expired}` } })).status).toBe(401);
      expect((await fetch(`${server.url}/nowhere?token=${good}`)).status).toBe(404);
      expect((await fetch(`${server.url}/submit`, { method: "POST", body: submitToken(SECRET, [{ topic: "t", event: "e", data: "" }]) })).status).toBe(200);
      // The access line of each request comes when it is done; wait for the last one.
      const deadline = Date.now() + 5000;
      while (!server.stdout().includes('"path":"/submit"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    } finally {
      expect(await server.stop()).toBe(0);
    }
    const lines = (server.stdout() + server.stderr()).trim().split("\n");
    const records = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    for (const r of records) {
      expect(typeof r["time"]).toBe("string");
      expect(["debug", "info", "warn", "error"]).toContain(r["level"]);
      expect(r["name"]).toBe("sse-server");
      expect(typeof r["msg"]).toBe("string");
    }
    expect(records[0]!["msg"]).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+ \(events: /);
    const text = lines.join("\n");
    for (const secret of [good, forged, expired, "A".repeat(100), notBase62, "lastEventId", "?"]) expect(text).not.toContain(secret);

    const access = records.filter((r) => r["method"] !== undefined).map(({ method, path, status, code }) => ({ method, path, status, code }));
    expect(access).toEqual(
      expect.arrayContaining([
        { method: "GET", path: "/events", status: 401, code: "token_invalid" },
        { method: "GET", path: "/events", status: 401, code: "token_too_long" },
        { method: "GET", path: "/nowhere", status: 404, code: "not_found" },
        { method: "POST", path: "/submit", status: 200, code: undefined },
        { method: "GET", path: "/events", status: 200, code: undefined },
      ]),
    );
    for (const r of records.filter((r) => r["method"] !== undefined)) expect(typeof r["ms"]).toBe("number");
    const why = records.filter((r) => r["level"] === "debug").map((r) => r["msg"]);
    expect(why).toEqual(
      expect.arrayContaining([
        "GET /events refused: token failed authentication: forged, altered, or made with another secret",
        "GET /events refused: token is longer than 1000 characters",
        "GET /events refused: token is not base62",
        "GET /events refused: token has expired",
      ]),
    );
  });

  test("SSE_LOG_LEVEL=warn keeps even the startup line quiet", async () => {
    // Nothing is printed, so the port is chosen here, and /ping says when it listens.
    const port = await freePort();
    const quiet = spawn(process.execPath, [CLI], {
      env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, PORT: String(port), HOST: "127.0.0.1", SSE_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    quiet.stdout!.on("data", (d) => (out += d));
    quiet.stderr!.on("data", (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => quiet.once("exit", resolve));
    const deadline = Date.now() + 10_000;
    let up = false;
    while (!up && Date.now() < deadline) {
      up = await fetch(`http://127.0.0.1:${port}/ping`).then((r) => r.status === 200, () => false);
      if (!up) await new Promise((r) => setTimeout(r, 50));
    }
    quiet.kill("SIGTERM");
    expect({ up, code: await exited, out }).toEqual({ up: true, code: 0, out: "" });
  });
});

describe("errors say what to do", () => {
  test("REDIS_URL without ioredis installed: exit 2 with `npm install ioredis`", () => {
    // The built package in a directory whose node_modules has everything but ioredis (as a user's app might).
    const { dir, pkg } = installWithoutIoredis("sse-no-ioredis-");
    try {
      const cli = path.join(pkg, "dist", "cli.js");
      // Without REDIS_URL it starts (ioredis stays optional)...
      expect(run({ SSE_SECRET: SECRET }, ["--version"], cli).status).toBe(0);
      // ...with it, one clear line.
      const result = run({ SSE_SECRET: SECRET, REDIS_URL: "redis://127.0.0.1:6379" }, [], cli);
      expect({ status: result.status, stderr: result.stderr }).toEqual({
        status: 2,
        stderr: "sse-server: REDIS_URL needs the ioredis package, which is not installed: run `npm install ioredis` next to sse-hub\n",
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the publisher: hub_unreachable when nothing listens, not broker_unavailable; a 404 hints at the mount path", async () => {
    // A port that was free a moment ago: connection refused.
    const port = await freePort();
    const down = createPublisher({ url: `http://127.0.0.1:${port}/`, secret: SECRET });
    await expect(down.publish([{ topic: "t", event: "e", data: "" }])).rejects.toMatchObject({
      name: "SseError",
      code: "hub_unreachable",
      message: `could not reach the SSE hub at http://127.0.0.1:${port}/submit (ECONNREFUSED); check the url and that the server runs`,
    });

    const server = await start({});
    try {
      const wrongPath = createPublisher({ url: `${server.url}/sse-server`, secret: SECRET });
      await expect(wrongPath.publish([{ topic: "t", event: "e", data: "" }])).rejects.toMatchObject({
        code: "not_found",
        message: `sse-server answered 404: no route for POST /sse-server/submit; is ${server.url}/sse-server/ where the router is mounted? (the standalone server serves / unless BASE_PATH is set)`,
      });
    } finally {
      await server.stop();
    }
  });
});
