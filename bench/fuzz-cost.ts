/**
 * CPU cost of rejecting hostile input (issue 15: "nothing over 1 ms of CPU
 * to reject"). A speed claim, so it is measured here and not asserted in the
 * tests (CI timing is noisy).
 *
 * Starts the standalone server (`node dist/cli.js`, in-memory broker) in its
 * own process and sends it the fuzz tests' generated inputs one at a time on
 * one keep-alive connection: subscribe tokens (query string and
 * `Authorization: Bearer`) and `/submit` bodies — random strings, mutated
 * valid tokens, Branca around arbitrary msgpack, forgeries at the token
 * length cap. For each input it reads the server's main-thread CPU time
 * (`/proc/<pid>/task/<pid>/schedstat`, nanoseconds) before the request and
 * after the answer, so the figure is everything the server spent on that
 * request: HTTP parsing, token checks, the JSON error. Prints max, p99 and
 * p50 per kind of input and outcome, and the five most expensive inputs.
 *
 *   npm run build && npm run bench:fuzz-cost -- [--inputs 5000] [--seed N] [--json out.json]
 *
 * Linux only (schedstat). Run it on an idle machine for figures worth quoting.
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { parseArgs } from "node:util";
import fc from "fast-check";
import { base62, pct, tokenArbitraries } from "../__tests__/helpers/fuzz";
import { brancaEncode } from "../src/tokens/branca";
import { encode } from "@msgpack/msgpack";
import { DEFAULTS } from "../src/options";

const { values: flags } = parseArgs({
  options: { inputs: { type: "string", default: "5000" }, seed: { type: "string" }, json: { type: "string" } },
  strict: true,
});
const INPUTS = Number(flags.inputs);
const SEED = flags.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : Number(flags.seed);
const SECRET = "5b1c0e7f3a9d2e4c6b8a0f1e3d5c7b9a2f4e6d8c0b1a3f5e7d9c2b4a6f8e0d1c";
const CLI = path.join(__dirname, "..", "dist", "cli.js");
/** The longest subscribe token the router decodes (`maxSubscribeTokenLength`, 4,096). */
const SUBSCRIBE_CAP = DEFAULTS.maxSubscribeTokenLength;
/** A submit token is the body of POST /submit: bounded by `bodyLimit` (8 KiB) before `maxTokenLength` (16 KiB). */
const TOKEN_CAP = Math.min(DEFAULTS.maxTokenLength, DEFAULTS.bodyLimit);

interface Input {
  kind: string;
  method: "GET" | "POST";
  path: string;
  headers: Record<string, string>;
  body?: string;
}

function inputs(): Input[] {
  const { token } = tokenArbitraries(SECRET);
  const forgedKey = Buffer.alloc(32, 9);
  const kinds = fc.oneof(
    { weight: 4, arbitrary: token.map((t): Input => ({ kind: "subscribe token in query", method: "GET", path: `/events?token=${pct(t)}`, headers: {} })) },
    { weight: 2, arbitrary: token.map((t): Input => ({ kind: "subscribe token as Bearer", method: "GET", path: "/events", headers: { Authorization: `Bearer ${t.replace(/[^\x21-\x7e]/g, "A")}` } })) },
    { weight: 4, arbitrary: token.map((t): Input => ({ kind: "submit body", method: "POST", path: "/submit", headers: {}, body: t })) },
    // At the caps: the most decoding work an attacker can ask for per request.
    {
      weight: 1,
      arbitrary: base62(64).map((s): Input => ({ kind: `random base62 at the subscribe cap (${SUBSCRIBE_CAP})`, method: "GET", path: `/events?token=${s.padEnd(SUBSCRIBE_CAP, "Z")}`, headers: {} })),
    },
    {
      weight: 1,
      arbitrary: fc.nat(300).map((n): Input => {
        // A well-formed Branca token under another key, just under the cap: decodes fully, fails the MAC.
        const forged = brancaEncode(forgedKey, encode({ topics: ["x".repeat(Math.floor(SUBSCRIBE_CAP * 0.74) - 60 - n)] }));
        return { kind: "forged Branca near the subscribe cap", method: "GET", path: `/events?token=${forged}`, headers: {} };
      }),
    },
    {
      weight: 1,
      arbitrary: fc.nat(1000).map((n): Input => {
        const forged = brancaEncode(forgedKey, encode({ events: [{ topic: "t", event: "e", data: "x".repeat(Math.floor(TOKEN_CAP * 0.74) - 100 - n) }] }));
        return { kind: `forged Branca submit body near the cap (${TOKEN_CAP})`, method: "POST", path: "/submit", headers: {}, body: forged };
      }),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: Math.floor(TOKEN_CAP / 6), max: Math.floor(TOKEN_CAP / 4.2) }).map((depth): Input => {
        // Genuine (right key) but absurd: {a:{a:{…}}} thousands deep, near the cap (only a buggy backend can send it).
        const step = [0x81, 0xa1, 0x61];
        const body = Buffer.alloc(depth * 3 + 1, 0xc0);
        for (let i = 0; i < depth; i++) body.set(step, i * 3);
        return { kind: "genuine deeply nested submit body near the cap", method: "POST", path: "/submit", headers: {}, body: brancaEncode(Buffer.from(SECRET, "hex"), body) };
      }),
    },
  );
  return fc.sample(kinds, { numRuns: INPUTS, seed: SEED });
}

/** CPU time of the server's main thread, in ns. */
function cpuNs(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").split(" ")[0]);
}

function send(port: number, agent: http.Agent, input: Input): Promise<{ status: number; code: string }> {
  return new Promise((resolve, reject) => {
    const headers = { ...input.headers, ...(input.body === undefined ? {} : { "Content-Length": String(Buffer.byteLength(input.body)) }) };
    const req = http.request({ host: "127.0.0.1", port, method: input.method, path: input.path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      if ((res.headers["content-type"] ?? "").startsWith("text/event-stream")) {
        res.destroy();
        resolve({ status: res.statusCode ?? 0, code: "stream" });
        return;
      }
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        let code = String(res.statusCode);
        try {
          code = (JSON.parse(Buffer.concat(chunks).toString()) as { error?: string }).error ?? code;
        } catch {
          // not JSON
        }
        resolve({ status: res.statusCode ?? 0, code });
      });
    });
    req.on("error", reject);
    req.end(input.body);
  });
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function main(): Promise<void> {
  if (!fs.existsSync(CLI)) throw new Error("dist/cli.js is missing: run npm run build first");
  const child = spawn(process.execPath, [CLI], {
    env: { PATH: process.env["PATH"] ?? "", SSE_SECRET: SECRET, HOST: "127.0.0.1", PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.once("exit", (code) => reject(new Error(`server exited (${code}): ${out}`)));
  });
  const pid = child.pid!;
  const all = inputs();
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  // Warm-up: JIT, pools, the first-use costs nobody pays twice.
  for (const input of all.slice(0, Math.min(500, all.length))) await send(port, agent, input);

  const byGroup = new Map<string, number[]>();
  const worst: Array<{ ns: number; kind: string; code: string; length: number }> = [];
  const rejected: number[] = [];
  for (const input of all) {
    // A stream's connection is closed after its head; a fresh one is opened for the next input.
    const before = cpuNs(pid);
    const { status, code } = await send(port, agent, input);
    const ns = cpuNs(pid) - before;
    const group = `${input.kind} → ${code}`;
    (byGroup.get(group) ?? byGroup.set(group, []).get(group)!).push(ns);
    if (status >= 400) rejected.push(ns);
    worst.push({ ns, kind: input.kind, code, length: (input.body ?? input.path + JSON.stringify(input.headers)).length });
    worst.sort((a, b) => b.ns - a.ns);
    worst.length = Math.min(worst.length, 5);
  }
  agent.destroy();
  child.kill("SIGTERM");

  const ms = (ns: number) => (ns / 1e6).toFixed(3);
  const rows = [...byGroup.entries()]
    .map(([group, list]) => {
      list.sort((a, b) => a - b);
      return { group, n: list.length, p50: ms(quantile(list, 0.5)), p99: ms(quantile(list, 0.99)), max: ms(list[list.length - 1]!) };
    })
    .sort((a, b) => Number(b.max) - Number(a.max));
  rejected.sort((a, b) => a - b);
  const summary = {
    seed: SEED,
    inputs: all.length,
    rejected: rejected.length,
    rejectedP50Ms: ms(quantile(rejected, 0.5)),
    rejectedP99Ms: ms(quantile(rejected, 0.99)),
    rejectedMaxMs: ms(rejected[rejected.length - 1] ?? 0),
    over1ms: rejected.filter((ns) => ns > 1e6).length,
  };
  console.log(`server CPU per input (main thread, ms), seed ${SEED}, ${all.length} inputs after 500 warm-up`);
  console.log("| input → outcome | n | p50 | p99 | max |\n|---|---|---|---|---|");
  for (const r of rows) console.log(`| ${r.group} | ${r.n} | ${r.p50} | ${r.p99} | ${r.max} |`);
  console.log(`\nall rejections: p50 ${summary.rejectedP50Ms} ms, p99 ${summary.rejectedP99Ms} ms, max ${summary.rejectedMaxMs} ms; over 1 ms: ${summary.over1ms} of ${summary.rejected}`);
  console.log("most expensive:", worst.map((w) => `${ms(w.ns)} ms ${w.kind} → ${w.code} (${w.length} chars)`).join("; "));
  if (flags.json) fs.writeFileSync(flags.json, JSON.stringify({ summary, rows, worst }, null, 2) + "\n");
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
