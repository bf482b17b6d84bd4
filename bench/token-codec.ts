/**
 * Micro-benchmark: Branca token decoding, our codec (src/branca.ts) against
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
 */
import { randomBytes } from "node:crypto";
import os from "node:os";
import { brancaDecode, brancaEncode, createBrancaCodec } from "../src/branca";
import { base62Decode, base62Encode } from "../src/base62";

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
  const cases: [string, string][] = [
    ["valid header, flipped tag bit", base62Encode(forgedTag)],
    ["valid header, random body", base62Encode(forgedBody)],
    ["wrong version byte (0xBB)", base62Encode(wrongVersion)],
    ["non-base62 last char", valid.slice(0, -1) + "_"],
    ["over maxLength (15,001 chars)", valid + "z".repeat(MAX_TOKEN_CHARS + 1 - valid.length)],
  ];
  out();
  out(`Rejecting a forged maximum-size token (${valid.length.toLocaleString("en-US")} chars, ${size.toLocaleString("en-US")}-byte payload; decode with maxLength ${MAX_TOKEN_CHARS.toLocaleString("en-US")}):`);
  out();
  out(`| forged token | ours median | ours worst of 200 | npm branca median | speed-up |`);
  out(`|---|---:|---:|---:|---:|`);
  for (const [label, token] of cases) {
    const opts = { maxLength: MAX_TOKEN_CHARS };
    if (!rejects(() => brancaDecode(key, token, opts))) throw new Error(`not rejected: ${label}`);
    const ours = measure(() => rejects(() => codec.decode(token, opts)));
    const worst = worstOf(() => rejects(() => codec.decode(token, opts)), QUICK ? 50 : 200);
    // npm branca has no length limit; the caller's check is what it would get.
    const npm = label.startsWith("over maxLength")
      ? undefined
      : measure(() => rejects(() => theirs.decode(token)), QUICK ? BUDGET_MS : 2 * BUDGET_MS);
    out(
      `| ${label} | ${fmtUs(ours.medianUs)} | ${fmtUs(worst)} | ${npm ? fmtUs(npm.medianUs) : "n/a (length check)"} | ` +
        `${npm ? `${(npm.medianUs / ours.medianUs).toFixed(0)}x` : "–"} |`,
    );
  }

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

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
