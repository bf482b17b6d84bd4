/**
 * The example app behind real nginx, as child processes: the app
 * (`example-app/server.ts`) and nginx (`example-app/run-nginx.sh`, Debian's
 * nginx). Each runs in its own process group, so stopping it stops everything
 * it started; `stopAll()` in afterAll cleans up whatever a failed test left.
 *
 * Missing pieces (nginx not installed, library not built) fail with a clear
 * message; nothing is skipped silently.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

export const ROOT = path.resolve(__dirname, "../..");
export const EXAMPLE_DIR = path.join(ROOT, "example-app");

/** A secret for tests: 64 hex characters. */
export const TEST_SECRET = "4f1c2e3d5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface Managed {
  readonly child: ChildProcess;
  /** stdout and stderr so far, for error messages. */
  output(): string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<Exit>;
  /** Sends `signal` to the process group and waits for the exit (SIGKILL after `graceMs`). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<Exit>;
}

const running = new Set<Managed>();

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal); // the whole group: bash and its nginx
  } catch {
    try {
      child.kill(signal);
    } catch {
      // already gone
    }
  }
}

// Last resort if a test run is interrupted: do not leave servers behind.
process.once("exit", () => {
  for (const m of running) killGroup(m.child, "SIGKILL");
});

/**
 * Spawns a command in its own process group and resolves once a stdout line
 * matches `ready`; rejects with the process output if it exits first or takes
 * longer than `timeoutMs`.
 */
async function startManaged(
  what: string,
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  ready: RegExp,
  timeoutMs: number,
): Promise<{ managed: Managed; match: RegExpMatchArray }> {
  const child = spawn(command, args, { cwd: ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let stdout = "";
  const exited = new Promise<Exit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
    child.once("error", (err) => {
      out += `\n[spawn error: ${err.message}]`;
      resolve({ code: null, signal: null });
    });
  });
  const managed: Managed = {
    child,
    output: () => out,
    exited,
    async stop(signal = "SIGTERM", graceMs = 5_000) {
      if (child.exitCode === null && child.signalCode === null) {
        killGroup(child, signal);
        const timer = setTimeout(() => killGroup(child, "SIGKILL"), graceMs);
        const result = await exited;
        clearTimeout(timer);
        running.delete(managed);
        return result;
      }
      running.delete(managed);
      return exited;
    },
  };
  running.add(managed);
  void exited.then(() => running.delete(managed));

  const match = await new Promise<RegExpMatchArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      void managed.stop("SIGKILL");
      reject(new Error(`${what} did not become ready within ${timeoutMs} ms. Output:\n${out}`));
    }, timeoutMs);
    const onStdout = (chunk: Buffer) => {
      stdout += chunk.toString();
      const m = ready.exec(stdout);
      if (m) {
        cleanup();
        resolve(m);
      }
    };
    const onExit = (e: Exit) => {
      cleanup();
      reject(new Error(`${what} exited (code ${e.code}, signal ${e.signal}) before it was ready. Output:\n${out}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off("data", onStdout);
    };
    child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
    child.stderr!.on("data", (c: Buffer) => (out += c.toString()));
    child.stdout!.on("data", onStdout);
    void exited.then(onExit);
  });
  return { managed, match };
}

/**
 * Waits for dist/index.js (`npm run build`). Another test file may be
 * rebuilding right now (tsup empties dist/ first), so give it a moment before
 * failing with a clear message.
 */
export async function requireBuiltLibrary(waitMs = 30_000): Promise<void> {
  const file = path.join(ROOT, "dist", "index.js");
  const deadline = Date.now() + waitMs;
  while (!fs.existsSync(file)) {
    if (Date.now() > deadline) {
      throw new Error("dist/index.js is missing: run `npm run build` before these tests (CI's .ci/run does).");
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Throws a clear error unless nginx can run here. */
export function requireNginx(): string {
  const bin = process.env["NGINX_BIN"] ?? (fs.existsSync("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx");
  const probe = spawnSync(bin, ["-v"], { encoding: "utf8" });
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      `nginx is required for this test but cannot run (${bin}: ${probe.error?.message ?? probe.stderr}). ` +
        "Install it: apt-get install -y nginx (CI's .ci/run does), or set NGINX_BIN.",
    );
  }
  return bin;
}

/** Node's arguments that run the example app (TypeScript, compiled on load by esbuild-register). */
export const EXAMPLE_ARGS: readonly string[] = ["-r", "esbuild-register", path.join(EXAMPLE_DIR, "server.ts")];

export interface ExampleApp {
  readonly port: number;
  /** The app's own URL, e.g. http://127.0.0.1:41393/ */
  readonly url: string;
  readonly process: Managed;
  stop(signal?: NodeJS.Signals): Promise<Exit>;
}

/**
 * Starts the example app as `npm run example` does, without the build
 * (`node -r esbuild-register example-app/server.ts`; port 0 = a free one) and
 * waits for its "listening; open <url>" line.
 */
export async function startExampleApp(options: { port?: number; env?: NodeJS.ProcessEnv } = {}): Promise<ExampleApp> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env["PATH"],
    HOME: process.env["HOME"],
    SSE_SECRET: TEST_SECRET,
    HOST: "127.0.0.1",
    PORT: String(options.port ?? 0),
    ...options.env,
  };
  for (const [k, v] of Object.entries(env)) if (v === undefined) delete env[k];
  for (let attempt = 1; ; attempt++) {
    await requireBuiltLibrary();
    try {
      const { managed, match } = await startManaged(
        "example app",
        process.execPath,
        EXAMPLE_ARGS,
        env,
        /listening; open (http:\/\/[^\s]+:(\d+)\/)/,
        15_000,
      );
      return {
        port: Number(match[2]),
        url: match[1]!,
        process: managed,
        // SIGKILL only past the app's own 10 s shutdown deadline (then it exits 1 itself),
        // so a slow but clean close under load still exits 0.
        stop: (signal) => managed.stop(signal, 15_000),
      };
    } catch (err) {
      // dist/ vanished mid-start because a parallel test file rebuilds it: try again.
      if (attempt < 3 && /Cannot find module/.test((err as Error).message)) {
        await new Promise((r) => setTimeout(r, 1_000));
        continue;
      }
      throw err;
    }
  }
}

export interface Nginx {
  readonly port: number;
  /** e.g. http://127.0.0.1:35151/ */
  readonly url: string;
  readonly process: Managed;
  stop(): Promise<Exit>;
}

/**
 * Starts nginx through `example-app/run-nginx.sh` in front of the app on
 * `appPort`, or in front of several app instances (`appPorts`, for rolling
 * restarts).
 */
export async function startNginx(options: {
  appPort: number;
  appPorts?: readonly number[];
  /** nginx parameters for each upstream server, e.g. `max_fails=0`. */
  upstreamOptions?: string;
  basePath?: string;
}): Promise<Nginx> {
  const bin = requireNginx();
  const { managed, match } = await startManaged(
    "nginx (example-app/run-nginx.sh)",
    "bash",
    [path.join(EXAMPLE_DIR, "run-nginx.sh")],
    {
      PATH: process.env["PATH"],
      HOME: process.env["HOME"],
      NGINX_BIN: bin,
      APP_ADDR: (options.appPorts ?? [options.appPort]).map((p) => `127.0.0.1:${p}`).join(","),
      ...(options.basePath !== undefined ? { BASE_PATH: options.basePath } : {}),
      ...(options.upstreamOptions !== undefined ? { UPSTREAM_OPTIONS: options.upstreamOptions } : {}),
    },
    /listening; open (http:\/\/[^\s]+:(\d+)\/)/,
    15_000,
  );
  return { port: Number(match[2]), url: match[1]!, process: managed, stop: () => managed.stop("SIGTERM") };
}

/** Stops every process these helpers started and that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((m) => m.stop("SIGTERM", 3_000)));
}
