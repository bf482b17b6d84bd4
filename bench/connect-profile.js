#!/usr/bin/env node
"use strict";
/*
 * Connect-path profiling (issue 17): starts one server of the bench (baseline,
 * ours = dist/cli.js, ours-express = bench/servers/express-mounted.js) on core
 * 0 with extra node flags, connects N subscribers with the bench's load client
 * on core 1, reports the server's CPU µs per connect and V8 heap / RSS per
 * subscriber, and optionally writes a CPU profile of the connect phase and a
 * heap snapshot with N streams open.
 *
 *   node bench/connect-profile.js --server ours --subscribers 10000 [--cpu-prof DIR] [--heap DIR] [--rounds 3]
 *
 * --cpu-prof DIR: the server runs with `--cpu-prof --cpu-prof-dir DIR` and the
 * profile is written when it exits (after the connect phase of the last round).
 * --heap DIR: `--heapsnapshot-signal=SIGUSR2`; a snapshot is taken with N
 * streams open (after a GC), and summarised by bench/heap-summary.js.
 * Rounds: every round connects N subscribers and closes them again; the first
 * warms the JIT, the numbers of each are printed.
 */
const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const crypto = require("node:crypto");
const readline = require("node:readline");
const net = require("node:net");
const { freePort } = require("./lib/ports");
const { codec } = require("./lib/tokens");

const ROOT = path.resolve(__dirname, "..");
const SCRIPTS = {
  baseline: path.join(__dirname, "servers", "baseline.js"),
  ours: path.join(ROOT, "dist", "cli.js"),
  "ours-express": path.join(__dirname, "servers", "express-mounted.js"),
};

function args() {
  const o = { server: "ours", subscribers: 10000, rounds: 2, cpuProf: null, heap: null, concurrency: 256, env: {} };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i];
    if (k === "--server") o.server = a[++i];
    else if (k === "--subscribers") o.subscribers = Number(a[++i]);
    else if (k === "--rounds") o.rounds = Number(a[++i]);
    else if (k === "--cpu-prof") o.cpuProf = path.resolve(a[++i]);
    else if (k === "--heap") o.heap = path.resolve(a[++i]);
    else if (k === "--memprobe") o.memprobe = true;
    else if (k === "--concurrency") o.concurrency = Number(a[++i]);
    else if (k === "--env") {
      const [n, v] = a[++i].split("=");
      o.env[n] = v;
    } else throw new Error(`unknown argument ${k}`);
  }
  if (!SCRIPTS[o.server]) throw new Error(`--server: one of ${Object.keys(SCRIPTS)}`);
  return o;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cpuUs(pid) {
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      /* thread gone */
    }
  }
  return ns / 1000;
}
const rssKiB = (pid) => Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"))[1]);

async function waitPort(port) {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise((r) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), r(true)));
      s.once("error", () => r(false));
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error("server did not listen");
}

async function main() {
  const o = args();
  const work = fs.mkdtempSync(path.join(os.tmpdir(), "sse-connprof-"));
  const bin = path.join(work, "loadclient");
  const cc = spawnSync("gcc", ["-O2", "-o", bin, path.join(__dirname, "client", "loadclient.c")], { encoding: "utf8" });
  if (cc.status !== 0) throw new Error(cc.stderr);
  const secret = crypto.randomBytes(32).toString("hex");
  const tok = codec(secret);
  const paths = path.join(work, "paths.txt");
  const lines = [];
  for (let i = 0; i < o.subscribers; i++) lines.push(`/events?token=${tok.subscribeToken(["bench"])}`);
  fs.writeFileSync(paths, lines.join("\n") + "\n");

  const port = await freePort();
  const flags = [];
  if (o.cpuProf) flags.push("--cpu-prof", "--cpu-prof-dir", o.cpuProf);
  if (o.heap) flags.push("--heapsnapshot-signal=SIGUSR2", "--diagnostic-dir", o.heap);
  if (o.memprobe) flags.push("--expose-gc", "-r", path.join(__dirname, "lib", "memprobe.js"));
  const srv = spawn("taskset", ["-c", "0", process.execPath, ...flags, SCRIPTS[o.server]], {
    cwd: ROOT,
    env: { ...process.env, SSE_SECRET: secret, PORT: String(port), NODE_ENV: "production", ...o.env },
    stdio: ["ignore", "inherit", "inherit"],
  });
  // taskset execs node: same pid
  await waitPort(port);
  const client = spawn("taskset", ["-c", "1", bin, String(port)], { stdio: ["pipe", "pipe", "inherit"] });
  const replies = [];
  const waiters = [];
  readline.createInterface({ input: client.stdout }).on("line", (l) => {
    const m = JSON.parse(l);
    const w = waiters.shift();
    if (w) w(m);
    else replies.push(m);
  });
  const cmd = (line) => {
    client.stdin.write(line + "\n");
    return replies.length ? Promise.resolve(replies.shift()) : new Promise((r) => waiters.push(r));
  };
  await (replies.length ? Promise.resolve(replies.shift()) : new Promise((r) => waiters.push(r))); // ready
  await cmd(`paths ${paths}`);
  await sleep(1000);
  const out = [];
  for (let round = 1; round <= o.rounds; round++) {
    const rss0 = rssKiB(srv.pid);
    const c0 = cpuUs(srv.pid);
    const con = await cmd(`connect sub ${o.subscribers} ${o.concurrency} 120000`);
    const c1 = cpuUs(srv.pid);
    await sleep(2000);
    const rss1 = rssKiB(srv.pid);
    if (o.memprobe) {
      process.kill(srv.pid, "SIGWINCH");
      await sleep(1500);
    }
    const r = {
      round,
      ok: con.ok,
      connectsPerSec: Math.round(con.ok / con.elapsed_s),
      cpuUsPerConnect: +((c1 - c0) / con.ok).toFixed(1),
      kibPerSub: +((rss1 - rss0) / con.ok).toFixed(2),
    };
    if (o.heap && round === o.rounds) {
      const before = new Set(fs.readdirSync(o.heap));
      process.kill(srv.pid, "SIGUSR2");
      let file;
      for (let i = 0; i < 600 && !file; i++) {
        await sleep(500);
        file = fs.readdirSync(o.heap).find((f) => !before.has(f) && f.endsWith(".heapsnapshot"));
        if (file) {
          // written when its size stops changing
          let size = -1;
          while (size !== fs.statSync(path.join(o.heap, file)).size) {
            size = fs.statSync(path.join(o.heap, file)).size;
            await sleep(1000);
          }
        }
      }
      r.heapSnapshot = file && path.join(o.heap, file);
    }
    out.push(r);
    console.error(JSON.stringify(r));
    await cmd("close all");
    await sleep(1500);
  }
  await cmd("quit").catch(() => {});
  client.kill();
  srv.kill("SIGTERM");
  await new Promise((r) => srv.once("exit", r));
  fs.rmSync(work, { recursive: true, force: true });
  console.log(JSON.stringify({ server: o.server, subscribers: o.subscribers, loadavg: os.loadavg().map((x) => x.toFixed(2)).join(" "), rounds: out }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
