/**
 * Micro-benchmark: Branca token decoding, our codec (src/tokens/branca.ts) against
 * npm `branca` 0.5 (base-x + libsodium-wrappers), by payload size, plus the
 * cost of rejecting a forged maximum-size (~15,000-character) token.
 *
 *   npm run bench:token            # prints a markdown report
 *   npm run bench:token -- --quick # fewer samples (smoke run)
 *
 * Method: each cell runs the operation in batches (~5 ms each) for a fixed
 * time budget after a warm-up and reports the median per-operation wall time
 * over the batches, which shrugs off GC pauses and the odd preemption;
 * ops/s = 1e6 / median µs, on one core. Rejection rows also report the
 * slowest single rejection out of 200 (this one does include preemption by
 * other processes). The header prints the load average: on a busy machine
 * every figure is inflated, ours and npm branca's alike.
 *
 * It ends with reported checks, one PASS/FAIL line each (exit code 1 if any
 * fails); timing thresholds live here, not in the test suite, because a
 * loaded CI machine makes timed tests flaky:
 *  - a forged subscribe token at the maxSubscribeTokenLength cap (4096
 *    characters) is rejected in under 0.2 ms of CPU (issue 15);
 *  - a forged ~15,000-character token is rejected in under 25 ms (a generous
 *    bound that still fails loudly if decoding ever goes quadratic again);
 *  - 4x the token length costs under 12x the time (near-linear; base-x's
 *    quadratic decode would be ~16x).
 * CPU time (process.cpuUsage) rather than wall time for the first: time the
 * process spends preempted by other work on the machine is not a cost of the
 * decode.
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { brancaDecode, brancaEncode, createBrancaCodec, type BrancaDecodeOptions } from "../src/tokens/branca";
import { BASE62_ALPHABET, base62Decode, base62Encode } from "../src/tokens/base62";
import { DEFAULTS } from "../src/options";

/* eslint-disable @typescript-eslint/no-require-imports */
type NpmBranca = { encode(m: Uint8Array, ts?: number): string; decode(t: string, ttl?: number): Buffer };
const npmBranca = require("branca") as (key: Buffer) => NpmBranca;
const sodium = require("libsodium-wrappers") as { ready: Promise<void> };
/* eslint-enable @typescript-eslint/no-require-imports */

const QUICK = process.argv.includes("--quick");
const BUDGET_MS = QUICK ? 150 : 1_000;
const MAX_TOKEN_CHARS = 15_000;

interface Sample {
  /** Median µs per operation over batches. */
  medianUs: number;
  /** Slowest single operation seen in µs (only measured for single-op batches). */
  maxUs: number;
  ops: number;
}

/** Runs `fn` in batches for ~BUDGET_MS; batch size adapts so a batch takes ~5 ms. */
function measure(fn: () => void, budgetMs = BUDGET_MS): Sample {
  // Warm-up, and estimate a batch size.
  let t0 = performance.now();
  let warm = 0;
  while (performance.now() - t0 < Math.min(100, budgetMs / 4) || warm < 3) {
    fn();
    warm++;
  }
  const perOp = (performance.now() - t0) / warm;
  const batch = Math.max(1, Math.floor(5 / perOp));
  const perBatchUs: number[] = [];
  let maxUs = 0;
  let ops = 0;
  t0 = performance.now();
  while (performance.now() - t0 < budgetMs || perBatchUs.length < 5) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) fn();
    const us = Number(process.hrtime.bigint() - t) / 1e3 / batch;
    perBatchUs.push(us);
    if (batch === 1 && us > maxUs) maxUs = us;
    ops += batch;
  }
  perBatchUs.sort((a, b) => a - b);
  return { medianUs: perBatchUs[perBatchUs.length >> 1]!, maxUs, ops };
}

/** Slowest single call of `fn` in µs over `runs` calls, after warm-up. */
function worstOf(fn: () => void, runs: number): number {
  for (let i = 0; i < 20; i++) fn();
  let worst = 0;
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    fn();
    worst = Math.max(worst, Number(process.hrtime.bigint() - t) / 1e3);
  }
  return worst;
}

const fmtUs = (us: number) => (us >= 1000 ? `${(us / 1000).toFixed(1)} ms` : `${us.toFixed(us < 10 ? 2 : 1)} µs`);
const fmtOps = (us: number) => Math.round(1e6 / us).toLocaleString("en-US");

function rejects(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch {
    return true;
  }
}

async function main(): Promise<void> {
  await sodium.ready;
  const key = randomBytes(32);
  const codec = createBrancaCodec(key);
  const theirs = npmBranca(key);
  const lines: string[] = [];
  const out = (s = "") => {
    lines.push(s);
    console.log(s);
  };

  out(`Branca token decode: sse-server codec vs npm branca 0.5.0`);
  out();
  out(`- node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model.trim() ?? "unknown CPU"}), ${os.platform()} ${os.arch()}`);
  out(`- ${new Date().toISOString().slice(0, 10)}, load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}; wall time per op, median of batches, ${BUDGET_MS} ms per cell`);
  out();
  out(`| payload | token chars | ours µs/op | ours ops/s | npm branca µs/op | npm branca ops/s | speed-up |`);
  out(`|---:|---:|---:|---:|---:|---:|---:|`);
  for (const size of [100, 1000, 3000, 6000, 8192]) {
    const payload = randomBytes(size);
    const token = theirs.encode(payload);
    if (!codec.decode(token).payload.equals(payload)) throw new Error("ours disagrees with npm branca");
    const ours = measure(() => codec.decode(token));
    const npm = measure(() => theirs.decode(token));
    const label = size === 8192 ? "8 KiB" : `${size} B`;
    out(
      `| ${label} | ${token.length.toLocaleString("en-US")} | ${fmtUs(ours.medianUs)} | ${fmtOps(ours.medianUs)} | ` +
        `${fmtUs(npm.medianUs)} | ${fmtOps(npm.medianUs)} | ${(npm.medianUs / ours.medianUs).toFixed(0)}x |`,
    );
  }

  // Forged tokens of the maximum size. Payload size chosen so the token is
  // just under MAX_TOKEN_CHARS.
  let size = Math.floor((MAX_TOKEN_CHARS * Math.log2(62)) / 8) - 45;
  let valid = brancaEncode(key, randomBytes(size));
  while (valid.length > MAX_TOKEN_CHARS) valid = brancaEncode(key, randomBytes(--size));
  const bin = base62Decode(valid);
  const forgedTag = Buffer.from(bin);
  forgedTag[forgedTag.length - 1]! ^= 1; // valid header, bad Poly1305 tag: needs the full decode + AEAD
  const forgedBody = Buffer.from(bin);
  randomBytes(bin.length - 29).copy(forgedBody, 29); // valid header, random body
  const wrongVersion = Buffer.from(bin);
  wrongVersion[0] = 0xbb;
  const stale = Buffer.from(bin);
  stale.writeUInt32BE(Math.floor(Date.now() / 1000) - 2 * 86_400, 1); // two days old, TTL one day
  const randomText = Array.from(randomBytes(valid.length), (b, i) => BASE62_ALPHABET[i === 0 ? 1 + (b % 61) : b % 62]).join("");
  const ttlDay = { ttl: 86_400, maxFuture: 60 };
  // The last three are refused from the first 8 characters and the length (headerBounds in src/tokens/branca.ts).
  const cases: [string, string, BrancaDecodeOptions?][] = [
    ["valid header, flipped tag bit", base62Encode(forgedTag)],
    ["valid header, random body", base62Encode(forgedBody)],
    ["non-base62 last char", valid.slice(0, -1) + "_"],
    ["over maxLength (15,001 chars)", valid + "z".repeat(MAX_TOKEN_CHARS + 1 - valid.length)],
    ["wrong version byte (0xBB)", base62Encode(wrongVersion)],
    ["random base62 text", randomText],
    ["valid header stamped 2 days ago (TTL 1 day)", base62Encode(stale), ttlDay],
  ];
  out();
  out(`Rejecting a forged maximum-size token (${valid.length.toLocaleString("en-US")} chars, ${size.toLocaleString("en-US")}-byte payload; decode with maxLength ${MAX_TOKEN_CHARS.toLocaleString("en-US")}):`);
  out();
  out(`| forged token | ours median | ours worst of 200 | npm branca median | speed-up |`);
  out(`|---|---:|---:|---:|---:|`);
  for (const [label, token, extra] of cases) {
    const opts = { maxLength: MAX_TOKEN_CHARS, ...extra };
    if (!rejects(() => brancaDecode(key, token, opts))) throw new Error(`not rejected: ${label}`);
    const ours = measure(() => rejects(() => codec.decode(token, opts)));
    const worst = worstOf(() => rejects(() => codec.decode(token, opts)), QUICK ? 50 : 200);
    // npm branca has no length limit; the caller's check is what it would get.
    const npm = label.startsWith("over maxLength")
      ? undefined
      : measure(() => rejects(() => theirs.decode(token, extra?.ttl)), QUICK ? BUDGET_MS : 2 * BUDGET_MS);
    out(
      `| ${label} | ${fmtUs(ours.medianUs)} | ${fmtUs(worst)} | ${npm ? fmtUs(npm.medianUs) : "n/a (length check)"} | ` +
        `${npm ? `${(npm.medianUs / ours.medianUs).toFixed(0)}x` : "–"} |`,
    );
  }

  checks(out, key);

  out();
  out(`Encode (for reference; not on the request path of the hub):`);
  out();
  out(`| payload | ours µs/op | npm branca µs/op | speed-up |`);
  out(`|---:|---:|---:|---:|`);
  for (const s of [100, 1000, 8192]) {
    const payload = randomBytes(s);
    const ours = measure(() => codec.encode(payload), BUDGET_MS / 2);
    const npm = measure(() => theirs.encode(payload), BUDGET_MS / 2);
    out(`| ${s === 8192 ? "8 KiB" : `${s} B`} | ${fmtUs(ours.medianUs)} | ${fmtUs(npm.medianUs)} | ${(npm.medianUs / ours.medianUs).toFixed(0)}x |`);
  }
}

/** Median CPU µs per call of `fn` (process.cpuUsage over batches of `batch` calls), and median wall µs. */
function cpuPerOp(fn: () => void, batch: number, batches: number): { cpuUs: number; wallUs: number } {
  for (let i = 0; i < 3 * batch; i++) fn();
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let b = 0; b < batches; b++) {
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) fn();
    const c = process.cpuUsage(c0);
    wall.push(Number(process.hrtime.bigint() - t0) / 1e3 / batch);
    cpu.push((c.user + c.system) / batch);
  }
  cpu.sort((a, b) => a - b);
  wall.sort((a, b) => a - b);
  return { cpuUs: cpu[cpu.length >> 1]!, wallUs: wall[wall.length >> 1]! };
}

/** A genuine token of at most `chars` characters with one character changed: only the full decode and the tag check reject it. */
function forgedOfLength(key: Buffer, chars: number): string {
  let size = Math.floor((chars * Math.log2(62)) / 8) - 45;
  let valid = brancaEncode(key, randomBytes(size));
  while (valid.length > chars) valid = brancaEncode(key, randomBytes(--size));
  const at = valid.length >> 1;
  return valid.slice(0, at) + (valid[at] === "z" ? "y" : "z") + valid.slice(at + 1);
}

function checks(out: (s?: string) => void, key: Buffer): void {
  const codec = createBrancaCodec(key);
  const results: Array<[boolean, string]> = [];

  const cap = DEFAULTS.maxSubscribeTokenLength;
  const atCap = forgedOfLength(key, cap);
  const capOpts = { maxLength: cap };
  if (!rejects(() => codec.decode(atCap, capOpts))) throw new Error("forged token at the cap was accepted");
  const capCost = cpuPerOp(() => rejects(() => codec.decode(atCap, capOpts)), 20, QUICK ? 20 : 100);
  results.push([
    capCost.cpuUs < 200,
    `forged subscribe token at the maxSubscribeTokenLength cap (${atCap.length.toLocaleString("en-US")} chars) rejected in ` +
      `${fmtUs(capCost.cpuUs)} of CPU (wall ${fmtUs(capCost.wallUs)}), median of batches; goal < 0.2 ms`,
  ]);

  const big = forgedOfLength(key, 15_000);
  const bigOpts = { maxLength: 16_000 };
  if (!rejects(() => codec.decode(big, bigOpts))) throw new Error("forged 15,000-character token was accepted");
  const bigCost = cpuPerOp(() => rejects(() => codec.decode(big, bigOpts)), 3, QUICK ? 5 : 15);
  results.push([
    bigCost.wallUs < 25_000,
    `forged ${big.length.toLocaleString("en-US")}-character token rejected in ${fmtUs(bigCost.wallUs)} (wall, median); ` +
      `bound < 25 ms (npm branca: ~160 ms)`,
  ]);

  // Fastest of 15 runs: the least disturbed by a busy machine. Expect ~6-7x (Karatsuba, ~n^1.4 here).
  const small = codec.encode(randomBytes(2_000));
  const large = codec.encode(randomBytes(8_000));
  const fastest = (token: string) => {
    for (let i = 0; i < 20; i++) codec.decode(token);
    let best = Infinity;
    for (let i = 0; i < 15; i++) {
      const t = process.hrtime.bigint();
      codec.decode(token);
      best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e3);
    }
    return best;
  };
  const ratio = fastest(large) / fastest(small);
  results.push([
    ratio < 12,
    `4x the token length (${small.length.toLocaleString("en-US")} -> ${large.length.toLocaleString("en-US")} chars) costs ` +
      `${ratio.toFixed(1)}x the time; bound < 12x (quadratic would be ~16x)`,
  ]);

  out();
  out(`Checks (load average ${os.loadavg().map((l) => l.toFixed(1)).join(" ")}):`);
  out();
  for (const [pass, text] of results) out(`${pass ? "PASS" : "FAIL"}  ${text}`);
  if (results.some(([pass]) => !pass)) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
