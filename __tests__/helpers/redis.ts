/**
 * Test helpers for the Redis broker and multi-process tests: a real
 * `redis-server` on a free local port (no persistence, so a restart comes
 * back empty), standalone servers (`node dist/cli.js`) as child processes,
 * and a raw SSE reader that parses frames and can resume with Last-Event-ID.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { subscribeToken } from "../../src/tokens";
import { parseFrames, type SseEvent } from "./parse";

export { parseFrames, type SseEvent };

/** Every child process started here, killed on exit if a failed test left it running. */
const children = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of children) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});
function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

export const SECRET = "5b1c0e7f3a9d2e4c6b8a0f1e3d5c7b9a2f4e6d8c0b1a3f5e7d9c2b4a6f8e0d1c";
export const CLI = path.join(__dirname, "..", "..", "dist", "cli.js");

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` until it returns true, or throws after `timeout` ms with `what`. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeout: number, what: string): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

export function hasRedisServer(): boolean {
  return onPath("redis-server");
}

function onPath(name: string): boolean {
  return (process.env["PATH"] ?? "").split(":").some((dir) => fs.existsSync(path.join(dir, name)));
}

/**
 * Throws, naming what is missing, unless every program is on PATH: a test
 * that needs one fails clearly instead of being skipped (a skip would hide a
 * missing install step; `.ci/run` installs them all).
 */
export function requireTools(...names: string[]): void {
  const missing = names.filter((name) => !onPath(name));
  if (missing.length > 0) throw new Error(`${missing.join(", ")} required on PATH for this test (bash .ci/run installs it)`);
}

/** A redis-server child process; `stop()` and `start()` again keep the port (and lose the data). */
export class RedisServer {
  private proc: ChildProcess | undefined;
  /** Extra command-line arguments, kept for a restart. */
  private args: readonly string[] = [];
  /** Its working directory (`--dir`), removed by `close()`: files a caller's `args` name go here too. */
  readonly dir: string;

  private constructor(readonly port: number) {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), "sse-redis-"));
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /**
   * Starts a redis-server on `port` (a free one by default). `args` are
   * appended to the command line (e.g. cluster mode); a function receives the
   * server's directory, for config files that must live there.
   */
  static async start(port?: number, args: readonly string[] | ((dir: string) => readonly string[]) = []): Promise<RedisServer> {
    const server = new RedisServer(port ?? (await freePort()));
    server.args = typeof args === "function" ? args(server.dir) : args;
    await server.start();
    return server;
  }

  async start(): Promise<void> {
    if (this.proc) return;
    const args = ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", this.dir, ...this.args];
    const proc = track(spawn("redis-server", args, { stdio: ["ignore", "pipe", "pipe"] }));
    this.proc = proc;
    let output = "";
    const ready = new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes("Ready to accept connections")) resolve();
      };
      proc.stdout!.on("data", onData);
      proc.stderr!.on("data", onData);
      proc.once("exit", (code) => reject(new Error(`redis-server exited (${code}) before it was ready:\n${output}`)));
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    try {
      await ready;
    } finally {
      clearTimeout(timer);
    }
    // Keep draining its log so the pipe never fills.
    proc.stdout!.resume();
    proc.stderr!.resume();
  }

  /** Kills the server (SIGKILL by default: a crash, nothing flushed) and waits for it to exit. */
  async stop(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    this.proc = undefined;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
    proc.kill(signal);
    await exited;
  }

  async close(): Promise<void> {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A standalone server (`node dist/cli.js`) in its own process. */
export class CliServer {
  output = "";
  url = "";
  private exitCode: number | null | undefined;
  readonly exited: Promise<number | null>;

  constructor(readonly proc: ChildProcess) {
    proc.stdout!.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    proc.stderr!.on("data", (chunk: Buffer) => (this.output += chunk.toString()));
    this.exited = new Promise((resolve) =>
      proc.once("exit", (code, signal) => {
        this.exitCode = code ?? (signal ? -1 : null);
        resolve(this.exitCode);
      }),
    );
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Starts `node dist/cli.js` on a free port with `env` and waits for its startup line. */
  static async start(env: Record<string, string>, args: string[] = [], timeout = 20_000): Promise<CliServer> {
    const proc = track(
      spawn(process.execPath, [CLI, ...args], {
        env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, HOST: "127.0.0.1", PORT: "0", ...env },
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    const server = new CliServer(proc);
    await waitFor(() => /listening on (\S+)/.test(server.output) || !server.running, timeout, "the server's startup line");
    const match = /listening on (\S+)/.exec(server.output);
    if (!match) throw new Error(`server did not start:\n${server.output}`);
    server.url = match[1]!;
    return server;
  }

  /** SIGTERM, then SIGKILL after `grace` ms; resolves with the exit code. */
  async stop(grace = 10_000): Promise<number | null> {
    if (this.running) {
      this.proc.kill("SIGTERM");
      const timer = setTimeout(() => this.proc.kill("SIGKILL"), grace);
      await this.exited;
      clearTimeout(timer);
    }
    return this.exited;
  }
}

/** Resident memory of a process in bytes (Linux). */
export function rssOf(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  const match = /VmRSS:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) * 1024 : 0;
}

/** One event-stream connection: parsed events, the last id seen, and the local port (to find the serving process). */
export class SseClient {
  status = 0;
  events: SseEvent[] = [];
  closed = false;
  localPort = 0;
  private buffer = "";
  private req: http.ClientRequest;
  readonly opened: Promise<void>;

  constructor(url: string, headers: Record<string, string> = {}) {
    this.req = http.get(url, { headers, agent: false });
    this.req.on("socket", (socket) => socket.once("connect", () => (this.localPort = socket.localPort ?? 0)));
    this.opened = new Promise((resolve, reject) => {
      this.req.once("error", (err) => {
        this.closed = true;
        reject(err);
      });
      this.req.once("response", (res) => {
        this.status = res.statusCode ?? 0;
        res.setEncoding("utf8");
        let first = true;
        res.on("data", (chunk: string) => {
          this.buffer += chunk;
          const { events, rest } = parseFrames(this.buffer);
          this.buffer = rest;
          for (const e of events) this.events.push(e);
          if (first) {
            first = false;
            resolve();
          }
        });
        res.on("close", () => {
          this.closed = true;
          resolve();
        });
      });
    });
  }

  /** Opens a stream for `topics` with a subscribe token; `lastEventId` resumes. */
  static async open(base: string, token: string, lastEventId?: string): Promise<SseClient> {
    const headers: Record<string, string> = {};
    if (lastEventId !== undefined) headers["Last-Event-ID"] = lastEventId;
    const client = new SseClient(`${base}/events?token=${encodeURIComponent(token)}`, headers);
    await client.opened;
    if (client.status !== 200) throw new Error(`GET /events answered ${client.status}`);
    return client;
  }

  get lastId(): string | undefined {
    for (let i = this.events.length - 1; i >= 0; i--) if (this.events[i]!.id !== undefined) return this.events[i]!.id;
    return undefined;
  }

  /** Data of the events named `name` (all events if omitted). */
  data(name?: string): string[] {
    return this.events.filter((e) => name === undefined || e.event === name).map((e) => e.data);
  }

  /**
   * Waits for the event named `marker` (published last by the test) and
   * returns the events before it: "nothing else arrived" is then proven by
   * order, not by sleeping and hoping.
   */
  async untilMarker(marker = "end", timeout = 10_000): Promise<SseEvent[]> {
    await waitFor(() => this.events.some((e) => e.event === marker), timeout, `the "${marker}" marker event`);
    return this.events.slice(0, this.events.findIndex((e) => e.event === marker));
  }

  async waitForEvents(count: number, timeout = 10_000): Promise<void> {
    await waitFor(() => this.events.length >= count, timeout, `${count} events (have ${this.events.length})`);
  }

  close(): void {
    this.req.destroy();
  }
}

/** POST /submit with a token; resolves with the status code (0 when the connection failed). */
export async function submit(base: string, token: string): Promise<number> {
  try {
    const res = await fetch(`${base}/submit`, { method: "POST", body: token, signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    return res.status;
  } catch {
    return 0;
  }
}

/** The pid of the process holding the server side (on `serverPort`) of the client connection from `localPort` (Linux /proc). */
export function serverPidOfClientPort(serverPort: number, localPort: number, pids: readonly number[]): number | undefined {
  const hex = (n: number) => ":" + n.toString(16).toUpperCase().padStart(4, "0");
  let inode: string | undefined;
  for (const line of fs.readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const cols = line.trim().split(/\s+/);
    // The server side of our connection: local port = server port, remote port = our local port, ESTABLISHED.
    if (cols.length > 9 && cols[1]!.endsWith(hex(serverPort)) && cols[2]!.endsWith(hex(localPort)) && cols[3] === "01") {
      inode = cols[9];
      break;
    }
  }
  if (inode === undefined) return undefined;
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`) return pid;
      } catch {
        // fd closed meanwhile
      }
    }
  }
  return undefined;
}

/** Child pids of `pid` (Linux /proc). */
export function childPids(pid: number): number[] {
  try {
    return fs
      .readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Redis plus two standalone servers on it, started and stopped by jest hooks. */
export interface TwoInstances {
  redis: RedisServer;
  a: CliServer;
  b: CliServer;
  /** Opens a subscription on `server`; closed after each test. */
  subscribe(server: CliServer, topics: string[], lastEventId?: string): Promise<SseClient>;
}

/**
 * Registers beforeAll/afterEach/afterAll hooks that start redis-server and two
 * `node dist/cli.js` instances with `REDIS_URL`, close subscriptions after
 * each test, and stop everything at the end. Fields are set once beforeAll ran.
 */
export function twoInstancesOnRedis(): TwoInstances {
  const clients: SseClient[] = [];
  const env = {
    async subscribe(server: CliServer, topics: string[], lastEventId?: string): Promise<SseClient> {
      const client = await SseClient.open(server.url, subscribeToken(SECRET, topics), lastEventId);
      clients.push(client);
      return client;
    },
  } as TwoInstances;
  beforeAll(async () => {
    env.redis = await RedisServer.start();
    [env.a, env.b] = await Promise.all([
      CliServer.start({ REDIS_URL: env.redis.url }),
      CliServer.start({ REDIS_URL: env.redis.url }),
    ]);
  }, 40_000);
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => {
    await Promise.all([env.a?.stop(), env.b?.stop()]);
    await env.redis?.close();
  }, 30_000);
  return env;
}
