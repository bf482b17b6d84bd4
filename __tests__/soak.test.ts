/**
 * The chaos soak (bench/soak.js) in a bounded CI run (issue 15): two
 * standalone instances on a Redis master + replica behind Sentinel, eight
 * subscribers (raw readers and the `eventsource` package) reconnecting with
 * Last-Event-ID, three publishers, and every kind of fault at least once in
 * 90 s: instance SIGKILL + restart, Redis master SIGKILL + restart
 * (AOF appendfsync always, or no persistence), SIGSTOP past the command
 * timeout, connections cut mid-frame, Sentinel failover (manual, and after
 * killing the master). Redis runs with `min-replicas-to-write 1` (the
 * Sentinel setup docs/DEPLOY.md recommends): without it, an old master keeps
 * acknowledging writes for ~10 s after a failover until Sentinel demotes it,
 * and those events are lost.
 *
 * The promise: every event that got a 200 reaches every subscriber exactly
 * once and in order, or the subscriber got `sse:reset` before the stretch
 * it missed. The soak's own JSON report is printed on failure (it names the
 * fault after which each anomaly was seen, and the seed to repeat the run's
 * schedule: `node bench/soak.js --duration 90 --fault-gap 3 --min-replicas --seed <seed>`).
 */
import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { requireTools } from "./helpers/redis";

const SOAK = path.join(__dirname, "..", "bench", "soak.js");

interface SoakResult {
  seed: number;
  acknowledged: number;
  delivered: number;
  duplicated: number;
  reordered: number;
  resets: number;
  resetCovered: number;
  lost: number;
  crashes: number;
  stuck: string[];
  faults: Record<string, number>;
  memory: { fdsMax?: number; fdsFirst?: number };
}

beforeAll(() => requireTools("redis-server", "redis-sentinel"));

test(
  "90 s of faults under load: nothing acknowledged is lost, duplicated or reordered (or an sse:reset says so)",
  async () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "sse-soak-test-")), "result.json");
    const child = spawn(process.execPath, [SOAK, "--duration", "90", "--fault-gap", "3", "--min-replicas", "--json", out], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr!.on("data", (chunk: Buffer) => (log = (log + chunk.toString()).slice(-20_000)));
    // The soak bounds itself (90 s of faults, then at most ~2 minutes of draining); this is a backstop.
    const timer = setTimeout(() => child.kill("SIGKILL"), 240_000);
    const code = await new Promise<number | null>((resolve) => child.once("exit", (c) => resolve(c)));
    clearTimeout(timer);
    if (!fs.existsSync(out)) throw new Error(`the soak ended (${code}) without a result:\n${log}`);
    const r = JSON.parse(fs.readFileSync(out, "utf8")) as SoakResult;
    const summary = { seed: r.seed, lost: r.lost, duplicated: r.duplicated, reordered: r.reordered, crashes: r.crashes, stuck: r.stuck };
    const context = `\n${JSON.stringify(r, null, 1)}\n--- soak log (tail) ---\n${log.slice(-6000)}`;
    // Enough happened to mean something: events flowed, each fault kind ran.
    expect(r.acknowledged).toBeGreaterThan(500);
    expect(r.delivered).toBeGreaterThan(r.acknowledged * 4);
    for (const kind of ["kill-instance", "kill-redis", "pause-redis", "cut-clients", "failover", "kill-failover"]) {
      if (!((r.faults[kind] ?? 0) > 0)) throw new Error(`fault ${kind} never ran${context}`);
    }
    if (summary.lost || summary.duplicated || summary.reordered || summary.crashes || summary.stuck.length) {
      throw new Error(`soak broke the delivery promise: ${JSON.stringify(summary)}${context}`);
    }
    // No descriptor leak in the instance that ran throughout (sockets of cut and reconnected clients were released).
    expect(r.memory.fdsMax! - r.memory.fdsFirst!).toBeLessThan(50);
    expect(code).toBe(0);
  },
  300_000,
);
