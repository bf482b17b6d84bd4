"use strict";
/**
 * Child processes of a bench script (bench/run.js, bench/storm.js): each is
 * started in its own session (detached) and tracked, so that it and its
 * descendants can be killed as a process group at the end, on Ctrl-C and on
 * errors; plus the /proc readings both scripts take (process tree, RSS, CPU).
 */
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const { boost } = require("./priority");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const CLK_TCK = Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim()) || 100;

const children = new Set();
/** Registers a detached child (and gives it the bench priority, lib/priority.js). */
function track(child) {
  children.add(child);
  boost(child);
  child.on("exit", () => children.delete(child));
  return child;
}
function killTree(child, sig) {
  try {
    process.kill(-child.pid, sig);
  } catch {
    try {
      child.kill(sig);
    } catch {
      /* gone */
    }
  }
}
/** SIGTERM to the group, SIGKILL after graceMs. */
async function stop(child, graceMs = 3000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  killTree(child, "SIGTERM");
  if (await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)])) return;
  killTree(child, "SIGKILL");
  await Promise.race([exited, sleep(2000)]);
}
function killAllNow() {
  for (const c of children) killTree(c, "SIGKILL");
}
/** Kill every tracked child when this process exits or gets SIGINT/SIGTERM/SIGHUP (then exit 130). */
function killChildrenOnExit(log) {
  process.on("exit", killAllNow);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.on(sig, () => {
      log(`${sig}: killing servers and client`);
      killAllNow();
      process.exit(130);
    });
  }
}

/** Resolves once 127.0.0.1:port accepts a connection; throws if `child` exits first or after timeoutMs. */
async function waitPort(port, timeoutMs, child, pollMs = 100) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (child && (child.exitCode !== null || child.signalCode !== null))
      throw new Error(`server exited (${child.exitCode ?? child.signalCode}) before listening`);
    const ok = await new Promise((r) => {
      const s = net.connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        r(true);
      });
      s.once("error", () => r(false));
    });
    if (ok) return;
    await sleep(pollMs);
  }
  throw new Error(`nothing listening on port ${port} after ${timeoutMs} ms`);
}

/** The process and all its descendants. */
function processTree(pid) {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    let tasks = [];
    try {
      tasks = fs.readdirSync(`/proc/${out[i]}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        for (const c of fs.readFileSync(`/proc/${out[i]}/task/${t}/children`, "utf8").trim().split(/\s+/))
          if (c) out.push(Number(c));
      } catch {
        /* gone */
      }
    }
  }
  return out;
}
function rssKiB(pids) {
  let sum = 0;
  for (const p of pids) {
    try {
      const m = /VmRSS:\s+(\d+)\s+kB/.exec(fs.readFileSync(`/proc/${p}/status`, "utf8"));
      if (m) sum += Number(m[1]);
    } catch {
      /* gone */
    }
  }
  return sum;
}
/** utime + stime of the processes, µs. */
function cpuUs(pids) {
  let ticks = 0;
  for (const p of pids) {
    try {
      const s = fs.readFileSync(`/proc/${p}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      ticks += Number(f[11]) + Number(f[12]); // utime, stime
    } catch {
      /* gone */
    }
  }
  return (ticks * 1e6) / CLK_TCK;
}

/**
 * CPU time (µs) of the processes, every thread, from /proc/<pid>/task/<tid>/schedstat
 * (nanoseconds on the CPU: the same time as utime+stime, without the 10 ms
 * tick granularity of /proc/<pid>/stat, which is coarse for a 1,000-connect
 * phase). Falls back to {@link cpuUs} where schedstat is missing.
 */
function cpuUsFine(pids) {
  let ns = 0;
  for (const p of pids) {
    let tasks;
    try {
      tasks = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        ns += Number(fs.readFileSync(`/proc/${p}/task/${t}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        return cpuUs(pids);
      }
    }
  }
  return ns / 1000;
}

module.exports = { CLK_TCK, track, killTree, stop, killAllNow, killChildrenOnExit, waitPort, processTree, rssKiB, cpuUs, cpuUsFine };
