"use strict";
/**
 * Driver for the C load client (bench/client/loadclient.c): spawns it, sends
 * line commands on its stdin and reads its one-JSON-object-per-line replies in
 * order. Shared by bench/run.js and bench/storm.js.
 */
const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const readline = require("node:readline");

/** Compiles the client into `dir` (gcc -O2) and returns the binary's path. */
function compileClient(dir) {
  const bin = path.join(dir, "loadclient");
  const r = spawnSync("gcc", ["-O2", "-o", bin, path.join(__dirname, "..", "client", "loadclient.c")], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`gcc failed:\n${r.stderr}`);
  return bin;
}

class LoadClient {
  /**
   * @param {string[]} argv the command line (e.g. taskset … loadclient PORT), started in its own session
   * @param {string} logFile the client's stderr
   * @param {(child: import("node:child_process").ChildProcess) => unknown} track registers the child for cleanup
   */
  constructor(argv, logFile, track) {
    const err = fs.openSync(logFile, "a");
    this.proc = spawn(argv[0], argv.slice(1), { stdio: ["pipe", "pipe", err], detached: true });
    track(this.proc);
    this.waiters = [];
    this.lines = [];
    readline.createInterface({ input: this.proc.stdout }).on("line", (l) => {
      let msg;
      try {
        msg = JSON.parse(l);
      } catch {
        msg = { error: `bad client line: ${l}` };
      }
      const w = this.waiters.shift();
      if (w) w.resolve(msg);
      else this.lines.push(msg);
    });
    this.proc.on("exit", (code, sig) => {
      for (const w of this.waiters.splice(0)) w.reject(new Error(`load client exited (${code ?? sig})`));
    });
  }
  next(timeoutMs) {
    if (this.lines.length) return Promise.resolve(this.lines.shift());
    return new Promise((resolve, reject) => {
      const w = { resolve, reject };
      const t = setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`load client did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      w.resolve = (m) => {
        clearTimeout(t);
        resolve(m);
      };
      w.reject = (e) => {
        clearTimeout(t);
        reject(e);
      };
      this.waiters.push(w);
    });
  }
  async cmd(line, timeoutMs = 10000) {
    this.proc.stdin.write(line + "\n");
    const r = await this.next(timeoutMs);
    if (r.error) throw new Error(`load client: ${line.split(" ")[0]}: ${r.error}`);
    return r;
  }
}

module.exports = { LoadClient, compileClient };
